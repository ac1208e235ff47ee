"""Input validation shared by the library, the notebooks and the command line.

Every check raises before any computation, with a message that names the offending
parameter, the value received and what is accepted.
"""

from __future__ import annotations

import itertools
import numbers
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


def increasing_ratios(name: str, value) -> list[float]:
    """Return ``value`` as a list of floats if it is a non-empty list of real numbers ``> 0``
    in strictly increasing order (e.g. a sweep's ratios ``p / (d n)``), else raise."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of positive numbers, got {value!r}")
    ratios = [positive_float(name, r) for r in value]
    if any(b <= a for a, b in itertools.pairwise(ratios)):
        raise ValueError(f"{name} must be increasing, got {ratios}")
    return ratios
