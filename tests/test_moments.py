"""The method-of-moments first guess of RF inputs and the solver's informed start."""

import jax
import numpy as np
import pytest
from flax import nnx

from conftest import make_rf
from recon import moments, problems, solver as solvers
from recon.metrics import per_sample_errors
from recon.models import RandomFeatures, activation


def test_hermite_coefficients_of_relu_and_tanh():
    c0, c1, c2, energy = moments.hermite_coefficients(activation("relu"))
    # relu: c0 = c2 = 1/sqrt(2 pi), c1 = 1/2, E[relu(z)^2] = 1/2 (quadrature across the kink)
    assert c0 == pytest.approx(1 / np.sqrt(2 * np.pi), rel=1e-2)
    assert c1 == pytest.approx(0.5, rel=1e-6)
    assert c2 == pytest.approx(1 / np.sqrt(2 * np.pi), rel=1e-2)
    assert energy == pytest.approx(0.5, rel=1e-6)
    assert abs(moments.hermite_coefficients(activation("tanh"))[2]) < 1e-12  # tanh is odd


@pytest.mark.parametrize("seed", range(4))
def test_the_guess_points_at_every_input_with_its_sign(seed):
    n, d = 3, 40
    ds, _, _, problem, _ = make_rf(n=n, d=d, p=8000, seed=seed)
    guess = np.asarray(problem.guess(problem.state, problem.theta, n))
    assert guess.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(guess, axis=1), np.sqrt(d), rtol=1e-5)
    cosines = np.asarray(ds.X) @ guess.T / d
    # signed: a guess with the wrong sign would have cosine near -1; random ones near 0
    assert cosines.max(axis=1).min() > 0.8


def test_padding_leaves_the_guess_unchanged():
    _, _, _, problem, _ = make_rf(n=3, d=20, p=3000)
    padded = problems.pad_features(problem, 4096)
    np.testing.assert_allclose(padded.guess(padded.state, padded.theta, 3),
                               problem.guess(problem.state, problem.theta, 3), atol=1e-4)


def test_no_guess_where_the_moments_say_nothing():
    _, _, _, tanh, _ = make_rf(n=3, d=20, p=3000, activation="tanh")
    assert tanh.guess is None  # c_2 = 0
    assert not moments.guesses_anything(activation("relu"), 10**8, 20)  # too much work
    _, model, _, problem, _ = make_rf(n=3, d=20, p=3000)
    streamed = RandomFeatures(20, 3000, rngs=nnx.Rngs(0), chunk=1000)
    streamed.theta[...] = model.theta[...]
    assert problems.random_features_problem(streamed, 3).guess is None
    wide = problems.random_features_problem(model, 21)  # n > d: no informed start
    assert solvers.first_guesses(problems.stack_problems([wide]),
                                 solvers.preset("default", informed_start=True)) is None


def test_mismatched_shapes_are_named():
    _, model, _, _, _ = make_rf(n=3, d=20, p=3000)
    relu = moments.hermite_coefficients(activation("relu"))
    with pytest.raises(ValueError, match=r"V must be p x d and the vector of length p, got "
                                         r"shapes \(3000, 20\) and \(2999,\)"):
        moments.moment_guess(model.V[...], model.theta[...][:-1], 3, 1.0, relu)
    with pytest.raises(ValueError, match="k must be between 1 and d = 20 guesses, got 21"):
        moments.moment_guess(model.V[...], model.theta[...], 21, 1.0, relu)


def test_informed_start_begins_at_the_guess_and_recovers():
    ds, _, _, problem, key = make_rf(n=4, d=20, p=4000)
    solver = solvers.preset("default", informed_start=True, max_steps=4000)
    batch = problems.stack_problems([problem])
    guesses = solvers.first_guesses(batch, solver)
    assert guesses.shape == (1, 4, 20)
    state = solvers.initial_state(problem, solver, 1, 0, jax.numpy.stack([key]), guesses)
    np.testing.assert_array_equal(state.X[0, 0], guesses[0])
    assert solvers.first_guesses(batch, solvers.preset("default")) is None  # off by default
    result = solvers.solve(problem, solver, key, progress=False)
    assert result.stop_reason == "tol"
    assert per_sample_errors(result.X, ds.X).max() < 1e-3


def test_informed_start_must_be_a_flag():
    with pytest.raises(TypeError, match="informed_start must be true or false, got"):
        solvers.preset("default", informed_start="yes")
