"""The law of reconstruction: the phase transition at ``p = d*n``.

One sweep cell (:func:`rf_cell`) trains a random-features model at ``p = ratio * d * n`` and
attacks its ``theta``; :func:`run_grid` runs the chapter's grid (:class:`LawSweep`) as a
cached sweep. :func:`empirical_threshold` turns the recovered fractions along ``ratio`` into
the threshold ``p*/(d*n)`` (where half the samples are recovered), and :func:`fit_slope` fits
``log p* = slope * log(d n) + c`` across sizes (:func:`threshold_summary` does both for the
chapter). The label-fitting law (interpolation at ``p = n``) comes from
:func:`label_fit_curve`; :func:`silent_features` finds the cells where ``theta`` does not
single out the data; :func:`headline` gives the numbers the chapter quotes.
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recon import checks, metrics, precision, problems
from recon.book import benchmark_report, glue, sweep
from recon.book.claims import Claim, claim
from recon.chapters.settings import ChapterSettings
from recon.models import ACTIVATIONS
from recon.solver import preset, solve_batch

#: the parameters the cells of one batch share (:func:`rf_cells`)
BATCH_BY = ("n", "d", "activation", "solver", "max_steps", "threshold", "pad_to")


def rf_cell(n: int, d: int, ratio: float, seed: int, activation: str = "relu",
            solver: str = "default", max_steps: int = 4000, threshold: float = 1e-2,
            pad_to: int = 0) -> dict:
    """Train RF with ``p = round(ratio * d * n)`` features on ``n`` synthetic samples and
    reconstruct them from ``theta`` with the solver preset ``solver`` (one cell of
    :func:`rf_cells`, alone; ``pad_to > p`` pads the problem to that many features first).

    Returns ``p``, the train MSE, the recovered fraction (matched error below ``threshold``),
    the mean matched error, the largest feature-span residual (the paper's measure:
    ``|P_perp(X_hat) phi(x_i)| / sqrt(p)``, :func:`recon.metrics.feature_span_residuals`),
    the final loss, the iterations, whether it was solved (the loss tolerance reached with
    every candidate pinned) and why it stopped (``stop_reason``), the solver's seconds, the
    batch size (1), ``active_features`` (features nonzero at some training input: a ReLU
    feature that is off at all of them gives ``theta_j = 0`` and no equation),
    ``zero_loss_elsewhere`` (the tolerance was reached at a different dataset: ``theta`` does
    not single out the data, whatever the solver) and ``trivially_satisfiable`` (``p <= n``:
    ``theta`` lies in the span of ANY ``n`` candidates, so zero loss says nothing; such cells
    are solved on purpose, :func:`recon.problems.check_determined`, and marked in the
    figures). Runs in float64 (also on a Dask worker).
    """
    (record,) = rf_cells([dict(n=n, d=d, ratio=ratio, seed=seed, activation=activation,
                               solver=solver, max_steps=max_steps, threshold=threshold,
                               pad_to=pad_to)])
    if isinstance(record, Exception):
        raise record
    return record


#: rf_cell's defaults, which a cell of :func:`rf_cells` may leave out
_CELL_DEFAULTS = {name: p.default for name, p in inspect.signature(rf_cell).parameters.items()
                  if p.default is not inspect.Parameter.empty}


#: at most this many multiply-adds ``n d P`` per candidate-feature evaluation at ``p = d n``, a
#: size's blocks cost less than their compilation (:func:`ratio_bands`' ``join_small``): at
#: the quick grid's largest, ``n=3, d=50`` (22,500), a band of 6 cells cost 12 s on its own,
#: the 33 cells of the two bands together 34 s against 28 s for the 27 of the upper one
SMALL_SIZE_WORK = 1e5


def ratio_bands(ratios, spread: float = 2.0, join_small: bool = False) -> list[float]:
    """For each ratio of ``ratios`` (increasing), the largest ratio of its band: bands are
    formed from the smallest ratio up, each holding the ratios within ``spread`` times its
    first. Cells of one band are padded to its largest ``p`` and solved in one batch, so a
    size costs one compilation per band (and at most ``spread`` times the unpadded work).
    With ``join_small`` (a size whose blocks cost less than their compilation:
    :data:`SMALL_SIZE_WORK`), a band of fewer than half as many ratios as the band above
    joins it: its cells are padded further, the upper band's never are."""
    ratios = checks.increasing_ratios("ratios", list(ratios))
    bands, first = [], None
    for r in ratios:
        if first is None or r > spread * first:
            first = r
            bands.append([])
        bands[-1].append(r)
    if join_small:
        for i in range(len(bands) - 2, -1, -1):
            if 2 * len(bands[i]) < len(bands[i + 1]):
                bands[i:i + 2] = [bands[i] + bands[i + 1]]
    return [band[-1] for band in bands for _ in band]


def _cell_metrics(dataset, problem, fit, result, threshold: float, batch_size: int) -> dict:
    """The record of one cell (see :func:`rf_cell`)."""
    errors = metrics.per_sample_errors(result.X, dataset.X)
    recovered = float(np.mean(errors < threshold))
    F_true = problem.feature_matrix(dataset.X)
    active = int(np.any(np.asarray(F_true) != 0, axis=0).sum())
    return {
        "p": problem.P,
        "train_mse": fit.train_mse,
        "recovered_fraction": recovered,
        "mean_error": float(errors.mean()),
        "span_residual": float(metrics.feature_span_residuals(
            F_true, problem.feature_matrix(result.X)).max()),
        "loss": result.loss,
        "iterations": result.iterations,
        "converged": result.converged,
        "stop_reason": result.stop_reason,
        "solve_seconds": result.seconds,
        "batch_size": batch_size,
        "active_features": active,
        "zero_loss_elsewhere": bool(result.stop_reason in ("tol", "unpinned", "round-off")
                                    and recovered < 1),
        "trivially_satisfiable": bool(problems.real_feature_count(problem)
                                      <= problems.feature_rows(problem)),
    }


@precision.float64
def rf_cells(cells: list[dict]) -> list:
    """The batched :func:`rf_cell`: every cell (a dict of its arguments) trains its model,
    its problem is padded to ``pad_to`` features when that exceeds its ``p``
    (:func:`recon.problems.pad_features`, which leaves the loss unchanged), and the cells
    that share ``n, d``, the activation, the solver settings and the padded size are solved
    side by side by :func:`recon.solver.solve_batch`, each from its own key and stopping on
    its own. A cell's numbers depend on its own parameters (``pad_to`` among them), not on
    its companions (up to rounding, for batches of other sizes). Returns each cell's record
    (``solve_seconds``: the batch's wall time until that cell stopped; ``batch_size``: how
    many cells shared it), or the exception that cell raised. Cells with ``p <= n`` are
    solved on purpose (``allow_underdetermined``): each record says so
    (``trivially_satisfiable``) in place of the solver's warning."""
    prepared, batches = [], {}
    for i, cell in enumerate(cells):
        cell = _CELL_DEFAULTS | cell
        ratio = checks.positive_float("ratio", cell["ratio"])
        p = max(1, round(ratio * cell["d"] * cell["n"]))
        setup = problems.setup_synthetic_rf(cell["n"], cell["d"], p, cell["seed"],
                                            cell["activation"])
        problem = problems.random_features_problem(setup.model, cell["n"])
        prepared.append((cell, setup, problem))
        pad_to = checks.nonnegative_int("pad_to", cell["pad_to"])
        key = (cell["n"], cell["d"], cell["activation"], cell["solver"], cell["max_steps"],
               max(p, pad_to), pad_to > 0)
        batches.setdefault(key, []).append(i)
    out: list = [None] * len(cells)
    for (_, _, _, solver_name, max_steps, size, pad), members in batches.items():
        padded = [problems.pad_features(prepared[i][2], size) if pad else prepared[i][2]
                  for i in members]
        keys = [prepared[i][1].key for i in members]
        with warnings.catch_warnings():  # recorded per cell as trivially_satisfiable
            warnings.simplefilter("ignore", problems.UnderdeterminedWarning)
            results = solve_batch(padded, preset(solver_name, max_steps=max_steps), keys,
                                  progress=False, allow_underdetermined=True)
        for i, result in zip(members, results):
            cell, setup, problem = prepared[i]
            if result.stop_reason == "non-finite loss":
                out[i] = FloatingPointError(f"the projection loss of cell {cell} became NaN "
                                            "or infinite")
                continue
            out[i] = _cell_metrics(setup.dataset, problem, setup.fit, result,
                                   cell["threshold"], len(members))
    return out


@precision.float64
def label_fit_curve(n: int, d: int, ps, seeds, activation: str = "relu") -> np.ndarray:
    """Train MSE of the minimum-norm RF fit for each ``p`` in ``ps``, averaged over ``seeds``:
    it drops to zero at ``p = n`` (interpolation), long before ``p = d*n``."""
    return np.array([[problems.setup_synthetic_rf(n, d, int(p), s, activation).fit.train_mse
                      for s in seeds] for p in ps]).mean(axis=1)


def label_fit_table(settings: LawSweep) -> pd.DataFrame:
    """The label-fitting law for every size ``(n, d)`` of ``settings``: the train MSE at nine
    ``p`` from ``n/4`` to ``10 n`` (geometric, first seed), one row per ``(n, d, p)``."""
    rows = []
    for n, d in settings.sizes:
        ps = np.unique(np.geomspace(max(1, n // 4), 10 * n, 9).astype(int))
        for p, mse in zip(ps, label_fit_curve(n, d, ps, settings.seeds[:1],
                                              settings.activation)):
            rows.append({"n": n, "d": d, "p": int(p), "train_mse": float(mse)})
    return pd.DataFrame(rows)


def empirical_threshold(ratios, fractions, level: float = 0.5) -> float:
    """The ratio at which ``fractions`` (recovered share, one per ratio, increasing ratios)
    first reaches ``level``, interpolated linearly in ``log(ratio)`` between grid points.

    Returns ``nan`` when the level is never reached, and the smallest ratio when it is
    reached already there (the threshold is then at most that).
    """
    ratios = np.asarray(ratios, float)
    fractions = np.asarray(fractions, float)
    if ratios.shape != fractions.shape or ratios.ndim != 1 or len(ratios) == 0:
        raise ValueError(f"ratios and fractions must be 1-d of equal length, got "
                         f"{ratios.shape} and {fractions.shape}")
    checks.increasing_ratios("ratios", ratios.tolist())
    above = np.flatnonzero(fractions >= level)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(ratios[0])
    lo, hi = np.log(ratios[i - 1]), np.log(ratios[i])
    t = (level - fractions[i - 1]) / (fractions[i] - fractions[i - 1])
    return float(np.exp(lo + t * (hi - lo)))


def thresholds(table, level: float = 0.5) -> dict[str, float]:
    """``{"n=..,d=..": p*/(d n)}`` from a sweep table with columns ``n, d, ratio,
    recovered_fraction`` (averaged over seeds first)."""
    mean = table.groupby(["n", "d", "ratio"], as_index=False)["recovered_fraction"].mean()
    out = {}
    for (n, d), group in mean.groupby(["n", "d"]):
        group = group.sort_values("ratio")
        out[f"n={n},d={d}"] = empirical_threshold(group["ratio"], group["recovered_fraction"],
                                                  level)
    return out


def bracket(ratios, fractions, level: float = 0.5) -> list[float | None]:
    """The grid interval ``[low, high]`` that holds the threshold: ``high`` is the first
    ratio where ``fractions`` reaches ``level``, ``low`` the ratio before it (``None`` when
    the level is reached at the first ratio, or never: then ``high`` is ``None``)."""
    ratios = np.asarray(ratios, float)
    above = np.flatnonzero(np.asarray(fractions, float) >= level)
    if above.size == 0:
        return [float(ratios[-1]), None]
    i = int(above[0])
    return [float(ratios[i - 1]) if i else None, float(ratios[i])]


def _per_seed(table: pd.DataFrame):
    """For each size ``(n, d)``: the grid's ratios and the recovered fraction per seed
    (``seeds x ratios``; ratios missing for a seed count as not recovered)."""
    for (n, d), group in table.groupby(["n", "d"]):
        grid = group.pivot_table(index="seed", columns="ratio", values="recovered_fraction",
                                 aggfunc="mean").sort_index(axis=1).fillna(0.0)
        yield (n, d), grid.columns.to_numpy(float), grid.to_numpy(float)


def bootstrap_thresholds(table: pd.DataFrame, draws: int = 1000, level: float = 0.5,
                         seed: int = 0) -> dict:
    """Bootstrap over seeds: ``draws`` times, each size's seeds are resampled with
    replacement and its threshold recomputed (:func:`empirical_threshold` of the resampled
    mean), and the slope of ``log p*`` against ``log(d n)`` refitted on the resampled
    thresholds of all sizes. Returns ``{"n=..,d=..": draws thresholds, ..., "slope": draws
    slopes}`` (NaN where the level is not reached)."""
    rng = np.random.default_rng(seed)
    out, dn = {}, []
    for (n, d), ratios, fractions in _per_seed(table):
        picks = rng.integers(0, len(fractions), size=(draws, len(fractions)))
        out[f"n={n},d={d}"] = np.array([empirical_threshold(ratios, fractions[i].mean(axis=0),
                                                            level) for i in picks])
        dn.append(n * d)
    sizes = list(out)
    p_star = np.array([out[k] for k in sizes]).T * np.array(dn)  # draws x sizes
    out["slope"] = np.array([fit_slope(dn, row)[0] for row in p_star])
    return out


def percentile_interval(draws, coverage: float = 0.95) -> list[float | None]:
    """The central ``coverage`` interval of the finite ``draws`` (``[None, None]`` if none)."""
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return [None, None]
    tail = 50 * (1 - coverage)
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def fit_slope(dn, p_star) -> tuple[float, float]:
    """Least-squares slope and intercept of ``log p*`` against ``log(d n)``; finite points
    only. A slope of 1 means ``p*`` grows in proportion to ``d n``."""
    dn = np.asarray(dn, float)
    p_star = np.asarray(p_star, float)
    ok = np.isfinite(p_star) & (p_star > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(dn[ok]), np.log(p_star[ok]), 1)
    return float(slope), float(intercept)


def _band(ax, table, x, y, label, style=None):
    """Plot the mean of ``y`` against ``x`` with a band from its min to its max."""
    stats = table.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
    (line,) = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label, **(style or {}))
    ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15)


def plot_law(table, reference=None, y: str = "mean_error", ylabel: str = "mean matched error",
             log_y: bool = True):
    """``y`` against ``p/(d n)``, one curve per ``(n, d)`` (mean, band = min..max over seeds),
    the ``reference`` preset's rows dashed, the threshold ``p = d n`` marked, and the cells
    with ``p <= n`` (``trivially_satisfiable``: any candidates have zero loss) ringed."""
    fig, ax = plt.subplots()
    for (n, d), group in table.groupby(["n", "d"]):
        _band(ax, group, "ratio", y, f"n={n}, d={d}")
    if "trivially_satisfiable" in table:
        trivial = table[table.trivially_satisfiable.astype(bool)]
        if len(trivial):
            ax.scatter(trivial.ratio, trivial[y], s=80, facecolors="none", edgecolors="0.3",
                       label=r"$p \leq n$: any candidates fit", zorder=3)
    if reference is not None and len(reference):
        for (n, d), group in reference.groupby(["n", "d"]):
            _band(ax, group, "ratio", y, f"n={n}, d={d} (reference)",
                  {"ls": "--", "color": "k"})
    ax.axvline(1.0, color="k", lw=1, ls=":")
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=r"$p / (d n)$", ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_two_laws(fit_table, table):
    """Left: train MSE against ``p/n`` (labels are fitted from ``p = n``). Right:
    reconstruction error against ``p/(d n)`` (the data is given away from ``p = d n``)."""
    fig, (ax_fit, ax_rec) = plt.subplots(1, 2, figsize=(9, 3.4), sharey=False)
    for (n, d), group in fit_table.groupby(["n", "d"]):
        group = group.sort_values("p")
        ax_fit.plot(group["p"] / n, np.maximum(group["train_mse"], 1e-16), marker="o", ms=3,
                    label=f"n={n}, d={d}")
    for (n, d), group in table.groupby(["n", "d"]):
        _band(ax_rec, group, "ratio", "mean_error", f"n={n}, d={d}")
    for ax, xlabel, title in ((ax_fit, r"$p / n$", "fitting the labels"),
                              (ax_rec, r"$p / (d n)$", "giving away the data")):
        ax.axvline(1.0, color="k", lw=1, ls=":")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, title=title)
    ax_fit.set_ylabel("train MSE")
    ax_rec.set_ylabel("mean matched error")
    ax_fit.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_thresholds(dn, p_star, slope, intercept, reference=None, intervals=None):
    """Empirical threshold ``p*`` against ``d n`` (log-log), with the bootstrap
    ``intervals`` of ``p*/(d n)`` (one ``[low, high]`` per size) as error bars, the fitted
    line and ``p = d n``; ``reference`` maps ``d n`` to the reference preset's ``p*``."""
    dn = np.asarray(dn, float)
    p_star = np.asarray(p_star, float)
    fig, ax = plt.subplots()
    grid = np.geomspace(dn.min() / 1.5, dn.max() * 1.5, 50)
    ax.plot(grid, grid, color="k", lw=1, ls=":", label=r"$p = d n$")
    yerr = None
    if intervals is not None:
        bounds = np.array([[np.nan if v is None else v for v in pair] for pair in intervals],
                          float) * dn[:, None]
        yerr = np.nan_to_num(np.abs(bounds - p_star[:, None]).T)
    ax.errorbar(dn, p_star, yerr=yerr, fmt="o", capsize=3,
                label="default solver (95% bootstrap over seeds)")
    if np.isfinite(slope):
        ax.plot(grid, np.exp(intercept) * grid**slope, lw=1,
                label=rf"fit: $p^* \propto (dn)^{{{slope:.2f}}}$")
    if reference:
        ax.plot(list(reference), list(reference.values()), "s", color="k", mfc="none",
                label="reference preset")
    ax.set(xscale="log", yscale="log", xlabel=r"$d n$", ylabel=r"threshold $p^*$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class LawSweep(ChapterSettings):
    """The law chapter's grid: RF reconstruction for every ``(n, d)`` in ``sizes``, every
    ``p = ratio * d * n`` and every seed; the ``reference`` preset on ``reference_size``
    (``None``, or ``[]`` in the parameters cell, skips it); ``store`` and ``scheduler`` go
    to :func:`run_grid` (``""``: its defaults)."""

    unset: ClassVar[dict] = {"reference_size": []}

    sizes: list
    ratios: list
    seeds: list
    activation: str = "relu"
    max_steps: int = 4000
    reference_size: list | None = None
    reference_steps: int = 3000
    threshold: float = 1e-2
    store: str = ""
    scheduler: str = ""

    def __post_init__(self):
        object.__setattr__(self, "sizes", checks.size_pairs("sizes", self.sizes))
        object.__setattr__(self, "ratios", checks.increasing_ratios("ratios", self.ratios))
        object.__setattr__(self, "seeds", checks.seed_list("seeds", self.seeds))
        checks.choice("activation", self.activation, ACTIVATIONS)
        checks.positive_int("max_steps", self.max_steps)
        checks.positive_int("reference_steps", self.reference_steps)
        checks.positive_float("threshold", self.threshold)
        for name in ("store", "scheduler"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string ('' for the default), got "
                                f"{getattr(self, name)!r}")
        if self.reference_size is not None:
            object.__setattr__(self, "reference_size", checks.size_pairs(
                "reference_size", [self.reference_size])[0])

    def cells(self) -> list[dict]:
        """Every sweep cell, default preset first, then the reference column; each cell is
        padded to the largest ``p`` of its ratio band (:func:`ratio_bands`; small bands join
        the one above at sizes up to :data:`SMALL_SIZE_WORK`), so that the cells of a band
        run as one batch (:func:`rf_cells`)."""
        common = {"activation": self.activation, "threshold": self.threshold}

        def column(n, d, solver, max_steps):
            tops = dict(zip(self.ratios, ratio_bands(
                self.ratios, join_small=n * d * d * n <= SMALL_SIZE_WORK)))
            return [dict(n=n, d=d, ratio=r, seed=s, solver=solver, max_steps=max_steps,
                         pad_to=max(1, round(tops[r] * d * n)), **common)
                    for r in self.ratios for s in self.seeds]

        cells = [c for n, d in self.sizes for c in column(n, d, "default", self.max_steps)]
        if self.reference_size:
            cells += column(*self.reference_size, "reference", self.reference_steps)
        return cells


def run_grid(settings: LawSweep, store: str = "", scheduler: str = "") -> pd.DataFrame:
    """Run the chapter's grid as a batched sweep (:func:`recon.book.sweep.run_sweep` of
    :func:`rf_cells`, batched by :data:`BATCH_BY`, keyed by the
    code version) in ``store/law`` (``store`` empty: ``settings.store``, then
    ``$RECON_CACHE``, else ``sweep-cache``; ``scheduler`` empty: ``settings.scheduler``),
    locally or on the Dask ``scheduler``; print the summary and return the table of the
    grid's records, one row per cell. Raises ``RuntimeError`` if a cell failed."""
    store = store or settings.store
    scheduler = scheduler or settings.scheduler
    path = os.path.join(store or os.environ.get("RECON_CACHE", "sweep-cache"), "law")
    grid = sweep.Grid(name="law", params=settings.cells())
    version = sweep.code_version()
    summary = sweep.run_sweep(grid, rf_cells, path, scheduler=scheduler or None,
                              version=version, batch_by=BATCH_BY)
    print(summary)
    if summary.failed:
        raise RuntimeError(f"{summary.failed} sweep cells failed; see the records in {path}")
    return sweep.load_table(path, grid, rf_cells, version)


def by_solver(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the ``default`` preset and those of the ``reference`` preset."""
    return table[table.solver == "default"], table[table.solver == "reference"]


class Thresholds(NamedTuple):
    """The empirical thresholds of a run: ``ratio`` and ``ratio_reference`` map
    ``"n=..,d=.."`` to ``p*/(d n)`` (default and reference preset; interpolated);
    ``interval`` maps each size to the grid interval holding it (:func:`bracket`) and
    ``bootstrap`` to its 95% bootstrap interval over seeds (:func:`bootstrap_thresholds`);
    ``dn`` and ``p_star`` per size of the grid; ``slope`` and ``intercept`` of ``log p*``
    against ``log(d n)``, ``slope_interval`` its 95% bootstrap interval;
    ``reference_points`` maps ``d n`` to the reference preset's finite ``p*`` and
    ``interval_reference`` its grid interval."""

    ratio: dict
    ratio_reference: dict
    interval: dict
    bootstrap: dict
    dn: list
    p_star: list
    slope: float
    intercept: float
    slope_interval: list
    reference_points: dict
    interval_reference: dict


def threshold_summary(settings: LawSweep, default: pd.DataFrame,
                      reference: pd.DataFrame) -> Thresholds:
    """The thresholds ``p*`` of the ``default`` rows for every size, their power law in
    ``d n``, and the ``reference`` preset's threshold on ``settings.reference_size``."""
    found = thresholds(default)
    ratio = {f"n={n},d={d}": found.get(f"n={n},d={d}", float("nan")) for n, d in settings.sizes}
    dn = [n * d for n, d in settings.sizes]
    p_star = [ratio[f"n={n},d={d}"] * n * d for n, d in settings.sizes]
    slope, intercept = fit_slope(dn, p_star)
    draws = bootstrap_thresholds(default)
    ratio_reference = thresholds(reference) if len(reference) else {}
    points = {}
    if settings.reference_size:
        n, d = settings.reference_size
        r = ratio_reference[f"n={n},d={d}"]
        if np.isfinite(r):
            points[n * d] = r * n * d
    return Thresholds(ratio, ratio_reference, _brackets(default),
                      {k: percentile_interval(draws[k]) for k in ratio}, dn, p_star, slope,
                      intercept, percentile_interval(draws["slope"]), points,
                      _brackets(reference) if len(reference) else {})


def _brackets(table: pd.DataFrame) -> dict:
    """:func:`bracket` of the seed-averaged recovered fraction, per size."""
    return {f"n={n},d={d}": bracket(ratios, fractions.mean(axis=0))
            for (n, d), ratios, fractions in _per_seed(table)}


def threshold_table(found: Thresholds) -> pd.DataFrame:
    """Per size: ``d n``, the interpolated ``p*/(d n)``, the grid interval holding it and its
    bootstrap interval, and the reference preset's threshold where it ran."""
    rows = []
    for (size, ratio), dn in zip(found.ratio.items(), found.dn):
        rows.append({"size": size, "dn": dn, "p*/(dn)": glue.decimals(ratio, 2),
                     "grid interval": _pair(found.interval[size]),
                     "bootstrap 95%": _pair(found.bootstrap[size]),
                     "reference": glue.decimals(found.ratio_reference[size], 2)
                     if size in found.ratio_reference else None})
    return pd.DataFrame(rows).set_index("size")


class SilentFeatures(NamedTuple):
    """The cells at ``p >= d n`` whose solver stopped at a different dataset with zero loss
    (``cells``: their sizes, active features, ``active_over_dn`` and recovered share), and a
    sentence saying how many they were among the cells at ``p >= d n`` (``text``)."""

    cells: pd.DataFrame
    text: str


def silent_features(default: pd.DataFrame) -> SilentFeatures:
    """Where ``theta`` did not single out the data although ``p >= d n``: too few ReLU
    features were active at the training inputs, so another dataset has zero loss too."""
    counted = default[default.ratio >= 1]
    elsewhere = counted[counted.zero_loss_elsewhere.astype(bool)].assign(
        active_over_dn=lambda t: t.active_features / (t.n * t.d))
    cells = elsewhere[["n", "d", "ratio", "seed", "active_features", "active_over_dn",
                       "recovered_fraction"]]
    if len(elsewhere):
        most = elsewhere.active_over_dn.max()
        text = (f"{len(elsewhere)} of the {len(counted)} cells with p >= dn stopped at a "
                f"different dataset with zero loss; the active features there numbered "
                f"{elsewhere.active_over_dn.min():.2f} to {most:.2f} times dn"
                + (", never more than dn" if most <= 1 else ""))
    else:
        text = (f"none of the {len(counted)} cells with p >= dn stopped at a different dataset "
                "with zero loss")
    return SilentFeatures(cells, text)


def _pair(interval) -> list:
    return [glue.decimals(v, 2) if v is not None else None for v in interval]


def headline(settings: LawSweep, table: pd.DataFrame, found: Thresholds,
             silent: SilentFeatures) -> dict:
    """The numbers the chapter quotes (2 decimals; ``None`` where not reached): per size the
    interpolated threshold ``threshold_ratio``, its grid interval ``threshold_interval`` and
    bootstrap interval ``threshold_bootstrap``; the slope and ``threshold_slope_interval``;
    the same for the reference preset; the range of ``d n``; the step budgets; the number of
    sweep cells; the solver benchmark's sentence and the silent-features sentence."""
    finite = [v for v in found.ratio.values() if np.isfinite(v)]
    return {
        "threshold_ratio": {k: glue.decimals(v, 2) for k, v in found.ratio.items()},
        "threshold_interval": {k: _pair(v) for k, v in found.interval.items()},
        "threshold_bootstrap": {k: _pair(v) for k, v in found.bootstrap.items()},
        "threshold_ratio_reference": {k: glue.decimals(v, 2)
                                      for k, v in found.ratio_reference.items()},
        "threshold_interval_reference": {k: _pair(v)
                                         for k, v in found.interval_reference.items()},
        "threshold_slope": glue.decimals(found.slope, 2),
        "threshold_slope_interval": _pair(found.slope_interval),
        "threshold_ratio_range": (f"{min(finite):.2f} to {max(finite):.2f}" if finite
                                  else "n/a"),
        "dn_range": f"{min(found.dn)} to {max(found.dn)}",
        "largest_share_below_dn": glue.decimals(
            table[(table.solver == "default") & (table.ratio < 1)].recovered_fraction.max(), 2),
        "seed_count": len(settings.seeds),
        "max_steps": settings.max_steps,
        "reference_steps": settings.reference_steps,
        "sweep_cells": len(table),
        "solver_benchmark": benchmark_report.sentence(),
        "silent_features": silent.text,
    }


def _share(frame: pd.DataFrame, column: str = "recovered_fraction"):
    return float(frame[column].mean()) if len(frame) else float("nan")


def claims(settings: LawSweep, default: pd.DataFrame, reference: pd.DataFrame,
           fit_table: pd.DataFrame, found: Thresholds, silent: SilentFeatures,
           everything_from: float = 2.0, band=(1.0, 2.0), band_n_above_2=(1.0, 1.5)
           ) -> list[Claim]:
    """The chapter's observed statements, each checked on this run's cells: the labels are
    fitted from ``p = n``; below ``d n`` the whole set is never recovered; from
    ``everything_from`` times ``d n`` every sample of every seed is; each threshold lies in
    ``band``, and in ``band_n_above_2`` for the sizes with ``n > 2`` (at ``n = 2`` a quarter
    of the ReLU features are silent); the slope's interval holds 1; most zero-loss misses at
    ``p >= d n`` had at most ``d n`` active features; the feature-span residual is smaller
    where the data is recovered than where it is not; the reference preset recovers no more
    than ours on its column."""
    found_claims = (_recovery_claims(default, fit_table, everything_from)
                    + _threshold_claims(found, band, band_n_above_2))
    if len(silent.cells):
        share = float((silent.cells.active_over_dn <= 1).mean())
        found_claims.append(claim(
            "misses_are_mostly_silent", "At least 80% of the cells at p >= dn that stopped at "
            "another dataset with zero loss had at most dn active features.", share >= 0.8,
            cells=len(silent.cells), share_at_most_dn=glue.decimals(share, 2),
            most_active_over_dn=glue.decimals(silent.cells.active_over_dn.max(), 2)))
    if len(reference):
        n, d = settings.reference_size
        ours = default[(default.n == n) & (default.d == d)]
        theirs = reference.groupby("ratio").recovered_fraction.mean()
        mine = ours.groupby("ratio").recovered_fraction.mean().reindex(theirs.index)
        found_claims.append(claim(
            "reference_behind", f"On the reference column (n={n}, d={d}), the authors' settings "
            f"with {settings.reference_steps} steps recover no larger share than ours at any "
            "ratio.", bool((theirs <= mine + 1e-12).all()),
            reference_share=_share(reference), default_share=_share(ours)))
    return found_claims


def _recovery_claims(default: pd.DataFrame, fit_table: pd.DataFrame,
                     everything_from: float) -> list[Claim]:
    """The claims of :func:`claims` on the labels, the recovered shares and the residual."""
    fitted = fit_table[fit_table.p >= 3 * fit_table.n].train_mse.max()
    unfitted = fit_table[fit_table.p < fit_table.n].train_mse.min()
    below = default[default.ratio < 1]
    above = default[default.ratio >= everything_from]
    recovered = default[default.recovered_fraction == 1]
    missed = default[(default.recovered_fraction == 0) & (default.ratio >= 1)]
    return [
        claim("labels_from_n", "For every size the labels are fitted (train MSE below 1e-8) "
              "from p = 3n on, and never below p = n.", fitted < 1e-8 and not unfitted < 1e-8,
              largest_mse_from_3n=glue.significant(fitted, 3),
              smallest_mse_below_n=glue.significant(unfitted, 3)),
        claim("never_all_below_dn", "Below p = dn no cell recovers its whole training set.",
              len(below) and (below.recovered_fraction < 1).all(),
              cells=len(below), largest_share=float(below.recovered_fraction.max())),
        claim("all_from_twice_dn", f"From p = {everything_from:g} dn on, every seed recovers "
              "every sample, for every size.",
              len(above) and (above.recovered_fraction == 1).all(), cells=len(above),
              smallest_share=float(above.recovered_fraction.min()) if len(above) else None),
        claim("span_residual_tracks_recovery", "The feature-span residual separates the "
              "cells: it is smaller in every cell that recovers every sample than in any cell "
              "at p >= dn that recovers none.", len(recovered) and len(missed)
              and recovered.span_residual.max() < missed.span_residual.min(),
              largest_when_recovered=glue.significant(recovered.span_residual.max(), 3)
              if len(recovered) else None,
              smallest_when_missed=glue.significant(missed.span_residual.min(), 3)
              if len(missed) else None),
    ]


def _threshold_claims(found: Thresholds, band, band_n_above_2) -> list[Claim]:
    """The claims of :func:`claims` on the thresholds and their slope."""
    lo, hi = found.slope_interval
    larger = {k: v for k, v in found.ratio.items() if int(k.split(",")[0][2:]) > 2}
    return [
        claim("thresholds_n_above_2", f"For every size with n > 2 the threshold lies between "
              f"{band_n_above_2[0]:g} and {band_n_above_2[1]:g} times dn.",
              larger and all(band_n_above_2[0] <= v <= band_n_above_2[1]
                             for v in larger.values()),
              thresholds={k: glue.decimals(v, 2) for k, v in larger.items()}),
        claim("thresholds_near_dn", f"Every size's threshold lies between {band[0]:g} and "
              f"{band[1]:g} times dn.",
              all(band[0] <= v <= band[1] for v in found.ratio.values()),
              thresholds={k: glue.decimals(v, 2) for k, v in found.ratio.items()}),
        claim("slope_holds_one", "The 95% bootstrap interval of the slope of log p* against "
              "log dn contains 1.", lo is not None and lo <= 1 <= hi,
              slope=glue.decimals(found.slope, 2), interval=_pair(found.slope_interval)),
    ]
