"""Tests of recon.book.sweep: cache, resume, failures, corruption, versions, Dask, bad inputs, CLI."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pandas as pd
import pytest

from recon.book import sweep
from recon.book.sweep import CorruptRecordWarning, Grid, cell_key, demo_cell, load_table, run_sweep

GRID = Grid(name="toy", params={"x": [1, 2, 3], "seed": [0, 1]}, fixed={"y": 10})
VOLATILE = ["runtime_s", "timestamp"]


def stable(table: pd.DataFrame) -> pd.DataFrame:
    """The table without the columns that legitimately differ between runs."""
    return table.drop(columns=VOLATILE).reset_index(drop=True)


def run(store, grid=GRID, fn=demo_cell, **kw):
    """run_sweep with the progress bar off."""
    return run_sweep(grid, fn, store, progress=False, **kw)


def record_path(store: Path, cell: dict, fn=demo_cell) -> Path:
    return Path(store) / f"{cell_key(fn, cell)}.json"


@pytest.fixture(scope="module")
def clean_table(tmp_path_factory):
    store = tmp_path_factory.mktemp("clean")
    summary = run(store)
    assert (summary.computed, summary.reused, summary.failed) == (6, 0, 0)
    return stable(load_table(store, GRID))


def test_grid_expansion_product_and_explicit():
    cells = GRID.cells()
    assert cells[0] == {"x": 1, "seed": 0, "y": 10}
    assert len(cells) == 6
    pairs = Grid("pairs", [{"n": 5, "d": 10}, {"n": 10, "d": 20}], fixed={"seed": 0})
    assert pairs.cells() == [{"n": 5, "d": 10, "seed": 0}, {"n": 10, "d": 20, "seed": 0}]


def test_table_content(clean_table):
    assert list(clean_table.columns[:2]) == ["grid", "fn"]
    assert (clean_table["status"] == "ok").all()
    assert clean_table["sum"].tolist() == [11, 12, 12, 13, 13, 14]
    assert clean_table["fn"].iloc[0] == "recon.book.sweep:demo_cell"


def test_record_contents(tmp_path):
    run(tmp_path, Grid("one", {"x": [1]}))
    record = json.loads(record_path(tmp_path, {"x": 1}).read_text())
    assert record["params"] == {"x": 1} and record["metrics"]["sum"] == 1
    assert record["status"] == "ok" and record["error"] is None
    assert set(record["versions"]) == {"python", "jax", "numpy", "recon"}
    assert record["runtime_s"] >= 0 and record["timestamp"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_resume_after_deleting_records(tmp_path, clean_table):
    run(tmp_path)
    for cell in GRID.cells()[1:3]:
        record_path(tmp_path, cell).unlink()
    summary = run(tmp_path)
    assert (summary.computed, summary.reused) == (2, 4)
    assert stable(load_table(tmp_path, GRID)).equals(clean_table)


def test_max_cells_then_resume(tmp_path, clean_table):
    first = run(tmp_path, max_cells=4)
    assert (first.computed, first.pending, first.complete) == (4, 2, False)
    second = run(tmp_path)
    assert (second.computed, second.reused, second.pending, second.complete) == (2, 4, 0, True)
    assert stable(load_table(tmp_path, GRID)).equals(clean_table)


def test_changed_parameter_is_a_new_cell(tmp_path):
    run(tmp_path)
    changed = Grid("toy", {"x": [1, 2, 3], "seed": [0, 1]}, fixed={"y": 11})
    summary = run(tmp_path, changed)
    assert (summary.computed, summary.reused) == (6, 0)
    assert load_table(tmp_path, changed)["sum"].tolist() == [12, 13, 13, 14, 14, 15]
    assert len(load_table(tmp_path)) == 12
    assert cell_key(demo_cell, {"x": 1}) != cell_key(demo_cell, {"x": 1.0})


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "metrics"}),
         "missing keys"),
        (lambda text: json.dumps({**json.loads(text), "params": {"x": 99, "seed": 0, "y": 10}}),
         "do not hash"),
        (lambda text: "[1, 2]", "not a JSON object"),
    ],
    ids=["truncated", "empty", "missing-key", "wrong-params", "not-object"],
)
def test_corrupt_record_is_warned_and_recomputed(tmp_path, clean_table, damage, why):
    run(tmp_path)
    path = record_path(tmp_path, GRID.cells()[0])
    path.write_text(damage(path.read_text()))
    with pytest.warns(CorruptRecordWarning, match=why) as caught:
        assert len(load_table(tmp_path, GRID)) == 5  # left out, not silently read
    assert str(path) in str(caught[0].message)
    with pytest.warns(CorruptRecordWarning, match=str(path)):
        summary = run(tmp_path)
    assert (summary.corrupt, summary.computed, summary.reused) == (1, 1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stable(load_table(tmp_path, GRID)).equals(clean_table)


def test_failed_cell_recorded_and_retried(tmp_path):
    grid = Grid("fails", [{"x": 1}, {"x": 2, "fail": True}, {"x": 3}])
    summary = run(tmp_path, grid)
    assert (summary.computed, summary.failed, summary.complete) == (3, 1, False)
    table = load_table(tmp_path, grid)
    assert table["status"].tolist() == ["ok", "failed", "ok"]
    record = json.loads(record_path(tmp_path, {"x": 2, "fail": True}).read_text())
    assert record["error"].startswith("ValueError: demo_cell asked to fail")
    assert "Traceback" in record["traceback"] and record["metrics"] is None
    kept = run(tmp_path, grid, retry_failed=False)
    assert (kept.computed, kept.reused, kept.failed) == (0, 3, 1)
    retried = run(tmp_path, grid)
    assert (retried.computed, retried.reused, retried.failed) == (1, 2, 1)


def test_bad_return_value_is_a_failure(tmp_path):
    summary = run(tmp_path, Grid("bad", {"x": [1]}), fn=returns_a_number)
    assert summary.failed == 1
    assert "must return a dict" in load_table(tmp_path)["error"].iloc[0]


def returns_a_number(x):
    return x


def numpy_metrics(x):
    import numpy as np

    return {"value": np.float32(x) * 2, "vector": np.arange(x)}


def test_numpy_metrics_are_stored_as_json(tmp_path):
    run(tmp_path, Grid("np", {"x": [2]}), fn=numpy_metrics)
    row = load_table(tmp_path).iloc[0]
    assert row["value"] == 4.0 and row["vector"] == [0, 1]


def test_code_version_is_part_of_the_key(tmp_path, clean_table):
    version = sweep.code_version()
    assert len(version) == 12 and version == sweep.code_version()
    run(tmp_path)
    summary = run(tmp_path, version=version)
    assert (summary.computed, summary.reused) == (6, 0)  # other code: nothing reused
    assert run(tmp_path, version=version).reused == 6
    assert cell_key(demo_cell, {"x": 1}, version) != cell_key(demo_cell, {"x": 1})
    table = load_table(tmp_path, GRID, version=version)
    other = ["version", "key"]
    assert stable(table).drop(columns=other).equals(clean_table.drop(columns=other))
    assert len(load_table(tmp_path, GRID)) == 12 and len(load_table(tmp_path, version="")) == 6


def test_dask_gives_same_table(tmp_path, clean_table):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            summary = run(tmp_path, executor="dask", scheduler=client)
            assert (summary.computed, summary.failed) == (6, 0)
            again = run(tmp_path, scheduler=cluster.scheduler_address, max_cells=1)
            assert (again.computed, again.reused) == (0, 6)
            failing = run(tmp_path, Grid("f", {"x": [1], "fail": [True, False]}),
                          scheduler=client)
            assert (failing.computed, failing.failed) == (2, 1)
    assert stable(load_table(tmp_path, GRID)).equals(clean_table)


def test_progress_bar_runs(tmp_path, capsys):
    run_sweep(Grid("bar", {"x": [1, 2]}), demo_cell, tmp_path, progress=True)
    assert "bar" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"executor": "spark"}, ValueError, "unknown executor"),
        ({"executor": "dask"}, ValueError, "needs scheduler"),
        ({"version": 3}, TypeError, "version must be a string"),
        ({"max_cells": -1}, ValueError, "max_cells"),
        ({"grid": Grid("e", {"x": []})}, ValueError, "empty"),
        ({"grid": Grid("e", [])}, ValueError, "empty"),
        ({"grid": Grid("e", {})}, ValueError, "empty"),
        ({"grid": Grid("e", {"x": 3})}, TypeError, "'x' must be a list"),
        ({"grid": Grid("e", {"x": "abc"})}, TypeError, "'x' must be a list"),
        ({"grid": Grid("e", {"x": [object()]})}, TypeError, "'x'.*JSON"),
        ({"grid": Grid("e", {"x": [1]}, fixed={"y": {1, 2}})}, TypeError, "'y'.*JSON"),
        ({"grid": Grid("e", {"x": [1]}, fixed={"x": 2})}, ValueError, "both"),
        ({"grid": Grid("e", {"x": [1, 1]})}, ValueError, "more than once"),
        ({"grid": Grid("e", {"z": [1]})}, TypeError, "does not fit"),
        ({"fn": lambda x: {}}, TypeError, "top-level"),
        ({"fn": 3}, TypeError, "callable"),
    ],
)
def test_bad_inputs_raise_before_computing(tmp_path, kwargs, error, match):
    store = tmp_path / "store"
    grid = kwargs.pop("grid", GRID)
    fn = kwargs.pop("fn", demo_cell)
    with pytest.raises(error, match=match):
        run_sweep(grid, fn, store, progress=False, **kwargs)
    assert not store.exists() or not list(store.iterdir())


GRID_YAML = """\
name: cli
cell: recon.book.sweep:demo_cell
params:
  x: [1, 2]
  seed: [0, 1, 2]
fixed: {y: 1}
"""


def test_cli_main(tmp_path, capsys):
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text(GRID_YAML)
    store = tmp_path / "store"
    assert sweep.main(["--grid", str(grid_file), "--store", str(store), "--no-progress",
                       "--max-cells", "3"]) == 0
    assert "3 computed" in capsys.readouterr().out
    assert sweep.main(["--grid", str(grid_file), "--store", str(store), "--no-progress"]) == 0
    assert "3 computed, 3 reused" in capsys.readouterr().out
    assert load_table(store, "cli")["sum"].tolist() == [2, 3, 4, 3, 4, 5]


def cli_error(capsys, grid_file, store) -> str:
    """The one line ``python -m recon sweep`` prints for a bad grid file or store."""
    assert sweep.main(["--grid", str(grid_file), "--store", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("recon sweep: ") and "Traceback" not in err
    return err


def test_cli_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text(GRID_YAML.replace("recon.book.sweep:demo_cell", "recon.book.sweep:nope"))
    assert "no 'nope'" in cli_error(capsys, bad, tmp_path / "s")
    bad.write_text(GRID_YAML + "colour: red\n")
    assert "colour" in cli_error(capsys, bad, tmp_path / "s")
    assert "does not exist" in cli_error(capsys, tmp_path / "missing.yml", tmp_path / "s")
    bad.write_text("name: g\ncell: recon.book.sweep:demo_cell\nparams: {x: [1, 2}\n")
    err = cli_error(capsys, bad, tmp_path / "s")
    assert f"grid file {bad}: line 3, column " in err and "not valid YAML" in err
    bad.write_text("name: g\ncell: recon.book.sweep:demo_cell\nparams: {x: 1}\n")
    assert "parameter 'x' must be a list of values" in cli_error(capsys, bad, tmp_path / "s")
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").glob("*.json"))


def test_an_unwritable_store_is_refused_before_the_first_cell(tmp_path, capsys):
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text(GRID_YAML)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=f"store {blocker / 'store'} cannot be written"):
        run(blocker / "store", fn=never_called)
    assert "cannot be written" in cli_error(capsys, grid_file, blocker / "store")
    if os.geteuid() != 0:  # root writes in a read-only folder anyway
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cannot be written"):
            run(locked, fn=never_called)


def never_called(x, y=0, seed=0):
    raise AssertionError("a cell ran")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_records_get_the_mode_of_the_umask_not_mkstemps(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        run(tmp_path)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(f.stat().st_mode) for f in tmp_path.glob("*.json")}
    assert modes == {mode}


def test_a_record_edited_by_hand_or_without_checksum_is_recomputed(tmp_path, clean_table):
    run(tmp_path)
    edited, older = (record_path(tmp_path, c) for c in GRID.cells()[:2])
    record = json.loads(edited.read_text())
    assert record["sha256"] == sweep._checksum(record)
    record["metrics"]["sum"] += 1  # another valid record
    edited.write_text(json.dumps(record))
    record = json.loads(older.read_text())
    del record["sha256"]
    older.write_text(json.dumps(record))
    with pytest.warns(CorruptRecordWarning) as caught:
        summary = run(tmp_path)
    reasons = sorted(str(w.message) for w in caught)
    assert any(str(edited) in r and "checksum does not match its content" in r for r in reasons)
    assert any(str(older) in r and "no sha256 checksum" in r for r in reasons)
    assert (summary.corrupt, summary.computed, summary.reused) == (2, 2, 4)
    assert stable(load_table(tmp_path, GRID)).equals(clean_table)


def test_a_cell_locked_by_another_run_is_left_to_it_and_stale_locks_are_taken_over(tmp_path):
    import socket
    import subprocess
    import sys

    first, second, third = GRID.cells()[:3]
    live = {"pid": os.getppid(), "host": socket.gethostname(), "since": "now"}
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone = {"pid": int(dead.stdout), "host": socket.gethostname(), "since": "then"}
    far = {"pid": 1, "host": "another-host.invalid", "since": "now"}
    for cell, holder in ((first, live), (second, gone), (third, far)):
        lock = tmp_path / f".{cell_key(demo_cell, cell)}.lock"
        lock.write_text(json.dumps(holder))
    summary = run(tmp_path)
    assert (summary.computed, summary.busy, summary.complete) == (4, 2, False)
    assert "2 busy in another run" in str(summary)
    assert record_path(tmp_path, second).exists() and not record_path(tmp_path, first).exists()
    assert sorted(p.name for p in tmp_path.glob(".*.lock")) == sorted(
        f".{cell_key(demo_cell, c)}.lock" for c in (first, third))  # ours are released


def slow_cell(x, y=0, seed=0):
    """demo_cell, slowly: long enough for two runs to overlap."""
    import time

    time.sleep(0.4)
    return demo_cell(x, y, seed)


def test_two_runs_on_one_store_share_the_cells(tmp_path):
    import subprocess
    import sys

    script = ("import sys; sys.path.insert(0, sys.argv[1]); import test_sweep as t; "
              "s = t.run(sys.argv[2], fn=t.slow_cell); print(s.computed, s.reused, s.busy)")
    here = str(Path(__file__).parent)
    runs = [subprocess.Popen([sys.executable, "-c", script, here, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = [tuple(map(int, r.communicate(timeout=120)[0].split())) for r in runs]
    assert all(r.returncode == 0 for r in runs)
    assert sum(c[0] for c in counts) == len(GRID.cells())  # each cell computed once
    assert len(list(tmp_path.glob("*.json"))) == 6 and not list(tmp_path.glob(".*.lock"))


def test_dask_process_workers_by_address(tmp_path, clean_table):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        summary = run(tmp_path, scheduler=cluster.scheduler_address)
    assert (summary.computed, summary.failed) == (6, 0)
    assert stable(load_table(tmp_path, GRID)).equals(clean_table)


def batch_cells(cells):
    """A batch function: ``demo_cell`` of every cell, one failing cell returned as an error."""
    return [ValueError("x=2 fails alone") if c["x"] == 2 else demo_cell(**c) for c in cells]


def test_a_batch_function_computes_groups_and_fails_cells_one_by_one(tmp_path):
    calls = []

    def counted(cells):
        calls.append(sorted({c["seed"] for c in cells}))
        return batch_cells(cells)

    counted.__module__, counted.__qualname__ = __name__, "batch_cells"
    summary = run(tmp_path, fn=counted, batch_by=["seed"])
    assert summary.computed == 6 and summary.failed == 2
    assert calls == [[0], [1]]  # one call per seed, each with its three cells
    table = load_table(tmp_path, GRID)
    ok = table[table.status == "ok"].sort_values(["x", "seed"])
    assert ok.x.tolist() == [1, 1, 3, 3]
    assert set(table[table.status == "failed"].error) == {"ValueError: x=2 fails alone"}
    calls.clear()
    again = run(tmp_path, fn=counted, batch_by=["seed"])
    assert (again.reused, again.computed) == (4, 2)  # the failed cells are retried, batched
    assert calls == [[0], [1]]
    with pytest.raises(TypeError, match="batch_by"):
        run(tmp_path, fn=counted, batch_by="seed")


def test_a_batch_function_that_breaks_fails_its_whole_group(tmp_path):
    def broken(cells):
        return cells[:1]

    broken.__module__, broken.__qualname__ = __name__, "broken"
    summary = run(tmp_path, fn=broken, batch_by=["seed"])
    assert summary.failed == 6
    assert "one entry per cell" in load_table(tmp_path, GRID).error.iloc[0]


def test_retry_failed_must_be_a_boolean_in_a_grid_file_and_in_run_sweep(tmp_path):
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text('name: g\ncell: recon.book.sweep:demo_cell\nparams: {x: [1]}\n'
                         'retry_failed: "false"\n')
    with pytest.raises(TypeError, match="retry_failed must be true or false, got 'false'"):
        sweep.read_grid_file(grid_file)
    grid = Grid.from_dict({"name": "g", "params": {"x": [1]}})
    with pytest.raises(TypeError, match="retry_failed must be true or false"):
        run_sweep(grid, demo_cell, tmp_path / "store", retry_failed="no", progress=False)
    assert not (tmp_path / "store").exists()
