"""Floating-point precision, an explicit choice.

JAX computes in float32 unless its 64-bit mode is on. The library's large arrays (features,
inputs, model weights) are float32 unless asked otherwise; the Gram solves of the projection
loss and the theorem checks need float64. Importing ``recon`` changes no JAX setting. Instead:

- functions that need float64 (the solver, the projection loss, the theorem checks) run
  inside ``jax.enable_x64(True)`` themselves (the :func:`float64` decorator), so they are
  right whatever the process-wide setting;
- :func:`use_float64` turns on 64-bit mode for the whole process, as the chapters, the
  benchmark and the tests do, so that everything they compute, data included, is the same
  whichever function computes it.
"""

from __future__ import annotations

import functools

import jax


def use_float64(enabled: bool = True) -> None:
    """Turn JAX's 64-bit mode on (or off) for the whole process (``jax_enable_x64``)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    jax.config.update("jax_enable_x64", enabled)


def float64_enabled() -> bool:
    """Whether float64 arrays can be created now (process-wide or in a context)."""
    return bool(jax.config.jax_enable_x64)


def float64(fn):
    """Decorator: run ``fn`` with JAX's 64-bit mode on (a ``jax.enable_x64(True)`` context),
    restoring the caller's setting afterwards."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if float64_enabled():
            return fn(*args, **kwargs)
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper
