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

import functools

import jax
import jax.numpy as jnp

from recon import precision

Array = jax.Array


def _ridged_gram_and_ridge(F: Array, ridge: float) -> tuple[Array, Array]:
    """:func:`ridged_gram` and its ``lambda``."""
    gram = F @ F.T
    lam = ridge * jnp.mean(jnp.diagonal(gram)) + jnp.finfo(gram.dtype).tiny
    return gram + lam * jnp.eye(gram.shape[0], dtype=gram.dtype), lam


def ridged_gram(F: Array, ridge: float) -> Array:
    """``A = F F^T + lambda I`` with ``lambda = ridge * mean(diag(F F^T))`` (plus the smallest
    positive float, so that ``A`` is invertible when ``F`` is zero)."""
    return _ridged_gram_and_ridge(F, ridge)[0]


def _check_shapes(F: Array, theta: Array) -> None:
    if F.ndim != 2 or theta.ndim != 1 or F.shape[1] != theta.shape[0]:
        raise ValueError(f"the feature rows F must be (rows, P) and theta (P,) with the same P, "
                         f"got F of shape {tuple(F.shape)} and theta of shape "
                         f"{tuple(theta.shape)}")


def _projection(F: Array, theta: Array, ridge: float):
    """``(r, c, factor, lambda)``: the residual ``r = theta - F^T c`` with ``c = A^{-1} F
    theta``, the Cholesky factor of ``A`` (:func:`ridged_gram`) and its ridge, in the dtype
    of ``F`` and ``theta``."""
    A, lam = _ridged_gram_and_ridge(F, ridge)
    factor = jax.scipy.linalg.cho_factor(A)
    c = jax.scipy.linalg.cho_solve(factor, F @ theta)
    return theta - F.T @ c, c, factor, lam


def projection_residual(F: Array, theta: Array, ridge: float = 1e-10) -> Array:
    """``theta - F^T A^{-1} F theta`` (:func:`ridged_gram`), the part of ``theta`` outside the
    span of the rows of ``F`` (``rows x P``; ``theta`` has ``P`` entries)."""
    _check_shapes(F, theta)
    return _residual(F.astype(jnp.float64), theta.astype(jnp.float64), float(ridge))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _residual(F: Array, theta: Array, ridge: float) -> Array:
    return _projection(F, theta, ridge)[0]


@_residual.defjvp
def _residual_jvp(ridge: float, primals, tangents):
    """The derivative of ``r = theta - F^T c`` (``A c = F theta``, ``A = F F^T + lambda I``)
    written with matrix-vector products only: ``dc = A^{-1} (dF r - F dF^T c - dlambda c +
    F dtheta)``, ``dr = dtheta - dF^T c - F^T dc``, ``dlambda = (2 ridge / rows) sum(F . dF)``
    (``F r = lambda c``). Automatic differentiation would form ``dA = dF F^T + F dF^T``, two
    ``rows x P x rows`` products, on every Jacobian product of the polish. Linear in the
    tangents, so it transposes for reverse mode."""
    (F, theta), (dF, dtheta) = primals, tangents
    r, c, factor, lam = _projection(F, theta, ridge)
    dlam = (2.0 * ridge / F.shape[0]) * jnp.sum(F * dF)
    dFt_c = dF.T @ c
    dc = jax.scipy.linalg.cho_solve(factor, dF @ r - F @ dFt_c - dlam * c + F @ dtheta)
    return r, dtheta - dFt_c - F.T @ dc


def projection_share(F: Array, theta: Array, ridge: float = 1e-10) -> Array:
    """``||theta - P theta||^2 / ||theta||^2`` for the span of the rows of ``F``: the share of
    ``theta`` outside it (:func:`projection_residual`). Its gradient is written out
    (:func:`_share_backward`): one outer product where automatic differentiation would
    go back through the Gram matrix."""
    _check_shapes(F, theta)
    return _share(F, theta, float(ridge))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _share(F: Array, theta: Array, ridge: float) -> Array:
    return _share_forward(F, theta, ridge)[0]


def _share_forward(F: Array, theta: Array, ridge: float):
    F64, theta64 = F.astype(jnp.float64), theta.astype(jnp.float64)
    r, c, factor, lam = _projection(F64, theta64, ridge)
    s = theta64 @ theta64
    share = (r @ r) / s
    dtypes = (jnp.zeros(0, F.dtype), jnp.zeros(0, theta.dtype))
    return share, (F64, theta64, r, c, factor, lam, s, share, dtypes)


def _share_backward(ridge: float, saved, g):
    """The exact gradient of ``L = ||r||^2 / s`` (``s = ||theta||^2``). With ``u = A^{-1} c``,
    ``F r = lambda c`` (the ridge) gives
    ``dL/dF = (2/s) [-(c + lambda u) r^T + lambda c (F^T u)^T + lambda (u . c) dlambda/dF]``,
    ``dlambda/dF = 2 ridge F / rows``, and ``dL/dtheta = (2/s) (r - lambda F^T u - L theta)``."""
    F, theta, r, c, factor, lam, s, share, (F_dtype, theta_dtype) = saved
    u = jax.scipy.linalg.cho_solve(factor, c)
    Ftu = F.T @ u
    w = 2.0 * g / s
    dF = w * (lam * jnp.outer(c, Ftu) - jnp.outer(c + lam * u, r)
              + (lam * (u @ c) * 2.0 * ridge / F.shape[0]) * F)
    dtheta = w * (r - lam * Ftu - share * theta)
    return dF.astype(F_dtype.dtype), dtheta.astype(theta_dtype.dtype)


_share.defvjp(_share_forward, _share_backward)


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
