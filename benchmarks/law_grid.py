"""Where the law chapter's time goes: its grid, batch by batch.

    python benchmarks/law_grid.py [--profile quick] [--parameters YAML]

Runs the law chapter's grid (the notebook's parameters at ``--profile``, from
``notebooks/profiles.yml`` over the notebook's defaults, and ``--parameters`` over both, as
papermill's ``-y`` would: ``--parameters "sizes: [[2, 10], [4, 10]]"``) in this process, batch
by batch as :func:`recon.chapters.law.run_grid` batches it
(:data:`recon.chapters.law.BATCH_BY`), with no cache. One line per batch: its size ``(n, d)``,
preset, padded ``P``, cells, wall seconds, the seconds of its slowest cell's solve (compilation
excluded), JAX's compilation seconds in it (:class:`recon.solver.Clock`) and the part of
them spent on array operations outside the solver's programs (``eager_compile_seconds``: a
new batch size or ``P`` compiles each slice, stack and draw afresh), the largest and median
iterations and the stop reasons; then the whole grid's wall seconds, the sum of the slowest
solves (what the arithmetic costs), of the compilation and of its eager part, and each
size's empirical threshold (:func:`recon.chapters.law.thresholds`). The last line is one JSON
object with the same numbers.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import time

import numpy as np
import pandas as pd
import papermill as pm

from recon.book import cli, notebooks, sweep
from recon.chapters import law
from recon.solver import Clock


def grid_settings(profile: str, parameters: str = "") -> law.LawSweep:
    """The law chapter's :class:`recon.chapters.law.LawSweep` at ``profile``: the notebook's
    parameter defaults with the profile's values on top, and ``parameters`` (YAML text, read
    and checked as ``python -m recon run -y`` reads it: :func:`recon.book.cli.
    parameter_overrides`) on top of both."""
    defaults = {name: ast.literal_eval(spec["default"]) for name, spec in
                pm.inspect_notebook(str(notebooks.NOTEBOOKS / "law.ipynb")).items()}
    return law.LawSweep(**(defaults | dict(notebooks.load_profiles()["law"][profile] or {})
                           | cli.parameter_overrides(["law"], [], parameters)))


def batches(settings: law.LawSweep) -> list[list[dict]]:
    """The grid's cells grouped as :func:`recon.chapters.law.run_grid` batches them (the
    sweep's own grouping by :data:`recon.chapters.law.BATCH_BY`)."""
    cells = settings.cells()
    return [[cells[i] for i in unit] for unit in sweep._units(cells, law.BATCH_BY)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=notebooks.PROFILES)
    parser.add_argument("--parameters", default="", help="YAML mapping of notebook "
                        "parameters over the profile's, e.g. 'seeds: [0, 1]'")
    args = parser.parse_args()
    rows, records, start = [], [], time.perf_counter()
    for cells in batches(grid_settings(args.profile, args.parameters)):
        tic, clock = time.perf_counter(), Clock()
        out = law.rf_cells(cells)
        bad = [r for r in out if isinstance(r, Exception)]
        if bad:
            raise RuntimeError(f"a cell of the batch of {cells[0]} failed: {bad[0]}")
        its = [r["iterations"] for r in out]
        row = dict(n=cells[0]["n"], d=cells[0]["d"], solver=cells[0]["solver"],
                   P=max(cells[0]["pad_to"], max(r["p"] for r in out)), cells=len(cells),
                   seconds=round(time.perf_counter() - tic, 2),
                   slowest_solve=round(max(r["solve_seconds"] for r in out), 2),
                   compile_seconds=round(clock.compile_seconds, 2),
                   eager_compile_seconds=round(clock.eager_compile_seconds, 2),
                   iterations_max=max(its), iterations_median=int(np.median(its)),
                   stops=dict(collections.Counter(r["stop_reason"] for r in out)))
        print(json.dumps(row), flush=True)
        rows.append(row)
        records += [dict(cell, **r) for cell, r in zip(cells, out)]
    table = pd.DataFrame(records)
    thresholds = {f"{solver} {size}": None if np.isnan(ratio) else round(ratio, 3)
                  for solver, group in table.groupby("solver")
                  for size, ratio in law.thresholds(group).items()}
    summary = {"profile": args.profile, "parameters": args.parameters,
               "seconds": round(time.perf_counter() - start, 1),
               "slowest_solves": round(sum(r["slowest_solve"] for r in rows), 1),
               **{key: round(sum(r[key] for r in rows), 1)
                  for key in ("compile_seconds", "eager_compile_seconds")},
               "thresholds": thresholds, "batches": rows}
    print(f"grid: {summary['seconds']} s, of which the batches' slowest solves "
          f"{summary['slowest_solves']} s and compilation {summary['compile_seconds']} s "
          f"({summary['eager_compile_seconds']} s of it array operations outside the "
          f"solver's programs)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
