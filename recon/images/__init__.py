"""Real image datasets, all behind one interface (:class:`ImageDataset`).

Four sources, one entry point :func:`load_images`:

``"cifar10"``
    CIFAR-10 read with numpy from its official *binary* archive ``cifar-10-binary.tar.gz``
    (never pickle). The archive is checked against its published md5 before it is opened and
    is extracted member by member only after every member has been vetted (no absolute
    paths, no ``..``, no links, no devices).
``"digits"``
    scikit-learn's handwritten digits (1797 grey 8x8 images, classes ``"0"`` ... ``"9"``),
    shipped inside the package, so everything runs offline.
``"photos"``
    whole photographs bundled inside scikit-image and scikit-learn, each centre-cropped to a
    square and shrunk with an antialiasing resize to a ``side x side`` thumbnail (16 or 32
    pixels, ...), one picture per sample; two classes, ``"colour"`` (ten colour photographs)
    and ``"grayscale"`` (ten grey pictures, channel repeated, or every picture in grey with
    ``channels=1``): see :mod:`recon.images.photos`.
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

The package: :mod:`recon.images.dataset` (the interface and the sphere),
:mod:`recon.images.selection` (which images, checked before loading, and their
normalisation), :mod:`recon.images.cifar10` (the archive: checksum, safe extraction, reading)
and :mod:`recon.images.sources` (digits and photo patches), :mod:`recon.images.photos` (whole
photographs as thumbnails).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recon import checks
from recon.images.cifar10 import (CIFAR10_ARCHIVE, CIFAR10_CLASSES, CIFAR10_FOLDER, CIFAR10_MD5,
                                  CIFAR10_MEAN, CIFAR10_META, CIFAR10_PER_CLASS, CIFAR10_RECORD,
                                  CIFAR10_SHAPE, CIFAR10_SPLITS, CIFAR10_STD, CIFAR10_URL,
                                  ChecksumError, UnsafeArchiveError, default_root,
                                  download_cifar10, extract_archive, file_checksum, load_cifar10,
                                  prepare_cifar10, read_cifar10_batch, verify_checksum)
from recon.images.dataset import ImageDataset, from_sphere, to_sphere
from recon.images.selection import (DATASETS, DEFAULT_PAIRS, NORMALIZATIONS, TASKS,
                                    downsampled_shape)
from recon.images.photos import (ALL_PHOTOS, COLOUR_PHOTOS, GRAYSCALE_PHOTOS, PHOTO_CHANNELS,
                                 PHOTO_CLASSES, PHOTO_GROUPS, PHOTO_SIDE, PHOTO_SIDES,
                                 load_photos, photo_shape, thumbnail, whole_photo)
from recon.images.sources import (DIGITS_CLASSES, DIGITS_SHAPE, PATCH_SIZE, PHOTOS, load_digits,
                                  load_patches, photo)

__all__ = [
    "ALL_PHOTOS", "COLOUR_PHOTOS", "GRAYSCALE_PHOTOS", "PHOTO_CHANNELS", "PHOTO_CLASSES",
    "PHOTO_GROUPS", "PHOTO_SIDE", "PHOTO_SIDES", "load_photos", "photo_shape", "source_shape",
    "thumbnail", "whole_photo", "load_holdout",
    "CIFAR10_ARCHIVE", "CIFAR10_CLASSES", "CIFAR10_FOLDER", "CIFAR10_MD5", "CIFAR10_MEAN",
    "CIFAR10_META", "CIFAR10_PER_CLASS", "CIFAR10_RECORD", "CIFAR10_SHAPE", "CIFAR10_SPLITS",
    "CIFAR10_STD", "CIFAR10_URL", "DATASETS", "DEFAULT_PAIRS", "DIGITS_CLASSES", "DIGITS_SHAPE",
    "NORMALIZATIONS", "PATCH_SIZE", "PHOTOS", "SOURCE_SHAPES", "TASKS", "ChecksumError",
    "ImageDataset", "UnsafeArchiveError", "default_root", "download_cifar10",
    "downsampled_shape", "extract_archive", "file_checksum", "from_sphere", "load_cifar10",
    "load_digits", "load_images", "load_patches", "photo", "prepare_cifar10",
    "read_cifar10_batch", "to_sphere", "verify_checksum",
]

# Shape (H, W, C) of one image of each source before downsampling (patches: the default cut).
SOURCE_SHAPES = {"cifar10": CIFAR10_SHAPE, "digits": DIGITS_SHAPE,
                 "patches": (PATCH_SIZE, PATCH_SIZE, 3), "photos": (PHOTO_SIDE, PHOTO_SIDE, 3)}


def source_shape(name: str, side=None, channels=None) -> tuple[int, int, int]:
    """Shape ``(H, W, C)`` of one image of dataset ``name`` before downsampling; ``side`` and
    ``channels`` choose the thumbnails of ``"photos"`` (default 32 and 3) and must stay
    ``None`` for the other datasets, whose shape is fixed."""
    checks.choice("name", name, DATASETS)
    if name == "photos":
        return photo_shape(PHOTO_SIDE if side is None else side,
                           3 if channels is None else channels)
    for option, value in (("side", side), ("channels", channels)):
        if value is not None:
            raise ValueError(f"{option}={value!r} only applies to dataset 'photos'; "
                             f"{name!r} images are {'x'.join(map(str, SOURCE_SHAPES[name]))}")
    return SOURCE_SHAPES[name]


def load_images(name: str, n: int, *, task: str = "binary", classes=None, k=None,
                normalization: str = "global", downsample: int = 1, seed=None, root=None,
                download: bool = False, checksum=None, split: str = "train", side=None,
                channels=None) -> ImageDataset:
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
        side, channels: ``"photos"`` only: the thumbnail's side (one of
            :data:`PHOTO_SIDES`, default 32) and 1 (grey) or 3 (colour, the default).
    """
    source_shape(name, side, channels)
    if name == "photos":
        return load_photos(n, task=task, classes=classes, k=k, normalization=normalization,
                           downsample=downsample, seed=seed,
                           side=PHOTO_SIDE if side is None else side,
                           channels=3 if channels is None else channels)
    if name == "cifar10":
        return load_cifar10(n, task=task, classes=classes, k=k, normalization=normalization,
                            downsample=downsample, seed=seed, root=root, download=download,
                            checksum=checksum, split=split)
    loader = load_digits if name == "digits" else load_patches
    return loader(n, task=task, classes=classes, k=k, normalization=normalization,
                  downsample=downsample, seed=seed)


def load_holdout(dataset: ImageDataset, per_class: int, *, downsample: int = 1, side=None,
                 channels=None, root=None, split: str = "train") -> ImageDataset:
    """Up to ``per_class`` images of each class of ``dataset`` that it does *not* contain
    (same source, same classes, same shape), pixels in ``[0, 1]`` (``normalization="none"``):
    the pool of :func:`recon.metrics.ssim_baseline`.

    They are taken in file order (for photos: each group's order, at most the group's ten
    pictures in all) from the first ``n/k + per_class`` images of each class, with the
    training images left out, so a class may give fewer than ``per_class`` (never none unless
    the source has no other image of it). ``downsample``, ``side``, ``channels``, ``root``
    and ``split`` must be those ``dataset`` was loaded with."""
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be an ImageDataset, got {type(dataset).__name__}")
    per_class = checks.positive_int("per_class", per_class)
    trained = dataset.n // dataset.k
    take = trained + per_class
    if dataset.name == "photos":
        take = min(take, min(len(PHOTO_GROUPS[c]) for c in dataset.classes))
    if take <= trained:
        raise ValueError(f"every picture of the classes {list(dataset.classes)} is a training "
                         f"image, so none is left to hold out; lower n")
    extra = {"root": root, "split": split} if dataset.name == "cifar10" else {}
    if dataset.name == "photos":
        extra = {"side": side, "channels": channels}
    pool = load_images(dataset.name, take * dataset.k, task="multiclass",
                       classes=list(dataset.classes), normalization="none",
                       downsample=downsample, seed=None, **extra)
    seen = set(zip(dataset.labels.tolist(), dataset.index.tolist()))
    keep = np.array([(c, i) not in seen for c, i in zip(pool.labels.tolist(),
                                                        pool.index.tolist())])
    if pool.image_shape != dataset.image_shape:
        raise ValueError(f"the held-out images are {pool.image_shape}, the dataset's "
                         f"{dataset.image_shape}: pass the downsample/side/channels it was "
                         "loaded with")
    per = np.zeros(dataset.k, int)
    for row in np.flatnonzero(keep):
        c = pool.labels[row]
        keep[row] = per[c] < per_class
        per[c] += keep[row]
    return dataclasses.replace(pool, X=pool.X[keep], y=pool.y[keep], labels=pool.labels[keep],
                               index=pool.index[keep])
