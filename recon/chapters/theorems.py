"""Validated settings of the theorems chapter, and the one scan it needs beyond
:mod:`recon.theory`.

:class:`TheoremChecks` is built from the notebook's parameters cell first, so a wrong value
(as papermill may inject) stops the run with a clear message before any computation.

:func:`rank_scan` measures the rank of the restricted Jacobian of
``X_hat -> (I - P(X_hat)) theta`` (:func:`recon.theory.restricted_jacobian`) over many ``p``
at once. :func:`recon.theory.rank_jump` builds one model and compiles one Jacobian per ``p``
(about a second each on a laptop CPU); here the largest model is built once and the smaller
ones are its first ``p`` features (the same data and nested ``V``, as
:func:`recon.theory.trained_rf` draws them), with the unused features masked out, so one
compiled, vmapped Jacobian serves every ``p``. The ranks agree with
:func:`recon.theory.local_rank` (``tests/test_theorem_chapter.py`` checks this).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np

from recon import checks
from recon.models import ACTIVATIONS

#: Activations with a continuous derivative: for them the rank is ``min(p - n, (d - 1) n)``,
#: so it becomes full exactly at ``p = d n``. ReLU's is never full before ``d n``, but can be
#: a few units later.
SMOOTH_ACTIVATIONS = ("tanh", "relu+tanh", "softplus")


def _pair(name: str, value) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be an [n, d] pair, got {value!r}")
    return checks.size_pairs(name, [value], minimum_d=2)[0]


def _ratios(name: str, value) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of numbers, got {value!r}")
    ratios = [checks.positive_float(name, r) for r in value]
    if any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"{name} must be increasing, got {ratios}")
    return ratios


def _activations(name: str, value) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of activation names, got {value!r}")
    names = [checks.choice(name, a, ACTIVATIONS) for a in value]
    if len(set(names)) != len(names):
        raise ValueError(f"{name} lists an activation twice: {names}")
    return names


def p_at(ratio: float, n: int, d: int) -> int:
    """``p = round(ratio * d * n)``."""
    return int(round(ratio * d * n))


@dataclass(frozen=True)
class TheoremChecks:
    """The theorems chapter: Theorem 1 on one size ``(n, d)``, the local rank of Theorem 2 on
    ``rank_sizes``, a null-direction dataset on ``null_size`` and the sign symmetry on
    ``symmetry_size``.

    Every ``p`` is given as a ratio ``p / (d n)``; each must leave ``p > n``.
    """

    n: int = 5
    d: int = 20
    activation: str = "relu"
    circle_ratios: list = (0.15, 4.0)
    num_dirs: int = 16
    num_points: int = 129
    landing_ratios: list = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0)
    num_starts: int = 64
    one_point_steps: int = 2000
    rank_activations: list = ("relu", "tanh", "relu+tanh", "softplus")
    rank_sizes: list = ((3, 10), (6, 10), (5, 20))
    rank_window: int = 4
    relu_scan_max_ratio: float = 2.0
    rank_rtol: float = 1e-8
    null_size: list = (3, 5)
    null_ratios: list = (0.67, 4.0)
    null_step: float = 0.2
    null_steps: int = 3000
    symmetry_activations: list = ("tanh", "relu", "relu+tanh")
    symmetry_size: list = (4, 10)
    symmetry_ratio: float = 10.0
    symmetry_steps: int = 5000
    seed: int = 0
    threshold: float = 1e-2

    def __post_init__(self):
        checks.positive_int("n", self.n)
        checks.positive_int("d", self.d, minimum=2)
        checks.choice("activation", self.activation, ACTIVATIONS)
        set_ = partial(object.__setattr__, self)
        set_("circle_ratios", _ratios("circle_ratios", self.circle_ratios))
        if len(self.circle_ratios) < 2 or not (self.circle_ratios[0] < 1 < self.circle_ratios[-1]):
            raise ValueError(f"circle_ratios needs one p/(d n) below 1 and one above, got "
                             f"{self.circle_ratios}")
        checks.positive_int("num_dirs", self.num_dirs)
        checks.positive_int("num_points", self.num_points, minimum=3)
        set_("landing_ratios", _ratios("landing_ratios", self.landing_ratios))
        checks.positive_int("num_starts", self.num_starts)
        checks.positive_int("one_point_steps", self.one_point_steps)
        for name in ("circle_ratios", "landing_ratios"):
            low = p_at(getattr(self, name)[0], self.n, self.d)
            if low <= self.n:
                raise ValueError(f"{name}: the smallest ratio gives p = {low} <= n = {self.n}; "
                                 f"the features must span more than the training points")
        set_("rank_activations", _activations("rank_activations", self.rank_activations))
        set_("rank_sizes", checks.size_pairs("rank_sizes", self.rank_sizes, minimum_d=2))
        if len(set(self.rank_sizes)) < 2:
            raise ValueError(f"rank_sizes needs two or more different (n, d) pairs, got "
                             f"{self.rank_sizes}")
        checks.positive_int("rank_window", self.rank_window)
        for n, d in self.rank_sizes:
            if d * n - self.rank_window <= n:
                raise ValueError(f"rank_window {self.rank_window} reaches p <= n at size "
                                 f"(n={n}, d={d}): take a smaller window or a larger d")
        ratio = checks.positive_float("relu_scan_max_ratio", self.relu_scan_max_ratio)
        if ratio < 1:
            raise ValueError(f"relu_scan_max_ratio must be >= 1, got {ratio}")
        rtol = checks.positive_float("rank_rtol", self.rank_rtol)
        if rtol >= 1:
            raise ValueError(f"rank_rtol must lie in (0, 1), got {rtol}")
        set_("null_size", _pair("null_size", self.null_size))
        set_("null_ratios", _ratios("null_ratios", self.null_ratios))
        if len(self.null_ratios) != 2 or not (self.null_ratios[0] < 1 < self.null_ratios[1]):
            raise ValueError(f"null_ratios must be [below 1, above 1], got {self.null_ratios}")
        if p_at(self.null_ratios[0], *self.null_size) <= self.null_size[0]:
            raise ValueError(f"null_ratios[0] gives p <= n at null_size {self.null_size}")
        checks.positive_float("null_step", self.null_step)
        checks.positive_int("null_steps", self.null_steps)
        set_("symmetry_activations",
             _activations("symmetry_activations", self.symmetry_activations))
        set_("symmetry_size", _pair("symmetry_size", self.symmetry_size))
        if checks.positive_float("symmetry_ratio", self.symmetry_ratio) <= 1:
            raise ValueError(f"symmetry_ratio must be above 1 (p > d n), got "
                             f"{self.symmetry_ratio}")
        checks.positive_int("symmetry_steps", self.symmetry_steps)
        checks.nonnegative_int("seed", self.seed)
        checks.positive_float("threshold", self.threshold)

    @property
    def dn(self) -> int:
        """``d * n`` of the Theorem 1 size."""
        return self.d * self.n

    def p(self, ratio: float, size: tuple[int, int] | None = None) -> int:
        """``p = round(ratio * d * n)`` at ``size`` (default: the Theorem 1 size)."""
        n, d = size if size is not None else (self.n, self.d)
        return p_at(ratio, n, d)

    def as_dict(self) -> dict:
        """The settings as a plain dictionary (for figure sidecars)."""
        return asdict(self)


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


def rank_scan(activation: str, n: int, d: int, p_values, seed: int = 0,
              rtol: float = 1e-8) -> RankScan:
    """The rank of the Jacobian of ``X_hat -> (I - P(X_hat)) theta`` at the true data,
    restricted to the tangent space of the product of spheres, for every ``p`` in
    ``p_values``, with ``theta`` the minimum-norm readout (float64) fitted to the synthetic
    labels. Same models as :func:`recon.theory.trained_rf` (``seed``), same rank rule as
    :func:`recon.theory.local_rank`: the number of singular values above
    ``rtol * sigma_max``."""
    import jax
    import jax.numpy as jnp

    from recon import theory
    from recon.data import synthetic_regression
    from recon.sphere import project_to_sphere
    from recon.models import activation as activation_fn
    from recon.loss import projection_residual

    checks.choice("activation", activation, ACTIVATIONS)
    n, d = checks.positive_int("n", n), checks.positive_int("d", d, minimum=2)
    seed = checks.nonnegative_int("seed", seed)
    rtol = checks.positive_float("rtol", rtol)
    if not isinstance(p_values, (list, tuple, range, np.ndarray)) or len(p_values) == 0:
        raise TypeError(f"p_values must be a non-empty list of integers, got {p_values!r}")
    p_values = sorted({checks.positive_int("p", int(p) if isinstance(p, np.integer) else p,
                                           minimum=n + 1) for p in p_values})
    p_max = p_values[-1]
    model, X = theory.trained_rf(activation, n, d, p_max, seed)
    V = np.asarray(model.V[...], np.float64)
    X = np.asarray(X, np.float64)
    key_data, _ = jax.random.split(jax.random.key(seed))
    y = np.asarray(synthetic_regression(key_data, n, d, dtype=jnp.float64).y)
    act = activation_fn(activation, 0.0)
    Phi = np.asarray(act(jnp.asarray(X @ V.T)))
    masks = np.zeros((len(p_values), p_max))
    thetas = np.zeros((len(p_values), p_max))
    for j, p in enumerate(p_values):  # minimum-norm readouts, as recon.train.fit_min_norm
        masks[j, :p] = 1.0
        coef, *_ = np.linalg.lstsq(Phi[:, :p] @ Phi[:, :p].T, y, rcond=None)
        thetas[j, :p] = Phi[:, :p].T @ coef
    B = jnp.asarray(theory.tangent_basis(jnp.asarray(X)))
    radius = math.sqrt(d)

    def jacobian(mask, theta):
        def residual(U):  # tangent coordinates (n, d - 1) -> (I - P(X_hat)) theta
            X_hat = project_to_sphere(jnp.asarray(X) + jnp.einsum("idk,ik->id", B, U), radius)
            return projection_residual(act(X_hat @ jnp.asarray(V).T) * mask, theta, 0.0)

        return jax.jacfwd(residual)(jnp.zeros((n, d - 1))).reshape(p_max, -1)

    Js = np.asarray(jax.jit(jax.vmap(jacobian))(jnp.asarray(masks), jnp.asarray(thetas)))
    full = (d - 1) * n
    ranks, sigma_min = [], []
    for J, p in zip(Js, p_values):
        sigma = np.linalg.svd(J[:p], compute_uv=False)
        ranks.append(int(np.sum(sigma > rtol * sigma[0])) if sigma[0] > 0 else 0)
        sigma_min.append(sigma[full - 1] / sigma[0] if len(sigma) >= full and sigma[0] > 0
                         else 0.0)
    ranks = np.array(ranks)
    hits = [p for p, r in zip(p_values, ranks) if r == full]
    return RankScan(activation, n, d, np.array(p_values), ranks,
                    np.array([min(p - n, full) for p in p_values]), np.array(sigma_min), full,
                    min(hits) if hits else None, rtol)


def rank_key(activation: str, n: int, d: int) -> str:
    """The key of one scan in the glued ``rank_jump`` mapping: ``"relu,n=3,d=10"``."""
    return f"{activation},n={n},d={d}"


def scan_to_full_rank(activation: str, n: int, d: int, window: int, max_ratio: float = 2.0,
                      seed: int = 0, rtol: float = 1e-8) -> RankScan:
    """:func:`rank_scan` over ``p = d n - window, ..., d n + window``; if the rank is not full
    there yet (ReLU at small sizes), the scan goes on in blocks of ``2 window + 1`` values of
    ``p`` until it is, or until ``p`` passes ``max_ratio * d n`` (then ``jump`` is None)."""
    n, d = checks.positive_int("n", n), checks.positive_int("d", d, minimum=2)
    window = checks.positive_int("window", window)
    max_ratio = checks.positive_float("max_ratio", max_ratio)
    dn = d * n
    stop = max(dn + window, int(math.floor(max_ratio * dn)))
    low, high = max(n + 1, dn - window), dn + window
    parts = []
    while True:
        parts.append(rank_scan(activation, n, d, list(range(low, high + 1)), seed, rtol))
        if parts[-1].jump is not None or high >= stop:
            break
        low, high = high + 1, min(stop, high + 2 * window + 1)
    first = parts[0]
    jumps = [s.jump for s in parts if s.jump is not None]
    return first._replace(**{field: np.concatenate([getattr(s, field) for s in parts])
                             for field in ("p_values", "ranks", "bounds", "sigma_min")},
                          jump=min(jumps) if jumps else None)


def residual_through(model, X_train, x0, x1, num_points: int = 129
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """The span residual ``r`` (:func:`recon.theory.span_residual` against ``phi(X_train)``)
    along the great circle from ``x0`` through ``x1`` (both on the sphere of radius
    ``sqrt(d)``), at ``num_points`` angles in ``[0, pi]`` plus the angle of ``x1`` itself, so
    that the curve passes exactly through both points. Returns ``(angles, r, angle of x1)``."""
    import jax.numpy as jnp

    from recon import theory

    num_points = checks.positive_int("num_points", num_points, minimum=2)
    x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    radius = np.linalg.norm(x0)
    u0 = x0 / radius
    u1 = x1 - (x1 @ u0) * u0
    if np.linalg.norm(u1) <= 1e-12 * np.linalg.norm(x1):
        raise ValueError("x1 is parallel to x0: the great circle through them is undefined")
    u1 = u1 / np.linalg.norm(u1)
    target = float(np.arctan2(x1 @ u1, x1 @ u0))
    angles = np.union1d(np.linspace(0.0, np.pi, num_points), [target])
    points = radius * (np.cos(angles)[:, None] * u0 + np.sin(angles)[:, None] * u1)
    F = model.features(jnp.asarray(X_train, jnp.float64))
    r = np.asarray(theory.span_residual(F, model.features(jnp.asarray(points))))
    return angles, r, target


# ----------------------------------------------------------------------------- plots

#: Values below this are drawn at this floor on logarithmic axes (exact zeros included).
LOG_FLOOR = 1e-18


def plot_great_circles(random: dict, through: dict):
    """Left: the span residual ``r`` along random great circles from the training points
    (``random`` maps a label to a :class:`recon.theory.GreatCircleResiduals`; line: median
    over circles, band: 10% to 90%). Right: ``r`` along single great circles (``through``
    maps a label to ``(angles, r, zeros)``, ``zeros`` the angles of the points the circle was
    drawn through, marked on the curve)."""
    fig, (ax_rand, ax_thru) = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    for label, res in random.items():
        r = np.asarray(res.residuals).reshape(-1, len(res.angles))
        low, mid, high = np.quantile(r, [0.1, 0.5, 0.9], axis=0)
        (line,) = ax_rand.plot(res.angles, mid, label=label)
        ax_rand.fill_between(res.angles, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax_rand.set(xlabel="angle from the training point (rad)", ylabel=r"span residual $r(x)$",
                title="random great circles", xlim=(0, np.pi))
    ax_rand.legend()
    for label, (angles, r, zeros) in through.items():
        (line,) = ax_thru.plot(angles, r, label=label)
        for z in np.atleast_1d(zeros):
            ax_thru.plot([z], [np.interp(z, angles, r)], marker="o", ms=6, mfc="none",
                         color=line.get_color())
    ax_thru.set(xlabel="angle from the training point (rad)",
                title="circles through two zeros of $r$", xlim=(0, np.pi))
    ax_thru.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_landing(ratios, landed, others, count_ratio: float | None = None):
    """Share of one-point runs that land on a training point (``landed``) and share that
    end on another zero of ``r`` (``others``), against ``p / (d n)``; vertical lines at the
    one-point count ``p - n = d - 1`` (``count_ratio``) and at ``p = d n``."""
    ratios = np.asarray(ratios, float)
    fig, ax = plt.subplots()
    ax.plot(ratios, others, marker="s", ls="--", label="find another zero of $r$")
    ax.plot(ratios, landed, marker="o", label="land on a training point")
    ax.axvline(1.0, color="k", ls=":", lw=1, label="$p = dn$")
    if count_ratio is not None:
        ax.axvline(count_ratio, color="0.5", ls="-.", lw=1, label="$p - n = d - 1$")
    ax.set_xscale("log")
    ax.set(xlabel="$p / (dn)$", ylabel="share of runs", ylim=(-0.03, 1.03),
           title="one-point solver from random starts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rank_scans(scans: list):
    """One column per size ``(n, d)``: the rank of the restricted Jacobian divided by the
    full rank ``(d - 1) n`` (top; dashed: the bound ``min(p - n, (d - 1) n)``) and its
    ``(d - 1) n``-th singular value relative to the largest (bottom, log scale), against
    ``p - d n``, for each activation. ``scans`` is a list of
    :class:`RankScan`."""
    sizes = list(dict.fromkeys((s.n, s.d) for s in scans))
    fig, axes = plt.subplots(2, len(sizes), figsize=(3.4 * len(sizes), 5.2), sharex="col",
                             squeeze=False)
    markers = dict(zip(dict.fromkeys(s.activation for s in scans), "osD^vx+*"))
    for col, (n, d) in enumerate(sizes):
        ax_rank, ax_sigma = axes[0, col], axes[1, col]
        dn = d * n
        bound_drawn = False
        for s in (s for s in scans if (s.n, s.d) == (n, d)):
            x = s.p_values - dn
            if not bound_drawn:
                ax_rank.plot(x, s.bounds / s.full_rank, color="k", ls="--", lw=1,
                             label=r"$\min(p-n, (d-1)n)$")
                ax_sigma.axhline(s.rtol, color="k", ls=":", lw=1, label="rank tolerance")
                bound_drawn = True
            jump = "none" if s.jump is None else f"{s.jump - dn:+d}"
            ax_rank.plot(x, s.ranks / s.full_rank, marker=markers[s.activation], ms=4,
                         mfc="none", lw=1, label=f"{s.activation} (full at $dn${jump})")
            ax_sigma.semilogy(x, np.maximum(s.sigma_min, LOG_FLOOR),
                              marker=markers[s.activation], ms=4, mfc="none", lw=1,
                              label=s.activation)
        ax_rank.axvline(0, color="0.6", lw=0.8)
        ax_sigma.axvline(0, color="0.6", lw=0.8)
        ax_rank.set(title=f"$n={n}$, $d={d}$ ($dn={dn}$)",
                    ylabel="rank / $(d-1)n$" if col == 0 else None)
        ax_sigma.set(xlabel="$p - dn$",
                     ylabel=r"$\sigma_{(d-1)n} / \sigma_{\max}$" if col == 0 else None)
        ax_rank.legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_null_datasets(X, alternatives: dict):
    """The true data ``X`` (``n x d``, filled markers) next to each alternative dataset
    (``alternatives`` maps a panel title to an ``n x d`` array, crosses), coordinate by
    coordinate, one colour per sample."""
    X = np.asarray(X)
    fig, axes = plt.subplots(1, len(alternatives), figsize=(4.7 * len(alternatives), 3.4),
                             sharey=True, squeeze=False)
    coords = np.arange(X.shape[1])
    for ax, (title, X_alt) in zip(axes[0], alternatives.items()):
        X_alt = np.asarray(X_alt)
        for i in range(X.shape[0]):
            (line,) = ax.plot(coords, X[i], marker="o", lw=1, alpha=0.7,
                              label=f"$x_{i}$" if i < 3 else None)
            ax.plot(coords, X_alt[i], marker="x", ls="--", lw=1, ms=8,
                    color=line.get_color(), label=rf"$\hat x_{i}$" if i < 3 else None)
        ax.set(xlabel="coordinate", title=title, xticks=coords)
    axes[0, 0].set(ylabel="value")
    axes[0, 0].legend(ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


def plot_sign_errors(errors: dict, threshold: float):
    """Matched per-sample errors, sign-aware and signed, one panel per activation
    (``errors`` maps an activation to ``{"sign-aware": e, "signed": e}``), log scale, with
    the recovery ``threshold`` dotted."""
    fig, axes = plt.subplots(1, len(errors), figsize=(3.3 * len(errors), 3.3), sharey=True,
                             squeeze=False)
    for ax, (act, measures) in zip(axes[0], errors.items()):
        width = 0.8 / len(measures)
        for j, (label, e) in enumerate(measures.items()):
            idx = np.arange(len(e))
            ax.bar(idx + (j - (len(measures) - 1) / 2) * width,
                   np.maximum(np.asarray(e), LOG_FLOOR), width=width, label=label)
        ax.set_yscale("log")
        ax.axhline(threshold, color="k", ls=":", lw=1)
        ax.set(title=act, xlabel="training sample $i$", xticks=np.arange(len(e)))
    axes[0, 0].set(ylabel=r"matched error / $\sqrt{d}$")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
