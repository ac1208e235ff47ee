"""A first guess at the training inputs of a random-features model from the moments of its
readout, before any optimisation (the method of moments).

For ``phi(x) = act(V x)`` with rows ``v_j ~ N(0, I / r^2)`` and inputs on the sphere of radius
``r``, write ``w_j = r v_j`` (standard Gaussian) and ``u_i = x_i / r`` (unit vectors). A readout
in the span of the training features, ``theta = sum_i a_i phi(x_i)`` (every readout fitted by
least squares, ridge or gradient descent from zero), has over the draw of ``V``

    E[theta_j (w_j w_j^T - I)] = c_2 sum_i a_i u_i u_i^T,     E[theta_j w_j] = c_1 sum_i a_i u_i,

with ``c_k = E[act(z) He_k(z)]``, ``z ~ N(0, 1)``, the Hermite coefficients of ``act``. So the
eigenvectors of the sample average ``M_2`` with the ``n`` eigenvalues largest in magnitude
point towards the inputs, and the first moment gives each its sign. The same holds for any
vector in the span of some inputs' features, such as the part of ``theta`` that a set of
candidates leaves out: its moments point at the inputs that are missing. This is an observation
used as a start, not a theorem of the paper: the inputs are not orthogonal, so close
eigenvalues mix them, and ``M_2`` carries a sampling error of order ``sqrt(d / p)``, so inputs
with a small share ``a_i`` of ``theta`` are missed. The solver refines the guess
(``Solver.informed_start``).
"""

from __future__ import annotations

import jax.numpy as jnp
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


def guesses_anything(act, p: int, d: int) -> bool:
    """Whether the moments of an RF readout with ``p`` features of ``d`` inputs and activation
    ``act`` are worth a guess: ``c_2`` not (near) zero and ``p d^2`` at most :data:`MAX_WORK`."""
    _, _, c2, energy = hermite_coefficients(act)
    return abs(c2) >= MIN_SECOND_COEFFICIENT * np.sqrt(energy) and p * d * d <= MAX_WORK


def readout_moments(V, vector, radius: float, mask=None):
    """The first moment ``m_1 = (1/p) sum_j vector_j w_j`` (``w_j = radius v_j``) and ``M_2`` of
    the part of ``vector`` that neither a constant nor ``W m_1`` explain (their expectation in
    ``M_2`` is zero; removing them lowers its sampling error), over the rows where ``mask``
    is not 0 (padding). JAX-traceable."""
    W = V * radius
    keep = jnp.ones(V.shape[0], W.dtype) if mask is None else (mask != 0).astype(W.dtype)
    p = keep.sum()
    m1 = W.T @ (keep * vector) / p
    rest = keep * (vector - (keep * vector).sum() / p - W @ m1)
    return m1, (W.T * rest) @ W / p - rest.sum() / p * jnp.eye(W.shape[1], dtype=W.dtype)


def moment_guess(V, vector, k: int, radius: float, coefficients, mask=None):
    """``k`` guessed inputs (``k x d``, on the sphere of ``radius``, strongest first) whose
    features span most of ``vector`` (``theta``, or a part of it), for the RF model with
    weights ``V`` (``p x d``) and an activation of Hermite ``coefficients``
    (:func:`hermite_coefficients`); rows where ``mask`` is 0 are left out. JAX-traceable."""
    if V.ndim != 2 or vector.shape != V.shape[:1]:
        raise ValueError(f"V must be p x d and the vector of length p, got shapes {V.shape} "
                         f"and {vector.shape}")
    if not 0 < k <= V.shape[1]:
        raise ValueError(f"k must be between 1 and d = {V.shape[1]} guesses, got {k}")
    c1, c2 = float(coefficients[1]), float(coefficients[2])
    m1, M2 = readout_moments(V, vector, radius, mask)
    values, vectors = jnp.linalg.eigh(M2)
    top = jnp.argsort(-jnp.abs(values))[:k]
    U = vectors[:, top]
    sign = jnp.sign(U.T @ m1) * np.sign(c1 or 1.0) * jnp.sign(values[top]) * np.sign(c2)
    return (U * jnp.where(sign == 0, 1.0, sign)).T * radius
