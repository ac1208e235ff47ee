"""Models whose parameters are attacked: the random-features model (Flax NNX).

Random features (RF): ``f(x) = phi(x) . theta`` with ``phi(x) = act(V x)``, where ``V`` is a
fixed ``p x d`` matrix with i.i.d. ``N(0, 1/d)`` entries and only the readout ``theta`` (``p``)
is trained.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recon import checks

Array = jax.Array


def _relu_with_surrogate(slope: float) -> Callable[[Array], Array]:
    """ReLU whose derivative is ``slope`` (not 0) where the pre-activation is negative.

    The forward value is the exact ReLU; only gradients change. The authors use ``slope=0.02``
    during reconstruction so that candidates do not get stuck on units that are off.
    """

    @jax.custom_jvp
    def relu(z):
        return jnp.maximum(z, 0)

    @relu.defjvp
    def _relu_jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        return relu(z), jnp.where(z > 0, 1.0, slope).astype(dz.dtype) * dz

    return relu


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "relu+tanh": lambda z: jax.nn.relu(z) + jnp.tanh(z),
    "softplus": jax.nn.softplus,
}


def activation(name: str, relu_surrogate_slope: float = 0.0) -> Callable[[Array], Array]:
    """The activation ``act`` called ``name`` (one of ``ACTIVATIONS``).

    With ``relu_surrogate_slope > 0`` the ReLU parts (of ``relu`` and ``relu+tanh``) keep their
    forward value but get that slope as derivative where the input is negative.
    """
    checks.choice("activation", name, ACTIVATIONS)
    slope = checks.positive_float("relu_surrogate_slope", relu_surrogate_slope, allow_zero=True)
    if slope == 0 or "relu" not in name:
        return ACTIVATIONS[name]
    relu = _relu_with_surrogate(slope)
    if name == "relu":
        return relu
    return lambda z: relu(z) + jnp.tanh(z)


def smoothed_activation(name: str, beta) -> Callable[[Array], Array]:
    """``act`` with its ReLU parts replaced by ``softplus(beta z) / beta``, a smooth function
    that tends to ``relu(z)`` as ``beta`` grows (the gap is at most ``log(2) / beta``).
    ``tanh`` and ``softplus`` are smooth already and come back unchanged. ``beta`` may be a
    traced value, so one compiled solver step serves a whole annealing schedule."""
    checks.choice("activation", name, ACTIVATIONS)
    if "relu" not in name:
        return ACTIVATIONS[name]

    def soft_relu(z):
        b = jnp.asarray(beta, z.dtype)
        return jax.nn.softplus(b * z) / b

    if name == "relu":
        return soft_relu
    return lambda z: soft_relu(z) + jnp.tanh(z)


#: a draw of at most this many entries is made at the next power of two of its rows, then cut
BUCKETED_DRAW_ENTRIES = 1 << 22

#: a Gaussian draw of fewer entries is made at this many (rows: a power of two), so that one
#: compiled draw per ``d`` serves every small draw (a law sweep's ``V`` of every ``p``, the
#: solver's starts): at ``n=2, d=10`` each compiled draw took 0.3-0.7 s, 7 of them 5 s of a
#: 20 s batch
SHARED_DRAW_ENTRIES = 1 << 14


def bucket_rows(rows: int, d: int) -> int | None:
    """The next power of two of ``rows``, at which a small ``rows x d`` array is computed and
    then cut (one compilation for every ``rows`` up to it), or ``None`` above
    :data:`BUCKETED_DRAW_ENTRIES` entries."""
    bucket = 1 << max(rows - 1, 0).bit_length()
    return bucket if bucket * d <= BUCKETED_DRAW_ENTRIES else None


def draw_rows(rows: int, d: int) -> int | None:
    """The rows a ``rows x d`` Gaussian draw is made at before it is cut: the next power of
    two of ``rows`` and of :data:`SHARED_DRAW_ENTRIES` / ``d``, the larger, or ``None`` above
    :data:`BUCKETED_DRAW_ENTRIES` entries (drawn as asked)."""
    return bucket_rows(max(rows, -(-SHARED_DRAW_ENTRIES // d)), d)


def normal_rows(key: Array, rows: int, d: int, dtype=jnp.float32, divisor=None) -> Array:
    """``jax.random.normal(key, (rows, d))`` (divided by ``divisor`` where given), exactly.
    JAX's partitionable Threefry gives the same leading rows whatever the number drawn, so a
    small draw is made at :func:`draw_rows` and cut on the host: one compiled draw then serves
    every ``rows`` up to that size (a sweep over ``p`` compiles a few draws, not one per
    ``p``). Host code only (``key`` concrete)."""
    bucket = draw_rows(rows, d)
    exact = not jax.config.jax_threefry_partitionable or bucket is None
    drawn = jax.random.normal(key, (rows if exact else bucket, d), dtype)
    if divisor is not None:
        drawn = drawn / divisor
    return drawn if exact else jax.device_put(np.asarray(drawn)[:rows])


def gaussian_rows(key: Array, rows: int, d: int, dtype=jnp.float32) -> Array:
    """``rows x d`` i.i.d. ``N(0, 1/d)`` entries drawn from ``key``: ``jax.random.normal(key,
    (rows, d)) / sqrt(d)``, exactly (:func:`normal_rows`)."""
    return normal_rows(key, rows, d, dtype, jnp.sqrt(d))


class FixedWeights(nnx.Variable):
    """A model weight that is drawn at initialisation and never trained (RF's ``V``)."""


def streamed_features(x: Array, key_data: Array, p: int, chunk: int, act, dtype) -> Array:
    """``act(V x)`` with ``V`` never stored: block ``c`` of ``chunk`` rows of ``V`` is drawn from
    ``fold_in(key, c)`` whenever it is needed, forward and backward (``jax.checkpoint``), so
    memory grows with ``chunk * d`` instead of ``p * d``."""
    d = x.shape[-1]
    key = jax.random.wrap_key_data(key_data)
    blocks = -(-p // chunk)

    @jax.checkpoint
    def block(c):
        V = jax.random.normal(jax.random.fold_in(key, c), (chunk, d), dtype) / jnp.sqrt(d)
        return act(x @ V.T)

    F = jax.lax.map(block, jnp.arange(blocks))  # (blocks, n, chunk)
    return jnp.moveaxis(F, 0, -2).reshape(*x.shape[:-1], blocks * chunk)[..., :p]


class RandomFeatures(nnx.Module):
    """The random-features model ``f(x) = act(V x) . theta``.

    Args:
        d: input dimension.
        p: number of random features (the parameter count of the readout ``theta``).
        activation: name of ``act``, one of ``ACTIVATIONS``.
        rngs: Flax NNX random streams; ``V`` is drawn from ``rngs.params()``.
        dtype: dtype of ``V`` and of the features.
        chunk: if given, ``V`` is never stored: only its key is kept, and ``V`` is drawn in
            blocks of ``chunk`` rows whenever features are computed (see
            :func:`streamed_features`), for ``p * d`` too large to hold in memory. The model
            differs from the stored-``V`` one with the same key (other random numbers).
    """

    def __init__(self, d: int, p: int, activation: str = "relu", *, rngs: nnx.Rngs,
                 dtype=jnp.float32, chunk: int | None = None):
        self.d = checks.positive_int("d", d)
        self.p = checks.positive_int("p", p)
        self.activation = checks.choice("activation", activation, ACTIVATIONS)
        self.dtype = dtype
        self.chunk = None if chunk is None else checks.positive_int("chunk", chunk)
        size = jnp.dtype(dtype).itemsize
        if self.chunk is None:
            checks.fits_in_memory(f"RandomFeatures(d={d}, p={p}) (V: p x d, theta: p)",
                                  size * p * (d + 1), "lower p or d, or pass chunk= to draw V "
                                  "in blocks instead of storing it")
        else:
            checks.fits_in_memory(f"RandomFeatures(d={d}, p={p}, chunk={chunk}) (theta: p, "
                                  f"V blocks: chunk x d)", size * (p + chunk * d),
                                  "lower p or chunk")
        key = rngs.params()
        if self.chunk is None:
            self.V = FixedWeights(gaussian_rows(key, p, d, dtype))
        else:
            self.V_key = FixedWeights(jax.random.key_data(key))
        self.theta = nnx.Param(jax.device_put(np.zeros((p,), dtype)))  # no compilation per p

    @property
    def streamed(self) -> bool:
        """Whether ``V`` is drawn in chunks on the fly instead of stored."""
        return self.chunk is not None

    def features(self, x: Array, relu_surrogate_slope: float = 0.0) -> Array:
        """``phi(x) = act(V x)`` for each row of ``x`` (``n x d``), an ``n x p`` matrix."""
        act = activation(self.activation, relu_surrogate_slope)
        if self.streamed:
            return streamed_features(x, self.V_key[...], self.p, self.chunk, act, self.dtype)
        return act(x @ self.V[...].T)

    def __call__(self, x: Array) -> Array:
        """Predictions ``f(x) = phi(x) . theta`` for each row of ``x``."""
        return self.features(x) @ self.theta[...]
