"""Input validation shared by the library, the notebooks and the command line.

Every check raises before any computation, with a message that names the offending
parameter, the value received and what is accepted.
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Iterable


def _describe(value) -> str:
    return f"{value!r} (type {type(value).__name__})"


def positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def boolean(name: str, value) -> bool:
    """Return ``value`` if it is a bool (``True``/``False``, not the string ``"false"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {_describe(value)}")
    return value


def finite_array(name: str, value):
    """Return ``value`` if every entry is finite, else raise naming how many are NaN or
    infinite (an array of any kind that numpy can read)."""
    import numpy as np

    bad = ~np.isfinite(np.asarray(value, dtype=np.float64))
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite entries (of {bad.size}); "
                         f"it must be finite")
    return value


def nonnegative_int(name: str, value) -> int:
    """Return ``value`` as an int if it is an integer ``>= 0`` (e.g. a seed), else raise."""
    return positive_int(name, value, minimum=0)


def positive_float(name: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a real number ``> 0`` (``>= 0`` with allow_zero)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def nonnegative_float(name: str, value) -> float:
    """Return ``value`` as a finite float ``>= 0`` (e.g. a cap where 0 means off), else raise."""
    return positive_float(name, value, allow_zero=True)


def fraction(name: str, value) -> float:
    """Return ``value`` as a float in ``[0, 1]``."""
    value = positive_float(name, value, allow_zero=True)
    if value > 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def choice(name: str, value, accepted: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``accepted`` (strings), else raise naming the options."""
    accepted = list(accepted)
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(map(repr, accepted))}")
    return value


def size_pairs(name: str, value, minimum_d: int = 1) -> list[tuple[int, int]]:
    """Return ``value`` as a list of ``(n, d)`` integer pairs (a non-empty list of
    ``[n, d]``), with ``n >= 1`` and ``d >= minimum_d``."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of [n, d] pairs, got {value!r}")
    pairs = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise TypeError(f"each entry of {name} must be an [n, d] pair, got {item!r}")
        pairs.append((positive_int(f"{name}: n", item[0]),
                      positive_int(f"{name}: d", item[1], minimum=minimum_d)))
    return pairs


def seed_list(name: str, value) -> list[int]:
    """Return ``value`` as a list of ints if it is a non-empty list of integers ``>= 0``
    (e.g. a sweep's seeds), else raise."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of integers >= 0, got {value!r}")
    return [nonnegative_int(name, s) for s in value]


def increasing_ratios(name: str, value) -> list[float]:
    """Return ``value`` as a list of floats if it is a non-empty list of real numbers ``> 0``
    in strictly increasing order (e.g. a sweep's ratios ``p / (d n)``), else raise."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of positive numbers, got {value!r}")
    ratios = [positive_float(name, r) for r in value]
    if any(b <= a for a, b in itertools.pairwise(ratios)):
        raise ValueError(f"{name} must be increasing, got {ratios}")
    return ratios


_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def available_memory() -> tuple[int, str]:
    """The bytes an array may take on JAX's default device, and where the number comes from:
    an accelerator's own limit (``memory_stats()["bytes_limit"]``) where JAX runs on one,
    else the machine's physical memory (psutil if installed, else ``os.sysconf``), lowered to
    the cgroup's memory limit where one is set (a container, a batch job)."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"memory of {device.device_kind}"
    try:
        import psutil
        total = int(psutil.virtual_memory().total)
    except ImportError:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    source = "physical memory"
    for path in _CGROUP_LIMITS:
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < total:
            total, source = int(text), "the cgroup's memory limit"
    return total, source


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in decimal units (``"40.0 GB"``)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(nbytes) < 1000 or unit == "PB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    raise AssertionError("unreachable")


def fits_in_memory(what: str, nbytes: float, advice: str = "") -> float:
    """Raise ``MemoryError`` before any allocation if ``what`` needs more than
    :func:`available_memory`; the message gives both sizes (and ``advice``). Returns
    ``nbytes``. Call it with the arrays' real sizes (entries times bytes per entry)."""
    limit, source = available_memory()
    if nbytes > limit:
        raise MemoryError(f"{what} needs {format_bytes(nbytes)}, more than this machine has "
                          f"({format_bytes(limit)}, {source})" + (f": {advice}" if advice else ""))
    return nbytes
