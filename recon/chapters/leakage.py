"""The leakage chapter: what ``theta`` gives away below ``p = d n``, where exact recovery is
impossible.

:class:`Leakage` holds the chapter's validated settings. :func:`run_cells` trains a
random-features model at each ``p = ratio * d * n`` and seed and measures, from ``theta``
alone, how much of the training set leaks (:mod:`recon.leakage`): label fitting, two
membership attacks, single points landing on training points, how close the full-set
reconstruction comes (best-match cosine, principal angles) and exact recovery.
:func:`curves` averages them over seeds, :func:`onsets` finds where each curve crosses its
halfway mark, :func:`plot_curves` draws them, :func:`headline` and :func:`claims` give what
the text quotes and checks.

Every problem is padded to the grid's largest ``p`` (:func:`recon.problems.pad_features`), so
one compiled solver serves every cell, all solved side by side
(:func:`recon.solver.solve_batch`), and one more every pinned problem.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recon import checks, leakage, metrics, problems, theory
from recon.book import glue
from recon.book.claims import Claim, claim
from recon.chapters.settings import ChapterSettings
from recon.models import ACTIVATIONS
from recon.solver import preset, solve_batch
from recon.sphere import project_to_sphere

#: the curves of the chapter: column -> (label, chance level, full leak), the halfway mark
#: of a curve lying midway between the two ("chance" columns are measured, see curves())
CURVES = {
    "train_error": ("train error (relative)", 1.0, 0.0),
    "auc_one_point": ("membership AUC, one-point score", 0.5, 1.0),
    "auc_pinned": ("membership AUC, pinned loss", 0.5, 1.0),
    "landing": ("one-point runs landing on a training point", 0.0, 1.0),
    "best_cosine": ("best-match cosine", "chance_cosine", 1.0),
    "span_cosine": ("cosine of the largest principal angle", "chance_span_cosine", 1.0),
    "recovered": ("samples recovered exactly", 0.0, 1.0),
}


@dataclass(frozen=True)
class Leakage(ChapterSettings):
    """Random features on ``n`` synthetic points of the sphere in ``R^d``, at
    ``p = round(ratio * d * n)`` for each ratio of ``ratios`` and each seed of ``seeds``;
    ``queries`` fresh points per seed for the membership attacks; the full-set solver (the
    ``default`` preset) runs ``max_steps`` steps, the pinned one ``pinned_steps``;
    ``one_point_starts`` one-point runs of
    ``one_point_steps`` steps each; a sample is recovered below error ``threshold``."""

    n: int = 5
    d: int = 20
    ratios: list = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85,
                                                  1.0, 1.25, 2.0, 3.0])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    activation: str = "relu"
    queries: int = 5
    max_steps: int = 3000
    pinned_steps: int = 1000
    one_point_starts: int = 32
    one_point_steps: int = 1000
    threshold: float = 1e-2

    def __post_init__(self):
        checks.positive_int("n", self.n, minimum=2)
        checks.positive_int("d", self.d, minimum=2)
        object.__setattr__(self, "ratios", checks.increasing_ratios("ratios", self.ratios))
        if not (self.ratios[0] < 1 < self.ratios[-1]):
            raise ValueError(f"ratios must reach below and above 1 (the chapter compares the "
                             f"two sides of p = dn), got {self.ratios}")
        object.__setattr__(self, "seeds", checks.seed_list("seeds", self.seeds))
        checks.choice("activation", self.activation, ACTIVATIONS)
        checks.positive_int("queries", self.queries)
        checks.positive_int("max_steps", self.max_steps)
        checks.positive_int("pinned_steps", self.pinned_steps)
        checks.positive_int("one_point_starts", self.one_point_starts)
        checks.positive_int("one_point_steps", self.one_point_steps)
        checks.positive_float("threshold", self.threshold)

    @property
    def dn(self) -> int:
        """``d * n``."""
        return self.d * self.n

    def ps(self) -> list[int]:
        """``p`` of each ratio (at least 1)."""
        return [max(1, round(r * self.dn)) for r in self.ratios]

    def markers(self) -> dict[str, float]:
        """The ratios of the chapter's landmarks: ``p = n``, ``p - n = d - 1`` and ``p = d n``."""
        return {"p = n": self.n / self.dn, "p - n = d - 1": (self.n + self.d - 1) / self.dn,
                "p = dn": 1.0}


def _setup(settings: Leakage, p: int, seed: int):
    setup = problems.setup_synthetic_rf(settings.n, settings.d, p, seed, settings.activation)
    fresh_key = jax.random.fold_in(jax.random.key(seed), 1_000_003)
    fresh = project_to_sphere(jax.random.normal(fresh_key, (settings.queries, settings.d),
                                                setup.dataset.X.dtype), math.sqrt(settings.d))
    return setup, fresh


def run_cells(settings: Leakage, progress: bool = True) -> pd.DataFrame:
    """One row per (ratio, seed): ``p``, the relative train error ``MSE / var(y)``, the AUC
    of the one-point and the pinned membership scores (members: the ``n`` training points;
    others: ``queries`` fresh points), the share of one-point runs landing on a training
    point (:func:`recon.theory.landing_share`), the mean best-match cosine and the cosine of
    the largest principal angle between the spans of the reconstruction and of the data,
    the recovered share, the same two cosines for random points (chance), and
    ``trivially_satisfiable`` (``p <= n``: any candidates fit ``theta``; such cells are on
    the grid on purpose, for the label-fitting side of the curves)."""
    solver = preset("default", max_steps=settings.max_steps)
    cells = [(r, p, s) for r, p in zip(settings.ratios, settings.ps()) for s in settings.seeds]
    top = max(p for _, p, _ in cells)
    setups = [_setup(settings, p, s) for _, p, s in cells]
    padded = [problems.pad_features(problems.random_features_problem(su.model, settings.n), top)
              for su, _ in setups]
    keys = [jax.random.split(su.key, 3) for su, _ in setups]
    queries = [np.concatenate([np.asarray(su.dataset.X), np.asarray(fresh)])
               for su, fresh in setups]
    with warnings.catch_warnings():  # p <= n is on the grid on purpose: a column says so
        warnings.simplefilter("ignore", problems.UnderdeterminedWarning)
        full = solve_batch(padded, solver, [k[0] for k in keys], progress=progress,
                           allow_underdetermined=True)
        pinned = leakage.pinned_losses_many(list(zip(padded, queries)),
                                            pinned_solver(settings), [k[1] for k in keys],
                                            progress, allow_underdetermined=True)
    rows = [_row(settings, ratio, p, seed, su, fresh, problem, result, loss, key[2])
            for (ratio, p, seed), (su, fresh), problem, result, loss, key
            in zip(cells, setups, padded, full, pinned, keys)]
    return pd.DataFrame(rows)


def pinned_solver(settings: Leakage):
    """The solver of the pinned problems: the ``default`` preset's Adam with eight starts and
    no escape moves, for ``pinned_steps`` (``n - 1`` free candidates; many problems, so a
    light program: the AUC needs the members' losses below the others', not at zero)."""
    return preset("default", max_steps=settings.pinned_steps, restarts=8, smoothing=None,
                  reseed=None, cloning=None, polish=None)


def _row(settings, ratio, p, seed, setup, fresh, problem, result, pinned, key) -> dict:
    X, n = setup.dataset.X, settings.n
    one_point = leakage.one_point_scores(problem, np.concatenate([np.asarray(X),
                                                                 np.asarray(fresh)]))
    landing = theory.landing_share(setup.model, X, key, settings.one_point_starts,
                                   settings.one_point_steps, threshold=settings.threshold)
    cosine = lambda A: float(np.cos(leakage.principal_angles(A, X).max()))  # noqa: E731
    return {
        "ratio": ratio, "p": p, "seed": seed,
        "trivially_satisfiable": problems.real_feature_count(problem) <= n,
        "train_error": setup.fit.train_mse / float(np.var(np.asarray(setup.dataset.y))),
        "auc_one_point": leakage.membership_auc(one_point[:n], one_point[n:]),
        "auc_pinned": leakage.membership_auc(pinned[:n], pinned[n:]),
        "landing": landing.share,
        "best_cosine": float(leakage.best_match_cosines(result.X, X).mean()),
        "span_cosine": cosine(result.X),
        "recovered": metrics.recovered_fraction(result.X, X, settings.threshold),
        "chance_cosine": float(leakage.best_match_cosines(fresh[:n], X).mean()),
        "chance_span_cosine": cosine(fresh[:n]),
        "loss": result.loss,
    }


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """Every measured column averaged over seeds, one row per ratio."""
    return table.drop(columns="seed").groupby("ratio", as_index=False).mean()


def halfway_marks(mean: pd.DataFrame) -> dict[str, float]:
    """Each curve's halfway mark: midway between its chance level (a number, or the mean of a
    measured chance column) and its full-leak level."""
    marks = {}
    for name, (_, chance, full) in CURVES.items():
        level = float(mean[chance].mean()) if isinstance(chance, str) else chance
        marks[name] = (level + full) / 2
    return marks


def onsets(mean: pd.DataFrame) -> dict[str, float | None]:
    """For each curve, the ``p / (d n)`` at which it crosses its halfway mark for good
    (:func:`recon.leakage.onset`; ``None`` if it never does on the grid)."""
    marks = halfway_marks(mean)
    # every curve rises from chance to a full leak, except the train error, which falls
    return {name: leakage.onset(mean["ratio"], mean[name], marks[name],
                                rising=name != "train_error")
            for name in CURVES}


def plot_curves(table: pd.DataFrame, settings: Leakage):
    """Every curve against ``p / (d n)`` on a log axis (mean over seeds, band from the lowest
    to the highest seed), the landmarks as vertical lines."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    grouped = table.groupby("ratio")
    for name, (label, _, _) in CURVES.items():
        mean, lo, hi = (grouped[name].agg(f) for f in ("mean", "min", "max"))
        line, = ax.plot(mean.index, mean.values, marker="o", ms=3, label=label)
        ax.fill_between(mean.index, lo.values, hi.values, color=line.get_color(), alpha=0.15)
    for (label, ratio), style in zip(settings.markers().items(), (":", "-.", "--")):
        ax.axvline(ratio, color="k", ls=style, lw=0.8)
        ax.text(ratio, 1.04, label, rotation=0, ha="center", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("p / (d n)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def headline(settings: Leakage, table: pd.DataFrame) -> dict:
    """The numbers the chapter quotes: the sizes, the onsets (``leak_onsets``, name ->
    ratio, 2 decimals), the landmarks' ratios, and the curves at the largest ratio below
    ``d n``."""
    mean = curves(table)
    found = onsets(mean)
    below = mean[mean["ratio"] < 1].iloc[-1]
    return {
        "n": settings.n, "d": settings.d, "dn": settings.dn, "seed_count": len(settings.seeds),
        "leak_onsets": {k: None if v is None else glue.decimals(v, 2) for k, v in found.items()},
        "ratio_p_equals_n": glue.decimals(settings.n / settings.dn, 3),
        "ratio_one_sample": glue.decimals(settings.markers()["p - n = d - 1"], 3),
        "below_ratio": glue.decimals(below["ratio"], 2),
        "below_auc_one_point": glue.decimals(below["auc_one_point"], 2),
        "below_auc_pinned": glue.decimals(below["auc_pinned"], 2),
        "below_best_cosine": glue.decimals(below["best_cosine"], 2),
        "below_recovered": glue.decimals(below["recovered"], 2),
        "chance_cosine": glue.decimals(mean["chance_cosine"].mean(), 2),
    } | {f"onset_{k}": "beyond the grid" if v is None else f"{v:.2f}" for k, v in found.items()}


def claims(settings: Leakage, table: pd.DataFrame) -> list[Claim]:
    """The chapter's observed statements, checked on this run."""
    mean = curves(table)
    found = onsets(mean)
    below = mean[mean["ratio"] < 1]
    top = mean.iloc[-1]
    fit, rec = found["train_error"], found["recovered"]
    past = mean[mean["ratio"] >= settings.markers()["p - n = d - 1"]]
    return [
        claim("labels_before_data", "Labels are fitted at a far smaller p than the data are "
              "recovered: the train error's onset lies below a third of the recovery onset.",
              fit is not None and rec is not None and fit < rec / 3,
              train_error_onset=fit, recovered_onset=rec),
        claim("no_exact_recovery_below", "Below p = dn no sample is recovered exactly in any "
              "run.", float(table.loc[table["ratio"] < 1, "recovered"].max()) == 0.0,
              largest_recovered_below_dn=float(table.loc[table["ratio"] < 1, "recovered"].max())),
        claim("membership_leaks_below", "Membership leaks before the data do: the pinned "
              "attack's onset (mean AUC past 0.75) lies below p = dn, where no sample is "
              "recovered exactly.", found["auc_pinned"] is not None and found["auc_pinned"] < 1,
              onset_auc_pinned=found["auc_pinned"], recovered_onset=rec),
        claim("pinned_silent_far_below", "Far below d n (p at most (n - 1) d / 2) the pinned "
              "loss is zero for every query, members or not: its AUC is 0.5.",
              bool(np.allclose(mean.loc[mean["p"] <= (settings.n - 1) * settings.d / 2,
                                        "auc_pinned"], 0.5, atol=0.1)),
              auc_pinned=[glue.decimals(v, 2) for v in
                          mean.loc[mean["p"] <= (settings.n - 1) * settings.d / 2,
                                   "auc_pinned"]]),
        claim("one_point_weak_but_early", "The one-point score leaks membership weakly, from "
              "about p - n = d - 1 on: its mean AUC is above 0.6 at every ratio past that "
              "landmark, and below 0.9 everywhere.",
              bool((past["auc_one_point"] > 0.6).all() and (mean["auc_one_point"] < 0.9).all()),
              auc_one_point_past_landmark=[glue.decimals(v, 2) for v in past["auc_one_point"]],
              largest=glue.decimals(mean["auc_one_point"].max(), 2)),
        claim("all_leak_above", "At the largest ratio every curve has leaked fully: "
              "membership AUCs and recovered share at 1 (to 0.05).",
              min(top["auc_pinned"], top["recovered"]) >= 0.95,
              auc_pinned=glue.decimals(top["auc_pinned"], 2),
              recovered=glue.decimals(top["recovered"], 2)),
    ]
