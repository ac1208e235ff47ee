"""Compiled programs kept across solver calls.

A solver run compiles a handful of programs (its blocks of steps, the loss of every start, the
re-seed search, the polish, the leave-one-out confidence). They depend on the problem only
through its feature map, ``n``, input shape and radius (:func:`program_problem`), on the
solver's settings, and on the shapes of the arrays they are called with; the problem's arrays
(``V``, ``theta``, a network's weights) are arguments, never baked in. So a second ``solve``
of a problem of the same kind and shapes (another seed, another cell of a sweep at the same
``p``) reuses them: :func:`cached_program` keeps the most recent :data:`CACHE_SIZE` programs,
each with its executables per argument shapes (:class:`Program`). The random-features
feature maps are cached functions (:mod:`recon.problems`), so problems built alike share
them; a feature map made afresh for each problem (a new closure) never hits the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jax

from recon import precision

#: how many programs :func:`cached_program` keeps (least recently used first out)
CACHE_SIZE = 64

#: XLA's options for every program compiled for the CPU (under a program's own options): the
#: CPU backend's newer fusion emitters off. They took most of the compilation, which is most
#: of a law sweep's time (the quick grid's programs are milliseconds to run): the polish at
#: ``n=4, d=20, p=120`` compiled in 0.98 s with them and 0.58 s without, and ran as fast
#: (2.0-2.3 ms); a plain iteration at the authors' size took 2.2-2.3 ms either way
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

_PROGRAMS: OrderedDict = OrderedDict()


def program_problem(problem):
    """The part of ``problem`` (a :class:`recon.problems.ReconstructionProblem`) a compiled
    program may depend on: its feature maps, ``n``, input shape and radius, with ``theta``
    reduced to its shape and dtype and no ``state`` or name. Hashable, it serves as the cache
    key, and programs built from it cannot hold the problem's arrays."""
    return replace(problem, state=None, theta=jax.ShapeDtypeStruct(problem.theta.shape,
                                                                   problem.theta.dtype),
                   name="")


def shapes(tree) -> tuple:
    """The structure of ``tree`` and the shape, dtype and weak type of each leaf (Python
    scalars by type): what a compiled executable is specialised to."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(
        (type(a).__name__,) if isinstance(a, (bool, int, float)) else
        (tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves)


class Program:
    """A jitted function compiled ahead of time once per argument shapes (:func:`shapes`,
    and the 64-bit mode): ``program(*args, compiling=..., **kwargs)`` compiles inside
    ``compiling(thunk)`` (the solver's clock counts that time as compilation), then runs.
    ``compiler_options``: XLA's options for that compilation (a backend that refuses one
    compiles with its defaults)."""

    def __init__(self, jitted, compiler_options: dict | None = None):
        self.jitted = jitted
        self.compiler_options = compiler_options
        self.executables: dict = {}

    def options(self) -> dict:
        """XLA's options for a compilation now: :data:`CPU_COMPILER_OPTIONS` when JAX's
        default backend is the CPU, under the program's own ``compiler_options``."""
        cpu = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else {}
        return cpu | dict(self.compiler_options or {})

    def _compile(self, *args, **kwargs):
        lowered = self.jitted.lower(*args, **kwargs)
        options = self.options()
        if options:
            try:
                return lowered.compile(options)
            except jax.errors.JaxRuntimeError:
                pass
        return lowered.compile()

    def executable(self, *args, compiling: Callable[[Callable], Any] = lambda thunk: thunk(),
                   **kwargs):
        """The executable for these arguments' shapes, compiled now (inside
        ``compiling(thunk)``) if it is not stored yet."""
        signature = (precision.float64_enabled(), shapes((args, kwargs)))
        executable = self.executables.get(signature)
        if executable is None:
            executable = compiling(lambda: self._compile(*args, **kwargs))
            self.executables[signature] = executable
        return executable

    def __call__(self, *args, compiling: Callable[[Callable], Any] = lambda thunk: thunk(),
                 **kwargs):
        return self.executable(*args, compiling=compiling, **kwargs)(*args, **kwargs)


def cached_program(key, build: Callable[[], Any],
                   compiler_options: dict | None = None) -> Program:
    """The :class:`Program` of ``build()`` (a jitted function, compiled with
    ``compiler_options``) stored under ``key`` (built now if it is not stored: a key that
    cannot be hashed is never stored)."""
    try:
        program = _PROGRAMS.pop(key)
    except KeyError:
        program = Program(build(), compiler_options)
    except TypeError:  # an unhashable setting: compile for this run only
        return Program(build(), compiler_options)
    _PROGRAMS[key] = program
    while len(_PROGRAMS) > CACHE_SIZE:
        _PROGRAMS.popitem(last=False)
    return program


def clear() -> None:
    """Forget every stored program (the next solver call compiles afresh)."""
    _PROGRAMS.clear()
