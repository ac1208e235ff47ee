"""Solver benchmark: time and iterations to recovery, per-iteration cost against the matrix
multiply, and the algorithmic threshold, for the default solver and the authors' `reference`
preset, in one run on one machine.

    python benchmarks/solver_benchmark.py [--quick] [--readme README.md]
    python benchmarks/solver_benchmark.py --only authors|small|middle|side|thresholds

Recovery = every sample's matched error below 1e-3. The last line printed is one JSON object
with the keys default_seconds (the slowest of seeds 0-4; null if one did not recover),
default_seconds_median, authors_setting_recovered_seeds (of authors_setting_seeds; per seed
authors_setting_stop_reasons, authors_setting_samples_recovered, authors_setting_max_error,
and, from float64 features, the final loss against the loss at the truth,
authors_setting_loss and authors_setting_truth_loss, the truth's least leave-one-out
confidence, authors_setting_truth_confidence (below the solver's ``Polish.pinned`` even the
truth would not pass its test), and authors_setting_truth_polished_error, the largest error
after the solver's float64 polish started at the truth: the closest theta lets any solver
get), authors_setting_solved_seeds (seeds recovered, or whose answer fits theta at least as
well as the truth does: theta itself does not single the truth out at 1e-3 there),
small_case_default_seconds / small_case_reference_seconds (n=10, d=30, p=3000, slowest seed),
n10_d50_p5000_* and n20_d100_p4000_* (recovered_seeds, seconds: slowest, seconds_median; the
default on seeds 0-4 at n=10, d=50, p=5000 and at ratio 2 of the paper law grid's largest size),
reference_seconds (null if the reference did not recover within
its budget), reference_budget_seconds, speedup (null then), speedup_at_least (the budget over
the default's time when the reference did not recover), threshold_default, threshold_reference
(n=5, d=20), threshold_default_n10_d50, threshold_reference_n10_d50 (seeds 0-4 each, cells
batched as in the law chapter), the side-by-side keys of n=10, d=30, p=3000 and of ratio 3 at
both threshold sizes (n10_d30_p3000_*, n5_d20_p300_*, n10_d50_p1500_*: per preset
recovered_seeds, seconds and seconds_median, then default_over_reference by seed and
default_no_later_seeds),
iteration_vs_matmul (with iteration_ms and matmul_ms, the two times at the authors' size),
chunked_peak_gib (peak memory of training and one solver step with p = 1e6, d = 3072, n = 10
random features whose V (12 GiB as one matrix) is drawn in chunks)
and law_cells_per_second_batched / _single (by size: the law chapter's cells per second,
batched as the chapter runs them and one at a time).
With --readme, the table between the benchmark markers of that file is rewritten from this run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from recon import precision, problems
from recon.book import benchmark_report
from recon.chapters import law
from recon.problems import setup_synthetic_rf
from recon.loss import projection_loss
from recon.metrics import per_sample_errors
from recon.solver import Clock, preset, solve
from recon.solver_moves import leave_one_out_confidence, polish_program
from recon.solver_parts import Polish

precision.use_float64()  # every number computed as in the book

TARGET = 1e-3
RESULTS = Path(__file__).resolve().parent.parent / "_build" / "benchmarks" / "solver.json"


def time_to_recovery(n, d, p, name, max_steps, seed=0):
    """Seconds (after compilation) and iterations until every sample is within TARGET."""
    dataset, model, _, key = setup_synthetic_rf(n, d, p, seed)
    problem = problems.random_features_problem(model, n)
    solver = preset(name, max_steps=max_steps, tol=1e-10)  # the same stopping rule for both
    result = solve(problem, solver, key, truth=dataset.X, progress=False)
    h = result.history
    hit = np.flatnonzero(h.max_error < TARGET)
    seconds = float(h.error_seconds[hit[0]]) if hit.size else None
    steps = int(h.error_steps[hit[0]]) if hit.size else None
    errors = per_sample_errors(result.X, dataset.X)
    truth = what_theta_pins(problem, dataset.X, solver.ridge)
    loss = float(projection_loss(problem, result.X.astype(jnp.float64), ridge=solver.ridge))
    return {"seconds": seconds, "iterations": steps, "budget_seconds": float(h.error_seconds[-1]),
            "budget_steps": int(h.error_steps[-1]), "stop_reason": result.stop_reason,
            "samples_recovered": int((errors < TARGET).sum()),
            "max_error": float(errors.max()), "loss": loss, **truth,
            "solved": bool((errors < TARGET).all() or loss <= truth["truth_loss"]),
            "per_iteration_s": iteration_seconds(problem, name, key)}


def what_theta_pins(problem, X_true, ridge) -> dict:
    """What ``theta`` itself says about the truth, with float64 features: its loss, its least
    leave-one-out confidence, and the largest matched error after the solver's float64 polish
    started at the truth (``truth_polished_error``): with a float32 ``theta`` the loss's
    minimum can sit away from a sample of tiny share, and then no solver gets closer."""
    X64 = jnp.asarray(X_true, jnp.float64)
    polish = polish_program(problem, Polish(), ridge, precise=True)
    X_polished = polish(jnp.asarray(X_true), problem.state, problem.theta)[0]
    return {"truth_loss": float(projection_loss(problem, X64, ridge=ridge)),
            "truth_confidence": float(leave_one_out_confidence(
                problem, problem.state, problem.theta, X_true, ridge, precise=True).min()),
            "truth_polished_error": float(per_sample_errors(X_polished, X_true).max())}


def iteration_seconds(problem, name, key, steps=500, repeats=3):
    """Seconds per plain iteration (one start, no reseeding, no polish, no error tracking):
    the best of ``repeats`` runs, as for the matrix multiply. (With the polish on, its end
    game counted too: at the authors' size 3.7-3.9 ms against 2.5-2.7 ms per iteration.)"""
    solver = preset(name, max_steps=steps, tol=0.0, restarts=1, reseed=None, cloning=None,
                    polish=None)
    return min(solve(problem, solver, key, progress=False).seconds / steps
               for _ in range(repeats))


def matmul_seconds(n, d, p, repeats=50):
    """Time of the dense products of one iteration's forward and backward passes through
    X V^T (n x d times d x p, three times: forward, and the two gradient products); the best
    of ``repeats`` calls."""
    X = jax.random.normal(jax.random.key(0), (n, d), jnp.float32)
    V = jax.random.normal(jax.random.key(1), (p, d), jnp.float32)
    G = jax.random.normal(jax.random.key(2), (n, p), jnp.float32)
    f = jax.jit(lambda X, V, G: (X @ V.T, G @ V, G.T @ X))
    jax.block_until_ready(f(X, V, G))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(X, V, G))
        best = min(best, time.perf_counter() - start)
    return best


def algorithmic_threshold(name, n, d, ratios, seeds, max_steps):
    """p*/(d n): where half of the samples are recovered (error < 1e-2), mean over seeds; the
    cells batched as the law chapter runs them (``law.rf_cells``, each band of ratios padded
    to its largest p, :func:`recon.chapters.law.ratio_bands`). Returns the threshold and the
    recovered share by ratio."""
    tops = law.ratio_bands(ratios)
    cells = [dict(n=n, d=d, ratio=r, seed=s, solver=name, max_steps=max_steps,
                  pad_to=round(top * d * n)) for r, top in zip(ratios, tops) for s in seeds]
    records = law.rf_cells(cells)
    for cell, record in zip(cells, records):
        if isinstance(record, Exception):
            raise RuntimeError(f"threshold cell {cell} failed") from record
    shares = np.array([r["recovered_fraction"] for r in records]).reshape(len(ratios), -1)
    fractions = shares.mean(axis=1)
    return law.empirical_threshold(ratios, fractions), dict(zip(ratios, fractions.tolist()))


def all_thresholds(budget, seeds) -> dict:
    """:func:`algorithmic_threshold` of both presets at :data:`THRESHOLD_SIZES`, keys
    ``(name, n, d)``."""
    thresholds = {}
    for n, d in THRESHOLD_SIZES:
        for name in ("default", "reference"):
            start = time.perf_counter()
            value, shares = algorithmic_threshold(name, n, d, THRESHOLD_RATIOS, seeds,
                                                  budget[name])
            thresholds[(name, n, d)] = value
            print(f"threshold at n={n}, d={d} ({name}, seeds {list(seeds)}): p*/(dn) = "
                  f"{value:.2f}; recovered shares {shares} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return thresholds


def law_throughput(sizes=((4, 10), (8, 20)), seeds=(0, 1, 2)):
    """Law cells per second (wall time, set-up and compilation included) at each size, for
    the ratios 0.8 to 1.6 of the law chapter's band: batched as the chapter runs them
    (``law.rf_cells``, all seeds and ratios padded to one ``P``) and one cell at a time
    (``law.rf_cell``, unpadded, first seed only). Returns ``(batched, single)`` by size;
    the printed line also gives each path's seconds, JAX's compilation seconds in them and
    the part of those outside the solver's programs (:attr:`recon.solver.Clock.
    eager_compile_seconds`)."""
    ratios = [0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]
    batched, single = {}, {}
    for n, d in sizes:
        cells = [dict(n=n, d=d, ratio=r, seed=s, pad_to=round(1.6 * n * d))
                 for r in ratios for s in seeds]
        start, clock = time.perf_counter(), Clock()
        law.rf_cells(cells)
        wall, compiled, eager = (time.perf_counter() - start, clock.compile_seconds,
                                 clock.eager_compile_seconds)
        batched[f"n={n},d={d}"] = len(cells) / wall
        start, clock = time.perf_counter(), Clock()
        for r in ratios:
            law.rf_cell(n, d, r, seeds[0])
        wall_one, compiled_one, eager_one = (time.perf_counter() - start,
                                             clock.compile_seconds, clock.eager_compile_seconds)
        single[f"n={n},d={d}"] = len(ratios) / wall_one
        print(f"law cells at n={n}, d={d}: {batched[f'n={n},d={d}']:.2f} cells/s batched "
              f"({len(cells)} cells in {wall:.1f} s, {compiled:.1f} s of it compiling, "
              f"{eager:.1f} s of that array operations outside the solver's programs), "
              f"{single[f'n={n},d={d}']:.2f} cells/s one at a time ({len(ratios)} cells in "
              f"{wall_one:.1f} s, {compiled_one:.1f} s compiling, {eager_one:.1f} s outside "
              "the programs)")
    return batched, single


def chunked_peak(p=1_000_000, d=3072, n=10, chunk=16_384, steps=1):
    """Train streamed RF (V never stored) and run ``steps`` solver steps; return the peak
    resident memory of this process in GiB."""
    from flax import nnx

    from recon import data, train
    from recon.models import RandomFeatures

    start = time.perf_counter()
    dataset = data.synthetic_regression(jax.random.key(0), n, d)
    model = RandomFeatures(d, p, "relu", rngs=nnx.Rngs(params=1), chunk=chunk)
    fit = train.fit_min_norm(model, dataset.X, dataset.y)
    problem = problems.random_features_problem(model, n)
    solver = preset("default", restarts=1, max_steps=steps, chunk=1, reseed=None, cloning=None)
    result = solve(problem, solver, jax.random.key(2), progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"streamed RF p={p} d={d} n={n}: train MSE {fit.train_mse:.1e}, loss after {steps} "
          f"step(s) {result.loss:.3f}, {time.perf_counter() - start:.0f} s, "
          f"peak memory {peak:.2f} GiB (V alone would be {p * d * 4 / 2**30:.1f} GiB)")
    return peak


def chunked_peak_in_subprocess():
    """Peak memory of :func:`chunked_peak`, measured in a fresh process of its own."""
    out = subprocess.run([sys.executable, __file__, "--chunked-only"], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()
    print(*out[:-1], sep="\n")
    return json.loads(out[-1])["chunked_peak_gib"]


def _commit() -> str:
    """The checkout's commit (with ``+`` if the tree has changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


SEEDS = (0, 1, 2, 3, 4)


AUTHORS, SMALL = (20, 100, 20000), (10, 30, 3000)
#: the default alone, every seed: n=10, d=50, p=5000, and ratio 2 of the paper law grid's
#: largest size (n=20, d=100)
MIDDLE, LAW_RATIO_2 = (10, 50, 5000), (20, 100, 4000)
DEFAULT_ONLY = (MIDDLE, LAW_RATIO_2)
#: both presets, every seed, at ratio 3 of the two threshold sizes (n=5, d=20 and n=10, d=50)
SIDE_BY_SIDE = ((5, 20, 300), (10, 50, 1500))
PIECES = {"authors": [AUTHORS], "small": [SMALL], "middle": [MIDDLE, LAW_RATIO_2],
          "side": list(SIDE_BY_SIDE)}
#: the sizes of the algorithmic thresholds, both presets, and their ratios
THRESHOLD_SIZES = ((5, 20), (10, 50))
THRESHOLD_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


def race(budget, sizes=(AUTHORS, SMALL, MIDDLE, LAW_RATIO_2) + SIDE_BY_SIDE,
         names=("default", "reference")):
    """Time to recovery of both presets at the authors' size (the default on every seed of
    ``SEEDS``, the reference on seed 0: its budget is long), of both on every seed at n=10,
    d=30, p=3000 and at :data:`SIDE_BY_SIDE`, and of the default alone at
    :data:`DEFAULT_ONLY` (every seed). Keys ``(n, d, p, name, seed)``."""
    results = {}
    for n, d, p in sizes:
        for name in names:
            if name != "default" and (n, d, p) in DEFAULT_ONLY:
                continue
            seeds = SEEDS if (name == "default" or (n, d, p) != AUTHORS) else SEEDS[:1]
            for seed in seeds:
                r = time_to_recovery(n, d, p, name, budget[name], seed)
                results[(n, d, p, name, seed)] = r
                print(f"n={n} d={d} p={p} {name:9s} seed {seed}: recovered in "
                      f"{r['seconds'] if r['seconds'] is not None else 'NOT'} s, "
                      f"{r['iterations']} iterations (budget {r['budget_steps']} steps, "
                      f"{r['budget_seconds']:.1f} s; {1e3 * r['per_iteration_s']:.2f} "
                      f"ms/iteration); stopped on {r['stop_reason']} with "
                      f"{r['samples_recovered']}/{n} samples within {TARGET:g} (largest "
                      f"error {r['max_error']:.2g}); loss {r['loss']:.2e}, at the truth "
                      f"{r['truth_loss']:.2e} (the truth's least leave-one-out confidence "
                      f"{r['truth_confidence']:.3g}; polished from the truth, largest error "
                      f"{r['truth_polished_error']:.2g})", flush=True)
    return results


def _slowest(results, n, d, p, name):
    """The slowest seed's seconds to recovery (``None`` if a seed did not recover), the
    median over the recovered seeds, and how many recovered."""
    times = [r["seconds"] for (n_, d_, p_, name_, _), r in results.items()
             if (n_, d_, p_, name_) == (n, d, p, name)]
    done = [t for t in times if t is not None]
    return (max(done) if len(done) == len(times) else None,
            float(np.median(done)) if done else None, len(done))


def race_summary(results) -> dict:
    """The keys of the race's sizes in ``results`` (see :func:`summarise`)."""
    summary = {}
    if any(key[:3] == AUTHORS for key in results):
        slowest, median, recovered = _slowest(results, *AUTHORS, "default")
        runs = [results[(*AUTHORS, "default", s)] for s in SEEDS]
        summary.update({
            "default_seconds": slowest,
            "default_seconds_median": median,
            "authors_setting_recovered_seeds": recovered,
            "authors_setting_seeds": len(SEEDS),
            "authors_setting_solved_seeds": sum(r["solved"] for r in runs),
            **{f"authors_setting_{key}": [r[run_key] for r in runs] for key, run_key in (
                ("stop_reasons", "stop_reason"), ("samples_recovered", "samples_recovered"),
                ("truth_loss", "truth_loss"), ("loss", "loss"),
                ("truth_confidence", "truth_confidence"), ("max_error", "max_error"),
                ("truth_polished_error", "truth_polished_error"))}})
    for size in DEFAULT_ONLY:
        if any(key[:3] == size for key in results):
            label = "n{}_d{}_p{}".format(*size)
            slowest, median, recovered = _slowest(results, *size, "default")
            summary.update({f"{label}_recovered_seeds": recovered, f"{label}_seeds": len(SEEDS),
                            f"{label}_seconds": slowest, f"{label}_seconds_median": median})
    if any(key[:3] == SMALL for key in results):
        summary.update({
            "small_case_default_seconds": _slowest(results, *SMALL, "default")[0],
            "small_case_reference_seconds": _slowest(results, *SMALL, "reference")[0]})
    for size in (SMALL,) + SIDE_BY_SIDE:
        if any(key[:3] == size and key[3] == "reference" for key in results):
            summary.update(side_by_side(results, size))
    return summary


def side_by_side(results, size) -> dict:
    """Both presets on every seed at ``size``: per preset the seeds recovered and the slowest
    and median time; per seed the default's time over the reference's
    (``*_default_over_reference``, ``None`` where one did not recover); and the seeds where
    the default recovered no later than the reference (or the reference not at all)."""
    label = "n{}_d{}_p{}".format(*size)
    out = {}
    for name in ("default", "reference"):
        slowest, median, recovered = _slowest(results, *size, name)
        out.update({f"{label}_{name}_recovered_seeds": recovered,
                    f"{label}_{name}_seconds": slowest,
                    f"{label}_{name}_seconds_median": median})
    pairs = [(results[(*size, "default", s)]["seconds"],
              results[(*size, "reference", s)]["seconds"]) for s in SEEDS]
    out[f"{label}_default_over_reference"] = [
        ours / theirs if ours is not None and theirs is not None else None
        for ours, theirs in pairs]
    out[f"{label}_default_no_later_seeds"] = sum(
        ours is not None and (theirs is None or ours <= theirs) for ours, theirs in pairs)
    out[f"{label}_seeds"] = len(SEEDS)
    return out


def summarise(results, iteration_s, matmul_s, thresholds, throughput) -> dict:
    """The JSON summary: the race at the authors' size, the thresholds, the iteration cost and
    the streamed-V memory (measured now, in a fresh process)."""
    slowest = _slowest(results, *AUTHORS, "default")[0]
    reference = results[(*AUTHORS, "reference", 0)]
    speedup = (reference["seconds"] / slowest if reference["seconds"] and slowest else None)
    at_least = (reference["budget_seconds"] / slowest if speedup is None and slowest
                else speedup)
    finite = {k: (None if np.isnan(v) else v) for k, v in thresholds.items()}
    return {
        **race_summary(results),
        "reference_seconds": reference["seconds"],
        "reference_budget_seconds": reference["budget_seconds"],
        "speedup": speedup,
        "speedup_at_least": at_least,
        "threshold_default": finite[("default", 5, 20)],
        "threshold_reference": finite[("reference", 5, 20)],
        "threshold_default_n10_d50": finite[("default", 10, 50)],
        "threshold_reference_n10_d50": finite[("reference", 10, 50)],
        "threshold_seeds": len(SEEDS),
        "iteration_vs_matmul": iteration_s / matmul_s,
        "iteration_ms": 1e3 * iteration_s,
        "matmul_ms": 1e3 * matmul_s,
        "chunked_peak_gib": chunked_peak_in_subprocess(),
        "law_cells_per_second_batched": throughput[0],
        "law_cells_per_second_single": throughput[1],
    }


def cpu_model() -> str:
    """The processor's model name (Linux's ``/proc/cpuinfo``, else
    ``platform.processor()``): timings differ several-fold between CPUs, so the table names
    the one it was measured on."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def write(summary: dict, args) -> None:
    """The summary with its provenance to ``args.output`` (and the README table)."""
    record = {**summary, "quick": args.quick, "devices": [str(d) for d in jax.devices()],
              "machine": f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores",
              "date": datetime.date.today().isoformat(), "commit": _commit()}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=1))
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(benchmark_report.replace_block(readme.read_text(),
                                                         benchmark_report.markdown(record)))
        print(f"rewrote the benchmark table of {readme}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets (a smoke run)")
    parser.add_argument("--output", default=str(RESULTS),
                        help=f"where to write the JSON summary too (default {RESULTS})")
    parser.add_argument("--readme", metavar="PATH",
                        help="rewrite the benchmark table of this Markdown file (README.md)")
    parser.add_argument("--chunked-only", action="store_true",
                        help="only the streamed-V memory measurement (run in a fresh process)")
    parser.add_argument("--only", choices=sorted(PIECES) + ["law", "thresholds"],
                        help="only the race at one size (authors: n=20, d=100, p=20000, the "
                             "default on seeds 0-4; small: n=10, d=30, p=3000, both presets "
                             "on seeds 0-4; middle: the default on seeds 0-4 at n=10, d=50, "
                             "p=5000 and n=20, d=100, p=4000; side: both presets on seeds 0-4 "
                             "at n=5, d=20, p=300 and n=10, d=50, p=1500) and its keys of the "
                             "summary, or (thresholds) the algorithmic thresholds of both "
                             "presets at n=5, d=20 and n=10, d=50, or (law) the law cells per "
                             "second, batched and one at a time; nothing is written")
    args = parser.parse_args()
    if args.readme:  # fail now, not after the run, if the block is missing
        benchmark_report.replace_block(Path(args.readme).read_text(), "")
    if args.chunked_only:
        print(json.dumps({"chunked_peak_gib": chunked_peak()}))
        return
    budget = {"default": 3000 if args.quick else 20000,
              "reference": 2000 if args.quick else 60000}
    print(f"devices: {jax.devices()}")
    if args.only == "thresholds":
        print(json.dumps({f"threshold_{name}_n{n}_d{d}": value for (name, n, d), value
                          in all_thresholds(budget, SEEDS).items()}))
        return
    if args.only == "law":
        batched, single = law_throughput()
        print(json.dumps({"law_cells_per_second_batched": batched,
                          "law_cells_per_second_single": single}))
        return
    if args.only:
        names = ("default",) if args.only == "authors" else ("default", "reference")
        print(json.dumps(race_summary(race(budget, PIECES[args.only], names))))
        return
    results = race(budget)
    mm = matmul_seconds(20, 100, 20000)
    per_it = min(results[(*AUTHORS, "default", s)]["per_iteration_s"]  # a plain iteration,
                 for s in SEEDS)                                    # best of all, as the matmul
    print(f"matrix multiply for one iteration's work: {1e3 * mm:.2f} ms; "
          f"iteration / matmul = {per_it / mm:.2f}")
    thresholds = all_thresholds(budget, SEEDS[:2] if args.quick else SEEDS)
    throughput = law_throughput()
    summary = summarise(results, per_it, mm, thresholds, throughput)
    write(summary, args)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
