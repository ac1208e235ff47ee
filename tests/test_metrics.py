"""Matching and errors: invariant to the order of candidates, and (sign-aware) to signs."""

import numpy as np
import pytest

from recon import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 12))
    X_hat = X + 1e-3 * rng.normal(size=X.shape)
    return X, X_hat


def test_errors_are_invariant_to_permutation(pair):
    X, X_hat = pair
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(metrics.per_sample_errors(X_hat[perm], X),
                               metrics.per_sample_errors(X_hat, X))
    assert metrics.match(X_hat[perm], X).order.tolist() == np.argsort(perm).tolist()


def test_sign_aware_error_ignores_sign_flips_and_signed_does_not(pair):
    X, X_hat = pair
    flipped = X_hat * np.where(np.arange(len(X)) % 2, -1.0, 1.0)[:, None]
    np.testing.assert_allclose(metrics.per_sample_errors(flipped, X, sign_aware=True),
                               metrics.per_sample_errors(X_hat, X, sign_aware=True))
    signed = metrics.per_sample_errors(flipped, X, sign_aware=False)
    assert signed[1] > 0.5 and signed[0] < 1e-2


def test_error_values_and_recovered_fraction():
    X = np.eye(4) * 2.0
    X_hat = X.copy()
    X_hat[2] = [0.0, 0.0, 0.0, -2.0]  # far from x_2 (and from -x_2)
    errors = metrics.per_sample_errors(X_hat, X)
    np.testing.assert_allclose(errors, [0, 0, np.sqrt(8) / 2, 0], atol=1e-12)
    assert metrics.recovered_fraction(X_hat, X, threshold=1e-2) == 0.75


def test_feature_span_residuals():
    rng = np.random.default_rng(2)
    F = rng.normal(size=(3, 50))
    mix = rng.normal(size=(3, 3)) @ F  # the same span
    np.testing.assert_allclose(metrics.feature_span_residuals(F, mix), 0, atol=1e-12)
    other = rng.normal(size=(3, 50))
    assert np.all(metrics.feature_span_residuals(F, other) > 0.1)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        metrics.per_sample_errors(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="threshold"):
        metrics.recovered_fraction(np.zeros((3, 4)), np.zeros((3, 4)), threshold=0)


def test_metrics_refuse_non_finite_inputs_and_pixels_outside_the_unit_range():
    X = np.eye(3)
    with pytest.raises(ValueError, match="the reconstruction has 1 NaN or infinite"):
        metrics.match(X + np.diag([np.nan, 0, 0]), X)
    with pytest.raises(ValueError, match="the data has 1 NaN or infinite"):
        metrics.per_sample_errors(X, X + np.diag([0, np.inf, 0]))
    images = np.full((2, 8, 8, 1), 0.5)
    with pytest.raises(ValueError, match=r"images_hat must have pixels in \[0, 1\].*1.5"):
        metrics.image_metrics(images, images + 1.0)


def test_ssim_baseline_is_the_best_same_class_look_alike():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    train = rng.uniform(size=(2, 12, 12, 3))
    near = np.clip(train[0] + 0.05 * rng.normal(size=train[0].shape), 0, 1)
    pool = np.stack([rng.uniform(size=(12, 12, 3)), near, rng.uniform(size=(12, 12, 3))])
    labels_pool = np.array([0, 0, 1])
    baseline = metrics.ssim_baseline(train, [0, 1], pool, labels_pool)
    expect0 = max(structural_similarity(train[0], p, data_range=1.0, channel_axis=-1,
                                        win_size=7) for p in pool[:2])
    assert baseline[0] == pytest.approx(expect0) and baseline[0] > 0.5
    # image 1 is compared with class 1 only: the look-alike of image 0 does not count
    assert baseline[1] == pytest.approx(structural_similarity(
        train[1], pool[2], data_range=1.0, channel_axis=-1, win_size=7))
    assert baseline[1] < 0.2
    # half the gap to a perfect copy: 0.3 -> above 0.65, 0.9 -> above 0.95
    ok = metrics.beats_baseline([0.66, 0.6, 0.94, 0.96], [0.3, 0.3, 0.9, 0.9])
    assert ok.tolist() == [True, False, False, True]
    assert metrics.beats_baseline([0.35], [0.3], margin=0.0).tolist() == [True]
    assert metrics.beats_baseline([0.99], [0.3], margin=1.0).tolist() == [False]


def test_ssim_baseline_bad_input():
    rng = np.random.default_rng(0)
    train, pool = rng.uniform(size=(2, 8, 8)), rng.uniform(size=(3, 8, 8))
    with pytest.raises(ValueError, match=r"no image of class\(es\) \[1\]"):
        metrics.ssim_baseline(train, [0, 1], pool, [0, 0, 0])
    with pytest.raises(ValueError, match="training images' shape"):
        metrics.ssim_baseline(train, [0, 1], rng.uniform(size=(3, 9, 9)), [0, 1, 1])
    with pytest.raises(ValueError, match="one class per image"):
        metrics.ssim_baseline(train, [0], pool, [0, 1, 1])
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        metrics.ssim_baseline(train * 2, [0, 1], pool, [0, 1, 1])
    with pytest.raises(ValueError, match=r"margin must lie in \[0, 1\]"):
        metrics.beats_baseline([0.5], [0.1], margin=1.5)
    with pytest.raises(ValueError, match="same length"):
        metrics.beats_baseline([0.5, 0.2], [0.1])
