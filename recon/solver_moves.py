"""The solver's escape moves, as functions the loop of :func:`recon.solver.solve` calls at
its checkpoints: :func:`reseed_program` (a compiled one-point search that replaces a stuck
start's least useful candidate), :func:`clone_targets` (which stuck starts restart from a copy
of the best one), :func:`polish_program` (a matrix-free Gauss-Newton polish),
:func:`guess_program` (the least pinned candidates placed at the problem's guesses of what
the others leave out) and :func:`leave_one_out_confidence` (how firmly ``theta`` pins each
candidate). Their settings are the parts of :mod:`recon.solver_parts`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recon import models, sphere
from recon.loss import projection_residual, projection_share, ridged_gram
from recon.problems import ReconstructionProblem
from recon.solver_parts import EXACT_CG_TOL, Polish, Reseed

Array = jax.Array

#: the polish counts a result settled once its loss is at most ``stop_at`` and its last
#: Gauss-Newton step moved no candidate by more than this fraction of the radius: near a
#: solution the step is the distance left, so a candidate whose share of ``theta`` is too
#: small to show in the loss still shows in its step
SETTLED_STEP = 1e-4


def over_problems(f, G: int):
    """``jax.vmap(f)`` over the problems' axis; for one problem, ``f`` on the problem's
    arrays with the axis dropped and put back, which compiles to the program of one problem
    (a batch of one can round differently)."""
    if G > 1:
        return jax.vmap(f)

    def one(*args):
        out = f(*jax.tree.map(lambda a: a[0], args))
        return jax.tree.map(lambda a: a[None], out)

    return one


def initial_candidates(key: Array, problem: ReconstructionProblem, restarts: int = 1,
                       dtype=jnp.float32) -> Array:
    """Gaussian candidates scaled to the sphere: shape ``(restarts, n, *input_shape)``. Outside
    traced code the draw is made at a shared size and cut (:func:`recon.models.normal_rows`:
    the same numbers, one compiled draw for many shapes)."""
    rows = restarts * problem.n
    X = (jax.random.normal(key, (rows, problem.d), dtype) if isinstance(key, jax.core.Tracer)
         else models.normal_rows(key, rows, problem.d, dtype))
    X = sphere.project_to_sphere(X, problem.radius)
    return X.reshape((restarts, problem.n) + problem.input_shape)


def _removal_gains(problem: ReconstructionProblem, state, theta, X: Array, ridge: float):
    """``(F, theta, A^{-1}, c, gains)`` in float64 for the candidates ``X``: ``gains[i]``, the
    rise of ``||theta - P theta||^2`` when candidate ``i`` (its ``k`` feature rows) is left
    out, ``c_i^T ((A^{-1})_ii)^{-1} c_i`` with ``c = A^{-1} F theta``."""
    n = problem.n
    F = problem.features(state, X).astype(jnp.float64)
    k = F.shape[0] // n
    theta64 = theta.astype(jnp.float64)
    inv = jnp.linalg.inv(ridged_gram(F, ridge))
    coef = inv @ (F @ theta64)
    c_blocks = coef.reshape(n, k)
    inv_blocks = inv.reshape(n, k, n, k)[jnp.arange(n), :, jnp.arange(n), :]
    gain = jnp.einsum("ik,ik->i", c_blocks,
                      jnp.linalg.solve(inv_blocks, c_blocks[..., None])[..., 0])
    return F, theta64, inv, coef, gain


def left_out_direction(problem: ReconstructionProblem, state, theta, X: Array, attempt,
                       ridge: float):
    """For the candidates ``X`` (one start): the index ``i`` of the candidate whose removal
    raises the loss the ``attempt``-th least (``attempt`` counts modulo ``n``), and the unit
    direction of the residual ``theta - P_{-i} theta`` the other candidates leave out.

    With ``A = F F^T`` (ridged as in the loss), ``c = A^{-1} F theta`` and ``c_i``, ``(A^{-1})_ii``
    the blocks of candidate ``i``, removing ``i`` raises ``||theta - P theta||^2`` by
    ``c_i^T ((A^{-1})_ii)^{-1} c_i``, and the left-out residual is
    ``theta - F^T c + F^T (A^{-1})_{:,i} ((A^{-1})_ii)^{-1} c_i``."""
    n = problem.n
    F, theta64, inv, coef, gain = _removal_gains(problem, state, theta, X, ridge)
    k = F.shape[0] // n
    worst = jnp.argsort(gain)[attempt % n]
    rows = jax.lax.dynamic_slice_in_dim(inv, worst * k, k, axis=1)
    inv_ii = jax.lax.dynamic_slice_in_dim(rows, worst * k, k, axis=0)
    c_i = jax.lax.dynamic_slice_in_dim(coef, worst * k, k)
    left_out = theta64 - F.T @ coef + F.T @ (rows @ jnp.linalg.solve(inv_ii, c_i))
    return worst, left_out / jnp.linalg.norm(left_out)


def reseed_program(problem: ReconstructionProblem, reseed: Reseed, ridge: float,
                   shared: bool = False, explore_only: bool = False):
    """A jitted ``reseed(X, *, keys, stuck, attempts, explore, state, theta) -> X`` over a
    list of starts (vmapped; each with its key, flag, attempt count, and its problem's
    ``state`` and ``theta``, all stacked along the first axis, or one ``state`` and ``theta``
    for all when ``shared``): in each start flagged ``stuck``, the candidate of
    :func:`left_out_direction` is replaced by the end point of ``reseed.pool`` one-point
    searches that best captures the left-out direction (or, where ``explore`` is set, by a
    random point of the sphere); other starts are returned unchanged. With
    ``explore_only`` every flagged start takes a random point (the first of its pool) and no
    search is compiled."""
    def one(X, key, stuck, attempt, explore, state, theta):
        worst, direction = left_out_direction(problem, state, theta, X, attempt, ridge)

        def score(z):
            """Share of the left-out direction captured by the features of one point ``z``."""
            Fz = problem.features(state, z[None]).astype(jnp.float64)
            s = Fz @ direction
            G = Fz @ Fz.T + 1e-12 * jnp.eye(Fz.shape[0])
            return s @ jnp.linalg.solve(G, s)

        starts = initial_candidates(key, problem, reseed.pool, X.dtype)[:, 0]
        if explore_only:
            return jnp.where(stuck, X.at[worst].set(starts[0]), X)
        ascent = optax.chain(sphere.tangent_projection(problem.radius), optax.scale(-1.0),
                             optax.adam(reseed.lr))  # minus the tangent gradient: climbs
        pool = sphere.minimise_on_spheres(jax.vmap(jax.grad(score)), starts, ascent,
                                          reseed.steps, problem.radius)
        best = jnp.where(explore, starts[0], pool[jnp.argmax(jax.vmap(score)(pool))])
        return jnp.where(stuck, X.at[worst].set(best), X)

    batched = jax.vmap(one, in_axes=(0, 0, 0, 0, 0) + ((None, None) if shared else (0, 0)))

    def run(X, *, keys, stuck, attempts, explore, state, theta):
        return batched(X, keys, stuck, attempts, explore, state, theta)

    return jax.jit(run)


def clone_targets(current: np.ndarray, stuck: np.ndarray, share: float) -> tuple[int, list[int]]:
    """The best start (lowest ``current`` loss) and the stuck starts among the worst
    ``share`` of all (never the best) that restart from a copy of it."""
    order = np.argsort(current)
    leader = int(order[0])
    worst = order[len(order) - int(len(order) * share):] if share else order[:0]
    return leader, [int(i) for i in worst if stuck[i] and i != leader]


def polish_applies(problem: ReconstructionProblem, polish: Polish | None) -> bool:
    """Whether ``polish`` runs on ``problem``: it is on (the matrix-free Gauss-Newton polish
    needs no Jacobian in memory, so it serves every size)."""
    return polish is not None


def guess_program(problem: ReconstructionProblem, ridge: float):
    """A jitted ``place(X, state, theta, out, sign) -> X`` for one start of a problem with a
    ``guess``: the candidates flagged in ``out`` (``(n,)`` booleans, ``m`` of them) replaced
    by ``sign`` times the guesses of ``m`` inputs, ``guess(state, r, m)``, from the residual
    ``r = theta - P_kept theta`` the other candidates leave out of ``theta`` (for random
    features the method of moments, :func:`recon.moments.moment_guess`: the ``m`` leading
    eigenvectors of the residual's second moment, each signed by its first moment; with
    ``m = 1`` that sign is itself a guess: hence ``sign``). The guesses are computed for
    ``min(n, d)`` inputs whatever ``m`` (the leading ones are the same), so one program
    serves every ``m``."""
    k = min(problem.n, problem.d)

    def place(X, state, theta, out, sign):
        F = problem.features(state, X)
        F = jnp.where(jnp.repeat(~out, F.shape[0] // problem.n)[:, None], F, 0)
        guesses = problem.guess(state, projection_residual(F, theta, ridge), k)
        guesses = jnp.reshape(guesses, (k,) + problem.input_shape)[
            jnp.clip(jnp.cumsum(out) - 1, 0, k - 1)]
        flags = out.reshape((problem.n,) + (1,) * len(problem.input_shape))
        return jnp.where(flags, (sign * guesses).astype(X.dtype), X)

    return jax.jit(place)


def leave_one_out_confidence(problem: ReconstructionProblem, state, theta, X: Array,
                             ridge: float, precise: bool = False) -> Array:
    """How firmly ``theta`` pins each candidate: ``(L_{-i} - L) / L``, the rise of the
    projection loss when candidate ``i`` is left out, over the loss itself (``inf`` at
    ``L = 0``). It needs only what the attacker has. A candidate that explains a part of
    ``theta`` no other one does scores far above 1 (``10^4`` and more at a solution); one
    that ``theta`` does not pin, say sitting where no training point is while a sample of
    tiny share is missing, scores about 1 or less. With ``c = A^{-1} F theta``, the rise is
    ``c_i^T ((A^{-1})_ii)^{-1} c_i`` (:func:`left_out_direction`). With ``precise``, the
    features are computed from the candidates in float64 (else in their own dtype): near the
    round-off floor of a float32 ``theta``, float32 features blur a sample of tiny share."""
    X = X.astype(jnp.float64) if precise else X
    F, theta64, _, coef, gain = _removal_gains(problem, state, theta, X, ridge)
    residual = theta64 - F.T @ coef
    return gain / (residual @ residual)


def candidate_scales(problem: ReconstructionProblem, state, theta, X: Array,
                     ridge: float) -> Array:
    """``(n,)``, each candidate's step scale for the polish: ``(g_max / g_i)^(1/2)`` with
    ``g_i`` its leave-one-out gain (:func:`_removal_gains`, about ``c_i^2`` times the part of
    its features outside the others' span), capped at ``1e6``. The residual's Jacobian in
    candidate ``i``'s coordinates scales like ``|c_i|``: a sample with a tiny share of
    ``theta`` has a block ``g_i / g_max`` (``1e-11`` and less) times the others', under any
    damping, and conjugate gradients reach it last. In the scaled coordinates every block
    weighs alike (Marquardt's scaling, per candidate)."""
    gain = _removal_gains(problem, state, theta, X, ridge)[-1]
    gain = jnp.maximum(gain, 0.0)
    return jnp.minimum(jnp.sqrt(jnp.max(gain) / jnp.maximum(gain, 1e-300)), 1e6)


def _polish_scales(problem: ReconstructionProblem, polish: Polish, state, theta, X,
                   ridge: float) -> Array:
    """The scale of each unknown of the polish: its candidate's :func:`candidate_scales`
    with ``polish.balanced``, else 1."""
    if not polish.balanced:
        return jnp.ones(X.size, jnp.float64)
    return jnp.repeat(candidate_scales(problem, state, theta, X, ridge), X.size // problem.n)


def walk_program(problem: ReconstructionProblem, steps: int, lr: float, ridge: float):
    """A jitted ``walk(X, state, theta) -> X``: ``steps`` steps of Adam (learning rate
    ``lr``) on the tangent gradient of the projection loss from the candidates ``X`` of one
    start. After a re-seed the polish can stall in a shallow valley a little off the
    truth, where a short first-order walk leaves it (:func:`recon.solver._cleaned_reseed`)."""
    def walk(X, state, theta):
        gradient = jax.grad(lambda Z: projection_share(problem.features(state, Z), theta, ridge))
        descent = optax.chain(sphere.tangent_projection(problem.radius), optax.adam(lr))
        return sphere.minimise_on_spheres(gradient, X, descent, steps, problem.radius)

    return jax.jit(walk)


def _stalled(window: Array, it, since) -> Array:
    """Three iterations since ``since`` that lowered the loss by less than half (``window``:
    the last four losses, newest first)."""
    return (it - since >= 3) & (window[0] > 0.5 * window[3])


def _polish_goes_on(carry, polish: Polish, stop_at) -> Array:
    """Whether :func:`polish_program` goes on from ``carry`` (``u, lambda, loss, the last
    four losses, iterations, products, moved, the conjugate gradients' tolerance, the
    iteration it was set at``): not after ``polish.steps`` iterations, nor once ``lambda``
    grows past ``1e3`` (no step helps), three iterations of exact steps lowered the loss by
    less than half (:func:`_stalled`), or the loss is at most ``stop_at`` and the last step
    moved no candidate by more than :data:`SETTLED_STEP` of the radius (``moved``)."""
    _, lam, loss, window, it, _, moved, tol, since = carry
    stalled = _stalled(window, it, since) & (tol <= EXACT_CG_TOL)
    settled = (loss <= stop_at) & (moved <= SETTLED_STEP)
    return (it < polish.steps) & (lam < 1e3) & (loss > 0) & ~settled & ~stalled


def polish_program(problem: ReconstructionProblem, polish: Polish, ridge: float,
                   precise: bool = False):
    """A jitted ``polish(X, state, theta, left_out=None, stop_at=0.0, cg_tol=EXACT_CG_TOL) ->
    (X, loss, products)``: Levenberg-Marquardt on ``r(X) = (theta - P(X) theta) / ||theta||``,
    matrix-free; candidates flagged in ``left_out`` (``(n,)`` booleans) stay out of the span;
    ``products``: ``cg_steps + 2`` per iteration (at most); ``precise``: float64 features.

    Rows are ``X_i = r u_i / |u_i|``, so the sphere needs no constraint. Each iteration
    solves ``(J^T J + lambda I) delta = -J^T r`` by at most ``polish.cg_steps`` steps of
    conjugate gradients (fewer once their residual is ``cg_tol`` times ``J^T r``, inexact
    Newton steps, until they stall: exact ones then), ``J v`` from :func:`jax.linearize` and
    ``J^T w`` from its transpose: the Jacobian (``P`` by ``n d``) is never formed, so it
    serves any size. A step that lowers the loss is taken and ``lambda`` divided by 3, else
    ``lambda`` is multiplied by 4. With ``polish.balanced`` the unknowns are each candidate's
    coordinates scaled by :func:`candidate_scales` (fixed for the run), so the damping and CG
    treat a candidate of tiny share like the others (stops: :func:`_polish_goes_on`)."""
    def candidates(u):
        return sphere.on_spheres(u.reshape((problem.n,) + problem.input_shape), problem.radius)

    def run(X, state, theta, left_out=None, stop_at=0.0, cg_tol=EXACT_CG_TOL):
        dtype = jnp.float64 if precise else X.dtype
        theta64 = theta.astype(jnp.float64)
        scale = _polish_scales(problem, polish, state, theta, X.astype(dtype), ridge)

        def residual(u):
            F = problem.features(state, candidates(u).astype(dtype))
            if left_out is not None:
                F = jnp.where(jnp.repeat(left_out, F.shape[0] // problem.n)[:, None], 0, F)
            return projection_residual(F, theta64, ridge) / jnp.linalg.norm(theta64)

        def iteration(carry):
            u, lam, loss, window, it, products, _, tol, since = carry
            r0, jvp = jax.linearize(lambda v: residual(u + scale * v), jnp.zeros_like(u))
            vjp = jax.linear_transpose(jvp, u)
            (g,) = vjp(r0)
            step, _ = jax.scipy.sparse.linalg.cg(lambda v: vjp(jvp(v))[0] + lam * v, -g,
                                                 maxiter=polish.cg_steps, tol=tol)
            delta = scale * step
            r1 = residual(u + delta)
            new_loss = r1 @ r1
            better = new_loss < loss
            u = jnp.where(better, u + delta, u)
            loss = jnp.where(better, new_loss, loss)
            lam = jnp.where(better, jnp.maximum(lam / 3, 1e-12), lam * 4)
            window = jnp.roll(window, 1).at[0].set(loss)
            moved = jnp.where(better, jnp.max(jnp.linalg.norm(delta.reshape(
                problem.n, -1), axis=1)) / problem.radius, jnp.inf)
            exact = _stalled(window, it + 1, since) & (tol > EXACT_CG_TOL)  # inexact stalls
            return (u, lam, loss, window, it + 1, products + polish.cg_steps + 2, moved,
                    jnp.where(exact, EXACT_CG_TOL, tol), jnp.where(exact, it + 1, since))

        u0 = X.astype(jnp.float64).reshape(-1)
        loss0 = (lambda r: r @ r)(residual(u0))
        carry = (u0, jnp.asarray(1e-6, jnp.float64), loss0, jnp.full(4, loss0), 0, 0,
                 jnp.asarray(jnp.inf, jnp.float64), jnp.asarray(cg_tol, jnp.float64), 0)
        u, _, loss, _, _, products, *_ = jax.lax.while_loop(
            lambda c: _polish_goes_on(c, polish, stop_at), iteration, carry)
        return candidates(u).astype(X.dtype), loss, products

    return jax.jit(run)
