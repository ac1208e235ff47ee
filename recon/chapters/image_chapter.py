"""What the image chapters share: random features on real images (:mod:`.images_rf`), the
two-layer network (:mod:`.two_layer`) and the residual network (:mod:`.resnet`).

Each chapter has a settings dataclass built from the notebook's parameters in one call
(``Settings.from_parameters(globals())``); building it checks every value, so a wrong
parameter stops the notebook before anything is loaded or trained. The settings then do the
work, so the notebooks stay thin:

- :meth:`ImageChapter.load` loads the ``n`` images and puts them on the sphere of radius
  ``sqrt(d)`` (:func:`recon.images.to_sphere`), keeping each row's scale to undo it for display;
- :meth:`ImageChapter.run` trains one model of a given size (``p`` features for RF, a hidden
  width for the networks), attacks its readout with the solver and evaluates the result
  (:class:`Outcome`);
- :meth:`ImageChapter.sweep` repeats that over ``p = ratio * d * n`` for the chapter's
  ``ratios``, and :func:`sweep_table` lays the outcomes out as a table;
- :func:`grid_figure`, :func:`quality_figure` and :func:`sweep_figure` draw and save the
  chapter's three figures, and :meth:`ImageChapter.headline` names and rounds the numbers the
  text quotes.

The truth is used only to evaluate and display (and to draw the solver's error history);
the solver sees ``theta``, the feature map and ``n``, nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from recon import checks, images, metrics, plots, problems, train
from recon import solver as solvers
from recon.book import figures
from recon.book.claims import Claim, claim
from recon.book.glue import decimals, significant
from recon.chapters.settings import ChapterSettings
from recon.loss import projection_loss


class ChapterData(NamedTuple):
    """The training images of a chapter: the dataset, its rows on the sphere of radius
    ``sqrt(d)`` (``X``, float32 ``n x d``), each row's scale ``||x_i|| / sqrt(d)`` before
    that projection (``scale``, ``n x 1``), so ``from_sphere(X, scale) == dataset.X``, and
    each image's SSIM baseline (``baseline``, ``(n,)``): the best SSIM of a held-out image of
    its class, what a guess reaches without the weights (:func:`recon.metrics.ssim_baseline`).
    """

    dataset: images.ImageDataset
    X: np.ndarray
    scale: np.ndarray
    baseline: np.ndarray

    @property
    def n(self) -> int:
        """Number of training images."""
        return self.dataset.n

    @property
    def d(self) -> int:
        """Input dimension ``H*W*C``."""
        return self.dataset.d

    @property
    def dn(self) -> int:
        """``d * n``, the number of unknowns, i.e. the reconstruction threshold on ``p``."""
        return self.d * self.n

    def description(self) -> str:
        """e.g. ``"photos (colour vs grayscale), 10 images of 16x16x3"``."""
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
        beats_baseline: number of images whose SSIM beats their baseline clearly
            (:func:`recon.metrics.beats_baseline` with the chapter's margin).
        history: the solver's :class:`recon.solver.History`.
        wall_seconds: the whole run: training, attack and evaluation.
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
    beats_baseline: int
    history: Any
    wall_seconds: float = float("nan")

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the images."""
        return float(np.mean(self.ssim))

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR (dB) over the images (``inf`` if an image is reproduced exactly)."""
        return float(np.mean(self.psnr))

    def summary(self) -> str:
        """One line: ``p / (d n)``, the training, the solver's run and what it recovered."""
        trained = (f"train loss {self.train_loss:.1e} after {self.train_steps} steps"
                   if self.train_steps else f"train MSE {self.train_loss:.1e} (closed form)")
        return (f"p / (d n) = {self.p_over_dn:.2f}: {trained}; projection loss {self.loss:.1e} "
                f"(at the true images {self.loss_at_truth:.1e}) after {self.iterations} steps "
                f"({self.seconds:.1f} s + {self.compile_seconds:.1f} s compiling); recovered "
                f"{self.recovered_fraction:.0%}, mean SSIM {self.mean_ssim:.3f}")


def evaluate(data: ChapterData, X_hat, threshold: float = 1e-2, ssim_level: float = 0.4,
             margin: float = 0.5):
    """Compare a reconstruction ``X_hat`` (rows on the sphere, any order and signs) with the
    training images: Hungarian matching with the sign-aware error, each matched row flipped to
    the sign that matches its training row (:func:`recon.metrics.align`), then the errors, the
    image metrics and the count of SSIMs that close more than the share ``margin`` of the gap
    from ``data.baseline`` to 1 (:func:`recon.metrics.beats_baseline`).

    Returns a dict with the :class:`Outcome` fields ``X_hat`` ... ``beats_baseline``.
    """
    aligned = metrics.align(X_hat, data.X, sign_aware=True)
    images_hat = data.dataset.to_images(images.from_sphere(aligned.X_hat, data.scale))
    quality = metrics.image_metrics(data.dataset.to_images(), images_hat)
    return {
        "X_hat": aligned.X_hat,
        "errors": aligned.errors,
        "sign_flips": int(np.sum(aligned.signs < 0)),
        "recovered_fraction": float(np.mean(aligned.errors < threshold)),
        "mean_error": float(np.mean(aligned.errors)),
        "images_hat": images_hat,
        "psnr": quality.psnr,
        "ssim": quality.ssim,
        "ssim_success": metrics.ssim_success(quality.ssim, ssim_level),
        "beats_baseline": int(metrics.beats_baseline(quality.ssim, data.baseline, margin).sum()),
    }


@dataclass(frozen=True)
class ImageChapter(ChapterSettings):
    """Settings shared by the image chapters.

    Attributes:
        dataset: ``"photos"``, ``"patches"``, ``"digits"`` or ``"cifar10"`` (see
            :mod:`recon.images`).
        image_side: ``"photos"``: the thumbnails' side in pixels (one of
            :data:`recon.images.PHOTO_SIDES`); other datasets: ``None`` or their fixed side.
        channels: ``"photos"``: 3 (colour) or 1 (grey); other datasets: ``None`` or their
            fixed channel count.
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
        reseed_pool, reseed_steps: the one-point searches of each re-seed (how many, how
            many steps each; :class:`recon.solver.Reseed`); fewer and shorter searches make
            a re-seed cheaper where each is a pass through a network.
        threshold: a sample counts as recovered when its matched error is below this.
        ssim_level: an image counts as reconstructed when its SSIM is above this (0.4 in the
            paper).
        show: how many images the grid figure shows (spread evenly over the classes).
        holdout: held-out images per class for the SSIM baseline
            (:func:`recon.images.load_holdout`).
        baseline_margin: an image beats its baseline when its SSIM closes more than this
            share of the gap from the baseline to a perfect copy (SSIM 1)
            (:func:`recon.metrics.beats_baseline`).
    """

    task: ClassVar[str] = "binary"
    normalization: ClassVar[str] = "global"
    size_name: ClassVar[str] = "p"
    p_formula: ClassVar[str] = "p"
    unset: ClassVar[dict] = {"classes": [], "data_root": "", "lr": 0, "tol": 0,
                             "image_side": 0, "channels": 0}

    dataset: str = "photos"
    image_side: int | None = None
    channels: int | None = None
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
    reseed_pool: int = 64
    reseed_steps: int = 200
    threshold: float = 1e-2
    ssim_level: float = 0.4
    show: int = 10
    holdout: int = 20
    baseline_margin: float = 0.5

    def __post_init__(self):
        self._check_data()
        object.__setattr__(self, "ratios", checks.increasing_ratios("ratios", self.ratios))
        checks.nonnegative_int("seed", self.seed)
        if self.lr is not None:
            object.__setattr__(self, "lr", checks.positive_float("lr", self.lr))
        if self.tol is not None:
            checks.positive_float("tol", self.tol, allow_zero=True)
        checks.positive_int("max_steps", self.max_steps)
        checks.nonnegative_int("restarts", self.restarts)
        checks.nonnegative_int("reseed_patience", self.reseed_patience)
        if self.reseed_patience % 100:
            raise ValueError(f"reseed_patience must be a multiple of 100 (the solver's block), "
                             f"got {self.reseed_patience}")
        checks.positive_int("reseed_pool", self.reseed_pool)
        checks.nonnegative_int("reseed_steps", self.reseed_steps)
        checks.positive_float("threshold", self.threshold)
        checks.fraction("ssim_level", self.ssim_level)
        checks.positive_int("show", self.show)
        checks.positive_int("holdout", self.holdout)
        object.__setattr__(self, "baseline_margin",
                           checks.fraction("baseline_margin", self.baseline_margin))

    def _check_data(self) -> None:
        """The dataset, the number of images, the classes and the downsampling factor."""
        checks.choice("dataset", self.dataset, images.DATASETS)
        for name in ("image_side", "channels"):
            if getattr(self, name) is not None:
                checks.positive_int(name, getattr(self, name))
        checks.positive_int("n", self.n)
        if self.task == "binary" and self.n % 2:
            raise ValueError(f"n must be even (two classes, n/2 images each), got n={self.n}")
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not isinstance(self.classes,
                                                                        (list, tuple)):
                raise TypeError(f"classes must be a list of class names or indices (or None "
                                f"for the default), got {self.classes!r}")
            object.__setattr__(self, "classes", list(self.classes))
        images.downsampled_shape(self.source_shape, self.downsample)
        if self.dataset == "photos" and self.n > len(images.ALL_PHOTOS):
            raise ValueError(f"n must be at most {len(images.ALL_PHOTOS)} for dataset 'photos' "
                             f"(one picture per sample: {len(images.COLOUR_PHOTOS)} colour, "
                             f"{len(images.GRAYSCALE_PHOTOS)} grey), got n={self.n}")
        checks.positive_int("sample_seed", self.sample_seed, minimum=-1)
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise TypeError(f"data_root must be a folder path (str), got {self.data_root!r}")

    # ------------------------------------------------------------------ data

    @property
    def source_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image before downsampling: the photos' thumbnails of
        ``image_side`` and ``channels``; for the other datasets their fixed shape, which
        ``image_side`` and ``channels`` may repeat but not change."""
        if self.dataset == "photos":
            return images.source_shape("photos", self.image_side, self.channels)
        shape = images.source_shape(self.dataset)
        for name, value, fixed in (("image_side", self.image_side, shape[0]),
                                   ("channels", self.channels, shape[2])):
            if value is not None and value != fixed:
                raise ValueError(f"{name}={value!r} does not apply to dataset "
                                 f"{self.dataset!r}, whose images are "
                                 f"{'x'.join(map(str, shape))}: use 0 (unset) or {fixed}, or "
                                 "dataset='photos' to choose the size")
        return shape

    def photo_options(self) -> dict:
        """``side`` and ``channels`` for :func:`recon.images.load_images` (photos only)."""
        if self.dataset != "photos":
            return {}
        H, _, C = self.source_shape
        return {"side": H, "channels": C}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one training image after downsampling."""
        return images.downsampled_shape(self.source_shape, self.downsample)

    @property
    def d(self) -> int:
        """Input dimension ``H*W*C``."""
        H, W, C = self.image_shape
        return H * W * C

    @property
    def dn(self) -> int:
        """``d * n``."""
        return self.d * self.n

    def load_options(self) -> dict:
        """The chapter's selection arguments of :func:`recon.images.load_images`."""
        return {"task": self.task, "classes": self.classes}

    def load(self) -> ChapterData:
        """Load the ``n`` images, put each row on the sphere of radius ``sqrt(d)``, and
        compute each image's SSIM baseline against ``holdout`` unseen images of its class."""
        ds = images.load_images(self.dataset, self.n, normalization=self.normalization,
                                downsample=self.downsample,
                                seed=None if self.sample_seed < 0 else self.sample_seed,
                                root=self.data_root, **self.load_options(),
                                **self.photo_options())
        X, scale = images.to_sphere(ds.X)
        pool = images.load_holdout(ds, self.holdout, downsample=self.downsample,
                                   root=self.data_root, **self.photo_options())
        baseline = metrics.ssim_baseline(ds.to_images(), ds.labels, pool.to_images(),
                                         pool.labels)
        return ChapterData(ds, np.asarray(X, np.float32), np.asarray(scale), baseline)

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
        return max(1, round(ratio * self.dn / self.p_of(1)))

    def summary(self) -> str:
        """``d``, ``d n`` and the main run's readout size ``p`` against ``d n``."""
        p = self.p_of(self.main_size)
        return (f"d = {self.d}, d n = {self.dn}, {self.p_formula} = {p}, "
                f"p / (d n) = {p / self.dn:.2f}")

    def make_solver(self) -> solvers.Solver:
        """The default solver preset with this chapter's overrides. Its polish keeps the
        full ``cg_steps`` per iteration at any size (``Polish(cg_work=0)``): capped by size,
        the ResNet chapter's quick run took 888 iterations instead of 1,120 but its mean
        error rose from 3.79e-3 to 3.97e-3."""
        overrides = {"max_steps": self.max_steps, "restarts": self.restarts,
                     "polish": solvers.Polish(cg_work=0.0), **self.reseeding()}
        overrides.update({name: value for name, value in (("lr", self.lr), ("tol", self.tol))
                          if value is not None})
        return solvers.preset("default", **overrides)

    def reseeding(self) -> dict:
        """The solver's re-seeding of stuck starts every ``reseed_patience`` steps, each by
        ``reseed_pool`` one-point searches of ``reseed_steps`` steps (per start: not shared
        among the starts, nor capped by the problem's size); with
        ``reseed_patience=0`` it is off, and so is the cloning that happens at its checks."""
        if self.reseed_patience:
            return {"reseed": solvers.Reseed(patience=self.reseed_patience,
                                             pool=self.reseed_pool, steps=self.reseed_steps,
                                             shared=False, search_work=0.0)}
        return {"reseed": None, "cloning": None}

    def keys(self):
        """``(key_model, key_solver)`` split from ``seed``."""
        return tuple(jax.random.split(jax.random.key(self.seed), 2))

    def rngs(self) -> nnx.Rngs:
        """The model's random streams, drawn from ``key_model``."""
        return nnx.Rngs(params=self.keys()[0])

    def train(self, data: ChapterData, size: int, progress: bool = True):
        """Train a model of ``size``; returns ``(problem, train_loss, train_steps)``."""
        raise NotImplementedError

    def run(self, data: ChapterData, size: int, progress: bool = True) -> Outcome:
        """Train a model of ``size`` on ``data``, reconstruct its training images from the
        readout alone, and evaluate the reconstruction against the truth."""
        size = checks.positive_int(self.size_name, size)
        start = time.perf_counter()
        problem, train_loss, train_steps = self.train(data, size, progress)
        truth = jnp.asarray(data.X, problem.theta.dtype)
        solver = self.make_solver()
        result = solvers.solve(problem, solver, self.keys()[1], truth=truth, progress=progress)
        if not np.all(np.isfinite(np.asarray(result.X))):
            raise FloatingPointError("the reconstruction contains NaN")
        loss_at_truth = float(projection_loss(problem, truth, solver.ridge))
        p = problem.P
        return Outcome(size=size, p=p, p_over_dn=p / data.dn, train_loss=float(train_loss),
                       train_steps=int(train_steps), loss=result.loss,
                       loss_at_truth=loss_at_truth, iterations=result.iterations,
                       seconds=result.seconds, compile_seconds=result.compile_seconds,
                       converged=result.converged, history=result.history,
                       **evaluate(data, result.X, self.threshold, self.ssim_level,
                                  self.baseline_margin),
                       wall_seconds=time.perf_counter() - start)

    def sweep(self, data: ChapterData, main: Outcome | None = None,
              progress: bool = True) -> list[Outcome]:
        """:meth:`run` at the size of every ratio in ``ratios``, sorted by ``p``. The chapter's
        ``main`` run is part of the result: reused where its size comes up in the sweep,
        added otherwise."""
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

    def headline(self, data: ChapterData, main: Outcome, table: pd.DataFrame) -> dict:
        """The numbers the chapter's text quotes, by glue name, rounded as it quotes them:
        the data, the main run and the sweep (``table`` from :func:`sweep_table`)."""
        below = table[table.p < data.dn]
        full = table[table.recovered_fraction == 1.0]
        beaten = table[table.beats_baseline == data.n]
        H, _, C = data.dataset.image_shape
        return {
            "dataset": data.dataset.name, "dataset_description": data.description(),
            "image_side": H, "channels": C, "d": data.d,
            "n_images": data.n, "dn": data.dn,
            "p_over_dn": decimals(main.p_over_dn, 2),
            "recovered_fraction": main.recovered_fraction,
            "mean_error": significant(main.mean_error, 3),
            "mean_ssim": decimals(main.mean_ssim, 3),
            "mean_psnr": decimals(main.mean_psnr, 1),
            "ssim_success": main.ssim_success,
            "ssim_baseline": decimals(float(np.mean(data.baseline)), 3),
            "beats_baseline": main.beats_baseline,
            "baseline_margin": self.baseline_margin,
            "holdout": self.holdout,
            "first_all_beat_baseline": (decimals(beaten.p_over_dn.min(), 2) if len(beaten)
                                        else "none"),
            "sweep_seconds": decimals(float(table.wall_seconds.sum()), 0),
            "sign_flips": main.sign_flips,
            "loss": significant(main.loss, 2),
            "iterations": main.iterations,
            "seconds": decimals(main.seconds, 1),
            "threshold": self.threshold,
            "sweep_points": len(table),
            "best_ssim_below_dn": decimals(below.mean_ssim.max(), 3) if len(below) else "n/a",
            "first_full_recovery": decimals(full.p_over_dn.min(), 2) if len(full) else "none",
        }


    def claims(self, data: ChapterData, main: Outcome, table: pd.DataFrame) -> list[Claim]:
        """The chapter's observed statements, checked on the sweep ``table``: no model below
        ``2 d n`` recovers every image (exact recovery needs several times ``d n`` here),
        every model from ``5 d n`` on beats the SSIM baseline on every image, and the mean
        SSIM at the sweep's largest ``p`` is above that at its smallest."""
        early = table[table.p_over_dn < 2]
        late = table[table.p_over_dn >= 5 - 1e-9]
        ends = table.sort_values("p")
        return [
            claim("all_beat_baseline_from_5dn", "Every model of the sweep from p = 5 dn on "
                  "reconstructs every image with an SSIM clearly above its baseline (the best "
                  "held-out look-alike): closer to a perfect copy by the margin's share.",
                  len(late) and (late.beats_baseline == data.n).all(), models=len(late),
                  fewest=int(late.beats_baseline.min()) if len(late) else None,
                  n=data.n, margin=self.baseline_margin),
            claim("no_exact_recovery_below_2dn", "No model of the sweep below p = 2 dn "
                  "recovers every image to the matched-error threshold.",
                  len(early) and (early.recovered_fraction < 1).all(), models=len(early),
                  best_share=float(early.recovered_fraction.max()) if len(early) else None),
            claim("ssim_grows_with_p", "The mean SSIM at the sweep's largest p is higher than "
                  "at its smallest.", ends.mean_ssim.iloc[-1] > ends.mean_ssim.iloc[0],
                  smallest_p_ssim=decimals(ends.mean_ssim.iloc[0], 3),
                  largest_p_ssim=decimals(ends.mean_ssim.iloc[-1], 3)),
        ]


@dataclass(frozen=True)
class NetworkChapter(ImageChapter):
    """Settings shared by the trained networks: every weight trained by full-batch gradient
    descent (:func:`recon.train.train_full_batch`), then the change of the readout attacked.

    Attributes:
        width: the main run's width (hidden units or channels).
        train_lr: gradient-descent learning rate; ``None`` picks ``1/lambda_max`` of the
            Gauss-Newton matrix.
        train_steps, train_tol: training's step budget and loss tolerance.
    """

    size_name: ClassVar[str] = "width"
    unset: ClassVar[dict] = {**ImageChapter.unset, "train_lr": 0}

    width: int = 1600
    train_lr: float | None = None
    train_steps: int = 5000
    train_tol: float = 1e-8
    restarts: int = 1
    reseed_patience: int = 0

    def __post_init__(self):
        super().__post_init__()
        checks.positive_int("width", self.width)
        if self.train_lr is not None:
            object.__setattr__(self, "train_lr", checks.positive_float("train_lr",
                                                                       self.train_lr))
        checks.positive_int("train_steps", self.train_steps)
        checks.positive_float("train_tol", self.train_tol, allow_zero=True)

    def model(self, data: ChapterData, width: int) -> nnx.Module:
        """A freshly initialised network of ``width``."""
        raise NotImplementedError

    def train(self, data: ChapterData, size: int, progress: bool = True):
        """The network of ``width = size``, every weight trained; the problem attacks the
        change of its readout."""
        model = self.model(data, size)
        report = train.train_full_batch(model, jnp.asarray(data.X), jnp.asarray(data.dataset.y),
                                        lr=self.train_lr or "auto", max_steps=self.train_steps,
                                        tol=self.train_tol, progress=progress)
        problem = problems.readout_problem(model, model.readout_name, report.initial_readout,
                                           data.n)
        return problem, report.final_loss, report.steps

    def headline(self, data: ChapterData, main: Outcome, table: pd.DataFrame) -> dict:
        """:meth:`ImageChapter.headline` and the training, the loss floor at the truth, the
        largest error of the main run and the best mean error of the sweep."""
        return {
            **super().headline(data, main, table),
            "p": main.p,
            "train_loss": significant(main.train_loss, 2),
            "train_steps": main.train_steps,
            "max_error": significant(main.errors.max(), 3),
            "loss_at_truth": significant(main.loss_at_truth, 2),
            "best_sweep_error": significant(table.mean_error.min(), 3),
        }

    def claims(self, data: ChapterData, main: Outcome, table: pd.DataFrame) -> list[Claim]:
        """:meth:`ImageChapter.claims`, and: the solver's loss in the main run comes within
        a factor 10 of the floor, the loss at the truth (it finds what training left)."""
        return [*super().claims(data, main, table), claim(
            "solver_reaches_the_floor", "The solver's final loss is at most 10 times the loss "
            "at the true images, the floor left by training the layers below the readout.",
            main.loss <= 10 * main.loss_at_truth, loss=significant(main.loss, 2),
            loss_at_truth=significant(main.loss_at_truth, 2))]


# ---------------------------------------------------------------------- tables and figures

def sweep_table(outcomes: list[Outcome], size_column: str = "size",
                data: ChapterData | None = None) -> pd.DataFrame:
    """The sweep as a table, one row per model size (the size in column ``size_column``);
    with ``data``, the mean SSIM baseline in column ``mean_baseline``."""
    table = pd.DataFrame([{
        size_column: o.size, "p": o.p, "p_over_dn": round(o.p_over_dn, 3),
        "mean_error": o.mean_error, "recovered_fraction": o.recovered_fraction,
        "mean_ssim": o.mean_ssim, "mean_psnr": o.mean_psnr, "ssim_success": o.ssim_success,
        "beats_baseline": o.beats_baseline,
        "loss": o.loss, "loss_at_truth": o.loss_at_truth, "train_loss": o.train_loss,
        "iterations": o.iterations, "seconds": round(o.seconds, 1),
        "wall_seconds": round(o.wall_seconds, 1),
    } for o in outcomes])
    if data is not None:
        table["mean_baseline"] = float(np.mean(data.baseline))
    return table


def image_table(data: ChapterData, outcome: Outcome) -> pd.DataFrame:
    """Per-image results of one run, rounded for display: class, matched error, PSNR, SSIM."""
    ds = data.dataset
    return pd.DataFrame({
        "class": [ds.classes[c] for c in ds.labels],
        "error": outcome.errors,
        "PSNR (dB)": outcome.psnr,
        "SSIM": outcome.ssim,
        "baseline SSIM": data.baseline,
    }).rename_axis("image").round({"error": 4, "PSNR (dB)": 1, "SSIM": 3,
                                   "baseline SSIM": 3})


def shown(n: int, count: int) -> np.ndarray:
    """Indices of ``count`` images spread evenly over ``n`` (all of them if ``count >= n``),
    so every class appears in the grid."""
    count = checks.positive_int("count", count)
    if count >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(int))


def grid_figure(name: str, settings: ImageChapter, data: ChapterData, main: Outcome) -> dict:
    """Draw ``settings.show`` training images above their matched reconstructions, titled
    with class and SSIM, and save the figure as ``name``; returns the files written."""
    ds = data.dataset
    index = shown(data.n, settings.show)
    titles = [f"{ds.classes[c]}\nSSIM {s:.2f}" for c, s in zip(ds.labels, main.ssim)]
    fig = plots.plot_image_grid(ds.to_images()[index], main.images_hat[index],
                                [titles[i] for i in index])
    return figures.save_figure(fig, name, params=settings.as_dict(),
                               data={"dataset": data.description(), "shown": index,
                                     "ssim": main.ssim, "psnr": main.psnr,
                                     "errors": main.errors})


def law_figure(name: str, settings: ImageChapter, data: ChapterData,
               outcomes: list[Outcome]) -> dict:
    """The law in pictures: ``settings.show`` training images (top row) above their matched
    reconstructions from every model of the sweep, one row per ``p/(dn)``, each row labelled
    with how many of the ``n`` images beat the SSIM baseline; saved as ``name``. Returns the
    files written."""
    ds = data.dataset
    index = shown(data.n, settings.show)
    outcomes = sorted(outcomes, key=lambda o: o.p)
    labels = [f"p/(dn) = {o.p_over_dn:.2g}\n{o.beats_baseline}/{data.n} beat" for o in outcomes]
    fig = plots.plot_law_grid(ds.to_images()[index], [o.images_hat[index] for o in outcomes],
                              labels, [ds.classes[c] for c in ds.labels[index]])
    return figures.save_figure(fig, name, params=settings.as_dict(), data={
        "dataset": data.description(), "shown": index, "dn": data.dn,
        "baseline": data.baseline, "margin": settings.baseline_margin,
        "rows": [{"p": o.p, "p_over_dn": o.p_over_dn, "ssim": o.ssim,
                  "beats_baseline": o.beats_baseline} for o in outcomes]})


def quality_figure(name: str, settings: ImageChapter, main: Outcome) -> dict:
    """Draw each matched reconstruction's PSNR and SSIM (with ``settings.ssim_level``) and save
    the figure as ``name``; returns the files written."""
    fig = plots.plot_image_quality(main.psnr, main.ssim, settings.ssim_level)
    return figures.save_figure(fig, name, params=settings.as_dict(),
                               data={"psnr": main.psnr, "ssim": main.ssim,
                                     "level": settings.ssim_level})


def sweep_figure(name: str, settings: ImageChapter, data: ChapterData, main: Outcome,
                 table: pd.DataFrame) -> dict:
    """Draw the sweep's mean error and mean SSIM against ``p`` (``p = d n`` and the main run
    marked) and save the figure as ``name``; returns the files written."""
    fig = plots.plot_error_against_p(table, data.dn, settings.threshold, settings.ssim_level,
                                     main_p=main.p)
    return figures.save_figure(fig, name, params=settings.as_dict(),
                               data={"dataset": data.description(), "dn": data.dn,
                                     "table": table.to_dict("list")})
