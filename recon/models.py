"""Models whose parameters are attacked: the random-features model (Flax NNX).

Random features (RF): ``f(x) = phi(x) . theta`` with ``phi(x) = act(V x)``, where ``V`` is a
fixed ``p x d`` matrix with i.i.d. ``N(0, 1/d)`` entries and only the readout ``theta`` (``p``)
is trained.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
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


class FixedWeights(nnx.Variable):
    """A model weight that is drawn at initialisation and never trained (RF's ``V``)."""


class RandomFeatures(nnx.Module):
    """The random-features model ``f(x) = act(V x) . theta``.

    Args:
        d: input dimension.
        p: number of random features (the parameter count of the readout ``theta``).
        activation: name of ``act``, one of ``ACTIVATIONS``.
        rngs: Flax NNX random streams; ``V`` is drawn from ``rngs.params()``.
        dtype: dtype of ``V`` and of the features.
    """

    def __init__(self, d: int, p: int, activation: str = "relu", *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.d = checks.positive_int("d", d)
        self.p = checks.positive_int("p", p)
        self.activation = checks.choice("activation", activation, ACTIVATIONS)
        self.V = FixedWeights(jax.random.normal(rngs.params(), (p, d), dtype) / jnp.sqrt(d))
        self.theta = nnx.Param(jnp.zeros((p,), dtype))

    def features(self, x: Array, relu_surrogate_slope: float = 0.0) -> Array:
        """``phi(x) = act(V x)`` for each row of ``x`` (``n x d``), an ``n x p`` matrix."""
        act = activation(self.activation, relu_surrogate_slope)
        return act(x @ self.V[...].T)

    def __call__(self, x: Array) -> Array:
        """Predictions ``f(x) = phi(x) . theta`` for each row of ``x``."""
        return self.features(x) @ self.theta[...]
