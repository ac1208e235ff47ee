"""What leaks before the law: what an attacker who holds only ``theta`` learns about the
training set when ``p < d n`` (where exact recovery is impossible), and how close a
reconstruction that is not exact comes to the data.

Notation (PAPER.md): ``theta`` (length ``P``) lies in the span of the feature rows
``phi(x_1), ..., phi(x_n)``; ``L(X_hat)`` is the projection loss of :mod:`recon.loss`.

Membership. For a query point ``x`` the attacker asks whether ``x`` can be one of the ``n``
training points:

* :func:`one_point_scores`: ``L`` of ``x`` alone, ``||theta - P(x) theta||^2 / ||theta||^2``,
  the share of ``theta`` outside the span of ``x``'s own feature rows. One feature map per
  query, no optimisation. A training point carries its own coefficient in ``theta``, so its
  share is lower on average; the score needs nothing but ``theta`` and the feature map.
* :func:`pinned_losses`: the smallest ``L`` reachable with ``x`` pinned as one candidate and the
  other ``n - 1`` free (the solver on :func:`pinned_problem`). It is 0 for every training
  point; for a fresh point it is 0 too as long as ``n - 1`` free candidates can span what is
  left of ``theta`` (roughly ``p <= (n - 1) d``), and positive above.

:func:`pinned_losses_many` solves the pinned problems of several trained models in one batch.
:func:`membership_auc` turns member and non-member scores into the area under the ROC curve
(scikit-learn's ``roc_auc_score``; lower score means "member"). :func:`best_match_cosines`
and :func:`principal_angles` measure a reconstruction that is close without being exact, and
:func:`onset` finds where a curve measured against ``p / (d n)`` crosses a level.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from recon import checks, precision
from recon.loss import projection_share
from recon.problems import ReconstructionProblem, real_feature_count

Array = jax.Array


def _queries(problem: ReconstructionProblem, queries) -> Array:
    """``queries`` checked as ``m`` inputs of the problem's input shape (flat rows allowed)."""
    Q = checks.finite_array("queries", queries)
    shape = tuple(problem.input_shape)
    if Q.ndim == 1 and Q.shape == (problem.d,):
        Q = Q[None]
    if Q.ndim < 2 or math.prod(Q.shape[1:]) != problem.d:
        raise ValueError(f"queries must be m inputs of shape {shape} (or flat rows of "
                         f"{problem.d} entries), got shape {tuple(Q.shape)}")
    return Q.reshape((Q.shape[0],) + shape)


@precision.float64
def one_point_scores(problem: ReconstructionProblem, queries) -> np.ndarray:
    """For each query ``x`` (``m x input_shape``), ``||theta - P(x) theta||^2 / ||theta||^2``:
    the projection loss of ``x`` alone as the only candidate (``P(x)`` projects on the span of
    its ``k`` feature rows). In ``[0, 1]``; lower means ``x`` explains more of ``theta``."""
    Q = _queries(problem, queries)
    return np.asarray(_one_point_scores(problem.features, problem.state, problem.theta, Q))


@functools.partial(jax.jit, static_argnums=0)
def _one_point_scores(features, state, theta, Q):
    """:func:`one_point_scores`, compiled once per feature map and shapes."""
    return jax.lax.map(lambda x: projection_share(features(state, x[None]), theta), Q)


@functools.lru_cache(maxsize=None)
def _outside(features):
    """``features`` followed by the projection away from the rows of ``state["U"]``;
    cached, so pinned problems built from one problem share one feature map (and stack)."""
    if features is None:
        return None

    def pinned(state, X, *args):
        F = features(state["base"], X, *args)
        U = state["U"].astype(F.dtype)
        return F - (F @ U.T) @ U

    return pinned


@precision.float64
def pinned_problem(problem: ReconstructionProblem, x) -> tuple[ReconstructionProblem, float]:
    """The problem left when the input ``x`` is pinned as one of the ``n`` candidates: ``n - 1``
    free candidates, features and ``theta`` projected away from the span of ``x``'s feature
    rows (orthonormal rows ``U``; none when ``phi(x) = 0``, e.g. every ReLU unit off). Since
    ``span(F, U) = span(F (I - U^T U), U)``,

        L([x, X_free]) = L'(X_free) * ||theta'||^2 / ||theta||^2,   theta' = (I - U^T U) theta,

    where ``L'`` is the pinned problem's loss. Returns the problem and that factor (the share
    of ``theta`` outside ``x``'s rows, :func:`one_point_scores`)."""
    if problem.n < 2:
        raise ValueError(f"pinning a candidate needs n >= 2 (one pinned, n - 1 free), got "
                         f"n={problem.n}: for n = 1 the pinned loss is one_point_scores")
    x = _queries(problem, x)
    if x.shape[0] != 1:
        raise ValueError(f"pinned_problem pins one input, got {x.shape[0]}")
    F_x = problem.features(problem.state, x).astype(jnp.float64)
    Q, R = jnp.linalg.qr(F_x.T)
    diagonal = jnp.abs(jnp.diagonal(R))
    # rows of U for directions F_x does not have are zero (they project nothing), so U keeps
    # the shape (k, P) and pinned problems of one problem stack, also when phi(x) = 0
    U = Q.T * (diagonal > 1e-12 * jnp.maximum(jnp.max(diagonal), 1e-300))[:, None]
    theta = problem.theta.astype(jnp.float64)
    rest = theta - U.T @ (U @ theta)
    factor = float((rest @ rest) / (theta @ theta))
    dtype = problem.theta.dtype
    pinned = replace(
        problem,
        features=_outside(problem.features),
        smoothed_features=_outside(problem.smoothed_features),
        switched_features=_outside(problem.switched_features),
        state={"base": problem.state, "U": U.astype(dtype)},
        theta=rest.astype(dtype),
        n=problem.n - 1,
        name=f"{problem.name}, one candidate pinned",
        real_features=real_feature_count(problem) - int(jnp.count_nonzero(jnp.any(U != 0, 1))),
    )
    return pinned, factor


def pinned_losses(problem: ReconstructionProblem, queries, solver, key,
                  progress: bool = False, allow_underdetermined: bool = False) -> np.ndarray:
    """For each query ``x``, the smallest projection loss the ``solver`` reaches with ``x``
    pinned as one candidate and the other ``n - 1`` free (:func:`pinned_problem`), all
    queries solved side by side (:func:`pinned_losses_many`)."""
    return pinned_losses_many([(problem, queries)], solver, [key], progress,
                              allow_underdetermined)[0]


def pinned_losses_many(pairs, solver, keys, progress: bool = False,
                       allow_underdetermined: bool = False) -> list[np.ndarray]:
    """:func:`pinned_losses` for several ``(problem, queries)`` pairs (problems stacked as
    :func:`recon.solver.solve_batch` needs: one feature map and one ``P``, e.g. RF problems
    padded by :func:`recon.problems.pad_features`), one key each, every pinned problem solved
    in one batch. A pinned problem solved to the solver's tolerance scores 0, as does a query
    whose own features already hold ``theta`` (nothing left to solve), so members and others
    that are both solved tie; otherwise the score is an upper bound on the minimum. A pinned
    problem is underdetermined exactly when its problem is (``allow_underdetermined`` as in
    :func:`recon.solver.solve_batch`)."""
    from recon.solver import solve_batch

    pairs = [(problem, _queries(problem, Q)) for problem, Q in pairs]
    keys = list(keys)
    if len(keys) != len(pairs):
        raise ValueError(f"keys must hold one key per (problem, queries) pair ({len(pairs)}), "
                         f"got {len(keys)}")
    pins, owners, subkeys = [], [], []
    for g, ((problem, Q), key) in enumerate(zip(pairs, keys)):
        subkeys.extend(jax.random.split(key, len(Q)))
        pins.extend(pinned_problem(problem, x) for x in Q)
        owners.extend([g] * len(Q))
    scores = np.zeros(len(pins))
    open_ = [i for i, (_, factor) in enumerate(pins) if factor > 1e-12]
    if open_:
        results = solve_batch([pins[i][0] for i in open_], solver,
                              [subkeys[i] for i in open_], progress=progress,
                              allow_underdetermined=allow_underdetermined)
        for i, r in zip(open_, results):
            scores[i] = 0.0 if r.loss <= solver.tol else r.loss * pins[i][1]
    owners = np.array(owners)
    return [scores[owners == g] for g in range(len(pairs))]


def membership_auc(member_scores, other_scores) -> float:
    """Area under the ROC curve of telling members (training points) from other points by a
    score where lower means "member" (scikit-learn's ``roc_auc_score``): 0.5 is chance, 1 a
    perfect attack. Ties count one half."""
    from sklearn.metrics import roc_auc_score

    a = np.asarray(checks.finite_array("member_scores", member_scores)).ravel()
    b = np.asarray(checks.finite_array("other_scores", other_scores)).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"membership_auc needs scores of both kinds, got {a.size} member and "
                         f"{b.size} other scores")
    labels = np.r_[np.ones(a.size), np.zeros(b.size)]
    return float(roc_auc_score(labels, -np.r_[a, b]))


def _rows_pair(X_hat, X) -> tuple[np.ndarray, np.ndarray]:
    A = np.asarray(checks.finite_array("X_hat", X_hat), np.float64)
    B = np.asarray(checks.finite_array("X", X), np.float64)
    A, B = A.reshape(len(A), -1), B.reshape(len(B), -1)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"X_hat and X must have rows of one length, got {A.shape[1]} and "
                         f"{B.shape[1]}")
    if not (np.linalg.norm(A, axis=1).all() and np.linalg.norm(B, axis=1).all()):
        raise ValueError("X_hat and X must not hold zero rows")
    return A, B


def best_match_cosines(X_hat, X, sign_aware: bool = True) -> np.ndarray:
    """For each training point ``x_i``, ``max_j cos(x_i, x_hat_j)`` over the candidates
    (``|cos|`` when ``sign_aware``): 1 when some candidate points exactly along ``x_i``, about
    ``sqrt(2 log m / d)`` for ``m`` random candidates in high dimension."""
    A, B = _rows_pair(X_hat, X)
    cos = (B / np.linalg.norm(B, axis=1, keepdims=True)) @ (
        A / np.linalg.norm(A, axis=1, keepdims=True)).T
    return (np.abs(cos) if sign_aware else cos).max(axis=1)


def principal_angles(X_hat, X) -> np.ndarray:
    """Principal angles (radians, largest first) between the spans of the rows of ``X_hat``
    and of ``X`` in ``R^d`` (scipy's ``subspace_angles``): all 0 when the reconstruction spans
    the same subspace as the data, even if no single row is recovered."""
    from scipy.linalg import subspace_angles

    A, B = _rows_pair(X_hat, X)
    return subspace_angles(A.T, B.T)


def onset(ratios, values, level: float, rising: bool = True) -> float | None:
    """The ratio at which the curve ``values`` (measured at increasing ``ratios``, e.g.
    ``p / (d n)``) crosses ``level`` for good: the last crossing, interpolated linearly in
    ``log(ratio)``. ``None`` if the curve ends on the wrong side of ``level``; the first ratio
    if it starts on the right side (the onset is at or below the grid)."""
    r = np.asarray(ratios, np.float64)
    v = np.asarray(values, np.float64)
    if r.ndim != 1 or r.shape != v.shape or r.size == 0:
        raise ValueError(f"ratios and values must be 1-d of one non-zero length, got shapes "
                         f"{r.shape} and {v.shape}")
    if not (np.all(r > 0) and np.all(np.diff(r) > 0)):
        raise ValueError(f"ratios must be positive and increasing, got {r.tolist()}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite, got {v.tolist()}")
    above = v >= level if rising else v <= level
    if not above[-1]:
        return None
    if above.all():
        return float(r[0])
    i = int(np.flatnonzero(~above)[-1])  # last point on the wrong side
    lo, hi = np.log(r[i]), np.log(r[i + 1])
    t = (level - v[i]) / (v[i + 1] - v[i])
    return float(np.exp(lo + t * (hi - lo)))
