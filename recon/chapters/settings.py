"""What every chapter's settings share: built from the notebook's parameters in one call.

A chapter's settings are a frozen dataclass whose fields are the notebook's parameters (the
names of its ``parameters`` cell). :meth:`ChapterSettings.from_parameters` takes them from the
notebook's namespace and turns the parameters cell's "not set" sentinels (``""``, ``0`` or
``[]``, listed per class in ``unset``) into ``None``, in one place; the dataclass then checks
every value, so a wrong parameter (as papermill may inject) stops the notebook with a clear
message before any computation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import ClassVar


class ChapterSettings:
    """Mixin for a chapter's frozen settings dataclass."""

    #: field name -> the parameters cell's value meaning "use the default" (becomes None)
    unset: ClassVar[Mapping[str, object]] = {}

    @classmethod
    def from_parameters(cls, namespace: Mapping):
        """The settings from the notebook's parameters, e.g. ``Settings.from_parameters(
        globals())``: every field found in ``namespace`` is taken, its "unset" sentinel
        mapped to ``None``; fields not found keep their defaults."""
        if not isinstance(namespace, Mapping):
            raise TypeError(f"namespace must be a mapping of parameter names to values "
                            f"(e.g. globals()), got {type(namespace).__name__}")
        kwargs = {}
        for f in fields(cls):
            if f.name not in namespace:
                continue
            value = namespace[f.name]
            if f.name in cls.unset and _is_sentinel(value, cls.unset[f.name]):
                value = None
            kwargs[f.name] = value
        return cls(**kwargs)

    def as_dict(self) -> dict:
        """The settings as a plain dictionary (for figure sidecars)."""
        return asdict(self)


def _is_sentinel(value, sentinel) -> bool:
    """``value`` is the sentinel itself: equal and of the same kind (``0`` and ``0.0`` both
    mean "unset" for a number, but ``False`` and ``0`` differ, as do ``""`` and ``[]``)."""
    if isinstance(value, bool) or isinstance(sentinel, bool):
        return value is sentinel
    if isinstance(sentinel, (int, float)):
        return isinstance(value, (int, float)) and value == sentinel
    return type(value) is type(sentinel) and value == sentinel
