"""The law chapter's pieces: threshold interpolation, slope fit, grid settings, sweep cells."""

import math

import numpy as np
import pandas as pd
import pytest

from conftest import load_benchmark
from recon.book import sweep
from recon.chapters import law
from recon.chapters.law import LawSweep


def test_threshold_is_interpolated_on_the_log_scale():
    assert law.empirical_threshold([0.5, 2.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert law.empirical_threshold([1.0, 4.0], [0.25, 0.75]) == pytest.approx(2.0)
    assert law.empirical_threshold([1, 2, 4], [0.6, 1, 1]) == 1.0
    assert math.isnan(law.empirical_threshold([1, 2, 4], [0, 0.1, 0.2]))
    with pytest.raises(ValueError, match="increasing"):
        law.empirical_threshold([2, 1], [0, 1])


def test_thresholds_average_seeds_per_size():
    table = pd.DataFrame({
        "n": [2] * 4 + [4] * 4, "d": [5] * 8,
        "ratio": [1, 1, 4, 4] * 2,
        "recovered_fraction": [0, 0.5, 1, 1, 0, 0, 0.5, 0.5],
    })
    out = law.thresholds(table)
    assert out["n=2,d=5"] == pytest.approx(4 ** (1 / 3))  # mean 0.25 -> 1 crosses 0.5 a third on
    assert out["n=4,d=5"] == pytest.approx(4.0)


def test_slope_of_a_power_law_is_recovered():
    dn = np.array([10, 20, 40, 80])
    assert law.fit_slope(dn, 3 * dn**1.2)[0] == pytest.approx(1.2)
    assert math.isnan(law.fit_slope(dn, [np.nan, np.nan, 1, np.nan])[0])


def test_grid_settings_validate_and_expand():
    s = LawSweep(sizes=[[2, 5], [3, 4]], ratios=[0.5, 2], seeds=[0, 1], reference_size=[2, 5])
    cells = s.cells()
    assert len(cells) == 2 * 2 * 2 + 2 * 2
    assert {c["solver"] for c in cells} == {"default", "reference"}
    for bad, err in [({"sizes": [[2]]}, TypeError), ({"ratios": [2, 1]}, ValueError),
                     ({"seeds": "0"}, TypeError), ({"activation": "elu"}, ValueError)]:
        kwargs = dict(sizes=[[2, 5]], ratios=[1.0], seeds=[0]) | bad
        with pytest.raises(err):
            LawSweep(**kwargs)


def test_a_cell_reconstructs_above_and_not_below_the_threshold(tmp_path):
    grid = sweep.Grid(name="law-test", params=[
        dict(n=2, d=5, ratio=r, seed=0, max_steps=1500)
        for r in (0.5, 8.0)])
    version = sweep.code_version()
    summary = sweep.run_sweep(grid, law.rf_cell, tmp_path, progress=False, version=version)
    assert summary.failed == 0 and summary.computed == 2
    table = sweep.load_table(tmp_path, grid, version=version).sort_values("ratio")
    assert table["train_mse"].max() < 1e-8  # labels fitted on both sides
    below, above = table["recovered_fraction"].tolist()
    assert below < 1 and above == 1
    again = sweep.run_sweep(grid, law.rf_cell, tmp_path, progress=False, version=version)
    assert again.reused == 2 and again.computed == 0


def test_a_cell_tells_when_theta_does_not_single_out_the_data():
    # n=2, d=10, p=25, seed 1: only 15 of the 25 ReLU features are active at the data, fewer
    # than dn = 20 equations, so other datasets explain theta exactly
    cell = law.rf_cell(2, 10, 1.25, 1)
    assert cell["active_features"] == 15
    assert cell["zero_loss_elsewhere"] and cell["recovered_fraction"] < 1
    assert cell["loss"] <= 1e-10
    above = law.rf_cell(2, 10, 4.0, 0)
    assert above["recovered_fraction"] == 1 and not above["zero_loss_elsewhere"]
    assert above["active_features"] <= 80


def test_settings_from_the_parameters_cell_skip_the_reference_with_an_empty_list():
    s = LawSweep.from_parameters({"sizes": [[2, 5]], "ratios": [1.0], "seeds": [0],
                                  "reference_size": [], "store": "", "scheduler": ""})
    assert s.reference_size is None and {c["solver"] for c in s.cells()} == {"default"}
    with pytest.raises(ValueError, match="ratios must be increasing"):
        LawSweep.from_parameters({"sizes": [[2, 5]], "ratios": [2.0, 1.0], "seeds": [0]})


def sweep_table():
    """A made-up sweep table: (2, 5) crosses half recovery at ratio 1, (2, 10) at 2; the
    reference never does; one cell at p >= dn stopped at another dataset."""
    rows = [dict(n=n, d=d, ratio=r, seed=0, solver=solver, recovered_fraction=f,
                 zero_loss_elsewhere=(n, d, r) == (2, 10, 1.0), active_features=int(r * n * d),
                 span_residual=1e-9 if f == 1 else 1e-2)
            for solver, fractions in (("default", {(2, 5): [0, 0.5, 1], (2, 10): [0, 0, 0.5]}),
                                      ("reference", {(2, 5): [0, 0, 0]}))
            for (n, d), fs in fractions.items() for r, f in zip([0.5, 1.0, 2.0], fs)]
    return pd.DataFrame(rows)


def made_up_run():
    """The settings, table, default and reference rows and thresholds of :func:`sweep_table`."""
    settings = LawSweep(sizes=[[2, 5], [2, 10]], ratios=[0.5, 1.0, 2.0], seeds=[0],
                        reference_size=[2, 5])
    table = sweep_table()
    default, reference = law.by_solver(table)
    return settings, table, default, reference, law.threshold_summary(settings, default,
                                                                       reference)


def test_thresholds_silent_features_and_headline_of_a_run():
    settings, table, default, reference, found = made_up_run()
    assert found.ratio == pytest.approx({"n=2,d=5": 1.0, "n=2,d=10": 2.0})
    assert found.p_star == pytest.approx([10.0, 40.0]) and found.dn == [10, 20]
    assert found.slope == pytest.approx(2.0) and found.reference_points == {}
    assert found.interval == {"n=2,d=5": [0.5, 1.0], "n=2,d=10": [1.0, 2.0]}
    assert found.interval_reference == {"n=2,d=5": [2.0, None]}  # never reached
    assert found.bootstrap["n=2,d=5"] == [1.0, 1.0]  # one seed: nothing to resample
    table_ = law.threshold_table(found)
    assert table_.loc["n=2,d=10", "p*/(dn)"] == 2.0 and table_.loc["n=2,d=5", "reference"] is None
    silent = law.silent_features(default)
    assert len(silent.cells) == 1 and silent.cells["active_over_dn"].iloc[0] == 1.0
    assert silent.text.startswith("1 of the 4 cells with p >= dn") and "never more" in silent.text
    glued = law.headline(settings, table, found, silent)
    assert glued["threshold_ratio"] == {"n=2,d=5": 1.0, "n=2,d=10": 2.0}
    assert glued["threshold_interval"] == {"n=2,d=5": [0.5, 1.0], "n=2,d=10": [1.0, 2.0]}
    assert glued["threshold_ratio_reference"] == {"n=2,d=5": None}
    assert glued["threshold_slope"] == 2.0 and glued["threshold_ratio_range"] == "1.00 to 2.00"
    assert glued["threshold_slope_interval"] == [2.0, 2.0]
    assert glued["sweep_cells"] == len(table) and glued["silent_features"] == silent.text
    assert glued["dn_range"] == "10 to 20" and glued["seed_count"] == 1


def test_label_fit_table_fits_the_labels_past_p_equal_n():
    settings = LawSweep(sizes=[[4, 5]], ratios=[1.0], seeds=[0])
    fit = law.label_fit_table(settings)
    assert list(fit.columns) == ["n", "d", "p", "train_mse"] and fit["p"].is_monotonic_increasing
    assert fit[fit.p >= 8]["train_mse"].max() < 1e-8 < fit[fit.p < 4]["train_mse"].min()


def test_run_grid_stores_and_reuses_the_cells(tmp_path, capsys):
    settings = LawSweep(sizes=[[2, 5]], ratios=[8.0], seeds=[0], max_steps=1500)
    table = law.run_grid(settings, str(tmp_path))
    assert len(table) == 1 and table["recovered_fraction"].iloc[0] == 1
    assert table["version"].iloc[0] == sweep.code_version()
    assert law.run_grid(settings, str(tmp_path)).equals(table)
    assert "1 reused" in capsys.readouterr().out


def test_bootstrap_over_seeds_brackets_the_threshold():
    rows = [dict(n=2, d=5, ratio=r, seed=s, recovered_fraction=f)
            for s, fs in enumerate([[0, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]])
            for r, f in zip([1.0, 1.2, 1.5], fs)]
    draws = law.bootstrap_thresholds(pd.DataFrame(rows), draws=200)
    low, high = law.percentile_interval(draws["n=2,d=5"])
    assert 1.0 <= low < high <= 1.5  # the seeds disagree between 1.2 and 1.5
    assert law.bracket([1.0, 1.2, 1.5], [0, 0.5, 1]) == [1.0, 1.2]
    assert law.percentile_interval([float("nan")]) == [None, None]


def test_ratio_bands_pad_each_cell_to_its_band():
    assert law.ratio_bands([0.25, 0.5, 0.8, 1.0, 1.6, 2.0, 4.0]) == [0.5, 0.5, 1.6, 1.6, 1.6,
                                                                     4.0, 4.0]
    s = LawSweep(sizes=[[2, 5]], ratios=[0.8, 1.0, 1.6], seeds=[0])
    assert {c["pad_to"] for c in s.cells()} == {16}
    # a band of fewer than half the ratios of the band above joins it, at small sizes only
    ratios = [0.25, 0.5, 0.8, 0.9, 1.0, 1.2, 1.6, 2.0, 4.0]
    assert law.ratio_bands(ratios, join_small=True) == [1.6] * 7 + [4.0] * 2
    assert law.ratio_bands([0.25, 0.5, 0.8, 1.6], join_small=True) == [0.5, 0.5, 1.6, 1.6]
    s = LawSweep(sizes=[[2, 5], [10, 40]], ratios=ratios, seeds=[0])
    pads = {(c["n"], c["ratio"]): c["pad_to"] for c in s.cells()}
    assert pads[2, 0.25] == pads[2, 1.6] == 16 and pads[10, 0.25] == 200  # 10 d n d n = 1.6e5


def test_batched_cells_match_their_single_runs_in_what_they_recover():
    cells = [dict(n=2, d=5, ratio=r, seed=s, max_steps=1500, pad_to=20)
             for r in (0.5, 2.0) for s in (0, 1)]
    batched = law.rf_cells(cells)
    assert [r["batch_size"] for r in batched] == [4] * 4
    assert [r["p"] for r in batched] == [5, 5, 20, 20]  # the padding is not counted
    assert [r["recovered_fraction"] for r in batched[2:]] == [1.0, 1.0]
    alone = law.rf_cell(**cells[2])
    assert alone["recovered_fraction"] == 1.0 and alone["batch_size"] == 1
    assert max(alone["span_residual"], *(r["span_residual"] for r in batched[2:])) < 1e-3


def test_law_claims_are_checked_on_the_table():
    settings, table, default, reference, found = made_up_run()
    fit = pd.DataFrame({"n": [2] * 4, "d": [5] * 4, "p": [1, 2, 4, 8],
                        "train_mse": [0.3, 1e-3, 1e-13, 1e-14]})
    checked = {c.name: c for c in law.claims(settings, default, reference, fit, found,
                                              law.silent_features(default))}
    assert checked["labels_from_n"].holds  # fitted from 3n = 6
    assert checked["never_all_below_dn"].holds  # nothing recovered below dn
    assert checked["thresholds_near_dn"].holds  # n=2, d=10 crosses at 2.0, the band's top
    assert checked["thresholds_near_dn"].values["thresholds"]["n=2,d=10"] == 2.0
    assert not checked["thresholds_n_above_2"].holds  # no size with n > 2 to check
    assert not checked["all_from_twice_dn"].holds  # n=2, d=10 recovers half at 2 dn
    assert checked["reference_behind"].holds and checked["misses_are_mostly_silent"].holds
    assert checked["span_residual_tracks_recovery"].holds


def test_cells_with_p_at_most_n_are_solved_on_purpose_and_marked():
    import warnings

    cells = [dict(n=2, d=3, ratio=0.25, seed=0, max_steps=300, pad_to=3),  # p = 2 <= n
             dict(n=2, d=3, ratio=0.5, seed=0, max_steps=300, pad_to=3)]  # p = 3 > n
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded per cell, not warned about
        trivial, other = law.rf_cells(cells)
    assert trivial["p"] == 2 and trivial["trivially_satisfiable"]
    assert other["p"] == 3 and not other["trivially_satisfiable"]
    table = pd.DataFrame([c | r for c, r in zip(cells, (trivial, other))])
    fig = law.plot_law(table)
    assert any("any candidates fit" in t.get_text() for t in fig.axes[0].get_legend().texts)


def test_store_and_scheduler_are_checked_with_the_grid():
    with pytest.raises(TypeError, match="store must be a string"):
        LawSweep.from_parameters({"sizes": [[2, 5]], "ratios": [1.0], "seeds": [0], "store": 5})
    with pytest.raises(TypeError, match="scheduler must be a string"):
        LawSweep(sizes=[[2, 5]], ratios=[1.0], seeds=[0], scheduler=["tcp://x"])


def test_the_law_grid_benchmark_runs_the_chapters_grid_as_the_chapter_batches_it():
    """``benchmarks/law_grid.py``: the notebook's parameters at a profile (its defaults with
    the profile's values on top), and the cells batched as :func:`law.run_grid` batches
    them (nothing solved here)."""
    bench = load_benchmark("law_grid")
    smoke = bench.grid_settings("smoke")
    assert smoke.sizes == [(2, 5), (2, 10)] and smoke.max_steps == 1500
    assert smoke.reference_steps == 500 and smoke.threshold == 1e-2  # a notebook default
    quick = bench.grid_settings("quick")
    grouped = bench.batches(quick)
    assert sum(map(len, grouped)) == len(quick.cells())
    keys = [tuple(c[b] for b in law.BATCH_BY) for c in (cells[0] for cells in grouped)]
    assert len(set(keys)) == len(keys)  # one batch per set of shared values
    for key, cells in zip(keys, grouped):
        assert all(tuple(c[b] for b in law.BATCH_BY) == key for c in cells)
    assert len(grouped) == 10  # two ratio bands per size, and two for the reference column
    issue = bench.grid_settings("quick", "{sizes: [[2, 10], [4, 10]], reference_size: null}")
    assert issue.sizes == [(2, 10), (4, 10)] and issue.reference_size is None
    assert issue.ratios == quick.ratios  # the rest as the profile has it
    with pytest.raises(ValueError, match=r"notebook 'law' has no parameter\(s\) size;"):
        bench.grid_settings("quick", "size: [[2, 10]]")
