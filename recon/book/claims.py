"""A chapter's claims, each checked against the chapter's own run.

A sentence of a chapter that says what a run shows is a claim. The chapter module states it
as a :class:`Claim`: a name, the sentence, whether the run supports it (``holds``) and the
numbers it was checked on. The notebook shows each claim next to its sentence with
:func:`show` (nothing when it holds; a warning box when it does not, so a reader never reads
an unsupported sentence unwarned) and glues them all under the name ``claims``
(:func:`as_records`) as ``{"name", "holds", "values"}`` records; the status page counts,
per chapter, the claims its run supports (:func:`count`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Claim(NamedTuple):
    """One observed statement of a chapter: ``text`` (the sentence, as the page states it),
    ``holds`` (whether this run supports it) and ``values`` (the numbers it was checked on,
    already rounded as quoted)."""

    name: str
    text: str
    holds: bool
    values: dict


def claim(name: str, text: str, holds, **values) -> Claim:
    """A :class:`Claim` named ``name``; ``holds`` is turned into a plain ``bool`` and the
    ``values`` into plain numbers (NaN and infinities become ``None``)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a claim's name must be an identifier (it is glued), got {name!r}")
    return Claim(name, text, bool(holds), {k: _plain(v) for k, v in values.items()})


def _plain(value):
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_records(claims: Iterable[Claim]) -> list[dict]:
    """The claims as the ``{"name", "holds", "values"}`` records a chapter glues as
    ``claims``; raises ``ValueError`` if two share a name."""
    claims = list(claims)
    names = [c.name for c in claims]
    if len(set(names)) != len(names):
        raise ValueError(f"claim names must be unique, got {names}")
    return [{"name": c.name, "holds": c.holds, "values": c.values} for c in claims]


def count(records: Iterable[Mapping]) -> dict:
    """``{"supported", "total", "failing"}`` of glued claim records (for the status page)."""
    records = list(records)
    failing = [r["name"] for r in records if not r["holds"]]
    return {"supported": len(records) - len(failing), "total": len(records),
            "failing": failing}


class Shown:
    """What :func:`show` displays: nothing for a claim that holds, a warning box for one
    that does not (HTML in the book and in Jupyter, text elsewhere)."""

    def __init__(self, claims: list[Claim]):
        self.failing = [c for c in claims if not c.holds]

    def _repr_html_(self) -> str:
        items = "".join(f"<li><strong>{html.escape(c.text)}</strong> (<code>{c.name}</code>; "
                        f"checked on {html.escape(_values(c.values))})</li>"
                        for c in self.failing)
        return ('<div class="admonition warning recon-claim-failed">'
                '<p class="admonition-title">Not supported by this run</p>'
                f"<p>This run does not support the following statement:</p><ul>{items}</ul>"
                "</div>")

    def __repr__(self) -> str:
        return "\n".join(f"WARNING: not supported by this run: {c.text} ({_values(c.values)})"
                         for c in self.failing)


def _values(values: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items()) or "no numbers"


def show(claims: Iterable[Claim], *names: str, missing_ok: bool = False) -> Shown | None:
    """The display of the claims called ``names`` (all of them when none is given): put it
    in a cell right after the sentence that makes them. ``None`` (nothing shown) when they
    all hold. Raises ``KeyError`` for an unknown name, so a renamed claim cannot silently
    vanish from its page, unless ``missing_ok`` (for a claim a chapter makes only when its
    run has something to check, e.g. a column it may skip)."""
    claims = list(claims)
    by_name = {c.name: c for c in claims}
    unknown = [n for n in names if n not in by_name]
    if missing_ok:
        names = tuple(n for n in names if n in by_name)
        if not names:
            return None
    elif unknown:
        raise KeyError(f"unknown claim(s) {unknown}; this chapter's claims: {sorted(by_name)}")
    shown = Shown([by_name[n] for n in names] if names else claims)
    return shown if shown.failing else None


def table(claims: Iterable[Claim]):
    """The claims as a :class:`pandas.DataFrame` (statement, holds, values), for the table
    that ends a chapter."""
    import pandas as pd

    return pd.DataFrame([{"claim": c.name, "statement": c.text, "holds": c.holds,
                          "checked on": _values(c.values)} for c in claims])
