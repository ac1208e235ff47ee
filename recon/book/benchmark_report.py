"""Reports of the solver benchmark (``benchmarks/solver_benchmark.py``) from its JSON summary:
a sentence for the law chapter and a table for the README, both written from a run's numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

KEYS = ("default_seconds", "reference_seconds", "reference_budget_seconds", "speedup",
        "speedup_at_least", "threshold_default", "threshold_reference", "iteration_vs_matmul",
        "chunked_peak_gib")
BEGIN = "<!-- solver-benchmark:begin (written by benchmarks/solver_benchmark.py --readme) -->"
END = "<!-- solver-benchmark:end -->"


def default_path() -> Path:
    """Where the benchmark writes its summary: ``_build/benchmarks/solver.json``."""
    from recon.book.notebooks import ROOT

    return ROOT / "_build" / "benchmarks" / "solver.json"


def load(path: str | os.PathLike | None = None) -> dict | None:
    """The last benchmark summary, or ``None`` if the benchmark has not run. Raises
    ``ValueError`` naming the missing keys if the file is not a complete summary."""
    path = Path(path) if path else default_path()
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    missing = [k for k in KEYS if k not in summary]
    if missing:
        raise ValueError(f"{path} is not a solver benchmark summary: it lacks {missing}")
    return summary


def _ratio(value) -> str:
    return "not reached" if value is None else f"{value:.2f}"


def _race(b: dict) -> str:
    if b["reference_seconds"] is not None:
        return (f"the reference preset in {b['reference_seconds']:.1f} s, "
                f"{b['speedup']:.0f} times slower")
    slower = (f" (at least {b['speedup_at_least']:.0f} times slower)"
              if b.get("speedup_at_least") else "")
    return (f"the reference preset not within its budget of "
            f"{b['reference_budget_seconds']:.0f} s{slower}")


def readme_run(readme: str | os.PathLike | None = None) -> str | None:
    """When, where and at which commit the README's table was measured (its last line,
    ``Measured DATE on DEVICES ... commit REV``, without the command), or ``None`` if the
    README has no measured table."""
    from recon.book.notebooks import ROOT

    readme = Path(readme) if readme else ROOT / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    span = _block_span(text)
    block = text[slice(*span)] if span else ""
    lines = [line for line in block.splitlines() if line.startswith("Measured ")]
    if not lines:
        return None
    when, _, command = lines[-1].rstrip(".").removeprefix("Measured ").partition(" by ")
    return f"{when}, commit {command.rpartition('commit ')[2] or 'unknown'}"


def sentence(path: str | os.PathLike | None = None,
             readme: str | os.PathLike | None = None) -> str:
    """One sentence from the last run on this machine, or a pointer to the command if none
    ran (naming the README's last measured table, :func:`readme_run`, where there is one)."""
    b = load(path)
    if b is None:
        run = readme_run(readme)
        elsewhere = (f"; the README's table is from the last full run ({run})"
                     if run else "")
        return ("not measured for this build: make benchmark (or python "
                "benchmarks/solver_benchmark.py) runs it, and the next build quotes it here"
                + elsewhere)
    seeds = b.get("authors_setting_seeds", 1)
    if b["default_seconds"] is None:
        ours = (f"our solver recovered every sample to error 1e-3 on "
                f"{b.get('authors_setting_recovered_seeds', 0)} of {seeds} seeds within its "
                "budget")
    elif seeds > 1:
        ours = (f"our solver recovered every sample to error 1e-3 on all {seeds} seeds, in "
                f"{b['default_seconds_median']:.1f} s (median) and {b['default_seconds']:.1f} s "
                "(slowest)")
    else:
        ours = (f"our solver recovered every sample to error 1e-3 in "
                f"{b['default_seconds']:.1f} s")
    return (f"at the authors' synthetic setting (n=20, d=100, p=20000) {ours}, {_race(b)}; "
            f"at n=5, d=20 the algorithmic threshold p*/(dn) was "
            f"{_ratio(b['threshold_default'])} for ours and "
            f"{_ratio(b['threshold_reference'])} for the reference "
            f"(devices: {', '.join(b.get('devices', []))})")


def _side_by_side_rows(b: dict) -> list[tuple[str, str]]:
    """The README rows of the sizes where both presets ran on every seed."""
    rows = []
    for size, label in (("n10_d30_p3000", "n=10, d=30, p=3000"),
                        ("n5_d20_p300", "n=5, d=20, p=300"),
                        ("n10_d50_p1500", "n=10, d=50, p=1500")):
        if f"{size}_default_over_reference" in b:
            ratios = ", ".join("-" if r is None else f"{r:.2f}"
                               for r in b[f"{size}_default_over_reference"])
            rows.append((f"{label}: seeds recovered, default / reference; seeds where the "
                         f"default is no later; default's time over the reference's, by seed",
                         f"{b[f'{size}_default_recovered_seeds']} / "
                         f"{b[f'{size}_reference_recovered_seeds']} of {b[f'{size}_seeds']}; "
                         f"{b[f'{size}_default_no_later_seeds']}; {ratios}"))
    return rows


def markdown(b: dict) -> str:
    """The README's benchmark table for the summary ``b``."""
    def seconds(value):
        return "not recovered" if value is None else f"{value:.2f} s"

    speedup = (f"{b['speedup']:.0f}x" if b["speedup"] is not None else
               f"at least {b['speedup_at_least']:.0f}x (reference not recovered in "
               f"{b['reference_budget_seconds']:.0f} s)" if b["speedup_at_least"] else "n/a")
    seeds = b.get("authors_setting_seeds", 1)
    rows = [
        (f"time to error 1e-3, n=20, d=100, p=20000 (default, slowest of {seeds} seed(s))",
         seconds(b["default_seconds"])),
        ("same, median over the recovered seeds", seconds(b.get("default_seconds_median",
                                                                b["default_seconds"]))),
        ("seeds recovered at that size (default)",
         f"{b.get('authors_setting_recovered_seeds', 'n/a')} of {seeds}"),
        ("same, or ending at a loss no higher than the truth's (theta does not single out "
         "the truth at 1e-3)", f"{b.get('authors_setting_solved_seeds', 'n/a')} of {seeds}"),
        *([("largest error by seed: the answer / the float64 polish started at the truth "
            "(the closest theta lets any solver get)",
            ", ".join(f"{a:.1e} / {t:.1e}" for a, t in zip(
                b["authors_setting_max_error"], b["authors_setting_truth_polished_error"])))]
          if "authors_setting_truth_polished_error" in b else []),
        ("same, `reference` preset (SGD lr 20, momentum 0.9)", seconds(b["reference_seconds"])),
        ("speed-up", speedup),
        ("algorithmic threshold p*/(dn), n=5, d=20 (default)", _ratio(b["threshold_default"])),
        ("same, `reference` preset", _ratio(b["threshold_reference"])),
        ("one iteration / matrix multiply of the same work", f"{b['iteration_vs_matmul']:.2f}"
         + (f" ({b['iteration_ms']:.2f} ms / {b['matmul_ms']:.2f} ms)"
            if "iteration_ms" in b else "")),
        ("peak memory, streamed V, p=1e6, d=3072", f"{b['chunked_peak_gib']:.2f} GiB"),
        ("time to error 1e-3, n=10, d=30, p=3000, slowest seed: default / reference",
         f"{seconds(b.get('small_case_default_seconds'))} / "
         f"{seconds(b.get('small_case_reference_seconds'))}"),
    ]
    for size, label in (("n10_d50_p5000", "n=10, d=50, p=5000"),
                        ("n20_d100_p4000", "n=20, d=100, p=4000 (ratio 2)")):
        if f"{size}_recovered_seeds" in b:
            rows.append((f"{label}: seeds recovered (default), slowest / median time",
                         f"{b[f'{size}_recovered_seeds']} of {b[f'{size}_seeds']}, "
                         f"{seconds(b[f'{size}_seconds'])} / "
                         f"{seconds(b[f'{size}_seconds_median'])}"))
    rows += _side_by_side_rows(b)
    if "threshold_default_n10_d50" in b:
        rows.append(("algorithmic threshold p*/(dn), n=10, d=50: default / reference",
                     f"{_ratio(b['threshold_default_n10_d50'])} / "
                     f"{_ratio(b['threshold_reference_n10_d50'])}"))
    for key, label in (("law_cells_per_second_batched", "law cells per second, batched"),
                       ("law_cells_per_second_single", "law cells per second, one at a time")):
        if key in b:
            rows.append((label, ", ".join(f"{k}: {v:.2f}" for k, v in b[key].items())))
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    where = ", ".join(b.get("devices", [])) or "unknown device"
    machine = b.get("machine", "")
    lines.append("")
    lines.append(f"Measured {b.get('date', '(date not recorded)')} on {where}"
                 f"{f' ({machine})' if machine else ''} by `python benchmarks/solver_benchmark.py"
                 f"{' --quick' if b.get('quick') else ''}`, commit {b.get('commit', 'unknown')}.")
    return "\n".join(lines)


def _block_span(text: str) -> tuple[int, int] | None:
    """Where the block between the benchmark markers lies in ``text`` (from the end of
    :data:`BEGIN` to the start of :data:`END`), or ``None`` if a marker is missing or they
    are out of order."""
    start, end = text.find(BEGIN), text.find(END)
    return None if start < 0 or end < start else (start + len(BEGIN), end)


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the benchmark markers replaced by ``block``. Raises
    ``ValueError`` if the markers are missing or out of order."""
    span = _block_span(text)
    if span is None:
        raise ValueError(f"the README has no benchmark block: add the lines\n{BEGIN}\n{END}\n"
                         "where the table should go")
    return text[: span[0]] + "\n" + block + "\n" + text[span[1]:]
