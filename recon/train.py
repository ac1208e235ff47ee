"""Training the readout. Gradient descent from zero on the squared loss converges to the
minimum-norm interpolator ``theta = pinv(Phi) y``, which lies in the span of the training
features (the rows of ``Phi``); we compute it directly (:func:`fit_min_norm`), and so the
ridge readout (:func:`fit_ridge`) and gradient descent stopped early (:func:`fit_early_stopped`),
which lie in the same span. Whole networks are trained by :func:`train_full_batch`."""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from recon import checks, precision
from recon.blocks import run_blocks
from recon.models import RandomFeatures, activation, bucket_rows

Array = jax.Array


class FitReport(NamedTuple):
    """Outcome of training: the train mean squared error ``(1/n) ||Phi theta - y||^2`` of the
    stored ``theta`` on the float64 features ``Phi`` the fit used, and the condition number
    of ``Phi Phi^T`` (large means the features barely span ``n`` directions)."""

    train_mse: float
    gram_condition: float


@precision.float64
def _float64_features(model: RandomFeatures, X: Array) -> np.ndarray:
    """``phi(X)`` computed in float64 from ``X`` and ``V`` (``V``'s float32 entries are exact
    in float64). Features rounded to float32 would put ``theta`` in the span of features
    that differ from ``phi(x_i)`` by about ``1e-7`` relative: a sample whose share of
    ``theta`` is that small would then be pinned nowhere near itself (at the authors' size,
    seed 3: 2.6e-3 instead of 4.9e-4 for the polish started at the truth). A small stored
    ``V`` is padded with zero rows to the next power of two of ``p``
    (:func:`recon.models.bucket_rows`, :func:`_dense_features`), so models of many ``p`` (a
    sweep) share a few compilations instead of one each."""
    X = jnp.asarray(X, jnp.float64)
    bucket = bucket_rows(model.p, model.d)
    if model.streamed or bucket is None:
        return np.asarray(model.features(X), np.float64)
    V = jax.device_put(np.pad(np.asarray(model.V[...]), ((0, bucket - model.p), (0, 0))))
    return np.asarray(_dense_features(V, X, model.activation), np.float64)[:, :model.p]


@functools.partial(jax.jit, static_argnames="name")
def _dense_features(V: Array, X: Array, name: str) -> Array:
    """``act(X V^T)`` in float64 for the activation called ``name``."""
    return activation(name)(X @ V.astype(jnp.float64).T)


def _training_features(model: RandomFeatures, X: Array, y: Array):
    """The labels, ``Phi = phi(X)`` (``n x p``, float64, :func:`_float64_features`) and the
    Gram matrix ``K = Phi Phi^T``, checked."""
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    if X.ndim != 2 or X.shape[1] != model.d:
        raise ValueError(f"X must have shape (n, d={model.d}), got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape (n,) = ({X.shape[0]},), got {y.shape}")
    Phi = _float64_features(model, X)
    gram = Phi @ Phi.T
    if not np.all(np.isfinite(gram)):
        raise FloatingPointError("the training features contain NaN or inf")
    return np.asarray(y, np.float64), Phi, gram


def _set_readout(model: RandomFeatures, y, Phi, gram, coef) -> FitReport:
    """``model.theta = Phi^T coef`` (in the span of the training features) and its report."""
    model.theta[...] = jax.device_put((Phi.T @ coef).astype(model.theta[...].dtype))
    residual = Phi @ np.asarray(model.theta[...], np.float64) - y
    return FitReport(float(np.mean(residual**2)), float(np.linalg.cond(gram)))


def fit_min_norm(model: RandomFeatures, X: Array, y: Array) -> FitReport:
    """Set ``model.theta`` to the minimum-norm least-squares solution ``pinv(Phi) y``.

    ``Phi = phi(X)`` is ``n x p``. With ``p >= n`` and distinct inputs the labels are
    interpolated (train MSE ~ 0). Solved in float64 through ``Phi^T (Phi Phi^T)^+ y``.
    """
    y, Phi, gram = _training_features(model, X, y)
    coef, *_ = np.linalg.lstsq(gram, y, rcond=None)
    return _set_readout(model, y, Phi, gram, coef)


def fit_ridge(model: RandomFeatures, X: Array, y: Array, lam: float) -> FitReport:
    """Set ``model.theta`` to the ridge readout, the minimiser of
    ``(1/n) ||Phi theta - y||^2 + lam ||theta||^2``: ``theta = Phi^T (Phi Phi^T + n lam I)^{-1}
    y``. Like every readout of this form it lies in the span of the training features, so
    ridge changes how much of each ``phi(x_i)`` ``theta`` holds, not whether the span holds
    ``theta``. ``lam = 0`` is :func:`fit_min_norm`."""
    lam = checks.positive_float("lam", lam, allow_zero=True)
    if lam == 0:
        return fit_min_norm(model, X, y)
    y, Phi, gram = _training_features(model, X, y)
    coef = np.linalg.solve(gram + len(y) * lam * np.eye(len(y)), y)
    return _set_readout(model, y, Phi, gram, coef)


def fit_early_stopped(model: RandomFeatures, X: Array, y: Array, steps: int,
                      lr: float | None = None) -> FitReport:
    """Set ``model.theta`` to ``steps`` steps of gradient descent from ``theta = 0`` on
    ``(1/n) ||Phi theta - y||^2``, computed exactly rather than stepped: every gradient
    ``(2/n) Phi^T (Phi theta - y)`` lies in the span of the training features, so
    ``theta_t = Phi^T a_t`` with ``a_t = (I - (I - (2 lr / n) K)^t) K^+ y`` (``K = Phi Phi^T``).
    ``lr`` defaults to ``n / (2 lambda_max(K))``, the inverse of the loss's largest curvature;
    ``steps -> infinity`` gives :func:`fit_min_norm`."""
    steps = checks.nonnegative_int("steps", steps)
    y, Phi, gram = _training_features(model, X, y)
    n = len(y)
    eigenvalues, vectors = np.linalg.eigh(gram)
    top = float(eigenvalues[-1])
    if top <= 0:
        raise ValueError("the training features are all zero: nothing to fit")
    lr = n / (2 * top) if lr is None else checks.positive_float("lr", lr)
    if lr * 2 * top / n >= 2:
        raise ValueError(f"lr={lr:g} makes gradient descent diverge (it must be below "
                         f"n / lambda_max(K) = {n / top:g})")
    positive = eigenvalues > top * 1e-13
    shrink = 1 - (1 - (2 * lr / n) * eigenvalues[positive]) ** steps
    coef = vectors[:, positive] @ (shrink / eigenvalues[positive] * (vectors[:, positive].T @ y))
    return _set_readout(model, y, Phi, gram, coef)


# ----------------------------------------------------------------------------- whole networks

class TrainReport(NamedTuple):
    """Outcome of :func:`train_full_batch`.

    Attributes:
        initial_loss, final_loss: the training loss ``L`` (see :func:`train_full_batch`)
            before the first step and after the last one.
        steps: gradient steps taken.
        seconds: wall time (compilation included).
        converged: whether ``final_loss <= tol``.
        lr: the learning rate used.
        loss: ``L`` before every step (``steps`` values).
        initial_state: the model's trainable parameters (``nnx.Param``) before training, as
            an ``nnx.State``; :meth:`initial` reads one of them.
        initial_readout: the initial value of the model's readout (the parameter named by its
            ``readout_name`` attribute, e.g. ``W2`` or ``head``), or ``None`` if the model
            names none. ``theta = vec(trained readout - initial_readout)``.
    """

    initial_loss: float
    final_loss: float
    steps: int
    seconds: float
    converged: bool
    lr: float
    loss: np.ndarray
    initial_state: Any
    initial_readout: Array | None

    def initial(self, name: str) -> Array:
        """Initial value of the parameter at the dotted path ``name`` (e.g. ``"W2"``,
        ``"blocks.0.conv1.kernel"``)."""
        return _param_at(self.initial_state, name)


def _param_at(state, name: str) -> Array:
    flat = {".".join(map(str, path)): v for path, v in nnx.to_flat_state(state)}
    if name not in flat:
        raise KeyError(f"no parameter {name!r}; available: {', '.join(flat)}")
    value = flat[name]
    return value[...] if isinstance(value, nnx.Variable) else value


def _mean_sq_loss(graphdef, params, rest, X, Y):
    """``L = (1/n) sum_i ||f(x_i) - y_i||^2``."""
    model = nnx.merge(graphdef, params, rest)
    r = model(X).reshape(Y.shape) - Y
    return jnp.sum(r * r) / X.shape[0]


def _training_inputs(model: nnx.Module, X, Y=None):
    """Check and cast ``X`` (``n x d``) and ``Y`` to the dtype of the model's parameters;
    ``Y`` is reshaped to the output shape when the sizes agree (``(n,)`` for ``k = 1``)."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a Flax NNX module, got {type(model).__name__}")
    params = nnx.state(model, nnx.Param)
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{type(model).__name__} has no nnx.Param to train")
    dtype = jnp.result_type(*leaves)
    X = jnp.asarray(X, dtype)
    if X.ndim < 1 or X.shape[0] < 1:
        raise ValueError(f"X must hold n >= 1 inputs as rows, got shape {X.shape}")
    try:
        out = jax.eval_shape(lambda m, x: m(x), model, X)
    except (ValueError, TypeError) as err:
        raise ValueError(f"the model cannot be applied to X of shape {X.shape}: {err}") from err
    if Y is None:
        return X, None
    Y = jnp.asarray(Y, dtype)
    if Y.shape != out.shape:
        if Y.size != math.prod(out.shape) or Y.shape[0] != X.shape[0]:
            raise ValueError(f"Y must have the model's output shape {out.shape} (one row of "
                             f"targets per input), got {Y.shape}")
        Y = Y.reshape(out.shape)
    return X, Y


def _top_gauss_newton(graphdef, params, rest, X, iterations: int, key,
                      scales=None) -> float:
    """Largest eigenvalue of the Gauss-Newton matrix ``(2/n) J^T J`` of ``L``, by power
    iteration with Jacobian-vector products (``J`` = Jacobian of all outputs w.r.t. the
    parameters). With ``scales`` (a tree like ``params`` of per-parameter learning-rate
    multipliers ``s``) it is that of ``(2/n) S^{1/2} J^T J S^{1/2}``, which sets the stable
    step of gradient descent whose step on each parameter is scaled by ``s``."""

    def outputs(p):
        return nnx.merge(graphdef, p, rest)(X)

    _, jvp_fn = jax.linearize(outputs, params)
    vjp_fn = jax.linear_transpose(jvp_fn, params)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree.unflatten(tree, [jax.random.normal(k, jnp.shape(l), jnp.result_type(l))
                                  for k, l in zip(keys, leaves)])
    root = (jax.tree.map(lambda l: jnp.ones_like(l), params) if scales is None
            else jax.tree.map(lambda l, s: jnp.full_like(l, math.sqrt(s)), params, scales))

    def norm(t):
        return jnp.sqrt(sum(jnp.sum(jnp.square(l)) for l in jax.tree.leaves(t)))

    @jax.jit
    def step(v):
        v = jax.tree.map(lambda l, r: r * l / norm(v), v, root)
        (w,) = vjp_fn(jvp_fn(v))
        w = jax.tree.map(lambda l, r: r * l, w, root)
        return w, norm(w)

    value = jnp.asarray(0.0)
    for _ in range(iterations):
        v, value = step(v)
    return float(value) * 2 / X.shape[0]


def suggest_lr(model: nnx.Module, X, iterations: int = 30, seed: int = 0) -> float:
    """A learning rate for :func:`train_full_batch`: ``1 / lambda_max`` of the Gauss-Newton
    matrix ``(2/n) J^T J`` of ``L`` at the current weights (plain gradient descent on a
    quadratic diverges above ``2 / lambda_max``). It shrinks like ``1 / width``: for
    :class:`recon.networks.TwoLayer` (ReLU) on 4 digits on the sphere it is about
    ``1.4 / width``, since the ``n`` feature vectors ``act(W1 x_i)`` are strongly correlated
    and ``lambda_max`` is close to ``width``."""
    iterations = checks.positive_int("iterations", iterations)
    X, _ = _training_inputs(model, X)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return 1.0 / _top_gauss_newton(graphdef, params, rest, X, iterations, jax.random.key(seed))


class _Descent(NamedTuple):
    """Gradient descent between blocks: parameters, optimiser state, whether ``L <= tol`` (or
    not finite) was reached, steps taken, the losses of each block, and the last loss."""

    params: Any
    opt_state: Any
    done: Array
    steps: int
    losses: list
    last: float = float("nan")


def _descent_block(graphdef, rest, X, Y, tx, tol: float, chunk: int):
    """A jitted block of ``chunk`` gradient steps on ``L``; steps from ``limit`` on, or once
    ``L <= tol``, leave the parameters unchanged."""
    value_and_grad = jax.value_and_grad(_mean_sq_loss, argnums=1)

    def step(carry, i, limit):
        params, opt_state, done = carry
        value, grads = value_and_grad(graphdef, params, rest, X, Y)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        done = done | (value <= tol) | ~jnp.isfinite(value)
        stop = done | (i >= limit)
        keep = lambda a, b: jnp.where(stop, a, b)  # noqa: E731
        params = jax.tree.map(keep, params, new_params)
        opt_state = jax.tree.map(keep, opt_state, new_opt_state)
        return (params, opt_state, done), value

    @jax.jit
    def block(params, opt_state, done, limit):
        return jax.lax.scan(lambda c, i: step(c, i, limit), (params, opt_state, done),
                            jnp.arange(chunk))

    return block


def _advance_descent(state: _Descent, block, max_steps: int, tol: float, lr: float) -> _Descent:
    """One block of gradient descent; the steps after ``L`` first reached ``tol`` do not
    count. Raises ``FloatingPointError`` if the loss became NaN or infinite."""
    (params, opt_state, done), values = block(state.params, state.opt_state, state.done,
                                              max_steps - state.steps)
    values = np.asarray(values)[: max_steps - state.steps]
    bad = ~np.isfinite(values)
    if bad.any():
        at = state.steps + int(np.argmax(bad))
        raise FloatingPointError(
            f"the training loss became {values[bad][0]} at step {at} (lr={lr:g}): "
            f"gradient descent diverged, lower lr (try recon.train.suggest_lr)")
    reached = np.flatnonzero(values <= tol)
    take = int(reached[0]) if reached.size else len(values)
    return _Descent(params, opt_state, done, state.steps + take, state.losses + [values[:take]],
                    float(values[min(take, len(values) - 1)]))


def _lr_scales(params, lr_scale) -> Any:
    """The tree of learning-rate multipliers (like ``params``, a float per array):
    ``lr_scale[name]`` for every parameter whose dotted path is ``name`` or starts with
    ``name.``, 1 for the others."""
    flat = [".".join(map(str, path)) for path, _ in nnx.to_flat_state(params)]
    scales = {}
    for name, value in dict(lr_scale).items():
        if not any(path == name or path.startswith(f"{name}.") for path in flat):
            raise KeyError(f"lr_scale names {name!r}, which is no parameter of the model; "
                           f"available: {', '.join(flat)}")
        scales[name] = checks.positive_float(f"lr_scale[{name!r}]", value, allow_zero=True)

    def scale_of(key_path, _):
        path = ".".join(str(k.key) for k in key_path if isinstance(k, jax.tree_util.DictKey))
        return next((value for name, value in scales.items()
                     if path == name or path.startswith(f"{name}.")), 1.0)

    return jax.tree_util.tree_map_with_path(scale_of, params)


def _scaled_sgd(lr: float, scales) -> optax.GradientTransformation:
    """``optax.sgd(lr)`` with each parameter's step multiplied by its ``scales`` entry (a
    multiplier of 0 freezes the parameter)."""
    labels = jax.tree.map(lambda s: f"{s!r}", scales)
    values = {f"{s!r}": s for s in jax.tree.leaves(scales)}
    return optax.multi_transform(
        {label: optax.sgd(lr * s) if s > 0 else optax.set_to_zero()
         for label, s in values.items()}, labels)


def _learning_rate(lr, graphdef, params, rest, X, scales) -> float:
    """``lr`` checked, or for ``"auto"`` ``1 / lambda_max`` of the (scaled) Gauss-Newton
    matrix at the current weights."""
    if isinstance(lr, str):
        if lr != "auto":
            raise ValueError(f"lr must be a positive number or 'auto', got {lr!r}")
        lr = 1.0 / _top_gauss_newton(graphdef, params, rest, X, 30, jax.random.key(0), scales)
    return checks.positive_float("lr", lr)


def train_full_batch(model: nnx.Module, X, Y, lr: float | str = "auto", max_steps: int = 10_000,
                     tol: float = 1e-7, progress: bool = True, chunk: int = 100,
                     lr_scale: dict[str, float] | None = None) -> TrainReport:
    """Train every ``nnx.Param`` of ``model`` by full-batch gradient descent (``optax.sgd``)
    on ``L = (1/n) sum_i ||f(x_i) - y_i||^2`` until ``L <= tol`` or ``max_steps`` steps.

    ``L`` sums the squared error over the ``k`` outputs and averages over the ``n`` samples,
    so for ``k = 1`` it is the paper's MSE and for ``k`` outputs it is ``k`` times the paper's
    MSE (PyTorch's ``mse_loss``, a mean over ``n*k`` entries): the paper's ``lr = 1e-5`` on
    its loss is ``lr = 1e-5 / k`` here. That rate suits the paper's widths (10^5 units); at the
    small widths of the tests and the quick profile it is far too slow, so the default
    ``lr="auto"`` takes :func:`suggest_lr` (``1/lambda_max`` of the Gauss-Newton matrix, e.g.
    about ``1.4e-3`` for a width-1000 two-layer network on 4 digits; it scales like
    ``1/width``, and training then takes ~150 steps to ``L <= 1e-8`` there).

    The model is updated in place. Steps run in jit-compiled blocks of ``chunk`` (a
    ``lax.scan``), so ``steps`` may stop anywhere inside the last block. The returned report
    carries the initial parameters, so ``theta = trained readout - initial readout``.
    Raises ``FloatingPointError`` if the loss becomes NaN or infinite (the model then keeps
    its weights from before the block that diverged).

    ``lr_scale`` multiplies the step of some parameters: ``{"W1": 0}`` freezes the first
    layer of :class:`recon.networks.TwoLayer` (its readout then lies in the span of the
    fixed features, as for random features), ``{"W1": 10}`` lets it move ten times faster
    than the readout. Keys are dotted parameter paths (a prefix covers a whole submodule);
    the ``"auto"`` rate then accounts for the multipliers.
    """
    X, Y = _training_inputs(model, X, Y)
    max_steps = checks.positive_int("max_steps", max_steps)
    tol = checks.positive_float("tol", tol, allow_zero=True)
    chunk = checks.positive_int("chunk", chunk)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    scales = None if lr_scale is None else _lr_scales(params, lr_scale)
    # fresh Variables around the current arrays (updates replace arrays, never mutate them)
    initial_state = jax.tree.map(lambda a: a, params)
    readout = getattr(type(model), "readout_name", None)
    initial_readout = _param_at(initial_state, readout) if isinstance(readout, str) else None
    lr = _learning_rate(lr, graphdef, params, rest, X, scales)
    tx = optax.sgd(lr) if scales is None else _scaled_sgd(lr, scales)
    block = _descent_block(graphdef, rest, X, Y, tx, tol, chunk)
    final_loss = jax.jit(lambda params: _mean_sq_loss(graphdef, params, rest, X, Y))
    start = time.perf_counter()
    state = _Descent(params, tx.init(params), jnp.asarray(False), 0, [])

    def advance(state):
        state = _advance_descent(state, block, max_steps, tol, lr)
        nnx.update(model, state.params)
        return state, state.losses[-1].size

    state = run_blocks(advance, state, finished=lambda s: s.steps >= max_steps or bool(s.done),
                       total=max_steps, desc="training", progress=progress,
                       status=lambda s: f"loss={s.last:.2e}")
    last = float(final_loss(state.params))
    seconds = time.perf_counter() - start
    trace = np.concatenate(state.losses) if state.losses else np.zeros(0)
    first = float(trace[0]) if trace.size else last
    return TrainReport(first, last, state.steps, seconds, last <= tol, lr, trace, initial_state,
                       initial_readout)
