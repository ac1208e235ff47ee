"""The images that ship inside packages, so everything runs offline: scikit-learn's
handwritten digits and patches of scikit-image's colour photographs."""

from __future__ import annotations

import functools

import numpy as np

from recon import checks
from recon.images.dataset import ImageDataset
from recon.images.selection import DEFAULT_PAIRS, finish, make_request, pick, select

DIGITS_CLASSES = tuple(str(i) for i in range(10))
DIGITS_SHAPE = (8, 8, 1)

# Colour photographs bundled inside scikit-image (no download); a patch's class is its photo.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble_deep_field",
          "immunohistochemistry", "retina")
PATCH_SIZE = 32  # side of a patch cut from a photograph, unless asked otherwise


def load_digits(n: int, *, task: str = "binary", classes=None, k=None,
                normalization: str = "global", downsample: int = 1, seed=None) -> ImageDataset:
    """``n`` of scikit-learn's handwritten digits (8x8x1, pixels ``0..16`` scaled to
    ``[0, 1]``, classes ``"0"``..``"9"``; default binary pair ``0`` vs ``1``). See
    :func:`recon.images.load_images` for the arguments."""
    request = make_request(n, task, classes, k, normalization, downsample, seed,
                           DIGITS_CLASSES, DEFAULT_PAIRS["digits"], DIGITS_SHAPE)
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    index = select(digits.target, request, DIGITS_CLASSES)
    images = (digits.images[index] / 16.0).astype(np.float32)[..., None]
    return finish("digits", images, index, request)


def load_patches(n: int, *, task: str = "binary", classes=None, k=None,
                 normalization: str = "global", downsample: int = 1, seed=None,
                 patch_size: int = PATCH_SIZE, min_std: float = 0.02) -> ImageDataset:
    """``n`` colour patches ``patch_size x patch_size x 3`` cut from scikit-image's bundled
    photographs :data:`PHOTOS`; the class of a patch is its photograph (default binary pair
    astronaut vs coffee). See :func:`recon.images.load_images` for the other arguments.

    Each photograph is cut on a non-overlapping grid (its bottom and right margins dropped);
    cells whose pixel standard deviation is below ``min_std`` (flat background, e.g. the
    black rim of the retina) are left out, so no two samples are (nearly) identical.
    ``seed=None`` takes cells evenly spread over the grid, an integer seed a random subset.
    """
    patch_size = checks.positive_int("patch_size", patch_size)
    min_std = checks.positive_float("min_std", min_std, allow_zero=True)
    shape = (patch_size, patch_size, 3)
    request = make_request(n, task, classes, k, normalization, downsample, seed,
                           PHOTOS, DEFAULT_PAIRS["patches"], shape)
    cells = [_grid_cells(PHOTOS[c], patch_size, min_std) for c in request.class_ids]
    images, index = [], []
    for c, (pool, cell_index) in zip(request.class_ids, cells):
        if len(pool) < request.per_class:
            raise ValueError(f"n={n} asks for {request.per_class} patches of {PHOTOS[c]!r}, "
                             f"which has {len(pool)} usable {patch_size}x{patch_size} cells; "
                             "lower n or patch_size")
        picks = pick(np.arange(len(pool)), request.per_class, request.seed, c, spread=True)
        images.append(pool[picks])
        index.append(cell_index[picks])
    images = np.concatenate(images).astype(np.float32) / np.float32(255)
    return finish("patches", images, np.concatenate(index), request)



@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
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

    image = photo(name)
    rows, cols = image.shape[0] // size, image.shape[1] // size
    cells = view_as_blocks(image[:rows * size, :cols * size], (size, size, 3))
    cells = cells.reshape(rows * cols, size, size, 3)
    keep = np.flatnonzero(cells.reshape(len(cells), -1).std(axis=1) / 255 >= min_std)
    return cells[keep], keep
