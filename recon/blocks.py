"""One driver for "run compiled blocks of steps, with a progress bar, until done", shared by
the solver (:func:`recon.solver.solve`) and full-batch training
(:func:`recon.train.train_full_batch`).

A block is a jit-compiled ``lax.scan`` of many steps; between blocks the host checks the
stopping rule, records what it needs and applies interventions. The driver owns only the
loop and the bar: ``advance(state) -> (state, steps)`` runs one block and whatever follows
it, ``finished(state)`` says when to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tqdm import tqdm

State = TypeVar("State")


def run_blocks(advance: Callable[[State], tuple[State, int]], state: State, *,
               finished: Callable[[State], bool], total: int, desc: str, progress: bool = True,
               status: Callable[[State], str] | None = None) -> State:
    """Call ``advance`` until ``finished(state)``, advancing a tqdm bar of ``total`` steps by
    the steps each call reports (``status(state)`` is shown beside it); returns the last state.
    The bar is closed whatever happens."""
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    try:
        while not finished(state):
            state, steps = advance(state)
            bar.update(steps)
            if status is not None:
                bar.set_postfix_str(status(state))
    finally:
        bar.close()
    return state
