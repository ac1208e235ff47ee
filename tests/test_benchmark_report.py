"""The benchmark's reports: the README table and the law chapter's sentence, from a summary."""

import json

import pytest

from conftest import load_benchmark
from recon.book import benchmark_report
from recon.book.notebooks import ROOT

SUMMARY = {"default_seconds": 3.25, "reference_seconds": None, "reference_budget_seconds": 101.7,
           "speedup": None, "speedup_at_least": 31.3, "threshold_default": 1.21,
           "threshold_reference": None, "iteration_vs_matmul": 1.44, "chunked_peak_gib": 1.62,
           "devices": ["TFRT_CPU_0"], "date": "2026-11-27", "commit": "abc1234",
           "machine": "x86_64, 2 cores", "quick": False}


def test_table_says_what_was_measured_where():
    table = benchmark_report.markdown(SUMMARY)
    assert "| time to error 1e-3, n=20, d=100, p=20000 (default, slowest of 1 seed(s)) | 3.25 s |" in table
    assert "not recovered" in table and "at least 31x" in table
    assert "| 1.21 |" in table and "not reached" in table and "1.62 GiB" in table
    assert "2026-11-27" in table and "abc1234" in table and "TFRT_CPU_0" in table


def test_block_between_the_markers_is_replaced_and_nothing_else():
    text = f"intro\n{benchmark_report.BEGIN}\nold table\n{benchmark_report.END}\nrest\n"
    out = benchmark_report.replace_block(text, "NEW")
    assert out.startswith("intro\n") and out.endswith(f"{benchmark_report.END}\nrest\n")
    assert "old table" not in out and "\nNEW\n" in out
    assert benchmark_report.replace_block(out, "NEW") == out
    with pytest.raises(ValueError, match="no benchmark block"):
        benchmark_report.replace_block("no markers here", "NEW")


def test_the_readme_has_the_block():
    readme = (ROOT / "README.md").read_text()
    assert benchmark_report.BEGIN in readme and benchmark_report.END in readme


def test_summaries_are_read_and_checked(tmp_path):
    assert benchmark_report.load(tmp_path / "none.json") is None
    none = benchmark_report.sentence(tmp_path / "none.json", tmp_path / "no-README.md")
    assert "make benchmark" in none and "README" not in none
    readme = tmp_path / "README.md"
    readme.write_text(benchmark_report.replace_block(
        f"{benchmark_report.BEGIN}\n{benchmark_report.END}\n", benchmark_report.markdown(SUMMARY)))
    pointer = benchmark_report.sentence(tmp_path / "none.json", readme)
    assert "make benchmark" in pointer
    assert "README's table is from the last full run (2026-11-27 on TFRT_CPU_0 " in pointer
    assert pointer.endswith("commit abc1234)")
    assert benchmark_report.readme_run(ROOT / "README.md") is not None  # the project's own
    path = tmp_path / "solver.json"
    path.write_text(json.dumps(SUMMARY))
    sentence = benchmark_report.sentence(path)
    assert "3.2 s" in sentence and "at least 31 times slower" in sentence
    path.write_text(json.dumps({"default_seconds": 1.0}))
    with pytest.raises(ValueError, match="lacks"):
        benchmark_report.load(path)


def test_several_seeds_are_reported_by_their_median_and_their_worst(tmp_path):
    summary = {**SUMMARY, "default_seconds": 9.5, "default_seconds_median": 3.1,
               "authors_setting_recovered_seeds": 5, "authors_setting_seeds": 5,
               "small_case_default_seconds": 0.2, "small_case_reference_seconds": 0.25,
               "law_cells_per_second_batched": {"n=4,d=10": 3.0},
               "law_cells_per_second_single": {"n=4,d=10": 0.5},
               "n5_d20_p300_default_recovered_seeds": 5,
               "n5_d20_p300_reference_recovered_seeds": 4, "n5_d20_p300_seeds": 5,
               "n5_d20_p300_default_no_later_seeds": 3,
               "n5_d20_p300_default_over_reference": [0.5, 1.2, None, 0.9, 1.4],
               "threshold_default_n10_d50": 1.1, "threshold_reference_n10_d50": None,
               "authors_setting_max_error": [3.6e-7, 2.6e-3],
               "authors_setting_truth_polished_error": [2.5e-7, 2.6e-3]}
    table = benchmark_report.markdown(summary)
    assert "| 5 / 4 of 5; 3; 0.50, 1.20, -, 0.90, 1.40 |" in table
    assert "n=10, d=50: default / reference | 1.10 / not reached |" in table
    assert "| 3.6e-07 / 2.5e-07, 2.6e-03 / 2.6e-03 |" in table
    assert "(default, slowest of 5 seed(s)) | 9.50 s |" in table and "| 3.10 s |" in table
    assert "| 5 of 5 |" in table and "0.20 s / 0.25 s" in table
    table = benchmark_report.markdown({**summary, "authors_setting_solved_seeds": 5})
    assert "no higher than the truth's (theta does not single out the truth at 1e-3) | 5 of 5 |" \
        in table
    assert "batched | n=4,d=10: 3.00 |" in table
    path = tmp_path / "solver.json"
    path.write_text(json.dumps(summary))
    assert "on all 5 seeds, in 3.1 s (median) and 9.5 s (slowest)" in benchmark_report.sentence(path)
    path.write_text(json.dumps({**summary, "default_seconds": None,
                                "authors_setting_recovered_seeds": 3}))
    assert "on 3 of 5 seeds within its budget" in benchmark_report.sentence(path)
    path.write_text(json.dumps({**summary, "default_seconds": None, "speedup_at_least": None}))
    assert "not within its budget of 102 s;" in benchmark_report.sentence(path)


def test_a_piece_of_the_benchmark_reports_the_keys_of_its_size():
    """``--only authors`` / ``--only small``: the race at one size and only its keys."""
    bench = load_benchmark("solver_benchmark")
    run = {"seconds": 2.0, "stop_reason": "tol", "samples_recovered": 20, "loss": 1e-11,
           "truth_loss": 1e-12, "solved": True, "truth_confidence": 1e6, "max_error": 1e-6,
           "truth_polished_error": 1e-7}
    results = {(*bench.AUTHORS, "default", s): dict(run, seconds=1.0 + s) for s in bench.SEEDS}
    results[(*bench.AUTHORS, "default", 3)] = dict(run, seconds=None, samples_recovered=19,
                                                    stop_reason="unpinned", loss=2e-13)
    results[(*bench.AUTHORS, "default", 4)] = dict(run, seconds=None, samples_recovered=12,
                                                    stop_reason="budget", solved=False)
    summary = bench.race_summary(results)
    assert summary["default_seconds"] is None  # a seed not recovered: no slowest time
    assert summary["authors_setting_recovered_seeds"] == 3
    assert summary["authors_setting_solved_seeds"] == 4
    assert summary["authors_setting_loss"][3] == 2e-13
    assert summary["authors_setting_truth_loss"][3] == 1e-12
    assert summary["authors_setting_truth_confidence"] == [1e6] * 5
    assert summary["default_seconds_median"] == 2.0
    assert summary["authors_setting_samples_recovered"][3] == 19
    assert "small_case_default_seconds" not in summary and "n10_d50_p5000_seconds" not in summary
    middle = {(*size, "default", s): dict(run, seconds=0.5 + s)
              for size in bench.PIECES["middle"] for s in bench.SEEDS}
    summary = bench.race_summary(middle)
    assert summary["n10_d50_p5000_recovered_seeds"] == 5
    assert summary["n20_d100_p4000_seconds"] == 4.5
    assert summary["n20_d100_p4000_seconds_median"] == 2.5
    side = {(*size, name, s): dict(run, seconds=None if (name, s) == ("reference", 1) else
                                   (1.0 if name == "default" else 0.5 + s))
            for size in bench.PIECES["side"] for name in ("default", "reference")
            for s in bench.SEEDS}
    paired = bench.race_summary(side)
    assert paired["n5_d20_p300_default_over_reference"] == [2.0, None, 1 / 2.5, 1 / 3.5, 1 / 4.5]
    assert paired["n5_d20_p300_default_no_later_seeds"] == 4  # seed 1: the reference failed
    assert paired["n10_d50_p1500_reference_recovered_seeds"] == 4
    assert paired["n10_d50_p1500_reference_seconds"] is None
    assert "n=10, d=50, p=5000: seeds recovered (default), slowest / median time | 5 of 5, " \
        "4.50 s / 2.50 s" in benchmark_report.markdown({**SUMMARY, **summary})
    small = {(*bench.SMALL, name, s): dict(run, seconds=0.1 * s + (name == "reference"))
             for name in ("default", "reference") for s in bench.SEEDS}
    summary = bench.race_summary(small)
    assert summary["small_case_default_seconds"] == pytest.approx(0.4)
    assert summary["small_case_reference_seconds"] == pytest.approx(1.4)
    assert "default_seconds" not in summary


def test_the_law_piece_prints_the_law_cells_per_second_only(monkeypatch, capsys):
    """``--only law``: the law cells per second, batched and one at a time, and nothing else
    (the throughput itself stubbed: it takes minutes)."""
    import sys

    bench = load_benchmark("solver_benchmark")
    monkeypatch.setattr(bench, "law_throughput",
                        lambda: ({"n=4,d=10": 2.0}, {"n=4,d=10": 0.25}))
    monkeypatch.setattr(bench, "race", lambda *a, **k: pytest.fail("--only law ran a race"))
    monkeypatch.setattr(sys, "argv", ["solver_benchmark.py", "--only", "law"])
    bench.main()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"law_cells_per_second_batched": {"n=4,d=10": 2.0},
                       "law_cells_per_second_single": {"n=4,d=10": 0.25}}


def test_the_benchmark_record_names_the_cpu_it_ran_on(tmp_path, monkeypatch):
    """The record (and so the README's "Measured ... on" line) names the processor model:
    timings differ several-fold between CPUs of one architecture."""
    import argparse

    bench = load_benchmark("solver_benchmark")
    monkeypatch.setattr(bench, "_commit", lambda: "abc1234")
    output = tmp_path / "solver.json"
    bench.write({"default_seconds": 1.0}, argparse.Namespace(output=output, readme=None,
                                                              quick=True))
    record = json.loads(output.read_text())
    model = bench.cpu_model()
    assert model and record["machine"].startswith(f"{model}, ")
    assert record["machine"].endswith(" cores")
    assert f"({record['machine']})" in benchmark_report.markdown({**SUMMARY, **record})


def test_the_table_gives_the_iteration_and_matmul_times_beside_their_ratio():
    """The ratio alone hides how fast the machine was: the two times come with it (records
    written before they were kept show the ratio alone)."""
    row = "| one iteration / matrix multiply of the same work | "
    table = benchmark_report.markdown({**SUMMARY, "iteration_ms": 4.31, "matmul_ms": 2.99})
    assert f"{row}1.44 (4.31 ms / 2.99 ms) |" in table
    assert f"{row}1.44 |" in benchmark_report.markdown(SUMMARY)
