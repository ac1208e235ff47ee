"""Numerical checks of the paper's theorems.

Notation (PAPER.md): ``n`` training inputs ``x_i`` on the sphere of radius ``sqrt(d)`` in
``R^d``, random features ``phi(x) = act(V x)`` (``V`` is ``p x d``), ``Phi`` the ``n x p``
matrix of training features, ``theta`` the trained readout (in the span of the rows of
``Phi``), and ``P(X_hat)`` the orthogonal projection onto the span of the features of the
candidates ``X_hat``.

* Theorem 1 (one sample): for ``p >> d n`` the only points of the sphere whose features lie in
  the span of the training features are the training points (``+-x_i`` for odd ``act``).
  Checked by :func:`span_residual`, :func:`residual_along_great_circles` and
  :func:`landing_share` (a one-point solver from many random starts).
* Theorem 2 (the whole set), locally: ``X_hat -> (I - P(X_hat)) theta`` vanishes at the
  truth ``X``; its Jacobian restricted to the tangent space of the product of spheres
  (:func:`restricted_jacobian`) has rank at most ``min(p - n, (d - 1) n)``. Full rank means
  ``X`` is locally identifiable; :func:`local_rank` (one model) and :func:`rank_scan` (many
  ``p`` at once, one Jacobian function for both) measure where that happens, and
  :func:`null_direction_dataset` builds a *different* zero-loss dataset when it does not.

Every input is validated with :mod:`recon.checks` before any computation. The public
functions run in float64 (:func:`recon.precision.float64`); every step on the spheres is
:func:`recon.sphere.minimise_on_spheres`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recon import checks, precision
from recon.loss import projection_residual, projection_share
from recon.metrics import per_sample_errors
from recon.models import ACTIVATIONS, RandomFeatures, activation
from recon.problems import ReconstructionProblem, setup_synthetic_rf
from recon.sphere import minimise_on_spheres, project_to_sphere, tangent_projection

Array = jax.Array

#: Activations with ``act(-z) = -act(z)``: ``phi(-x) = -phi(x)`` lies in the same span, so
#: ``x`` and ``-x`` cannot be told apart and comparisons are sign-aware.
ODD_ACTIVATIONS = frozenset({"tanh"})

#: Relative tolerance of the numerical rank: ``sigma_i > RANK_RTOL * sigma_max``. In float64
#: the restricted Jacobian's zero singular values sit below ``1e-14 sigma_max`` and the
#: non-zero ones above ``5e-7 sigma_max`` (all four activations, (n, d) in (3, 5), (4, 6),
#: (5, 10), (8, 5), p in {dn - 1, dn, dn + 1, 2dn}, seeds 0-2), so ``1e-8`` lies in the gap.
RANK_RTOL = 1e-8

#: ``theta`` must lie in the span of ``phi(X)`` to this relative accuracy for the Jacobian
#: check; a readout trained in float32 does not (its rounding adds ~1e-7 singular values).
SPAN_ATOL = 1e-10


# ----------------------------------------------------------------------------- validation


def _array(name: str, value, ndim: int | None = None) -> Array:
    try:
        value = jnp.asarray(value)
    except TypeError as err:
        raise TypeError(f"{name} must be an array, got {type(value).__name__}") from err
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {value.shape}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(jnp.float64)
    if not bool(jnp.all(jnp.isfinite(value))):
        raise ValueError(f"{name} contains NaN or inf")
    return value


def _key(key) -> Array:
    if not isinstance(key, jax.Array) or not (
            jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            or (key.dtype == jnp.uint32 and key.shape == (2,))):
        raise TypeError(f"key must be a JAX random key (jax.random.key(seed)), "
                        f"got {type(key).__name__}")
    return key


def _model(model) -> RandomFeatures:
    if not isinstance(model, RandomFeatures):
        raise TypeError(f"model must be a recon.models.RandomFeatures, "
                        f"got {type(model).__name__}")
    return model


def _inputs(name: str, X, d: int) -> Array:
    X = _array(name, X, ndim=2)
    if X.shape[1] != d or X.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, d={d}) with n >= 1, got {X.shape}")
    return X


class _FeatureMap(NamedTuple):
    fn: object  # (m, d) flat inputs -> (m, k, P) feature rows
    input_shape: tuple[int, ...]
    radius: float
    odd: bool

    @property
    def d(self) -> int:
        return math.prod(self.input_shape)

    def inputs(self, name: str, X) -> Array:
        """``X`` (``n x input_shape`` or ``n x d``) validated and flattened to ``n x d``."""
        X = _array(name, X)
        if X.ndim < 2 or X.shape[0] < 1 or X.shape[1:] not in (self.input_shape, (self.d,)):
            raise ValueError(f"{name} must have shape (n, {', '.join(map(str, self.input_shape))})"
                             f" with n >= 1, got {X.shape}")
        return X.reshape(X.shape[0], -1).astype(jnp.float64)


def _feature_map(source, slope: float) -> _FeatureMap:
    """Feature map of a RandomFeatures model (``act`` with ReLU surrogate ``slope``) or of a
    ReconstructionProblem (its own features), on flattened inputs."""
    if isinstance(source, RandomFeatures):
        act, V = activation(source.activation, slope), source.V[...]
        return _FeatureMap(lambda X: act(X @ V.T)[:, None, :], (source.d,),
                           math.sqrt(source.d), source.activation in ODD_ACTIVATIONS)
    if isinstance(source, ReconstructionProblem):
        shape, P = source.input_shape, source.P

        def fn(X):
            F = source.features(source.state, X.reshape((X.shape[0],) + shape))
            return F.reshape(X.shape[0], -1, P)

        return _FeatureMap(fn, tuple(source.input_shape), float(source.radius), False)
    raise TypeError(f"expected a recon.models.RandomFeatures or a "
                    f"recon.problems.ReconstructionProblem, got {type(source).__name__}")


def _sign_aware(sign_aware, fmap: _FeatureMap) -> bool:
    if sign_aware is None:
        return fmap.odd
    if not isinstance(sign_aware, bool):
        raise TypeError(f"sign_aware must be True, False or None, got {sign_aware!r}")
    return sign_aware


def _on_sphere_optimizer(radius: float, lr) -> optax.GradientTransformation:
    """Adam (learning rate or schedule ``lr``) on the tangent gradients of the spheres."""
    return optax.chain(tangent_projection(radius), optax.adam(lr))


# ---------------------------------------------------------------- Theorem 1: one sample


def _span_basis(F_train: Array) -> Array:
    """Orthonormal basis (columns, ``p x n``) of the span of the rows of ``F_train``; columns
    beyond the numerical rank are zeroed."""
    U, s, _ = jnp.linalg.svd(F_train.T.astype(jnp.float64), full_matrices=False)
    keep = s > s[0] * max(F_train.shape) * jnp.finfo(jnp.float64).eps
    return U * keep


def _residual_sq(Q: Array, phi: Array) -> Array:
    """``||P_perp phi||^2 / ||phi||^2`` over the last two axes of ``phi`` (``k x p``)."""
    phi = phi.astype(jnp.float64)
    outside = phi - (phi @ Q) @ Q.T
    total = jnp.sum(phi**2, axis=(-2, -1))
    return jnp.sum(outside**2, axis=(-2, -1)) / jnp.maximum(total, jnp.finfo(total.dtype).tiny)


@precision.float64
def span_residual(F_train, phi_x) -> Array:
    """``r(x) = ||P_perp phi(x)|| / ||phi(x)||``: the share of ``phi(x)`` outside the span of
    the training feature rows ``F_train`` (``n x p``).

    ``phi_x`` is one feature vector (``p``), a batch (``m x p``, one ``r`` per row), or
    ``m x k x p`` for models with ``k`` feature rows per input (Frobenius norms). Theorem 1:
    for ``p >> d n``, ``r(x) = 0`` on the sphere only at the training points.
    """
    F_train = _array("F_train", F_train, ndim=2)
    phi_x = _array("phi_x", phi_x)
    if phi_x.ndim not in (1, 2, 3) or phi_x.shape[-1] != F_train.shape[1]:
        raise ValueError(f"phi_x must have shape (p,), (m, p) or (m, k, p) with "
                         f"p={F_train.shape[1]} (the columns of F_train), got {phi_x.shape}")
    phi = phi_x.reshape((-1, 1, phi_x.shape[-1])) if phi_x.ndim < 3 else phi_x
    r = jnp.sqrt(_residual_sq(_span_basis(F_train), phi))
    return r[0] if phi_x.ndim == 1 else r


def great_circle(x0, x1, num: int = 65) -> Array:
    """``num`` points ``sqrt(d) (cos t u0 + sin t u1)``, ``t = linspace(0, pi, num)``, on the
    great circle of the sphere of radius ``sqrt(d)`` that starts at ``x0`` (rescaled to that
    sphere) and heads towards ``x1`` (``u1`` = unit part of ``x1`` orthogonal to ``x0``).
    The last point is ``-x0``. Returns ``num x d``."""
    x0, x1 = _array("x0", x0, ndim=1), _array("x1", x1, ndim=1)
    num = checks.positive_int("num", num, minimum=2)
    if x0.shape != x1.shape or x0.shape[0] < 2:
        raise ValueError(f"x0 and x1 must be vectors of the same length d >= 2, "
                         f"got {x0.shape} and {x1.shape}")
    u0 = x0 / jnp.linalg.norm(x0)
    if float(jnp.linalg.norm(x1 - (x1 @ u0) * u0)) <= 1e-12 * float(jnp.linalg.norm(x1)):
        raise ValueError("x1 is parallel to x0: the great circle towards it is undefined")
    return _great_circle(x0, x1, num, math.sqrt(x0.shape[0]))


def _great_circle(x0: Array, x1: Array, num: int, radius: float) -> Array:
    u0 = x0 / jnp.linalg.norm(x0)
    u1 = x1 - (x1 @ u0) * u0
    u1 = u1 / jnp.linalg.norm(u1)
    t = jnp.linspace(0.0, jnp.pi, num, dtype=u0.dtype)[:, None]
    return radius * (jnp.cos(t) * u0 + jnp.sin(t) * u1)


class GreatCircleResiduals(NamedTuple):
    """``residuals[s, j, t]``: ``r`` at angle ``angles[t]`` on the ``j``-th great circle from
    training point ``starts[s]`` towards a random point of the sphere."""

    angles: np.ndarray
    starts: np.ndarray
    residuals: np.ndarray


@precision.float64
def residual_along_great_circles(source, X_train, key, num_dirs: int = 8,
                                 num_points: int = 65, start: int | None = None
                                 ) -> GreatCircleResiduals:
    """``r(x)`` (:func:`span_residual` against the training features ``phi(X_train)``) along
    ``num_dirs`` great circles from training point ``start`` (every training point if None)
    towards uniform random points of the sphere, at ``num_points`` angles in ``[0, pi]``.

    ``source`` is a RandomFeatures model or a ReconstructionProblem. For ``p >> d n``, ``r``
    is 0 only at angle 0 (Theorem 1).
    """
    fmap = _feature_map(source, 0.0)
    X_train = fmap.inputs("X_train", X_train)
    key = _key(key)
    num_dirs = checks.positive_int("num_dirs", num_dirs)
    num_points = checks.positive_int("num_points", num_points, minimum=2)
    n = X_train.shape[0]
    if start is None:
        starts = np.arange(n)
    else:
        start = checks.nonnegative_int("start", start)
        if start >= n:
            raise ValueError(f"start must index a training point (0..{n - 1}), got {start}")
        starts = np.array([start])
    Q = _span_basis(_rows(fmap, X_train))
    targets = jax.random.normal(key, (len(starts), num_dirs, fmap.d), jnp.float64)
    circles = jax.vmap(lambda x1, x0: _great_circle(x0, x1, num_points, fmap.radius),
                       in_axes=(0, None))
    points = jax.vmap(circles)(targets, X_train[starts])  # (starts, dirs, points, d)
    r2 = _residual_sq(Q, fmap.fn(points.reshape(-1, fmap.d)))
    angles = np.linspace(0.0, np.pi, num_points)
    return GreatCircleResiduals(angles, starts, np.sqrt(np.asarray(r2)).reshape(points.shape[:3]))


def _rows(fmap: _FeatureMap, X: Array) -> Array:
    """All feature rows of the inputs ``X`` as one ``(m k) x P`` matrix."""
    F = fmap.fn(X)
    return F.reshape(-1, F.shape[-1])


@precision.float64
def one_point_solve(source, X_train, key, num_starts: int = 64, steps: int = 2000,
                    lr: float = 0.05, relu_surrogate_slope: float = 0.02
                    ) -> tuple[Array, Array]:
    """Minimise ``r(x)^2`` over single points ``x`` of the sphere from ``num_starts`` uniform
    random starts at once: Adam on tangent gradients, each row projected back to the sphere
    after every step (``jax.vmap`` over starts, one jit-compiled ``lax.scan``).

    Gradients of a RandomFeatures ``source`` use the ReLU surrogate slope (values are exact);
    a ReconstructionProblem uses its own features. Returns the end points (``num_starts x d``,
    flattened inputs)
    and their exact residuals ``r`` (``num_starts``).
    """
    fmap = _feature_map(source, 0.0)
    X_train = fmap.inputs("X_train", X_train)
    key = _key(key)
    num_starts = checks.positive_int("num_starts", num_starts)
    steps = checks.positive_int("steps", steps)
    lr = checks.positive_float("lr", lr)
    slope = checks.positive_float("relu_surrogate_slope", relu_surrogate_slope, allow_zero=True)
    grad_fmap = _feature_map(source, slope) if isinstance(source, RandomFeatures) else fmap
    Q = _span_basis(_rows(fmap, X_train))
    radius = fmap.radius
    grad_one = jax.vmap(jax.grad(lambda x: _residual_sq(Q, grad_fmap.fn(x[None]))[0]))
    optimizer = _on_sphere_optimizer(radius, lr)

    @jax.jit
    def run(X0):
        X = minimise_on_spheres(grad_one, X0, optimizer, steps, radius)
        return X, jnp.sqrt(_residual_sq(Q, fmap.fn(X)))

    X0 = project_to_sphere(jax.random.normal(key, (num_starts, fmap.d), jnp.float64), radius)
    return run(X0)


class Landing(NamedTuple):
    """Outcome of :func:`landing_share`: the share of runs within ``threshold`` of a training
    point, each run's error to the nearest training point, its residual ``r`` and end point."""

    share: float
    errors: np.ndarray
    residuals: np.ndarray
    X: np.ndarray
    threshold: float


@precision.float64
def landing_share(source, X_train, key, num_starts: int = 64, steps: int = 2000,
                  lr: float = 0.05, threshold: float = 1e-2, sign_aware: bool | None = None,
                  relu_surrogate_slope: float = 0.02) -> Landing:
    """Run :func:`one_point_solve` and report the share of runs that land on a training point:
    ``min_i ||x_i - x_hat|| / sqrt(d) < threshold`` (default ``1e-2``), with ``||x_i + x_hat||``
    also allowed when ``sign_aware`` (default: True for odd activations such as tanh)."""
    fmap = _feature_map(source, 0.0)
    threshold = checks.positive_float("threshold", threshold)
    sign_aware = _sign_aware(sign_aware, fmap)
    X_train = fmap.inputs("X_train", X_train)
    X, r = one_point_solve(source, X_train, key, num_starts, steps, lr, relu_surrogate_slope)
    X, T = np.asarray(X), np.asarray(X_train)
    dist = np.linalg.norm(X[:, None, :] - T[None, :, :], axis=-1)
    if sign_aware:
        dist = np.minimum(dist, np.linalg.norm(X[:, None, :] + T[None, :, :], axis=-1))
    errors = dist.min(axis=1) / math.sqrt(fmap.d)
    return Landing(float(np.mean(errors < threshold)), errors, np.asarray(r), X, threshold)


# ------------------------------------------------------ Theorem 2, locally: the Jacobian


def _rf64(model: RandomFeatures, theta):
    """``(act, V, theta)`` of ``model`` in float64 with the EXACT activation (slope 0)."""
    V = jnp.asarray(model.V[...], jnp.float64)
    theta = model.theta[...] if theta is None else theta
    theta = _array("theta", theta, ndim=1).astype(jnp.float64)
    if theta.shape != (model.p,):
        raise ValueError(f"theta must have shape (p,) = ({model.p},), got {theta.shape}")
    return activation(model.activation, 0.0), V, theta


@precision.float64
def tangent_basis(X) -> Array:
    """An orthonormal basis of the tangent space ``{u : u . x_i = 0}`` of the sphere at each
    row ``x_i`` of ``X`` (``n x d``): an ``n x d x (d - 1)`` array."""
    X = _array("X", X, ndim=2)
    if X.shape[1] < 2:
        raise ValueError(f"X must have d >= 2 columns to have a tangent space, got {X.shape}")
    _, _, Vt = jnp.linalg.svd(X[:, None, :].astype(jnp.float64), full_matrices=True)
    return jnp.swapaxes(Vt[:, 1:, :], 1, 2)


class RestrictedJacobian(NamedTuple):
    """``J[:, i*(d-1) + k]`` = derivative of ``(I - P(X_hat)) theta`` at ``X_hat = X`` along the
    tangent direction ``basis[i, :, k]`` of row ``i``. ``J`` is ``p x (d - 1) n``."""

    J: Array
    basis: Array


@precision.float64
def restricted_jacobian(model, X, theta=None) -> RestrictedJacobian:
    """Jacobian of ``X_hat -> (I - P(X_hat)) theta`` at the true data ``X`` (``n x d``),
    restricted to the tangent space of the product of spheres, by ``jax.jacfwd`` in float64
    with the exact activation (no ReLU surrogate). ``theta`` defaults to the model's readout
    and must lie in the span of ``phi(X)`` (relative residual below ``SPAN_ATOL``), as the
    minimum-norm readout trained in float64 does (:func:`recon.train.fit_min_norm`).

    Moving row ``i`` by ``basis[i] u_i`` changes the residual by ``J u`` to first order.
    """
    model = _model(model)
    X = _inputs("X", X, model.d).astype(jnp.float64)
    _, V, theta = _rf64(model, theta)
    if X.shape[0] >= model.p:
        raise ValueError(f"need n < p for theta to leave room outside the span; got n = "
                         f"{X.shape[0]}, p = {model.p}")
    norms = np.linalg.norm(np.asarray(X), axis=1) / math.sqrt(model.d)
    if np.max(np.abs(norms - 1)) > 1e-8:
        raise ValueError(f"the rows of X must lie on the sphere of radius sqrt(d) = "
                         f"{math.sqrt(model.d):.4g}; got norms / sqrt(d) in "
                         f"[{norms.min():.4g}, {norms.max():.4g}]")
    r0 = _span_check(X, V, theta, model.activation)
    rel = float(jnp.linalg.norm(r0) / jnp.linalg.norm(theta))
    if not rel <= SPAN_ATOL:
        raise ValueError(f"theta is not in the span of phi(X) (relative residual {rel:.1e} > "
                         f"{SPAN_ATOL:.0e}): pass the true X and a readout trained in float64 "
                         f"(RandomFeatures(..., dtype=jnp.float64) and fit_min_norm)")
    B = tangent_basis(X)
    ones = jnp.ones((model.p,), X.dtype)  # every feature: the whole model
    return RestrictedJacobian(_jacobian_jit(X, B, V, theta, ones, model.activation), B)


@partial(jax.jit, static_argnames="act_name")
def _span_check(X, V, theta, act_name):
    return projection_residual(activation(act_name, 0.0)(X @ V.T), theta, 0.0)


def _jacobian(X, B, V, theta, mask, act_name):
    """The restricted Jacobian, the one place it is written: of ``X_hat -> (I - P(X_hat))
    theta`` at ``X`` along the tangent coordinates ``U`` (``n x (d - 1)``, in the bases
    ``B``), with the features of ``X_hat`` multiplied by ``mask`` (``p``; ones for the whole
    model, the first ``p'`` ones for the model of the first ``p'`` features). Returns
    ``p x (d - 1) n``."""
    act, radius = activation(act_name, 0.0), math.sqrt(X.shape[1])

    def residual(U):  # tangent coordinates (n, d-1) -> (I - P(X_hat)) theta
        X_hat = project_to_sphere(X + jnp.einsum("idk,ik->id", B, U), radius)
        return projection_residual(act(X_hat @ V.T) * mask, theta, 0.0)

    U0 = jnp.zeros((B.shape[0], B.shape[2]), X.dtype)
    return jax.jacfwd(residual)(U0).reshape(V.shape[0], -1)


_jacobian_jit = jax.jit(_jacobian, static_argnames="act_name")


@partial(jax.jit, static_argnames="act_name")
def _jacobians(X, B, V, thetas, masks, act_name):
    """:func:`_jacobian` for each readout ``thetas[j]`` and feature mask ``masks[j]``, in one
    compiled, vmapped program (:func:`rank_scan`)."""
    return jax.vmap(lambda theta, mask: _jacobian(X, B, V, theta, mask, act_name))(thetas,
                                                                                  masks)


def _rank(sigma: np.ndarray, rtol: float) -> int:
    """The number of singular values ``sigma`` (descending) above ``rtol * sigma_max``."""
    return int(np.sum(sigma > rtol * sigma[0])) if sigma[0] > 0 else 0


@precision.float64
def local_rank(model, X, theta=None, rtol: float = RANK_RTOL) -> tuple[int, np.ndarray]:
    """Numerical rank of the restricted Jacobian (:func:`restricted_jacobian`) and its
    singular values (descending): the number of ``sigma_i > rtol * sigma_max``.

    The rank is at most ``min(p - n, (d - 1) n)``; ``X`` is locally identifiable from
    ``theta`` when it equals ``(d - 1) n``. For smooth activations it is ``min(p - n,
    (d - 1) n)``; for ReLU it is ``rank([D_1 V, ..., D_n V]) - n`` with ``D_i =
    diag(1[V x_i > 0])``, which can stay below full for some units past ``p = d n`` (units
    dead on every ``x_i``, or too few units telling two inputs apart)."""
    rtol = checks.positive_float("rtol", rtol)
    J = restricted_jacobian(model, X, theta).J
    sigma = np.linalg.svd(np.asarray(J), compute_uv=False)
    return _rank(sigma, rtol), sigma


@precision.float64
def trained_rf(activation_name: str, n: int, d: int, p: int, seed: int = 0
               ) -> tuple[RandomFeatures, Array]:
    """A float64 RF model with ``theta`` the minimum-norm readout fitted to the authors'
    synthetic labels on ``n`` sphere points, and those points: the model and ``X`` of
    :func:`recon.problems.setup_synthetic_rf` (``dtype=float64``; its dataset holds the
    labels). The same ``seed`` gives the same data for every ``p``, and nested ``V``s."""
    checks.choice("activation", activation_name, ACTIVATIONS)
    n, d, p = (checks.positive_int(k, v) for k, v in (("n", n), ("d", d), ("p", p)))
    seed = checks.nonnegative_int("seed", seed)
    dataset, model, _, _ = setup_synthetic_rf(n, d, p, seed, activation_name,
                                              dtype=jnp.float64)
    return model, dataset.X


class RankScan(NamedTuple):
    """Rank of the restricted Jacobian at each ``p_values[j]``: ``ranks[j]``, its upper bound
    ``bounds[j] = min(p - n, (d - 1) n)``, and ``sigma_min[j]``, the ``(d - 1) n``-th singular
    value relative to the largest (0 when ``p < (d - 1) n`` leaves fewer singular values).
    ``jump``: the smallest scanned ``p`` with rank ``full_rank = (d - 1) n`` (None if none)."""

    activation: str
    n: int
    d: int
    p_values: np.ndarray
    ranks: np.ndarray
    bounds: np.ndarray
    sigma_min: np.ndarray
    full_rank: int
    jump: int | None
    rtol: float


def _p_values(p_values, n: int) -> list[int]:
    if not isinstance(p_values, (list, tuple, range, np.ndarray)) or len(p_values) == 0:
        raise TypeError(f"p_values must be a non-empty list of integers, got {p_values!r}")
    return sorted({checks.positive_int("p", int(p) if isinstance(p, np.integer) else p,
                                       minimum=n + 1) for p in p_values})


def _nested_readouts(Phi: np.ndarray, y: np.ndarray, p_values: list[int]):
    """Feature masks and minimum-norm readouts (as :func:`recon.train.fit_min_norm`) of the
    models made of the first ``p`` columns of ``Phi``, one row per ``p``."""
    masks = np.zeros((len(p_values), Phi.shape[1]))
    thetas = np.zeros((len(p_values), Phi.shape[1]))
    for j, p in enumerate(p_values):
        masks[j, :p] = 1.0
        coef, *_ = np.linalg.lstsq(Phi[:, :p] @ Phi[:, :p].T, y, rcond=None)
        thetas[j, :p] = Phi[:, :p].T @ coef
    return masks, thetas


@precision.float64
def rank_scan(activation_name: str, n: int, d: int, p_values, seed: int = 0,
              rtol: float = RANK_RTOL) -> RankScan:
    """The rank of the restricted Jacobian (:func:`local_rank`'s, same rank rule) for every
    ``p`` in ``p_values``, for the models of :func:`trained_rf` (``seed``). The largest model
    is built once; the smaller ones are its first ``p`` features (the same data and nested
    ``V``), the others masked out, each with its own minimum-norm readout, so one compiled,
    vmapped Jacobian (:func:`_jacobian`) serves every ``p``."""
    checks.choice("activation", activation_name, ACTIVATIONS)
    n, d = checks.positive_int("n", n), checks.positive_int("d", d, minimum=2)
    seed = checks.nonnegative_int("seed", seed)
    rtol = checks.positive_float("rtol", rtol)
    p_values = _p_values(p_values, n)
    dataset, model, _, _ = setup_synthetic_rf(n, d, p_values[-1], seed, activation_name,
                                              dtype=jnp.float64)
    X, V = np.asarray(dataset.X, np.float64), np.asarray(model.V[...], np.float64)
    Phi = np.asarray(activation(activation_name, 0.0)(jnp.asarray(X @ V.T)))
    masks, thetas = _nested_readouts(Phi, np.asarray(dataset.y), p_values)
    X, V = jnp.asarray(X), jnp.asarray(V)
    Js = np.asarray(_jacobians(X, tangent_basis(X), V, jnp.asarray(thetas), jnp.asarray(masks),
                               activation_name))
    full = (d - 1) * n
    ranks, sigma_min = [], []
    for J, p in zip(Js, p_values):
        sigma = np.linalg.svd(J[:p], compute_uv=False)
        ranks.append(_rank(sigma, rtol))
        sigma_min.append(sigma[full - 1] / sigma[0] if len(sigma) >= full and sigma[0] > 0
                         else 0.0)
    hits = [p for p, r in zip(p_values, ranks) if r == full]
    return RankScan(activation_name, n, d, np.array(p_values), np.array(ranks),
                    np.array([min(p - n, full) for p in p_values]), np.array(sigma_min), full,
                    min(hits) if hits else None, rtol)


# ------------------------------------------- below the threshold: a different dataset


class Polished(NamedTuple):
    """End point of :func:`polish` and its projection loss ``L``."""

    X: Array
    loss: float


@precision.float64
def polish(problem: ReconstructionProblem, X0, steps: int = 3000, lr: float = 1e-3,
           ridge: float = 1e-10) -> Polished:
    """Minimise ``L(X_hat) = ||(I - P(X_hat)) theta||^2 / ||theta||^2`` from the given start
    ``X0`` (``n x input_shape``): Adam with a cosine-decayed learning rate on tangent
    gradients, rows projected to the sphere after every step
    (:func:`recon.sphere.minimise_on_spheres`, one jit-compiled ``lax.scan``). The loss is
    :func:`recon.loss.projection_share` with relative ``ridge``. (Adam's normalised steps
    move by about ``lr`` even at a minimum; the decay to ``lr / 1000`` lets the end point
    settle.)"""
    if not isinstance(problem, ReconstructionProblem):
        raise TypeError(f"problem must be a ReconstructionProblem, got {type(problem).__name__}")
    X0 = _array("X0", X0)
    expected = (problem.n,) + problem.input_shape
    if X0.shape != expected:
        raise ValueError(f"X0 must have shape {expected}, got {X0.shape}")
    steps = checks.positive_int("steps", steps)
    lr = checks.positive_float("lr", lr)
    ridge = checks.positive_float("ridge", ridge, allow_zero=True)
    theta = problem.theta.astype(jnp.float64)
    n, radius = problem.n, problem.radius

    def loss(X):
        return projection_share(problem.features(problem.state, X.reshape(expected)), theta,
                                ridge)

    optimizer = _on_sphere_optimizer(radius, optax.cosine_decay_schedule(lr, steps, alpha=1e-3))

    @jax.jit
    def run(X0):
        X = minimise_on_spheres(jax.grad(loss), X0, optimizer, steps, radius)
        return X, loss(X)

    X, value = run(project_to_sphere(X0.reshape(n, -1).astype(jnp.float64), radius))
    return Polished(X.reshape(expected), float(value))


class NullDirectionDataset(NamedTuple):
    """A dataset built by :func:`null_direction_dataset`: the polished ``X_alt``, its loss,
    its mean matched error to the truth ``X`` (sign-aware for odd activations), the loss and
    error of the unpolished start, and the local rank at the truth."""

    X_alt: np.ndarray
    loss: float
    distance: float
    start_loss: float
    start_distance: float
    rank: int
    full_rank: int


@precision.float64
def null_direction_dataset(model, X, theta=None, step: float = 0.1, steps: int = 3000,
                           lr: float = 1e-3, relu_surrogate_slope: float = 0.02,
                           rtol: float = RANK_RTOL) -> NullDirectionDataset:
    """Move the true data ``X`` along the least identifiable direction (the last right
    singular vector of the restricted Jacobian, a null direction when its rank is below
    ``(d - 1) n``) by ``step`` (``||X_start - X||_F / sqrt(d)`` before re-projection to the
    spheres), then :func:`polish` it on the loss ``L`` for ``theta``.

    Below the threshold (rank < ``(d - 1) n``) this yields a *different* dataset with ``L ~ 0``
    (``distance`` about ``start_distance``); above it, ``polish`` returns to the truth
    (``distance ~ 0``; slowly when the smallest singular value is tiny, e.g. softplus).
    """
    model = _model(model)
    X = _inputs("X", X, model.d).astype(jnp.float64)
    step = checks.positive_float("step", step)
    rtol = checks.positive_float("rtol", rtol)
    slope = checks.positive_float("relu_surrogate_slope", relu_surrogate_slope, allow_zero=True)
    checks.positive_int("steps", steps)
    checks.positive_float("lr", lr)
    J, B = restricted_jacobian(model, X, theta)
    _, sigma, Wt = np.linalg.svd(np.asarray(J), full_matrices=True)
    rank = _rank(sigma, rtol)
    u = jnp.asarray(Wt[-1]).reshape(X.shape[0], model.d - 1)
    dX = jnp.einsum("idk,ik->id", B, u)  # unit Frobenius norm
    d, radius = model.d, math.sqrt(model.d)
    X_start = project_to_sphere(X + step * radius * dX, radius)
    act, V, theta = _rf64(model, theta)
    problem = ReconstructionProblem(
        features=lambda state, Z: activation(model.activation, slope)(Z @ state["V"].T),
        state={"V": V}, theta=theta, n=X.shape[0], input_shape=(d,), radius=radius,
        name=f"random features ({model.activation}, p={model.p}), float64")
    start_loss = projection_share(act(X_start @ V.T), theta, 0.0)
    result = polish(problem, X_start, steps, lr)
    sign_aware = model.activation in ODD_ACTIVATIONS
    return NullDirectionDataset(
        np.asarray(result.X), result.loss,
        float(per_sample_errors(result.X, X, sign_aware).mean()),
        float(start_loss),
        float(per_sample_errors(X_start, X, sign_aware).mean()),
        rank, (d - 1) * X.shape[0])
