"""Which images, and how they are prepared: every selection argument of
:func:`recon.images.load_images` checked against a source's classes and image shape before
anything is loaded (:func:`make_request`), the samples of each class picked (:func:`select`,
:func:`pick`), and the chosen images downsampled, normalised and wrapped (:func:`finish`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recon import checks
from recon.images.dataset import ImageDataset

DATASETS = ("cifar10", "digits", "patches", "photos")
TASKS = ("binary", "multiclass")
NORMALIZATIONS = ("global", "channel", "none")

DEFAULT_PAIRS = {"cifar10": ("frog", "truck"), "digits": ("0", "1"),
                 "patches": ("astronaut", "coffee"), "photos": ("colour", "grayscale")}


@dataclass(frozen=True)
class Request:
    """Validated selection: class ids (indices into the source's class list), images per class,
    task, normalisation, downsampling factor, seed, and the output image shape."""

    class_ids: tuple[int, ...]
    per_class: int
    task: str
    normalization: str
    downsample: int
    seed: int | None
    names: tuple[str, ...]


def make_request(n, task, classes, k, normalization, downsample, seed, names,
                 default_pair, shape) -> Request:
    """Check every selection argument against the source's class ``names`` and image ``shape``
    before anything is loaded."""
    n = checks.positive_int("n", n)
    task = checks.choice("task", task, TASKS)
    normalization = checks.choice("normalization", normalization, NORMALIZATIONS)
    downsample = checks.positive_int("downsample", downsample)
    downsampled_shape(shape, downsample)
    if seed is not None:
        seed = checks.nonnegative_int("seed", seed)
    ids = _class_ids(task, classes, k, names, default_pair)
    if n % len(ids):
        what = "even (n/2 per class)" if task == "binary" else f"a multiple of k={len(ids)}"
        raise ValueError(f"n must be {what} so that every class has the same number of "
                         f"images, got n={n}")
    return Request(ids, n // len(ids), task, normalization, downsample, seed,
                   tuple(names[i] for i in ids))


def downsampled_shape(shape, downsample: int) -> tuple[int, int, int]:
    """``(H/f, W/f, C)``: the shape of ``(H, W, C)`` images after averaging each ``f x f``
    block of pixels, ``f = downsample``, which must divide ``H`` and ``W``."""
    downsample = checks.positive_int("downsample", downsample)
    H, W, C = shape
    if H % downsample or W % downsample:
        raise ValueError(f"downsample={downsample} must divide the {H}x{W} image height and "
                         f"width")
    return (H // downsample, W // downsample, C)


def _class_ids(task, classes, k, names, default_pair) -> tuple[int, ...]:
    """Class indices for the task: the pair ``(negative, positive)`` or the multiclass list."""
    if k is not None:
        k = checks.positive_int("k", k)
        if k > len(names):
            raise ValueError(f"k must be at most {len(names)} (the number of classes), got {k}")
    if classes is None:
        if task == "binary":
            classes = default_pair
        else:
            classes = range(len(names) if k is None else k)
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, range)):
        raise TypeError(f"classes must be a sequence of class names or indices, got "
                        f"{classes!r} (type {type(classes).__name__})")
    ids = tuple(_class_id(c, names) for c in classes)
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes must be distinct, got {list(classes)!r}")
    if task == "binary":
        if len(ids) != 2:
            raise ValueError(f"task='binary' needs classes=(negative, positive), two classes, "
                             f"got {list(classes)!r}")
        if k not in (None, 2):
            raise ValueError(f"k must be 2 (or None) for task='binary', got {k}; use "
                             "task='multiclass' for more classes")
    elif not ids:
        raise ValueError("classes must name at least one class")
    elif k is not None and len(ids) != k:
        raise ValueError(f"k={k} does not match the {len(ids)} classes given: {list(classes)!r}")
    return ids


def _class_id(c, names) -> int:
    """Index of class ``c`` (a name in ``names`` or an integer index into it)."""
    if isinstance(c, str):
        if c not in names:
            raise ValueError(f"unknown class {c!r}; accepted: {', '.join(map(repr, names))}")
        return names.index(c)
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
        raise TypeError(f"a class must be a name (str) or an index (int), got {c!r} "
                        f"(type {type(c).__name__})")
    if not 0 <= c < len(names):
        raise ValueError(f"class index must lie in [0, {len(names) - 1}], got {c}")
    return int(c)


def select(labels, request: Request, names) -> np.ndarray:
    """Positions in ``labels`` of ``per_class`` samples of each requested class, grouped by
    class in the requested order."""
    picks = []
    for c in request.class_ids:
        pool = np.flatnonzero(labels == c)
        if len(pool) < request.per_class:
            raise ValueError(f"{request.per_class} images of class {names[c]!r} requested "
                             f"(n/k), only {len(pool)} available")
        picks.append(pick(pool, request.per_class, request.seed, c))
    return np.concatenate(picks)


def pick(pool, m, seed, stream, spread=False) -> np.ndarray:
    """``m`` entries of ``pool``: the first ones (or evenly spread with ``spread``) when
    ``seed`` is None, else a sorted random subset from ``default_rng((seed, stream))``."""
    if seed is None:
        if spread:
            return pool[np.linspace(0, len(pool) - 1, m).round().astype(np.int64)]
        return pool[:m]
    rng = np.random.default_rng((seed, stream))
    return np.sort(rng.choice(pool, m, replace=False))


def finish(name, images, index, request: Request, stats=None) -> ImageDataset:
    """Downsample, normalise and flatten ``images`` (``n x H x W x C`` in ``[0, 1]``), encode
    the labels, and wrap everything as an :class:`ImageDataset`."""
    images = _block_mean(np.asarray(images, np.float32), request.downsample)
    per_class, kk = request.per_class, len(request.class_ids)
    labels = np.repeat(np.arange(kk, dtype=np.int64), per_class)
    if request.task == "binary":
        y = np.where(labels == 0, -1.0, 1.0).astype(np.float32)
    else:
        y = np.eye(kk, dtype=np.float32)[labels]
    mean, std = _statistics(images, request.normalization, stats)
    X = ((images - mean) / std).reshape(len(images), -1).astype(np.float32)
    return ImageDataset(X=X, y=y, labels=labels, image_shape=tuple(images.shape[1:]),
                        classes=request.names, name=name, normalization=request.normalization,
                        mean=mean, std=std, index=np.asarray(index, np.int64))


def _block_mean(images, factor) -> np.ndarray:
    """Average each ``factor x factor`` block of pixels (``n x H x W x C`` images)."""
    if factor == 1:
        return images
    from skimage.measure import block_reduce

    return block_reduce(images, (1, factor, factor, 1), np.mean).astype(np.float32)


def _statistics(images, normalization, stats=None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` for ``normalization``: fixed ``stats`` if given, else computed from the
    images over all entries (``"global"``) or per channel (``"channel"``)."""
    channels = images.shape[-1]
    if normalization == "none":
        mean, std = np.zeros(1), np.ones(1)
    elif stats is not None:
        mean, std = np.asarray(stats[0]), np.asarray(stats[1])
    elif normalization == "global":
        mean = np.array([images.mean(dtype=np.float64)])
        std = np.array([images.std(ddof=1, dtype=np.float64)])
    else:
        flat = images.reshape(-1, channels)
        mean = flat.mean(axis=0, dtype=np.float64)
        std = flat.std(axis=0, ddof=1, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)  # a constant image set is only centred
    return mean.astype(np.float32), std.astype(np.float32)
