"""The escape-move benchmark's command line: its solver overrides are checked before any run."""

import runpy
from types import SimpleNamespace

import pytest

from recon import solver as solvers
from recon.book.notebooks import ROOT


def _script():
    return SimpleNamespace(**runpy.run_path(str(ROOT / "benchmarks" / "escape_moves.py")))


def test_overrides_set_solver_fields_and_fields_of_its_parts():
    overrides = _script().parse_overrides(["lr=0.1", "restarts=4", "reseed.pool=16",
                                           "reseed.steps=50", "polish.below=1e-4"])
    assert overrides["lr"] == 0.1 and overrides["restarts"] == 4
    assert overrides["reseed"] == solvers.Reseed(pool=16, steps=50)
    assert overrides["polish"] == solvers.Polish(below=1e-4)
    solver = solvers.preset("default", **overrides)
    assert solver.reseed.pool == 16 and solver.polish.below == 1e-4 and solver.restarts == 4


@pytest.mark.parametrize("item, message", [
    ("lr", "expected name=value"),
    ("reseeds.pool=16", "'reseeds' is not a part"),
    ("reseed.size=16", "reseed has no field 'size'"),
    ("reseed.pool=-1", "reseed pool"),
    ("polish.below=small", "'small' is not a literal"),
])
def test_bad_overrides_are_named(item, message):
    with pytest.raises(ValueError, match=message):
        _script().parse_overrides([item])


def test_an_unknown_solver_setting_is_named_before_any_run():
    with pytest.raises(TypeError, match="unknown solver setting.*lrr; accepted: lr"):
        _script().parse_overrides(["lrr=0.1"])


def test_a_seed_reports_its_run_and_the_time_of_its_moves(monkeypatch):
    script = _script()
    for name in script.MOVES:  # restored after the test
        monkeypatch.setattr(solvers, name, getattr(solvers, name))
    spent, events = {}, []
    script.timed_moves(spent, events)
    run = script.one_seed(3, 6, 60, 0, {"max_steps": 600}, spent, events)
    assert run["seed"] == 0 and run["stop_reason"] == "tol" and run["max_error"] < 1e-3
    assert run["iterations"] > 0 and run["seconds"] >= 0 and run["fresh_starts"] >= 0
    assert run["end_game_seconds"] > 0 and run["reseed_stuck_seconds"] >= 0  # polished at tol
    assert all(move in script.MOVES and seconds > 0.2 for move, _, seconds in run["moves"])
