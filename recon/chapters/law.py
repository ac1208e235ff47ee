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

import os
import time
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recon import checks, metrics, precision, problems
from recon.book import benchmark_report, glue, sweep
from recon.chapters.settings import ChapterSettings
from recon.models import ACTIVATIONS
from recon.solver import preset, solve


@precision.float64
def rf_cell(n: int, d: int, ratio: float, seed: int, activation: str = "relu",
            solver: str = "default", max_steps: int = 4000, threshold: float = 1e-2) -> dict:
    """Train RF with ``p = round(ratio * d * n)`` features on ``n`` synthetic samples and
    reconstruct them from ``theta`` with the solver preset ``solver``.

    Returns ``p``, the train MSE, the recovered fraction (matched error below ``threshold``),
    the mean matched error, the final loss, the iterations, whether the loss tolerance was
    reached, the solver's seconds, ``active_features`` (features nonzero at some training
    input: a ReLU feature that is off at all of them gives ``theta_j = 0`` and no equation)
    and ``zero_loss_elsewhere`` (the tolerance was reached at a different dataset: ``theta``
    does not single out the data, whatever the solver). Runs in float64 (also on a Dask
    worker).
    """
    ratio = checks.positive_float("ratio", ratio)
    p = max(1, int(round(ratio * d * n)))
    dataset, model, fit, key = problems.setup_synthetic_rf(n, d, p, seed, activation)
    problem = problems.random_features_problem(model, n)
    start = time.perf_counter()
    result = solve(problem, preset(solver, max_steps=max_steps), key, progress=False)
    errors = metrics.per_sample_errors(result.X, dataset.X)
    recovered = float(np.mean(errors < threshold))
    active = int(np.any(np.asarray(problem.feature_matrix(dataset.X)) != 0, axis=0).sum())
    return {
        "p": p,
        "train_mse": fit.train_mse,
        "recovered_fraction": recovered,
        "mean_error": float(errors.mean()),
        "loss": result.loss,
        "iterations": result.iterations,
        "converged": result.converged,
        "solve_seconds": time.perf_counter() - start,
        "active_features": active,
        "zero_loss_elsewhere": bool(result.converged and recovered < 1),
    }


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
    the ``reference`` preset's rows dashed, and the threshold ``p = d n`` marked."""
    fig, ax = plt.subplots()
    for (n, d), group in table.groupby(["n", "d"]):
        _band(ax, group, "ratio", y, f"n={n}, d={d}")
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


def plot_thresholds(dn, p_star, slope, intercept, reference=None):
    """Empirical threshold ``p*`` against ``d n`` (log-log), the fitted line and ``p = d n``;
    ``reference`` maps ``d n`` to the reference preset's ``p*``."""
    dn = np.asarray(dn, float)
    p_star = np.asarray(p_star, float)
    fig, ax = plt.subplots()
    grid = np.geomspace(dn.min() / 1.5, dn.max() * 1.5, 50)
    ax.plot(grid, grid, color="k", lw=1, ls=":", label=r"$p = d n$")
    ax.plot(dn, p_star, "o", label="default solver")
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
    (``None``, or ``[]`` in the parameters cell, skips it)."""

    unset: ClassVar[dict] = {"reference_size": []}

    sizes: list
    ratios: list
    seeds: list
    activation: str = "relu"
    max_steps: int = 4000
    reference_size: list | None = None
    reference_steps: int = 3000
    threshold: float = 1e-2

    def __post_init__(self):
        object.__setattr__(self, "sizes", checks.size_pairs("sizes", self.sizes))
        object.__setattr__(self, "ratios", checks.increasing_ratios("ratios", self.ratios))
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise TypeError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", [checks.nonnegative_int("seeds", s) for s in self.seeds])
        checks.choice("activation", self.activation, ACTIVATIONS)
        checks.positive_int("max_steps", self.max_steps)
        checks.positive_int("reference_steps", self.reference_steps)
        checks.positive_float("threshold", self.threshold)
        if self.reference_size is not None:
            object.__setattr__(self, "reference_size", checks.size_pairs(
                "reference_size", [self.reference_size])[0])

    def cells(self) -> list[dict]:
        """Every sweep cell, default preset first, then the reference column."""
        common = {"activation": self.activation, "threshold": self.threshold}
        cells = [dict(n=n, d=d, ratio=r, seed=s, solver="default", max_steps=self.max_steps,
                      **common)
                 for n, d in self.sizes for r in self.ratios for s in self.seeds]
        if self.reference_size:
            n, d = self.reference_size
            cells += [dict(n=n, d=d, ratio=r, seed=s, solver="reference",
                           max_steps=self.reference_steps, **common)
                      for r in self.ratios for s in self.seeds]
        return cells


def run_grid(settings: LawSweep, store: str = "", scheduler: str = "") -> pd.DataFrame:
    """Run the chapter's grid as a sweep (:func:`recon.book.sweep.run_sweep`, keyed by the
    code version) in ``store/law`` (``store`` empty: ``$RECON_CACHE``, else ``sweep-cache``),
    locally or on the Dask ``scheduler``; print the summary and return the table of the
    grid's records, one row per cell. Raises ``RuntimeError`` if a cell failed."""
    path = os.path.join(store or os.environ.get("RECON_CACHE", "sweep-cache"), "law")
    grid = sweep.Grid(name="law", params=settings.cells())
    version = sweep.code_version()
    summary = sweep.run_sweep(grid, rf_cell, path, scheduler=scheduler or None, version=version)
    print(summary)
    if summary.failed:
        raise RuntimeError(f"{summary.failed} sweep cells failed; see the records in {path}")
    return sweep.load_table(path, grid, rf_cell, version)


def by_solver(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the ``default`` preset and those of the ``reference`` preset."""
    return table[table.solver == "default"], table[table.solver == "reference"]


class Thresholds(NamedTuple):
    """The empirical thresholds of a run: ``ratio`` and ``ratio_reference`` map
    ``"n=..,d=.."`` to ``p*/(d n)`` (default and reference preset); ``dn`` and ``p_star`` per
    size of the grid; ``slope`` and ``intercept`` of ``log p*`` against ``log(d n)``;
    ``reference_points`` maps ``d n`` to the reference preset's finite ``p*``."""

    ratio: dict
    ratio_reference: dict
    dn: list
    p_star: list
    slope: float
    intercept: float
    reference_points: dict


def threshold_summary(settings: LawSweep, default: pd.DataFrame,
                      reference: pd.DataFrame) -> Thresholds:
    """The thresholds ``p*`` of the ``default`` rows for every size, their power law in
    ``d n``, and the ``reference`` preset's threshold on ``settings.reference_size``."""
    ratio = thresholds(default)
    dn = [n * d for n, d in settings.sizes]
    p_star = [ratio[f"n={n},d={d}"] * n * d for n, d in settings.sizes]
    slope, intercept = fit_slope(dn, p_star)
    ratio_reference = thresholds(reference) if len(reference) else {}
    points = {}
    if settings.reference_size:
        n, d = settings.reference_size
        r = ratio_reference[f"n={n},d={d}"]
        if np.isfinite(r):
            points[n * d] = r * n * d
    return Thresholds(ratio, ratio_reference, dn, p_star, slope, intercept, points)


def threshold_table(found: Thresholds) -> str:
    """``p*/(d n)`` per size, for the default and the reference preset, as text."""
    columns = (("default", found.ratio), ("reference", found.ratio_reference))
    return "\n".join(pd.Series(values, name=f"p*/(dn), {name}", dtype=float).round(2)
                     .to_string() for name, values in columns)


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


def headline(table: pd.DataFrame, found: Thresholds, silent: SilentFeatures) -> dict:
    """The numbers the chapter quotes: thresholds per size (2 decimals, ``None`` where not
    reached), the slope (2 decimals), the range of the default thresholds, the number of
    sweep cells, the solver benchmark's sentence and the silent-features sentence."""
    finite = [v for v in found.ratio.values() if np.isfinite(v)]
    return {
        "threshold_ratio": {k: glue.decimals(v, 2) for k, v in found.ratio.items()},
        "threshold_ratio_reference": {k: glue.decimals(v, 2)
                                      for k, v in found.ratio_reference.items()},
        "threshold_slope": round(found.slope, 2),
        "threshold_ratio_range": (f"{min(finite):.2f} to {max(finite):.2f}" if finite
                                  else "n/a"),
        "sweep_cells": len(table),
        "solver_benchmark": benchmark_report.sentence(),
        "silent_features": silent.text,
    }
