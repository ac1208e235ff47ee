"""The one interface of the image datasets: :class:`ImageDataset`, and the sphere of radius
``sqrt(d)`` on which the reconstruction keeps its candidates (:func:`to_sphere`,
:func:`from_sphere`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
            row-major order for patches, position in :data:`recon.images.ALL_PHOTOS` for
            photos).
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
