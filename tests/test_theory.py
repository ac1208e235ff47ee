"""Tests of recon.theory: the numerical theorem checks, at tiny sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recon import theory
from recon.loss import projection_residual
from recon.models import RandomFeatures, activation
from recon.problems import (ReconstructionProblem, random_features_problem,
                            setup_synthetic_rf)
from recon.sphere import project_to_sphere
from recon.train import fit_min_norm

N, D = 3, 5  # d n = 15, (d - 1) n = 12


@pytest.fixture(scope="module")
def tanh_small():
    return theory.trained_rf("tanh", N, D, 10, seed=0)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_restricted_jacobian_matches_finite_difference(act):
    model, X = theory.trained_rf(act, N, D, 40, seed=1)
    J, B = theory.restricted_jacobian(model, X)
    assert J.shape == (40, (D - 1) * N) and B.shape == (N, D, D - 1)
    np.testing.assert_allclose(np.einsum("idk,id->ik", B, X), 0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("idk,idl->ikl", B, B),
                               np.broadcast_to(np.eye(D - 1), (N, D - 1, D - 1)), atol=1e-12)
    u = jax.random.normal(jax.random.key(0), (N, D - 1), jnp.float64)
    direction = jnp.einsum("idk,ik->id", B, u)
    act_fn, V, theta = activation(act), model.V[...], model.theta[...]

    def residual(eps):
        X_eps = project_to_sphere(X + eps * direction, np.sqrt(D))
        return projection_residual(act_fn(X_eps @ V.T), theta, 0.0)

    eps = 1e-6
    fd = (residual(eps) - residual(-eps)) / (2 * eps)
    np.testing.assert_allclose(J @ u.reshape(-1), fd, rtol=1e-5, atol=1e-8 * np.abs(fd).max())


@pytest.mark.parametrize("act", ["relu", "tanh", "relu+tanh", "softplus"])
def test_rank_bounds(act):
    for p in (10, 60):
        model, X = theory.trained_rf(act, N, D, p, seed=2)
        rank, sigma = theory.local_rank(model, X)
        assert rank <= min(p - N, (D - 1) * N)
        assert np.all(np.diff(sigma) <= 0)


@pytest.mark.parametrize("act,n,d", [("tanh", 3, 5), ("tanh", 4, 6),
                                     ("softplus", 3, 5), ("relu+tanh", 4, 6)])
def test_smooth_rank_jumps_at_dn(act, n, d):
    # Verified for seeds 0-2 at these sizes and at (5, 10), (8, 5): rank = p - n below d n,
    # full (d - 1) n from p = d n on.
    scan = theory.rank_scan(act, n, d, [d * n - 1, d * n], seed=0)
    assert scan.full_rank == (d - 1) * n
    assert scan.ranks.tolist() == [d * n - 1 - n, (d - 1) * n] == scan.bounds.tolist()
    assert scan.jump == d * n
    assert scan.sigma_min[0] <= scan.rtol < scan.sigma_min[1]


@pytest.mark.parametrize("n,d", [(3, 5), (8, 5)])
def test_relu_rank_jump(n, d):
    # ReLU: rank = rank(M) - n with M = [D_1 V, ..., D_n V] (D_i = diag(1[V x_i > 0])), so the
    # jump needs p >= d n and rich enough activation patterns; seed 0 jumps exactly at d n
    # at both sizes (other seeds: a few units later, see the report).
    scan = theory.rank_scan("relu", n, d, [d * n - 1, d * n], seed=0)
    assert scan.ranks[0] < (d - 1) * n
    assert scan.jump == d * n
    for p in (d * n - 1, d * n):
        model, X = theory.trained_rf("relu", n, d, p, seed=0)
        V, X = np.asarray(model.V[...]), np.asarray(X)
        M = np.concatenate([(X[i] @ V.T > 0)[:, None] * V for i in range(n)], axis=1)
        assert theory.local_rank(model, X)[0] == np.linalg.matrix_rank(M) - n


@pytest.mark.parametrize("act,n,d,seed", [("relu", 3, 5, 0), ("tanh", 3, 5, 1),
                                          ("relu", 3, 6, 0)])
def test_rank_scan_agrees_with_local_rank(act, n, d, seed):
    # One Jacobian: the scan's masked, vmapped models of the first p features (one readout
    # each) give local_rank's ranks on the models trained_rf builds for each p.
    ps = [d * n - 2, d * n - 1, d * n, d * n + 1, 2 * d * n]
    scan = theory.rank_scan(act, n, d, ps, seed=seed)
    assert scan.p_values.tolist() == ps
    for p, rank in zip(scan.p_values, scan.ranks):
        assert rank == theory.local_rank(*theory.trained_rf(act, n, d, int(p), seed))[0], p
    assert np.all(scan.ranks <= scan.bounds)
    assert scan.full_rank == (d - 1) * n
    assert scan.bounds.tolist() == [min(p - n, (d - 1) * n) for p in ps]


def test_trained_rf_is_the_synthetic_setup():
    model, X = theory.trained_rf("tanh", N, D, 12, seed=3)
    ds, other, fit, _ = setup_synthetic_rf(N, D, 12, 3, "tanh", dtype=jnp.float64)
    np.testing.assert_array_equal(X, ds.X)
    np.testing.assert_array_equal(model.V[...], other.V[...])
    np.testing.assert_array_equal(model.theta[...], other.theta[...])
    assert X.dtype == jnp.float64 and fit.train_mse < 1e-20


def test_span_residual(tanh_small):
    model, X = theory.trained_rf("relu", N, D, 200, seed=0)
    F = model.features(X)
    np.testing.assert_allclose(theory.span_residual(F, F), 0, atol=1e-10)
    assert theory.span_residual(F, F[0]).shape == ()
    assert theory.span_residual(F, F[None]).shape == (1,)
    others = project_to_sphere(jax.random.normal(jax.random.key(1), (20, D)), np.sqrt(D))
    assert np.all(theory.span_residual(F, model.features(others)) > 1e-2)


def test_great_circle():
    x0, x1 = jnp.array([3.0, 0.0, 0.0, 0.0]), jnp.array([1.0, 1.0, 0.0, 0.0])
    pts = theory.great_circle(x0, x1, 5)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 2.0)
    np.testing.assert_allclose(pts[0], [2, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pts[2], [0, 2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pts[-1], [-2, 0, 0, 0], atol=1e-12)


def test_residual_along_great_circles():
    model, X = theory.trained_rf("relu", N, D, 200, seed=0)
    res = theory.residual_along_great_circles(model, X, jax.random.key(0), num_dirs=4,
                                              num_points=17)
    assert res.residuals.shape == (N, 4, 17) and res.angles[-1] == pytest.approx(np.pi)
    assert np.all(res.residuals[..., 0] < 1e-10)
    assert np.all(res.residuals[..., 1:] > 1e-2)  # r vanishes only at the training point
    one = theory.residual_along_great_circles(random_features_problem(model, N), X,
                                              jax.random.key(0), num_dirs=2, num_points=9,
                                              start=1)
    assert one.residuals.shape == (1, 2, 9) and one.starts.tolist() == [1]
    # inputs of any shape (here 5 x 1) through a generic problem
    V = model.V[...]
    shaped = ReconstructionProblem(lambda s, Z: jax.nn.relu(Z.reshape(len(Z), -1) @ s.T), V,
                                   model.theta[...], N, (D, 1), np.sqrt(D))
    again = theory.residual_along_great_circles(shaped, X[:, :, None], jax.random.key(0),
                                                num_dirs=2, num_points=9, start=1)
    np.testing.assert_allclose(again.residuals, one.residuals, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_one_point_solver_lands_on_training_points(act):
    # p = 300 >> d n = 15: every run landed for seeds 0-3 (relu, tanh, relu+tanh, softplus).
    model, X = theory.trained_rf(act, N, D, 300, seed=0)
    landing = theory.landing_share(model, X, jax.random.key(3), num_starts=16, steps=1500)
    assert landing.share >= 0.9
    landed = landing.errors < landing.threshold
    assert np.all(landing.residuals[landed] < 1e-2)


@pytest.mark.parametrize("act,seed", [("relu", 0), ("tanh", 1)])
def test_null_direction_dataset(act, seed):
    # Below d n: a different dataset with L ~ 0; above: back to the truth. Verified on seeds
    # 0-7 for relu, tanh and relu+tanh (losses <= 1e-18 at step 0.1).
    below = theory.null_direction_dataset(*theory.trained_rf(act, N, D, 10, seed), step=0.1)
    assert below.rank < below.full_rank
    assert below.loss < 1e-12
    assert below.distance > 0.5 * below.start_distance > 0.01
    above = theory.null_direction_dataset(*theory.trained_rf(act, N, D, 60, seed), step=0.1)
    assert above.rank == above.full_rank
    assert above.loss < 1e-12 and above.start_distance > 0.01
    assert above.distance < 1e-6


def test_polish_keeps_the_truth():
    model, X = theory.trained_rf("tanh", N, D, 30, seed=0)
    # Adam moves by ~lr even at a minimum (its normalised steps); the cosine decay of the
    # learning rate brings it back.
    out = theory.polish(random_features_problem(model, N), X, steps=1000)
    assert out.loss < 1e-14
    np.testing.assert_allclose(out.X, X, atol=1e-5)


def test_bad_inputs(tanh_small):
    model, X = tanh_small
    F = model.features(X)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="phi_x"):
        theory.span_residual(F, jnp.ones((2, 7)))
    with pytest.raises(ValueError, match="F_train"):
        theory.span_residual(F[0], F)
    with pytest.raises(ValueError, match="parallel"):
        theory.great_circle(X[0], 2 * X[0])
    with pytest.raises(ValueError, match="num"):
        theory.great_circle(X[0], X[1], 1)
    with pytest.raises(ValueError, match="X_train"):
        theory.residual_along_great_circles(model, X[:, :3], key)
    with pytest.raises(ValueError, match="start"):
        theory.residual_along_great_circles(model, X, key, start=N)
    with pytest.raises(TypeError, match="key"):
        theory.landing_share(model, X, 0)
    with pytest.raises(TypeError, match="RandomFeatures"):
        theory.landing_share("model", X, key)
    with pytest.raises(ValueError, match="threshold"):
        theory.landing_share(model, X, key, threshold=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        theory.one_point_solve(model, X.at[0, 0].set(jnp.nan), key)
    with pytest.raises(TypeError, match="RandomFeatures"):
        theory.local_rank(random_features_problem(model, N), X)
    with pytest.raises(ValueError, match="span"):
        theory.local_rank(model, project_to_sphere(X + 0.1, np.sqrt(D)))
    with pytest.raises(ValueError, match="theta"):
        theory.local_rank(model, X, theta=jnp.ones(3))
    with pytest.raises(ValueError, match="sphere"):
        theory.local_rank(model, 2 * X)
    with pytest.raises(ValueError, match="rtol"):
        theory.local_rank(model, X, rtol=0.0)
    f32 = RandomFeatures(D, 10, "tanh", rngs=nnx.Rngs(0))  # float32 readout: not in span
    fit_min_norm(f32, X.astype(jnp.float32), jnp.arange(N, dtype=jnp.float32))
    with pytest.raises(ValueError, match="float64"):
        theory.local_rank(f32, X)
    with pytest.raises(ValueError, match="activation"):
        theory.rank_scan("gelu", 3, 5, [15])
    with pytest.raises(ValueError, match="p must be an integer >= 4"):
        theory.rank_scan("tanh", 3, 5, [2, 15])
    with pytest.raises(TypeError, match="p_values"):
        theory.rank_scan("tanh", 3, 5, [])
    with pytest.raises(ValueError, match="X0"):
        theory.polish(random_features_problem(model, N), X[:2])
    with pytest.raises(ValueError, match="step"):
        theory.null_direction_dataset(model, X, step=0.0)


def test_theory_runs_in_float64_whatever_the_process_setting():
    with jax.enable_x64(False):
        model, X = theory.trained_rf("tanh", N, D, 12, seed=0)
        rank, _ = theory.local_rank(model, X)
    problem = random_features_problem(model, N)  # (not a theory function)
    with jax.enable_x64(False):
        out = theory.polish(problem, X, steps=1000)
    assert X.dtype == jnp.float64 and model.theta[...].dtype == jnp.float64
    assert rank == 12 - N
    assert out.X.dtype == jnp.float64 and out.loss < 1e-12  # float32 stops near 1e-7
