"""Training the readout. Gradient descent from zero on the squared loss converges to the
minimum-norm interpolator ``theta = pinv(Phi) y``, which lies in the span of the training
features (the rows of ``Phi``); we compute it directly."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recon.models import RandomFeatures

Array = jax.Array


class FitReport(NamedTuple):
    """Outcome of training: the train mean squared error and the condition number of
    ``Phi Phi^T`` (large means the features barely span ``n`` directions)."""

    train_mse: float
    gram_condition: float


def fit_min_norm(model: RandomFeatures, X: Array, y: Array) -> FitReport:
    """Set ``model.theta`` to the minimum-norm least-squares solution ``pinv(Phi) y``.

    ``Phi = phi(X)`` is ``n x p``. With ``p >= n`` and distinct inputs the labels are
    interpolated (train MSE ~ 0). Solved in float64 through ``Phi^T (Phi Phi^T)^+ y``.
    """
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    if X.ndim != 2 or X.shape[1] != model.d:
        raise ValueError(f"X must have shape (n, d={model.d}), got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape (n,) = ({X.shape[0]},), got {y.shape}")
    Phi = np.asarray(model.features(X), dtype=np.float64)
    gram = Phi @ Phi.T
    if not np.all(np.isfinite(gram)):
        raise FloatingPointError("the training features contain NaN or inf")
    coef, *_ = np.linalg.lstsq(gram, np.asarray(y, np.float64), rcond=None)
    theta = Phi.T @ coef
    model.theta[...] = jnp.asarray(theta, model.theta[...].dtype)
    residual = np.asarray(model(X), np.float64) - np.asarray(y, np.float64)
    return FitReport(float(np.mean(residual**2)), float(np.linalg.cond(gram)))
