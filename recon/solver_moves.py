"""The solver's escape moves, as functions the loop of :func:`recon.solver.solve` calls at
its checkpoints: :func:`reseed_program` (a compiled one-point search that replaces a stuck
start's least useful candidate), :func:`clone_targets` (which stuck starts restart from a copy
of the best one) and :func:`gauss_newton_polish` (the end-of-budget polish). Their settings are
the parts of :mod:`recon.solver_parts`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recon import sphere
from recon.loss import projection_residual, ridged_gram
from recon.problems import ReconstructionProblem
from recon.solver_parts import Polish, Reseed

Array = jax.Array


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
    """Gaussian candidates scaled to the sphere: shape ``(restarts, n, *input_shape)``."""
    X = jax.random.normal(key, (restarts * problem.n, problem.d), dtype)
    X = sphere.project_to_sphere(X, problem.radius)
    return X.reshape((restarts, problem.n) + problem.input_shape)


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
    F = problem.features(state, X).astype(jnp.float64)
    k = F.shape[0] // n
    theta64 = theta.astype(jnp.float64)
    inv = jnp.linalg.inv(ridged_gram(F, ridge))
    coef = inv @ (F @ theta64)
    c_blocks = coef.reshape(n, k)
    inv_blocks = inv.reshape(n, k, n, k)[jnp.arange(n), :, jnp.arange(n), :]
    gain = jnp.einsum("ik,ik->i", c_blocks,
                      jnp.linalg.solve(inv_blocks, c_blocks[..., None])[..., 0])
    worst = jnp.argsort(gain)[attempt % n]
    rows = jax.lax.dynamic_slice_in_dim(inv, worst * k, k, axis=1)
    inv_ii = jax.lax.dynamic_slice_in_dim(rows, worst * k, k, axis=0)
    c_i = jax.lax.dynamic_slice_in_dim(coef, worst * k, k)
    left_out = theta64 - F.T @ coef + F.T @ (rows @ jnp.linalg.solve(inv_ii, c_i))
    return worst, left_out / jnp.linalg.norm(left_out)


def reseed_program(problem: ReconstructionProblem, reseed: Reseed, ridge: float,
                   shared: bool = False):
    """A jitted ``reseed(X, *, keys, stuck, attempts, explore, state, theta) -> X`` over a
    list of starts (vmapped; each with its key, flag, attempt count, and its problem's
    ``state`` and ``theta``, all stacked along the first axis, or one ``state`` and ``theta``
    for all when ``shared``): in each start flagged ``stuck``, the candidate of
    :func:`left_out_direction` is replaced by the end point of ``reseed.pool`` one-point
    searches that best captures the left-out direction (or, where ``explore`` is set, by a
    random point of the sphere); other starts are returned unchanged."""
    def one(X, key, stuck, attempt, explore, state, theta):
        worst, direction = left_out_direction(problem, state, theta, X, attempt, ridge)

        def score(z):
            """Share of the left-out direction captured by the features of one point ``z``."""
            Fz = problem.features(state, z[None]).astype(jnp.float64)
            s = Fz @ direction
            G = Fz @ Fz.T + 1e-12 * jnp.eye(Fz.shape[0])
            return s @ jnp.linalg.solve(G, s)

        starts = initial_candidates(key, problem, reseed.pool, X.dtype)[:, 0]
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
    """Whether ``polish`` runs on ``problem``: it is on and the Jacobian (``P`` by ``n * d``)
    has at most ``polish.max_entries`` entries."""
    return polish is not None and problem.P * problem.n * problem.d <= polish.max_entries


def polish_program(problem: ReconstructionProblem, polish: Polish, ridge: float):
    """``(run, compile)``: ``run(X, state, theta) -> X`` minimises
    ``||theta - P(X) theta||^2 / ||theta||^2`` (features ``problem.features(state, .)``) from
    ``X`` by ``scipy.optimize.least_squares`` (trust-region reflective, at most
    ``polish.evaluations`` evaluations), with rows ``X_i = r u_i / |u_i|`` so the sphere needs no
    constraint and the Jacobian comes from ``jax.jacfwd``; ``compile(X, state, theta)``
    compiles both functions (so that their time can be counted apart). The arrays are
    arguments, so one compilation serves every problem of the same shapes."""
    from scipy.optimize import least_squares

    shape = (problem.n,) + problem.input_shape

    def candidates(u):
        return sphere.on_spheres(u.reshape(shape), problem.radius)

    def residual(u, state, theta):
        theta = theta.astype(jnp.float64)
        r = projection_residual(problem.features(state, candidates(u)), theta, ridge)
        return r / jnp.linalg.norm(theta)

    residual_fn, jacobian_fn = jax.jit(residual), jax.jit(jax.jacfwd(residual))

    def compile_both(X, state, theta):
        u = jnp.zeros(X.size, jnp.float64)  # a first call fills the cache the run uses
        jax.block_until_ready((residual_fn(u, state, theta), jacobian_fn(u, state, theta)))

    def run(X, state, theta):
        out = least_squares(
            lambda u: np.asarray(residual_fn(jnp.asarray(u), state, theta)),
            np.asarray(X, np.float64).ravel(),
            jac=lambda u: np.asarray(jacobian_fn(jnp.asarray(u), state, theta)),
            method="trf", max_nfev=polish.evaluations, xtol=1e-15, ftol=1e-15, gtol=1e-15)
        return candidates(jnp.asarray(out.x)).astype(X.dtype)

    return run, compile_both
