"""The projection loss, the one place it is written.

For candidates ``X_hat`` with feature rows ``F = phi(X_hat)``,

    L(X_hat) = || theta - P(X_hat) theta ||^2 / ||theta||^2,   P(X_hat) = F^T (F F^T)^{-1} F,

which is 0 exactly when ``theta`` lies in the span of the candidate features. The Gram solve
runs in float64 (when JAX's 64-bit mode is on, see :mod:`recon.precision`) with a ridge
relative to the mean diagonal of ``F F^T``, so the loss stays finite when two candidates come
close; the residual ``theta - F^T c`` is formed explicitly so that small losses are not lost
to cancellation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recon import precision

Array = jax.Array


def ridged_gram(F: Array, ridge: float) -> Array:
    """``A = F F^T + lambda I`` with ``lambda = ridge * mean(diag(F F^T))`` (plus the smallest
    positive float, so that ``A`` is invertible when ``F`` is zero)."""
    gram = F @ F.T
    lam = ridge * jnp.mean(jnp.diagonal(gram)) + jnp.finfo(gram.dtype).tiny
    return gram + lam * jnp.eye(gram.shape[0], dtype=gram.dtype)


def projection_residual(F: Array, theta: Array, ridge: float = 1e-10) -> Array:
    """``theta - F^T A^{-1} F theta`` (:func:`ridged_gram`), the part of ``theta`` outside the
    span of the rows of ``F`` (``rows x P``; ``theta`` has ``P`` entries)."""
    if F.ndim != 2 or theta.ndim != 1 or F.shape[1] != theta.shape[0]:
        raise ValueError(f"the feature rows F must be (rows, P) and theta (P,) with the same P, "
                         f"got F of shape {tuple(F.shape)} and theta of shape "
                         f"{tuple(theta.shape)}")
    F = F.astype(jnp.float64)
    theta = theta.astype(jnp.float64)
    coef = jax.scipy.linalg.solve(ridged_gram(F, ridge), F @ theta, assume_a="pos")
    return theta - F.T @ coef


def projection_share(F: Array, theta: Array, ridge: float = 1e-10) -> Array:
    """``||theta - P theta||^2 / ||theta||^2`` for the span of the rows of ``F``: the share of
    ``theta`` outside it (:func:`projection_residual`)."""
    r = projection_residual(F, theta, ridge)
    theta = theta.astype(r.dtype)
    return (r @ r) / (theta @ theta)


@precision.float64
def projection_loss(problem, X: Array, ridge: float = 1e-10) -> Array:
    """``L(X_hat)`` of ``problem`` (a :class:`recon.problems.ReconstructionProblem`) at the
    candidates ``X`` (``n x input_shape``): one jit-compiled call with the problem's arrays
    passed as arguments, not baked in as constants. Differentiable in ``X``."""
    expected = (problem.n,) + tuple(problem.input_shape)
    X = jnp.asarray(X)
    if X.shape != expected:
        raise ValueError(f"X must have shape {expected} (n candidates of the problem's input "
                         f"shape), got {X.shape}")

    def loss(state, theta, X):
        return projection_share(problem.features(state, X), theta, ridge)

    return jax.jit(loss)(problem.state, problem.theta, X)
