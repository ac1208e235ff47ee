"""The benchmark's reports: the README table and the law chapter's sentence, from a summary."""

import json

import pytest

from recon.book import benchmark_report
from recon.book.notebooks import ROOT

SUMMARY = {"default_seconds": 3.25, "reference_seconds": None, "reference_budget_seconds": 101.7,
           "speedup": None, "speedup_at_least": 31.3, "threshold_default": 1.21,
           "threshold_reference": None, "iteration_vs_matmul": 1.44, "chunked_peak_gib": 1.62,
           "devices": ["TFRT_CPU_0"], "date": "2026-11-27", "commit": "abc1234",
           "machine": "x86_64, 2 cores", "quick": False}


def test_table_says_what_was_measured_where():
    table = benchmark_report.markdown(SUMMARY)
    assert "| time to error 1e-3, n=20, d=100, p=20000 (default) | 3.25 s |" in table
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
    assert "make benchmark" in benchmark_report.sentence(tmp_path / "none.json")
    path = tmp_path / "solver.json"
    path.write_text(json.dumps(SUMMARY))
    sentence = benchmark_report.sentence(path)
    assert "3.2 s" in sentence and "at least 31 times slower" in sentence
    path.write_text(json.dumps({"default_seconds": 1.0}))
    with pytest.raises(ValueError, match="lacks"):
        benchmark_report.load(path)
