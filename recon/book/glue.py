"""A chapter's headline numbers, glued for the book in one call.

``myst_nb.glue`` stores a value in the executed notebook so the page can quote it with
``{glue:text}`` and tests and scripts can read it back (:func:`recon.book.notebooks.read_glued`).
Outside the book (plain Jupyter, Colab) myst_nb may be missing; then the values are printed.
Rounding is defined here, once: :func:`decimals` and :func:`significant`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def decimals(value, places: int):
    """``value`` rounded to ``places`` decimals; ``None`` for NaN or infinity."""
    value = float(value)
    return round(value, places) if math.isfinite(value) else None


def significant(value, digits: int):
    """``value`` rounded to ``digits`` significant digits (``1.23e-05`` for 3)."""
    return float(f"{float(value):.{digits - 1}e}")


def glue(name: str, value) -> None:
    """Glue one value under ``name`` (``myst_nb.glue(..., display=False)``), or print it."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name} = {value!r}")
        return
    myst_glue(name, value, display=False)


def glue_all(values: Mapping) -> dict:
    """Glue every ``name: value`` of ``values`` (already rounded, e.g. by a chapter's
    ``headline`` function) and return them as a dict."""
    for name, value in values.items():
        glue(name, value)
    return dict(values)
