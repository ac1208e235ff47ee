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

The package: :mod:`recon.images.dataset` (the interface and the sphere),
:mod:`recon.images.selection` (which images, checked before loading, and their
normalisation), :mod:`recon.images.cifar10` (the archive: checksum, safe extraction, reading)
and :mod:`recon.images.sources` (digits and photo patches).
"""

from __future__ import annotations

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
from recon.images.sources import (DIGITS_CLASSES, DIGITS_SHAPE, PATCH_SIZE, PHOTOS, load_digits,
                                  load_patches, photo)

__all__ = [
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
                 "patches": (PATCH_SIZE, PATCH_SIZE, 3)}


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
