"""Real image datasets, all behind one interface (:class:`ImageDataset`).

Three sources, one entry point :func:`load_images`:

``"cifar10"``
    CIFAR-10 read with numpy from its official *binary* archive ``cifar-10-binary.tar.gz``
    (never pickle). The archive is checked against its published md5 before it is opened and
    is extracted member by member only after every member has been vetted (no absolute
    paths, no ``..``, no links, no devices).
``"digits"``
    scikit-learn's handwritten digits (1797 grey 8x8 images, classes ``"0"`` ... ``"9"``),
    shipped inside the package, so everything runs offline.
``"patches"``
    32x32x3 patches cut on a non-overlapping grid from the colour photographs that ship
    inside scikit-image (:data:`PHOTOS`); a patch's class is the photograph it comes from,
    so "two classes" means patches from two photographs.

Selections follow the paper. ``task="binary"``: two classes, ``n/2`` images each, labels
``y_i = -1`` for the first class and ``+1`` for the second (CIFAR-10 default: frog = class 6
vs truck = class 9). ``task="multiclass"``: the first ``k`` classes (or the ones named),
``n/k`` images each, one-hot targets ``y`` of shape ``n x k``. Samples come grouped by class,
in the order of ``classes``. With ``seed=None`` each class contributes its first images in file
order (what the authors' scripts do; for patches: grid cells evenly spread over the photo);
with an integer ``seed`` a uniformly random subset from ``numpy.random.default_rng(seed)``.

Pixels are scaled to ``[0, 1]`` and then normalised (``normalization=``):

``"global"``
    one mean and one standard deviation over all ``n*d`` entries of the selected images
    (the paper's random-features and two-layer experiments);
``"channel"``
    one mean/std per colour channel (the paper's ResNet). For CIFAR-10 these are the
    published training-set statistics the authors use, :data:`CIFAR10_MEAN`,
    :data:`CIFAR10_STD`; digits and patches have no published values, so the statistics of
    the selected images are used;
``"none"``
    pixels stay in ``[0, 1]``.

Each image becomes a row of ``X`` (``n x d``, ``d = H*W*C``) flattened in height-width-channel
order, so ``X.reshape(n, H, W, C)`` gives the images back (the layout Flax convolutions use).

The sphere. The reconstruction keeps candidates on the sphere of radius ``sqrt(d)``. The
authors feed standardised CIFAR-10 images *as they are* (unit-variance entries put
``||x_i||`` near ``sqrt(d)`` on average, not exactly) and only project the candidates.
:func:`to_sphere` rescales rows exactly onto the sphere and returns the per-row scale
``||x_i|| / sqrt(d)``; :func:`from_sphere` undoes it, e.g. to show a reconstruction ``x_hat``
matched to ``x_i`` with the norm of ``x_i``: ``ds.to_images(from_sphere(x_hat, scale_i))``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from recon import checks

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MD5", "CIFAR10_URL", "DATASETS", "DEFAULT_PAIRS", "PHOTOS",
    "ImageDataset", "ChecksumError", "UnsafeArchiveError", "default_root", "download_cifar10",
    "extract_archive", "file_checksum", "from_sphere", "load_cifar10", "load_digits",
    "load_images", "load_patches", "prepare_cifar10", "read_cifar10_batch", "to_sphere",
    "verify_checksum",
]

DATASETS = ("cifar10", "digits", "patches")
TASKS = ("binary", "multiclass")
NORMALIZATIONS = ("global", "channel", "none")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_SPLITS = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                  "test": ("test_batch.bin",)}
CIFAR10_PER_CLASS = {"train": 5000, "test": 1000}
CIFAR10_META = "batches.meta.txt"
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_RECORD = 1 + 32 * 32 * 3  # label byte + channel-major R, G, B planes
# Per-channel training-set statistics of CIFAR-10 in [0, 1], as in the authors' ResNet script.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)
_MARKER = ".recon-checksum"

DIGITS_CLASSES = tuple(str(i) for i in range(10))
DIGITS_SHAPE = (8, 8, 1)

# Colour photographs bundled inside scikit-image (no download); a patch's class is its photo.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble_deep_field",
          "immunohistochemistry", "retina")

DEFAULT_PAIRS = {"cifar10": ("frog", "truck"), "digits": ("0", "1"),
                 "patches": ("astronaut", "coffee")}


class ChecksumError(ValueError):
    """A file's digest differs from the expected one."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, or is a link/device."""


# ----------------------------------------------------------------------------- the interface

@dataclass(frozen=True, eq=False)
class ImageDataset:
    """``n`` images as the rows of ``X`` (``n x d``, ``d = H*W*C``) with their targets ``y``.

    Attributes:
        X: ``float32`` array ``n x d``, normalised images flattened in H, W, C order.
        y: ``float32`` targets: ``(n,)`` with entries ``-1/+1`` (binary task) or ``n x k``
            one-hot rows (multiclass task).
        labels: ``int64`` array ``(n,)``, class of each row as an index into ``classes``.
        image_shape: ``(H, W, C)``.
        classes: names of the selected classes, in label order (``classes[0]`` is ``y = -1``
            in the binary task, column 0 of the one-hot targets otherwise).
        name: the source, one of :data:`DATASETS`.
        normalization: ``"global"``, ``"channel"`` or ``"none"``.
        mean, std: ``float32`` arrays of shape ``(1,)`` or ``(C,)`` with
            ``X = (pixels - mean) / std``, ``pixels`` in ``[0, 1]``, broadcast over channels.
        index: ``int64`` array ``(n,)``, where each row comes from (record number in the
            CIFAR-10 split, position in scikit-learn's digits, grid cell of the photograph in
            row-major order for patches).
    """

    X: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    name: str
    normalization: str
    mean: np.ndarray
    std: np.ndarray
    index: np.ndarray

    def __post_init__(self):
        for field in ("X", "y", "labels", "mean", "std", "index"):
            getattr(self, field).setflags(write=False)

    @property
    def n(self) -> int:
        """Number of samples ``n``."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Input dimension ``d = H*W*C``."""
        return self.X.shape[1]

    @property
    def k(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def to_images(self, X=None) -> np.ndarray:
        """Undo the normalisation: rows of ``X`` (default ``self.X``; any ``m x d`` array, e.g.
        a reconstruction ``X_hat``) as images ``(m, H, W, C)`` in ``[0, 1]`` (clipped)."""
        X = self.X if X is None else np.asarray(X, dtype=np.float32)
        if X.ndim not in (1, 2) or X.shape[-1] != self.d:
            raise ValueError(f"X must have shape (m, {self.d}) (d = H*W*C for image_shape "
                             f"{self.image_shape}), got {X.shape}")
        images = X.reshape((-1, *self.image_shape)) * self.std + self.mean
        return np.clip(images, 0.0, 1.0)

    def normalize(self, images) -> np.ndarray:
        """The forward map: images ``(m, H, W, C)`` in ``[0, 1]`` -> rows ``(m, d)`` normalised
        with this dataset's ``mean`` and ``std``."""
        images = np.asarray(images, dtype=np.float32)
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"images must have shape (m, {', '.join(map(str, self.image_shape))})"
                             f", got {images.shape}")
        return ((images - self.mean) / self.std).reshape(len(images), -1)


def to_sphere(X) -> tuple[np.ndarray, np.ndarray]:
    """Rescale each row ``x_i`` of ``X`` (``n x d``) onto the sphere of radius ``sqrt(d)``.

    Returns ``(X_sphere, scale)`` with ``X_sphere[i] = x_i / scale[i]`` and
    ``scale[i] = ||x_i|| / sqrt(d)`` (shape ``(n, 1)``), so ``from_sphere`` inverts it."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array n x d, got shape {X.shape}")
    scale = np.linalg.norm(X, axis=1, keepdims=True) / np.sqrt(X.shape[1])
    if np.any(scale == 0):
        raise ValueError("X has a zero row, which has no direction to put on the sphere")
    return X / scale, scale


def from_sphere(X_sphere, scale) -> np.ndarray:
    """Inverse of :func:`to_sphere`: ``X_sphere[i] * scale[i]``."""
    X_sphere = np.asarray(X_sphere)
    return X_sphere * np.reshape(scale, (-1, 1))


# ----------------------------------------------------------------------------- entry point

def load_images(name: str, n: int, *, task: str = "binary", classes=None, k=None,
                normalization: str = "global", downsample: int = 1, seed=None, root=None,
                download: bool = False, checksum=None, split: str = "train") -> ImageDataset:
    """Load ``n`` images of dataset ``name`` (one of :data:`DATASETS`) as an :class:`ImageDataset`.

    Args:
        name: ``"cifar10"``, ``"digits"`` or ``"patches"``.
        n: number of samples; even for ``task="binary"``, a multiple of ``k`` otherwise.
        task: ``"binary"`` (two classes, ``y`` in ``{-1, +1}``) or ``"multiclass"`` (``k``
            classes, one-hot ``y``).
        classes: class names or indices. Binary: a pair ``(negative, positive)``; default
            :data:`DEFAULT_PAIRS` (frog vs truck for CIFAR-10). Multiclass: the classes to
            use; default the first ``k``.
        k: number of classes for the multiclass task (default: all, or ``len(classes)``).
        normalization: ``"global"``, ``"channel"`` or ``"none"`` (see the module docstring).
        downsample: integer factor ``f``; each ``f x f`` block of pixels is averaged, so
            ``H x W`` becomes ``H/f x W/f`` and ``d`` shrinks by ``f^2``.
        seed: ``None`` for the first images of each class in file order (the paper), or an
            integer for a random subset from ``numpy.random.default_rng(seed)``.
        root, download, checksum, split: CIFAR-10 only, see :func:`load_cifar10`.
    """
    checks.choice("name", name, DATASETS)
    if name == "cifar10":
        return load_cifar10(n, task=task, classes=classes, k=k, normalization=normalization,
                            downsample=downsample, seed=seed, root=root, download=download,
                            checksum=checksum, split=split)
    loader = load_digits if name == "digits" else load_patches
    return loader(n, task=task, classes=classes, k=k, normalization=normalization,
                  downsample=downsample, seed=seed)


# ----------------------------------------------------------------------------- the three sources

def load_cifar10(n: int, *, task: str = "binary", classes=None, k=None,
                 normalization: str = "global", downsample: int = 1, seed=None, root=None,
                 download: bool = False, checksum=None, split: str = "train") -> ImageDataset:
    """``n`` CIFAR-10 images (see :func:`load_images` for the selection arguments).

    Args:
        root: folder holding ``cifar-10-binary.tar.gz`` (default :func:`default_root`).
        download: fetch the archive from :data:`CIFAR10_URL` when it is missing.
        checksum: expected digest of the archive, ``"md5:<hex>"``, ``"sha256:<hex>"`` or a
            bare hex string (32 digits = md5, 64 = sha256); default the official md5.
        split: ``"train"`` (``data_batch_1..5``, 50000 images) or ``"test"`` (10000).
    """
    split = checks.choice("split", split, CIFAR10_SPLITS)
    request = _request(n, task, classes, k, normalization, downsample, seed,
                       CIFAR10_CLASSES, DEFAULT_PAIRS["cifar10"], CIFAR10_SHAPE)
    if request.per_class > CIFAR10_PER_CLASS[split]:
        raise ValueError(f"n={n} asks for {request.per_class} images per class, but the "
                         f"CIFAR-10 {split} split has {CIFAR10_PER_CLASS[split]} per class")
    folder = prepare_cifar10(root, download=download, checksum=checksum)
    _check_meta(folder)
    batches = [read_cifar10_batch(folder / f) for f in CIFAR10_SPLITS[split]]
    labels = np.concatenate([b[:, 0] for b in batches])
    index = _select(labels, request, CIFAR10_CLASSES)
    offsets = np.cumsum([0] + [len(b) for b in batches])
    which = np.searchsorted(offsets, index, side="right") - 1
    records = np.empty((len(index), CIFAR10_RECORD), np.uint8)
    for b, batch in enumerate(batches):
        records[which == b] = batch[index[which == b] - offsets[b]]
    pixels = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # C,H,W -> H,W,C
    images = pixels.astype(np.float32) / 255
    stats = (CIFAR10_MEAN, CIFAR10_STD) if normalization == "channel" else None
    return _finish("cifar10", images, index, request, stats)


def load_digits(n: int, *, task: str = "binary", classes=None, k=None,
                normalization: str = "global", downsample: int = 1, seed=None) -> ImageDataset:
    """``n`` of scikit-learn's handwritten digits (8x8x1, pixels ``0..16`` scaled to
    ``[0, 1]``, classes ``"0"``..``"9"``; default binary pair ``0`` vs ``1``). See
    :func:`load_images` for the arguments."""
    request = _request(n, task, classes, k, normalization, downsample, seed,
                       DIGITS_CLASSES, DEFAULT_PAIRS["digits"], DIGITS_SHAPE)
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    index = _select(digits.target, request, DIGITS_CLASSES)
    images = (digits.images[index] / 16.0).astype(np.float32)[..., None]
    return _finish("digits", images, index, request)


def load_patches(n: int, *, task: str = "binary", classes=None, k=None,
                 normalization: str = "global", downsample: int = 1, seed=None,
                 patch_size: int = 32, min_std: float = 0.02) -> ImageDataset:
    """``n`` colour patches ``patch_size x patch_size x 3`` cut from scikit-image's bundled
    photographs :data:`PHOTOS`; the class of a patch is its photograph (default binary pair
    astronaut vs coffee). See :func:`load_images` for the other arguments.

    Each photograph is cut on a non-overlapping grid (its bottom and right margins dropped);
    cells whose pixel standard deviation is below ``min_std`` (flat background, e.g. the
    black rim of the retina) are left out, so no two samples are (nearly) identical.
    ``seed=None`` takes cells evenly spread over the grid, an integer seed a random subset.
    """
    patch_size = checks.positive_int("patch_size", patch_size)
    min_std = checks.positive_float("min_std", min_std, allow_zero=True)
    shape = (patch_size, patch_size, 3)
    request = _request(n, task, classes, k, normalization, downsample, seed,
                       PHOTOS, DEFAULT_PAIRS["patches"], shape)
    cells = [_grid_cells(PHOTOS[c], patch_size, min_std) for c in request.class_ids]
    images, index = [], []
    for c, (pool, cell_index) in zip(request.class_ids, cells):
        if len(pool) < request.per_class:
            raise ValueError(f"n={n} asks for {request.per_class} patches of {PHOTOS[c]!r}, "
                             f"which has {len(pool)} usable {patch_size}x{patch_size} cells; "
                             "lower n or patch_size")
        picks = _pick(np.arange(len(pool)), request.per_class, request.seed, c, spread=True)
        images.append(pool[picks])
        index.append(cell_index[picks])
    images = np.concatenate(images).astype(np.float32) / np.float32(255)
    return _finish("patches", images, np.concatenate(index), request)


# ----------------------------------------------------------------------------- selection

@dataclass(frozen=True)
class _Request:
    """Validated selection: class ids (indices into the source's class list), images per class,
    task, normalisation, downsampling factor, seed, and the output image shape."""

    class_ids: tuple[int, ...]
    per_class: int
    task: str
    normalization: str
    downsample: int
    seed: int | None
    names: tuple[str, ...]


def _request(n, task, classes, k, normalization, downsample, seed, names, default_pair,
             shape) -> _Request:
    """Check every selection argument against the source's class ``names`` and image ``shape``
    before anything is loaded."""
    n = checks.positive_int("n", n)
    task = checks.choice("task", task, TASKS)
    normalization = checks.choice("normalization", normalization, NORMALIZATIONS)
    downsample = checks.positive_int("downsample", downsample)
    if shape[0] % downsample or shape[1] % downsample:
        raise ValueError(f"downsample={downsample} must divide the image height and width "
                         f"{shape[0]}x{shape[1]}")
    if seed is not None:
        seed = checks.nonnegative_int("seed", seed)
    ids = _class_ids(task, classes, k, names, default_pair)
    if n % len(ids):
        what = "even (n/2 per class)" if task == "binary" else f"a multiple of k={len(ids)}"
        raise ValueError(f"n must be {what} so that every class has the same number of "
                         f"images, got n={n}")
    return _Request(ids, n // len(ids), task, normalization, downsample, seed,
                    tuple(names[i] for i in ids))


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


def _select(labels, request: _Request, names) -> np.ndarray:
    """Positions in ``labels`` of ``per_class`` samples of each requested class, grouped by
    class in the requested order."""
    picks = []
    for c in request.class_ids:
        pool = np.flatnonzero(labels == c)
        if len(pool) < request.per_class:
            raise ValueError(f"{request.per_class} images of class {names[c]!r} requested "
                             f"(n/k), only {len(pool)} available")
        picks.append(_pick(pool, request.per_class, request.seed, c))
    return np.concatenate(picks)


def _pick(pool, m, seed, stream, spread=False) -> np.ndarray:
    """``m`` entries of ``pool``: the first ones (or evenly spread with ``spread``) when
    ``seed`` is None, else a sorted random subset from ``default_rng((seed, stream))``."""
    if seed is None:
        if spread:
            return pool[np.linspace(0, len(pool) - 1, m).round().astype(np.int64)]
        return pool[:m]
    rng = np.random.default_rng((seed, stream))
    return np.sort(rng.choice(pool, m, replace=False))


def _finish(name, images, index, request: _Request, stats=None) -> ImageDataset:
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


# ----------------------------------------------------------------------------- photographs

@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A bundled scikit-image colour photograph as ``H x W x 3`` uint8 (read-only)."""
    import skimage.data

    if name == "motorcycle":  # the left view of the stereo pair
        image = skimage.data.stereo_motorcycle()[0]
    else:
        image = getattr(skimage.data, name)()
    image = np.ascontiguousarray(image[..., :3])
    image.setflags(write=False)
    return image


def _grid_cells(name, size, min_std) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``size x size`` cells of photograph ``name`` in row-major order, those
    with pixel std (in ``[0, 1]`` units) below ``min_std`` dropped, and their grid indices."""
    from skimage.util import view_as_blocks

    photo = _photo(name)
    rows, cols = photo.shape[0] // size, photo.shape[1] // size
    cells = view_as_blocks(photo[:rows * size, :cols * size], (size, size, 3))
    cells = cells.reshape(rows * cols, size, size, 3)
    keep = np.flatnonzero(cells.reshape(len(cells), -1).std(axis=1) / 255 >= min_std)
    return cells[keep], keep


# ----------------------------------------------------------------------------- CIFAR-10 archive

def default_root() -> Path:
    """Where datasets live: ``$RECON_DATA`` if set, else ``~/.cache/recon``."""
    return Path(os.environ.get("RECON_DATA") or Path.home() / ".cache" / "recon")


def _root(root) -> Path:
    if root is None:
        return default_root()
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {root!r} "
                        f"(type {type(root).__name__})")
    return Path(root).expanduser()


def _parse_checksum(checksum) -> tuple[str, str]:
    """``(algorithm, hex digest)`` from ``"md5:<hex>"``, ``"sha256:<hex>"`` or bare hex."""
    if checksum is None:
        return "md5", CIFAR10_MD5
    if not isinstance(checksum, str):
        raise TypeError(f"checksum must be a string like 'md5:<hex>' or 'sha256:<hex>', got "
                        f"{checksum!r} (type {type(checksum).__name__})")
    algorithm, _, digest = checksum.strip().lower().rpartition(":")
    algorithm = algorithm or {32: "md5", 64: "sha256"}.get(len(digest), "")
    lengths = {"md5": 32, "sha256": 64}
    if lengths.get(algorithm) != len(digest) or any(ch not in "0123456789abcdef" for ch in digest):
        raise ValueError(f"checksum must be 'md5:' + 32 hex digits or 'sha256:' + 64 hex digits "
                         f"(or the bare digits), got {checksum!r}")
    return algorithm, digest


def file_checksum(path, algorithm: str = "md5") -> str:
    """Hex digest of the file at ``path`` with ``hashlib``'s ``algorithm``."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path, checksum=None) -> str:
    """Check the file at ``path`` against ``checksum`` (default: the official CIFAR-10 md5);
    raise :class:`ChecksumError` on a mismatch. Returns the verified ``"algo:hex"``."""
    algorithm, expected = _parse_checksum(checksum)
    actual = file_checksum(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}. "
            "The file is corrupt, truncated or not the official archive: delete it and put a "
            "fresh copy there (or use download=True); pass checksum='md5:...'/'sha256:...' only "
            "if you use a different archive on purpose.")
    return f"{algorithm}:{expected}"


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be extracted, or None if it is a plain file/folder inside."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or \
            PureWindowsPath(name).is_absolute():
        return "has an absolute path"
    if ".." in PureWindowsPath(name).parts:
        return "has a '..' component that leaves the target folder"
    if member.issym() or member.islnk():
        return f"is a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder (device, fifo, ...)"
    return None


def extract_archive(archive, target, folder: str) -> Path:
    """Extract the regular files under ``folder/`` of the ``.tar.gz`` ``archive`` into
    ``target`` after vetting *every* member; raise :class:`UnsafeArchiveError` if any member
    has an absolute path, a ``..`` component, is a link or a device. Returns ``target/folder``.
    The folder is written to a temporary place in ``target`` and moved in when complete."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            reason = _unsafe_reason(member)
            if reason:
                raise UnsafeArchiveError(
                    f"refusing to extract {archive}: member {member.name!r} {reason}. Only plain "
                    f"files inside the target folder are accepted; this is not the official "
                    f"archive.")
        wanted = [m for m in members if m.isfile()
                  and posixpath.normpath(m.name).startswith(folder + "/")]
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
        try:
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=wanted, **extra)
            destination = target / folder
            if destination.exists():
                shutil.rmtree(destination)
            (staging / folder).mkdir(exist_ok=True)
            os.replace(staging / folder, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return destination


def download_cifar10(root=None, checksum=None, url: str = CIFAR10_URL) -> Path:
    """Download the CIFAR-10 binary archive into ``root`` (default :func:`default_root`) with
    urllib, verify its checksum, and only then move it to ``root/cifar-10-binary.tar.gz``."""
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / CIFAR10_ARCHIVE
    fd, partial = tempfile.mkstemp(prefix=CIFAR10_ARCHIVE, suffix=".part", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, f)
            except (urllib.error.URLError, OSError) as e:
                raise OSError(f"could not download {url} ({e}); on a machine without internet "
                              f"put {CIFAR10_ARCHIVE} at {archive} yourself") from e
        verify_checksum(partial, checksum)
        os.replace(partial, archive)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return archive


def prepare_cifar10(root=None, *, download: bool = False, checksum=None) -> Path:
    """Return the folder ``root/cifar-10-batches-bin`` holding the extracted binary batches.

    It is reused when a previous extraction recorded the same verified checksum; otherwise
    ``root/cifar-10-binary.tar.gz`` (downloaded first with ``download=True``) is verified against
    ``checksum`` (default the official md5) and safely extracted."""
    root = _root(root)
    expected = "{}:{}".format(*_parse_checksum(checksum))
    folder, archive = root / CIFAR10_FOLDER, root / CIFAR10_ARCHIVE
    marker = folder / _MARKER
    if marker.is_file() and marker.read_text().strip() == expected:
        return folder
    if not archive.is_file():
        if not download:
            raise FileNotFoundError(
                f"CIFAR-10 binary archive not found: looked for {archive}. Put "
                f"{CIFAR10_ARCHIVE} (the official binary version) in {root} (choose the folder "
                f"with root=... or the RECON_DATA environment variable), or call with "
                f"download=True to fetch it from {CIFAR10_URL} (needs internet).")
        download_cifar10(root, checksum)
    verify_checksum(archive, checksum)
    folder = extract_archive(archive, root, CIFAR10_FOLDER)
    missing = [f for fs in CIFAR10_SPLITS.values() for f in fs + (CIFAR10_META,)
               if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"{archive} lacks {', '.join(missing)} under {CIFAR10_FOLDER}/; it is "
                         "not a complete CIFAR-10 binary archive")
    marker.write_text(expected + "\n")
    return folder


def read_cifar10_batch(path) -> np.ndarray:
    """Records of a CIFAR-10 binary batch file as a read-only ``uint8`` array ``m x 3073``:
    column 0 is the label, columns 1.. the 32x32 R, then G, then B planes (row-major)."""
    size = os.path.getsize(path)
    if size == 0 or size % CIFAR10_RECORD:
        raise ValueError(f"{path} has {size} bytes, not a positive multiple of the "
                         f"{CIFAR10_RECORD}-byte CIFAR-10 record: the file is corrupt")
    records = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, CIFAR10_RECORD)
    if records[:, 0].max() >= len(CIFAR10_CLASSES):
        raise ValueError(f"{path} holds labels >= {len(CIFAR10_CLASSES)}: the file is corrupt")
    return records


def _check_meta(folder: Path) -> None:
    """The class names in ``batches.meta.txt`` must be CIFAR-10's, in order."""
    names = tuple(line.strip() for line in (folder / CIFAR10_META).read_text().splitlines()
                  if line.strip())
    if names != CIFAR10_CLASSES:
        raise ValueError(f"{folder / CIFAR10_META} lists classes {names}, expected "
                         f"{CIFAR10_CLASSES}: not a CIFAR-10 archive")
