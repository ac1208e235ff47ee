"""Where the law chapter's time goes: its grid, batch by batch.

    python benchmarks/law_grid.py [--profile quick] [--compiles]

Runs the law chapter's grid (the notebook's parameters at ``--profile``, from
``notebooks/profiles.yml`` over the notebook's defaults) in this process, batch by batch as
:func:`recon.chapters.law.run_grid` batches it (:data:`recon.chapters.law.BATCH_BY`), with no
cache. One line per batch: its size ``(n, d)``, preset, padded ``P``, cells, wall seconds,
the seconds of its slowest cell's solve (compilation excluded), the largest and median
iterations and the stop reasons; then the whole grid's wall seconds, the sum of the
slowest solves (what the arithmetic costs) and each size's empirical threshold. With
``--compiles``, also JAX's compilation seconds in each batch (``jax.monitoring``). The last
line is one JSON object with the same numbers.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import time

import jax
import numpy as np
import pandas as pd
import papermill as pm

from recon.book import notebooks
from recon.chapters import law


def grid_settings(profile: str) -> law.LawSweep:
    """The law chapter's :class:`recon.chapters.law.LawSweep` at ``profile``: the notebook's
    parameter defaults with the profile's values on top."""
    defaults = {name: ast.literal_eval(spec["default"]) for name, spec in
                pm.inspect_notebook(str(notebooks.NOTEBOOKS / "law.ipynb")).items()}
    return law.LawSweep(**(defaults | dict(notebooks.load_profiles()["law"][profile] or {})))


def batches(settings: law.LawSweep) -> dict:
    """The grid's cells grouped as :func:`recon.chapters.law.run_grid` batches them."""
    grouped = collections.OrderedDict()
    for cell in settings.cells():
        grouped.setdefault(tuple(cell[b] for b in law.BATCH_BY), []).append(cell)
    return grouped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=notebooks.PROFILES)
    parser.add_argument("--compiles", action="store_true",
                        help="also count JAX's compilation seconds in each batch")
    args = parser.parse_args()
    compiled = [0.0]
    if args.compiles:
        jax.monitoring.register_event_duration_secs_listener(
            lambda event, seconds, **_: compiled.__setitem__(0, compiled[0] + seconds)
            if event == "/jax/core/compile/backend_compile_duration" else None)
    rows, records, start = [], [], time.perf_counter()
    for key, cells in batches(grid_settings(args.profile)).items():
        tic, before = time.perf_counter(), compiled[0]
        out = law.rf_cells(cells)
        bad = [r for r in out if isinstance(r, Exception)]
        if bad:
            raise RuntimeError(f"a cell of batch {key} failed: {bad[0]}")
        its, shared = [r["iterations"] for r in out], dict(zip(law.BATCH_BY, key))
        row = dict(n=shared["n"], d=shared["d"], solver=shared["solver"], P=out[0]["p"] if
                   not shared["pad_to"] else max(shared["pad_to"], max(r["p"] for r in out)),
                   cells=len(cells),
                   seconds=round(time.perf_counter() - tic, 2),
                   slowest_solve=round(max(r["solve_seconds"] for r in out), 2),
                   compile_seconds=round(compiled[0] - before, 2) if args.compiles else None,
                   iterations_max=max(its), iterations_median=int(np.median(its)),
                   stops=dict(collections.Counter(r["stop_reason"] for r in out)))
        print(json.dumps(row), flush=True)
        rows.append(row)
        records += [dict(cell, **r) for cell, r in zip(cells, out)]
    table = pd.DataFrame(records)
    thresholds = {}
    for (solver, n, d), g in table.groupby(["solver", "n", "d"]):
        shares = g.groupby("ratio").recovered_fraction.mean()
        ratio = law.empirical_threshold(shares.index, shares.values)
        thresholds[f"{solver} n={n},d={d}"] = None if np.isnan(ratio) else round(ratio, 3)
    summary = {"profile": args.profile, "seconds": round(time.perf_counter() - start, 1),
               "slowest_solves": round(sum(r["slowest_solve"] for r in rows), 1),
               "thresholds": thresholds, "batches": rows}
    print(f"grid: {summary['seconds']} s, of which the batches' slowest solves "
          f"{summary['slowest_solves']} s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
