"""Defences against reconstruction, each a transformation of a trained random-features model
(its readout ``theta``), and the privacy accounting of the Gaussian mechanism.

Released in place of ``theta``:

* :func:`gaussian_noise`: ``theta + sigma z``, ``z ~ N(0, I_P)`` (the Gaussian mechanism);
* :func:`quantize`: each entry rounded to one of ``2^bits`` evenly spaced levels on
  ``[-max |theta_j|, max |theta_j|]``;
* :func:`prune`: the smallest ``fraction`` of the entries (by magnitude) set to zero.

The other defences change training, not the released vector: ridge (:func:`recon.train.fit_ridge`)
and early stopping (:func:`recon.train.fit_early_stopped`). Both leave ``theta`` in the span of
the training features, which is all the attack uses. :func:`train_first_layer` trains the
features too (a two-layer network whose first layer starts at ``V``), so that the readout no
longer lies in the span of the final features.

:func:`ridge_sensitivity` bounds how far the ridge readout moves when one training sample is
replaced, and :func:`gaussian_epsilon` turns a noise level and that bound into the
``(epsilon, delta)`` of the analytic Gaussian mechanism (Balle & Wang, 2018).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recon import checks, train
from recon.models import FixedWeights, RandomFeatures
from recon.networks import TwoLayer
from recon.train import TrainReport


def with_readout(model: RandomFeatures, theta) -> RandomFeatures:
    """A copy of ``model`` (``nnx.clone``) whose readout is ``theta``; ``model`` is unchanged."""
    if not isinstance(model, RandomFeatures):
        raise TypeError(f"model must be a RandomFeatures model, got {type(model).__name__}")
    theta = jnp.asarray(checks.finite_array("theta", theta), model.theta[...].dtype)
    if theta.shape != (model.p,):
        raise ValueError(f"theta must have shape (p,) = ({model.p},), got {theta.shape}")
    copy = nnx.clone(model)
    copy.theta[...] = theta
    return copy


def _theta(model: RandomFeatures) -> jax.Array:
    if not isinstance(model, RandomFeatures):
        raise TypeError(f"model must be a RandomFeatures model, got {type(model).__name__}")
    return model.theta[...]


def gaussian_noise(model: RandomFeatures, sigma: float, key) -> RandomFeatures:
    """The model with readout ``theta + sigma z``, ``z ~ N(0, I_P)`` drawn from ``key``."""
    sigma = checks.positive_float("sigma", sigma, allow_zero=True)
    theta = _theta(model)
    return with_readout(model, theta + sigma * jax.random.normal(key, theta.shape, theta.dtype))


def quantize(model: RandomFeatures, bits: int) -> RandomFeatures:
    """The model with each readout entry rounded to the nearest of ``2^bits`` evenly spaced
    levels on ``[-m, m]``, ``m = max_j |theta_j|`` (``bits = 1``: ``+-m``, the signs alone)."""
    bits = checks.positive_int("bits", bits)
    if bits > 52:
        raise ValueError(f"bits must be at most 52 (float64's mantissa), got {bits}")
    theta = np.asarray(_theta(model), np.float64)
    m = float(np.max(np.abs(theta)))
    if m == 0:
        return with_readout(model, theta)
    step = 2 * m / (2**bits - 1)
    return with_readout(model, np.round((theta + m) / step) * step - m)


def prune(model: RandomFeatures, fraction: float) -> RandomFeatures:
    """The model with the ``fraction`` of readout entries of smallest magnitude set to zero
    (``round(fraction * P)`` entries; ties broken by position)."""
    fraction = checks.fraction("fraction", fraction)
    theta = np.array(_theta(model))
    drop = int(round(fraction * theta.size))
    theta[np.argsort(np.abs(theta), kind="stable")[:drop]] = 0
    return with_readout(model, theta)


class FirstLayerTrained(NamedTuple):
    """Outcome of :func:`train_first_layer`.

    Attributes:
        model: what the attack sees, as a random-features model: ``V`` the trained first
            layer, ``theta = W2 - W2(0)`` the readout's change.
        network: the trained two-layer network ``W2 act(W1 x)`` (its predictions).
        first_layer_moved: ``||W1 - W1(0)||_F / ||W1(0)||_F``.
        report: the training report (:class:`recon.train.TrainReport`).
    """

    model: RandomFeatures
    network: TwoLayer
    first_layer_moved: float
    report: TrainReport


def train_first_layer(model: RandomFeatures, X, y, rate: float, key, max_steps: int = 5000,
                      tol: float = 1e-10) -> FirstLayerTrained:
    """The defence "train the first layer too": the two-layer network ``W2 act(W1 x)`` (one
    output) with ``W1(0) = V`` (``model``'s features) and ``W2(0)`` i.i.d. ``N(0, 1/p)``
    drawn from ``key``, trained on ``X, y`` by full-batch gradient descent on both layers,
    the first at ``rate`` times the readout's step (:func:`recon.train.train_full_batch`
    with ``lr_scale={"W1": rate}``).

    At ``rate = 0`` the first layer stays at ``V``: every step of the readout is a
    combination of the ``act(V x_i)``, so ``theta = W2 - W2(0)`` lies in the span of the
    training features, as for random features. At ``rate > 0`` the features move while the
    readout learns, and ``theta`` (a sum of combinations of the features of every step) no
    longer lies in the span of the final ones, which are what the attacker sees: the returned
    ``model`` (``V`` = trained ``W1``, readout ``theta``) poses exactly the problem
    :func:`recon.problems.readout_problem` poses for the network, in a form that
    :func:`recon.problems.pad_features` can pad.
    """
    if not isinstance(model, RandomFeatures):
        raise TypeError(f"model must be a RandomFeatures model, got {type(model).__name__}")
    if model.streamed:
        raise ValueError("train_first_layer needs the stored V (a model built without chunk)")
    rate = checks.positive_float("rate", rate, allow_zero=True)
    V = model.V[...]
    network = TwoLayer(model.d, model.p, k=1, activation=model.activation,
                       rngs=nnx.Rngs(params=key), dtype=V.dtype)
    network.W1[...] = V
    report = train.train_full_batch(network, X, y, max_steps=max_steps, tol=tol,
                                    progress=False, lr_scale={"W1": rate})
    W1 = network.W1[...]
    moved = float(jnp.linalg.norm(W1 - V) / jnp.linalg.norm(V))
    seen = nnx.clone(model)
    seen.V = FixedWeights(W1)
    seen.theta[...] = (network.W2[...] - report.initial_readout)[0]
    return FirstLayerTrained(seen, network, moved, report)


def feature_norm_bound(model: RandomFeatures) -> float:
    """``B >= ||phi(x)||`` for every ``x`` on the sphere of radius ``sqrt(d)``, from ``V`` alone:
    ``||relu(V x)|| <= ||V x|| <= s sqrt(d)`` with ``s`` the largest singular value of ``V``;
    ``|tanh| <= 1`` gives ``sqrt(p)``; ``softplus(z) <= relu(z) + log 2``."""
    if not isinstance(model, RandomFeatures):
        raise TypeError(f"model must be a RandomFeatures model, got {type(model).__name__}")
    if model.streamed:
        raise ValueError("feature_norm_bound needs the stored V (a model built without chunk)")
    s = float(np.linalg.norm(np.asarray(model.V[...], np.float64), 2))
    linear = s * math.sqrt(model.d)
    bounds = {"relu": linear, "tanh": min(linear, math.sqrt(model.p)),
              "relu+tanh": linear + min(linear, math.sqrt(model.p)),
              "softplus": linear + math.log(2) * math.sqrt(model.p)}
    return bounds[model.activation]


def ridge_sensitivity(feature_bound: float, label_bound: float, lam: float, n: int) -> float:
    """An upper bound on ``||theta(D) - theta(D')||`` for the ridge readout
    (:func:`recon.train.fit_ridge`) of two training sets ``D, D'`` of ``n`` samples that differ
    in one sample:

        Delta = 2 B Y (B / sqrt(lam) + 1) / (n lam).

    It assumes: every feature vector has ``||phi(x)|| <= B`` (:func:`feature_norm_bound`, which
    holds for inputs on the sphere and the fixed ``V``, drawn before the data), every label
    ``|y| <= Y`` (clip the labels to make it true), and ``theta`` is the exact minimiser. The
    objective is ``2 lam``-strongly convex and the changed sample moves its gradient by at most
    ``(2/n) 2 B (B ||theta|| + Y)`` with ``||theta|| <= Y / sqrt(lam)`` (Chaudhuri, Monteleoni
    & Sarwate 2011, output perturbation). The minimum-norm interpolator (``lam = 0``) has no such
    bound: its sensitivity is unbounded and noise on it gives no privacy guarantee."""
    B = checks.positive_float("feature_bound", feature_bound)
    Y = checks.positive_float("label_bound", label_bound)
    lam = checks.positive_float("lam", lam)
    n = checks.positive_int("n", n)
    return 2 * B * Y * (B / math.sqrt(lam) + 1) / (n * lam)


def _gaussian_delta(epsilon: float, mu: float) -> float:
    """``delta(epsilon)`` of the Gaussian mechanism with ``mu = sensitivity / sigma``."""
    from scipy.stats import norm

    # e^epsilon Phi(b) <= Phi(a) <= 1, so the exponent is <= 0; for huge epsilon its two terms
    # cancel in floating point, so it is capped there
    exponent = min(epsilon + float(norm.logcdf(-mu / 2 - epsilon / mu)), 0.0)
    return float(norm.cdf(mu / 2 - epsilon / mu) - math.exp(exponent))


def gaussian_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """The smallest ``epsilon`` for which ``theta + N(0, sigma^2 I)`` is
    ``(epsilon, delta)``-differentially private when ``theta`` has L2 sensitivity
    ``sensitivity`` (the analytic Gaussian mechanism of Balle & Wang 2018: exact, for every
    ``epsilon``, unlike the classic ``sigma >= Delta sqrt(2 log(1.25/delta)) / epsilon``, which
    needs ``epsilon < 1``). ``inf`` for ``sigma = 0``; 0 when ``delta`` already covers it."""
    from scipy.optimize import brentq

    sigma = checks.positive_float("sigma", sigma, allow_zero=True)
    sensitivity = checks.positive_float("sensitivity", sensitivity)
    delta = checks.fraction("delta", delta)
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if sigma == 0:
        return math.inf
    mu = sensitivity / sigma
    if _gaussian_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while _gaussian_delta(hi, mu) > delta:
        hi *= 2
        if hi > 1e300:
            return math.inf
    return float(brentq(lambda e: _gaussian_delta(e, mu) - delta, hi / 2 if hi > 1 else 0.0,
                        hi, xtol=1e-12, rtol=1e-12))
