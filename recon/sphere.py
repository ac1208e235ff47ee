"""Optimisation on the product of spheres, the one place a step on the spheres is written.

Every input lies on the sphere of radius ``r`` (``sqrt(d)``). A step takes the gradient
``G`` of a loss, projects each candidate's gradient onto the tangent space of its sphere
(:func:`tangent_projection`, an optax transformation; the authors skip it), applies the optax
update and rescales each candidate back onto its sphere (:func:`on_spheres`). The solver, the
one-point solver and every polish use :func:`sphere_step`; :func:`minimise_on_spheres` runs it
in one compiled ``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def project_to_sphere(X: Array, radius: float) -> Array:
    """Rescale each row of ``X`` (last axis) to norm ``radius``."""
    norms = jnp.linalg.norm(X, axis=-1, keepdims=True)
    return X * (radius / jnp.maximum(norms, jnp.finfo(X.dtype).tiny))


def on_spheres(X: Array, radius: float) -> Array:
    """Each candidate (first axis of ``X``, of any input shape) rescaled to norm ``radius``."""
    return project_to_sphere(X.reshape(X.shape[0], -1), radius).reshape(X.shape)


def tangent(G: Array, X: Array, radius: float) -> Array:
    """``G_i - (G_i . x_i) x_i / r^2`` for each candidate ``x_i`` (first axis): the part of
    ``G`` in the tangent spaces of the spheres at ``X`` (exact when ``|x_i| = r``)."""
    axes = tuple(range(1, X.ndim))
    return G - jnp.sum(G * X, axis=axes, keepdims=True) * X / radius**2


class TangentProjectionState(NamedTuple):
    """:func:`tangent_projection` keeps no state."""


def tangent_projection(radius: float) -> optax.GradientTransformation:
    """An optax transformation mapping gradients ``G`` at the candidates ``X`` (the ``params``)
    to :func:`tangent` ``(G, X, radius)``: the Riemannian gradient on the spheres. Chain it
    before an optimiser: ``optax.chain(tangent_projection(r), optax.adam(lr))``."""

    def init_fn(params):
        del params
        return TangentProjectionState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("tangent_projection needs the candidates: pass params to update")
        return tangent(updates, params, radius), state

    return optax.GradientTransformation(init_fn, update_fn)


def sphere_step(X: Array, G: Array, opt_state, optimizer: optax.GradientTransformation,
                radius: float, scale=None):
    """One step from the candidates ``X`` with gradient ``G``: ``optimizer``'s update (chain
    :func:`tangent_projection` into it for tangent gradients), multiplied by ``scale`` when
    given, then each candidate back onto its sphere. Returns ``(X_new, opt_state)``."""
    updates, opt_state = optimizer.update(G, opt_state, X)
    if scale is not None:
        updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
    return on_spheres(optax.apply_updates(X, updates), radius), opt_state


def minimise_on_spheres(gradient: Callable[[Array], Array], X0: Array,
                        optimizer: optax.GradientTransformation, steps: int,
                        radius: float) -> Array:
    """``steps`` of :func:`sphere_step` from ``X0`` with ``G = gradient(X)``, in one
    ``lax.scan`` (call it inside ``jax.jit``). To maximise a score, chain
    ``optax.scale(-1.0)`` after the tangent projection."""

    def step(carry, _):
        X, state = carry
        return sphere_step(X, gradient(X), state, optimizer, radius), None

    (X, _), _ = jax.lax.scan(step, (X0, optimizer.init(X0)), None, length=steps)
    return X
