"""The synthetic random-features chapter: the authors' experiment, attacked by two solvers.

:class:`SyntheticRF` holds the chapter's validated settings (built from the notebook's
parameters in one call); :meth:`SyntheticRF.setup` trains the model, :func:`run_solvers`
attacks its ``theta`` with the main preset and, for comparison, the other one;
:func:`sample_errors` measures the main reconstruction per sample, :func:`headline` gives
the numbers the chapter quotes and :func:`claims` checks its sentences against the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from recon import checks, metrics, problems
from recon.book import glue
from recon.book.claims import Claim, claim
from recon.chapters.settings import ChapterSettings
from recon.models import ACTIVATIONS
from recon.problems import SyntheticSetup
from recon.solver import PRESETS, Reconstruction, Solver, preset, solve


@dataclass(frozen=True)
class SyntheticRF(ChapterSettings):
    """The authors' synthetic random-features experiment.

    ``n`` inputs on the sphere of radius ``sqrt(d)`` in ``R^d``, labels ``y = x . g + noise``,
    an RF model with ``p`` features and activation ``activation``, trained to the minimum-norm
    interpolator; ``theta`` is then attacked with the solver preset ``solver`` (``lr`` and
    ``tol``: ``None`` keeps the preset's), and with the other preset for ``compare_steps``
    steps (0 skips it).
    """

    unset: ClassVar[dict] = {"lr": 0.0, "tol": 0.0}

    n: int
    d: int
    p: int
    activation: str = "relu"
    label_noise: float = 0.5
    seed: int = 0
    solver: str = "default"
    lr: float | None = None
    max_steps: int = 20_000
    tol: float | None = None
    compare_steps: int = 5_000
    threshold: float = 1e-2

    def __post_init__(self):
        checks.positive_int("n", self.n)
        checks.positive_int("d", self.d)
        checks.positive_int("p", self.p)
        checks.choice("activation", self.activation, ACTIVATIONS)
        checks.positive_float("label_noise", self.label_noise, allow_zero=True)
        checks.nonnegative_int("seed", self.seed)
        checks.choice("solver", self.solver, PRESETS)
        if self.lr is not None:
            checks.positive_float("lr", self.lr)
        checks.positive_int("max_steps", self.max_steps)
        if self.tol is not None:
            checks.positive_float("tol", self.tol, allow_zero=True)
        checks.nonnegative_int("compare_steps", self.compare_steps)
        checks.positive_float("threshold", self.threshold)
        problems.check_synthetic_rf_fits(self.n, self.d, self.p)

    @property
    def dn(self) -> int:
        """``d * n``, the number of unknowns, i.e. the reconstruction threshold on ``p``."""
        return self.d * self.n

    def make_solver(self, name: str | None = None, max_steps: int | None = None) -> Solver:
        """The solver preset ``name`` (default: ``self.solver``) with this experiment's
        overrides (``lr`` and ``tol`` apply to the main preset only)."""
        name = self.solver if name is None else name
        overrides = {"max_steps": max_steps or self.max_steps}
        if name == self.solver:
            if self.lr is not None:
                overrides["lr"] = self.lr
            if self.tol is not None:
                overrides["tol"] = self.tol
        return preset(name, **overrides)

    def setup(self) -> SyntheticSetup:
        """The data, the trained model, its fit and the solver's key
        (:func:`recon.problems.setup_synthetic_rf` with this experiment's values)."""
        return problems.setup_synthetic_rf(self.n, self.d, self.p, self.seed, self.activation,
                                           self.label_noise)


def _label(name: str) -> str:
    return f"{name} (ours)" if name == "default" else f"{name} (authors')"


class Runs(NamedTuple):
    """The main preset's reconstruction (``main``), and every run by its label (``by_label``:
    ``"default (ours)"``, ``"reference (authors')"``), the main one first."""

    main: Reconstruction
    by_label: dict[str, Reconstruction]


def run_solvers(settings: SyntheticRF, setup: SyntheticSetup) -> Runs:
    """Minimise ``L(X_hat)`` for ``theta`` of ``setup.model`` with the main preset, then (unless
    ``compare_steps`` is 0) with the other preset from the same key; the truth only records
    the error curves."""
    problem = problems.random_features_problem(setup.model, settings.n)
    truth = setup.dataset.X
    main = solve(problem, settings.make_solver(), setup.key, truth=truth)
    runs = {_label(settings.solver): main}
    if settings.compare_steps > 0:
        other = "reference" if settings.solver == "default" else "default"
        runs[_label(other)] = solve(problem, settings.make_solver(other, settings.compare_steps),
                                    setup.key, truth=truth)
    return Runs(main, runs)


def run_table(runs: Runs, X, threshold: float) -> str:
    """One line per run: final loss, steps, seconds and the share of the rows of ``X``
    recovered (matched error below ``threshold``)."""
    lines = []
    for label, r in runs.by_label.items():
        share = metrics.recovered_fraction(r.X, X, threshold)
        lines.append(f"{label:18s} loss {r.loss:.1e}  steps {r.iterations:6d}  "
                     f"{r.seconds:6.1f} s  recovered {share:.0%}")
    return "\n".join(lines)


class SampleErrors(NamedTuple):
    """Matched per-sample errors ``min(|x_i - x_hat_i|, |x_i + x_hat_i|)/sqrt(d)``
    (``sign_aware``) and ``|x_i - x_hat_i|/sqrt(d)`` (``signed``)."""

    sign_aware: np.ndarray
    signed: np.ndarray


def sample_errors(X_hat, X) -> SampleErrors:
    """The sign-aware and the signed per-sample errors of ``X_hat`` against ``X``; raises
    ``FloatingPointError`` if the reconstruction is not finite."""
    aware = metrics.per_sample_errors(X_hat, X, sign_aware=True)
    signed = metrics.per_sample_errors(X_hat, X, sign_aware=False)
    if not np.all(np.isfinite(aware)):
        raise FloatingPointError("the reconstruction contains NaN")
    return SampleErrors(aware, signed)


def headline(settings: SyntheticRF, setup: SyntheticSetup, result: Reconstruction,
             errors: SampleErrors, span: np.ndarray) -> dict:
    """The numbers the chapter quotes: train MSE and mean error (3 significant digits), the
    recovered share, iterations, seconds and compile seconds (1 decimal), the solver's name,
    ``p/(d n)`` (2 decimals), the largest feature-span residual of ``span``
    (:func:`span_residuals`; 3 significant digits) and the other preset's step budget."""
    return {
        "train_mse": glue.significant(setup.fit.train_mse, 3),
        "recovered_fraction": metrics.recovered_fraction(result.X, setup.dataset.X,
                                                         settings.threshold),
        "mean_error": glue.significant(errors.sign_aware.mean(), 3),
        "iterations": result.iterations,
        "seconds": glue.decimals(result.seconds, 1),
        "compile_seconds": glue.decimals(result.compile_seconds, 1),
        "solver_name": settings.solver,
        "p_over_dn": glue.decimals(settings.p / settings.dn, 2),
        "span_residual": glue.significant(span.max(), 3),
        "compare_steps": settings.compare_steps,
    }


def span_residuals(settings: SyntheticRF, setup: SyntheticSetup, X_hat) -> np.ndarray:
    """The paper's feature-span residual of each training point: the part of its feature
    vector outside the span of the reconstruction's features, over ``sqrt(p)``
    (:func:`recon.metrics.feature_span_residuals`)."""
    problem = problems.random_features_problem(setup.model, settings.n)
    return metrics.feature_span_residuals(problem.feature_matrix(setup.dataset.X),
                                          problem.feature_matrix(X_hat))


def claims(settings: SyntheticRF, setup: SyntheticSetup, runs: Runs, errors: SampleErrors,
           span: np.ndarray) -> list[Claim]:
    """The chapter's observed statements, each checked on this run: the labels are fitted,
    the main solver recovers every point, the feature-span residual ``span`` of its
    reconstruction (:func:`span_residuals`) vanishes, the sign is
    recovered (activations that are not odd), and ours reaches its tolerance in fewer steps
    than the authors' settings (when both ran)."""
    recovered = metrics.recovered_fraction(runs.main.X, setup.dataset.X, settings.threshold)
    found = [
        claim("labels_fitted", "The labels are fitted exactly (train MSE below 1e-8).",
              setup.fit.train_mse < 1e-8, train_mse=glue.significant(setup.fit.train_mse, 3)),
        claim("all_recovered", f"The {settings.solver} solver recovers every training point "
              f"(matched error below {settings.threshold:g}).", recovered == 1.0,
              recovered_fraction=recovered),
        claim("span_residual_vanishes", "Every training point's feature vector lies in the span "
              "of the reconstruction's features (feature-span residual below 1e-3).",
              span.max() < 1e-3, largest_span_residual=glue.significant(span.max(), 3)),
    ]
    if settings.activation != "tanh":
        gap = float(np.abs(errors.signed - errors.sign_aware).max())
        found.append(claim("sign_recovered", "The signed and the sign-aware errors agree: the "
                           "sign is recovered too.", gap < 1e-9, largest_gap=gap))
    if len(runs.by_label) == 2:
        ours, theirs = (runs.by_label[_label(name)] for name in ("default", "reference"))
        found.append(claim(
            "ours_first", "Our solver reaches its tolerance, in fewer steps than the authors' "
            "settings reach theirs.", ours.converged and (not theirs.converged
                                                         or ours.iterations < theirs.iterations),
            default_steps=ours.iterations, default_converged=ours.converged,
            reference_steps=theirs.iterations, reference_converged=theirs.converged,
            reference_loss=glue.significant(theirs.loss, 3)))
    return found
