"""The projection loss, the solver and its presets on random-features problems."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import make_rf
from recon import metrics, models, solver as solvers
from recon.data import project_to_sphere
from recon.problems import ReconstructionProblem


def test_loss_is_zero_at_the_data_and_positive_elsewhere():
    ds, _, _, problem, key = make_rf(n=6, d=10, p=600)
    assert float(solvers.projection_loss(problem, ds.X)) < 1e-9
    others = project_to_sphere(jax.random.normal(key, ds.X.shape), np.sqrt(10))
    assert float(solvers.projection_loss(problem, others)) > 1e-2
    shuffled = ds.X[::-1]
    assert float(solvers.projection_loss(problem, shuffled)) < 1e-9


@pytest.mark.parametrize("activation", ["tanh", "softplus", "relu"])
def test_gradient_matches_finite_differences(activation):
    ds, _, _, problem, key = make_rf(n=4, d=6, p=200, activation=activation,
                                     dtype=jnp.float64, slope=0.0)
    X = project_to_sphere(ds.X + 0.3 * jax.random.normal(key, ds.X.shape), np.sqrt(6))
    loss = lambda Z: solvers.projection_loss(problem, Z, ridge=0.0)  # noqa: E731
    grad = jax.grad(loss)(X)
    direction = jax.random.normal(jax.random.key(7), X.shape, jnp.float64)
    eps = 1e-6
    fd = (loss(X + eps * direction) - loss(X - eps * direction)) / (2 * eps)
    assert float(jnp.sum(grad * direction)) == pytest.approx(float(fd), rel=1e-5, abs=1e-10)


def test_loss_stays_finite_when_candidates_coincide():
    ds, _, _, problem, _ = make_rf(n=5, d=8, p=400)
    X = ds.X.at[1].set(ds.X[0])
    value, grad = jax.value_and_grad(lambda Z: solvers.projection_loss(problem, Z))(X)
    assert np.isfinite(float(value)) and float(value) > 0
    assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_solver_recovers_every_sample(seed):
    n, d = 8, 20
    ds, _, fit, problem, key = make_rf(n, d, 10 * d * n, seed=seed)
    assert fit.train_mse < 1e-8
    result = solvers.solve(problem, solvers.preset("default"), key, truth=ds.X, progress=False)
    assert result.converged
    errors = metrics.per_sample_errors(result.X, ds.X)
    assert errors.max() < 1e-2, errors
    assert result.history.error[-1] == pytest.approx(errors.mean(), rel=1e-6)


def test_reference_preset_is_the_authors_settings():
    ref = solvers.preset("reference")
    assert ref.tol == 1e-7 and ref.max_steps == 1_000_000 and ref.restarts == 1
    assert not ref.tangent_gradients and ref.reseed_patience == 0
    X = jnp.ones((2, 3))
    G = jnp.full((2, 3), 0.5)
    state = ref.optimizer.init(X)
    u1, state = ref.optimizer.update(G, state, X)
    u2, _ = ref.optimizer.update(G, state, X)
    np.testing.assert_allclose(u1, -20 * G)  # SGD, lr 20
    np.testing.assert_allclose(u2, -20 * (0.9 * G + G))  # heavy-ball momentum 0.9


def test_same_seed_gives_same_numbers():
    def run():
        ds, _, fit, problem, key = make_rf(n=4, d=8, p=400, seed=3)
        r = solvers.solve(problem, solvers.preset("default", max_steps=600), key, progress=False)
        return fit.train_mse, r.loss, r.iterations, np.asarray(r.X)

    a, b = run(), run()
    assert a[:3] == b[:3]
    np.testing.assert_array_equal(a[3], b[3])


def test_solver_reports_nan_instead_of_returning_it():
    ds, _, _, problem, key = make_rf(n=3, d=5, p=100)
    bad = ReconstructionProblem(features=lambda s, X: jnp.log(X @ s["V"].T), state=problem.state,
                                theta=problem.theta, n=3, input_shape=(5,), radius=np.sqrt(5))
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        solvers.solve(bad, solvers.preset("default", max_steps=200), key, progress=False)


def test_bad_input_is_refused_before_computing():
    with pytest.raises(ValueError, match="p must be an integer >= 1, got 0"):
        models.RandomFeatures(5, 0, rngs=__import__("flax").nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown activation 'sigmoid'.*relu"):
        models.activation("sigmoid")
    with pytest.raises(ValueError, match="unknown solver preset 'adam'"):
        solvers.preset("adam")
    with pytest.raises(TypeError, match="optax"):
        solvers.Solver(optimizer="adam")
    with pytest.raises(ValueError, match="reseed_patience"):
        solvers.Solver(optax.adam(0.1), chunk=100, reseed_patience=150)
    ds, _, _, problem, key = make_rf(n=3, d=5, p=100)
    with pytest.raises(ValueError, match="truth must have shape"):
        solvers.solve(problem, solvers.preset("default"), key, truth=ds.X[:2])


def test_streamed_random_features_match_their_blocks_and_reconstruct():
    from flax import nnx

    from recon import problems, train
    from recon.data import synthetic_regression

    ds = synthetic_regression(jax.random.key(0), 4, 10)
    model = models.RandomFeatures(10, 1000, "relu", rngs=nnx.Rngs(params=1), chunk=96)
    F = model.features(ds.X)
    assert F.shape == (4, 1000)
    key = jax.random.wrap_key_data(model.V_key[...])
    V1 = jax.random.normal(jax.random.fold_in(key, 1), (96, 10), jnp.float32) / np.sqrt(10)
    np.testing.assert_allclose(F[:, 96:192], jax.nn.relu(ds.X @ V1.T), rtol=1e-5, atol=1e-6)
    train.fit_min_norm(model, ds.X, ds.y)
    problem = problems.random_features_problem(model, 4)
    assert float(solvers.projection_loss(problem, ds.X)) < 1e-9
    result = solvers.solve(problem, solvers.preset("default"), jax.random.key(2), progress=False)
    assert metrics.per_sample_errors(result.X, ds.X).max() < 1e-2


def test_auto_restarts_shrink_with_problem_size():
    _, _, _, small, _ = make_rf(n=2, d=5, p=40)
    _, _, _, large, _ = make_rf(n=8, d=20, p=1600)
    auto = solvers.preset("default")
    assert auto.restarts == 0
    assert solvers.resolve_restarts(auto, small) == auto.max_auto_restarts
    assert solvers.resolve_restarts(auto, large) == 4  # 2e6 // (8 * 20 * 1600) = 7 -> 4
    assert solvers.resolve_restarts(solvers.preset("default", restarts=3), small) == 3


def test_reseed_replaces_a_duplicated_candidate_by_the_missing_sample():
    ds, _, _, problem, key = make_rf(n=4, d=8, p=640, seed=1)
    X = ds.X.at[3].set(ds.X[0])[None]  # sample 3 missing, sample 0 twice
    reseed = solvers._make_reseed(problem, solvers.preset("default"))
    flags = jnp.ones((1,), bool)
    found = np.asarray(reseed(X, jax.random.split(key, 1), flags, jnp.zeros(1, jnp.int32),
                              problem.state, problem.theta))[0]
    errors = metrics.per_sample_errors(found, ds.X)
    assert errors[:3].max() < 1e-6  # the distinct candidates are kept
    # the duplicate moved to a start near the missing sample, from which the solver goes on
    before = float(solvers.projection_loss(problem, X[0]))
    assert float(solvers.projection_loss(problem, found)) < 0.25 * before
    untouched = reseed(X, jax.random.split(key, 1), ~flags, jnp.zeros(1, jnp.int32),
                       problem.state, problem.theta)
    np.testing.assert_array_equal(untouched, X)
