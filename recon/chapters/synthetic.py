"""Validated settings of the book's experiments. Notebooks build one from their parameters
cell first, so a wrong value (as papermill may inject) stops the run with a clear message
before any computation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from recon import checks
from recon.models import ACTIVATIONS
from recon.solver import PRESETS, Solver, preset


@dataclass(frozen=True)
class SyntheticRF:
    """The authors' synthetic random-features experiment.

    ``n`` inputs on the sphere of radius ``sqrt(d)`` in ``R^d``, labels ``y = x . g + noise``,
    an RF model with ``p`` features and activation ``activation``, trained to the minimum-norm
    interpolator; ``theta`` is then attacked with the solver preset ``solver``.
    """

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
        checks.positive_float("threshold", self.threshold)

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

    def as_dict(self) -> dict:
        """The settings as a plain dictionary (for figure sidecars)."""
        return asdict(self)
