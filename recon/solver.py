"""The reconstruction solver: minimise the projection loss over candidates on the sphere.

For candidates ``X_hat`` with features ``F = phi(X_hat)``,

    L(X_hat) = || theta - P(X_hat) theta ||^2 / ||theta||^2,   P(X_hat) = F^T (F F^T)^{-1} F,

which is 0 exactly when ``theta`` lies in the span of the candidate features. The Gram solve
runs in float64 with a ridge relative to the mean diagonal of ``F F^T``, so the loss stays
finite when two candidates come close; the residual ``theta - F^T c`` is formed explicitly so
that small losses are not lost to cancellation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from recon import checks
from recon.loss import projection_residual, projection_share
from recon.sphere import project_to_sphere
from recon.problems import ReconstructionProblem

Array = jax.Array


@dataclass(frozen=True)
class Solver:
    """Settings of the projection-loss minimisation.

    Attributes:
        optimizer: any optax transformation; it receives the (tangent) gradient of ``L``.
        max_steps: step budget.
        tol: stop once ``L <= tol``.
        tangent_gradients: project each row's gradient onto the tangent space of its sphere
            before the optimizer sees it (Riemannian gradient); the authors do not.
        restarts: independent random starts run side by side (``jax.vmap``); the first to
            reach ``tol`` (or the lowest loss) is kept. 0 chooses by problem size: the largest
            power of two (at most ``max_auto_restarts``) keeping ``restarts * n * d * P`` under
            ``auto_restart_work``, so small problems get many starts for little time.
        chunk: steps per compiled block; the stopping rule and progress bar update per block.
        ridge: relative ridge of the Gram solve.
        reseed_patience: if > 0, every this many steps a start whose loss fell by less than
            half is judged stuck, and one of its candidates is replaced by the point that best
            explains the part of ``theta`` the other candidates leave out (see
            ``_make_reseed``); its optimizer state is reset. 0 disables.
        reseed_pool: number of random starts of the one-point search at each reseed: each
            start climbs the share of the left-out residual its features capture, and the
            best end point replaces the removed candidate.
        reseed_steps, reseed_lr: steps and Adam learning rate of that one-point search.
        smooth_steps: if > 0, the problem has ``smoothed_features`` and there are several
            starts, every start but the first spends this many steps (at most half of
            ``max_steps``) on the loss of the smoothed features, with ``beta`` rising
            geometrically from ``smooth_from`` to ``smooth_to``, then goes on with the exact
            features. The smoothed landscape has fewer spurious minima (ReLU kinks are what
            trap candidates near the threshold); start 0 stays exact, which is fastest far
            above it. Smoothed starts are re-seeded and cloned only after this phase.
        smooth_from, smooth_to: the first and last ``beta`` of that schedule.
        refine_scale: after a smoothing phase the optimizer's updates are multiplied by this:
            the smoothing needs long steps to travel, the end game short ones, or a sample
            whose share of ``theta`` is small never settles into its narrow basin.
        polish_evaluations: if > 0 and the budget ends above ``tol``, a Gauss-Newton polish
            (``scipy.optimize.least_squares``, trust-region, Jacobian by ``jax.jacfwd``) of
            the residual ``theta - P theta`` with at most this many evaluations is tried on
            the best candidates. Near a solution it converges in a few dozen evaluations where
            Adam crawls (a sample whose share of ``theta`` is small is found last, or never).
            It goes to the nearest local minimum, so it runs only at the end: polished
            earlier, a start that Adam was still moving towards the truth gets stuck.
        polish_below: the polish runs only if the best loss is below this.
        polish_size: the polish runs only where the Jacobian (``P`` by ``n * d``) has at most
            this many entries.
        clone_share: at each re-seeding check, the stuck starts among this share of the
            worst restart from a copy of the best start with one candidate moved to a random
            point, a different candidate in each copy; the others re-seed themselves as
            above. This searches around the best configuration in parallel, which finds the
            last few samples that one-point searches miss. 0 disables.
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
    reseed_patience: int = 0
    reseed_pool: int = 64
    reseed_steps: int = 200
    reseed_lr: float = 0.05
    smooth_steps: int = 0
    smooth_from: float = 3.0
    smooth_to: float = 100.0
    refine_scale: float = 1.0
    clone_share: float = 0.0
    polish_evaluations: int = 0
    polish_below: float = 1e-4
    polish_size: float = 2e6
    name: str = "custom"

    def __post_init__(self):
        checks.positive_int("max_steps", self.max_steps)
        checks.positive_float("tol", self.tol, allow_zero=True)
        checks.nonnegative_int("restarts", self.restarts)
        checks.positive_int("max_auto_restarts", self.max_auto_restarts)
        checks.positive_float("auto_restart_work", self.auto_restart_work)
        checks.positive_int("chunk", self.chunk)
        checks.positive_float("ridge", self.ridge, allow_zero=True)
        checks.nonnegative_int("reseed_patience", self.reseed_patience)
        checks.positive_int("reseed_pool", self.reseed_pool)
        checks.nonnegative_int("reseed_steps", self.reseed_steps)
        checks.positive_float("reseed_lr", self.reseed_lr)
        checks.nonnegative_int("smooth_steps", self.smooth_steps)
        checks.positive_float("smooth_from", self.smooth_from)
        checks.positive_float("smooth_to", self.smooth_to)
        checks.positive_float("refine_scale", self.refine_scale)
        checks.fraction("clone_share", self.clone_share)
        checks.nonnegative_int("polish_evaluations", self.polish_evaluations)
        checks.positive_float("polish_below", self.polish_below)
        checks.positive_float("polish_size", self.polish_size)
        if self.reseed_patience % self.chunk:
            raise ValueError(f"reseed_patience ({self.reseed_patience}) must be a multiple of "
                             f"chunk ({self.chunk})")
        if not hasattr(self.optimizer, "update"):
            raise TypeError(f"optimizer must be an optax.GradientTransformation, "
                            f"got {type(self.optimizer).__name__}")


def reference_solver(lr: float = 20.0, max_steps: int = 1_000_000, tol: float = 1e-7) -> Solver:
    """The authors' settings: SGD with momentum 0.9 and learning rate 20 (synthetic RF), raw
    Euclidean gradients, rows rescaled to the sphere after every step, one start."""
    lr = checks.positive_float("lr", lr)
    return Solver(optax.sgd(lr, momentum=0.9), max_steps=max_steps, tol=tol,
                  tangent_gradients=False, restarts=1, name="reference")


def default_solver(lr: float = 0.05, max_steps: int = 20_000, tol: float = 1e-10,
                   restarts: int = 0, reseed_patience: int = 200,
                   smooth_steps: int = 1500) -> Solver:
    """Our default: Adam on Riemannian (tangent) gradients; ReLU features smoothed for the
    first ``smooth_steps`` (softplus, ``beta`` from 3 to 100), then exact with steps five
    times shorter; several random starts at once on small problems (``restarts=0``: chosen by
    size); stuck starts re-seeded, half by a one-point search on the residual their other
    candidates leave out, half by restarting from the best start with one candidate moved;
    and a Gauss-Newton polish of the best start if the budget ends short of ``tol``.
    Its tolerance is tighter than the authors' (1e-10 against 1e-7): with the float64 Gram
    solve the loss gets there, and at 1e-7 a sample can still be off by more than 1e-2."""
    lr = checks.positive_float("lr", lr)
    return Solver(optax.adam(lr), max_steps=max_steps, tol=tol, tangent_gradients=True,
                  restarts=restarts, reseed_patience=reseed_patience,
                  smooth_steps=smooth_steps, refine_scale=0.2, clone_share=0.5,
                  polish_evaluations=100, name="default")


PRESETS = {"default": default_solver, "reference": reference_solver}


def preset(name: str, **overrides) -> Solver:
    """A named solver preset (``default`` or ``reference``), with keyword overrides such as
    ``lr``, ``max_steps`` or ``tol``."""
    checks.choice("solver preset", name, PRESETS)
    return PRESETS[name](**overrides)


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
    all starts), their loss, the number of
    iterations run, the wall time after compilation, whether ``loss <= tol`` was reached, the
    history, and the compilation time."""

    X: Array
    loss: float
    iterations: int
    seconds: float
    converged: bool
    history: History
    compile_seconds: float = 0.0


def _on_spheres(X: Array, radius: float) -> Array:
    """Each candidate (first axis) rescaled to norm ``radius``, whatever its input shape."""
    return project_to_sphere(X.reshape(X.shape[0], -1), radius).reshape(X.shape)


def _tangent(G: Array, X: Array, radius: float) -> Array:
    axes = tuple(range(1, X.ndim))
    return G - jnp.sum(G * X, axis=axes, keepdims=True) * X / radius**2


def _make_loss(problem: ReconstructionProblem, solver: Solver):
    def loss(X, state, theta):
        return projection_share(problem.features(state, X), theta, solver.ridge)

    return loss


def smoothing_steps(problem: ReconstructionProblem, solver: Solver, restarts: int) -> int:
    """The number of steps of the smoothing phase of ``solver`` on ``problem`` with
    ``restarts`` starts: its ``smooth_steps``, at most half of ``max_steps``, rounded down to
    whole blocks; 0 when the problem has no smoothed features or there is a single start
    (start 0 always runs on the exact features)."""
    if problem.smoothed_features is None or restarts < 2:
        return 0
    steps = min(solver.smooth_steps, solver.max_steps // 2)
    return steps - steps % solver.chunk


def _make_block(problem: ReconstructionProblem, solver: Solver, smooth_until: int = 0):
    """A jitted function running ``solver.chunk`` steps for every start (vmapped).

    Each start carries a flag ``smoothed``. With ``smooth_until > 0`` this is the block of the
    smoothing phase: flagged starts minimise the loss of the smoothed features with ``beta``
    rising geometrically from ``smooth_from`` (step 0) to ``smooth_to`` (step
    ``smooth_until``), and cannot stop yet. Otherwise all starts use the exact features and
    the updates of flagged starts are scaled by ``refine_scale``.
    """
    radius = problem.radius
    exact = _make_loss(problem, solver)
    growth = solver.smooth_to / solver.smooth_from

    def loss(X, state, theta, t, smoothed):
        if not smooth_until:
            return exact(X, state, theta)

        def soft(X):
            beta = solver.smooth_from * growth ** (t / smooth_until)
            return projection_share(problem.smoothed_features(state, X, beta), theta,
                                  solver.ridge)

        return jax.lax.cond(smoothed, soft, lambda X: exact(X, state, theta), X)

    value_and_grad = jax.value_and_grad(loss)

    def step(carry, t, smoothed, state, theta):
        X, opt_state, done = carry
        value, G = value_and_grad(X, state, theta, t, smoothed)
        if solver.tangent_gradients:
            G = _tangent(G, X, radius)
        updates, new_opt_state = solver.optimizer.update(G, opt_state, X)
        if not smooth_until and solver.refine_scale != 1.0:
            scale = jnp.where(smoothed, solver.refine_scale, 1.0)
            updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
        X_new = _on_spheres(optax.apply_updates(X, updates), radius)
        can_stop = ~smoothed if smooth_until else True
        done = done | ((value <= solver.tol) & can_stop) | ~jnp.isfinite(value)
        X = jnp.where(done, X, X_new)
        opt_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), opt_state, new_opt_state)
        return (X, opt_state, done), value

    def block(X, opt_state, done, smoothed, state, theta, first_step):
        def one(X, opt_state, done, smoothed):
            ts = first_step + jnp.arange(solver.chunk)
            return jax.lax.scan(lambda c, t: step(c, t, smoothed, state, theta),
                                (X, opt_state, done), ts)

        return jax.vmap(one)(X, opt_state, done, smoothed)

    return jax.jit(block)


def _ascend(score, Z, radius: float, steps: int, lr: float):
    """Maximise ``score`` from every row of ``Z`` at once: Adam on tangent gradients, each
    point rescaled to the sphere after every step."""
    grad = jax.vmap(jax.grad(score))
    opt = optax.adam(lr)

    def step(carry, _):
        Z, state = carry
        G = -_tangent(grad(Z), Z, radius)
        updates, state = opt.update(G, state, Z)
        return (_on_spheres(optax.apply_updates(Z, updates), radius), state), None

    (Z, _), _ = jax.lax.scan(step, (Z, opt.init(Z)), None, length=steps)
    return Z


def _make_reseed(problem: ReconstructionProblem, solver: Solver):
    """A jitted function replacing, in each start flagged ``stuck``, a candidate by the point
    that best captures the residual the other candidates leave (or, where ``explore`` is
    set, by a random point). At a start's ``attempt``-th reseed the candidate replaced is the
    one whose removal raises the loss the ``attempt``-th least, so repeated reseeds try every
    candidate in turn."""
    n = problem.n

    def one(X, key, stuck, attempt, explore, state, theta):
        F = problem.features(state, X).astype(jnp.float64)
        k = F.shape[0] // n
        theta64 = theta.astype(jnp.float64)
        gram = F @ F.T
        gram = gram + solver.ridge * jnp.mean(jnp.diagonal(gram)) * jnp.eye(gram.shape[0])
        inv = jnp.linalg.inv(gram)
        coef = inv @ (F @ theta64)
        c_blocks = coef.reshape(n, k)
        inv_blocks = inv.reshape(n, k, n, k)[jnp.arange(n), :, jnp.arange(n), :]
        gain = jnp.einsum("ik,ik->i", c_blocks, jnp.linalg.solve(inv_blocks, c_blocks[..., None])[..., 0])
        worst = jnp.argsort(gain)[attempt % n]
        rows = jax.lax.dynamic_slice_in_dim(inv, worst * k, k, axis=1)
        inv_ii = jax.lax.dynamic_slice_in_dim(rows, worst * k, k, axis=0)
        c_i = jax.lax.dynamic_slice_in_dim(coef, worst * k, k)
        left_out = theta64 - F.T @ coef + F.T @ (rows @ jnp.linalg.solve(inv_ii, c_i))
        direction = left_out / jnp.linalg.norm(left_out)

        def score(z):
            """Share of the left-out residual captured by the features of one point ``z``."""
            Fz = problem.features(state, z[None]).astype(jnp.float64)
            s = Fz @ direction
            G = Fz @ Fz.T + 1e-12 * jnp.eye(k)
            return s @ jnp.linalg.solve(G, s)

        starts = initial_candidates(key, problem, solver.reseed_pool, X.dtype)[:, 0]
        pool = _ascend(score, starts, problem.radius, solver.reseed_steps, solver.reseed_lr)
        best = jnp.where(explore, starts[0], pool[jnp.argmax(jax.vmap(score)(pool))])
        X_new = X.at[worst].set(best)
        return jnp.where(stuck, X_new, X)

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None, None)))


def _make_polish(problem: ReconstructionProblem, solver: Solver):
    """``polish(X) -> X``: minimise ``||theta - P(X) theta||^2 / ||theta||^2`` from ``X`` by
    ``scipy.optimize.least_squares`` (trust-region reflective), with rows ``X_i = r u_i /
    |u_i|`` so the sphere needs no constraint and the Jacobian from ``jax.jacfwd``. Also
    returns a function that compiles both (for timing)."""
    from scipy.optimize import least_squares

    shape = (problem.n,) + problem.input_shape
    theta = problem.theta.astype(jnp.float64)
    norm = jnp.linalg.norm(theta)

    def candidates(u):
        return _on_spheres(u.reshape(shape), problem.radius)

    def residual(u, state):
        return projection_residual(problem.features(state, candidates(u)), theta,
                                   solver.ridge) / norm

    residual_fn, jacobian_fn = jax.jit(residual), jax.jit(jax.jacfwd(residual))

    def compile_all(X):
        u = jnp.zeros(X.size, jnp.float64)
        residual_fn.lower(u, problem.state).compile()
        jacobian_fn.lower(u, problem.state).compile()

    def polish(X):
        out = least_squares(
            lambda u: np.asarray(residual_fn(jnp.asarray(u), problem.state)),
            np.asarray(X, np.float64).ravel(),
            jac=lambda u: np.asarray(jacobian_fn(jnp.asarray(u), problem.state)),
            method="trf", max_nfev=solver.polish_evaluations, xtol=1e-15, ftol=1e-15,
            gtol=1e-15)
        return candidates(jnp.asarray(out.x)).astype(X.dtype)

    return polish, compile_all


def polish_applies(problem: ReconstructionProblem, solver: Solver) -> bool:
    """Whether ``solver`` polishes on ``problem`` (see ``Solver.polish_evaluations``)."""
    jacobian_entries = problem.P * problem.n * problem.d
    return bool(solver.polish_evaluations) and jacobian_entries <= solver.polish_size


def clone_targets(current: np.ndarray, stuck: np.ndarray, share: float) -> tuple[int, list[int]]:
    """The best start (lowest ``current`` loss) and the stuck starts among the worst
    ``share`` of all (never the best) that restart from a copy of it."""
    order = np.argsort(current)
    leader = int(order[0])
    worst = order[len(order) - int(len(order) * share):] if share else order[:0]
    return leader, [int(i) for i in worst if stuck[i] and i != leader]


def resolve_restarts(solver: Solver, problem: ReconstructionProblem) -> int:
    """The number of random starts ``solver`` runs on ``problem`` (see ``Solver.restarts``)."""
    if solver.restarts:
        return solver.restarts
    work = problem.n * problem.d * problem.P
    fits = max(1, int(solver.auto_restart_work // work))
    return int(min(solver.max_auto_restarts, 2 ** (fits.bit_length() - 1)))


def initial_candidates(key: Array, problem: ReconstructionProblem, restarts: int = 1,
                       dtype=jnp.float32) -> Array:
    """Gaussian candidates scaled to the sphere: shape ``(restarts, n, *input_shape)``."""
    X = jax.random.normal(key, (restarts * problem.n, problem.d), dtype)
    X = project_to_sphere(X, problem.radius)
    return X.reshape((restarts, problem.n) + problem.input_shape)


def solve(problem: ReconstructionProblem, solver: Solver, key: Array, truth: Array | None = None,
          progress: bool = True, error_fn=None) -> Reconstruction:
    """Minimise the projection loss of ``problem`` from random starts drawn with ``key``.

    ``truth`` (the real inputs) is used only to record the error history, through
    ``error_fn(X_hat, truth)`` (default: sign-aware matched per-sample errors); never by the
    updates. Raises ``FloatingPointError`` if the loss becomes NaN or infinite.
    """
    from recon.metrics import per_sample_errors

    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a recon.solver.Solver, got {type(solver).__name__}")
    if truth is not None:
        truth = jnp.asarray(truth)
        expected = (problem.n,) + problem.input_shape
        if truth.shape != expected:
            raise ValueError(f"truth must have shape {expected}, got {truth.shape}")
    error_fn = error_fn or per_sample_errors
    key, init_key = jax.random.split(key)
    restarts = resolve_restarts(solver, problem)
    X = initial_candidates(init_key, problem, restarts, problem.theta.dtype)
    opt_state = jax.vmap(solver.optimizer.init)(X)
    done = jnp.zeros((restarts,), bool)
    checkpoint = np.full(restarts, np.inf)
    attempts = np.zeros(restarts, dtype=np.int32)

    sharp_from = smoothing_steps(problem, solver, restarts)
    smoothed_np = (np.arange(restarts) > 0) & (sharp_from > 0)
    smoothed = jnp.asarray(smoothed_np)

    compile_start = time.perf_counter()
    args = (X, opt_state, done, smoothed, problem.state, problem.theta, 0)
    exact_block = _make_block(problem, solver).lower(*args).compile()
    smooth_block = (_make_block(problem, solver, sharp_from).lower(*args).compile()
                    if sharp_from else None)
    batch_loss = jax.jit(jax.vmap(_make_loss(problem, solver), in_axes=(0, None, None)))
    batch_loss.lower(X, problem.state, problem.theta).compile()
    reseed = None  # compiled on first use: most runs never need it
    compile_seconds = time.perf_counter() - compile_start

    losses, error_steps, errors, max_errors, error_seconds = [], [], [], [], []
    best_X, best_loss = X, np.full(restarts, np.inf)
    start = time.perf_counter()

    def record_errors(X_best):
        if truth is not None:
            sample_errors = np.asarray(error_fn(X_best, truth))
            error_steps.append(steps)
            errors.append(float(sample_errors.mean()))
            max_errors.append(float(sample_errors.max()))
            error_seconds.append(time.perf_counter() - start)

    def compiling(thunk):
        """``thunk()``, its time counted as compilation and kept out of ``seconds``."""
        nonlocal compile_seconds, start
        tic = time.perf_counter()
        result = thunk()
        elapsed = time.perf_counter() - tic
        compile_seconds += elapsed
        start += elapsed
        return result

    steps = 0
    bar = tqdm(total=solver.max_steps, desc=f"solver ({solver.name})", disable=not progress,
               unit="step", leave=False)
    try:
        while steps < solver.max_steps and not bool(jnp.any(done)):
            block = smooth_block if steps < sharp_from else exact_block
            (X, opt_state, done), values = block(X, opt_state, done, smoothed, problem.state,
                                                 problem.theta, steps)
            values = np.asarray(values)  # (restarts, chunk)
            steps += solver.chunk
            losses.append(values)
            current = np.asarray(batch_loss(X, problem.state, problem.theta))
            if not (np.all(np.isfinite(values)) and np.all(np.isfinite(current))):
                raise FloatingPointError(
                    f"the projection loss became NaN or infinite near step {steps}: lower the "
                    f"learning rate or raise the ridge")
            improved = current < best_loss
            best_loss = np.where(improved, current, best_loss)
            mask = jnp.asarray(improved).reshape((-1,) + (1,) * (X.ndim - 1))
            best_X = jnp.where(mask, X, best_X)
            record_errors(best_X[int(np.argmin(best_loss))])
            if (solver.reseed_patience and steps % solver.reseed_patience == 0
                    and steps < solver.max_steps):
                exact_now = ~smoothed_np | (steps > sharp_from)
                stuck = (current > 0.5 * checkpoint) & (current > solver.tol) & exact_now
                checkpoint = np.where(exact_now, current, checkpoint)
                explore = np.zeros(restarts, bool)
                leader, clones = clone_targets(current, stuck, solver.clone_share)
                if clones and steps > sharp_from:
                    X = X.at[jnp.asarray(clones)].set(X[leader])
                    attempts[clones] = attempts[leader] + np.arange(len(clones))
                    checkpoint[clones] = current[leader]
                    explore[clones] = True
                if stuck.any():
                    key, sub = jax.random.split(key)
                    if reseed is None:
                        reseed = compiling(lambda: _make_reseed(problem, solver).lower(
                            X, jax.random.split(sub, restarts), done, jnp.asarray(attempts),
                            done, problem.state, problem.theta).compile())
                    X = reseed(X, jax.random.split(sub, restarts), jnp.asarray(stuck),
                               jnp.asarray(attempts), jnp.asarray(explore), problem.state,
                               problem.theta)
                    attempts += stuck
                    fresh = jax.vmap(solver.optimizer.init)(X)
                    flags = jnp.asarray(stuck)
                    opt_state = jax.tree.map(
                        lambda a, b: jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                        fresh, opt_state)
            bar.update(solver.chunk)
            bar.set_postfix(loss=f"{best_loss.min():.2e}")
        best = int(np.argmin(best_loss))
        if (polish_applies(problem, solver) and best_loss[best] > solver.tol
                and best_loss[best] < solver.polish_below):
            polisher, compile_all = _make_polish(problem, solver)
            compiling(lambda: compile_all(best_X[best]))
            X_new = polisher(best_X[best])
            loss_new = float(batch_loss(X_new[None], problem.state, problem.theta)[0])
            if loss_new < best_loss[best]:
                best_loss[best] = loss_new
                best_X = best_X.at[best].set(X_new)
                record_errors(X_new)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    trace = np.concatenate(losses, axis=1)  # (restarts, steps)
    best = int(np.argmin(best_loss))
    exact_loss = (np.arange(trace.shape[1]) >= sharp_from) | ~bool(smoothed[best])
    reached = np.flatnonzero((trace[best] <= solver.tol) & exact_loss)
    iterations = int(reached[0]) if reached.size else trace.shape[1]
    history = History(trace[best, : iterations + 1] if reached.size else trace[best],
                      np.asarray(error_steps), np.asarray(errors), np.asarray(max_errors),
                      np.asarray(error_seconds))
    return Reconstruction(best_X[best], float(best_loss[best]), iterations, seconds,
                          bool(best_loss[best] <= solver.tol), history, compile_seconds)
