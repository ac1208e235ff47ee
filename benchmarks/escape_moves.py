"""Where the default solver's time goes, seed by seed: the escape moves at one size.

    python benchmarks/escape_moves.py [--size N D P] [--seeds 0 1 2 3 4]
                                      [--set lr=0.1 --set reseed.pool=16 ...]
                                      [--set informed_start=True ...]

For each seed, the synthetic random-features problem of ``recon.problems.setup_synthetic_rf``
(the authors' setting by default: n=20, d=100, p=20000) is solved once by the ``default``
preset, with ``--set`` overrides (``name=value`` for a field of the solver, ``part.field=value``
for a field of one of its parts: smoothing, reseed, cloning, polish). One line per seed: the
solver's seconds (compilation excluded) and compilation seconds, iterations, stop reason,
fresh starts, seconds until every sample is within 1e-3 of the truth, the largest error at
the end, then the wall seconds spent in the end game (``recon.solver.end_game``, the
Gauss-Newton polish and its re-seed rounds) and in the checkpoint re-seeds of stuck starts
(``reseed_stuck``), each timed by wrapping the solver's own function, and those moves that
took over 0.2 s, with the step at which they ran. The last line is one JSON object with
the same numbers by seed.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from dataclasses import fields, replace

import jax
import numpy as np

from recon import precision, problems
from recon import solver as solvers
from recon.metrics import per_sample_errors

MOVES = ("end_game", "reseed_stuck")


def parse_overrides(items: list[str]) -> dict:
    """``["lr=0.1", "reseed.pool=16"]`` as keyword arguments of ``recon.solver.preset``: a
    part's field replaces that field of the default part; checked by building the solver."""
    defaults = solvers.preset("default")
    overrides: dict = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected name=value or part.field=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"--set {item!r}: {text!r} is not a literal (a number, True, "
                             "False, None or a quoted string)") from None
        part, _, field = name.partition(".")
        if not field:
            overrides[name] = value
            continue
        current = overrides.get(part, getattr(defaults, part, None))
        if part not in solvers.PARTS or current is None:
            raise ValueError(f"--set {item!r}: {part!r} is not a part of the default solver "
                             f"(parts: {', '.join(sorted(solvers.PARTS))})")
        if field not in {f.name for f in fields(current)}:
            raise ValueError(f"--set {item!r}: {part} has no field {field!r}")
        overrides[part] = replace(current, **{field: value})
    solvers.preset("default", **overrides)  # an unknown name or a bad value fails now
    return overrides


def timed_moves(spent: dict, events: list):
    """Wrap the solver's moves (:data:`MOVES`) so that each call adds its wall seconds (its
    result waited for) to ``spent`` and, over 0.2 s, ``(move, step, seconds)`` to ``events``."""
    for name in MOVES:
        move = getattr(solvers, name)

        def wrapped(state, *args, _move=move, _name=name, **kwargs):
            start = time.perf_counter()
            result = jax.block_until_ready(_move(state, *args, **kwargs))
            seconds = time.perf_counter() - start
            spent[_name] = spent.get(_name, 0.0) + seconds
            if seconds > 0.2:
                events.append((_name, int(state.steps), round(seconds, 2)))
            return result

        setattr(solvers, name, wrapped)


def one_seed(n, d, p, seed, overrides, spent, events) -> dict:
    spent.clear()
    events.clear()
    dataset, model, _, key = problems.setup_synthetic_rf(n, d, p, seed)
    problem = problems.random_features_problem(model, n)
    solver = solvers.preset("default", **({"max_steps": 20000, "tol": 1e-10} | overrides))
    result = solvers.solve(problem, solver, key, truth=dataset.X, progress=False)
    hit = np.flatnonzero(result.history.max_error < 1e-3)
    return {"seed": seed, "seconds": round(result.seconds, 2),
            "compile_seconds": round(result.compile_seconds, 2),
            "iterations": result.iterations, "stop_reason": result.stop_reason,
            "fresh_starts": int(result.fresh_starts),
            "seconds_to_1e-3": (round(float(result.history.error_seconds[hit[0]]), 2)
                                if hit.size else None),
            "max_error": float(per_sample_errors(result.X, dataset.X).max()),
            **{f"{name}_seconds": round(spent.get(name, 0.0), 2) for name in MOVES},
            "moves": list(events)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs=3, type=int, default=[20, 100, 20000],
                        metavar=("N", "D", "P"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a solver override: lr=0.1, restarts=4, reseed.pool=16, ...")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    precision.use_float64()
    spent, events = {}, []
    timed_moves(spent, events)
    runs = []
    for seed in args.seeds:
        runs.append(one_seed(*args.size, seed, overrides, spent, events))
        print(" ".join(f"{k} {v}" for k, v in runs[-1].items()), flush=True)
    print(json.dumps({"size": args.size, "set": args.set, "runs": runs}))


if __name__ == "__main__":
    main()
