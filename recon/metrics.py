"""Comparing a reconstruction ``X_hat`` with the training inputs ``X``.

Candidates are matched to training points by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``); per-sample errors are ``||x - x_hat|| / sqrt(d)``
(signed) or ``min(||x - x_hat||, ||x + x_hat||) / sqrt(d)`` (sign-aware, for activations that
cannot tell ``x`` from ``-x``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from recon import checks


def _as_flat_pair(X_hat, X) -> tuple[np.ndarray, np.ndarray]:
    X_hat = np.asarray(X_hat, np.float64)
    X = np.asarray(X, np.float64)
    if X_hat.shape != X.shape:
        raise ValueError(f"reconstruction shape {X_hat.shape} does not match data shape {X.shape}")
    if X.ndim < 2:
        raise ValueError(f"expected a batch of inputs (n, ...), got shape {X.shape}")
    checks.finite_array("the reconstruction", X_hat)
    checks.finite_array("the data", X)
    return X_hat.reshape(len(X_hat), -1), X.reshape(len(X), -1)


def pairwise_errors(X_hat, X, sign_aware: bool = True) -> np.ndarray:
    """``E[i, j] = ||x_j - x_hat_i|| / sqrt(d)`` (or the sign-aware minimum over ``+-x_hat_i``)."""
    X_hat, X = _as_flat_pair(X_hat, X)
    d = X.shape[1]

    def dist(A, B):
        sq = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
        return np.sqrt(np.maximum(sq, 0.0))

    E = dist(X_hat, X)
    if sign_aware:
        E = np.minimum(E, dist(-X_hat, X))
    return E / np.sqrt(d)


class Matching(NamedTuple):
    """``order[j]`` is the candidate matched to training point ``j``; ``errors[j]`` its error."""

    order: np.ndarray
    errors: np.ndarray


def match(X_hat, X, sign_aware: bool = True) -> Matching:
    """Hungarian matching of candidates to training points minimising the summed error."""
    E = pairwise_errors(X_hat, X, sign_aware)
    rows, cols = linear_sum_assignment(E)
    order = np.empty(len(cols), dtype=int)
    order[cols] = rows
    return Matching(order, E[order, np.arange(E.shape[1])])


class Alignment(NamedTuple):
    """A reconstruction put in the training order: ``X_hat[j]`` is the candidate matched to
    training point ``j``, multiplied by ``signs[j]`` (``-1`` where ``-x_hat`` is the closer);
    ``errors[j]`` its matched error."""

    X_hat: np.ndarray
    signs: np.ndarray
    errors: np.ndarray


def align(X_hat, X, sign_aware: bool = True) -> Alignment:
    """Match candidates to training points (:func:`match`), then flip each matched candidate
    to the sign that agrees with its training point (``x_hat . x < 0`` flips), for display and
    for comparisons row by row. Returns arrays of ``X``'s shape in float64."""
    matching = match(X_hat, X, sign_aware)
    X_hat = np.asarray(X_hat, np.float64)[matching.order]
    X = np.asarray(X, np.float64)
    axes = tuple(range(1, X.ndim))
    signs = np.where(np.sum(X_hat * X, axis=axes) < 0, -1.0, 1.0)
    return Alignment(X_hat * signs.reshape((-1,) + (1,) * (X.ndim - 1)), signs, matching.errors)


def per_sample_errors(X_hat, X, sign_aware: bool = True) -> np.ndarray:
    """Matched per-sample errors, one per training point, in the training order."""
    return match(X_hat, X, sign_aware).errors


def mean_matched_error(X_hat, X, sign_aware: bool = True) -> float:
    """Mean of the matched per-sample errors."""
    return float(per_sample_errors(X_hat, X, sign_aware).mean())


def recovered_fraction(X_hat, X, threshold: float = 1e-2, sign_aware: bool = True) -> float:
    """Share of training points whose matched error is below ``threshold``."""
    threshold = checks.positive_float("threshold", threshold)
    return float(np.mean(per_sample_errors(X_hat, X, sign_aware) < threshold))


def feature_span_residuals(F_true, F_hat) -> np.ndarray:
    """For each true feature row ``phi(x_i)``, the norm of its part outside the span of the
    rows of ``F_hat``, divided by ``sqrt(p)``."""
    F_true = np.asarray(F_true, np.float64)
    F_hat = np.asarray(F_hat, np.float64)
    if F_true.ndim != 2 or F_hat.ndim != 2 or F_true.shape[1] != F_hat.shape[1]:
        raise ValueError(f"feature matrices must be (n, p) with the same p, got "
                         f"{F_true.shape} and {F_hat.shape}")
    Q, _ = np.linalg.qr(F_hat.T)
    outside = F_true - (F_true @ Q) @ Q.T
    return np.linalg.norm(outside, axis=1) / np.sqrt(F_true.shape[1])


# ----------------------------------------------------------------------------- images

class ImageMetrics(NamedTuple):
    """Per-image quality of a reconstruction: ``psnr[i]`` (dB, ``inf`` for an exact copy) and
    ``ssim[i]`` (at most 1) of reconstruction ``i`` against original ``i``."""

    psnr: np.ndarray
    ssim: np.ndarray


def _as_images(images, what: str) -> np.ndarray:
    images = np.asarray(images, np.float64)
    if images.ndim == 3:  # (m, H, W): grey images without a channel axis
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{what} must be images of shape (m, H, W, C) or (m, H, W), got "
                         f"shape {images.shape}")
    checks.finite_array(what, images)
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{what} must have pixels in [0, 1] (PSNR and SSIM use data_range=1), "
                         f"got values in [{images.min():.3g}, {images.max():.3g}]; clip them "
                         f"or use ImageDataset.to_images")
    return images


def image_metrics(images_true, images_hat) -> ImageMetrics:
    """PSNR and SSIM of each reconstructed image against its original, as the paper reports
    them: ``skimage.metrics.peak_signal_noise_ratio`` and ``structural_similarity`` with
    ``data_range=1`` (pixels in ``[0, 1]``, e.g. from :meth:`recon.images.ImageDataset.to_images`)
    and ``channel_axis=-1``.

    Both arrays hold ``m`` images ``(m, H, W, C)`` (or grey ``(m, H, W)``) in the same order,
    i.e. reconstructions already matched to their originals (:func:`match`). SSIM's window is
    7 pixels, or the largest odd size that fits images smaller than 7x7 (at least 3x3).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    images_true = _as_images(images_true, "images_true")
    images_hat = _as_images(images_hat, "images_hat")
    if images_true.shape != images_hat.shape:
        raise ValueError(f"images_true {images_true.shape} and images_hat {images_hat.shape} "
                         "must have the same shape (matched pairs)")
    window = _ssim_window(images_true)
    psnr, ssim = [], []
    for a, b in zip(images_true, images_hat):
        with np.errstate(divide="ignore"):  # identical images: MSE 0, PSNR inf
            psnr.append(peak_signal_noise_ratio(a, b, data_range=1.0))
        ssim.append(structural_similarity(a, b, data_range=1.0, channel_axis=-1,
                                          win_size=window))
    return ImageMetrics(np.asarray(psnr, np.float64), np.asarray(ssim, np.float64))


def ssim_success(ssims, level: float = 0.4) -> int:
    """Number of images whose SSIM exceeds ``level`` (the paper counts a reconstructed image
    as successful when its SSIM is above 0.4)."""
    level = checks.positive_float("level", level)
    ssims = np.asarray(ssims, np.float64)
    if ssims.ndim != 1:
        raise ValueError(f"ssims must be a 1-d array of per-image SSIM values, got shape "
                         f"{ssims.shape}")
    return int(np.sum(ssims > level))


def _ssim_window(images: np.ndarray) -> int:
    """SSIM's window for ``(m, H, W, C)`` images: 7, or the largest odd size that fits."""
    side = min(images.shape[1:3])
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got "
                         f"{images.shape[1]}x{images.shape[2]}")
    return min(7, side if side % 2 else side - 1)


def ssim_baseline(images_train, labels_train, images_pool, labels_pool) -> np.ndarray:
    """The SSIM a guess reaches without the weights: for each training image ``x_i``, the
    highest SSIM between ``x_i`` and any image of the ``pool`` with the same label, the pool
    being images of the same source that were *not* trained on.

    A reconstruction that is no closer to ``x_i`` than the best such look-alike shows nothing
    the data's distribution did not already give away; :func:`beats_baseline` counts the
    reconstructions that are clearly closer. Same SSIM as :func:`image_metrics` (pixels in
    ``[0, 1]``, ``data_range=1``, ``channel_axis=-1``).

    Args:
        images_train: ``(n, H, W, C)`` (or ``(n, H, W)``) training images in ``[0, 1]``.
        labels_train: ``(n,)`` their classes.
        images_pool: ``(m, H, W, C)`` held-out images of the same source, same shape.
        labels_pool: ``(m,)`` their classes; every class of ``labels_train`` must occur.

    Returns:
        ``(n,)`` float64: the best pool SSIM of each training image.
    """
    from skimage.metrics import structural_similarity

    train = _as_images(images_train, "images_train")
    pool = _as_images(images_pool, "images_pool")
    if train.shape[1:] != pool.shape[1:]:
        raise ValueError(f"images_pool {pool.shape} must hold images of the training images' "
                         f"shape {train.shape[1:]}")
    labels_train, labels_pool = np.asarray(labels_train), np.asarray(labels_pool)
    if labels_train.shape != (len(train),) or labels_pool.shape != (len(pool),):
        raise ValueError(f"labels must give one class per image: labels_train "
                         f"{labels_train.shape} for {len(train)} images, labels_pool "
                         f"{labels_pool.shape} for {len(pool)} images")
    missing = sorted(set(labels_train.tolist()) - set(labels_pool.tolist()))
    if missing:
        raise ValueError(f"the pool has no image of class(es) {missing}, so the baseline of "
                         "their training images is undefined; give held-out images of every "
                         "class")
    window = _ssim_window(train)
    best = np.empty(len(train))
    for i, (image, label) in enumerate(zip(train, labels_train)):
        best[i] = max(structural_similarity(image, other, data_range=1.0, channel_axis=-1,
                                            win_size=window)
                      for other in pool[labels_pool == label])
    return best


def beats_baseline(ssims, baseline, margin: float = 0.5) -> np.ndarray:
    """Which reconstructions beat the baseline *clearly*: those whose SSIM closes more than
    the share ``margin`` of the gap between the baseline and a perfect copy (SSIM 1),

        ssim_i > baseline_i + margin * (1 - baseline_i).

    With the default ``margin = 0.5`` a reconstruction must be closer to a perfect copy than
    to the best look-alike's score: a fixed offset would be met by noise with faint structure
    where the baseline is low (SSIM rewards it on small images), and would be out of reach
    where it is high (digits: look-alikes score 0.6 to 0.95)."""
    margin = checks.fraction("margin", margin)
    ssims, baseline = np.asarray(ssims, np.float64), np.asarray(baseline, np.float64)
    if ssims.ndim != 1 or ssims.shape != baseline.shape:
        raise ValueError(f"ssims {ssims.shape} and baseline {baseline.shape} must be 1-d "
                         "arrays of per-image values of the same length")
    return ssims > baseline + margin * (1.0 - baseline)
