"""Two-layer network and ResNet: shapes, full-batch training, readout-Jacobian problems, and
a tiny end-to-end reconstruction from a trained two-layer network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recon import images, loss, metrics, models, networks, problems, solver, train
from recon.networks import ResNet, TwoLayer

F32 = jnp.float32


@pytest.fixture(scope="module")
def digits():
    """4 digits (two 0s, two 1s) on the sphere of radius sqrt(64), one-hot targets (k=2)."""
    ds = images.load_images("digits", n=4, task="multiclass", k=2)
    X, _ = images.to_sphere(ds.X)
    return jnp.asarray(X, F32), jnp.asarray(ds.y, F32)


@pytest.fixture(scope="module")
def trained_two_layer(digits):
    """TwoLayer with width 2000 (p = 4000 >> d*n = 256) trained to L <= 1e-8."""
    X, Y = digits
    model = TwoLayer(64, 2000, k=2, rngs=nnx.Rngs(0))
    report = train.train_full_batch(model, X, Y, max_steps=5000, tol=1e-8, progress=False)
    return model, report


def small_resnet(seed=0, width=4, blocks=2):
    return ResNet((8, 8, 1), width, blocks=blocks, stem_kernel=6, rngs=nnx.Rngs(seed))


# ----------------------------------------------------------------------------- shapes

def test_two_layer_shapes_and_init():
    model = TwoLayer(50, 400, k=3, rngs=nnx.Rngs(0))
    out = model(jnp.ones((5, 50), F32))
    assert out.shape == (5, 3)
    assert model.W1[...].shape == (400, 50) and model.W2[...].shape == (3, 400)
    assert model.p == 1200 and model.head_size == 400 and model.input_shape == (50,)
    assert model.readout_name == "W2"
    assert np.std(model.W1[...]) == pytest.approx(1 / np.sqrt(50), rel=0.05)
    assert np.std(model.W2[...]) == pytest.approx(1 / np.sqrt(400), rel=0.1)
    with pytest.raises(ValueError, match=r"\(n, d=50\)"):
        model(jnp.ones((5, 49), F32))


def test_resnet_shapes():
    model = ResNet((32, 32, 3), 3, blocks=1, rngs=nnx.Rngs(0))  # the paper's stem
    assert model.feature_map_shape == (7, 7)
    assert model.head_size == 3 * 49 and model.head[...].shape == (1, 3 * 49)
    x = jax.random.normal(jax.random.key(0), (2, 32 * 32 * 3), F32)
    assert model(x).shape == (2, 1)
    assert model.penultimate(x).shape == (2, 3 * 49)
    assert model.readout_name == "head" and model.input_shape == (3072,)

    small = small_resnet(width=5, blocks=3)
    assert small.feature_map_shape == (5, 5) and small.head_size == 5 * 25
    assert small(jnp.ones((3, 64), F32)).shape == (3, 1)
    assert len(small.blocks) == 3
    with pytest.raises(ValueError, match="stem_kernel=28 .* at most 10"):
        ResNet((8, 8, 1), 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="image_shape"):
        ResNet((8, 8), 4, rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------- training

def test_train_two_layer_to_tolerance(digits, trained_two_layer):
    model, report = trained_two_layer
    X, Y = digits
    assert report.converged and report.final_loss <= 1e-8 < report.initial_loss
    assert 0 < report.steps < 5000 and len(report.loss) == report.steps
    assert report.loss[-1] < report.loss[0]
    # the loss is (1/n) sum_i ||f(x_i) - y_i||^2
    r = np.asarray(model(X), np.float64) - np.asarray(Y, np.float64)
    assert np.sum(r**2) / 4 == pytest.approx(report.final_loss, rel=1e-3, abs=1e-10)
    # the report keeps the initial weights; both layers moved
    assert report.initial_readout.shape == (2, 2000)
    assert np.array_equal(report.initial_readout, report.initial("W2"))
    assert not np.array_equal(report.initial("W1"), model.W1[...])
    assert not np.array_equal(report.initial_readout, model.W2[...])
    assert report.lr == pytest.approx(train.suggest_lr(TwoLayer(64, 2000, 2, rngs=nnx.Rngs(0)),
                                                       X), rel=1e-6)


def test_train_resnet_to_tolerance(digits):
    X, _ = digits
    y = jnp.asarray([-1.0, -1.0, 1.0, 1.0], F32)  # (n,) targets for the k = 1 output
    model = small_resnet()
    report = train.train_full_batch(model, X, y, max_steps=2000, tol=1e-6, progress=False)
    assert report.converged and report.final_loss <= 1e-6
    assert report.initial_readout.shape == (1, model.head_size)
    assert not np.array_equal(report.initial("stem.kernel"), model.stem.kernel[...])


def test_train_step_budget_and_errors(digits):
    X, Y = digits
    model = TwoLayer(64, 100, k=2, rngs=nnx.Rngs(0))
    report = train.train_full_batch(model, X, Y, lr=1e-4, max_steps=7, tol=0, chunk=5,
                                    progress=False)
    assert report.steps == 7 and len(report.loss) == 7 and not report.converged
    with pytest.raises(FloatingPointError, match="lower lr"):
        # (with ReLU a huge step kills every unit and the loss freezes instead)
        train.train_full_batch(TwoLayer(64, 100, k=2, activation="tanh", rngs=nnx.Rngs(0)),
                               X, Y, lr=1.0, max_steps=200, progress=False)
    with pytest.raises(ValueError, match="output shape"):
        train.train_full_batch(model, X, Y[:, :1], progress=False)
    with pytest.raises(ValueError, match="'auto'"):
        train.train_full_batch(model, X, Y, lr="fast", progress=False)


def test_lr_scale_freezes_or_speeds_up_a_layer(digits):
    X, Y = digits
    moved = {}
    for scale in (0.0, 1.0, 10.0):
        model = TwoLayer(64, 100, k=2, rngs=nnx.Rngs(0))
        W1, W2 = np.asarray(model.W1[...]), np.asarray(model.W2[...])
        report = train.train_full_batch(model, X, Y, max_steps=20, tol=0, progress=False,
                                        lr_scale={"W1": scale})
        assert np.all(np.isfinite(report.loss)) and report.final_loss < report.initial_loss
        assert not np.array_equal(np.asarray(model.W2[...]), W2)
        moved[scale] = np.linalg.norm(np.asarray(model.W1[...]) - W1)
    assert moved[0.0] == 0 and 0 < moved[1.0] < moved[10.0]
    # the automatic rate is 1 / lambda_max of the scaled Gauss-Newton matrix: lower when a
    # layer steps faster
    rates = [train.train_full_batch(TwoLayer(64, 100, k=2, rngs=nnx.Rngs(0)), X, Y,
                                    max_steps=1, progress=False, lr_scale={"W1": s}).lr
             for s in (1.0, 100.0)]
    assert rates[1] < rates[0]
    with pytest.raises(KeyError, match="no parameter of the model; available: W1, W2"):
        train.train_full_batch(model, X, Y, lr_scale={"W3": 1.0}, progress=False)
    with pytest.raises(ValueError, match=r"lr_scale\['W1'\] must be >= 0"):
        train.train_full_batch(model, X, Y, lr_scale={"W1": -1.0}, progress=False)


# ----------------------------------------------------------------------------- readout problems

def _finite_difference_check(model, name, X, eps=0.5):
    """Outputs are linear in the readout: (f(R + eps E) - f(R)) / eps = F vec(E)."""
    variable = getattr(model, name)
    R = variable[...]
    problem = problems.readout_problem(model, name, R - 1.0, n=X.shape[0])
    F = np.asarray(problem.feature_matrix(X), np.float64)
    assert F.shape == (X.shape[0] * (model(X).shape[1]), R.size)
    E = jax.random.normal(jax.random.key(3), R.shape, F32)
    base = np.asarray(model(X), np.float64)
    variable[...] = R + eps * E
    moved = np.asarray(model(X), np.float64)
    variable[...] = R
    fd = ((moved - base) / eps).reshape(-1)
    np.testing.assert_allclose(F @ np.asarray(E, np.float64).reshape(-1), fd,
                               rtol=1e-3, atol=1e-3 * np.abs(fd).max())
    return problem, F


def test_readout_features_match_finite_differences(digits):
    X, _ = digits
    two = TwoLayer(64, 300, k=3, rngs=nnx.Rngs(1))
    problem, F = _finite_difference_check(two, "W2", X)
    # rows e_j (x) act(W1 x), row i*k + j for input i and output j
    H = np.asarray(two.hidden(X))
    np.testing.assert_allclose(F.reshape(4, 3, 3, 300)[:, 1, 1], H, rtol=1e-6)
    assert np.all(F.reshape(4, 3, 3, 300)[:, 1, [0, 2]] == 0)
    assert problem.theta.shape == (900,) and np.allclose(problem.theta, 1.0)
    assert problem.radius == pytest.approx(8.0) and problem.input_shape == (64,)

    net = small_resnet(seed=1)
    _, F = _finite_difference_check(net, "head", X)
    np.testing.assert_allclose(F, np.asarray(net.penultimate(X)), rtol=1e-5, atol=1e-6)


def test_random_features_through_readout_problem():
    k_model, k_x = jax.random.split(jax.random.key(0))
    model = models.RandomFeatures(20, 300, "relu", rngs=nnx.Rngs(params=k_model))
    X = jax.random.normal(k_x, (5, 20), F32)
    train.fit_min_norm(model, X, jnp.arange(5.0, dtype=F32))
    rf = problems.random_features_problem(model, 5, relu_surrogate_slope=0)
    generic = problems.readout_problem(model, "theta", jnp.zeros(300), 5)
    np.testing.assert_allclose(generic.feature_matrix(X), rf.feature_matrix(X), rtol=1e-6)
    np.testing.assert_array_equal(generic.theta, rf.theta)
    assert (generic.n, generic.input_shape, generic.radius) == (rf.n, rf.input_shape, rf.radius)
    assert float(loss.projection_loss(generic, X)) < 1e-10


def test_fits_use_float64_features_of_float32_weights():
    """The readout is fitted to ``act(V x)`` computed in float64 (float32 ``V`` and ``x`` are
    exact there), not to float32 features, whatever JAX's 64-bit setting; stored and
    streamed ``V`` alike. The reported train MSE is the stored ``theta``'s on those features."""
    k_model, k_x = jax.random.split(jax.random.key(1))
    X = jax.random.normal(k_x, (5, 20), F32)
    stored = models.RandomFeatures(20, 300, "relu", rngs=nnx.Rngs(params=k_model))
    streamed = models.RandomFeatures(20, 300, "relu", rngs=nnx.Rngs(params=k_model), chunk=64)
    exact = np.maximum(np.asarray(X, np.float64) @ np.asarray(stored.V[...], np.float64).T, 0)
    for model in (stored, streamed):
        with jax.enable_x64(False):
            y, Phi, _ = train._training_features(model, X, jnp.arange(5.0, dtype=F32))
        rounded = np.asarray(model.features(X), np.float64)
        assert Phi.dtype == np.float64 and 0 < np.abs(Phi - rounded).max() < 1e-5
    # products of float32 numbers are exact in float64; the sums over d round alike up to
    # their order (XLA's and numpy's differ by an ulp on some CPUs), far below float32's 1e-7
    np.testing.assert_allclose(train._training_features(stored, X, y)[1], exact, rtol=1e-14,
                               atol=1e-15)
    report = train.fit_min_norm(stored, X, y)
    coef = np.linalg.lstsq(exact @ exact.T, y, rcond=None)[0]
    np.testing.assert_allclose(stored.theta[...], exact.T @ coef, rtol=1e-5, atol=1e-9)
    stored_mse = np.mean((exact @ np.asarray(stored.theta[...], np.float64) - y) ** 2)
    assert report.train_mse == pytest.approx(stored_mse, rel=1e-9)  # judged on the same Phi


def test_readout_problem_validation(trained_two_layer):
    model, report = trained_two_layer
    with pytest.raises(ValueError, match=r"no variable 'W3'; available: W1 \(2000, 64\), W2"):
        problems.readout_problem(model, "W3", report.initial_readout, 4)
    with pytest.raises(ValueError, match=r"shape of 'W2', \(2, 2000\)"):
        problems.readout_problem(model, "W2", report.initial_readout.T, 4)
    with pytest.raises(ValueError, match="train the model"):
        problems.readout_problem(model, "W2", model.W2[...], 4)
    with pytest.raises(ValueError, match="n must be"):
        problems.readout_problem(model, "W2", report.initial_readout, 0)
    with pytest.raises(TypeError, match="Flax NNX module"):
        problems.readout_problem(object(), "W2", report.initial_readout, 4)


def test_theta_nearly_in_training_span(digits, trained_two_layer):
    """W2's gradient-descent update lies in the span of e_j (x) act(W1_t x_i) at the W1_t of
    every step; W1 moves a little, so at the trained W1 theta is only nearly in the span of
    the training features. Measured projection loss at the truth: ~1e-5 for width 2000,
    ~6e-4 for width 500 (W1 moves ~0.05% and ~0.3%)."""
    X, Y = digits
    model, report = trained_two_layer
    wide = float(loss.projection_loss(problems.readout_problem(
        model, "W2", report.initial_readout, 4), X))
    narrow_model = TwoLayer(64, 500, k=2, rngs=nnx.Rngs(0))
    narrow_report = train.train_full_batch(narrow_model, X, Y, max_steps=5000, tol=1e-8,
                                           progress=False)
    narrow = float(loss.projection_loss(problems.readout_problem(
        narrow_model, "W2", narrow_report.initial_readout, 4), X))
    assert wide < 1e-4
    assert wide < narrow < 1e-2


# ----------------------------------------------------------------------------- end to end

def test_two_layer_reconstruction_end_to_end(digits, trained_two_layer):
    """p = width*k = 4000 >> d*n = 256: the 4 digits are recovered from vec(W2 - W2_init).
    The projection loss cannot reach 0 (W1 moved, see above), so the solver stops at 2e-5,
    about twice the loss at the truth; matched errors measured: 0.002-0.012 (3 seeds)."""
    X, _ = digits
    model, report = trained_two_layer
    problem = problems.readout_problem(model, "W2", report.initial_readout, 4)
    rec = solver.solve(problem, solver.preset("default", max_steps=3000, tol=2e-5),
                       jax.random.key(0), progress=False)
    assert rec.converged, rec.loss
    errors = metrics.per_sample_errors(rec.X, X)
    assert metrics.recovered_fraction(rec.X, X, threshold=0.05) == 1.0, errors
    assert errors.mean() < 0.03


def test_feature_map_shape_is_the_one_stem_check():
    assert networks.feature_map_shape((32, 32, 3), 28, 1) == (7, 7)  # the paper's maps
    assert networks.feature_map_shape((8, 6, 1), 6, 1) == (5, 3)
    assert small_resnet().feature_map_shape == networks.feature_map_shape((8, 8, 1), 6, 1)
    with pytest.raises(ValueError, match="stem_kernel=11 .* at most 10"):
        networks.feature_map_shape((8, 8, 1), 11, 1)
    with pytest.raises(TypeError, match="stem_kernel must be an integer"):
        networks.feature_map_shape((8, 8, 1), 2.5, 1)
    with pytest.raises(ValueError, match="image_shape"):
        networks.feature_map_shape((8, 8), 3, 1)
