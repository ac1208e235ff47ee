"""The defences chapter: how much each defence of ``theta`` lowers recovery, and what it
costs the model.

:class:`Defences` holds the validated settings: a grid of ``p / (d n)`` and, per defence, its
strengths from "off" to strongest. :func:`run_cells` trains one random-features model per
ratio and seed, applies every defence at every strength (:mod:`recon.defences`, or the
ridge and early-stopped readouts of :mod:`recon.train`, or a two-layer network whose first
layer trains too, :func:`recon.defences.train_first_layer`), pads every defended problem to one
``P`` and attacks all of them in one batch. :func:`thresholds` finds, per defence, the
weakest strength at which recovery at the largest ratio falls below half, and
:func:`costs` what that strength costs; :func:`robustness` sets the reconstruction error
under noise against the bound from the restricted Jacobian's smallest singular value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recon import checks, defences, leakage, metrics, problems, theory, train
from recon.book import glue
from recon.book.claims import Claim, claim
from recon.chapters.settings import ChapterSettings
from recon.data import sphere_points
from recon.solver import preset, solve_batch

#: each defence: its settings field, the strength's label, whether larger values are stronger
DEFENCES = {
    "noise": ("noise", "noise std / (|theta| / sqrt(p))", True),
    "ridge": ("ridge", "ridge lam / mean eigenvalue of K / n", True),
    "early_stopping": ("early_stopping", "gradient steps from zero (0: to convergence)", False),
    "quantisation": ("bits", "bits per entry (0: float32)", False),
    "pruning": ("prune", "share of entries set to zero", True),
    "first_layer": ("first_layer", "first layer's step / readout's (0: frozen)", True),
}


def _levels(name: str, value, integer: bool) -> list:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise TypeError(f"{name} must be a list of at least two strengths, the first the "
                        f"defence off (0), got {value!r}")
    check = checks.nonnegative_int if integer else (
        lambda n, v: checks.positive_float(n, v, allow_zero=True))
    levels = [check(name, v) for v in value]
    if levels[0] != 0:
        raise ValueError(f"{name} must start with 0 (the defence off), got {levels}")
    return levels


@dataclass(frozen=True)
class Defences(ChapterSettings):
    """Random features on ``n`` synthetic points, at ``p = ratio * d n`` for each ratio and
    seed; each defence at each of its strengths (the first 0: off); recovery by the
    ``default`` solver within ``max_steps``; ``first_layer`` sets the two-layer network's
    first-layer step relative to its readout's (:func:`recon.defences.train_first_layer`);
    ``test_points`` fresh points measure how much a defence changes the predictions; ``delta``, ``label_bound`` and ``dp_ridge`` set the
    privacy accounting of the noise (see :func:`privacy_table`)."""

    n: int = 4
    d: int = 10
    ratios: list = field(default_factory=lambda: [1.0, 2.0, 5.0])
    seeds: list = field(default_factory=lambda: [0, 1])
    noise: list = field(default_factory=lambda: [0.0, 1e-4, 1e-3, 1e-2, 1e-1])
    ridge: list = field(default_factory=lambda: [0.0, 1e-4, 1e-2, 1.0, 100.0])
    early_stopping: list = field(default_factory=lambda: [0, 10000, 1000, 100, 10])
    bits: list = field(default_factory=lambda: [0, 16, 8, 4, 2])
    prune: list = field(default_factory=lambda: [0.0, 0.1, 0.5, 0.9])
    first_layer: list = field(default_factory=lambda: [0.0, 1.0, 10.0, 100.0])
    test_points: int = 200
    max_steps: int = 2000
    delta: float = 1e-5
    label_bound: float = 3.0
    threshold: float = 1e-2

    def __post_init__(self):
        checks.positive_int("n", self.n)
        checks.positive_int("d", self.d, minimum=2)
        object.__setattr__(self, "ratios", checks.increasing_ratios("ratios", self.ratios))
        if round(self.ratios[0] * self.dn) <= self.n:
            raise ValueError(f"ratios must give p > n (ratio above 1/d = {1 / self.d:g}): at "
                             f"p <= n any candidates fit theta; got {self.ratios}")
        object.__setattr__(self, "seeds", checks.seed_list("seeds", self.seeds))
        for name in ("noise", "ridge", "prune", "first_layer"):
            object.__setattr__(self, name, _levels(name, getattr(self, name), False))
        for name in ("early_stopping", "bits"):
            object.__setattr__(self, name, _levels(name, getattr(self, name), True))
        if max(self.prune) > 1:
            raise ValueError(f"prune shares must lie in [0, 1], got {self.prune}")
        checks.positive_int("test_points", self.test_points)
        checks.positive_int("max_steps", self.max_steps)
        checks.fraction("delta", self.delta)
        checks.positive_float("label_bound", self.label_bound)
        checks.positive_float("threshold", self.threshold)

    @property
    def dn(self) -> int:
        """``d * n``."""
        return self.d * self.n

    def strengths(self, defence: str) -> list:
        """The strengths of ``defence`` (a key of :data:`DEFENCES`), off first."""
        return list(getattr(self, DEFENCES[defence][0]))


def ridge_lambda(model, X, level: float) -> float:
    """The ridge ``lam`` of strength ``level``: ``level`` times the mean eigenvalue of
    ``K / n`` (``K = Phi Phi^T``, ``Phi = phi(X)``), i.e. ``level * trace(K) / n^2``."""
    Phi = np.asarray(model.features(X), np.float64)
    return level * float(np.sum(Phi * Phi)) / len(Phi) ** 2


def defended_model(model, X, y, defence: str, level, key):
    """``model`` (trained to the minimum-norm readout on ``X, y``) after ``defence`` at
    strength ``level``; level 0 returns the model itself."""
    if level == 0:
        return model
    if defence == "noise":
        theta = model.theta[...]
        scale = float(np.linalg.norm(np.asarray(theta))) / math.sqrt(model.p)
        return defences.gaussian_noise(model, level * scale, key)
    if defence == "quantisation":
        return defences.quantize(model, level)
    if defence == "pruning":
        return defences.prune(model, level)
    if defence == "first_layer":
        return defences.train_first_layer(model, X, y, level, key).model
    copy = defences.with_readout(model, model.theta[...])
    if defence == "ridge":
        train.fit_ridge(copy, X, y, ridge_lambda(model, X, level))
    elif defence == "early_stopping":
        train.fit_early_stopped(copy, X, y, level)
    else:
        raise ValueError(f"unknown defence {defence!r}; accepted: {', '.join(DEFENCES)}")
    return copy


def _cell_costs(model, defended, X, y, test) -> tuple[float, float]:
    """Relative train error of ``defended`` and its relative change of predictions on
    ``test`` against ``model``."""
    y = np.asarray(y, np.float64).ravel()

    def predict(m, inputs):  # (m,) for random features, (m, 1) for the two-layer network
        return np.asarray(m(inputs), np.float64).reshape(len(inputs))

    train_error = float(np.mean((predict(defended, X) - y) ** 2) / np.var(y))
    before = predict(model, test)
    change = float(np.mean((predict(defended, test) - before) ** 2) / np.mean(before ** 2))
    return train_error, change


def _first_layer_cells(settings: Defences, setup, X, y, test) -> list[tuple]:
    """Per strength of ``first_layer``: the released model (what the attack sees), the
    costs against the network trained with its first layer frozen (strength 0, whose
    readout starts from the same ``W2(0)``) and how far the first layer moved."""
    key = jax.random.fold_in(setup.key, 99)
    trained = [defences.train_first_layer(setup.model, X, y, level, key)
               for level in settings.first_layer]
    return [(out.model, _cell_costs(trained[0].network, out.network, X, y, test),
             out.first_layer_moved) for out in trained]


def run_cells(settings: Defences, progress: bool = True) -> pd.DataFrame:
    """One row per (defence, strength, ratio, seed): ``p``, the recovered share, the mean
    matched error, the final loss, the relative train error, the relative change of the
    predictions on fresh points, the one-point membership AUC of the training points against
    the fresh points (:func:`recon.leakage.one_point_scores`, no solver needed) and
    (``first_layer`` only) how far the first layer moved. Every defended problem is padded to the largest ``p`` and all are attacked in one
    batch."""
    rows, problem_list, keys, truths = [], [], [], []
    ps = [max(1, round(r * settings.dn)) for r in settings.ratios]
    for ratio, p in zip(settings.ratios, ps):
        for seed in settings.seeds:
            setup = problems.setup_synthetic_rf(settings.n, settings.d, p, seed)
            X, y = setup.dataset
            test = sphere_points(jax.random.fold_in(setup.key, 1), settings.test_points,
                                 settings.d, X.dtype)
            first_layer = _first_layer_cells(settings, setup, X, y, test)
            for defence in DEFENCES:
                for i, level in enumerate(settings.strengths(defence)):
                    k_defence, k_solve = jax.random.split(jax.random.fold_in(setup.key, 7 + i))
                    if defence == "first_layer":
                        model, cost, moved = first_layer[i]
                    else:
                        model = defended_model(setup.model, X, y, defence, level, k_defence)
                        cost, moved = _cell_costs(setup.model, model, X, y, test), math.nan
                    problem = problems.random_features_problem(model, settings.n)
                    scores = leakage.one_point_scores(problem, jnp.concatenate([X, test]))
                    problem_list.append(problem)
                    keys.append(k_solve)
                    truths.append(X)
                    rows.append({"defence": defence, "strength": level, "ratio": ratio,
                                 "p": p, "seed": seed, "first_layer_moved": moved,
                                 "auc_one_point": leakage.membership_auc(
                                     scores[:settings.n], scores[settings.n:])}
                                | dict(zip(("train_error", "prediction_change"), cost)))
    top = max(ps)
    padded = [problems.pad_features(q, top) for q in problem_list]
    results = solve_batch(padded, preset("default", max_steps=settings.max_steps), keys,
                          progress=progress)
    for row, result, X in zip(rows, results, truths):
        row["recovered"] = metrics.recovered_fraction(result.X, X, settings.threshold)
        row["mean_error"] = metrics.mean_matched_error(result.X, X)
        row["loss"] = result.loss
    return pd.DataFrame(rows)


def recovery_grid(table: pd.DataFrame, defence: str, value: str = "recovered") -> pd.DataFrame:
    """Mean of ``value`` (the recovered share, or another column) over seeds, strengths as
    rows (off first) and ratios as columns."""
    part = table[table["defence"] == defence]
    return part.pivot_table(index="strength", columns="ratio", values=value, aggfunc="mean",
                            sort=False)


def thresholds(settings: Defences, table: pd.DataFrame) -> dict[str, float | None]:
    """Per defence, the weakest strength at which the mean recovered share at the largest
    ratio falls below one half (``None`` if none of the grid's strengths does)."""
    top = settings.ratios[-1]
    found = {}
    for defence in DEFENCES:
        at_top = recovery_grid(table, defence)[top]
        below = [level for level in settings.strengths(defence) if at_top[level] < 0.5]
        found[defence] = below[0] if below else None
    return found


def costs(settings: Defences, table: pd.DataFrame, found: dict) -> dict[str, dict]:
    """Per defence, at its threshold strength (or its strongest, when it has none) and the
    largest ratio: the strength, the mean relative train error and prediction change, the
    one-point membership AUC that is left (not a cost: what the defence still gives away),
    and for ``first_layer`` how far the first layer moved, relative to its norm."""
    top = settings.ratios[-1]
    out = {}
    for defence, level in found.items():
        level = settings.strengths(defence)[-1] if level is None else level
        part = table[(table["defence"] == defence) & (table["strength"] == level)
                     & (table["ratio"] == top)]
        out[defence] = {"strength": level,
                        "train_error": glue.significant(part["train_error"].mean(), 3),
                        "prediction_change": glue.significant(part["prediction_change"].mean(),
                                                              3),
                        "membership_auc": glue.decimals(part["auc_one_point"].mean(), 2)}
        if defence == "first_layer":
            out[defence]["first_layer_moved"] = glue.significant(
                part["first_layer_moved"].mean(), 3)
    return out


#: what :func:`plot_heatmaps` can show: column -> (colour bar label, lowest, highest)
SHOWN = {"recovered": ("recovered share", 0.0, 1.0),
         "auc_one_point": ("one-point membership AUC", 0.5, 1.0)}


def plot_heatmaps(settings: Defences, table: pd.DataFrame, value: str = "recovered"):
    """One heat map per defence: the mean of ``value`` (a key of :data:`SHOWN`) over
    ``p / (d n)`` (columns) and the defence's strength (rows, off at the top)."""
    label, low, high = SHOWN[value]
    columns = math.ceil(len(DEFENCES) / 2)
    fig, axes = plt.subplots(2, columns, figsize=(3.4 * columns, 6.8), constrained_layout=True)
    axes = axes.ravel()
    for ax in axes[len(DEFENCES):]:
        ax.set_axis_off()
    for ax, defence in zip(axes, DEFENCES):
        grid = recovery_grid(table, defence, value)
        image = ax.imshow(grid.values, vmin=low, vmax=high, cmap="viridis", aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{r:g}" for r in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{s:g}" for s in grid.index])
        ax.set_xlabel("p / (d n)")
        ax.set_title(defence.replace("_", " "), fontsize=10)
        ax.set_ylabel(DEFENCES[defence][1], fontsize=7)
        for (i, j), v in np.ndenumerate(grid.values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if v < (low + high) / 2 else "k")
    fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    return fig


def robustness(settings: Defences, table: pd.DataFrame) -> pd.DataFrame:
    """At the largest ratio, per noise strength: the mean matched error of the
    reconstruction and the first-order bound ``||delta theta|| / (sigma_min sqrt(n d))`` on
    the RMS error, where ``sigma_min`` is the smallest of the ``(d - 1) n`` top singular
    values of the restricted Jacobian at the truth (:func:`recon.theory.local_rank`; the data
    move by at most ``||delta theta|| / sigma_min`` along the spheres to first order) and
    ``||delta theta|| = strength * ||theta||`` (the noise's expected norm). Means over seeds."""
    top, p = settings.ratios[-1], max(1, round(settings.ratios[-1] * settings.dn))
    bounds = []
    for seed in settings.seeds:
        model, X = theory.trained_rf("relu", settings.n, settings.d, p, seed)
        _, sigma = theory.local_rank(model, X)
        sigma_min = float(sigma[(settings.d - 1) * settings.n - 1])
        theta_norm = float(np.linalg.norm(np.asarray(model.theta[...])))
        bounds.append(theta_norm / (sigma_min * math.sqrt(settings.n * settings.d)))
    part = table[(table["defence"] == "noise") & (table["ratio"] == top)]
    measured = part.groupby("strength")["mean_error"].mean()
    return pd.DataFrame({"strength": measured.index, "mean_error": measured.values,
                         "bound": measured.index * float(np.mean(bounds))})


def plot_robustness(robust: pd.DataFrame):
    """The reconstruction error against the noise's strength, with the first-order bound."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    on = robust[robust["strength"] > 0]
    ax.loglog(on["strength"], on["mean_error"], "o-", label="measured mean matched error")
    ax.loglog(on["strength"], on["bound"], "k--", label="bound from the Jacobian's sigma_min")
    ax.set_xlabel("noise std / (|theta| / sqrt(p))")
    ax.set_ylabel("error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def privacy_table(settings: Defences) -> pd.DataFrame:
    """What the Gaussian mechanism would guarantee: for each noise strength and each ridge
    strength of the grid, the ``epsilon`` at ``delta`` of releasing the *ridge* readout plus
    that noise (:func:`recon.defences.gaussian_epsilon` with
    :func:`recon.defences.ridge_sensitivity`, labels clipped to ``label_bound``), at the
    largest ratio and seed ``seeds[0]``. The minimum-norm readout (ridge 0) has no bound."""
    p = max(1, round(settings.ratios[-1] * settings.dn))
    setup = problems.setup_synthetic_rf(settings.n, settings.d, p, settings.seeds[0])
    X, y = setup.dataset
    y = np.clip(np.asarray(y, np.float64), -settings.label_bound, settings.label_bound)
    B = defences.feature_norm_bound(setup.model)
    rows = []
    for level in settings.ridge[1:]:
        lam = ridge_lambda(setup.model, X, level)
        model = defences.with_readout(setup.model, setup.model.theta[...])
        train.fit_ridge(model, X, y, lam)
        sens = defences.ridge_sensitivity(B, settings.label_bound, lam, settings.n)
        scale = float(np.linalg.norm(np.asarray(model.theta[...]))) / math.sqrt(p)
        rows.append({"ridge": level, "sensitivity": sens, "theta_norm": scale * math.sqrt(p)}
                    | {f"epsilon at noise {s:g}": defences.gaussian_epsilon(
                        s * scale, sens, settings.delta) for s in settings.noise[1:]})
    return pd.DataFrame(rows)


def headline(settings: Defences, table: pd.DataFrame, robust: pd.DataFrame,
             privacy: pd.DataFrame) -> dict:
    """The numbers the chapter quotes: ``defence_threshold`` (name -> weakest strength at
    which recovery at the largest ratio falls below half, or ``None``), ``defence_cost``
    (name -> the relative train error and prediction change at that strength, or at the
    strongest where there is none), the ratio they are read at, the undefended recovery
    there, the smallest ``epsilon`` of the privacy table, how far the first layer moved at
    its threshold (or strongest) strength and the mean matched error of the reconstruction
    at the noise's threshold (``None`` without one)."""
    found = thresholds(settings, table)
    top = table[(table["ratio"] == settings.ratios[-1]) & (table["strength"] == 0)]
    epsilons = privacy.filter(like="epsilon").to_numpy().ravel()
    cost = costs(settings, table, found)
    return {
        "n": settings.n, "d": settings.d, "dn": settings.dn,
        "top_ratio": settings.ratios[-1],
        "undefended_recovered": glue.decimals(top["recovered"].mean(), 2),
        "defence_threshold": found,
        "defence_cost": cost,
        "smallest_epsilon": glue.significant(float(np.min(epsilons)), 3),
        "delta": settings.delta,
        "first_layer_moved": cost["first_layer"]["first_layer_moved"],
        "first_layer_train_error": cost["first_layer"]["train_error"],
        "noise_threshold_error": (None if found["noise"] is None else glue.significant(
            float(robust.loc[robust["strength"] == found["noise"], "mean_error"].iloc[0]), 3)),
    } | {f"threshold_{k}": "none in the grid" if v is None else f"{v:g}"
         for k, v in found.items()} | {f"membership_{k}": v["membership_auc"]
                                       for k, v in cost.items()}


def claims(settings: Defences, table: pd.DataFrame, robust: pd.DataFrame,
           privacy: pd.DataFrame) -> list[Claim]:
    """The chapter's observed statements, checked on this run."""
    found = thresholds(settings, table)
    top = table[(table["ratio"] == settings.ratios[-1]) & (table["strength"] == 0)]
    in_span = [found["ridge"], found["early_stopping"]]
    frozen = top[top["defence"] == "first_layer"]
    on = robust[robust["strength"] > 0]
    epsilons = privacy.filter(like="epsilon").to_numpy().ravel()
    return [
        claim("undefended_recovered", "Without a defence every sample is recovered at the "
              "largest ratio.", top["recovered"].mean() == 1.0,
              recovered=glue.decimals(top["recovered"].mean(), 2)),
        claim("span_defences_fail", "Ridge and early stopping, which leave theta in the span "
              "of the training features, never bring recovery at the largest ratio below "
              "half on this grid.", in_span == [None, None],
              ridge_threshold=found["ridge"], early_stopping_threshold=found["early_stopping"]),
        claim("noise_stops_it", "Noise on theta does bring recovery below half at some "
              "strength of the grid.", found["noise"] is not None,
              noise_threshold=found["noise"]),
        claim("error_within_bound", "Under noise the reconstruction error stays within the "
              "first-order bound from the restricted Jacobian's smallest singular value.",
              bool(np.all(on["mean_error"] <= on["bound"] * 1.5)),
              errors=[glue.significant(v, 3) for v in on["mean_error"]],
              bounds=[glue.significant(v, 3) for v in on["bound"]]),
        claim("first_layer_stops_it", "Training the first layer too brings recovery at the "
              "largest ratio below half at some strength of the grid, while with the first "
              "layer frozen (the random-features model) every sample is recovered there.",
              found["first_layer"] is not None and frozen["recovered"].mean() == 1.0,
              first_layer_threshold=found["first_layer"],
              frozen_recovered=glue.decimals(frozen["recovered"].mean(), 2)),
        claim("no_useful_guarantee", "No noise level of the grid gives the ridge readout a "
              "meaningful guarantee: every epsilon is above 10.",
              float(np.min(epsilons)) > 10,
              smallest_epsilon=glue.significant(float(np.min(epsilons)), 3)),
    ]
