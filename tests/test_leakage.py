"""recon.leakage (membership scores, pinned problems, subspace measures, onsets) and
recon.defences / the ridge and early-stopped readouts, at small sizes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_rf
from flax import nnx

from recon import defences, leakage, solver, train
from recon.loss import projection_loss
from recon.models import RandomFeatures
from recon.sphere import project_to_sphere


def _sphere(key, m, d):
    return project_to_sphere(jax.random.normal(key, (m, d)), math.sqrt(d))


def test_the_pinned_problem_factors_the_loss():
    ds, _, _, problem, key = make_rf(3, 6, 60)
    x = ds.X[1]
    pinned, factor = leakage.pinned_problem(problem, x)
    assert pinned.n == 2 and 0 < factor < 1
    free = _sphere(key, 2, 6)
    whole = projection_loss(problem, jnp.concatenate([x[None], free]))
    assert float(projection_loss(pinned, free)) * factor == pytest.approx(float(whole), rel=1e-6)
    # with the other training points free, the pinned loss is zero
    assert float(projection_loss(pinned, ds.X[jnp.array([0, 2])])) < 1e-12
    assert factor == pytest.approx(float(leakage.one_point_scores(problem, x)[0]), rel=1e-9)


def test_pinned_losses_tell_members_from_fresh_points_above_dn():
    ds, _, _, problem, key = make_rf(2, 4, 48)
    fresh = _sphere(jax.random.key(7), 2, 4)
    light = solver.preset("default", max_steps=3000, restarts=4, smoothing=None, reseed=None,
                          cloning=None, polish=None)
    losses = leakage.pinned_losses(problem, jnp.concatenate([ds.X, fresh]), light, key)
    assert losses.shape == (4,)
    assert losses[:2].max() < 1e-6 < losses[2:].min()
    assert leakage.membership_auc(losses[:2], losses[2:]) == 1.0


def test_one_point_scores_and_their_checks():
    ds, _, _, problem, _ = make_rf(3, 6, 60)
    scores = leakage.one_point_scores(problem, ds.X)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    _, _, _, single, _ = make_rf(1, 6, 60)
    one = make_rf(1, 6, 60)[0].X
    assert leakage.one_point_scores(single, one)[0] < 1e-10  # theta is a multiple of phi(x_1)
    with pytest.raises(ValueError, match="queries must be m inputs of shape"):
        leakage.one_point_scores(problem, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        leakage.one_point_scores(problem, np.full((1, 6), np.nan))
    with pytest.raises(ValueError, match="n >= 2"):
        leakage.pinned_problem(single, one[0])


def test_membership_auc():
    assert leakage.membership_auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert leakage.membership_auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert leakage.membership_auc([0.5], [0.5]) == 0.5
    with pytest.raises(ValueError, match="both kinds"):
        leakage.membership_auc([], [0.1])


def test_best_match_cosines_and_principal_angles():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 10))
    assert np.allclose(leakage.best_match_cosines(-X[::-1], X), 1.0)
    assert leakage.best_match_cosines(-X, X, sign_aware=False).max() < 1
    mixed = rng.normal(size=(3, 3)) @ X  # same span, no row recovered
    assert np.allclose(leakage.principal_angles(mixed, X), 0, atol=1e-7)
    assert leakage.best_match_cosines(mixed, X).min() < 0.999
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert np.allclose(leakage.principal_angles(Q[:, :2].T, Q[:, 2:5].T), np.pi / 2)
    with pytest.raises(ValueError, match="rows of one length"):
        leakage.best_match_cosines(X[:, :4], X)


def test_onset():
    ratios = [0.1, 1.0, 10.0]
    assert leakage.onset(ratios, [0.0, 0.5, 1.0], 0.5) == pytest.approx(1.0)
    assert leakage.onset(ratios, [0.0, 0.0, 1.0], 0.5) == pytest.approx(math.sqrt(10))
    assert leakage.onset(ratios, [0.0, 0.2, 0.4], 0.5) is None
    assert leakage.onset(ratios, [0.9, 1.0, 1.0], 0.5) == 0.1
    assert leakage.onset(ratios, [1.0, 0.2, 0.0], 0.5, rising=False) == pytest.approx(
        10 ** (-1 + 0.5 / 0.8))
    assert leakage.onset(ratios, [0.0, 0.9, 0.1], 0.5) is None  # falls back below
    with pytest.raises(ValueError, match="increasing"):
        leakage.onset([1.0, 0.5], [0, 1], 0.5)


def _span_share(model, X):
    Phi = np.asarray(model.features(X), np.float64)
    theta = np.asarray(model.theta[...], np.float64)
    coef, *_ = np.linalg.lstsq(Phi.T, theta, rcond=None)
    r = theta - Phi.T @ coef
    return (r @ r) / (theta @ theta)


def test_ridge_and_early_stopped_readouts_stay_in_the_span():
    ds, model, fit, _, _ = make_rf(4, 6, 80, dtype=jnp.float64)
    theta_min = np.asarray(model.theta[...])
    train.fit_ridge(model, ds.X, ds.y, 1e-2)
    ridge = np.asarray(model.theta[...])
    assert np.linalg.norm(ridge) < np.linalg.norm(theta_min)
    assert _span_share(model, ds.X) < 1e-20
    report = train.fit_early_stopped(model, ds.X, ds.y, steps=10**9)
    assert np.allclose(model.theta[...], theta_min, rtol=1e-6, atol=1e-9)
    assert report.train_mse < 1e-10
    train.fit_early_stopped(model, ds.X, ds.y, steps=0)
    assert not np.any(np.asarray(model.theta[...]))
    # three explicit gradient steps from zero
    Phi = np.asarray(model.features(ds.X), np.float64)
    y = np.asarray(ds.y, np.float64)
    lr = 4 / (2 * np.linalg.eigvalsh(Phi @ Phi.T)[-1])
    theta = np.zeros(80)
    for _ in range(3):
        theta -= lr * (2 / 4) * Phi.T @ (Phi @ theta - y)
    train.fit_early_stopped(model, ds.X, ds.y, steps=3)
    assert np.allclose(model.theta[...], theta, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="diverge"):
        train.fit_early_stopped(model, ds.X, ds.y, steps=3, lr=1e6)


def test_defences_transform_a_copy_of_the_readout():
    ds, model, _, _, _ = make_rf(3, 5, 50)
    theta = np.asarray(model.theta[...])
    noisy = defences.gaussian_noise(model, 0.1, jax.random.key(0))
    assert np.array_equal(model.theta[...], theta)  # the original is untouched
    assert 0 < np.std(np.asarray(noisy.theta[...]) - theta) < 0.2
    one_bit = np.asarray(defences.quantize(model, 1).theta[...])
    assert set(np.round(np.abs(one_bit) / np.abs(theta).max(), 5)) == {1.0}
    assert len(np.unique(defences.quantize(model, 3).theta[...])) <= 8
    assert np.allclose(defences.quantize(model, 40).theta[...], theta, atol=1e-6)
    pruned = np.asarray(defences.prune(model, 0.5).theta[...])
    assert (pruned == 0).sum() == 25
    assert np.abs(pruned[pruned != 0]).min() >= np.abs(theta[pruned == 0]).max()
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        defences.prune(model, 1.5)
    with pytest.raises(TypeError, match="bits must be an integer"):
        defences.quantize(model, 2.5)


def test_training_the_first_layer_moves_theta_out_of_the_span():
    from recon import problems
    from recon.loss import projection_residual

    ds, model, _, _, _ = make_rf(3, 5, 60, dtype=jnp.float64)
    shares = {}
    for rate in (0.0, 10.0):
        out = defences.train_first_layer(model, ds.X, ds.y, rate, jax.random.key(1))
        assert out.report.final_loss < 1e-8
        assert (out.first_layer_moved == 0) == (rate == 0)
        seen = problems.random_features_problem(out.model, 3)
        # the attack's problem is the network's readout problem
        network = problems.readout_problem(out.network, "W2", out.report.initial_readout, 3)
        assert np.allclose(seen.feature_matrix(ds.X), network.feature_matrix(ds.X))
        assert np.allclose(seen.theta, network.theta)
        r = projection_residual(seen.feature_matrix(ds.X), seen.theta)
        shares[rate] = float(r @ r / (seen.theta @ seen.theta))
        assert np.allclose(out.network(ds.X)[:, 0], ds.y, atol=1e-4)
    assert shares[0.0] < 1e-12 < 1e-4 < shares[10.0]
    assert np.array_equal(model.V[...], make_rf(3, 5, 60, dtype=jnp.float64)[1].V[...])
    with pytest.raises(ValueError, match="rate must be >= 0"):
        defences.train_first_layer(model, ds.X, ds.y, -1.0, jax.random.key(1))


def test_the_ridge_sensitivity_bounds_a_replaced_sample():
    d, n, p, lam = 5, 4, 60, 0.05
    model = RandomFeatures(d, p, "relu", rngs=nnx.Rngs(params=jax.random.key(1)),
                           dtype=jnp.float64)
    B = defences.feature_norm_bound(model)
    X = _sphere(jax.random.key(2), 50, d)
    assert np.linalg.norm(np.asarray(model.features(X)), axis=1).max() <= B
    y = np.clip(np.asarray(jax.random.normal(jax.random.key(3), (n + 1,))), -1, 1)
    train.fit_ridge(model, X[:n], y[:n], lam)
    first = np.asarray(model.theta[...])
    train.fit_ridge(model, jnp.concatenate([X[:n - 1], X[n:n + 1]]),
                    np.r_[y[:n - 1], y[n]], lam)
    moved = np.linalg.norm(np.asarray(model.theta[...]) - first)
    assert 0 < moved <= defences.ridge_sensitivity(B, 1.0, lam, n)


def test_the_analytic_gaussian_mechanism():
    delta = 1e-5
    eps = [defences.gaussian_epsilon(s, 1.0, delta) for s in (0.5, 1.0, 4.0, 16.0)]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    # tighter than the classic calibration sigma = sqrt(2 log(1.25/delta)) / epsilon
    classic = math.sqrt(2 * math.log(1.25 / delta)) / 0.5
    assert defences.gaussian_epsilon(classic, 1.0, delta) < 0.5
    e = defences.gaussian_epsilon(2.0, 1.0, delta)
    assert defences._gaussian_delta(e, 0.5) == pytest.approx(delta, rel=1e-6)
    assert defences.gaussian_epsilon(0.0, 1.0, delta) == math.inf
    with pytest.raises(ValueError, match=r"delta must lie in \(0, 1\)"):
        defences.gaussian_epsilon(1.0, 1.0, 0.0)


def _made_up_table():
    """A leakage table with known curves (two seeds that agree)."""
    import pandas as pd

    from recon.chapters import leakage as chapter

    settings = chapter.Leakage(n=2, d=5, ratios=[0.1, 0.5, 0.9, 2.0], seeds=[0, 1])
    curves = {"train_error": [0.8, 0.0, 0.0, 0.0], "auc_one_point": [0.6, 0.6, 0.7, 0.5],
              "auc_pinned": [0.5, 0.5, 1.0, 1.0], "landing": [0.0, 0.2, 1.0, 1.0],
              "best_cosine": [0.3, 0.5, 0.9, 1.0], "span_cosine": [0.2, 0.4, 0.9, 1.0],
              "recovered": [0.0, 0.0, 0.0, 1.0], "chance_cosine": [0.3] * 4,
              "chance_span_cosine": [0.2] * 4, "loss": [0.0] * 4}
    rows = [{"ratio": r, "p": p, "seed": s} | {k: v[i] for k, v in curves.items()}
            for i, (r, p) in enumerate(zip(settings.ratios, settings.ps())) for s in (0, 1)]
    return settings, pd.DataFrame(rows)


def test_the_leakage_chapter_reads_its_onsets_and_claims_from_the_table():
    from recon.chapters import leakage as chapter

    settings, table = _made_up_table()
    found = chapter.onsets(chapter.curves(table))
    assert found["auc_pinned"] == pytest.approx(0.5 * (0.9 / 0.5) ** 0.5)
    assert found["recovered"] == pytest.approx(0.9 * (2.0 / 0.9) ** 0.5)
    assert found["auc_one_point"] is None  # ends at chance
    assert found["train_error"] < 0.5
    head = chapter.headline(settings, table)
    assert head["leak_onsets"]["auc_one_point"] is None
    assert head["onset_auc_one_point"] == "beyond the grid"
    assert head["below_ratio"] == 0.9 and head["below_auc_pinned"] == 1.0
    verdicts = {c.name: c.holds for c in chapter.claims(settings, table)}
    assert verdicts == {"labels_before_data": True, "no_exact_recovery_below": True,
                        "membership_leaks_below": True, "pinned_silent_far_below": True,
                        "one_point_weak_but_early": False, "all_leak_above": True}
    table.loc[table["ratio"] == 0.9, "recovered"] = 0.5
    verdicts = {c.name: c.holds for c in chapter.claims(settings, table)}
    assert not verdicts["no_exact_recovery_below"]


@pytest.mark.parametrize("change, message", [
    ({"ratios": [1.5, 2.0]}, "ratios must reach below and above 1"),
    ({"n": 1}, "n must be an integer >= 2"),
    ({"seeds": "0"}, "seeds must be a non-empty list"),
    ({"queries": 0}, "queries must be an integer >= 1"),
    ({"activation": "gelu"}, "unknown activation 'gelu'"),
])
def test_the_leakage_settings_refuse_bad_parameters_by_name(change, message):
    from recon.chapters import leakage as chapter

    with pytest.raises((TypeError, ValueError), match=message):
        chapter.Leakage.from_parameters({"n": 3, "d": 4} | change)


def _made_up_defences():
    import pandas as pd

    from recon.chapters import defences as chapter

    settings = chapter.Defences(n=2, d=3, ratios=[0.5, 4.0], seeds=[0], noise=[0.0, 0.1, 1.0],
                                ridge=[0.0, 1.0], early_stopping=[0, 10], bits=[0, 2],
                                prune=[0.0, 0.5], first_layer=[0.0, 1.0, 10.0])
    recovered = {("noise", 0.1): 0.5, ("noise", 1.0): 0.0, ("pruning", 0.5): 0.0,
                 ("first_layer", 10.0): 0.25}
    rows = [{"defence": k, "strength": s, "ratio": r, "p": 0, "seed": 0,
             "train_error": 0.1 * s, "prediction_change": 0.2 * s, "loss": 0.0,
             "recovered": 0.0 if r < 1 else recovered.get((k, s), 1.0),
             "mean_error": 1e-4 * (1 + s),
             "first_layer_moved": 0.01 * s if k == "first_layer" else float("nan"),
             "auc_one_point": 1.0 - 0.1 * s}
            for k in chapter.DEFENCES for s in settings.strengths(k) for r in settings.ratios]
    return settings, pd.DataFrame(rows)


def test_the_defences_chapter_reads_thresholds_and_costs_from_the_table():
    import pandas as pd

    from recon.chapters import defences as chapter

    settings, table = _made_up_defences()
    found = chapter.thresholds(settings, table)
    assert found == {"noise": 1.0, "ridge": None, "early_stopping": None,
                     "quantisation": None, "pruning": 0.5, "first_layer": 10.0}
    cost = chapter.costs(settings, table, found)
    assert cost["noise"] == {"strength": 1.0, "train_error": 0.1, "prediction_change": 0.2,
                             "membership_auc": 0.9}
    assert cost["ridge"]["strength"] == 1.0  # the strongest, as none crossed
    assert cost["first_layer"] == {"strength": 10.0, "train_error": 1.0,
                                   "prediction_change": 2.0, "first_layer_moved": 0.1,
                                   "membership_auc": 0.0}
    robust = pd.DataFrame({"strength": [0.0, 0.1, 1.0], "mean_error": [0, 1e-3, 1e-2],
                           "bound": [0, 2e-3, 2e-2]})
    privacy = pd.DataFrame({"ridge": [1.0], "epsilon at noise 0.1": [50.0],
                            "epsilon at noise 1": [12.0]})
    verdicts = {c.name: c.holds for c in chapter.claims(settings, table, robust, privacy)}
    assert verdicts == {"undefended_recovered": True, "span_defences_fail": True,
                        "noise_stops_it": True, "error_within_bound": True,
                        "first_layer_stops_it": True, "no_useful_guarantee": True}
    head = chapter.headline(settings, table, robust, privacy)
    assert head["threshold_ridge"] == "none in the grid" and head["threshold_noise"] == "1"
    assert head["smallest_epsilon"] == 12.0 and head["first_layer_moved"] == 0.1
    assert head["membership_pruning"] == 0.95 and head["membership_ridge"] == 0.9
    table.loc[(table["defence"] == "first_layer") & (table["strength"] == 0)
              & (table["ratio"] == 4.0), "recovered"] = 0.5
    verdicts = {c.name: c.holds for c in chapter.claims(settings, table, robust, privacy)}
    assert not verdicts["first_layer_stops_it"]  # the frozen network must be recovered


def test_defended_models_and_their_settings():
    from recon.chapters import defences as chapter

    ds, model, _, _, _ = make_rf(3, 5, 60)
    same = chapter.defended_model(model, ds.X, ds.y, "ridge", 0, jax.random.key(0))
    assert same is model
    ridge = chapter.defended_model(model, ds.X, ds.y, "ridge", 1.0, jax.random.key(0))
    assert _span_share(ridge, ds.X) < 1e-10 and ridge is not model
    stopped = chapter.defended_model(model, ds.X, ds.y, "early_stopping", 5, jax.random.key(0))
    assert np.linalg.norm(stopped.theta[...]) < np.linalg.norm(model.theta[...])
    with pytest.raises(ValueError, match="noise must start with 0"):
        chapter.Defences(noise=[0.1, 0.2])
    with pytest.raises(TypeError, match="bits must be an integer"):
        chapter.Defences(bits=[0, 2.5])
    with pytest.raises(ValueError, match=r"prune shares must lie in \[0, 1\]"):
        chapter.Defences(prune=[0.0, 2.0])


def test_first_layer_cells_cost_against_the_frozen_network():
    from recon import problems
    from recon.chapters import defences as chapter
    from recon.data import sphere_points

    settings = chapter.Defences(n=2, d=3, ratios=[0.5, 4.0], first_layer=[0.0, 10.0])
    setup = problems.setup_synthetic_rf(2, 3, 24, 0)
    X, y = setup.dataset
    test = sphere_points(jax.random.key(5), 20, 3, X.dtype)
    (frozen, (error0, change0), moved0), (trained, (error1, change1), moved1) = \
        chapter._first_layer_cells(settings, setup, X, y, test)
    assert change0 == 0 and moved0 == 0 and 0 < moved1 and 0 < change1
    assert error0 < 1e-6 and error1 < 1e-6  # both networks fit their training set
    assert frozen.p == trained.p == 24


def test_pinned_problems_are_underdetermined_exactly_when_their_problem_is():
    from recon import problems

    ds, _, _, problem, key = make_rf(3, 4, 3)  # p = n: any candidates fit
    pinned, _ = leakage.pinned_problem(problem, ds.X[0])
    assert problems.real_feature_count(pinned) == 2 and problems.feature_rows(pinned) == 2
    with pytest.raises(ValueError, match="allow_underdetermined=True"):
        leakage.pinned_losses(problem, ds.X, solver.preset("default", max_steps=100), key)
    ds, _, _, problem, _ = make_rf(3, 4, 4)
    assert problems.real_feature_count(leakage.pinned_problem(problem, ds.X[0])[0]) == 3
