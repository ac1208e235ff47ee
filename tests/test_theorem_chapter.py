"""The theorems chapter: the notebook at its smoke profile through papermill, the numbers it
glues, its settings, and the rank scan it relies on."""

import numpy as np
import pytest

from conftest import ROOT
from recon import theory
from recon.book import notebooks
from recon.chapters.theorems import (SMOOTH_ACTIVATIONS, TheoremChecks, rank_key, rank_scan,
                                   residual_through, scan_to_full_rank)


FIGURES = ("theorems-great-circles", "theorems-landing", "theorems-rank",
           "theorems-null-dataset", "theorems-symmetry")


@pytest.fixture(scope="module")
def smoke_run(built_book):
    """The book build ran the notebook at its smoke profile (tests/conftest.py): read it."""
    params = notebooks.load_profiles()["theorems"]["smoke"]
    return params, notebooks.read_glued(notebooks.CHAPTERS / "theorems.ipynb"), ROOT / "_build"


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
    assert settings.rank_sizes == [(3, 10), (6, 10), (5, 20)]
    assert settings.as_dict()["landing_ratios"] == [0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize("act,n,d", [("relu", 3, 5)])  # tanh: checked in the notebook
def test_rank_scan_agrees_with_the_library(act, n, d):
    ps = [d * n - 1, d * n, d * n + 1]
    scan = rank_scan(act, n, d, ps)
    for p, rank in zip(scan.p_values, scan.ranks):
        assert rank == theory.local_rank(*theory.trained_rf(act, n, d, int(p)))[0], (act, p)
    assert np.all(scan.ranks <= scan.bounds)
    assert scan.full_rank == (d - 1) * n


def test_scan_to_full_rank_goes_on_past_the_window():
    scan = scan_to_full_rank("relu", 3, 6, window=1, max_ratio=2.0)  # jumps at 23 > dn + 1
    assert scan.jump is not None and scan.jump > 19
    assert list(scan.p_values) == list(range(17, scan.p_values[-1] + 1))
    assert scan.ranks[list(scan.p_values).index(scan.jump)] == scan.full_rank
    with pytest.raises(ValueError, match="p must be an integer >= 4"):
        rank_scan("tanh", 3, 6, [3, 18])


def test_residual_through_passes_through_both_points():
    model, X = theory.trained_rf("tanh", 3, 5, 100)
    angles, r, target = residual_through(model, X, X[0], X[1], num_points=17)
    assert r[0] < 1e-10 and r[np.flatnonzero(angles == target)[0]] < 1e-10
    assert np.all(r[(angles > 0.1) & (np.abs(angles - target) > 0.1) & (angles < 3.0)] > 1e-3)
    with pytest.raises(ValueError, match="parallel"):
        residual_through(model, X, X[0], 2 * X[0])
