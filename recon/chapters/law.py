"""The law of reconstruction: the phase transition at ``p = d*n``.

One sweep cell trains a random-features model at ``p = ratio * d * n`` and attacks its
``theta``; :func:`empirical_threshold` turns the recovered fractions along ``ratio`` into the
threshold ``p*/(d*n)`` (where half the samples are recovered), and :func:`fit_slope` fits
``log p* = slope * log(d n) + c`` across sizes. The label-fitting law (interpolation at
``p = n``) comes from :func:`label_fit_curve`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recon import checks
from recon.models import ACTIVATIONS


def code_version() -> str:
    """A short hash of the library's source, stored with every sweep cell so that cached
    results from older code are never reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def rf_cell(n: int, d: int, ratio: float, seed: int, activation: str = "relu",
            solver: str = "default", max_steps: int = 4000, threshold: float = 1e-2,
            code: str = "") -> dict:
    """Train RF with ``p = round(ratio * d * n)`` features on ``n`` synthetic samples and
    reconstruct them from ``theta`` with the solver preset ``solver``.

    Returns ``p``, the train MSE, the recovered fraction (matched error below ``threshold``),
    the mean matched error, the final loss, the iterations, whether the loss tolerance was
    reached, the solver's seconds, ``active_features`` (features nonzero at some training
    input: a ReLU feature that is off at all of them gives ``theta_j = 0`` and no equation)
    and ``zero_loss_elsewhere`` (the tolerance was reached at a different dataset: ``theta``
    does not single out the data, whatever the solver). ``code`` is only part of the cache
    key.
    """
    from recon import metrics, problems
    from recon.problems import setup_synthetic_rf
    from recon.solver import preset, solve

    ratio = checks.positive_float("ratio", ratio)
    p = max(1, int(round(ratio * d * n)))
    dataset, model, fit, key = setup_synthetic_rf(n, d, p, seed, activation)
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


def label_fit_curve(n: int, d: int, ps, seeds, activation: str = "relu") -> np.ndarray:
    """Train MSE of the minimum-norm RF fit for each ``p`` in ``ps``, averaged over ``seeds``:
    it drops to zero at ``p = n`` (interpolation), long before ``p = d*n``."""
    from recon.problems import setup_synthetic_rf

    return np.array([[setup_synthetic_rf(n, d, int(p), s, activation)[2].train_mse
                      for s in seeds] for p in ps]).mean(axis=1)


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
    if np.any(np.diff(ratios) <= 0):
        raise ValueError("ratios must be increasing")
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
    stats = table.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
    (line,) = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label, **(style or {}))
    ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15)


def plot_law(table, reference=None, y: str = "mean_error", ylabel: str = "mean matched error",
             log_y: bool = True):
    """``y`` against ``p/(d n)``, one curve per ``(n, d)`` (mean, band = min..max over seeds),
    the ``reference`` preset's rows dashed, and the threshold ``p = d n`` marked."""
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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
class LawSweep:
    """The law chapter's grid: RF reconstruction for every ``(n, d)`` in ``sizes``, every
    ``p = ratio * d * n`` and every seed; the ``reference`` preset on ``reference_size``."""

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
        if not isinstance(self.ratios, (list, tuple)) or not self.ratios:
            raise TypeError(f"ratios must be a non-empty list of numbers, got {self.ratios!r}")
        ratios = [checks.positive_float("ratios", r) for r in self.ratios]
        if any(b <= a for a, b in zip(ratios, ratios[1:])):
            raise ValueError(f"ratios must be increasing, got {ratios}")
        object.__setattr__(self, "ratios", ratios)
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise TypeError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", [checks.nonnegative_int("seeds", s) for s in self.seeds])
        checks.choice("activation", self.activation, ACTIVATIONS)
        checks.positive_int("max_steps", self.max_steps)
        checks.positive_int("reference_steps", self.reference_steps)
        checks.positive_float("threshold", self.threshold)
        if self.reference_size:
            object.__setattr__(self, "reference_size", checks.size_pairs("reference_size",
                                                              [self.reference_size])[0])
        else:
            object.__setattr__(self, "reference_size", None)

    def cells(self, code: str) -> list[dict]:
        """Every sweep cell, default preset first, then the reference column."""
        common = {"activation": self.activation, "threshold": self.threshold, "code": code}
        cells = [dict(n=n, d=d, ratio=r, seed=s, solver="default", max_steps=self.max_steps,
                      **common)
                 for n, d in self.sizes for r in self.ratios for s in self.seeds]
        if self.reference_size:
            n, d = self.reference_size
            cells += [dict(n=n, d=d, ratio=r, seed=s, solver="reference",
                           max_steps=self.reference_steps, **common)
                      for r in self.ratios for s in self.seeds]
        return cells

    def as_dict(self) -> dict:
        """The settings as a plain dictionary (for figure sidecars)."""
        return asdict(self)
