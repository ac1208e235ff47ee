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
