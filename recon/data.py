"""Datasets. Synthetic data lives on the sphere of radius ``sqrt(d)`` in ``R^d``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recon import checks
from recon.sphere import project_to_sphere

Array = jax.Array


class Dataset(NamedTuple):
    """Training inputs ``X`` (``n x d``) and labels ``y`` (``n``)."""

    X: Array
    y: Array


def sphere_points(key: Array, n: int, d: int, dtype=jnp.float32) -> Array:
    """``n`` points drawn uniformly on the sphere of radius ``sqrt(d)`` in ``R^d``."""
    n, d = checks.positive_int("n", n), checks.positive_int("d", d)
    checks.fits_in_memory(f"{n} points in R^{d} (n x d)", n * d * jnp.dtype(dtype).itemsize,
                          "lower n or d")
    return project_to_sphere(jax.random.normal(key, (n, d), dtype), jnp.sqrt(d))


def synthetic_regression(key: Array, n: int, d: int, noise: float = 0.5,
                         dtype=jnp.float32) -> Dataset:
    """The authors' synthetic task: ``x_i`` uniform on the sphere of radius ``sqrt(d)``,
    ``y_i = x_i . g + eps_i`` with ``g ~ N(0, I/d)`` and ``eps_i ~ N(0, noise^2)``."""
    noise = checks.positive_float("noise", noise, allow_zero=True)
    kx, kg, ke = jax.random.split(key, 3)
    X = sphere_points(kx, n, d, dtype)
    g = jax.random.normal(kg, (d,), dtype) / jnp.sqrt(d)
    y = X @ g + noise * jax.random.normal(ke, (n,), dtype)
    return Dataset(X, y)
