"""The optional parts of the solver (:class:`recon.solver.Solver`), each ``None`` when off.

A part holds the settings of one escape move and checks them when it is built; the solver's
loop calls the move at its checkpoints (:mod:`recon.solver`). The moves exist because the
projection loss has spurious minima near the threshold ``p ~ d n``: ReLU kinks trap candidates
(:class:`Smoothing`), a candidate can sit where no training point is (:class:`Reseed`), the
last few samples of a good start are found by searching around it (:class:`Cloning`), and
near a solution Gauss-Newton converges where Adam crawls (:class:`Polish`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

from recon import checks


class _Part:
    """Checks every field of a part with its validator (``_checks``, one per field), naming
    the part and the field in the message."""

    _checks: ClassVar[dict] = {}

    def __post_init__(self):
        label = type(self).__name__.lower()
        for f in fields(self):
            self._checks[f.name](f"{label} {f.name}", getattr(self, f.name))


@dataclass(frozen=True)
class Smoothing(_Part):
    """Smoothed starts. Every start but start 0 first spends ``steps`` steps (at most half of
    the budget, in whole blocks) on the loss of the problem's ``smoothed_features`` (a
    softplus ``softplus(beta z) / beta`` for ReLU), with ``beta`` rising geometrically from
    ``beta_from`` to ``beta_to``; then it goes on with the exact features, its updates
    multiplied by ``refine_scale``: the smoothing needs long steps to travel, the end game
    short ones, or a sample whose share of ``theta`` is small never settles into its narrow
    basin. Start 0 stays exact, which is fastest far above the threshold; with one start, or
    for features with no smoothed version, the part does nothing."""

    steps: int = 1500
    beta_from: float = 3.0
    beta_to: float = 100.0
    refine_scale: float = 0.2

    _checks = {"steps": checks.positive_int, "beta_from": checks.positive_float,
               "beta_to": checks.positive_float, "refine_scale": checks.positive_float}


@dataclass(frozen=True)
class Reseed(_Part):
    """Re-seeding of stuck starts. Every ``patience`` steps (a multiple of the solver's
    ``chunk``), a start whose loss fell by less than half since the last check is stuck: one
    of its candidates is replaced by the point that best captures the part of ``theta`` the
    other candidates leave out, found by one-point searches (``steps`` steps of Adam with
    learning rate ``lr``) on that residual; its optimiser state is reset. With ``shared``,
    ``pool`` searches per problem and check, shared among its starts (:meth:`per_start`):
    many starts explore already, and searches for every one cost far more than the steps
    between checks; else ``pool`` per start. Repeated re-seeds of a start try its
    candidates in turn, least useful first. A lone start (a
    run with one start) whose loss has not fallen tenfold in ``fresh_after`` steps (seen at
    these checks; 0: never) starts afresh from random candidates, its best so far kept,
    unless its best candidates are all pinned (:class:`Polish`'s check: a floor) or its end
    game then halves its loss (it goes on from there: a stall with a few samples missing):
    a spurious minimum that re-seeding one candidate at a time does not leave (seed 2 at the
    authors' size sits at loss 3.5e-4 with every sample wrong). A search step costs one
    point's features, about ``P d`` products: ``search_work`` caps ``pool * P * d`` per
    problem and check, so a large problem searches fewer points (at the authors' size,
    ``P d = 2e6``, 16: its checks cost ~0.3 s instead of ~1.8 s, and seeds 0-4 were all
    recovered, the slowest in 29 s against 51 s; ``benchmarks/escape_moves.py``); below
    ``P d = 5e5`` the cap leaves the default ``pool`` whole; 0: no cap."""

    patience: int = 200
    pool: int = 64
    steps: int = 200
    lr: float = 0.05
    fresh_after: int = 1000
    shared: bool = True
    search_work: float = 3.2e7

    _checks = {"patience": checks.positive_int, "pool": checks.positive_int,
               "steps": checks.nonnegative_int, "lr": checks.positive_float,
               "fresh_after": checks.nonnegative_int, "shared": checks.boolean,
               "search_work": checks.nonnegative_float}

    def per_start(self, starts: int, point_work: float = 0.0) -> Reseed:
        """These settings for one of ``starts`` starts of a problem whose one-point features
        cost ``point_work`` (``P d``; 0: no cap): the problem's pool is ``pool``, at most
        ``search_work / point_work`` (at least 1), and each start searches
        ``max(1, pool // starts)`` of it when ``shared`` (a lone start the whole pool), else
        the whole pool."""
        starts = checks.positive_int("starts", starts)
        pool = self.pool
        if point_work > 0 and self.search_work > 0:
            pool = max(1, min(pool, int(self.search_work // point_work)))
        return replace(self, pool=max(1, pool // starts) if self.shared else pool)


@dataclass(frozen=True)
class Cloning(_Part):
    """Cloning of the best start. At each re-seeding check, the stuck starts among the worst
    ``share`` of all restart from a copy of the best start with one candidate moved to a
    random point, a different candidate in each copy (the others re-seed themselves). This
    searches around the best configuration in parallel, which finds the last few samples that
    one-point searches miss. Needs :class:`Reseed` (its checks)."""

    share: float = 0.5

    _checks = {"share": checks.fraction}


#: the fewest conjugate-gradient steps per polish iteration that ``Polish.cg_work`` caps to:
#: at the authors' size 10 lost seed 3's sample of tiny share for 7,000 iterations, 20 did not
MIN_CG_STEPS = 20

#: the conjugate gradients' relative tolerance of an exact Gauss-Newton step (:class:`Polish`
#: below ``inexact_from``): never reached in practice, so they run all ``cg_steps``
EXACT_CG_TOL = 1e-12


@dataclass(frozen=True)
class Polish(_Part):
    """The Gauss-Newton end game. Once a problem's best loss falls below ``below`` (and again
    each time it has fallen tenfold since the last polish), Levenberg-Marquardt with conjugate
    gradients (:func:`recon.solver_moves.polish_program`: at most ``steps`` iterations of at
    most ``cg_steps`` Jacobian products each, matrix-free) takes its best start towards the
    nearest zero of the residual ``theta - P theta``, far faster than Adam there; the result
    becomes the start's best if it is lower, while Adam goes on from its own point. A polish
    that reaches ``tol`` is checked with the leave-one-out confidence of every candidate
    (:func:`recon.solver_moves.leave_one_out_confidence`): the run is solved only when each
    one is at least ``pinned``, and stops as ``"unpinned"``, not converged, if one is still
    loose. Where ``tol`` is below the round-off floor of ``theta``'s dtype
    (:func:`recon.solver.round_off_floor`), a polish within that floor with every candidate
    pinned solves the run too (``"round-off"``): the loss cannot fall further. With
    re-seeding on (:class:`Reseed`), a polish that ends above ``tol`` (a nearby
    minimum) or with a loose candidate re-seeds the least pinned candidate and polishes
    again, at most ``rounds`` times; the rounds end early when a re-seed comes back to the
    same loss with every candidate pinned (a floor: the network's training loss, round-off).
    With ``guesses``, where the problem has a ``guess`` (:mod:`recon.moments` for random
    features) and ``p >= 2 d^2`` (:func:`recon.solver.places_guesses`), a round first places
    the least pinned candidate at the guess of one input from the part of ``theta`` the other
    candidates leave out (that guess, then its opposite), and re-seeds by the search only once
    both are rejected; where several candidates have a confidence below 1, the first round
    places them and the next least pinned one together, at the guesses of as many inputs from
    what the others leave out once polished without them (:func:`recon.solver._group_guess`).
    With ``cleaned``, the search runs on a clean residual: the other candidates are polished
    without the least pinned one first (its features left out of the span), and the searched
    point is followed by ``walk_steps`` steps of Adam at learning rate ``walk_lr`` before the
    polish (:func:`recon.solver._cleaned_reseed`), from
    a loss below ``below`` only (above it, in a rescue, the walk lowers the loss whatever the
    re-seed): at ratio 2 of the law grid's largest size (``n=20, d=100, p=4000``) it
    recovered seeds 2 and 3, which ran their whole budget without it. Polished too early, a
    start that Adam was still moving towards the truth lands in a nearby minimum: hence
    ``below``. With the rounds above, 1e-2 beat 1e-3 on seeds 0-14 at the authors' size
    (median 3.2 s against 4.8 s, slowest 6.3 s against 24.6 s), on seeds 0-9 at ratio 2 (all
    recovered, slowest 19 s; with 1e-3 seed 9 was not recovered in 20,000 steps) and at
    ``n=10, d=50, p=5000`` (slowest 1.1 s against 2.1 s); 3e-2 was no better than 1e-2 at
    the authors' size. With ``balanced``, each candidate's
    coordinates are scaled by its leave-one-out gain
    (:func:`recon.solver_moves.candidate_scales`), so a sample with a tiny share of ``theta``
    moves as fast as the others. A Jacobian product costs about ``n d P``: ``cg_work``
    caps ``cg_steps * n d P`` (:meth:`sized`; 0: no cap), so a large problem takes fewer
    conjugate-gradient steps per iteration. At the authors' size (``n d P = 4e7``: 20 steps)
    seeds 0-4 were all recovered with 20 or 50, each polish costing ~0.7 s against ~1.6 s
    (the slowest seed 15 s against 29 s), and 10 lost seed 3's tiny-share sample for 7,000
    iterations; at the law chapter's small sizes 20 instead of 50 moved a threshold up
    (``n=4, d=15``: 1.17 to 1.32), so below ``n d P = 1.6e7`` the 50 stay. The cap never
    goes below :data:`MIN_CG_STEPS` (20, the fewest measured to work). Where the real features
    number at least ``inexact_from`` times the unknowns ``d n``, the conjugate gradients stop
    once their residual is ``cg_tol`` times ``J^T r`` (an inexact Newton step,
    :meth:`tolerance`; below, they run all their steps), until three such iterations fail
    to halve the loss: the steps are exact from then on, so that a polish never stops for
    want of accuracy (without that, the polishes of a cleaned re-seed stalled at loss 6e-5
    where exact ones solved it). Seconds to error 1e-3, seeds 0-4, exact against inexact
    (``benchmarks/escape_moves.py --set polish.inexact_from=1e9`` against the default; Intel
    Xeon, 2 cores): ``n=10, d=30, p=3000`` 0.20-0.65 against 0.13-0.36, every seed sooner;
    ``n=10, d=50, p=5000`` median 0.36 against 0.30, slowest 0.77 against 0.78; the
    authors' size median 3.31 against 3.19, slowest 5.18 against 6.05 (seed 0 4.78 against
    1.98, seed 4 5.18 against 6.05). Nearer the threshold it did not pay: over the law
    chapter's quick grid, inexact everywhere moved the ``n=4, d=15`` threshold up (1.25 to
    1.32) in no less time, and at ratio 2 of its largest size (seeds 0-9) the median fell
    (8.0 to 7.3 s) but the slowest seed rose (12.5 to 17.0 s)."""

    steps: int = 30
    cg_steps: int = 50
    cg_work: float = 8e8
    below: float = 1e-2
    pinned: float = 1e3
    rounds: int = 4
    balanced: bool = True
    guesses: bool = True
    cleaned: bool = True
    walk_steps: int = 200
    walk_lr: float = 0.01
    cg_tol: float = 0.1
    inexact_from: float = 4.0

    _checks = {"steps": checks.positive_int, "cg_steps": checks.positive_int,
               "below": checks.positive_float, "pinned": checks.positive_float,
               "rounds": checks.nonnegative_int, "balanced": checks.boolean,
               "guesses": checks.boolean, "cleaned": checks.boolean,
               "walk_steps": checks.positive_int, "walk_lr": checks.positive_float,
               "cg_work": checks.nonnegative_float, "cg_tol": checks.positive_float,
               "inexact_from": checks.positive_float}

    def sized(self, work: float) -> Polish:
        """These settings for a problem whose Jacobian products cost ``work`` (``n d P``):
        ``cg_steps``, at most ``cg_work / work`` where both are positive, and never capped
        below :data:`MIN_CG_STEPS`."""
        if work <= 0 or self.cg_work <= 0:
            return self
        capped = max(MIN_CG_STEPS, int(self.cg_work // work))
        return replace(self, cg_steps=min(self.cg_steps, capped))

    def tolerance(self, ratio: float) -> float:
        """The conjugate gradients' relative tolerance for a problem whose real features
        number ``ratio`` times its unknowns ``d n``: ``cg_tol`` from ``inexact_from`` on,
        else :data:`EXACT_CG_TOL`."""
        return self.cg_tol if ratio >= self.inexact_from else EXACT_CG_TOL
