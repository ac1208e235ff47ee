"""The theorems chapter: its validated settings, one helper per section of the notebook, the
checks that end each section and the numbers it glues.

:class:`TheoremChecks` is built from the notebook's parameters cell first
(``TheoremChecks.from_parameters(globals())``), so a wrong value (as papermill may inject)
stops the run with a clear message before any computation. Each section then runs in three
steps:

- a helper computes it (:func:`landing_runs`, :func:`circle_residuals`,
  :func:`circles_through`, :func:`rank_scans`, :func:`null_datasets`, :func:`symmetry_runs`);
- a *verdict* checks what the chapter claims about it against the tolerances below
  (:func:`circle_verdict`, :func:`landing_verdict`, :func:`rank_verdict`,
  :func:`local_rank_verdict`, :func:`null_dataset_verdict`, :func:`symmetry_verdict`) and
  raises an ``AssertionError`` naming what failed, so a check that stops holding fails the
  run instead of drawing a wrong figure;
- a *headline* returns the glued values, rounded (:func:`circle_headline`, ...), for
  :func:`recon.book.glue.glue_all`.

The figures are drawn by :mod:`recon.chapters.theorems_plots`; the science is
:mod:`recon.theory`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recon import checks, loss, metrics, precision, problems, solver, theory
from recon.book.claims import Claim, claim
from recon.book.glue import decimals, significant
from recon.chapters.settings import ChapterSettings
from recon.models import ACTIVATIONS
from recon.theory import RankScan

#: Activations with a continuous derivative: for them the rank is ``min(p - n, (d - 1) n)``,
#: so it becomes full exactly at ``p = d n``. ReLU's is never full before ``d n``, but can be
#: a few units later.
SMOOTH_ACTIVATIONS = ("tanh", "relu+tanh", "softplus")

# The tolerances every verdict ends with.
AT_TRAINING_POINT = 1e-10  #: r at a training point: zero up to float64 rounding
CLEARLY_POSITIVE = 1e-3  #: r on a random great circle away from its start
ZERO_R = 1e-6  #: a one-point run "reaches r = 0" below this (and phi(x) is "all zero")
MIN_LANDING = 0.9  #: share of one-point runs on a training point at the largest p
ZERO_LOSS = 1e-12  #: a dataset "has zero loss" below this relative loss
SAME = 1e-6  #: "back at the truth": mean matched error over sqrt(d)
FLIPPED_LOSS = 1e-3  #: the loss with signs flipped, for activations that see the sign


def _check(ok, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``ok`` (a verdict that ``python -O`` keeps)."""
    if not ok:
        raise AssertionError(message)


#: the statement each section's verdicts check, as the chapter states it
CLAIMS = {
    "circles": "On random great circles r is zero at the training point and clearly positive "
               "elsewhere, below as above the threshold; above it no second zero of r is "
               "found, below the one-point count one is.",
    "landing": "Above the threshold every zero of r the one-point solver finds is a training "
               "point, and at the largest ratio most runs find one.",
    "rank": "The rank of the restricted Jacobian never exceeds min(p - n, (d - 1) n); for the "
            "smooth activations it equals that bound, so it is full exactly from p = dn; "
            "ReLU is never full before dn.",
    "local_rank": "recon.theory.local_rank, one model per p, gives the scanned ranks around "
                  "the jump.",
    "null_dataset": "Below the threshold the polish ends at a different dataset with zero "
                    "loss; above it, it returns to the truth.",
    "symmetry": "Every sample is recovered up to its sign; flipping signs keeps the loss at "
                "zero for the odd activation only, and the others recover the sign too.",
}


def section_claim(name: str, verdict, args: tuple, values: dict) -> Claim:
    """The claim ``name`` of :data:`CLAIMS`, holding when ``verdict(*args)`` passes; its
    values are the section's glued ``values``, plus the failed check's message when it
    fails (so the page says what failed instead of stopping)."""
    try:
        verdict(*args)
    except AssertionError as err:
        return claim(name, CLAIMS[name], False, failed_check=str(err), **values)
    return claim(name, CLAIMS[name], True, **values)


# ----------------------------------------------------------------------------- settings


def _pair(name: str, value) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be an [n, d] pair, got {value!r}")
    return checks.size_pairs(name, [value], minimum_d=2)[0]


def _activations(name: str, value) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of activation names, got {value!r}")
    names = [checks.choice(name, a, ACTIVATIONS) for a in value]
    if len(set(names)) != len(names):
        raise ValueError(f"{name} lists an activation twice: {names}")
    return names


def p_at(ratio: float, n: int, d: int) -> int:
    """``p = round(ratio * d * n)``."""
    return round(ratio * d * n)


@dataclass(frozen=True)
class TheoremChecks(ChapterSettings):
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
        set_ = partial(object.__setattr__, self)
        self._check_theorem1(set_)
        self._check_rank(set_)
        self._check_null_and_symmetry(set_)
        checks.nonnegative_int("seed", self.seed)
        checks.positive_float("threshold", self.threshold)

    def _check_theorem1(self, set_) -> None:
        checks.positive_int("n", self.n)
        checks.positive_int("d", self.d, minimum=2)
        checks.choice("activation", self.activation, ACTIVATIONS)
        set_("circle_ratios", checks.increasing_ratios("circle_ratios", self.circle_ratios))
        if len(self.circle_ratios) < 2 or not (self.circle_ratios[0] < 1 < self.circle_ratios[-1]):
            raise ValueError(f"circle_ratios needs one p/(d n) below 1 and one above, got "
                             f"{self.circle_ratios}")
        checks.positive_int("num_dirs", self.num_dirs)
        checks.positive_int("num_points", self.num_points, minimum=3)
        set_("landing_ratios", checks.increasing_ratios("landing_ratios", self.landing_ratios))
        checks.positive_int("num_starts", self.num_starts)
        checks.positive_int("one_point_steps", self.one_point_steps)
        for name in ("circle_ratios", "landing_ratios"):
            low = p_at(getattr(self, name)[0], self.n, self.d)
            if low <= self.n:
                raise ValueError(f"{name}: the smallest ratio gives p = {low} <= n = {self.n}; "
                                 f"the features must span more than the training points")

    def _check_rank(self, set_) -> None:
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

    def _check_null_and_symmetry(self, set_) -> None:
        set_("null_size", _pair("null_size", self.null_size))
        set_("null_ratios", checks.increasing_ratios("null_ratios", self.null_ratios))
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

    @property
    def dn(self) -> int:
        """``d * n`` of the Theorem 1 size."""
        return self.d * self.n

    @property
    def count_ratio(self) -> float:
        """``p / (d n)`` at the one-point count ``p - n = d - 1`` (Theorem 1 size)."""
        return (self.d + self.n - 1) / self.dn

    def p(self, ratio: float, size: tuple[int, int] | None = None) -> int:
        """``p = round(ratio * d * n)`` at ``size`` (default: the Theorem 1 size)."""
        n, d = size if size is not None else (self.n, self.d)
        return p_at(ratio, n, d)


def run_keys(settings: TheoremChecks) -> tuple:
    """The keys of the great circles, the one-point solver and the sign check, from the
    one ``seed``."""
    return tuple(jax.random.split(jax.random.key(settings.seed), 3))


# ---------------------------------------------------------------- Theorem 1: one sample


class OnePointRun(NamedTuple):
    """The one-point solver on one model: the model, its training points ``X``, the
    :class:`recon.theory.Landing` of the runs and ``spurious``, the runs that reached another
    zero of ``r`` (:func:`spurious_zeros`)."""

    model: object
    X: object
    landing: theory.Landing
    spurious: np.ndarray


def spurious_zeros(model, landing: theory.Landing) -> np.ndarray:
    """Runs that reach ``r = 0`` (below ``ZERO_R``) away from every training point, at a point
    whose features are not all zero (``phi(x) = 0``, every ReLU unit inactive, lies in every
    span trivially)."""
    alive = np.linalg.norm(np.asarray(model.features(landing.X)), axis=1) > ZERO_R
    return np.flatnonzero((landing.residuals < ZERO_R) & (landing.errors > landing.threshold)
                          & alive)


@precision.float64
def landing_runs(settings: TheoremChecks, ratios, key) -> dict[float, OnePointRun]:
    """The one-point solver (:func:`recon.theory.landing_share`) from ``num_starts`` random
    starts on the model of each ratio ``p / (d n)`` (:func:`recon.theory.trained_rf`, the
    same data for every ``p``)."""
    runs = {}
    for ratio in ratios:
        model, X = theory.trained_rf(settings.activation, settings.n, settings.d,
                                     settings.p(ratio), settings.seed)
        landing = theory.landing_share(model, X, key, settings.num_starts,
                                       settings.one_point_steps, threshold=settings.threshold)
        runs[ratio] = OnePointRun(model, X, landing, spurious_zeros(model, landing))
    return runs


@precision.float64
def circle_residuals(settings: TheoremChecks, runs: dict, key) -> dict:
    """The span residual along ``num_dirs`` random great circles from each training point
    (:func:`recon.theory.residual_along_great_circles`), for the model of each run."""
    return {ratio: theory.residual_along_great_circles(run.model, run.X, key, settings.num_dirs,
                                                       settings.num_points)
            for ratio, run in runs.items()}


@precision.float64
def circles_through(settings: TheoremChecks, runs: dict) -> dict:
    """For each run, ``r`` along one great circle (:func:`residual_through`): from the nearest
    training point through the best other zero of ``r`` the solver found, or from ``x_0``
    through ``x_1`` when it found none. Maps a label to ``(angles, r, [0, angle])``."""
    through = {}
    for ratio, run in runs.items():
        X = run.X
        if run.spurious.size:
            x_star = run.landing.X[run.spurious[np.argmin(run.landing.residuals[run.spurious])]]
            start = int(np.argmin(np.linalg.norm(np.asarray(X) - x_star, axis=1)))
            target, what = x_star, f"$x_{start}$ to a zero found by the solver"
        else:
            start, target, what = 0, X[1], "$x_0$ to $x_1$"
        angles, r, angle = residual_through(run.model, X, X[start], target, settings.num_points)
        through[f"$p/(dn) = {ratio:g}$: {what}"] = (angles, r, [0, angle])
    return through


@precision.float64
def residual_through(model, X_train, x0, x1, num_points: int = 129
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """The span residual ``r`` (:func:`recon.theory.span_residual` against ``phi(X_train)``)
    along the great circle from ``x0`` through ``x1`` (both on the sphere of radius
    ``sqrt(d)``), at ``num_points`` angles in ``[0, pi]`` plus the angle of ``x1`` itself, so
    that the curve passes exactly through both points. Returns ``(angles, r, angle of x1)``."""
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


def circle_verdict(settings: TheoremChecks, circles: dict, runs: dict) -> None:
    """``r`` is zero at the start of every circle; its median over the random circles is
    clearly positive at every other angle but ``pi`` (``-x_i``), for every ratio; at the
    largest ratio every single circle is; a second zero is found below the one-point count
    ``p - n < d - 1`` and none at the largest ratio."""
    for ratio, res in circles.items():
        start = float(np.max(res.residuals[..., 0]))
        _check(start < AT_TRAINING_POINT, f"p/(dn) = {ratio:g}: r = {start:.1e} at a training "
               f"point, not zero (>= {AT_TRAINING_POINT:.0e})")
        median = np.median(res.residuals.reshape(-1, len(res.angles)), axis=0)[1:-1]
        _check(median.min() > CLEARLY_POSITIVE, f"p/(dn) = {ratio:g}: the median of r over "
               f"the random circles falls to {median.min():.1e} <= {CLEARLY_POSITIVE:.0e}")
    low, high = settings.circle_ratios[0], settings.circle_ratios[-1]
    inner = float(circles[high].residuals[..., 1:-1].min())
    _check(inner > CLEARLY_POSITIVE, f"p/(dn) = {high:g}: r falls to {inner:.1e} <= "
           f"{CLEARLY_POSITIVE:.0e} on a random circle above the threshold")
    if settings.p(low) - settings.n < settings.d - 1:  # fewer equations than unknowns
        _check(runs[low].spurious.size > 0, f"p/(dn) = {low:g}: no second zero of r found "
               f"below the one-point count p - n = d - 1")
    _check(runs[high].spurious.size == 0, f"p/(dn) = {high:g}: {runs[high].spurious.size} "
           f"runs found a second zero of r above the threshold")


def circle_headline(settings: TheoremChecks, runs: dict) -> dict:
    """``circle_p_low``, ``circle_p_high`` and the share of one-point runs that found another
    zero of ``r`` at the low ratio (``spurious_share_low``, 2 decimals)."""
    low, high = settings.circle_ratios[0], settings.circle_ratios[-1]
    return {"circle_p_low": settings.p(low), "circle_p_high": settings.p(high),
            "spurious_share_low": decimals(runs[low].spurious.size / settings.num_starts, 2)}


def landing_shares(settings: TheoremChecks, runs: dict) -> tuple[dict, dict]:
    """By ratio (``"0.25"``): the share of runs that land on a training point and the share
    that find another zero of ``r`` (3 decimals)."""
    shares = {f"{ratio:g}": decimals(run.landing.share, 3) for ratio, run in runs.items()}
    others = {f"{ratio:g}": decimals(run.spurious.size / settings.num_starts, 3)
              for ratio, run in runs.items()}
    return shares, others


def landing_verdict(runs: dict, min_landing: float = MIN_LANDING) -> None:
    """At ``p >= d n`` every zero the one-point solver finds is a training point (Theorem
    1), and at the largest ratio a share ``min_landing`` of the runs finds one."""
    for ratio, run in runs.items():
        _check(ratio < 1 or run.spurious.size == 0, f"p/(dn) = {ratio:g}: {run.spurious.size} "
               f"runs found a zero of r off the training points above the threshold")
    largest = max(runs)
    share = runs[largest].landing.share
    _check(share >= min_landing, f"p/(dn) = {largest:g}: only a share {share:.3g} of the runs "
           f"landed on a training point (expected >= {min_landing:g})")


def landing_headline(settings: TheoremChecks, runs: dict) -> dict:
    """``landing_share`` and ``other_zero_share`` by ratio, and ``count_ratio`` (2
    decimals)."""
    shares, others = landing_shares(settings, runs)
    return {"landing_share": shares, "other_zero_share": others,
            "count_ratio": decimals(settings.count_ratio, 2)}


# ------------------------------------------------------ Theorem 2, locally: the rank scan


def rank_key(activation: str, n: int, d: int) -> str:
    """The key of one scan in the glued ``rank_jump`` mapping: ``"relu,n=3,d=10"``."""
    return f"{activation},n={n},d={d}"


def scan_to_full_rank(activation: str, n: int, d: int, window: int, max_ratio: float = 2.0,
                      seed: int = 0, rtol: float = 1e-8) -> RankScan:
    """:func:`recon.theory.rank_scan` over ``p = d n - window, ..., d n + window``; if the rank
    is not full there yet (ReLU at small sizes), the scan goes on in blocks of
    ``2 window + 1`` values of ``p`` until it is, or until ``p`` passes ``max_ratio * d n``
    (then ``jump`` is None)."""
    n, d = checks.positive_int("n", n), checks.positive_int("d", d, minimum=2)
    window = checks.positive_int("window", window)
    max_ratio = checks.positive_float("max_ratio", max_ratio)
    dn = d * n
    stop = max(dn + window, math.floor(max_ratio * dn))
    low, high = max(n + 1, dn - window), dn + window
    parts = []
    while True:
        parts.append(theory.rank_scan(activation, n, d, list(range(low, high + 1)), seed, rtol))
        if parts[-1].jump is not None or high >= stop:
            break
        low, high = high + 1, min(stop, high + 2 * window + 1)
    jumps = [s.jump for s in parts if s.jump is not None]
    return parts[0]._replace(**{field: np.concatenate([getattr(s, field) for s in parts])
                                for field in ("p_values", "ranks", "bounds", "sigma_min")},
                             jump=min(jumps) if jumps else None)


def rank_scans(settings: TheoremChecks) -> dict[str, RankScan]:
    """:func:`scan_to_full_rank` for every activation and size, by :func:`rank_key`."""
    return {rank_key(act, n, d): scan_to_full_rank(act, n, d, settings.rank_window,
                                                   settings.relu_scan_max_ratio,
                                                   settings.seed, settings.rank_rtol)
            for act in settings.rank_activations for n, d in settings.rank_sizes}


def rank_jumps(scans: dict) -> dict:
    """The smallest ``p`` with full rank, by scan (None where the scan found none)."""
    return {key: s.jump for key, s in scans.items()}


def rank_verdict(scans: dict) -> None:
    """The bound ``rank <= min(p - n, (d - 1) n)`` holds everywhere; for the smooth
    activations the rank is exactly the bound, full at ``p = d n`` and not one feature
    earlier; ReLU is never full before ``d n``; below ``d n`` the ``(d - 1) n``-th singular
    value is below the rank tolerance."""
    for key, s in scans.items():
        dn, above = s.n * s.d, s.ranks > s.bounds
        _check(not above.any(), f"{key}: rank {s.ranks[above].tolist()} above its bound "
               f"min(p - n, (d - 1) n) = {s.bounds[above].tolist()} at p = "
               f"{s.p_values[above].tolist()}")
        if s.activation in SMOOTH_ACTIVATIONS:
            _check(np.array_equal(s.ranks, s.bounds), f"{key}: a smooth activation's rank "
                   f"{s.ranks.tolist()} differs from its bound {s.bounds.tolist()}")
            _check(s.jump == dn, f"{key}: full rank at p = {s.jump}, not at d n = {dn}")
        else:
            _check(s.jump is None or s.jump >= dn, f"{key}: full rank at p = {s.jump}, "
                   f"before d n = {dn}")
        early = s.sigma_min[s.p_values < dn].max(initial=0)
        _check(early <= s.rtol, f"{key}: below d n the (d - 1) n-th singular value is "
               f"{early:.1e} of the largest, above the rank tolerance {s.rtol:.0e}")


@precision.float64
def local_rank_verdict(settings: TheoremChecks, scans: dict) -> None:
    """The library's :func:`recon.theory.local_rank` (one model per ``p``) gives the scanned
    ranks around the jump at the first size, for every activation."""
    n, d = settings.rank_sizes[0]
    for act in settings.rank_activations:
        s = scans[rank_key(act, n, d)]
        for p in sorted({n * d - 1, s.jump or n * d}):
            rank, _ = theory.local_rank(*theory.trained_rf(act, n, d, p, settings.seed),
                                        rtol=settings.rank_rtol)
            scanned = s.ranks[list(s.p_values).index(p)]
            _check(rank == scanned, f"{rank_key(act, n, d)}, p = {p}: local_rank gives "
                   f"{rank}, the scan {scanned}")


def rank_headline(scans: dict) -> dict:
    """``rank_jump`` by scan and ``relu_late``, ``p - d n`` at the jump for the non-smooth
    activations (``"none scanned"`` if there are none)."""
    jumps = rank_jumps(scans)
    late = {k: v - scans[k].n * scans[k].d for k, v in jumps.items()
            if scans[k].activation not in SMOOTH_ACTIVATIONS and v is not None}
    return {"rank_jump": jumps, "relu_late": late or "none scanned"}


# ------------------------------------------- below the threshold: a different dataset


@precision.float64
def null_datasets(settings: TheoremChecks) -> tuple[np.ndarray, dict]:
    """:func:`recon.theory.null_direction_dataset` at ``null_size`` for each of
    ``null_ratios`` (the same data for both). Returns the true data and the datasets by
    ratio."""
    null = {}
    for ratio in settings.null_ratios:
        model, X = theory.trained_rf(settings.activation, *settings.null_size,
                                     settings.p(ratio, settings.null_size), settings.seed)
        null[ratio] = theory.null_direction_dataset(model, X, step=settings.null_step,
                                                    steps=settings.null_steps,
                                                    rtol=settings.rank_rtol)
    return np.asarray(X), null


def null_report(settings: TheoremChecks, null: dict) -> str:
    """One line per ratio: rank, loss, distance to the truth before and after the polish."""
    return "\n".join(f"p = {settings.p(ratio, settings.null_size)}: rank {res.rank}/"
                     f"{res.full_rank}, loss {res.loss:.1e}, distance to the truth "
                     f"{res.distance:.3f} (after the step: {res.start_distance:.3f})"
                     for ratio, res in null.items())


def null_dataset_verdict(null: dict) -> None:
    """Below the threshold (the smaller ratio) the Jacobian has a null direction and the
    polish ends at a *different* zero-loss dataset (at least half as far from the truth as
    the step took it); above it (the larger ratio) the rank is full and the polish returns
    to the truth."""
    below, above = null[min(null)], null[max(null)]
    _check(below.rank < below.full_rank, f"p/(dn) = {min(null):g}: the Jacobian has full "
           f"rank {below.rank} below the threshold, so no null direction")
    _check(below.loss < ZERO_LOSS, f"p/(dn) = {min(null):g}: the second dataset has loss "
           f"{below.loss:.1e}, not below {ZERO_LOSS:.0e}")
    _check(below.distance > 0.5 * below.start_distance, f"p/(dn) = {min(null):g}: the polish "
           f"went back to distance {below.distance:.3g} from the truth (the step: "
           f"{below.start_distance:.3g}), no different dataset")
    _check(above.rank == above.full_rank, f"p/(dn) = {max(null):g}: rank {above.rank} < "
           f"{above.full_rank} above the threshold")
    _check(above.loss < ZERO_LOSS and above.distance < SAME, f"p/(dn) = {max(null):g}: the "
           f"polish ended at loss {above.loss:.1e}, distance {above.distance:.1e} from the "
           f"truth (expected < {ZERO_LOSS:.0e} and < {SAME:.0e})")


def null_headline(settings: TheoremChecks, null: dict) -> dict:
    """``null_below_p``; the loss (2 significant digits) and distance (3 decimals) of the
    dataset below the threshold; the distance above (2 significant digits)."""
    below, above = settings.null_ratios
    return {"null_below_p": settings.p(below, settings.null_size),
            "null_below_loss": significant(null[below].loss, 2),
            "null_below_distance": decimals(null[below].distance, 3),
            "null_above_distance": significant(null[above].distance, 2)}


# ------------------------------------------------------------------ symmetries: the sign


class SymmetryRuns(NamedTuple):
    """The sign check at ``p``, by activation: the solver's matched errors
    (``{"sign-aware": e, "signed": e}``), the loss at the truth with every other sign flipped
    and the solver's final loss."""

    p: int
    sign_errors: dict
    flip_loss: dict
    solve_loss: dict


@precision.float64
def symmetry_runs(settings: TheoremChecks, key) -> SymmetryRuns:
    """For each of ``symmetry_activations``: the solver (``preset("default")``) on the float64
    model at ``symmetry_size`` and ``symmetry_ratio``, and the loss
    (:func:`recon.loss.projection_loss`, no ridge) at the truth with every other sign
    flipped."""
    n, d = settings.symmetry_size
    p = settings.p(settings.symmetry_ratio, settings.symmetry_size)
    flips = jnp.where(jnp.arange(n) % 2 == 1, -1.0, 1.0)[:, None]
    runs = SymmetryRuns(p, {}, {}, {})
    for act in settings.symmetry_activations:
        ds, model, _, _ = problems.setup_synthetic_rf(n, d, p, settings.seed, act,
                                                      dtype=jnp.float64)
        problem = problems.random_features_problem(model, n)
        result = solver.solve(problem, solver.preset("default", max_steps=settings.symmetry_steps),
                              key, progress=False)
        runs.sign_errors[act] = {
            "sign-aware": metrics.per_sample_errors(result.X, ds.X, sign_aware=True),
            "signed": metrics.per_sample_errors(result.X, ds.X, sign_aware=False)}
        runs.flip_loss[act] = float(loss.projection_loss(problem, ds.X * flips, ridge=0.0))
        runs.solve_loss[act] = result.loss
    return runs


def symmetry_report(runs: SymmetryRuns) -> str:
    """One line per activation: the solver's loss and the loss with signs flipped."""
    return "\n".join(f"{act:10s} solver loss {runs.solve_loss[act]:.1e}   loss with signs "
                     f"flipped {runs.flip_loss[act]:.1e}" for act in runs.flip_loss)


def symmetry_verdict(runs: SymmetryRuns, threshold: float) -> None:
    """Every sample is recovered up to sign; for an odd activation flipping signs keeps the
    loss at zero; for the others it does not, and the sign itself is recovered."""
    for act, errors in runs.sign_errors.items():
        worst, flip = float(np.max(errors["sign-aware"])), runs.flip_loss[act]
        _check(worst < threshold, f"{act}: a sample not recovered even up to sign (error "
               f"{worst:.1e} >= threshold {threshold:g})")
        if act in theory.ODD_ACTIVATIONS:
            _check(flip < ZERO_LOSS, f"{act} is odd, yet the loss with signs flipped is "
                   f"{flip:.1e}, not below {ZERO_LOSS:.0e}")
            continue
        _check(flip > FLIPPED_LOSS, f"{act} sees the sign, yet the loss with signs flipped is "
               f"only {flip:.1e} (expected > {FLIPPED_LOSS:.0e})")
        signed = float(np.max(errors["signed"]))
        _check(signed < threshold, f"{act} sees the sign, yet a sample was recovered with the "
               f"wrong sign (signed error {signed:.1e} >= threshold {threshold:g})")


def symmetry_headline(runs: SymmetryRuns, threshold: float) -> dict:
    """``flip_loss`` by activation (2 significant digits), ``flipped_samples`` (samples whose
    signed error is above ``threshold``) and ``symmetry_p``."""
    return {"flip_loss": {act: significant(v, 2) for act, v in runs.flip_loss.items()},
            "flipped_samples": {act: int(np.sum(e["signed"] > threshold))
                                for act, e in runs.sign_errors.items()},
            "symmetry_p": runs.p}
