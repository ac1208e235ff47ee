"""Reconstruction problems: ``theta`` is known to lie in the span of the feature vectors of
``n`` unknown inputs; find inputs whose features span it.

A problem holds a feature map ``features(state, X) -> F`` (``n*k x P`` rows for ``n`` inputs),
the arrays it needs (``state``), the target ``theta`` (``P``), the number of inputs ``n``, the
shape of one input and the radius of the sphere each input lies on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from recon import checks
from recon.models import RandomFeatures, activation

Array = jax.Array


@dataclass(frozen=True)
class ReconstructionProblem:
    """Find ``X_hat`` (``n`` inputs of ``input_shape``, each of norm ``radius``) such that
    ``theta`` lies in the span of the rows of ``features(state, X_hat)``."""

    features: Callable[[Any, Array], Array]
    state: Any
    theta: Array
    n: int
    input_shape: tuple[int, ...]
    radius: float
    name: str = "problem"

    @property
    def d(self) -> int:
        """Input dimension (number of entries of one input)."""
        return math.prod(self.input_shape)

    @property
    def P(self) -> int:
        """Length of ``theta`` (the parameter count of the readout)."""
        return int(self.theta.shape[0])

    def feature_matrix(self, X: Array) -> Array:
        """The feature rows of the inputs ``X`` (``n x input_shape``)."""
        return self.features(self.state, X)


def _rf_features(act_name: str, slope: float):
    act = activation(act_name, slope)

    def features(state, X):
        return act(X @ state["V"].T)

    return features


def random_features_problem(model: RandomFeatures, n: int,
                            relu_surrogate_slope: float = 0.02) -> ReconstructionProblem:
    """The RF problem: recover ``n`` inputs from the trained readout ``theta`` of ``model``.

    Features are ``phi(x) = act(V x)``; inputs lie on the sphere of radius ``sqrt(d)``.
    ``relu_surrogate_slope`` only changes the gradients the solver sees (see
    :func:`recon.models.activation`); the loss values are exact.
    """
    n = checks.positive_int("n", n)
    theta = model.theta[...]
    if not bool(jnp.any(theta != 0)):
        raise ValueError("the model's theta is zero: train the model before reconstructing")
    return ReconstructionProblem(
        features=_rf_features(model.activation, relu_surrogate_slope),
        state={"V": model.V[...]},
        theta=theta,
        n=n,
        input_shape=(model.d,),
        radius=math.sqrt(model.d),
        name=f"random features ({model.activation}, p={model.p})",
    )
