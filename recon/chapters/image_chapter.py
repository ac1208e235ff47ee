"""The image chapters: random features on real images (``images_rf``), the two-layer network
(``two_layer``) and the residual network (``resnet``).

Each chapter has a settings dataclass (:class:`ImagesRF`, :class:`TwoLayerImages`,
:class:`ResNetImages`) built from the notebook's parameters cell; building it checks every
value, so a wrong parameter stops the notebook before anything is loaded or trained. The
settings then do the work, so the notebooks stay thin:

- :meth:`ImageChapter.load` loads the ``n`` images and puts them on the sphere of radius
  ``sqrt(d)`` (:func:`recon.images.to_sphere`), keeping each row's scale to undo it for display;
- :meth:`ImageChapter.run` trains one model of a given size (``p`` features for RF, a hidden
  width for the networks), attacks its readout with the solver and evaluates the result
  (:class:`Outcome`);
- :meth:`ImageChapter.sweep` repeats that over ``p = ratio * d * n`` for the chapter's
  ``ratios``, and :func:`sweep_table` lays the outcomes out as a table.

The truth is used only to evaluate and display (and to draw the solver's error history);
the solver sees ``theta``, the feature map and ``n``, nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from recon import checks, images
from recon.models import ACTIVATIONS

# Shape of one image of each source before downsampling (patches: the default 32x32 cut).
SOURCE_SHAPES = {"cifar10": images.CIFAR10_SHAPE, "digits": images.DIGITS_SHAPE,
                 "patches": (32, 32, 3)}


class ChapterData(NamedTuple):
    """The training images of a chapter: the dataset, its rows on the sphere of radius
    ``sqrt(d)`` (``X``, float32 ``n x d``) and each row's scale ``||x_i|| / sqrt(d)`` before
    that projection (``scale``, ``n x 1``), so ``from_sphere(X, scale) == dataset.X``."""

    dataset: images.ImageDataset
    X: np.ndarray
    scale: np.ndarray

    @property
    def n(self) -> int:
        """Number of training images."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Input dimension ``H*W*C``."""
        return self.X.shape[1]

    @property
    def dn(self) -> int:
        """``d * n``, the number of unknowns, i.e. the reconstruction threshold on ``p``."""
        return self.d * self.n

    def description(self) -> str:
        """e.g. ``"patches (astronaut vs coffee), 6 images of 8x8x3"``."""
        ds = self.dataset
        joiner = " vs " if len(ds.classes) == 2 else ", "
        shape = "x".join(map(str, ds.image_shape))
        return f"{ds.name} ({joiner.join(ds.classes)}), {ds.n} images of {shape}"


class Outcome(NamedTuple):
    """One trained model, attacked and evaluated.

    Attributes:
        size: the model's size knob (``p`` for RF, the hidden width for the networks).
        p: parameter count of the attacked readout (length of ``theta``).
        p_over_dn: ``p / (d n)``.
        train_loss: training loss at the end (RF: train MSE of the min-norm fit).
        train_steps: gradient steps of training (0 for RF's closed-form fit).
        loss: the solver's final projection loss.
        loss_at_truth: the projection loss at the true data, a diagnostic only (the solver
            never sees it): 0 up to rounding for RF; for the networks a floor above 0, since
            the layers below the readout move during training, so ``theta`` is only nearly in
            the span of the training features.
        iterations, seconds, compile_seconds, converged: from the solver.
        X_hat: the reconstruction on the sphere, matched to the training order and flipped to
            the sign that matches each training row (for display; ReLU recovers the sign).
        errors: matched sign-aware errors ``min ||x_i -+ x_hat_i|| / sqrt(d)``.
        sign_flips: how many matched reconstructions came out as ``-x_i``.
        recovered_fraction: share of ``errors`` below the threshold.
        mean_error: mean of ``errors``.
        images_hat: ``X_hat`` as images in ``[0, 1]`` (sphere scale and normalisation undone).
        psnr, ssim: per-image PSNR (dB) and SSIM against the originals.
        ssim_success: number of images with SSIM above the chapter's level.
        history: the solver's :class:`recon.solver.History`.
    """

    size: int
    p: int
    p_over_dn: float
    train_loss: float
    train_steps: int
    loss: float
    loss_at_truth: float
    iterations: int
    seconds: float
    compile_seconds: float
    converged: bool
    X_hat: np.ndarray
    errors: np.ndarray
    sign_flips: int
    recovered_fraction: float
    mean_error: float
    images_hat: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    ssim_success: int
    history: Any

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the images."""
        return float(np.mean(self.ssim))

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR (dB) over the images (``inf`` if an image is reproduced exactly)."""
        return float(np.mean(self.psnr))


def evaluate(data: ChapterData, X_hat, threshold: float = 1e-2, ssim_level: float = 0.4):
    """Compare a reconstruction ``X_hat`` (rows on the sphere, any order and signs) with the
    training images: Hungarian matching with the sign-aware error, each matched row flipped to
    the sign that matches its training row, then the errors and the image metrics.

    Returns a dict with the :class:`Outcome` fields ``X_hat`` ... ``ssim_success``.
    """
    from recon import metrics

    X = np.asarray(data.X, np.float64)
    matching = metrics.match(X_hat, X, sign_aware=True)
    X_hat = np.asarray(X_hat, np.float64)[matching.order]
    signs = np.where(np.sum(X_hat * X, axis=1, keepdims=True) < 0, -1.0, 1.0)
    X_hat = X_hat * signs
    images_hat = data.dataset.to_images(images.from_sphere(X_hat, data.scale))
    quality = metrics.image_metrics(data.dataset.to_images(), images_hat)
    return {
        "X_hat": X_hat,
        "errors": matching.errors,
        "sign_flips": int(np.sum(signs < 0)),
        "recovered_fraction": float(np.mean(matching.errors < threshold)),
        "mean_error": float(np.mean(matching.errors)),
        "images_hat": images_hat,
        "psnr": quality.psnr,
        "ssim": quality.ssim,
        "ssim_success": metrics.ssim_success(quality.ssim, ssim_level),
    }


def loss_at(problem, X, ridge: float = 1e-10) -> float:
    """The projection loss ``L(X)`` of ``problem`` at the inputs ``X`` (one jit-compiled call,
    the model's arrays passed as arguments, not baked in as constants). A diagnostic: at the
    true data it is 0 for random features and a small floor for trained networks."""
    import jax

    from recon.loss import projection_residual

    def loss(state, theta, X):
        r = projection_residual(problem.features(state, X), theta, ridge)
        theta = theta.astype(r.dtype)
        return (r @ r) / (theta @ theta)

    return float(jax.jit(loss)(problem.state, problem.theta, X))


def _ratios(value) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"ratios must be a non-empty list of numbers p/(d n), got {value!r}")
    ratios = [checks.positive_float("ratios", r) for r in value]
    if any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"ratios must be increasing, got {ratios}")
    return ratios


def _optional_positive(name: str, value):
    """``None`` stays ``None`` (the preset's value); else a positive real number."""
    return None if value is None else checks.positive_float(name, value)


@dataclass(frozen=True)
class ImageChapter:
    """Settings shared by the image chapters.

    Attributes:
        dataset: ``"patches"``, ``"digits"`` or ``"cifar10"`` (see :mod:`recon.images`).
        n: number of training images.
        classes: the classes (names or indices); ``None`` for the chapter's default.
        downsample: average each ``f x f`` block of pixels (``d`` shrinks by ``f^2``).
        sample_seed: which images: ``-1`` the first ones in file order (the authors' choice),
            else a random subset drawn with this seed.
        data_root: folder holding ``cifar-10-binary.tar.gz``; ``None`` for ``$RECON_DATA`` or
            ``~/.cache/recon``.
        ratios: the sweep's ``p / (d n)``, increasing.
        seed: one seed for the model's random weights and the solver's start.
        lr, tol: the solver's learning rate and loss tolerance; ``None`` keeps the preset's.
        max_steps: the solver's step budget per model.
        restarts: random starts the solver runs side by side (0: chosen by problem size).
        reseed_patience: the default solver's stuck-candidate reseeding period (0: off).
        threshold: a sample counts as recovered when its matched error is below this.
        ssim_level: an image counts as reconstructed when its SSIM is above this (0.4 in the
            paper).
    """

    task: ClassVar[str] = "binary"
    normalization: ClassVar[str] = "global"
    size_name: ClassVar[str] = "p"

    dataset: str = "patches"
    n: int = 6
    classes: list | None = None
    downsample: int = 1
    sample_seed: int = 0
    data_root: str | None = None
    ratios: list = field(default_factory=lambda: [0.5, 1.0, 2.0, 5.0])
    seed: int = 0
    lr: float | None = None
    tol: float | None = None
    max_steps: int = 3000
    restarts: int = 0
    reseed_patience: int = 300
    threshold: float = 1e-2
    ssim_level: float = 0.4

    def __post_init__(self):
        checks.choice("dataset", self.dataset, images.DATASETS)
        checks.positive_int("n", self.n)
        if self.task == "binary" and self.n % 2:
            raise ValueError(f"n must be even (two classes, n/2 images each), got n={self.n}")
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not isinstance(self.classes,
                                                                        (list, tuple)):
                raise TypeError(f"classes must be a list of class names or indices (or empty "
                                f"for the default), got {self.classes!r}")
            object.__setattr__(self, "classes", list(self.classes) or None)
        checks.positive_int("downsample", self.downsample)
        H, W, _ = SOURCE_SHAPES[self.dataset]
        if H % self.downsample or W % self.downsample:
            raise ValueError(f"downsample={self.downsample} must divide the {H}x{W} images of "
                             f"{self.dataset!r}")
        checks.positive_int("sample_seed", self.sample_seed, minimum=-1)
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise TypeError(f"data_root must be a folder path (str), got {self.data_root!r}")
        object.__setattr__(self, "ratios", _ratios(self.ratios))
        checks.nonnegative_int("seed", self.seed)
        object.__setattr__(self, "lr", _optional_positive("lr", self.lr))
        if self.tol is not None:
            checks.positive_float("tol", self.tol, allow_zero=True)
        checks.positive_int("max_steps", self.max_steps)
        checks.nonnegative_int("restarts", self.restarts)
        checks.nonnegative_int("reseed_patience", self.reseed_patience)
        if self.reseed_patience % 100:
            raise ValueError(f"reseed_patience must be a multiple of 100 (the solver's block), "
                             f"got {self.reseed_patience}")
        checks.positive_float("threshold", self.threshold)
        checks.fraction("ssim_level", self.ssim_level)

    # ------------------------------------------------------------------ data

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one training image after downsampling."""
        H, W, C = SOURCE_SHAPES[self.dataset]
        return (H // self.downsample, W // self.downsample, C)

    @property
    def d(self) -> int:
        """Input dimension ``H*W*C``."""
        H, W, C = self.image_shape
        return H * W * C

    @property
    def dn(self) -> int:
        """``d * n``."""
        return self.d * self.n

    def _load_kwargs(self) -> dict:
        return {"task": self.task, "classes": self.classes}

    def load(self) -> ChapterData:
        """Load the ``n`` images and put each row on the sphere of radius ``sqrt(d)``."""
        ds = images.load_images(self.dataset, self.n, normalization=self.normalization,
                                downsample=self.downsample,
                                seed=None if self.sample_seed < 0 else self.sample_seed,
                                root=self.data_root, **self._load_kwargs())
        X, scale = images.to_sphere(ds.X)
        return ChapterData(ds, np.asarray(X, np.float32), np.asarray(scale))

    # ------------------------------------------------------------------ models

    @property
    def main_size(self) -> int:
        """Size of the chapter's main run (``p`` for RF, ``width`` for the networks)."""
        return getattr(self, self.size_name)

    def p_of(self, size: int) -> int:
        """Parameter count of the readout for a model of this ``size``."""
        return size

    def size_for(self, ratio: float) -> int:
        """The model size whose readout has about ``ratio * d * n`` parameters."""
        return max(1, int(round(ratio * self.dn / (self.p_of(1)))))

    def make_solver(self):
        """The default solver preset with this chapter's overrides."""
        from recon.solver import preset

        overrides = {"max_steps": self.max_steps, "restarts": self.restarts,
                     "reseed_patience": self.reseed_patience}
        if self.lr is not None:
            overrides["lr"] = self.lr
        if self.tol is not None:
            overrides["tol"] = self.tol
        return preset("default", **overrides)

    def keys(self):
        """``(key_model, key_solver)`` split from ``seed``."""
        import jax

        return tuple(jax.random.split(jax.random.key(self.seed), 2))

    def train(self, data: ChapterData, size: int, progress: bool = True):
        """Train a model of ``size``; returns ``(problem, train_loss, train_steps)``."""
        raise NotImplementedError

    def run(self, data: ChapterData, size: int, progress: bool = True) -> Outcome:
        """Train a model of ``size`` on ``data``, reconstruct its training images from the
        readout alone, and evaluate the reconstruction against the truth."""
        import jax.numpy as jnp

        from recon import solver as solvers

        size = checks.positive_int(self.size_name, size)
        problem, train_loss, train_steps = self.train(data, size, progress)
        truth = jnp.asarray(data.X, problem.theta.dtype)
        solver = self.make_solver()
        result = solvers.solve(problem, solver, self.keys()[1], truth=truth, progress=progress)
        if not np.all(np.isfinite(np.asarray(result.X))):
            raise FloatingPointError("the reconstruction contains NaN")
        loss_at_truth = loss_at(problem, truth, solver.ridge)
        p = problem.P
        return Outcome(size=size, p=p, p_over_dn=p / data.dn, train_loss=float(train_loss),
                       train_steps=int(train_steps), loss=result.loss,
                       loss_at_truth=loss_at_truth, iterations=result.iterations,
                       seconds=result.seconds, compile_seconds=result.compile_seconds,
                       converged=result.converged, history=result.history,
                       **evaluate(data, result.X, self.threshold, self.ssim_level))

    def sweep(self, data: ChapterData, main: Outcome | None = None,
              progress: bool = True) -> list[Outcome]:
        """:meth:`run` at the size of every ratio in ``ratios``, sorted by ``p``. The chapter's
        ``main`` run is part of the result: reused where its size comes up in the sweep,
        added otherwise."""
        from tqdm.auto import tqdm

        outcomes = []
        for ratio in tqdm(self.ratios, desc="sweep", disable=not progress, leave=False):
            size = self.size_for(ratio)
            if main is not None and main.size == size:
                outcomes.append(main)
            elif size not in {o.size for o in outcomes}:
                outcomes.append(self.run(data, size, progress=False))
        if main is not None and all(o is not main for o in outcomes):
            outcomes.append(main)
        return sorted(outcomes, key=lambda o: o.p)

    def as_dict(self) -> dict:
        """The settings as a plain dictionary (for figure sidecars)."""
        return asdict(self)


@dataclass(frozen=True)
class ImagesRF(ImageChapter):
    """Random features on real images: binary task (labels ``-1/+1``), images standardised
    by one global mean and standard deviation, ``phi(x) = act(V x)`` with ``p`` features,
    ``theta`` the minimum-norm interpolator; ``size`` is ``p``."""

    downsample: int = 4
    p: int = 5760
    activation: str = "relu"

    def __post_init__(self):
        super().__post_init__()
        checks.positive_int("p", self.p)
        checks.choice("activation", self.activation, ACTIVATIONS)

    def train(self, data: ChapterData, size: int, progress: bool = True):
        """RF with ``p = size`` features, ``theta`` set to the min-norm interpolator."""
        import jax.numpy as jnp
        from flax import nnx

        from recon import problems, train
        from recon.models import RandomFeatures

        model = RandomFeatures(data.d, size, self.activation,
                               rngs=nnx.Rngs(params=self.keys()[0]))
        fit = train.fit_min_norm(model, jnp.asarray(data.X), jnp.asarray(data.dataset.y))
        return problems.random_features_problem(model, data.n), fit.train_mse, 0


@dataclass(frozen=True)
class _Network(ImageChapter):
    """Shared settings of the trained networks (every weight trained by full-batch gradient
    descent, :func:`recon.train.train_full_batch`)."""

    size_name: ClassVar[str] = "width"

    width: int = 1600
    train_lr: float | None = None
    train_steps: int = 5000
    train_tol: float = 1e-8
    restarts: int = 1
    reseed_patience: int = 0

    def __post_init__(self):
        super().__post_init__()
        checks.positive_int("width", self.width)
        object.__setattr__(self, "train_lr", _optional_positive("train_lr", self.train_lr))
        checks.positive_int("train_steps", self.train_steps)
        checks.positive_float("train_tol", self.train_tol, allow_zero=True)

    def model(self, data: ChapterData, width: int):
        """A freshly initialised network of ``width``."""
        raise NotImplementedError

    def train(self, data: ChapterData, size: int, progress: bool = True):
        """The network of ``width = size``, every weight trained; the problem attacks the
        change of its readout."""
        import jax.numpy as jnp

        from recon import problems, train

        model = self.model(data, size)
        report = train.train_full_batch(model, jnp.asarray(data.X), jnp.asarray(data.dataset.y),
                                        lr=self.train_lr or "auto", max_steps=self.train_steps,
                                        tol=self.train_tol, progress=progress)
        problem = problems.readout_problem(model, model.readout_name, report.initial_readout,
                                           data.n)
        return problem, report.final_loss, report.steps


@dataclass(frozen=True)
class TwoLayerImages(_Network):
    """The two-layer network ``W2 act(W1 x)`` on the first ``k`` classes (``n/k`` images
    each, one-hot targets, globally standardised images); the readout ``W2`` is attacked, so
    ``p = width * k``."""

    task: ClassVar[str] = "multiclass"

    dataset: str = "digits"
    n: int = 10
    width: int = 3200
    reseed_patience: int = 300
    k: int = 2
    activation: str = "relu"

    def __post_init__(self):
        super().__post_init__()
        checks.positive_int("k", self.k)
        checks.choice("activation", self.activation, ACTIVATIONS)
        if self.n % self.k:
            raise ValueError(f"n must be a multiple of k={self.k} (n/k images per class), "
                             f"got n={self.n}")

    def _load_kwargs(self) -> dict:
        return {"task": "multiclass", "classes": self.classes, "k": self.k}

    def p_of(self, size: int) -> int:
        """``p = width * k``."""
        return size * self.k

    def model(self, data: ChapterData, width: int):
        """A fresh :class:`recon.networks.TwoLayer`."""
        from flax import nnx

        from recon.networks import TwoLayer

        return TwoLayer(data.d, width, k=self.k, activation=self.activation,
                        rngs=nnx.Rngs(params=self.keys()[0]))


@dataclass(frozen=True)
class ResNetImages(_Network):
    """The paper's residual network on a binary task (labels ``-1/+1``, images normalised per
    channel): a ``stem_kernel`` stem, ``blocks`` residual blocks of ``width`` channels, and a
    linear head on the ``Hm x Wm x width`` maps; the head is attacked, so
    ``p = width * Hm * Wm``."""

    normalization: ClassVar[str] = "channel"

    dataset: str = "digits"
    n: int = 4
    width: int = 102
    restarts: int = 4
    blocks: int = 2
    stem_kernel: int = 6
    stem_padding: int = 1

    def __post_init__(self):
        super().__post_init__()
        checks.nonnegative_int("blocks", self.blocks)
        checks.positive_int("stem_kernel", self.stem_kernel)
        checks.nonnegative_int("stem_padding", self.stem_padding)
        H, W, _ = self.image_shape
        if min(self.feature_map_shape) < 1:
            padded = min(H, W) + 2 * self.stem_padding
            raise ValueError(f"stem_kernel={self.stem_kernel} with stem_padding="
                             f"{self.stem_padding} does not fit the {H}x{W} images: it must be "
                             f"at most {padded}")

    @property
    def feature_map_shape(self) -> tuple[int, int]:
        """``(Hm, Wm)``, the maps after the stem: ``H + 2 padding - kernel + 1``."""
        H, W, _ = self.image_shape
        grow = 2 * self.stem_padding - self.stem_kernel + 1
        return (H + grow, W + grow)

    def p_of(self, size: int) -> int:
        """``p = width * Hm * Wm``."""
        Hm, Wm = self.feature_map_shape
        return size * Hm * Wm

    def model(self, data: ChapterData, width: int):
        """A fresh :class:`recon.networks.ResNet`."""
        from flax import nnx

        from recon.networks import ResNet

        return ResNet(data.dataset.image_shape, width, blocks=self.blocks,
                      stem_kernel=self.stem_kernel, stem_padding=self.stem_padding, k=1,
                      rngs=nnx.Rngs(params=self.keys()[0]))


def sweep_table(outcomes: list[Outcome]):
    """The sweep as a ``pandas.DataFrame``, one row per model size."""
    import pandas as pd

    return pd.DataFrame([{
        "size": o.size, "p": o.p, "p_over_dn": round(o.p_over_dn, 3),
        "mean_error": o.mean_error, "recovered_fraction": o.recovered_fraction,
        "mean_ssim": o.mean_ssim, "mean_psnr": o.mean_psnr, "ssim_success": o.ssim_success,
        "loss": o.loss, "loss_at_truth": o.loss_at_truth, "train_loss": o.train_loss,
        "iterations": o.iterations, "seconds": round(o.seconds, 1),
    } for o in outcomes])


def image_table(data: ChapterData, outcome: Outcome):
    """Per-image results of one run: class, matched error, PSNR and SSIM."""
    import pandas as pd

    ds = data.dataset
    return pd.DataFrame({
        "class": [ds.classes[c] for c in ds.labels],
        "error": outcome.errors,
        "PSNR (dB)": outcome.psnr,
        "SSIM": outcome.ssim,
    }).rename_axis("image")


def shown(n: int, count: int) -> np.ndarray:
    """Indices of ``count`` images spread evenly over ``n`` (all of them if ``count >= n``),
    so every class appears in the grid."""
    count = checks.positive_int("count", count)
    if count >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(int))
