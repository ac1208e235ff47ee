"""The reconstruction solver: minimise the projection loss over candidates on the spheres.

For candidates ``X_hat`` with features ``F = phi(X_hat)`` the loss is
``L(X_hat) = ||theta - P(X_hat) theta||^2 / ||theta||^2`` (:mod:`recon.loss`), 0 exactly when
``theta`` lies in the span of the candidate features; each step is a step on the product of
spheres (:mod:`recon.sphere`).

A :class:`Solver` is an optax optimiser, a budget, a stopping rule and optional escape moves
(:mod:`recon.solver_parts`), each ``None`` when off. :func:`solve` is a set-up, a loop of
compiled blocks with checkpoints between them (:func:`recon.blocks.run_blocks`), a finish (the
polish) and a report. The run's state is the :class:`SolverState` NamedTuple, and each
intervention (:func:`keep_best`, :func:`checkpoint`, :func:`clone_best`, :func:`reseed_stuck`,
:func:`polish_best`) is a function from a state to a state.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recon import checks, precision, sphere
from recon.blocks import run_blocks
from recon.loss import projection_share
from recon.problems import ReconstructionProblem
from recon.solver_moves import (clone_targets, initial_candidates, polish_applies,
                                polish_program, reseed_program)
from recon.solver_parts import Cloning, Polish, Reseed, Smoothing

Array = jax.Array

__all__ = ["Cloning", "History", "Polish", "PRESETS", "Reconstruction", "Reseed", "Smoothing",
           "Solver", "SolverState", "clone_targets", "initial_candidates", "polish_applies",
           "preset", "resolve_restarts", "smoothing_steps", "solve"]

_PARTS = {"smoothing": Smoothing, "reseed": Reseed, "cloning": Cloning, "polish": Polish}


@dataclass(frozen=True)
class Solver:
    """Settings of the projection-loss minimisation.

    Attributes:
        optimizer: any optax transformation; it receives the gradient of ``L`` (projected on
            the tangent spaces of the spheres when ``tangent_gradients``).
        max_steps: step budget.
        tol: stop once ``L <= tol``.
        tangent_gradients: project each row's gradient onto the tangent space of its sphere
            before the optimizer sees it (Riemannian gradient); the authors do not.
        restarts: independent random starts run side by side (``jax.vmap``); the first to
            reach ``tol`` (or the lowest loss) is kept. 0 chooses by problem size: the largest
            power of two (at most ``max_auto_restarts``) keeping ``restarts * n * d * P`` under
            ``auto_restart_work``, so small problems get many starts for little time.
        chunk: steps per compiled block; the stopping rule and progress bar update per block.
        ridge: relative ridge of the Gram solve (:func:`recon.loss.ridged_gram`).
        smoothing, reseed, cloning, polish: the optional escape moves
            (:mod:`recon.solver_parts`), ``None`` when off.
        name: a label for reports.
    """

    optimizer: optax.GradientTransformation
    max_steps: int = 20_000
    tol: float = 1e-7
    tangent_gradients: bool = True
    restarts: int = 1
    max_auto_restarts: int = 16
    auto_restart_work: float = 2e6
    chunk: int = 100
    ridge: float = 1e-10
    smoothing: Smoothing | None = None
    reseed: Reseed | None = None
    cloning: Cloning | None = None
    polish: Polish | None = None
    name: str = "custom"

    def __post_init__(self):
        if not hasattr(self.optimizer, "update"):
            raise TypeError(f"optimizer must be an optax.GradientTransformation, "
                            f"got {type(self.optimizer).__name__}")
        checks.positive_int("max_steps", self.max_steps)
        checks.positive_float("tol", self.tol, allow_zero=True)
        checks.nonnegative_int("restarts", self.restarts)
        checks.positive_int("max_auto_restarts", self.max_auto_restarts)
        checks.positive_float("auto_restart_work", self.auto_restart_work)
        checks.positive_int("chunk", self.chunk)
        checks.positive_float("ridge", self.ridge, allow_zero=True)
        for name, part in _PARTS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, part):
                raise TypeError(f"{name} must be a recon.solver.{part.__name__} or None, "
                                f"got {value!r}")
        if self.reseed is not None and self.reseed.patience % self.chunk:
            raise ValueError(f"reseed patience ({self.reseed.patience}) must be a multiple of "
                             f"chunk ({self.chunk})")
        if self.cloning is not None and self.reseed is None:
            raise ValueError("cloning happens at the re-seeding checks: give reseed=Reseed() "
                             "too, or cloning=None")


def reference_solver(lr: float = 20.0) -> Solver:
    """The authors' settings: SGD with momentum 0.9 and learning rate 20 (synthetic RF), raw
    Euclidean gradients, rows rescaled to the sphere after every step, one start, their stop
    (``L <= 1e-7`` or 1,000,000 steps), no escape moves."""
    lr = checks.positive_float("lr", lr)
    return Solver(optax.sgd(lr, momentum=0.9), max_steps=1_000_000, tol=1e-7,
                  tangent_gradients=False, restarts=1, name="reference")


def default_solver(lr: float = 0.05) -> Solver:
    """Our default: Adam on Riemannian (tangent) gradients; several random starts at once on
    small problems (``restarts=0``: chosen by size); every part on: smoothed starts
    (:class:`Smoothing`), stuck starts re-seeded (:class:`Reseed`) or cloned from the best
    (:class:`Cloning`), and a Gauss-Newton polish if the budget ends short of ``tol``
    (:class:`Polish`). Its tolerance is tighter than the authors' (1e-10 against 1e-7): with
    the float64 Gram solve the loss gets there, and at 1e-7 a sample can still be off by more
    than 1e-2."""
    lr = checks.positive_float("lr", lr)
    return Solver(optax.adam(lr), max_steps=20_000, tol=1e-10, tangent_gradients=True,
                  restarts=0, smoothing=Smoothing(), reseed=Reseed(), cloning=Cloning(),
                  polish=Polish(), name="default")


PRESETS = {"default": default_solver, "reference": reference_solver}


def preset(name: str, lr: float | None = None, **overrides) -> Solver:
    """A named solver preset (``default`` or ``reference``) with its learning rate ``lr`` and
    any :class:`Solver` field overridden, the same for every preset: ``max_steps``, ``tol``,
    ``restarts``, ``chunk``, ``ridge``, and the parts (``reseed=None`` turns re-seeding off,
    ``polish=Polish(evaluations=50)`` changes the polish)."""
    checks.choice("solver preset", name, PRESETS)
    accepted = {f.name for f in fields(Solver)} - {"optimizer", "name"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise TypeError(f"unknown solver setting(s) {', '.join(unknown)}; accepted: lr, "
                        f"{', '.join(sorted(accepted))}")
    solver = PRESETS[name]() if lr is None else PRESETS[name](lr)
    return replace(solver, **overrides)


class History(NamedTuple):
    """Loss after every step, and (when the truth is known) at the end of every block: the
    step, the mean and the largest matched per-sample error, and the seconds elapsed."""

    loss: np.ndarray
    error_steps: np.ndarray
    error: np.ndarray
    max_error: np.ndarray
    error_seconds: np.ndarray


class Reconstruction(NamedTuple):
    """A solver's output: the best candidates ``X`` seen (lowest loss at a block end, over
    all starts), their loss, the number of iterations run, the wall time after compilation,
    whether ``loss <= tol`` was reached, the history, and the compilation time."""

    X: Array
    loss: float
    iterations: int
    seconds: float
    converged: bool
    history: History
    compile_seconds: float = 0.0


class SolverState(NamedTuple):
    """The state of a run between blocks.

    Attributes:
        X: current candidates of every start, ``(restarts, n, *input_shape)``.
        opt_state: the optimiser's state, one per start (vmapped).
        done: starts that reached ``tol`` (or a non-finite loss) and stopped moving.
        smoothed: starts on the smoothed loss during the smoothing phase.
        steps: steps run so far.
        key: the key for the next random move.
        best_X, best_loss: each start's best candidates and loss at a block end.
        checkpoint: each start's loss at the last re-seeding check.
        attempts: re-seeds so far per start (which candidate the next one replaces).
    """

    X: Array
    opt_state: Any
    done: Array
    smoothed: Array
    steps: int
    key: Array
    best_X: Array
    best_loss: np.ndarray
    checkpoint: np.ndarray
    attempts: np.ndarray


def resolve_restarts(solver: Solver, problem: ReconstructionProblem) -> int:
    """The number of random starts ``solver`` runs on ``problem`` (see ``Solver.restarts``)."""
    if solver.restarts:
        return solver.restarts
    work = problem.n * problem.d * problem.P
    fits = max(1, int(solver.auto_restart_work // work))
    return int(min(solver.max_auto_restarts, 2 ** (fits.bit_length() - 1)))


def smoothing_steps(problem: ReconstructionProblem, solver: Solver, restarts: int) -> int:
    """The length of the smoothing phase of ``solver`` on ``problem`` with ``restarts``
    starts: ``smoothing.steps``, at most half of ``max_steps``, rounded down to whole blocks;
    0 when smoothing is off, the problem has no smoothed features or there is a single start
    (start 0 always runs on the exact features)."""
    if solver.smoothing is None or problem.smoothed_features is None or restarts < 2:
        return 0
    steps = min(solver.smoothing.steps, solver.max_steps // 2)
    return steps - steps % solver.chunk


def step_optimizer(problem: ReconstructionProblem, solver: Solver) -> optax.GradientTransformation:
    """The transformation each step applies: ``solver.optimizer``, after the tangent
    projection (:func:`recon.sphere.tangent_projection`) when ``solver.tangent_gradients``."""
    if solver.tangent_gradients:
        return optax.chain(sphere.tangent_projection(problem.radius), solver.optimizer)
    return solver.optimizer


def block_program(problem: ReconstructionProblem, solver: Solver, smooth_until: int = 0):
    """A jitted ``block(X, opt_state, done, smoothed, state, theta, first_step, limit)``
    running ``solver.chunk`` steps for every start (vmapped); steps from ``limit`` on (counted
    within the block) leave the candidates unchanged, so the budget is never overrun.

    With ``smooth_until > 0`` this is the block of the smoothing phase: starts flagged
    ``smoothed`` minimise the loss of the smoothed features with ``beta`` rising
    geometrically from ``beta_from`` (step 0) to ``beta_to`` (step ``smooth_until``), and
    cannot stop yet. Otherwise all starts use the exact features and the updates of flagged
    starts are scaled by ``refine_scale``.
    """
    radius, tol, ridge = problem.radius, solver.tol, solver.ridge
    optimizer = step_optimizer(problem, solver)
    smoothing = solver.smoothing

    def exact(X, state, theta):
        return projection_share(problem.features(state, X), theta, ridge)

    def loss(X, state, theta, t, smoothed):
        if not smooth_until:
            return exact(X, state, theta)

        def soft(X):
            growth = smoothing.beta_to / smoothing.beta_from
            beta = smoothing.beta_from * growth ** (t / smooth_until)
            return projection_share(problem.smoothed_features(state, X, beta), theta, ridge)

        return jax.lax.cond(smoothed, soft, lambda X: exact(X, state, theta), X)

    value_and_grad = jax.value_and_grad(loss)
    refine = smoothing is not None and smoothing.refine_scale != 1.0 and not smooth_until

    def step(carry, t, smoothed, state, theta, frozen):
        X, opt_state, done = carry
        value, G = value_and_grad(X, state, theta, t, smoothed)
        scale = jnp.where(smoothed, smoothing.refine_scale, 1.0) if refine else None
        X_new, new_opt_state = sphere.sphere_step(X, G, opt_state, optimizer, radius, scale)
        can_stop = ~smoothed if smooth_until else True
        done = done | ((value <= tol) & can_stop) | ~jnp.isfinite(value)
        hold = done | frozen
        X = jnp.where(hold, X, X_new)
        opt_state = jax.tree.map(lambda a, b: jnp.where(hold, a, b), opt_state, new_opt_state)
        return (X, opt_state, done), value

    def block(X, opt_state, done, smoothed, state, theta, first_step, limit):
        def one(X, opt_state, done, smoothed):
            index = jnp.arange(solver.chunk)
            return jax.lax.scan(
                lambda c, i: step(c, first_step + i, smoothed, state, theta, i >= limit),
                (X, opt_state, done), index)

        return jax.vmap(one)(X, opt_state, done, smoothed)

    return jax.jit(block)


class Clock:
    """Wall time of a run with compilation counted apart (``compile_seconds``)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.compile_seconds = 0.0

    def compiling(self, thunk):
        """``thunk()``, its time counted as compilation and kept out of :meth:`seconds`."""
        tic = time.perf_counter()
        result = thunk()
        elapsed = time.perf_counter() - tic
        self.compile_seconds += elapsed
        self.start += elapsed
        return result

    def seconds(self) -> float:
        """Seconds since the start, compilation excluded."""
        return time.perf_counter() - self.start


class Programs:
    """The compiled programs of one run: the exact and smoothing blocks, the loss of every
    start, and (compiled on first use: most runs never need it) the re-seed search."""

    def __init__(self, problem: ReconstructionProblem, solver: Solver, state: SolverState,
                 sharp_from: int, clock: Clock):
        self.problem, self.solver, self.clock = problem, solver, clock
        args = (state.X, state.opt_state, state.done, state.smoothed, problem.state,
                problem.theta, 0, solver.chunk)
        self.exact = clock.compiling(
            lambda: block_program(problem, solver).lower(*args).compile())
        self.smooth = (clock.compiling(lambda: block_program(problem, solver, sharp_from)
                                       .lower(*args).compile()) if sharp_from else None)
        self.loss = jax.jit(jax.vmap(
            lambda X, s, theta: projection_share(problem.features(s, X), theta, solver.ridge),
            in_axes=(0, None, None)))
        # a first call fills the jit cache that later calls use (.lower().compile() does not)
        clock.compiling(lambda: jax.block_until_ready(
            self.loss(state.X, problem.state, problem.theta)))
        self.init = jax.vmap(step_optimizer(problem, solver).init)
        self._reseed = None

    def reseed(self, X, **kwargs):
        """:func:`recon.solver_moves.reseed_program`, compiled at the first call."""
        if self._reseed is None:
            program = reseed_program(self.problem, self.solver.reseed, self.solver.ridge)
            self._reseed = self.clock.compiling(lambda: program.lower(X, **kwargs).compile())
        return self._reseed(X, **kwargs)


class Recorder:
    """The history of a run: every step's loss per start, and (when the truth is known) the
    matched errors of the best candidates at each block end."""

    def __init__(self, truth, error_fn, clock: Clock):
        self.truth, self.error_fn, self.clock = truth, error_fn, clock
        self.losses: list[np.ndarray] = []
        self.error_steps, self.errors, self.max_errors, self.error_seconds = [], [], [], []

    def record_errors(self, X_best, steps: int) -> None:
        """Errors of ``X_best`` against the truth (nothing when the truth is unknown)."""
        if self.truth is None:
            return
        sample_errors = np.asarray(self.error_fn(X_best, self.truth))
        self.error_steps.append(steps)
        self.errors.append(float(sample_errors.mean()))
        self.max_errors.append(float(sample_errors.max()))
        self.error_seconds.append(self.clock.seconds())

    def history(self, loss: np.ndarray) -> History:
        """The :class:`History` with the given loss curve."""
        return History(loss, np.asarray(self.error_steps), np.asarray(self.errors),
                       np.asarray(self.max_errors), np.asarray(self.error_seconds))


def initial_state(problem: ReconstructionProblem, solver: Solver, restarts: int,
                  sharp_from: int, key: Array) -> SolverState:
    """Random starts on the spheres (all but start 0 smoothed while ``sharp_from > 0``)."""
    key, init_key = jax.random.split(key)
    X = initial_candidates(init_key, problem, restarts, problem.theta.dtype)
    smoothed = (np.arange(restarts) > 0) & (sharp_from > 0)
    return SolverState(X, jax.vmap(step_optimizer(problem, solver).init)(X),
                       jnp.zeros((restarts,), bool), jnp.asarray(smoothed), 0, key, X,
                       np.full(restarts, np.inf), np.full(restarts, np.inf),
                       np.zeros(restarts, dtype=np.int32))


def keep_best(state: SolverState, current: np.ndarray) -> SolverState:
    """Each start's best candidates and loss, updated with its ``current`` loss."""
    improved = current < state.best_loss
    mask = jnp.asarray(improved).reshape((-1,) + (1,) * (state.X.ndim - 1))
    return state._replace(best_loss=np.where(improved, current, state.best_loss),
                          best_X=jnp.where(mask, state.X, state.best_X))


def clone_best(state: SolverState, *, current: np.ndarray, stuck: np.ndarray,
               share: float) -> tuple[SolverState, np.ndarray]:
    """Restart the stuck starts among the worst ``share`` from a copy of the best start
    (:func:`recon.solver_moves.clone_targets`), each to try a different candidate; returns the
    state and the flags of the clones (their re-seed explores a random point)."""
    explore = np.zeros(len(current), bool)
    leader, clones = clone_targets(current, stuck, share)
    if not clones:
        return state, explore
    attempts, checkpoint_ = state.attempts.copy(), state.checkpoint.copy()
    attempts[clones] = attempts[leader] + np.arange(len(clones))
    checkpoint_[clones] = current[leader]
    explore[clones] = True
    X = state.X.at[jnp.asarray(clones)].set(state.X[leader])
    return state._replace(X=X, attempts=attempts, checkpoint=checkpoint_), explore


def reseed_stuck(state: SolverState, *, stuck: np.ndarray, explore: np.ndarray,
                 programs: Programs) -> SolverState:
    """Replace a candidate of every ``stuck`` start (:func:`recon.solver_moves.reseed_program`;
    a random point where ``explore``) and reset those starts' optimiser states."""
    problem = programs.problem
    key, sub = jax.random.split(state.key)
    X = programs.reseed(state.X, keys=jax.random.split(sub, len(stuck)),
                        stuck=jnp.asarray(stuck), attempts=jnp.asarray(state.attempts),
                        explore=jnp.asarray(explore), state=problem.state, theta=problem.theta)
    fresh, flags = programs.init(X), jnp.asarray(stuck)
    opt_state = jax.tree.map(
        lambda a, b: jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
        fresh, state.opt_state)
    return state._replace(X=X, opt_state=opt_state, key=key,
                          attempts=state.attempts + stuck)


def checkpoint(state: SolverState, current: np.ndarray, *, solver: Solver, sharp_from: int,
               programs: Programs) -> SolverState:
    """The re-seeding check: a start on the exact loss whose loss fell by less than half
    since the last check (and is above ``tol``) is stuck; stuck starts are cloned from the
    best (:func:`clone_best`, once the smoothing phase is over) or re-seeded
    (:func:`reseed_stuck`)."""
    exact_now = ~np.asarray(state.smoothed) | (state.steps > sharp_from)
    stuck = (current > 0.5 * state.checkpoint) & (current > solver.tol) & exact_now
    state = state._replace(checkpoint=np.where(exact_now, current, state.checkpoint))
    explore = np.zeros(len(current), bool)
    if solver.cloning is not None and state.steps > sharp_from:
        state, explore = clone_best(state, current=current, stuck=stuck,
                                    share=solver.cloning.share)
    if stuck.any():
        state = reseed_stuck(state, stuck=stuck, explore=explore, programs=programs)
    return state


def advance(state: SolverState, *, problem: ReconstructionProblem, solver: Solver,
            programs: Programs, recorder: Recorder, sharp_from: int):
    """One block of steps for every start, then the bookkeeping between blocks: the loss of
    each start (refusing NaN and infinities), the best candidates, the error history and, when
    due, the re-seeding :func:`checkpoint`. Returns ``(state, steps run)``."""
    block = programs.smooth if state.steps < sharp_from else programs.exact
    limit = min(solver.chunk, solver.max_steps - state.steps)
    (X, opt_state, done), values = block(state.X, state.opt_state, state.done, state.smoothed,
                                         problem.state, problem.theta, state.steps, limit)
    values = np.asarray(values)[:, :limit]  # (restarts, steps)
    recorder.losses.append(values)
    state = state._replace(X=X, opt_state=opt_state, done=done, steps=state.steps + limit)
    current = np.asarray(programs.loss(X, problem.state, problem.theta))
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(current))):
        raise FloatingPointError(
            f"the projection loss became NaN or infinite near step {state.steps}: lower the "
            f"learning rate or raise the ridge")
    state = keep_best(state, current)
    recorder.record_errors(state.best_X[int(np.argmin(state.best_loss))], state.steps)
    if (solver.reseed is not None and state.steps % solver.reseed.patience == 0
            and state.steps < solver.max_steps):
        state = checkpoint(state, current, solver=solver, sharp_from=sharp_from,
                           programs=programs)
    return state, limit


def polish_best(state: SolverState, *, problem: ReconstructionProblem, solver: Solver,
                programs: Programs, recorder: Recorder) -> SolverState:
    """The finish: the Gauss-Newton polish (:class:`recon.solver_parts.Polish`) of the best
    start, when it applies and its loss lies between ``tol`` and ``polish.below``; kept if it
    lowers the loss."""
    best = int(np.argmin(state.best_loss))
    loss = state.best_loss[best]
    if not (polish_applies(problem, solver.polish) and solver.tol < loss < solver.polish.below):
        return state
    run, compile_both = polish_program(problem, solver.polish, solver.ridge)
    programs.clock.compiling(lambda: compile_both(state.best_X[best]))
    X_new = run(state.best_X[best])
    loss_new = float(programs.loss(X_new[None], problem.state, problem.theta)[0])
    if loss_new >= loss:
        return state
    best_loss = state.best_loss.copy()
    best_loss[best] = loss_new
    recorder.record_errors(X_new, state.steps)
    return state._replace(best_loss=best_loss, best_X=state.best_X.at[best].set(X_new))


def report(state: SolverState, *, solver: Solver, sharp_from: int, recorder: Recorder,
           clock: Clock) -> Reconstruction:
    """The :class:`Reconstruction` of the best start: the iterations are the steps until its
    loss (on the exact features) first reached ``tol``, else all steps run."""
    seconds = clock.seconds()
    trace = np.concatenate(recorder.losses, axis=1)  # (restarts, steps)
    best = int(np.argmin(state.best_loss))
    exact_loss = (np.arange(trace.shape[1]) >= sharp_from) | ~bool(state.smoothed[best])
    reached = np.flatnonzero((trace[best] <= solver.tol) & exact_loss)
    iterations = int(reached[0]) if reached.size else trace.shape[1]
    loss_curve = trace[best, : iterations + 1] if reached.size else trace[best]
    return Reconstruction(state.best_X[best], float(state.best_loss[best]), iterations,
                          seconds, bool(state.best_loss[best] <= solver.tol),
                          recorder.history(loss_curve), clock.compile_seconds)


def _checked_truth(problem: ReconstructionProblem, solver: Solver, truth):
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a recon.solver.Solver, got {type(solver).__name__}")
    if truth is None:
        return None
    truth = jnp.asarray(truth)
    expected = (problem.n,) + problem.input_shape
    if truth.shape != expected:
        raise ValueError(f"truth must have shape {expected}, got {truth.shape}")
    return truth


@precision.float64
def solve(problem: ReconstructionProblem, solver: Solver, key: Array, truth: Array | None = None,
          progress: bool = True, error_fn=None) -> Reconstruction:
    """Minimise the projection loss of ``problem`` from random starts drawn with ``key``.

    ``truth`` (the real inputs) is used only to record the error history, through
    ``error_fn(X_hat, truth)`` (default: sign-aware matched per-sample errors); never by the
    updates. Raises ``FloatingPointError`` if the loss becomes NaN or infinite.
    """
    from recon.metrics import per_sample_errors

    truth = _checked_truth(problem, solver, truth)
    restarts = resolve_restarts(solver, problem)
    sharp_from = smoothing_steps(problem, solver, restarts)
    state = initial_state(problem, solver, restarts, sharp_from, key)
    clock = Clock()
    programs = Programs(problem, solver, state, sharp_from, clock)
    recorder = Recorder(truth, error_fn or per_sample_errors, clock)
    bookkeeping = dict(problem=problem, solver=solver, programs=programs, recorder=recorder)
    state = run_blocks(
        functools.partial(advance, sharp_from=sharp_from, **bookkeeping), state,
        finished=lambda s: s.steps >= solver.max_steps or bool(jnp.any(s.done)),
        total=solver.max_steps, desc=f"solver ({solver.name})", progress=progress,
        status=lambda s: f"loss={s.best_loss.min():.2e}")
    state = polish_best(state, **bookkeeping)
    return report(state, solver=solver, sharp_from=sharp_from, recorder=recorder, clock=clock)
