"""Whole photographs that ship inside scikit-image and scikit-learn, as thumbnails a reader
recognises: each picture is centre-cropped to a square and shrunk with scikit-image's
antialiasing :func:`skimage.transform.resize` to ``side x side`` pixels, one picture per
training sample.

The pictures come in two fixed groups of ten, which are the dataset's classes:

``"colour"`` (:data:`COLOUR_PHOTOS`)
    scikit-image's colour photographs (astronaut, chelsea the cat, coffee, rocket, the left
    view of the stereo motorcycle, the Hubble deep field, an immunohistochemistry slide, a
    retina) and scikit-learn's two sample images (china, flower);
``"grayscale"`` (:data:`GRAYSCALE_PHOTOS`)
    scikit-image's grey pictures (camera man, horse, coins, the Shepp-Logan phantom,
    checkerboard, moon, page, text, clock, cell), their one channel repeated three times.

Each group is listed with its most recognisable thumbnails first, since ``seed=None`` takes a
group's first pictures.

So the binary task is "colour photograph (``y = -1``) against grey picture (``y = +1``)", and
the multiclass task has ``k <= 2`` classes. With ``channels=1`` every picture is converted to
grey (:func:`skimage.color.rgb2gray`) and the two groups stay the two classes.
"""

from __future__ import annotations

import functools

import numpy as np

from recon import checks
from recon.images.dataset import ImageDataset
from recon.images.selection import finish, make_request, pick

COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "china", "flower",
                 "hubble_deep_field", "immunohistochemistry", "retina")
GRAYSCALE_PHOTOS = ("camera", "horse", "coins", "shepp_logan_phantom", "checkerboard", "moon",
                    "page", "text", "clock", "cell")
PHOTO_GROUPS = {"colour": COLOUR_PHOTOS, "grayscale": GRAYSCALE_PHOTOS}
PHOTO_CLASSES = tuple(PHOTO_GROUPS)
ALL_PHOTOS = COLOUR_PHOTOS + GRAYSCALE_PHOTOS
PHOTO_SIDES = (8, 16, 32, 64)  # thumbnail sides on offer (32: CIFAR-10's)
PHOTO_SIDE = 32
PHOTO_CHANNELS = (1, 3)
SKLEARN_SAMPLES = ("china", "flower")


def photo_shape(side: int = PHOTO_SIDE, channels: int = 3) -> tuple[int, int, int]:
    """``(side, side, channels)``, both checked against :data:`PHOTO_SIDES` and
    :data:`PHOTO_CHANNELS`."""
    if isinstance(side, bool) or side not in PHOTO_SIDES:
        raise ValueError(f"side must be one of {', '.join(map(str, PHOTO_SIDES))} (pixels of "
                         f"a thumbnail's side), got {side!r}")
    if isinstance(channels, bool) or channels not in PHOTO_CHANNELS:
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    return (int(side), int(side), int(channels))


def load_photos(n: int, *, task: str = "binary", classes=None, k=None,
                normalization: str = "global", downsample: int = 1, seed=None,
                side: int = PHOTO_SIDE, channels: int = 3) -> ImageDataset:
    """``n`` whole photographs as ``side x side x channels`` thumbnails, one per sample, half
    (``n/k``) from each group of :data:`PHOTO_GROUPS` (default binary pair colour vs
    grayscale). ``seed=None`` takes each group's first pictures in the order listed, an
    integer seed a random subset. ``index`` holds each picture's position in
    :data:`ALL_PHOTOS`. See :func:`recon.images.load_images` for the other arguments."""
    shape = photo_shape(side, channels)
    request = make_request(n, task, classes, k, normalization, downsample, seed,
                           PHOTO_CLASSES, ("colour", "grayscale"), shape)
    chosen = []
    for c in request.class_ids:
        group = PHOTO_GROUPS[PHOTO_CLASSES[c]]
        if request.per_class > len(group):
            raise ValueError(
                f"n={n} asks for {request.per_class} pictures of group {PHOTO_CLASSES[c]!r}, "
                f"which has {len(group)}: {', '.join(group)}; lower n (at most "
                f"{len(group) * len(request.class_ids)} for {len(request.class_ids)} groups)")
        chosen += [group[i] for i in pick(np.arange(len(group)), request.per_class,
                                          request.seed, c)]
    pictures = np.stack([thumbnail(name, side, channels) for name in chosen])
    index = np.array([ALL_PHOTOS.index(name) for name in chosen], np.int64)
    return finish("photos", pictures, index, request)


@functools.lru_cache(maxsize=None)
def thumbnail(name: str, side: int = PHOTO_SIDE, channels: int = 3) -> np.ndarray:
    """Picture ``name`` of :data:`ALL_PHOTOS` centre-cropped to a square and resized with
    antialiasing to ``side x side x channels``, float32 in ``[0, 1]`` (read-only)."""
    checks.choice("name", name, ALL_PHOTOS)
    photo_shape(side, channels)
    from skimage.color import gray2rgb, rgb2gray
    from skimage.transform import resize
    from skimage.util import img_as_float

    image = img_as_float(whole_photo(name))
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    image = image[top:top + s, left:left + s]
    if channels == 1:
        image = (rgb2gray(image) if image.ndim == 3 else image)[..., None]
    elif image.ndim == 2:
        image = gray2rgb(image)
    small = resize(image, (side, side, channels), anti_aliasing=True, mode="reflect")
    small = np.clip(small, 0.0, 1.0).astype(np.float32)
    small.setflags(write=False)
    return small


@functools.lru_cache(maxsize=None)
def whole_photo(name: str) -> np.ndarray:
    """Picture ``name`` at full size as shipped: ``H x W x 3`` (colour) or ``H x W`` (grey),
    ``uint8``, ``bool`` or float in ``[0, 1]`` as its package gives it (read-only)."""
    checks.choice("name", name, ALL_PHOTOS)
    if name in SKLEARN_SAMPLES:
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        image = (skimage.data.stereo_motorcycle()[0] if name == "motorcycle"
                 else getattr(skimage.data, name)())
    if image.ndim == 3:
        image = image[..., :3]
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image
