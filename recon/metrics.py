"""Comparing a reconstruction ``X_hat`` with the training inputs ``X``.

Candidates are matched to training points by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``); per-sample errors are ``||x - x_hat|| / sqrt(d)``
(signed) or ``min(||x - x_hat||, ||x + x_hat||) / sqrt(d)`` (sign-aware, for activations that
cannot tell ``x`` from ``-x``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from recon import checks


def _as_flat_pair(X_hat, X) -> tuple[np.ndarray, np.ndarray]:
    X_hat = np.asarray(X_hat, np.float64)
    X = np.asarray(X, np.float64)
    if X_hat.shape != X.shape:
        raise ValueError(f"reconstruction shape {X_hat.shape} does not match data shape {X.shape}")
    if X.ndim < 2:
        raise ValueError(f"expected a batch of inputs (n, ...), got shape {X.shape}")
    return X_hat.reshape(len(X_hat), -1), X.reshape(len(X), -1)


def pairwise_errors(X_hat, X, sign_aware: bool = True) -> np.ndarray:
    """``E[i, j] = ||x_j - x_hat_i|| / sqrt(d)`` (or the sign-aware minimum over ``+-x_hat_i``)."""
    X_hat, X = _as_flat_pair(X_hat, X)
    d = X.shape[1]

    def dist(A, B):
        sq = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
        return np.sqrt(np.maximum(sq, 0.0))

    E = dist(X_hat, X)
    if sign_aware:
        E = np.minimum(E, dist(-X_hat, X))
    return E / np.sqrt(d)


class Matching(NamedTuple):
    """``order[j]`` is the candidate matched to training point ``j``; ``errors[j]`` its error."""

    order: np.ndarray
    errors: np.ndarray


def match(X_hat, X, sign_aware: bool = True) -> Matching:
    """Hungarian matching of candidates to training points minimising the summed error."""
    E = pairwise_errors(X_hat, X, sign_aware)
    rows, cols = linear_sum_assignment(E)
    order = np.empty(len(cols), dtype=int)
    order[cols] = rows
    return Matching(order, E[order, np.arange(E.shape[1])])


def per_sample_errors(X_hat, X, sign_aware: bool = True) -> np.ndarray:
    """Matched per-sample errors, one per training point, in the training order."""
    return match(X_hat, X, sign_aware).errors


def mean_matched_error(X_hat, X, sign_aware: bool = True) -> float:
    """Mean of the matched per-sample errors."""
    return float(per_sample_errors(X_hat, X, sign_aware).mean())


def recovered_fraction(X_hat, X, threshold: float = 1e-2, sign_aware: bool = True) -> float:
    """Share of training points whose matched error is below ``threshold``."""
    threshold = checks.positive_float("threshold", threshold)
    return float(np.mean(per_sample_errors(X_hat, X, sign_aware) < threshold))


def feature_span_residuals(F_true, F_hat) -> np.ndarray:
    """For each true feature row ``phi(x_i)``, the norm of its part outside the span of the
    rows of ``F_hat``, divided by ``sqrt(p)``."""
    F_true = np.asarray(F_true, np.float64)
    F_hat = np.asarray(F_hat, np.float64)
    if F_true.ndim != 2 or F_hat.ndim != 2 or F_true.shape[1] != F_hat.shape[1]:
        raise ValueError(f"feature matrices must be (n, p) with the same p, got "
                         f"{F_true.shape} and {F_hat.shape}")
    Q, _ = np.linalg.qr(F_hat.T)
    outside = F_true - (F_true @ Q) @ Q.T
    return np.linalg.norm(outside, axis=1) / np.sqrt(F_true.shape[1])
