"""A first guess at the training inputs of a random-features model from the moments of its
readout, before any optimisation (the method of moments).

For ``phi(x) = act(V x)`` with rows ``v_j ~ N(0, I / r^2)`` and inputs on the sphere of radius
``r``, write ``w_j = r v_j`` (standard Gaussian) and ``u_i = x_i / r`` (unit vectors). A readout
in the span of the training features, ``theta = sum_i a_i phi(x_i)`` (every readout fitted by
least squares, ridge or gradient descent from zero), has over the draw of ``V``

    E[theta_j (w_j w_j^T - I)] = c_2 sum_i a_i u_i u_i^T,     E[theta_j w_j] = c_1 sum_i a_i u_i,

with ``c_k = E[act(z) He_k(z)]``, ``z ~ N(0, 1)``, the Hermite coefficients of ``act``. So the
eigenvectors of the sample average ``M_2`` with the ``n`` eigenvalues largest in magnitude
point towards the inputs, and the first moment gives each its sign. This is an observation
used as a start, not a theorem of the paper: the inputs are not orthogonal, so close
eigenvalues mix them, and ``M_2`` carries a sampling error of order ``sqrt(d / p)``, so inputs
with a small share ``a_i`` of ``theta`` are missed. The solver refines the guess
(``Solver.informed_start``).
"""

from __future__ import annotations

import numpy as np

from recon import checks

#: no guess when ``p d^2`` (the work of ``M_2``) is above this
MAX_WORK = 4e9
#: no guess when ``|c_2|`` is below this fraction of ``sqrt(E[act(z)^2])`` (``tanh``: ``c_2 = 0``)
MIN_SECOND_COEFFICIENT = 1e-3


def hermite_coefficients(act, degree: int = 2, nodes: int = 80) -> np.ndarray:
    """``c_k = E[act(z) He_k(z)]`` for ``k = 0..degree`` and ``E[act(z)^2]`` last, ``z ~
    N(0, 1)``, by Gauss-Hermite quadrature (probabilists' weights)."""
    z, weight = np.polynomial.hermite_e.hermegauss(checks.positive_int("nodes", nodes))
    weight = weight / weight.sum()
    values = np.asarray(act(z), dtype=np.float64)
    He = np.polynomial.hermite_e.hermevander(z, checks.nonnegative_int("degree", degree))
    return np.append(weight @ (values[:, None] * He), weight @ values**2)


def _readout_moments(W: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first moment ``(1/p) sum_j theta_j w_j`` and ``M_2`` of the part of ``theta`` that
    neither a constant nor ``W m_1`` explain (their expectation in ``M_2`` is zero; removing
    them lowers its sampling error)."""
    p, d = W.shape
    m1 = W.T @ theta / p
    rest = theta - theta.mean() - W @ m1
    return m1, (W.T * rest) @ W / p - rest.mean() * np.eye(d)


def moment_guess(V, theta, n: int, radius: float, act, mask=None) -> np.ndarray | None:
    """``n`` guessed inputs (``n x d``, on the sphere of ``radius``) from the readout ``theta``
    of the RF model with weights ``V`` (``p x d``) and activation ``act``; rows where ``mask``
    is 0 (padding, :func:`recon.problems.pad_features`) are left out. ``None`` where no guess
    is made: ``n > d``, ``p d^2`` above :data:`MAX_WORK`, or ``c_2`` of ``act`` (near) zero."""
    V = np.asarray(V, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    if V.ndim != 2 or theta.shape != V.shape[:1]:
        raise ValueError(f"V must be p x d and theta of length p, got shapes {V.shape} and "
                         f"{theta.shape}")
    if mask is not None:
        keep = np.asarray(mask) != 0
        V, theta = V[keep], theta[keep]
    p, d = V.shape
    n = checks.positive_int("n", n)
    c0, c1, c2, energy = hermite_coefficients(act)
    if n > d or p * d * d > MAX_WORK or abs(c2) < MIN_SECOND_COEFFICIENT * np.sqrt(energy):
        return None
    m1, M2 = _readout_moments(V * radius, theta)
    values, vectors = np.linalg.eigh(M2)
    top = np.argsort(-np.abs(values))[:n]
    U = vectors[:, top]
    sign = np.sign(U.T @ m1) * np.sign(c1 or 1.0) * np.sign(values[top]) * np.sign(c2)
    return (U * np.where(sign == 0, 1.0, sign)).T * radius
