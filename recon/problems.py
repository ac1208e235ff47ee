"""Reconstruction problems: ``theta`` is known to lie in the span of the feature vectors of
``n`` unknown inputs; find inputs whose features span it.

A problem holds a feature map ``features(state, X) -> F`` (``n*k x P`` rows for ``n`` inputs),
the arrays it needs (``state``), the target ``theta`` (``P``), the number of inputs ``n``, the
shape of one input and the radius of the sphere each input lies on.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recon import checks
from recon.data import Dataset, synthetic_regression
from recon.models import RandomFeatures, activation, smoothed_activation, streamed_features
from recon.moments import guesses_anything, hermite_coefficients, moment_guess
from recon.train import FitReport, fit_min_norm

Array = jax.Array


@dataclass(frozen=True)
class ReconstructionProblem:
    """Find ``X_hat`` (``n`` inputs of ``input_shape``, each of norm ``radius``) such that
    ``theta`` lies in the span of the rows of ``features(state, X_hat)``.

    ``smoothed_features(state, X, beta)``, where given, is a smooth version of the feature map
    that tends to ``features`` as ``beta`` grows; the solver may anneal ``beta`` early on
    (``Solver.smooth_steps``). ``None`` where the features are smooth already or no such
    version exists. ``guess(state, vector, k)``, where given, guesses ``k`` inputs (``k x
    input_shape``, strongest first, ``k`` at most ``d``) whose features span most of
    ``vector``, from what the attacker has and without optimisation (RF: the method of
    moments, :mod:`recon.moments`), JAX-traceable; a solver with ``informed_start`` begins its
    first start at ``guess(state, theta, n)``. ``real_features``, where given, is the number
    of independent equations
    ``theta`` sets (see :func:`real_feature_count`), for problems whose features are
    projected or masked in a way the state does not show. ``switched_features(state, X, beta,
    smooth)``, where given, is
    ``smoothed_features`` where the flag ``smooth`` is set and ``features`` elsewhere, from one
    computation of what the two share: under ``vmap`` the solver's per-start choice then costs
    one feature map, not both."""

    features: Callable[[Any, Array], Array]
    state: Any
    theta: Array
    n: int
    input_shape: tuple[int, ...]
    radius: float
    name: str = "problem"
    smoothed_features: Callable[[Any, Array, Array], Array] | None = None
    switched_features: Callable[[Any, Array, Array, Array], Array] | None = None
    real_features: int | None = None
    guess: Callable[[Any, Array, int], Array] | None = None

    @property
    def d(self) -> int:
        """Input dimension (number of entries of one input)."""
        return math.prod(self.input_shape)

    @property
    def P(self) -> int:
        """Length of ``theta`` (the parameter count of the readout)."""
        return int(self.theta.shape[0])

    def feature_matrix(self, X: Array) -> Array:
        """The feature rows of the inputs ``X`` (``n x input_shape``)."""
        return self.features(self.state, X)


@functools.lru_cache(maxsize=None)
def _rf_features(act_name: str, slope: float, streamed: tuple | None = None):
    # cached: problems built alike share one feature function, so they can be stacked
    act = activation(act_name, slope)

    def features(state, X):
        return _apply_rf(act, state, X, streamed)

    return features


@functools.lru_cache(maxsize=None)
def _rf_smoothed_features(act_name: str, streamed: tuple | None = None):
    def features(state, X, beta):
        return _apply_rf(smoothed_activation(act_name, beta), state, X, streamed)

    return features


@functools.lru_cache(maxsize=None)
def _rf_guess(act_name: str, radius: float):
    # cached like the feature maps: problems built alike share it, so they can be stacked
    coefficients = tuple(hermite_coefficients(activation(act_name)))

    def guess(state, vector, k):
        vector = vector.astype(jnp.float64)
        return moment_guess(state["V"].astype(jnp.float64), vector, k, radius, coefficients,
                            state.get("mask"))

    return guess


@functools.cache
def _rf_switched_features(act_name: str, slope: float):
    exact = activation(act_name, slope)

    def features(state, X, beta, smooth):
        Z = X @ state["V"].T
        return _masked(jnp.where(smooth, smoothed_activation(act_name, beta)(Z), exact(Z)),
                       state)

    return features


def _apply_rf(act, state, X, streamed):
    if streamed is not None:
        p, chunk, dtype = streamed
        return streamed_features(X, state["V_key"], p, chunk, act, dtype)
    return _masked(act(X @ state["V"].T), state)


def _masked(F, state):
    """``F`` with the features that :func:`pad_features` added set to zero."""
    return F * state["mask"] if "mask" in state else F


def random_features_problem(model: RandomFeatures, n: int,
                            relu_surrogate_slope: float = 0.02) -> ReconstructionProblem:
    """The RF problem: recover ``n`` inputs from the trained readout ``theta`` of ``model``.

    Features are ``phi(x) = act(V x)``; inputs lie on the sphere of radius ``sqrt(d)``.
    ``relu_surrogate_slope`` only changes the gradients the solver sees (see
    :func:`recon.models.activation`); the loss values are exact.
    """
    n = checks.positive_int("n", n)
    theta = checks.finite_array("the model's theta", model.theta[...])
    if not np.any(np.asarray(theta) != 0):
        raise ValueError("the model's theta is zero: train the model before reconstructing")
    checks.fits_in_memory(f"the feature rows of {n} candidates (n x p, p={model.p}, float64)",
                          n * model.p * 8, "lower n or p")
    streamed = (model.p, model.chunk, model.dtype) if model.streamed else None
    return ReconstructionProblem(
        features=_rf_features(model.activation, relu_surrogate_slope, streamed),
        smoothed_features=(_rf_smoothed_features(model.activation, streamed)
                           if "relu" in model.activation else None),
        switched_features=(_rf_switched_features(model.activation, relu_surrogate_slope)
                           if "relu" in model.activation and streamed is None else None),
        guess=(_rf_guess(model.activation, math.sqrt(model.d))
               if not model.streamed and guesses_anything(activation(model.activation),
                                                          model.p, model.d) else None),
        state={"V_key": model.V_key[...]} if model.streamed else {"V": model.V[...]},
        theta=theta,
        n=n,
        input_shape=(model.d,),
        radius=math.sqrt(model.d),
        name=f"random features ({model.activation}, p={model.p})",
    )


def pad_features(problem: ReconstructionProblem, P: int) -> ReconstructionProblem:
    """The RF ``problem`` with ``P`` features: ``V`` padded with zero rows, ``theta`` with
    zeros, and a mask that sets the padded features to zero (``act(0)`` need not be 0). A zero
    feature column with ``theta_j = 0`` changes neither ``F F^T``, nor ``F theta``, nor the
    residual, so the loss is the same; problems padded to one ``P`` can be stacked
    (:func:`stack_problems`) and share one compiled solver."""
    if not (isinstance(problem.state, dict) and set(problem.state) <= {"V", "mask"}):
        raise ValueError("pad_features needs a random-features problem with a dense V "
                         f"(random_features_problem of a non-streamed model), got {problem.name}")
    P = checks.positive_int("P", P)
    if P < problem.P:
        raise ValueError(f"P must be at least the problem's {problem.P} features, got {P}")
    V, extra = np.asarray(problem.state["V"]), P - problem.P
    mask = np.asarray(problem.state.get("mask", np.ones((problem.P,), V.dtype)))
    # padded on the host and moved by device_put: no compilation for a new P
    state = {"V": jax.device_put(np.pad(V, ((0, extra), (0, 0)))),
             "mask": jax.device_put(np.pad(mask, (0, extra)).astype(V.dtype))}
    return replace(problem, state=state,
                   theta=jax.device_put(np.pad(np.asarray(problem.theta), (0, extra))))


class UnderdeterminedWarning(UserWarning):
    """A problem solved although ``theta`` lies in the span of any ``n`` candidates
    (``n * k >= P``, :func:`check_determined`): its zero loss says nothing about the inputs."""


def real_feature_count(problem: ReconstructionProblem) -> int:
    """The features of ``problem`` that carry an equation: ``problem.real_features`` where
    the builder set it, else ``P`` less the ones that :func:`pad_features` added (masked to
    zero)."""
    if problem.real_features is not None:
        return problem.real_features
    if isinstance(problem.state, dict) and "mask" in problem.state:
        return int(np.count_nonzero(np.asarray(problem.state["mask"])))
    return problem.P


def feature_rows(problem: ReconstructionProblem) -> int:
    """``n * k``: the feature rows of ``n`` candidates (``k`` rows per input, the model's
    outputs), read from the shapes of the feature map (``jax.eval_shape``, nothing run)."""
    one = jax.ShapeDtypeStruct((1,) + tuple(problem.input_shape), problem.theta.dtype)
    rows = jax.eval_shape(problem.features, problem.state, one).shape[0]
    return problem.n * int(rows)


def check_determined(problem: ReconstructionProblem, allow_underdetermined: bool = False
                     ) -> bool:
    """Refuse a problem where ``theta`` lies in the span of ANY candidates: with ``n * k``
    feature rows and only ``P' <= n * k`` real features (:func:`real_feature_count`), ``n * k``
    generic feature vectors span ``R^P'``, so every candidate set has zero loss and a
    "converged" result says nothing about the inputs (for RF: ``p <= n``).

    ``allow_underdetermined=True`` (a deliberate experiment, e.g. the law chapter's smallest
    ratios) lets it through with an :class:`UnderdeterminedWarning`. Returns whether the
    problem is underdetermined."""
    checks.boolean("allow_underdetermined", allow_underdetermined)
    real, rows = real_feature_count(problem), feature_rows(problem)
    if real > rows:
        return False
    why = (f"{problem.name}: theta has {real} real features and n*k = {rows} candidate feature "
           f"rows (n={problem.n}); any {rows} generic feature vectors span R^{real}, so every "
           f"candidate set reaches zero loss and the result says nothing about the inputs "
           f"(reconstruction needs more features than rows, P > n*k)")
    if not allow_underdetermined:
        raise ValueError(f"{why}; pass allow_underdetermined=True to solve it anyway as a "
                         f"deliberate experiment")
    warnings.warn(f"{why}; solving it anyway (allow_underdetermined=True)",
                  UnderdeterminedWarning, stacklevel=3)
    return True


class ProblemBatch(NamedTuple):
    """``G`` problems that differ only in their arrays: ``problem`` is the first (its feature
    map, ``n``, input shape, radius and ``P`` are shared), ``state`` and ``theta`` are every
    problem's, stacked along a new first axis."""

    problem: ReconstructionProblem
    state: Any
    theta: Array

    @property
    def G(self) -> int:
        """Number of problems."""
        return int(self.theta.shape[0])


def stack_problems(problems: list[ReconstructionProblem]) -> ProblemBatch:
    """The :class:`ProblemBatch` of ``problems``, checked to share the feature map, ``n``,
    the input shape, the radius and the shapes of every array (pad RF problems to one ``P``
    with :func:`pad_features`)."""
    problems = list(problems)
    if not problems or not all(isinstance(q, ReconstructionProblem) for q in problems):
        raise TypeError("problems must be a non-empty list of ReconstructionProblem")
    first = problems[0]
    shapes = jax.tree.map(jnp.shape, (first.state, first.theta))
    for i, q in enumerate(problems[1:], 1):
        same = (q.features is first.features and q.smoothed_features is first.smoothed_features
                and (q.n, q.input_shape, q.radius) == (first.n, first.input_shape, first.radius))
        if not same or jax.tree.map(jnp.shape, (q.state, q.theta)) != shapes:
            raise ValueError(f"problem {i} ({q.name}) cannot be stacked with problem 0 "
                             f"({first.name}): the feature map, n, input shape, radius and "
                             f"array shapes must match (pad RF problems with pad_features)")
    # stacked on the host and moved by device_put: no compilation for a new batch size or P
    state = jax.tree.map(lambda *a: stacked_on_host(a), *(q.state for q in problems))
    return ProblemBatch(first, state, stacked_on_host([q.theta for q in problems]))


def stacked_on_host(arrays) -> Array:
    """``jnp.stack(arrays)``, stacked on the host and moved by ``device_put``: the same values,
    and nothing compiled for a new number or shape of arrays (a sweep's batch sizes and
    ``P``)."""
    return jax.device_put(np.stack([np.asarray(a) for a in arrays]))


def _variables(model) -> dict[str, Any]:
    """The model's variables by dotted path (``"W2"``, ``"blocks.0.conv1.kernel"``)."""
    _, state = nnx.split(model)
    return {".".join(map(str, path)): v for path, v in nnx.to_flat_state(state)}


def _readout_features(graphdef):
    """``features(state, X)``: for each row ``x`` of ``X``, the Jacobian of the model's ``k``
    outputs at ``x`` w.r.t. the readout (``k x P``), stacked into ``n*k x P`` rows."""
    def outputs(readout, rest, x):
        return nnx.merge(graphdef, readout, rest)(x[None]).reshape(-1)

    jacobian = jax.vmap(jax.jacrev(outputs), in_axes=(None, None, 0))

    def features(state, X):
        readout, rest = state
        J = jax.tree.leaves(jacobian(readout, rest, X))[0]  # (n, k, *readout shape)
        return J.reshape(J.shape[0] * J.shape[1], -1)

    return features


def _input_shape(model, input_shape) -> tuple[int, ...]:
    """``input_shape`` checked, or the model's own (``model.input_shape``, else ``(model.d,)``)."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None and hasattr(model, "d"):
            input_shape = (model.d,)
        if input_shape is None:
            raise ValueError(f"cannot tell the input shape of {type(model).__name__}: pass "
                             "input_shape=(d,) (the shape of one row of X)")
    return tuple(checks.positive_int("input_shape entry", s) for s in input_shape)


def _split_readout(model, readout_name: str):
    """``nnx.split`` of ``model`` into its graph, the readout's state and the rest, as copies:
    nnx.split's State shares its Variable objects with the model, and rebuilding the trees
    gives fresh Variables around the same (immutable) arrays, so later training leaves the
    problem alone."""
    path = readout_name.split(".")

    def is_readout(p, _):
        return list(map(str, p)) == path

    graphdef, readout_state, rest = nnx.split(model, is_readout, ...)
    return graphdef, jax.tree.map(lambda a: a, readout_state), jax.tree.map(lambda a: a, rest)


def _readout_change(model, readout_name: str, initial_readout) -> Array:
    """``vec(trained readout - initial readout)``, checked: the readout exists, the initial
    value has its shape, and training moved it."""
    variables = _variables(model)
    if readout_name not in variables:
        listing = ", ".join(f"{name} {tuple(v.shape)}" for name, v in variables.items())
        raise ValueError(f"{type(model).__name__} has no variable {readout_name!r}; "
                         f"available: {listing}")
    trained = variables[readout_name][...]
    initial = jnp.asarray(initial_readout)
    if initial.shape != trained.shape:
        raise ValueError(f"initial_readout must have the shape of {readout_name!r}, "
                         f"{tuple(trained.shape)}, got {tuple(initial.shape)}")
    theta = (trained - initial.astype(trained.dtype)).reshape(-1)
    if not bool(jnp.any(theta != 0)):
        raise ValueError(f"the readout {readout_name!r} equals its initial value: train the "
                         "model before reconstructing (or pass the value before training)")
    return theta


def readout_problem(model, readout_name: str, initial_readout, n: int,
                    radius: float | None = None, *,
                    input_shape: tuple[int, ...] | None = None) -> ReconstructionProblem:
    """The problem for any Flax NNX model whose parameter ``readout_name`` was trained from
    ``initial_readout``: ``theta = vec(trained readout - initial readout)``, and the feature
    rows of an input ``x`` are the Jacobian of the model's ``k`` outputs w.r.t. the readout at
    the trained weights (``k`` rows of length ``P`` = readout size, by ``jax.jacrev``).

    For :class:`recon.networks.TwoLayer` (readout ``"W2"``) the rows are
    ``e_j (x) act(W1 x)``; for :class:`recon.networks.ResNet` (readout ``"head"``, ``k = 1``)
    the row is the penultimate activations; for :class:`recon.models.RandomFeatures`
    (readout ``"theta"``, initial value zero) it is ``phi(x) = act(V x)``, as in
    :func:`random_features_problem` with ``relu_surrogate_slope=0``. The readout enters the
    outputs linearly in all three, so the rows do not depend on its value.

    Args:
        model: the trained Flax NNX module; its weights are copied into ``problem.state``
            (``(readout state, other state)``, split with ``nnx.split``), so later changes
            to ``model`` do not affect the problem.
        readout_name: dotted path of the readout variable (``"W2"``, ``"head"``,
            ``"blocks.0.conv1.kernel"``); models name theirs in ``model.readout_name``.
        initial_readout: its value before training (``TrainReport.initial_readout``).
        n: number of inputs to recover.
        radius: norm of each input; default ``sqrt(d)``.
        input_shape: shape of one input as the model takes it in ``model(X)`` (rows of
            ``X``); default ``model.input_shape`` or ``(model.d,)``.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a Flax NNX module, got {type(model).__name__}")
    n = checks.positive_int("n", n)
    if not isinstance(readout_name, str):
        raise TypeError(f"readout_name must be a string (a dotted parameter path), got "
                        f"{readout_name!r}")
    theta = _readout_change(model, readout_name, initial_readout)
    input_shape = _input_shape(model, input_shape)
    d = math.prod(input_shape)
    radius = math.sqrt(d) if radius is None else checks.positive_float("radius", radius)
    graphdef, readout_state, rest = _split_readout(model, readout_name)
    try:
        probe = jax.eval_shape(lambda m, x: m(x), model, jnp.zeros((1,) + input_shape,
                                                                   theta.dtype))
    except (ValueError, TypeError) as err:
        raise ValueError(f"the model cannot be applied to inputs of shape (n, "
                         f"{', '.join(map(str, input_shape))}): {err}") from err
    k = math.prod(probe.shape)
    checks.fits_in_memory(f"the feature rows of {n} inputs ({n * k} x P, P={theta.shape[0]})",
                          n * k * theta.shape[0] * 8, "lower n or the readout's size")
    return ReconstructionProblem(
        features=_readout_features(graphdef),
        state=(readout_state, rest),
        theta=theta,
        n=n,
        input_shape=input_shape,
        radius=radius,
        name=f"{type(model).__name__} readout {readout_name!r} (k={k}, P={theta.shape[0]})",
    )


class SyntheticSetup(NamedTuple):
    """One synthetic random-features experiment: the data (``X`` and the labels ``y``), the
    trained model, its fit report and the key left for the solver."""

    dataset: Dataset
    model: RandomFeatures
    fit: FitReport
    key: Array


def check_synthetic_rf_fits(n: int, d: int, p: int, dtype=jnp.float32) -> float:
    """Raise ``MemoryError`` (before anything is drawn) if the synthetic set-up of
    :func:`setup_synthetic_rf` cannot fit: the data (``n x d``), ``V`` (``p x d``) and the
    features of the fit and of the solver (``n x p``, float64). Returns the bytes needed."""
    n, d, p = (checks.positive_int(name, v) for name, v in (("n", n), ("d", d), ("p", p)))
    size = jnp.dtype(dtype).itemsize
    return checks.fits_in_memory(
        f"the random-features set-up with n={n}, d={d}, p={p} (data n x d, V p x d, features "
        f"n x p in float64)", size * (n * d + p * d + p) + 8 * 2 * n * p, "lower n, d or p")


def setup_synthetic_rf(n: int, d: int, p: int, seed: int = 0, activation: str = "relu",
                       label_noise: float = 0.5, dtype=jnp.float32) -> SyntheticSetup:
    """The authors' synthetic set-up: ``n`` points on the sphere of radius ``sqrt(d)`` with
    labels ``y = x . g + noise`` (:func:`recon.data.synthetic_regression`), an RF model with
    ``p`` features fitted to the minimum-norm interpolator, and the solver's key.

    One ``seed`` is split into three keys (data, ``V``, solver); the data and ``V`` do not
    depend on ``p`` beyond ``V``'s first ``p`` rows. Unpacks as
    ``dataset, model, fit, key = setup_synthetic_rf(...)``.
    """
    check_synthetic_rf_fits(n, d, p, dtype)
    key_data, key_model, key_solver = jax.random.split(jax.random.key(seed), 3)
    dataset = synthetic_regression(key_data, n, d, noise=label_noise, dtype=dtype)
    model = RandomFeatures(d, p, activation, rngs=nnx.Rngs(params=key_model), dtype=dtype)
    return SyntheticSetup(dataset, model, fit_min_norm(model, dataset.X, dataset.y), key_solver)
