"""The theorems chapter: the notebook at its smoke profile through papermill, the numbers it
glues, its settings, the scan it relies on, and the verdicts that end its sections (on good
and on bad results)."""

import numpy as np
import pytest

from recon import theory
from recon.book import notebooks
from recon.chapters import theorems
from recon.chapters.theorems import (SMOOTH_ACTIVATIONS, OnePointRun, SymmetryRuns,
                                     TheoremChecks, rank_key, residual_through,
                                     scan_to_full_rank)
from recon.theory import GreatCircleResiduals, Landing, NullDirectionDataset, RankScan

FIGURES = ("theorems-great-circles", "theorems-landing", "theorems-rank",
           "theorems-null-dataset", "theorems-symmetry")


@pytest.fixture(scope="module")
def smoke_run(built_book):
    """The book build ran the notebook at its smoke profile (tests/conftest.py): read it."""
    params = notebooks.load_profiles()["theorems"]["smoke"]
    return params, notebooks.read_glued(notebooks.CHAPTERS / "theorems.ipynb"), notebooks.BUILD


def test_rank_jump_is_glued_per_activation_and_size(smoke_run):
    params, glued, _ = smoke_run
    jumps = glued["rank_jump"]
    assert isinstance(jumps, dict)
    expected = {rank_key(a, n, d) for a in params["rank_activations"]
                for n, d in params["rank_sizes"]}
    assert set(jumps) == expected
    for act in params["rank_activations"]:
        for n, d in params["rank_sizes"]:
            jump = jumps[rank_key(act, n, d)]
            if act in SMOOTH_ACTIVATIONS:
                assert jump == d * n  # exactly at the count
            else:  # ReLU: never before d n, possibly a few units later
                assert jump is None or (isinstance(jump, int) and jump >= d * n)


def test_landing_share_is_glued_by_ratio(smoke_run):
    params, glued, _ = smoke_run
    shares = glued["landing_share"]
    assert isinstance(shares, dict)
    assert [float(k) for k in shares] == params["landing_ratios"]
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in shares.values())
    assert shares[f"{params['landing_ratios'][-1]:g}"] >= 0.9  # well above d n
    assert shares[f"{params['landing_ratios'][0]:g}"] <= 0.1  # below the one-point count
    others = glued["other_zero_share"]
    assert others[f"{params['landing_ratios'][0]:g}"] > 0.5  # other zeros of r exist there


def test_other_checks_and_figures(smoke_run):
    _, glued, tmp_path = smoke_run
    assert glued["null_below_loss"] < 1e-12 and glued["null_below_distance"] > 0.01
    assert glued["null_above_distance"] < 1e-6
    assert glued["flip_loss"]["tanh"] < 1e-12 < glued["flip_loss"]["relu"]
    assert glued["flipped_samples"]["relu"] == 0
    for name in FIGURES:
        for ext in ("png", "pdf", "svg", "json"):
            assert (tmp_path / "figures" / f"{name}.{ext}").stat().st_size > 0, (name, ext)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n": 0}, ValueError, "n must be an integer >= 1, got 0"),
    ({"d": "20"}, TypeError, "d must be an integer"),
    ({"activation": "gelu"}, ValueError, "unknown activation 'gelu'"),
    ({"circle_ratios": [0.5, 0.8]}, ValueError, "one p/(d n) below 1 and one above"),
    ({"landing_ratios": [1.0, 0.5]}, ValueError, "landing_ratios must be increasing"),
    ({"landing_ratios": [0.01, 1.0]}, ValueError, "p = 1 <= n = 5"),
    ({"rank_activations": ["tanh", "tanh"]}, ValueError, "lists an activation twice"),
    ({"rank_sizes": [[3, 10]]}, ValueError, "two or more different"),
    ({"rank_sizes": [3, 10]}, TypeError, "each entry of rank_sizes must be an [n, d] pair"),
    ({"rank_window": 30}, ValueError, "reaches p <= n"),
    ({"rank_rtol": 2.0}, ValueError, "rank_rtol must lie in (0, 1)"),
    ({"null_ratios": [2.0, 4.0]}, ValueError, "[below 1, above 1]"),
    ({"symmetry_ratio": 0.5}, ValueError, "symmetry_ratio must be above 1"),
    ({"threshold": -1.0}, ValueError, "threshold must be > 0"),
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
])
def test_settings_refuse_bad_values(kwargs, error, message):
    with pytest.raises(error) as info:
        TheoremChecks(**kwargs)
    assert message in str(info.value)


def test_settings_defaults_are_valid_and_plain():
    settings = TheoremChecks()
    assert settings.dn == 100 and settings.p(0.15) == 15
    assert settings.count_ratio == pytest.approx(0.24)
    assert settings.rank_sizes == [(3, 10), (6, 10), (5, 20)]
    assert settings.as_dict()["landing_ratios"] == [0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0]


def test_settings_from_the_notebook_parameters():
    namespace = {"n": 3, "d": 8, "landing_ratios": [0.25, 4.0], "rank_sizes": [[2, 5], [3, 5]],
                 "np": np, "theory": theory}
    settings = TheoremChecks.from_parameters(namespace)
    assert (settings.n, settings.d, settings.rank_sizes) == (3, 8, [(2, 5), (3, 5)])
    assert settings.activation == "relu"  # not in the namespace: the default
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        TheoremChecks.from_parameters({"n": 0})


def test_scan_to_full_rank_goes_on_past_the_window():
    scan = scan_to_full_rank("relu", 3, 6, window=1, max_ratio=2.0)  # jumps at 23 > dn + 1
    assert scan.jump is not None and scan.jump > 19
    assert list(scan.p_values) == list(range(17, scan.p_values[-1] + 1))
    assert scan.ranks[list(scan.p_values).index(scan.jump)] == scan.full_rank
    with pytest.raises(ValueError, match="p must be an integer >= 4"):
        theory.rank_scan("tanh", 3, 6, [3, 18])


def test_residual_through_passes_through_both_points():
    model, X = theory.trained_rf("tanh", 3, 5, 100)
    angles, r, target = residual_through(model, X, X[0], X[1], num_points=17)
    assert r[0] < 1e-10 and r[np.flatnonzero(angles == target)[0]] < 1e-10
    assert np.all(r[(angles > 0.1) & (np.abs(angles - target) > 0.1) & (angles < 3.0)] > 1e-3)
    with pytest.raises(ValueError, match="parallel"):
        residual_through(model, X, X[0], 2 * X[0])


# ------------------------------------------------------------- the sections' helpers


def test_one_point_sections_run_on_a_tiny_model():
    settings = TheoremChecks(n=2, d=4, circle_ratios=[0.5, 4.0], num_dirs=2, num_points=9,
                             landing_ratios=[0.5, 4.0], num_starts=4, one_point_steps=50)
    key_circles, key_landing, _ = theorems.run_keys(settings)
    runs = theorems.landing_runs(settings, settings.circle_ratios, key_landing)
    assert list(runs) == [0.5, 4.0] and runs[4.0].model.p == 32
    assert runs[0.5].landing.X.shape == (4, 4)
    circles = theorems.circle_residuals(settings, runs, key_circles)
    assert circles[4.0].residuals.shape == (2, 2, 9)
    through = theorems.circles_through(settings, runs)
    assert len(through) == 2 and all(k.startswith("$p/(dn) = ") for k in through)
    for angles, r, zeros in through.values():
        assert r[0] < 1e-10 and zeros[0] == 0 and angles.shape == r.shape
    shares, others = theorems.landing_shares(settings, runs)
    assert list(shares) == list(others) == ["0.5", "4"]


# ------------------------------------------------------ verdicts and headlines, on fakes

SMALL = TheoremChecks(n=3, d=8, circle_ratios=[0.25, 4.0], landing_ratios=[0.25, 1.0, 4.0],
                      num_starts=4)


def _circles(start=0.0, inner=0.5, dip=None):
    r = np.full((3, 2, 5), inner)
    r[..., 0] = start
    if dip is not None:
        r[0, 0, 2] = dip  # one circle only: the median stays up
    return GreatCircleResiduals(np.linspace(0, np.pi, 5), np.arange(3), r)


def _run(share=1.0, spurious=()):
    landing = Landing(share, np.zeros(4), np.zeros(4), np.zeros((4, 8)), 1e-2)
    return OnePointRun(None, None, landing, np.asarray(spurious, int))


def test_circle_verdict_and_headline():
    circles = {0.25: _circles(), 4.0: _circles()}
    runs = {0.25: _run(spurious=[0, 1]), 4.0: _run()}
    theorems.circle_verdict(SMALL, circles, runs)
    assert theorems.circle_headline(SMALL, runs) == {
        "circle_p_low": 6, "circle_p_high": 96, "spurious_share_low": 0.5}


@pytest.mark.parametrize("circles, runs, message", [
    ({4.0: _circles(start=1e-3)}, {}, "p/(dn) = 4: r = 1.0e-03 at a training point"),
    ({0.25: _circles(inner=1e-4)}, {}, "p/(dn) = 0.25: the median of r"),
    ({4.0: _circles(dip=1e-5)}, {}, "on a random circle above the threshold"),
    ({}, {0.25: _run()}, "no second zero of r found below the one-point count"),
    ({}, {4.0: _run(spurious=[2])}, "p/(dn) = 4: 1 runs found a second zero of r above"),
])
def test_circle_verdict_names_what_failed(circles, runs, message):
    circles = {0.25: _circles(), 4.0: _circles(), **circles}
    runs = {0.25: _run(spurious=[0]), 4.0: _run(), **runs}
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        theorems.circle_verdict(SMALL, circles, runs)


def test_landing_verdict_and_headline():
    runs = {0.25: _run(0.0, [0, 1, 2]), 1.0: _run(0.625), 4.0: _run(1.0)}
    theorems.landing_verdict(runs)
    assert theorems.landing_headline(SMALL, runs) == {
        "landing_share": {"0.25": 0.0, "1": 0.625, "4": 1.0},
        "other_zero_share": {"0.25": 0.75, "1": 0.0, "4": 0.0}, "count_ratio": 0.42}
    with pytest.raises(AssertionError, match=r"p/\(dn\) = 4: only a share 0.5 of the runs"):
        theorems.landing_verdict({**runs, 4.0: _run(0.5)})
    with pytest.raises(AssertionError, match=r"p/\(dn\) = 1: 2 runs found a zero of r off"):
        theorems.landing_verdict({**runs, 1.0: _run(0.625, [0, 3])})


def _scan(act, ranks, jump, sigma_min=None, n=2, d=5):
    p = np.arange(8, 13)
    full = (d - 1) * n
    if sigma_min is None:
        sigma_min = np.where(p < d * n, 0.0, 1e-3)
    return RankScan(act, n, d, p, np.array(ranks), np.minimum(p - n, full),
                    np.asarray(sigma_min, float), full, jump, 1e-8)


def test_rank_verdict_and_headline():
    scans = {"tanh,n=2,d=5": _scan("tanh", [6, 7, 8, 8, 8], 10),
             "relu,n=2,d=5": _scan("relu", [6, 7, 7, 8, 8], 11)}
    theorems.rank_verdict(scans)
    assert theorems.rank_headline(scans) == {
        "rank_jump": {"tanh,n=2,d=5": 10, "relu,n=2,d=5": 11},
        "relu_late": {"relu,n=2,d=5": 1}}
    assert theorems.rank_headline({"t": scans["tanh,n=2,d=5"]})["relu_late"] == "none scanned"


@pytest.mark.parametrize("scan, message", [
    (_scan("relu", [7, 7, 7, 8, 8], 11), (r"rank \[7\] above its bound min\(p - n, \(d - 1\) n\) "
                                          r"= \[6\] at p = \[8\]")),
    (_scan("tanh", [5, 7, 8, 8, 8], 10), "a smooth activation's rank"),
    (_scan("tanh", [6, 7, 8, 8, 8], 11), "full rank at p = 11, not at d n = 10"),
    (_scan("relu", [6, 7, 8, 8, 8], 10, [1e-3, 0, 1, 1, 1]), "above the rank tolerance"),
])
def test_rank_verdict_names_what_failed(scan, message):
    with pytest.raises(AssertionError, match=message):
        theorems.rank_verdict({"fake": scan})


def _null(rank, loss, distance, start=0.1):
    return NullDirectionDataset(np.zeros((3, 5)), loss, distance, 0.0, start, rank, 12)


def test_null_dataset_verdict_and_headline():
    null = {0.67: _null(7, 4.71e-20, 0.08512), 4.0: _null(12, 1e-24, 6.34e-9)}
    theorems.null_dataset_verdict(null)
    assert theorems.null_headline(TheoremChecks(), null) == {
        "null_below_p": 10, "null_below_loss": 4.7e-20, "null_below_distance": 0.085,
        "null_above_distance": 6.3e-09}
    assert theorems.null_report(TheoremChecks(), null).splitlines()[0] == (
        "p = 10: rank 7/12, loss 4.7e-20, distance to the truth 0.085 (after the step: 0.100)")


@pytest.mark.parametrize("below, above, message", [
    (_null(12, 1e-20, 0.08), None, "full rank 12 below the threshold, so no null direction"),
    (_null(7, 1e-6, 0.08), None, "the second dataset has loss 1.0e-06"),
    (_null(7, 1e-20, 0.01), None, "went back to distance 0.01 from the truth"),
    (None, _null(11, 1e-20, 1e-9), "rank 11 < 12 above the threshold"),
    (None, _null(12, 1e-20, 0.1), "distance 1.0e-01 from the truth"),
])
def test_null_dataset_verdict_names_what_failed(below, above, message):
    null = {0.67: below or _null(7, 1e-20, 0.08), 4.0: above or _null(12, 1e-20, 1e-9)}
    with pytest.raises(AssertionError, match=message):
        theorems.null_dataset_verdict(null)


def _symmetry(tanh_flip=5.83e-32, relu_flip=0.36, relu_signed=1e-5, tanh_aware=1e-5):
    errors = {"tanh": {"sign-aware": np.array([1e-5, tanh_aware]),
                       "signed": np.array([1e-5, 2.0])},
              "relu": {"sign-aware": np.array([1e-5, 1e-5]),
                       "signed": np.array([1e-5, relu_signed])}}
    return SymmetryRuns(180, errors, {"tanh": tanh_flip, "relu": relu_flip},
                        {"tanh": 1e-12, "relu": 1e-13})


def test_symmetry_verdict_and_headline():
    runs = _symmetry()
    theorems.symmetry_verdict(runs, 1e-2)
    assert theorems.symmetry_headline(runs, 1e-2) == {
        "flip_loss": {"tanh": 5.8e-32, "relu": 0.36},
        "flipped_samples": {"tanh": 1, "relu": 0}, "symmetry_p": 180}
    assert theorems.symmetry_report(runs).splitlines()[1].startswith("relu       solver loss")


@pytest.mark.parametrize("kwargs, message", [
    ({"tanh_flip": 1e-3}, "tanh is odd, yet the loss with signs flipped is 1.0e-03"),
    ({"relu_flip": 1e-6}, "relu sees the sign, yet the loss with signs flipped is only"),
    ({"relu_signed": 2.0}, "relu sees the sign, yet a sample was recovered with the wrong"),
    ({"tanh_aware": 0.5}, "tanh: a sample not recovered even up to sign"),
])
def test_symmetry_verdict_names_what_failed(kwargs, message):
    with pytest.raises(AssertionError, match=message):
        theorems.symmetry_verdict(_symmetry(**kwargs), 1e-2)
