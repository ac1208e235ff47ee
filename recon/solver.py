"""The reconstruction solver: minimise the projection loss over candidates on the spheres.

For candidates ``X_hat`` with features ``F = phi(X_hat)`` the loss is
``L(X_hat) = ||theta - P(X_hat) theta||^2 / ||theta||^2`` (:mod:`recon.loss`), 0 exactly when
``theta`` lies in the span of the candidate features; each step is a step on the product of
spheres (:mod:`recon.sphere`).

A :class:`Solver` is an optax optimiser, a budget, a stopping rule and optional escape moves
(:mod:`recon.solver_parts`), each ``None`` when off. :func:`solve` is a set-up, a loop of
compiled blocks with checkpoints between them (:func:`recon.blocks.run_blocks`), the
Gauss-Newton end game (:func:`end_game`: polish, check that every candidate is pinned, re-seed
the loose ones) and a report. The run's state is the :class:`SolverState` NamedTuple, and each
intervention (:func:`keep_best`, :func:`checkpoint`, :func:`clone_best`, :func:`reseed_stuck`,
:func:`end_game`, :func:`revisit_stalled`, :func:`polish_best`, :func:`widen_starts`) is a
function from a state to a state.
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
from recon.problems import (ProblemBatch, ReconstructionProblem, check_determined,
                            real_feature_count, stack_problems, stacked_on_host)
from recon.program_cache import Program, cached_program, program_problem
from recon.solver_moves import (clone_targets, guess_program, initial_candidates,
                                leave_one_out_confidence, over_problems, polish_applies,
                                polish_program, reseed_program, walk_program)
from recon.solver_parts import Cloning, Polish, Reseed, Smoothing

Array = jax.Array

__all__ = ["Cloning", "History", "PARTS", "Polish", "PRESETS", "Reconstruction", "Reseed",
           "Smoothing", "Solver", "SolverState", "clone_targets", "initial_candidates",
           "polish_applies", "batch_feature_ratio", "feature_ratio", "first_guesses", "preset",
           "resolve_restarts", "smoothing_steps", "solve", "solve_batch", "widen_starts",
           "widened_starts", "widens", "first_starts"]

#: the solver's optional parts, by the name of its field: each is a dataclass or ``None``
PARTS = {"smoothing": Smoothing, "reseed": Reseed, "cloning": Cloning, "polish": Polish}


@dataclass(frozen=True)
class Solver:
    """Settings of the projection-loss minimisation.

    Attributes:
        optimizer: any optax transformation; it receives the gradient of ``L`` (projected on
            the tangent spaces of the spheres when ``tangent_gradients``).
        max_steps: step budget.
        tol: stop once ``L <= tol`` (with the end game's check that every candidate is
            pinned). A ``tol`` below round-off (:func:`round_off_floor`) is met there
            instead: an end game that finds every candidate pinned within that floor stops
            the run as ``"round-off"``, where the loss cannot fall further.
        tangent_gradients: project each row's gradient onto the tangent space of its sphere
            before the optimizer sees it (Riemannian gradient); the authors do not.
        restarts: independent random starts run side by side (``jax.vmap``); the first to
            reach ``tol`` (or the lowest loss) is kept. 0 chooses by problem size: the largest
            power of two (at most ``max_auto_restarts``) keeping ``restarts * n * d * P`` under
            ``auto_restart_work``, so small problems get many starts for little time; one
            start far above the threshold, where the real features number at least
            ``single_start_ratio`` times the unknowns ``d n`` (:func:`feature_ratio`):
            there start 0 (exact features, the others smoothed) wins anyway, and further
            starts only cost time.
        widen_to: starts by need. Where ``restarts=0`` (one problem below
            ``single_start_ratio`` and at least ``lone_start_ratio``, a budget of at least
            twice ``Reseed.fresh_after``), the run begins with one start; a lone start that
            stalls (``Reseed.fresh_after``) and that its end game does not rescue is joined by
            fresh random starts, up to the larger of ``widen_to`` and the number ``restarts=0``
            chooses by size, which then clone and re-seed as several starts do. A problem one
            start solves pays for one, and a hard one (``p`` near ``2 d n``) gets the parallel
            starts that recover it. 1: never; the run starts with the number chosen by size
            and a stalled lone start restarts afresh alone. A batch of several problems does
            not widen either, so that a problem's run does not depend on its companions.
        lone_start_ratio: below this ratio (:func:`feature_ratio`, near the threshold) one
            problem begins with the starts chosen by size, not one: at ``n=4, d=10``, ratios
            1.2 to 1.6, seed 0, a lone start took 2,600 to 8,000 iterations and then the
            starts it widened to, where 16 starts from the first step took 900 to 1,100; at
            ratio 3 (``n=5, d=20, p=300`` and ``n=10, d=50, p=1500``) one start was faster.
        informed_start: start 0 of each problem begins at the problem's ``guess`` of its inputs
            (for RF, :func:`recon.moments.moment_guess`: the method of moments) where it has
            one, not at random; the other starts and every fresh start stay random.
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
    single_start_ratio: float = 10.0
    widen_to: int = 1
    lone_start_ratio: float = 2.0
    informed_start: bool = False
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
        checks.positive_float("single_start_ratio", self.single_start_ratio)
        checks.positive_int("widen_to", self.widen_to)
        checks.positive_float("lone_start_ratio", self.lone_start_ratio, allow_zero=True)
        checks.boolean("informed_start", self.informed_start)
        checks.positive_int("chunk", self.chunk)
        checks.positive_float("ridge", self.ridge, allow_zero=True)
        for name, part in PARTS.items():
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


@functools.cache
def _optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """The presets' optimisers (``adam``, or ``sgd`` with momentum 0.9), one object per
    learning rate: solvers made alike then compare equal, and share their compiled programs
    (:mod:`recon.program_cache`)."""
    return optax.adam(lr) if name == "adam" else optax.sgd(lr, momentum=0.9)


def reference_solver(lr: float = 20.0) -> Solver:
    """The authors' settings: SGD with momentum 0.9 and learning rate 20 (synthetic RF), raw
    Euclidean gradients, rows rescaled to the sphere after every step, one start, their stop
    (``L <= 1e-7`` or 1,000,000 steps), no escape moves. One difference: for ``relu+tanh``
    the authors' code computes the surrogate gradient's mask from the true data, which an
    attacker does not have; here the mask comes from the candidates themselves."""
    lr = checks.positive_float("lr", lr)
    return Solver(_optimizer("sgd", lr), max_steps=1_000_000, tol=1e-7,
                  tangent_gradients=False, restarts=1, name="reference")


def default_solver(lr: float = 0.05) -> Solver:
    """Our default: Adam on Riemannian (tangent) gradients; several random starts at once on
    small problems (``restarts=0``: chosen by size), and on a large one below
    ``single_start_ratio`` three more beside a lone start that stalls (``widen_to=4``);
    every part on: smoothed starts
    (:class:`Smoothing`), stuck starts re-seeded (:class:`Reseed`) or cloned from the best
    (:class:`Cloning`), and the Gauss-Newton end game once the loss is small, which also
    checks that every candidate is pinned by ``theta`` (:class:`Polish`). Its tolerance is
    tighter than the authors' (1e-10 against 1e-7): with the float64 Gram solve the loss gets
    there, and at 1e-7 a sample can still be off by more than 1e-2."""
    lr = checks.positive_float("lr", lr)
    return Solver(_optimizer("adam", lr), max_steps=20_000, tol=1e-10, tangent_gradients=True,
                  restarts=0, widen_to=4, smoothing=Smoothing(), reseed=Reseed(),
                  cloning=Cloning(), polish=Polish(), name="default")


PRESETS = {"default": default_solver, "reference": reference_solver}


def preset(name: str, lr: float | None = None, **overrides) -> Solver:
    """A named solver preset (``default`` or ``reference``) with its learning rate ``lr`` and
    any :class:`Solver` field overridden, the same for every preset: ``max_steps``, ``tol``,
    ``restarts``, ``chunk``, ``ridge``, and the parts (``reseed=None`` turns re-seeding off,
    ``polish=Polish(cg_steps=20)`` changes the polish)."""
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
    whether it is solved (``loss <= tol``, or at most the round-off floor, with every
    candidate pinned), the history, the compilation time, why the run stopped (``"tol"``,
    ``"budget"``, ``"non-finite loss"``, ``"unpinned"``: ``loss <= tol`` with a candidate
    that ``theta`` does not pin, or ``"round-off"``: ``tol`` below round-off, and an end
    game's loss above it but within :func:`round_off_floor`, every candidate pinned) and each
    candidate's leave-one-out confidence (:func:`recon.solver_moves.leave_one_out_confidence`;
    about 1 or less: not pinned) and the fresh random starts a stalled lone start took
    (:func:`restart_stalled`: restarts alone, or the starts that joined it). The iterations
    count each Jacobian product of the polish as one step (it costs about one gradient)."""

    X: Array
    loss: float
    iterations: int
    seconds: float
    converged: bool
    history: History
    compile_seconds: float = 0.0
    stop_reason: str = "budget"
    confidence: np.ndarray | None = None
    fresh_starts: int = 0


class SolverState(NamedTuple):
    """The state of a run between blocks, for ``G`` problems solved side by side (one when
    solving one problem) with ``R`` starts each.

    Attributes:
        X: current candidates of every start, ``(G, R, n, *input_shape)``.
        opt_state: the optimiser's state, one per start (vmapped twice).
        done: ``(G, R)``, starts that stopped moving: they reached ``tol`` (or a non-finite
            loss), or another start of their problem did.
        smoothed: ``(G, R)``, starts on the smoothed loss during the smoothing phase.
        steps: steps run so far.
        key: ``(G,)``, each problem's key for its next random move.
        best_X, best_loss: each start's best candidates and loss at a block end.
        checkpoint: each start's loss at the last re-seeding check.
        attempts: re-seeds so far per start (which candidate the next one replaces).
        stopped: ``(G,)``, the step at which each problem stopped (0 while it runs).
        seconds: ``(G,)``, the wall time at which each problem stopped.
        failed: ``(G,)``, problems whose loss became NaN or infinite.
        polished: ``(G,)``, the loss after each problem's last polish (``inf`` before one).
        polished_from: ``(G,)``, the loss of the point that polish started from.
        products: ``(G,)``, the polish's Jacobian products so far.
        unpinned: ``(G,)``, problems stopped at ``tol`` with a candidate not pinned.
        window: ``(G, R)``, each start's loss at its last tenfold fall (or fresh start).
        window_from: ``(G, R)``, the step of that fall.
        fresh: ``(G,)``, fresh random starts taken after stalls so far
            (:func:`restart_stalled`, :func:`widen_starts`).
        precise: ``(G,)``, problems whose end game was settled with float64 features
            (:func:`end_game`): their confidence is reported from float64 features too.
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
    stopped: np.ndarray
    seconds: np.ndarray
    failed: np.ndarray
    polished: np.ndarray
    polished_from: np.ndarray
    products: np.ndarray
    unpinned: np.ndarray
    window: np.ndarray
    window_from: np.ndarray
    fresh: np.ndarray
    precise: np.ndarray

    def running(self) -> np.ndarray:
        """``(G,)``, the problems still running."""
        return self.stopped == 0


def _grouped(shape_of_starts: tuple, array: Array) -> np.ndarray:
    """A ``(G, R)`` array of flags reshaped to broadcast against per-start ``array`` (on the
    host: nothing compiled for a new shape)."""
    return np.reshape(np.asarray(shape_of_starts),
                      np.shape(shape_of_starts) + (1,) * (array.ndim - np.ndim(shape_of_starts)))


def resolve_restarts(solver: Solver, problem: ReconstructionProblem,
                     ratio: float | None = None) -> int:
    """The number of random starts ``solver`` runs on ``problem`` (see ``Solver.restarts``);
    ``ratio``, its real features per feature row (:func:`feature_ratio` unless given: the
    smallest of a batch)."""
    if solver.restarts:
        return solver.restarts
    ratio = feature_ratio(problem) if ratio is None else ratio
    if ratio >= solver.single_start_ratio:
        return 1
    work = problem.n * problem.d * problem.P
    fits = max(1, int(solver.auto_restart_work // work))
    return int(min(solver.max_auto_restarts, 2 ** (fits.bit_length() - 1)))


def feature_ratio(problem: ReconstructionProblem) -> float:
    """``P' / (d n)``: the real features (:func:`recon.problems.real_feature_count`, padding
    not counted) per unknown coordinate of the candidates, the law's ratio (``p / (d n)`` for
    RF); known to the attacker."""
    return real_feature_count(problem) / (problem.n * problem.d)


def feature_ratios(batch: ProblemBatch) -> np.ndarray:
    """``(G,)``, the :func:`feature_ratio` of each problem of ``batch`` (padded RF problems
    count their unmasked features)."""
    mask = batch.state.get("mask") if isinstance(batch.state, dict) else None
    if mask is None or batch.problem.real_features is not None:
        return np.full(batch.G, feature_ratio(batch.problem))
    real = np.count_nonzero(np.asarray(mask).reshape(batch.G, -1), axis=1)
    return real / (batch.problem.n * batch.problem.d)


def batch_feature_ratio(batch: ProblemBatch) -> float:
    """The smallest of the problems' :func:`feature_ratios` in ``batch``."""
    return float(feature_ratios(batch).min())


#: the end game places guesses only where the real features number at least this many times
#: ``d^2`` (the authors' size: 2). Below, at ``p`` near ``d n``, it moved the law chapter's
#: algorithmic thresholds up (``p*/(dn)`` 1.07-1.69 became 1.22-1.69 over its quick grid)
GUESS_FEATURES_PER_D2 = 2.0


def places_guesses(batch: ProblemBatch, solver: Solver) -> bool:
    """Whether the end game of ``batch`` places guesses (:class:`recon.solver_parts.Polish`'s
    ``guesses``): the problems have a ``guess`` and at least :data:`GUESS_FEATURES_PER_D2`
    ``d^2`` real features."""
    problem = batch.problem
    return (solver.polish is not None and solver.polish.guesses and problem.guess is not None
            and batch_feature_ratio(batch) * problem.n >= GUESS_FEATURES_PER_D2 * problem.d)


def smoothing_steps(problem: ReconstructionProblem, solver: Solver, restarts: int) -> int:
    """The length of the smoothing phase of ``solver`` on ``problem`` with ``restarts``
    starts: ``smoothing.steps``, at most half of ``max_steps``, rounded down to whole blocks;
    0 when smoothing is off, the problem has no smoothed features or there is a single start
    (start 0 always runs on the exact features)."""
    if solver.smoothing is None or problem.smoothed_features is None or restarts < 2:
        return 0
    steps = min(solver.smoothing.steps, solver.max_steps // 2)
    return steps - steps % solver.chunk


def optimiser_init(problem: ReconstructionProblem, solver: Solver) -> Program:
    """The optimiser's state of every start, ``init(X)`` for ``X`` of shape ``(G, R, n, ...)``
    (:func:`step_optimizer`'s ``init`` vmapped twice), one compiled program per shape."""
    return cached_program(("init", solver.optimizer, solver.tangent_gradients, problem.radius),
                          lambda: jax.jit(jax.vmap(jax.vmap(step_optimizer(problem,
                                                                           solver).init))))


def step_optimizer(problem: ReconstructionProblem, solver: Solver) -> optax.GradientTransformation:
    """The transformation each step applies: ``solver.optimizer``, after the tangent
    projection (:func:`recon.sphere.tangent_projection`) when ``solver.tangent_gradients``."""
    if solver.tangent_gradients:
        return optax.chain(sphere.tangent_projection(problem.radius), solver.optimizer)
    return solver.optimizer


def block_loss(problem: ReconstructionProblem, solver: Solver, smooth_until: int = 0):
    """``loss(X, state, theta, t, smoothed)`` of one start at step ``t``: the projection loss
    of the exact features, or (while ``smooth_until > 0`` and the start is ``smoothed``) of
    the smoothed ones at the step's ``beta``."""
    ridge, smoothing = solver.ridge, solver.smoothing

    def exact(X, state, theta):
        return projection_share(problem.features(state, X), theta, ridge)

    def loss(X, state, theta, t, smoothed):
        if not smooth_until:
            return exact(X, state, theta)
        growth = smoothing.beta_to / smoothing.beta_from
        beta = smoothing.beta_from * growth ** (t / smooth_until)
        if problem.switched_features is not None:  # one feature map per start, not two
            F = problem.switched_features(state, X, beta, smoothed)
            return projection_share(F, theta, ridge)

        def soft(X):
            return projection_share(problem.smoothed_features(state, X, beta), theta, ridge)

        return jax.lax.cond(smoothed, soft, lambda X: exact(X, state, theta), X)

    return loss


def block_program(problem: ReconstructionProblem, solver: Solver, smooth_until: int = 0,
                  G: int = 1):
    """A jitted ``block(X, opt_state, done, smoothed, state, theta, first_step, limit)``
    running ``solver.chunk`` steps for every start of every problem (``state`` and ``theta``
    stacked per problem, the rest per start: vmapped over problems, then starts); steps from
    ``limit`` on (counted within the block) leave the candidates unchanged, so the budget is
    never overrun.

    With ``smooth_until > 0`` this is the block of the smoothing phase: starts flagged
    ``smoothed`` minimise the loss of the smoothed features with ``beta`` rising
    geometrically from ``beta_from`` (step 0) to ``beta_to`` (step ``smooth_until``), and
    cannot stop yet. Otherwise all starts use the exact features and the updates of flagged
    starts are scaled by ``refine_scale``.
    """
    radius, tol = problem.radius, solver.tol
    optimizer = step_optimizer(problem, solver)
    smoothing = solver.smoothing
    value_and_grad = jax.value_and_grad(block_loss(problem, solver, smooth_until))
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
        def one(X, opt_state, done, smoothed, state, theta):
            index = jnp.arange(solver.chunk)
            return jax.lax.scan(
                lambda c, i: step(c, first_step + i, smoothed, state, theta, i >= limit),
                (X, opt_state, done), index)

        per_problem = jax.vmap(one, in_axes=(0, 0, 0, 0, None, None))
        return over_problems(per_problem, G)(X, opt_state, done, smoothed, state, theta)

    return jax.jit(block)


#: the events in which JAX reports compilation (tracing, lowering, XLA), also of the small
#: programs that array operations outside the solver's compiled ones build on first use
COMPILE_EVENTS = frozenset(f"/jax/core/compile/{name}" for name in (
    "jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration"))
#: seconds of COMPILE_EVENTS in this process so far: all, and those inside Clock.compiling
_compiled = [0.0, 0.0]


def _count_compilation(event: str, duration: float, **_) -> None:
    if event in COMPILE_EVENTS:
        _compiled[0] += duration


jax.monitoring.register_event_duration_secs_listener(_count_compilation)


#: the end game's polish stops once the loss is at most this many times the solver's
#: ``tol`` and its last step moved no candidate by more than
#: :data:`recon.solver_moves.SETTLED_STEP` of the radius: past that, each iteration only
#: sharpens a result the run already counts as solved.
#: At the authors' size seed 1's polish reached ``tol`` (1e-10) in 10 iterations of 22
#: Jacobian products and the float32 floor (3e-14) in 16
POLISH_TO = 1e-3


class Clock:
    """Wall time of a run with compilation and the truth's error records counted apart.

    ``compile_seconds`` is the time of the solver's programs compiled in :meth:`compiling`
    (:attr:`program_compile_seconds`) plus the compilation JAX reports
    (:data:`COMPILE_EVENTS`) outside them (:attr:`eager_compile_seconds`): the first use of
    an array operation on new shapes compiles it too, and that happens once per process."""

    def __init__(self):
        self.start = time.perf_counter()
        self.compiled_from = list(_compiled)
        self.in_programs = 0.0  # measured by compiling()
        self.recording_seconds = 0.0

    def compiling(self, thunk):
        """``thunk()``, its time counted as compilation and kept out of :meth:`seconds`."""
        tic, reported = time.perf_counter(), _compiled[0]
        result = thunk()
        self.in_programs += time.perf_counter() - tic
        _compiled[1] += _compiled[0] - reported  # not counted twice: see the properties
        return result

    def recording(self, thunk):
        """``thunk()`` (the errors against the truth, which the solver does not use), its time
        kept out of :meth:`seconds`."""
        tic = time.perf_counter()
        result = thunk()
        self.recording_seconds += time.perf_counter() - tic
        return result

    @property
    def program_compile_seconds(self) -> float:
        """Seconds compiling the solver's programs (tracing, lowering and XLA's compilation):
        timed by :meth:`compiling`, or for a clock around solver runs with clocks of their own
        (a sweep's batch), the compilation JAX reported inside theirs."""
        return max(self.in_programs, _compiled[1] - self.compiled_from[1])

    @property
    def eager_compile_seconds(self) -> float:
        """Seconds of the compilation JAX reports outside the solver's programs: array
        operations on shapes new to the process (a new batch size or ``P``: slices, stacks,
        random draws, the problem's set-up)."""
        return max(0.0, (_compiled[0] - self.compiled_from[0])
                   - (_compiled[1] - self.compiled_from[1]))

    @property
    def compile_seconds(self) -> float:
        return self.program_compile_seconds + self.eager_compile_seconds

    def seconds(self) -> float:
        """Seconds since the start, compilation and error records excluded."""
        return (time.perf_counter() - self.start - self.compile_seconds
                - self.recording_seconds)


#: XLA's options for the re-seed search: its compilation took 1.7-2.0 s at ``n=4, d=10`` (16
#: starts a call) and 0.86-0.9 s with LLVM's optimisation level 1, its run 7.2-7.7 ms either
#: way (0.86 against 0.79 s and 607 against 594 ms a call at the authors' size); every law
#: cell's record at ``n=4, d=10`` came out the same
RESEED_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}

#: the dtype of the re-seed counts (``SolverState.attempts``) handed to the re-seed program:
#: one dtype everywhere, so that every call of it shares one compilation
ATTEMPTS_DTYPE = np.int32


class Programs:
    """The compiled programs of one run: the exact and smoothing blocks, the loss of every
    start, the leave-one-out confidence, and (compiled on first use: many runs never need
    them) the re-seed search and the polish. Each comes from :func:`recon.program_cache.
    cached_program`, keyed by what it depends on (:func:`recon.program_cache.program_problem`
    and the settings it reads), so a later run of a problem of the same kind and shapes
    compiles nothing; compilation is counted by the run's ``clock``."""

    def __init__(self, batch: ProblemBatch, solver: Solver, state: SolverState,
                 sharp_from: int, clock: Clock, guesses: bool | None = None):
        problem = batch.problem
        self.batch, self.solver, self.clock, self.sharp_from = batch, solver, clock, sharp_from
        self.kind = kind = program_problem(problem)
        self._problems: dict = {}
        self._host = None  # the batch's state and theta on the host (_on_host)
        G = batch.G
        blocks = (solver.optimizer, solver.tol, solver.tangent_gradients, solver.chunk,
                  solver.ridge, solver.smoothing)
        self._exact = cached_program(("block", kind, blocks, 0, G),
                                     lambda: block_program(kind, solver, G=G))
        self._smooth = (cached_program(("block", kind, blocks, sharp_from, G),
                                       lambda: block_program(kind, solver, sharp_from, G))
                        if sharp_from else None)
        self._loss = cached_program(("loss", kind, solver.ridge, G), lambda: jax.jit(
            over_problems(jax.vmap(lambda X, s, theta: projection_share(
                kind.features(s, X), theta, solver.ridge), in_axes=(0, None, None)), G)))
        self.init = optimiser_init(kind, solver)
        self._confidence = {precise: cached_program(
            ("confidence", kind, solver.ridge, precise), lambda precise=precise: jax.jit(
                functools.partial(leave_one_out_confidence, kind, ridge=solver.ridge,
                                  precise=precise))) for precise in (False, True)}
        #: ``P``, padding included: what one point's features cost, per input coordinate
        self.features = float(np.prod(kind.theta.shape))
        polish = (solver.polish.sized(problem.n * problem.d * self.features)
                  if solver.polish is not None else None)
        #: each problem's conjugate-gradient tolerance in the polish (:meth:`recon.
        #: solver_parts.Polish.tolerance`, by its own feature ratio, whatever its companions)
        self._cg_tol = ([polish.tolerance(r) for r in feature_ratios(batch)]
                        if polish is not None else None)
        self._polish = ({precise: cached_program(
            ("polish", kind, polish, solver.ridge, precise),
            lambda precise=precise: polish_program(kind, polish, solver.ridge, precise))
            for precise in (False, True)} if polish is not None else None)
        self._walk = (cached_program(
            ("walk", kind, polish.walk_steps, polish.walk_lr, solver.ridge),
            lambda: walk_program(kind, polish.walk_steps, polish.walk_lr, solver.ridge))
            if polish is not None else None)
        self._guess = (cached_program(("guess", kind, solver.ridge),
                                      lambda: guess_program(kind, solver.ridge))
                       if (places_guesses(batch, solver) if guesses is None else guesses)
                       else None)
        self._reseed = self._reseed_programs(state.X.shape[1])
        # compiled now, so that their time counts as compilation and not as the first block's
        self._compile_blocks(state)
        if solver.polish is not None:
            self._confidence[False].executable(*self._problem(0),
                                                jax.device_put(np.asarray(state.X)[0, 0]),
                                                compiling=clock.compiling)

    def _reseed_programs(self, starts: int):
        """The re-seed search for ``starts`` starts per problem (its pool per start, capped
        by the cost of one point's ``P d`` features: :meth:`recon.solver_parts.Reseed.
        per_start`) and its explore-only variant."""
        solver, kind, G = self.solver, self.kind, self.batch.G
        if solver.reseed is None:
            return None
        reseed = solver.reseed.per_start(starts, self.features * kind.d)
        return {explore_only: cached_program(
            ("reseed", kind, reseed, solver.ridge, G == 1, explore_only),
            lambda r=(replace(reseed, pool=1, steps=0) if explore_only else reseed),
            e=explore_only: reseed_program(kind, r, solver.ridge, G == 1, e),
            RESEED_COMPILER_OPTIONS) for explore_only in (False, True)}

    def _compile_blocks(self, state: SolverState) -> None:
        """The blocks (the smoothing one only before ``sharp_from``) and the loss compiled for
        the shapes of ``state``'s starts."""
        args = (state.X, state.opt_state, state.done, state.smoothed, self.batch.state,
                self.batch.theta, 0, self.solver.chunk)
        for block in (self._exact, self._smooth if state.steps < self.sharp_from else None):
            if block is not None:
                block.executable(*args, compiling=self.clock.compiling)
        self._loss.executable(state.X, self.batch.state, self.batch.theta,
                              compiling=self.clock.compiling)

    def for_rows(self, batch: ProblemBatch, state: SolverState) -> Programs:
        """The programs of the same run for ``batch`` and ``state``, some of this batch's
        problems (:meth:`_Sweep.compacted`): the same decisions (the guesses of the end game are
        placed or not as for the whole batch), the blocks compiled for the smaller batch."""
        return Programs(batch, self.solver, state, self.sharp_from, self.clock,
                        guesses=self._guess is not None)

    def widen(self, state: SolverState) -> None:
        """The programs for ``state``'s number of starts after :func:`widen_starts`: the
        re-seed search with that many starts' pool, and the blocks compiled for them."""
        self._reseed = self._reseed_programs(state.X.shape[1])
        self._compile_blocks(state)

    def exact(self, *args):
        """A block of ``solver.chunk`` steps on the exact features (:func:`block_program`)."""
        return self._exact(*args, compiling=self.clock.compiling)

    def smooth(self, *args):
        """A block of the smoothing phase (:func:`block_program` with ``smooth_until``)."""
        return self._smooth(*args, compiling=self.clock.compiling)

    def loss(self, X, state, theta):
        """The loss of every start of every problem, ``(G, R)``."""
        return self._loss(X, state, theta, compiling=self.clock.compiling)

    def reseed(self, X, explore_only: bool = False, **kwargs):
        """:func:`recon.solver_moves.reseed_program` over a list of starts; ``explore_only``:
        its variant without the one-point searches, for starts that take a random point
        anyway."""
        return self._reseed[explore_only](X, compiling=self.clock.compiling, **kwargs)

    def _problem(self, g: int, row: bool = False):
        """Problem ``g``'s state and ``theta`` (``row``: with a leading axis of one), sliced
        from the batch once per run: an end game asks for them tens of times. A batch of
        several problems is sliced on the host (nothing compiled for a new ``G`` or ``P``);
        one problem's arrays, which may be large (``V`` of an image problem), stay on the
        device."""
        if (g, row) not in self._problems:
            index = slice(g, g + 1) if row else g
            self._problems[g, row] = (
                jax.tree.map(lambda a: a if row else a[0], (self.batch.state, self.batch.theta))
                if self.batch.G == 1 else
                jax.tree.map(lambda a: jax.device_put(a[index]), self._on_host()))
        return self._problems[g, row]

    def _on_host(self):
        """The batch's state and ``theta`` on the host, copied once per run."""
        if self._host is None:
            self._host = jax.tree.map(np.asarray, (self.batch.state, self.batch.theta))
        return self._host

    def starts_problems(self, g: np.ndarray):
        """The state and ``theta`` for starts of the problems ``g`` (one row per start, sliced
        on the host), or where the batch is one problem, its own (shared by every start)."""
        if self.batch.G == 1:
            return self._problem(0)
        return jax.tree.map(lambda a: jax.device_put(a[g]), self._on_host())

    def _flags(self, candidates) -> np.ndarray:
        """``(n,)`` booleans, set at the indices ``candidates``."""
        flags = np.zeros(self.batch.problem.n, bool)
        flags[list(candidates)] = True
        return flags

    def polish(self, X, g: int, precise: bool = False, left_out=()):
        """:func:`recon.solver_moves.polish_program` from the candidates ``X`` of problem
        ``g``, until settled at :data:`POLISH_TO` times ``tol``: ``(X, loss, products)``;
        ``precise``: its float64 features; ``left_out``: the indices of the candidates left
        out of the span (their features zeroed)."""
        state, theta = self._problem(g)
        X, loss, products = self._polish[precise](
            X, state, theta, self._flags(left_out), POLISH_TO * self.solver.tol,
            self._cg_tol[g], compiling=self.clock.compiling)
        return X, float(loss), int(products)

    def walk(self, X, g: int):
        """``polish.walk_steps`` steps of Adam from ``X`` (one start of problem ``g``)
        (:func:`recon.solver_moves.walk_program`)."""
        state, theta = self._problem(g)
        return self._walk(X, state, theta, compiling=self.clock.compiling)

    def reseed_one(self, X, g: int, key, attempt: int = 0):
        """``X`` (one start of problem ``g``) with its ``attempt``-th least useful candidate
        re-seeded (:func:`recon.solver_moves.reseed_program`). With one start per problem
        this is the call of the re-seeding checks, and shares their compiled program; with
        ``R`` starts it compiles its own (repeating the start to ``R`` rows would share it,
        but cost ``R`` searches per call: more than the compilation over a run's end games)."""
        state, theta = self._problem(g, row=self.batch.G > 1)
        return self.reseed(X[None], False, keys=key[None], stuck=jnp.ones(1, bool),
                           attempts=jnp.asarray(np.full(1, attempt, ATTEMPTS_DTYPE)),
                           explore=jnp.zeros(1, bool), state=state, theta=theta)[0]

    def guess_moves(self, confidence: np.ndarray) -> list[tuple[int, float]]:
        """The guesses the end game tries at a new point with leave-one-out ``confidence``, in
        turn, as ``(m, sign)``: ``m`` least pinned candidates at ``sign`` times the guesses
        from what the others leave out (:meth:`place_guesses`). Where several candidates
        explain less than the loss itself (confidence below 1), first the group of them and
        the next least pinned one (:func:`_group_guess`, ``sign`` 1: the guesses' own signs);
        then the least pinned one alone, at the guess and at its opposite. None where the end
        game places no guesses (:func:`places_guesses`)."""
        if self._guess is None:
            return []
        loose = int(np.count_nonzero(confidence < 1.0))
        group = [(min(loose + 1, self.batch.problem.n), 1.0)] if loose >= 2 else []
        return group + [(1, 1.0), (1, -1.0)]

    def place_guesses(self, X, g: int, out, sign: float = 1.0):
        """``X`` (one start of problem ``g``) with the candidates ``out`` (indices) at ``sign``
        times the guesses from what the others leave out
        (:func:`recon.solver_moves.guess_program`)."""
        state, theta = self._problem(g)
        return self._guess(X, state, theta, self._flags(out), jnp.asarray(sign, X.dtype),
                           compiling=self.clock.compiling)

    def confidences(self, X, g: int, precise: bool = False) -> np.ndarray:
        """Each candidate's leave-one-out confidence in ``X`` for problem ``g``; ``precise``:
        from float64 features."""
        state, theta = self._problem(g)
        return np.asarray(self._confidence[precise](state, theta, X,
                                                    compiling=self.clock.compiling))


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
        sample_errors = self.clock.recording(
            lambda: np.asarray(self.error_fn(X_best, self.truth)))
        self.error_steps.append(steps)
        self.errors.append(float(sample_errors.mean()))
        self.max_errors.append(float(sample_errors.max()))
        self.error_seconds.append(self.clock.seconds())

    def stacked_losses(self) -> np.ndarray:
        """Every step's loss per start, ``(G, R, steps)``, ``R`` the final number of starts:
        before a widening (:func:`widen_starts`) the starts added then carry start 0's
        losses (the lone start they joined)."""
        starts = max(block.shape[1] for block in self.losses)
        return np.concatenate([np.concatenate(
            [block] + [block[:, :1]] * (starts - block.shape[1]), axis=1)
            for block in self.losses], axis=2)

    def history(self, loss: np.ndarray) -> History:
        """The :class:`History` with the given loss curve."""
        return History(loss, np.asarray(self.error_steps), np.asarray(self.errors),
                       np.asarray(self.max_errors), np.asarray(self.error_seconds))


def first_guesses(batch: ProblemBatch, solver: Solver) -> Array | None:
    """Each problem's guess of its ``n`` inputs (``G x n x input_shape``; the problem's
    ``guess``); ``None`` unless ``solver.informed_start``, the problems have a ``guess`` and
    ``n <= d`` (the problems of a batch share one ``guess``, so it serves all or none)."""
    problem = batch.problem
    if not solver.informed_start or problem.guess is None or problem.n > problem.d:
        return None
    shape = (problem.n,) + problem.input_shape
    found = [jnp.reshape(problem.guess(jax.tree.map(lambda a, g=g: a[g], batch.state),
                                       batch.theta[g], problem.n), shape)
             for g in range(batch.G)]
    return checks.finite_array("the problems' first guesses",
                               jnp.stack(found).astype(batch.theta.dtype))


def initial_state(problem: ReconstructionProblem, solver: Solver, restarts: int,
                  sharp_from: int, keys: Array, guesses=None) -> SolverState:
    """Random starts on the spheres for each of the ``G`` problems of ``keys`` (one key per
    problem, shape ``(G,)``): problem ``g``'s starts are drawn from ``keys[g]`` alone, so they
    do not depend on the other problems. All but start 0 are smoothed while
    ``sharp_from > 0``. ``guesses`` (``G x n x input_shape``, from :func:`first_guesses`),
    where given, replace start 0 of every problem."""
    G = len(keys)
    keys, _, init_keys = _split_each(keys)
    X = stacked_on_host([initial_candidates(k, problem, restarts, problem.theta.dtype)
                         for k in init_keys])
    if guesses is not None:
        X = X.at[:, 0].set(guesses)
    smoothed = np.broadcast_to((np.arange(restarts) > 0) & (sharp_from > 0), (G, restarts))
    starts = (G, restarts)
    return SolverState(X, optimiser_init(problem, solver)(X),
                       jax.device_put(np.zeros(starts, bool)), jax.device_put(smoothed), 0,
                       keys, X,
                       np.full(starts, np.inf), np.full(starts, np.inf),
                       np.zeros(starts, dtype=ATTEMPTS_DTYPE), np.zeros(G, dtype=np.int64),
                       np.zeros(G), np.zeros(G, bool), np.full(G, np.inf), np.full(G, np.inf),
                       np.zeros(G, dtype=np.int64), np.zeros(G, bool),
                       np.full(starts, np.inf), np.zeros(starts, dtype=np.int64),
                       np.zeros(G, dtype=np.int64), np.zeros(G, bool))


def keep_best(state: SolverState, current: np.ndarray) -> SolverState:
    """Each start's best candidates and loss, updated with its ``current`` loss."""
    improved = current < state.best_loss
    return state._replace(best_loss=np.where(improved, current, state.best_loss),
                          best_X=jnp.where(_grouped(improved, state.X), state.X, state.best_X))


def clone_best(state: SolverState, *, current: np.ndarray, stuck: np.ndarray,
               share: float) -> tuple[SolverState, np.ndarray]:
    """In each problem, restart the stuck starts among its worst ``share`` from a copy of its
    best start (:func:`recon.solver_moves.clone_targets`), each to try a different candidate;
    returns the state and the flags of the clones (their re-seed explores a random point)."""
    explore = np.zeros(current.shape, bool)
    attempts, checkpoint_ = state.attempts.copy(), state.checkpoint.copy()
    source = np.tile(np.arange(current.shape[1]), (current.shape[0], 1))
    for g in range(current.shape[0]):
        leader, clones = clone_targets(current[g], stuck[g], share)
        if not clones:
            continue
        attempts[g, clones] = attempts[g, leader] + np.arange(len(clones))
        checkpoint_[g, clones] = current[g, leader]
        explore[g, clones] = True
        source[g, clones] = leader
    X = _take_starts(state.X, jnp.asarray(source)) if explore.any() else state.X
    return state._replace(X=X, attempts=attempts, checkpoint=checkpoint_), explore


@jax.jit
def _take_starts(X: Array, source: Array) -> Array:
    """``X[g, source[g, r]]`` for every problem ``g`` and start ``r``: one program whatever
    the number of starts copied."""
    return jax.vmap(lambda x, s: x[s])(X, source)


def reseed_targets(stuck: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(problem, start)`` indices the re-seed search runs on, a multiple of ``R`` long
    (the search runs on ``R`` starts at a time, so that one program serves every check):
    every start of a single problem, else the stuck starts, padded with repeats (the same
    search, the same result). The search costs as much per start as a few hundred steps:
    running it on the stuck starts only keeps a batch of many problems from paying it for all
    of them."""
    G, R = stuck.shape
    if G == 1:
        return np.zeros(R, int), np.arange(R)
    g, r = np.nonzero(stuck)
    size = R * -(-len(g) // R)
    return np.resize(g, size), np.resize(r, size)


def _replaced(state: SolverState, programs: Programs, keys, flags: np.ndarray,
              explore: np.ndarray, explore_only: bool):
    """The candidates after :meth:`Programs.reseed` of the starts of ``reseed_targets(flags)``,
    ``R`` at a time."""
    targets = reseed_targets(flags)
    R = flags.shape[1]
    before = np.asarray(state.X)  # indexed on the host: nothing compiled for a new G or P
    X = before.copy()
    for start in range(0, len(targets[0]), R):
        g, r = (t[start:start + R] for t in targets)
        problem, theta = programs.starts_problems(g)
        new = programs.reseed(jax.device_put(before[g, r]), explore_only, keys=keys[g, r],
                              stuck=jnp.asarray(flags[g, r]),
                              attempts=jnp.asarray(state.attempts[g, r], ATTEMPTS_DTYPE),
                              explore=jnp.asarray(explore[g, r]), state=problem, theta=theta)
        X[g, r] = np.asarray(new)
    return jax.device_put(X)


def _split_keys(state: SolverState) -> tuple[Array, Array]:
    """Each problem's key split in two: its next key, and one for the move made now."""
    return _split_each(state.key)[:2]


@jax.jit
def _split_each(keys: Array) -> tuple[Array, Array, list[Array]]:
    """Each key of ``keys`` (``(G,)``) split in two: the first halves and the second ones,
    ``(G,)`` each, and the second ones one by one (to loop over): one program, where the
    same done array by array compiles several for every new ``G``."""
    split = jax.vmap(jax.random.split)(keys)
    return split[:, 0], split[:, 1], [split[g, 1] for g in range(keys.shape[0])]


@functools.partial(jax.jit, static_argnums=1)
def _split_into(keys: Array, num: int) -> Array:
    """Each key of ``keys`` (``(G,)``) split into ``num``, ``(G, num)``, in one program."""
    return jax.vmap(lambda k: jax.random.split(k, num))(keys)


def _reset_optimiser(state: SolverState, X: Array, flags: np.ndarray, programs: Programs):
    """The optimiser state, fresh at the new candidates ``X`` for the starts flagged in
    ``flags``, kept for the others."""
    return jax.tree.map(lambda a, b: jnp.where(_grouped(flags, a), a, b),
                        programs.init(X), state.opt_state)


def reseed_stuck(state: SolverState, *, stuck: np.ndarray, explore: np.ndarray,
                 programs: Programs) -> SolverState:
    """Replace a candidate of every ``stuck`` start (:func:`recon.solver_moves.reseed_program`;
    a random point where ``explore``) and reset those starts' optimiser states."""
    key, sub = _split_keys(state)
    keys = _split_into(sub, stuck.shape[1])
    if stuck.shape[0] == 1:
        X = _replaced(state, programs, keys, stuck, explore, False)
    else:  # the searches only where their result is kept
        X = state.X
        for flags, explore_only in ((stuck & ~explore, False), (explore, True)):
            if flags.any():
                X = _replaced(state._replace(X=X), programs, keys, flags, explore, explore_only)
    return state._replace(X=X, opt_state=_reset_optimiser(state, X, stuck, programs), key=key,
                          attempts=state.attempts + stuck)


def rescue_stalled(state: SolverState, stalled: np.ndarray, since: np.ndarray, *,
                   solver: Solver, programs: Programs,
                   recorder: Recorder) -> tuple[SolverState, np.ndarray, np.ndarray]:
    """What a stalled lone start (flagged in ``stalled``, ``G x 1``) does before it starts
    afresh. If its best candidates are all pinned (leave-one-out confidence at least
    ``polish.pinned``), it sits at a floor (a network's training loss, round-off), not in a
    spurious minimum, and goes on. Else its end game runs (:func:`end_game`; its rounds place
    the least pinned candidate at the problem's guess first): if that stops the problem or
    halves its best loss, the start goes on from the new best with a fresh optimiser state
    (a stall there often has one sample missing, which the guess from what the others leave
    out finds, where a fresh start would throw the others away). A start whose best is still
    the result of its last end game (``best_loss >= polished``: nothing lower found since)
    does not run it again from that very point: it starts afresh (at the authors' size, seed
    2 sat at loss 3.5e-4 with every sample wrong, and the repeated end game cost ~2 s in
    vain). Returns the state, the flags of the starts still to restart, and the steps from
    which each start's stall is counted."""
    for g in np.flatnonzero(stalled[:, 0]):
        if programs.confidences(state.best_X[g, 0], int(g)).min() >= solver.polish.pinned:
            stalled[g, 0], since[g, 0] = False, state.steps
            continue
        if state.best_loss[g, 0] >= state.polished[g]:
            continue  # its end game ran at this very point already
        before = float(state.best_loss[g, 0])
        state = end_game(state, int(g), batch=programs.batch, solver=solver,
                         programs=programs, recorder=recorder)
        if state.running()[g] and state.best_loss[g, 0] > 0.5 * before:
            continue
        stalled[g, 0], since[g, 0] = False, state.steps
        state = _go_on_from_best(state, int(g), 0, programs)
    return state, stalled, since


def _go_on_from_best(state: SolverState, g: int, b: int, programs: Programs) -> SolverState:
    """Start ``b`` of problem ``g`` goes on from its best candidates with a fresh optimiser
    state (after an end game that lowered its best: :func:`rescue_stalled`,
    :func:`revisit_stalled`)."""
    this = np.zeros(state.best_loss.shape, bool)
    this[g, b] = True
    X = state.X.at[g, b].set(state.best_X[g, b])
    return state._replace(X=X, opt_state=_reset_optimiser(state, X, this, programs),
                          window=np.where(this, state.best_loss, state.window),
                          checkpoint=np.where(this, np.inf, state.checkpoint),
                          attempts=np.where(this, 0, state.attempts))


def revisit_stalled(state: SolverState, *, solver: Solver, programs: Programs,
                    recorder: Recorder) -> SolverState:
    """The end game again, every ``reseed.fresh_after`` steps, for each running problem with
    several starts whose best loss is below ``polish.below`` and has halved since its last
    polish, but not fallen tenfold (:func:`end_games`' trigger): a run whose starts all sit
    near one spurious minimum, a sample or two missing, improves that slowly and would never
    polish again. If the end game halves the best, its start goes on from the result with a
    fresh optimiser state (:func:`_go_on_from_best`). A lone start has
    :func:`rescue_stalled` instead."""
    if (state.X.shape[1] == 1 or state.steps % solver.reseed.fresh_after
            or not polish_applies(programs.batch.problem, solver.polish)):
        return state
    best = state.best_loss.min(axis=1)
    due = state.running() & (best < solver.polish.below) & (best < 0.5 * state.polished)
    for g in np.flatnonzero(due):
        b, before = int(np.argmin(state.best_loss[g])), float(best[g])
        state = end_game(state, int(g), batch=programs.batch, solver=solver,
                         programs=programs, recorder=recorder)
        if state.running()[g] and state.best_loss[g, b] <= 0.5 * before:
            state = _go_on_from_best(state, int(g), b, programs)
    return state


def restart_stalled(state: SolverState, current: np.ndarray, *, solver: Solver,
                    programs: Programs, recorder: Recorder) -> tuple[SolverState, np.ndarray]:
    """Fresh starts for stalled lone starts (``Reseed.fresh_after``): a start whose
    ``current`` loss has not fallen tenfold in ``fresh_after`` steps (and is above ``tol``)
    takes new random candidates and a fresh optimiser state, unless
    :func:`rescue_stalled` (with the polish on) keeps it going; its best so far stays its
    ``best_X``. Where the solver widens (:func:`widens`), fresh starts join the stalled
    start instead (:func:`widen_starts`), and the run goes on with several. Runs with one
    start per problem only (several starts have cloning). Returns the state and the flags of
    the restarted starts."""
    fell = current < 0.1 * state.window
    window = np.where(fell, current, state.window)
    since = np.where(fell, state.steps, state.window_from)
    stalled = ((state.steps - since >= solver.reseed.fresh_after) & (current > solver.tol)
               & state.running()[:, None])
    if current.shape[1] != 1 or not stalled.any():
        return state._replace(window=window, window_from=since), np.zeros_like(stalled)
    drawn = state.key  # a fresh start after a failed rescue draws what it would have drawn
    if polish_applies(programs.batch.problem, solver.polish):
        state, stalled, since = rescue_stalled(state._replace(window=window), stalled, since,
                                               solver=solver, programs=programs,
                                               recorder=recorder)
        window = state.window
        if not stalled.any():
            return state._replace(window_from=since), stalled
    if widens(programs.batch, solver, current.shape[1]):
        state = widen_starts(state._replace(window=window, window_from=since), stalled,
                             widened_starts(programs.batch, solver), programs=programs)
        return state, np.zeros_like(stalled)
    key, _, sub = _split_each(jnp.where(stalled[:, 0], drawn, state.key))
    problem = programs.batch.problem
    new = stacked_on_host([initial_candidates(k, problem, 1, state.X.dtype) for k in sub])
    X = jnp.where(_grouped(stalled, state.X), new, state.X)
    opt_state = _reset_optimiser(state, X, stalled, programs)
    return state._replace(
        X=X, opt_state=opt_state, key=key, window=np.where(stalled, np.inf, window),
        window_from=np.where(stalled, state.steps, since),
        checkpoint=np.where(stalled, np.inf, state.checkpoint),
        attempts=np.where(stalled, 0, state.attempts),
        fresh=state.fresh + stalled.any(axis=1)), stalled


def widens(batch: ProblemBatch, solver: Solver, starts: int) -> bool:
    """Whether a stalled lone start of ``batch`` is joined by fresh starts
    (``Solver.widen_to``, :func:`widened_starts`) rather than restarted alone: one problem
    (:func:`solve`; in a batch every problem would get the new starts, and a problem's run
    would depend on its companions), one start, chosen by size (``restarts=0``) below
    ``single_start_ratio``, and re-seeding on with a stall window (the new starts clone and
    re-seed)."""
    return (solver.widen_to > 1 and starts == 1 and batch.G == 1 and solver.restarts == 0
            and solver.reseed is not None and solver.reseed.fresh_after > 0
            and batch_feature_ratio(batch) < solver.single_start_ratio)


def first_starts(batch: ProblemBatch, solver: Solver) -> int:
    """The starts a run of ``batch`` begins with: one where it widens on need
    (:func:`widens`), is at least ``lone_start_ratio`` above the threshold and its budget
    leaves room to notice a stall (``max_steps`` at least twice ``Reseed.fresh_after``), else
    the number chosen by size (:func:`resolve_restarts`)."""
    ratio = batch_feature_ratio(batch)
    if (widens(batch, solver, 1) and ratio >= solver.lone_start_ratio
            and solver.max_steps >= 2 * solver.reseed.fresh_after):
        return 1
    return resolve_restarts(solver, batch.problem, ratio)


def widened_starts(batch: ProblemBatch, solver: Solver) -> int:
    """The starts a stalled lone start widens to: ``widen_to`` or the number chosen by size
    (:func:`resolve_restarts`), the larger."""
    return max(solver.widen_to,
               resolve_restarts(solver, batch.problem, batch_feature_ratio(batch)))


def widen_starts(state: SolverState, stalled: np.ndarray, starts: int, *,
                 programs: Programs) -> SolverState:
    """``state`` with ``starts`` starts per problem: each problem's lone start as start 0,
    unchanged (its optimiser state, best and checks kept), and ``starts - 1`` fresh random
    starts drawn from the problem's key, on the exact loss; problems already stopped get them
    ``done``. ``stalled`` (``G x 1``) counts the new starts as fresh starts of the problems
    that stalled. Recompiles ``programs`` for the new shapes (:meth:`Programs.widen`)."""
    G, extra = state.X.shape[0], starts - 1
    key, _, sub = _split_each(state.key)
    new = stacked_on_host([initial_candidates(k, programs.batch.problem, extra, state.X.dtype)
                           for k in sub])
    X = jnp.concatenate([state.X, new], axis=1)
    opt_state = jax.tree.map(lambda old, fresh: fresh.at[:, :1].set(old), state.opt_state,
                             programs.init(X))

    def more(a: np.ndarray, value) -> np.ndarray:
        return np.concatenate([a, np.full((G, extra), value, a.dtype)], axis=1)

    done = jnp.concatenate([state.done, jnp.broadcast_to(
        jnp.asarray(~state.running())[:, None], (G, extra))], axis=1)
    state = state._replace(
        X=X, opt_state=opt_state, done=done,
        smoothed=jnp.concatenate([state.smoothed, jnp.zeros((G, extra), bool)], axis=1),
        key=key, best_X=jnp.concatenate([state.best_X, new], axis=1),
        best_loss=more(state.best_loss, np.inf), checkpoint=more(state.checkpoint, np.inf),
        attempts=more(state.attempts, 0), window=more(state.window, np.inf),
        window_from=more(state.window_from, state.steps),
        fresh=state.fresh + extra * stalled[:, 0])
    programs.widen(state)
    return state


def checkpoint(state: SolverState, current: np.ndarray, *, solver: Solver, sharp_from: int,
               programs: Programs, recorder: Recorder) -> SolverState:
    """The re-seeding check: a lone start stalled for ``reseed.fresh_after`` steps starts
    afresh (:func:`restart_stalled`); a problem of several starts whose best has halved, not
    fallen tenfold, since its last polish gets its end game again every ``fresh_after``
    steps (:func:`revisit_stalled`); a start on the exact loss whose loss fell by less than
    half since the last check (and is above ``tol``) is stuck; stuck starts are cloned from
    the best (:func:`clone_best`, once the smoothing phase is over) or re-seeded
    (:func:`reseed_stuck`)."""
    restarted = np.zeros(current.shape, bool)
    if solver.reseed.fresh_after:
        state, restarted = restart_stalled(state, current, solver=solver, programs=programs,
                                           recorder=recorder)
        if state.X.shape[1] != current.shape[1]:
            return state  # widened (:func:`widen_starts`): the new starts are checked next time
        state = revisit_stalled(state, solver=solver, programs=programs, recorder=recorder)
    exact_now = ~np.asarray(state.smoothed) | (state.steps > sharp_from)
    stuck = ((current > 0.5 * state.checkpoint) & (current > solver.tol) & exact_now
             & state.running()[:, None] & ~restarted)
    state = state._replace(checkpoint=np.where(exact_now, current, state.checkpoint))
    explore = np.zeros(current.shape, bool)
    if solver.cloning is not None and state.steps > sharp_from:
        state, explore = clone_best(state, current=current, stuck=stuck,
                                    share=solver.cloning.share)
    if stuck.any():
        state = reseed_stuck(state, stuck=stuck, explore=explore, programs=programs)
    return state


def stop_problems(state: SolverState, which: np.ndarray, *, clock: Clock,
                  failed: np.ndarray | None = None,
                  unpinned: np.ndarray | None = None) -> SolverState:
    """Stop the problems flagged in ``which``: their starts are all ``done`` from now on, and
    the step and the time are kept (with the ``failed`` and ``unpinned`` flags given)."""
    if not which.any():
        return state
    none = np.zeros_like(which)
    return state._replace(
        done=jax.device_put(np.asarray(state.done) | which[:, None]),
        stopped=np.where(which, state.steps, state.stopped),
        seconds=np.where(which, clock.seconds(), state.seconds),
        failed=state.failed | (which & (none if failed is None else failed)),
        unpinned=state.unpinned | (which & (none if unpinned is None else unpinned)))


def stop_finished(state: SolverState, *, finite: np.ndarray, clock: Clock,
                  checked: bool = False) -> tuple[SolverState, np.ndarray]:
    """Stop the problems that finished in the last block: their loss stopped being finite
    (``finite``, per problem: ``failed``) or, unless ``checked``, one of their starts reached
    ``tol``. Returns the state and the problems that reached ``tol`` but are left to the end
    game (:func:`end_game`) to check when ``checked``."""
    reached = state.running() & np.asarray(state.done).any(axis=1) & finite
    state = stop_problems(state, state.running() & ~finite, clock=clock, failed=~finite)
    if checked:
        return state, reached
    return stop_problems(state, reached, clock=clock), np.zeros_like(reached)


#: relative difference under which a re-seeded polish counts as back at the same floor
FLOOR_MATCH = 1e-3

#: the round-off floor's scale in units of ``eps^2`` of ``theta``'s dtype
#: (:func:`round_off_floor`)
ROUND_OFF_SCALE = 1e3


def round_off_floor(problem: ReconstructionProblem) -> float:
    """The loss up to which a run whose candidates are all pinned has reached round-off:
    :data:`ROUND_OFF_SCALE` times ``eps^2`` of ``theta``'s dtype (float32: 1.4e-11, below the
    default ``tol``). Rounding ``theta`` moves each entry by up to ``eps/2`` relative, so the
    share of ``theta`` outside the span of the true features can be about ``eps^2 / 4``, and
    more after the features' own rounding: solutions polished from Adam measured 0.4 to 12
    ``eps^2`` (float32 ``theta``, ReLU, tanh and softplus features; 0.05 ``eps^2`` at the
    truth with float64 features). Judged from ``theta`` alone, never from the truth."""
    return ROUND_OFF_SCALE * float(jnp.finfo(problem.theta.dtype).eps) ** 2


def _target(solver: Solver, programs: Programs) -> float:
    """The loss at which an end game's candidates, all pinned, are done: ``tol``, or the
    round-off floor (:func:`round_off_floor`) where ``tol`` is below it."""
    return max(solver.tol, round_off_floor(programs.batch.problem))


def _done(loss: float, confidence: np.ndarray, *, solver: Solver,
          programs: Programs) -> bool:
    """Whether an end game's candidates are done: every one pinned (``polish.pinned``) at
    :func:`_target`."""
    return loss <= _target(solver, programs) and confidence.min() >= solver.polish.pinned


def _settle_precisely(X, loss: float, confidence: np.ndarray, g: int, *, solver: Solver,
                      programs: Programs):
    """For candidates ``X`` of problem ``g`` at ``tol`` (or round-off: :func:`_target`) with
    a candidate below ``polish.pinned``: the polish and the confidence again with float64
    features (``precise``). With a float32 ``theta`` the loss bottoms out near 1e-14, where
    float32 features blur a sample of tiny share: its candidate can look loose though
    ``theta`` pins it. Returns ``(X, loss, confidence, products)`` if every candidate is
    pinned then (the loss still at ``tol``), else ``None`` (nothing to settle, or loose)."""
    if loss > _target(solver, programs) or confidence.min() >= solver.polish.pinned:
        return None
    X_fine, loss_fine, used = programs.polish(X, g, precise=True)
    confidence_fine = programs.confidences(X_fine, g, precise=True)
    if _done(loss_fine, confidence_fine, solver=solver, programs=programs):
        return X_fine, loss_fine, confidence_fine, used
    return None


def _cleaned_reseed(X, confidence: np.ndarray, key, g: int, *, programs: Programs):
    """``(X, products)``: the candidates ``X`` of problem ``g`` with the least pinned one
    re-seeded on a clean residual. The others are first polished without it (its features
    left out of the span), so that what ``theta`` leaves outside their span is the missing
    sample's part alone rather than that part plus the others' errors; the one-point search
    (:meth:`Programs.reseed_one`) then looks for the point that captures it, and a short
    walk of Adam (:meth:`Programs.walk`, ``polish.walk_steps`` steps) leaves the shallow
    valley where the polish would stall a little off the truth. At ratio 2 of the law grid's
    largest size (``n=20, d=100, p=4000``, seed 2; two candidates on one sample, a sample of
    tiny share missing) the search on the unpolished residual captured a spurious point
    every time; on the clean one it found the missing sample's neighbourhood (error 0.3),
    from which the polish alone stalled at loss 5e-8 and the walk then the polish solved it.
    ``products``: the polish's Jacobian products plus the walk's steps."""
    worst = int(np.argmin(confidence))
    X_clean, _, used = programs.polish(X, g, left_out=[worst])
    rank = int(np.flatnonzero(np.argsort(programs.confidences(X_clean, g)) == worst)[0])
    start = programs.reseed_one(X_clean, g, key, attempt=rank)
    return programs.walk(start, g), used + programs.solver.polish.walk_steps


def _group_guess(X, confidence: np.ndarray, m: int, g: int, *, programs: Programs):
    """``(X, products)``: the candidates ``X`` of problem ``g`` with its ``m`` least pinned
    ones placed at the guesses of ``m`` inputs from a clean residual: the others are first
    polished without them (their features left out of the span), so that what ``theta``
    leaves outside the others' span is the missing samples' part rather than that part plus
    the others' errors. At the authors' size (``n=20, d=100, p=20000``) Adam's first
    polished points of seeds 2-4 had 2 to 4 candidates below confidence 1, each a missing
    sample's stand-in (cosine 0.7 to the nearest sample), and a nearby minimum (loss 3e-4)
    that guessing one candidate at a time did not leave; the guesses for those and the next
    least pinned one went to loss 3e-8 (seed 2, one candidate left for the next round), to the
    solution (seed 4) and to 5e-12 (seed 3), where seed 2 had otherwise run 1,900 more steps
    of Adam."""
    loose = np.argsort(confidence)[:m]
    X_clean, _, used = programs.polish(X, g, left_out=loose)
    return programs.place_guesses(X_clean, g, loose), used


def _reseed_rounds(X, loss: float, confidence: np.ndarray, key, g: int, *, solver: Solver,
                   programs: Programs):
    """The rounds of :func:`end_game` from its polished candidates ``X`` of problem ``g``:
    ``(X, loss, confidence, key, products, precise)``. Each round starts from the next of
    the guesses at this point (:meth:`Programs.guess_moves`: several loose candidates at
    once from a clean residual, :func:`_group_guess`; the least pinned one at the guess,
    then at its opposite) or, once they are all rejected, from the least pinned candidate
    re-seeded by the search on the residual the others leave once polished without it
    (:func:`_cleaned_reseed`, below ``polish.below`` only: higher up, as in a rescue
    (:func:`rescue_stalled`), its walk lowers the loss whatever the re-seed, and at ratio 2
    seed 4 kept a spurious start going that a fresh one would have left), else on the
    residual they leave where they are (:meth:`Programs.reseed_one`), and polishes."""
    polish = solver.polish
    products, precise, guesses = 0, False, programs.guess_moves(confidence)
    for _ in range(polish.rounds if solver.reseed is not None else 0):
        if _done(loss, confidence, solver=solver, programs=programs):
            break
        key, sub = jax.random.split(key)
        if guesses and guesses[0][0] > 1:
            start, used = _group_guess(X, confidence, guesses.pop(0)[0], g, programs=programs)
            products += used
        elif guesses:
            start = programs.place_guesses(X, g, [int(np.argmin(confidence))], guesses.pop(0)[1])
        elif polish.cleaned and loss < polish.below:
            start, used = _cleaned_reseed(X, confidence, sub, g, programs=programs)
            products += used
        else:
            start = programs.reseed_one(X, g, sub)
        X_try, loss_try, used = programs.polish(start, g)
        products += used
        confidence_try = programs.confidences(X_try, g)
        if (loss > solver.tol and abs(loss_try - loss) <= FLOOR_MATCH * loss
                and min(confidence.min(), confidence_try.min()) >= polish.pinned):
            break  # the re-seed came back to the same floor, every candidate pinned
        if (confidence_try.min() > confidence.min() and loss_try <= solver.tol
                if loss <= solver.tol else loss_try < loss):
            X, loss, confidence = X_try, loss_try, confidence_try
            guesses = programs.guess_moves(confidence)
            settled = _settle_precisely(X, loss, confidence, g, solver=solver,
                                        programs=programs)
            if settled is not None:
                (X, loss, confidence, used), precise = settled, True
                products += used
    return X, loss, confidence, key, products, precise


def end_game(state: SolverState, g: int, *, batch: ProblemBatch, solver: Solver,
             programs: Programs, recorder: Recorder,
             current: np.ndarray | None = None) -> SolverState:
    """The Gauss-Newton end game (:class:`recon.solver_parts.Polish`) of problem ``g``'s best
    start: polish it; then, while its loss is above ``tol`` (a nearby minimum) or a candidate
    is not pinned (leave-one-out confidence below ``polish.pinned``), move the least pinned
    candidate (:func:`_reseed_rounds`) and polish again, at most ``polish.rounds`` times (none
    when re-seeding is off), keeping a try only if it lowers the loss (above ``tol``) or pins
    more (at ``tol``). Above ``tol``, a try that comes back to the same loss (within
    :data:`FLOOR_MATCH`) with every candidate pinned ends the rounds: each candidate explains
    at least ``pinned`` times what is left of ``theta`` and the re-seed found the same point
    again, so the rest is a floor (a network's training loss, round-off), which more re-seeds
    would only find again (judged from ``theta`` alone). The result becomes the start's best
    if lower; the start goes on from where Adam left it. At ``tol`` the problem stops, solved
    or ``unpinned`` (a loose one checked in float64 first: :func:`_settle_precisely`). Where
    the best is still the last end game's result (nothing lower found since) and the starts'
    own losses ``current`` are given, it starts from the lowest start's own point instead:
    polishing the same point again would only find it again."""
    b = int(np.argmin(state.best_loss[g]))
    X, loss = state.best_X[g, b], float(state.best_loss[g, b])
    if current is not None and loss >= state.polished[g]:
        b = int(np.argmin(current[g]))
        X, loss = state.X[g, b], float(current[g, b])
    origin = loss
    X_new, loss_new, products = programs.polish(X, g)
    if loss_new < loss:
        X, loss = X_new, loss_new
    confidence = programs.confidences(X, g)
    settled = _settle_precisely(X, loss, confidence, g, solver=solver, programs=programs)
    if settled is not None:
        X, loss, confidence, used = settled
        products += used
    X, loss, confidence, key, used, precise = _reseed_rounds(
        X, loss, confidence, state.key[g], g, solver=solver, programs=programs)
    products += used
    if loss < state.best_loss[g, b]:  # the start itself goes on where Adam left it
        best_loss = state.best_loss.copy()
        best_loss[g, b] = loss
        best_X = np.array(state.best_X)  # set on the host: nothing compiled
        best_X[g, b] = np.asarray(X)
        state = state._replace(best_X=jax.device_put(best_X), best_loss=best_loss)
    this = np.arange(batch.G) == g
    state = state._replace(key=state.key.at[g].set(key),
                           polished=np.where(this, loss, state.polished),
                           polished_from=np.where(this, origin, state.polished_from),
                           products=state.products + products * this,
                           precise=state.precise | (this & (precise or settled is not None)))
    if g == 0:
        recorder.record_errors(X, state.steps)
    if loss <= solver.tol:
        state = stop_problems(state, this, clock=programs.clock,
                              unpinned=this & (confidence.min() < solver.polish.pinned))
    elif _done(loss, confidence, solver=solver, programs=programs):
        state = stop_problems(state, this, clock=programs.clock)  # at round-off: "round-off"
    return state


def end_games(state: SolverState, reached: np.ndarray, *, batch: ProblemBatch,
              solver: Solver, programs: Programs, recorder: Recorder,
              current: np.ndarray | None = None) -> SolverState:
    """:func:`end_game` for each running problem that ``reached`` ``tol`` in the last block,
    or whose best loss is below ``polish.below`` and at most a tenth of its last polished
    loss, or (given the starts' own losses ``current``) one of whose starts has itself fallen
    below ``polish.below`` and to a tenth of the loss the last end game started from. A
    start goes on from its own point after an end game, and where the end game's result is
    far below it (a nearby minimum that Adam does not reach) the best would take thousands of
    steps to fall tenfold below that result: at ratio 2 of the law grid's largest size
    (``n=20, d=100, p=4000``) seed 1's end game at step 1,100 left loss 1.5e-5 while its
    start was at 6e-4, and the next one waited until step 6,000."""
    if not polish_applies(batch.problem, solver.polish):
        return state
    best = state.best_loss.min(axis=1)
    own = (np.zeros_like(best, bool) if current is None else
           (current.min(axis=1) < solver.polish.below)
           & (current.min(axis=1) <= 0.1 * state.polished_from))
    due = state.running() & (reached | own | ((best < solver.polish.below)
                                              & (best <= 0.1 * state.polished)))
    for g in np.flatnonzero(due):
        state = end_game(state, int(g), batch=batch, solver=solver, programs=programs,
                         recorder=recorder, current=current)
    return state


def advance(state: SolverState, *, batch: ProblemBatch, solver: Solver,
            programs: Programs, recorder: Recorder, sharp_from: int):
    """One block of steps for every start, then the bookkeeping between blocks: the loss of
    each start, the problems that finished (:func:`stop_finished`; a NaN or infinite loss
    stops its problem as failed), the best candidates, the error history and, when due, the
    re-seeding :func:`checkpoint`. Returns ``(state, steps run)``."""
    block = programs.smooth if state.steps < sharp_from else programs.exact
    limit = min(solver.chunk, solver.max_steps - state.steps)
    running = state.running()
    (X, opt_state, done), values = block(state.X, state.opt_state, state.done, state.smoothed,
                                         batch.state, batch.theta, state.steps, limit)
    values = np.asarray(values)[..., :limit]  # (G, restarts, steps)
    recorder.losses.append(values)
    state = state._replace(X=X, opt_state=opt_state, done=done, steps=state.steps + limit)
    current = np.asarray(programs.loss(X, batch.state, batch.theta))
    finite = (np.isfinite(values).all(axis=(1, 2)) & np.isfinite(current).all(axis=1)
              | ~running)
    state = keep_best(state, np.where(running[:, None], current, np.inf))
    state, reached = stop_finished(state, finite=finite, clock=programs.clock,
                                   checked=polish_applies(batch.problem, solver.polish))
    if recorder.truth is not None:  # one problem: its best start's errors
        recorder.record_errors(state.best_X[0, int(np.argmin(state.best_loss[0]))], state.steps)
    state = end_games(state, reached, batch=batch, solver=solver, programs=programs,
                      recorder=recorder, current=np.where(running[:, None], current, np.inf))
    if (solver.reseed is not None and state.steps % solver.reseed.patience == 0
            and state.steps < solver.max_steps and state.running().any()):
        state = checkpoint(state, current, solver=solver, sharp_from=sharp_from,
                           programs=programs, recorder=recorder)
    return state, limit


def polish_best(state: SolverState, *, batch: ProblemBatch, solver: Solver,
                programs: Programs, recorder: Recorder) -> SolverState:
    """The finish once the budget is spent: the end game (:func:`end_games`) of every
    problem still running whose best loss is below ``polish.below`` and at most a tenth of
    its last polished loss."""
    return end_games(state, np.zeros(batch.G, bool), batch=batch, solver=solver,
                     programs=programs, recorder=recorder)


def report(state: SolverState, g: int, *, solver: Solver, sharp_from: int,
           recorder: Recorder, programs: Programs, losses: np.ndarray) -> Reconstruction:
    """The :class:`Reconstruction` of problem ``g``'s best start: the iterations are the
    steps until its loss (on the exact features) first reached ``tol``, else all steps it
    ran, plus the polish's Jacobian products. ``losses``: every step's loss, ``(G, restarts,
    steps)``."""
    clock = programs.clock
    ran = int(state.stopped[g]) or state.steps
    seconds = float(state.seconds[g]) if state.stopped[g] else clock.seconds()
    trace = losses[g, :, :ran]  # (restarts, steps)
    best = int(np.argmin(state.best_loss[g]))
    exact_loss = (np.arange(trace.shape[1]) >= sharp_from) | ~bool(state.smoothed[g, best])
    reached = np.flatnonzero((trace[best] <= solver.tol) & exact_loss)
    iterations = int(reached[0]) if reached.size else trace.shape[1]
    loss_curve = trace[best, : iterations + 1] if reached.size else trace[best]
    iterations += int(state.products[g])
    loss = float(state.best_loss[g, best])
    at_tol = bool(loss <= solver.tol) and not state.unpinned[g]
    at_round_off = (bool(state.stopped[g]) and loss <= _target(solver, programs)
                    and not (at_tol or state.failed[g] or state.unpinned[g]))
    converged = at_tol or at_round_off
    reason = ("non-finite loss" if state.failed[g] else "unpinned" if state.unpinned[g]
              else "tol" if at_tol else "round-off" if at_round_off else "budget")
    X = jax.device_put(np.asarray(state.best_X)[g, best])  # sliced on the host
    confidence = (None if state.failed[g] else
                  programs.confidences(X, g, bool(state.precise[g])))
    history = recorder.history(loss_curve) if g == 0 else History(
        loss_curve, *(np.zeros(0) for _ in range(4)))
    return Reconstruction(X, loss, iterations, seconds, converged,
                          history, clock.compile_seconds, reason, confidence,
                          int(state.fresh[g]))


def _checked_truth(problem: ReconstructionProblem, solver: Solver, truth):
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a recon.solver.Solver, got {type(solver).__name__}")
    if truth is None:
        return None
    truth = jnp.asarray(truth)
    expected = (problem.n,) + problem.input_shape
    if truth.shape != expected:
        raise ValueError(f"truth must have shape {expected}, got {truth.shape}")
    return checks.finite_array("truth", truth)


#: a batch drops its stopped problems from its blocks (:func:`compact_rows`) only when the
#: steps this saves, at the pace of its fastest block over as many steps again as it has run
#: (at most the budget left: problems still running after ``t`` steps are guessed to run
#: about ``t`` more), would take more than this many times the compilation of its programs
COMPACT_PAYBACK = 2.0


def compact_rows(running: np.ndarray, *, step_seconds: float, steps_left: int,
                 compile_seconds: float) -> np.ndarray | None:
    """The problems a batch keeps in its blocks once some have stopped (a vmapped block
    computes every problem's starts, stopped or not), or ``None`` to keep them all. It drops
    them when at most three quarters still run and the work saved, ``step_seconds`` (the
    batch's seconds per step) times ``steps_left`` times the share dropped, exceeds
    :data:`COMPACT_PAYBACK` times ``compile_seconds`` (the blocks for the smaller batch are
    compiled afresh). It keeps at least two problems (a stopped one beside a last runner):
    a batch of one takes other decisions (:func:`widens`, :func:`reseed_targets`), and a
    problem's run must not depend on its companions."""
    G = running.size
    keep = np.flatnonzero(running)
    if G <= 2 or keep.size == 0 or keep.size > 0.75 * G:
        return None
    if keep.size == 1:
        keep = np.sort(np.append(keep, np.flatnonzero(~running)[0]))
    saved = step_seconds * steps_left * (G - keep.size) / G
    return keep if saved > COMPACT_PAYBACK * compile_seconds else None


def _state_rows(state: SolverState, rows: np.ndarray) -> SolverState:
    """``state`` for the problems ``rows`` only."""
    return SolverState(**{name: value if name == "steps" else jax.tree.map(
        lambda a: a[rows], value) for name, value in state._asdict().items()})


class _Sweep:
    """The part of a batch its blocks still run: its problems (``ids``, their places in the
    whole batch), their programs and recorder, and the reports of the problems it dropped
    (:func:`compact_rows`). Its :meth:`advance` is the loop's step."""

    def __init__(self, batch: ProblemBatch, solver: Solver, programs: Programs,
                 recorder: Recorder):
        self.batch, self.solver, self.programs, self.recorder = batch, solver, programs, recorder
        self.ids, self.reports = np.arange(batch.G), {}
        self.compile_seconds = programs.clock.compile_seconds
        self.step_seconds = np.inf

    def advance(self, state: SolverState) -> tuple[SolverState, int]:
        """:func:`advance`, then :meth:`compacted` if it pays."""
        tic = self.programs.clock.seconds()
        state, steps = advance(state, batch=self.batch, solver=self.solver,
                               programs=self.programs, recorder=self.recorder,
                               sharp_from=self.programs.sharp_from)
        self.step_seconds = min(self.step_seconds, (self.programs.clock.seconds() - tic) / steps)
        rows = compact_rows(state.running(), step_seconds=self.step_seconds,
                            steps_left=min(self.solver.max_steps - state.steps, state.steps),
                            compile_seconds=self.compile_seconds)
        return (state if rows is None else self.compacted(state, rows)), steps

    def compacted(self, state: SolverState, rows: np.ndarray) -> SolverState:
        """The problems not in ``rows`` (stopped) reported and dropped; the programs of the
        smaller batch (their compilation time is the next estimate)."""
        self.report(state, np.setdiff1d(np.arange(self.batch.G), rows))
        state = _state_rows(state, rows)
        self.batch = ProblemBatch(self.batch.problem,
                                  jax.tree.map(lambda a: a[rows], self.batch.state),
                                  self.batch.theta[rows])
        self.recorder.losses = [block[rows] for block in self.recorder.losses]
        self.ids = self.ids[rows]
        before = self.programs.clock.compile_seconds
        self.programs = self.programs.for_rows(self.batch, state)
        self.compile_seconds = self.programs.clock.compile_seconds - before
        self.step_seconds = np.inf
        return state

    def report(self, state: SolverState, rows) -> None:
        """:func:`report` of the problems ``rows`` not reported yet."""
        losses = self.recorder.stacked_losses()
        for g in rows:
            if int(self.ids[g]) not in self.reports:
                self.reports[int(self.ids[g])] = report(
                    state, int(g), solver=self.solver, sharp_from=self.programs.sharp_from,
                    recorder=self.recorder, programs=self.programs, losses=losses)


def _solve_stacked(batch: ProblemBatch, solver: Solver, keys: Array, truth, progress: bool,
                   error_fn) -> list[Reconstruction]:
    """The loop shared by :func:`solve` and :func:`solve_batch`."""
    from recon.metrics import per_sample_errors

    problem = batch.problem
    restarts = first_starts(batch, solver)
    sharp_from = smoothing_steps(problem, solver, restarts)
    state = initial_state(problem, solver, restarts, sharp_from, keys,
                          first_guesses(batch, solver))
    clock = Clock()
    programs = Programs(batch, solver, state, sharp_from, clock)
    recorder = Recorder(truth, error_fn or per_sample_errors, clock)
    sweep = _Sweep(batch, solver, programs, recorder)
    state = run_blocks(
        sweep.advance, state,
        finished=lambda s: s.steps >= solver.max_steps or not s.running().any(),
        total=solver.max_steps, desc=f"solver ({solver.name})", progress=progress,
        status=lambda s: f"loss={s.best_loss.min():.2e}")
    state = polish_best(state, batch=sweep.batch, solver=solver, programs=sweep.programs,
                        recorder=recorder)
    sweep.report(state, range(sweep.batch.G))
    return [sweep.reports[g] for g in range(batch.G)]


@precision.float64
def solve(problem: ReconstructionProblem, solver: Solver, key: Array, truth: Array | None = None,
          progress: bool = True, error_fn=None, allow_underdetermined: bool = False
          ) -> Reconstruction:
    """Minimise the projection loss of ``problem`` from random starts drawn with ``key``.

    ``truth`` (the real inputs) is used only to record the error history, through
    ``error_fn(X_hat, truth)`` (default: sign-aware matched per-sample errors); never by the
    updates. Raises ``FloatingPointError`` if the loss becomes NaN or infinite, and
    ``ValueError`` if ``theta`` lies in the span of any candidates (``n * k >= P``, see
    :func:`recon.problems.check_determined`) unless ``allow_underdetermined`` (then it warns).
    """
    truth = _checked_truth(problem, solver, truth)
    checks.finite_array("the problem's theta", problem.theta)
    check_determined(problem, allow_underdetermined)
    result = _solve_stacked(stack_problems([problem]), solver, jnp.stack([key]), truth,
                            progress, error_fn)[0]
    if result.stop_reason == "non-finite loss":
        raise FloatingPointError(
            f"the projection loss became NaN or infinite near step {result.iterations}: lower "
            f"the learning rate or raise the ridge")
    return result


@precision.float64
def solve_batch(problems: list[ReconstructionProblem], solver: Solver, keys,
                progress: bool = True, allow_underdetermined: bool = False
                ) -> list[Reconstruction]:
    """:func:`solve` for several problems that share their feature map and shapes (RF
    problems padded to one ``P`` with :func:`recon.problems.pad_features`), in one compiled
    program: problems side by side (``vmap``), each with its own starts from its own key
    (``keys[g]``), each stopping when it is solved; once enough have stopped, the blocks run
    without them (:func:`compact_rows`: a vmapped block computes stopped problems too).
    Problem ``g``'s result does not depend on the other problems. A problem whose loss
    becomes NaN or infinite stops with ``stop_reason == "non-finite loss"`` (nothing is
    raised: the others go on). Every problem must be determined, as in :func:`solve`
    (``allow_underdetermined``)."""
    problems = list(problems)
    batch = stack_problems(problems)
    for problem in problems:
        check_determined(problem, allow_underdetermined)
    _checked_truth(batch.problem, solver, None)
    checks.finite_array("the problems' theta", batch.theta)
    keys = jnp.stack(list(keys))
    if keys.shape != (batch.G,):
        raise ValueError(f"keys must hold one key per problem ({batch.G}), got shape "
                         f"{keys.shape}")
    return _solve_stacked(batch, solver, keys, None, progress, None)
