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


def setup_synthetic_rf(n: int, d: int, p: int, seed: int = 0, activation: str = "relu",
                       label_noise: float = 0.5, dtype=None):
    """Data, trained RF model, fit report and solver key of one synthetic experiment.

    One ``seed`` is split into independent keys for the data, ``V`` and the solver, exactly as
    the chapter notebooks do. Returns ``(dataset, model, fit, key_solver)``.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from recon import data, train
    from recon.models import RandomFeatures

    dtype = jnp.float32 if dtype is None else dtype
    key_data, key_model, key_solver = jax.random.split(jax.random.key(seed), 3)
    dataset = data.synthetic_regression(key_data, n, d, noise=label_noise, dtype=dtype)
    model = RandomFeatures(d, p, activation, rngs=nnx.Rngs(params=key_model), dtype=dtype)
    fit = train.fit_min_norm(model, dataset.X, dataset.y)
    return dataset, model, fit, key_solver


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
