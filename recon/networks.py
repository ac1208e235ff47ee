"""Trained networks whose last layer (the "readout") is attacked: the two-layer network and
the paper's residual network, in Flax NNX.

Both take their inputs as the solver does: rows of ``X`` (``n x d``), images flattened in
``H, W, C`` order. Every weight is trained; the reconstruction uses only the change of the
readout (``W2`` for :class:`TwoLayer`, ``head`` for :class:`ResNet`), whose Jacobian at the
trained weights gives the feature rows (see :func:`recon.problems.readout_problem`). Each class
names its readout in the class attribute ``readout_name``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from recon import checks
from recon.models import ACTIVATIONS, activation as make_activation

Array = jax.Array


def _normal(key: Array, shape: tuple[int, ...], fan_in: int, dtype) -> Array:
    """I.i.d. ``N(0, 1/fan_in)`` entries."""
    return jax.random.normal(key, shape, dtype) / jnp.sqrt(jnp.asarray(fan_in, dtype))


def _rows(x: Array, d: int, what: str) -> Array:
    """Check that ``x`` is ``(n, d)`` (or one input ``(d,)``, made ``(1, d)``)."""
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{what} takes inputs of shape (n, d={d}) (rows of X), got {x.shape}")
    return x


class TwoLayer(nnx.Module):
    """The two-layer network ``f(x) = W2 act(W1 x)`` (``k`` outputs), no biases.

    ``W1`` (``width x d``) has i.i.d. ``N(0, 1/d)`` entries and ``W2`` (``k x width``) i.i.d.
    ``N(0, 1/width)`` entries (the paper's initialisation); both are trained. The readout is
    ``W2``: its Jacobian rows at input ``x`` are ``e_j (x) act(W1 x)``, ``j = 1..k``, and its
    parameter count is ``p = width * k``.

    Args:
        d: input dimension.
        width: number of hidden units.
        k: number of outputs (classes).
        activation: name of ``act``, one of :data:`recon.models.ACTIVATIONS`.
        rngs: Flax NNX random streams; ``W1`` and ``W2`` are drawn from ``rngs.params()``.
        dtype: dtype of the weights.
    """

    readout_name = "W2"

    def __init__(self, d: int, width: int, k: int = 1, activation: str = "relu", *,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        self.d = checks.positive_int("d", d)
        self.width = checks.positive_int("width", width)
        self.k = checks.positive_int("k", k)
        self.activation = checks.choice("activation", activation, ACTIVATIONS)
        checks.fits_in_memory(f"TwoLayer(d={d}, width={width}, k={k}) (W1: width x d, W2: k x "
                              f"width)", width * (d + k) * jnp.dtype(dtype).itemsize,
                              "lower width or d")
        self.W1 = nnx.Param(_normal(rngs.params(), (width, d), d, dtype))
        self.W2 = nnx.Param(_normal(rngs.params(), (k, width), width, dtype))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, ``(d,)``."""
        return (self.d,)

    @property
    def head_size(self) -> int:
        """Number of inputs of the readout ``W2`` (the hidden width)."""
        return self.width

    @property
    def p(self) -> int:
        """Parameter count of the readout, ``width * k``."""
        return self.width * self.k

    def hidden(self, x: Array) -> Array:
        """The hidden activations ``act(W1 x)`` for each row of ``x`` (``n x width``)."""
        x = _rows(x, self.d, "TwoLayer")
        return make_activation(self.activation)(x @ self.W1[...].T)

    def __call__(self, x: Array) -> Array:
        """Outputs ``f(x) = W2 act(W1 x)`` for each row of ``x``: an ``n x k`` array."""
        return self.hidden(x) @ self.W2[...].T


class _Block(nnx.Module):
    """``relu(x + conv2(relu(conv1(x))))``: two 3x3 convolutions (SAME padding, no bias)
    with an identity skip and no normalisation."""

    def __init__(self, width: int, *, rngs: nnx.Rngs, dtype):
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
        self.conv1 = nnx.Conv(width, width, (3, 3), padding="SAME", use_bias=False,
                              kernel_init=init, param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), padding="SAME", use_bias=False,
                              kernel_init=init, param_dtype=dtype, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return jax.nn.relu(x + self.conv2(jax.nn.relu(self.conv1(x))))


def _image_shape(value) -> tuple[int, int, int]:
    """``value`` as an ``(H, W, C)`` tuple of positive integers, else raise."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {value!r}")
    return tuple(checks.positive_int(f"image_shape[{i}]", s) for i, s in enumerate(value))


def feature_map_shape(image_shape, stem_kernel: int, stem_padding: int) -> tuple[int, int]:
    """``(Hm, Wm)``, the size of the maps after the :class:`ResNet`'s stem (stride 1) on
    ``(H, W, C)`` images: ``Hm = H + 2 stem_padding - stem_kernel + 1``, the same for ``Wm``.
    Raises if the kernel is larger than the padded image (no feature map would be left)."""
    H, W, _ = _image_shape(image_shape)
    stem_kernel = checks.positive_int("stem_kernel", stem_kernel)
    stem_padding = checks.nonnegative_int("stem_padding", stem_padding)
    Hm, Wm = (side + 2 * stem_padding - stem_kernel + 1 for side in (H, W))
    if Hm < 1 or Wm < 1:
        padded = min(H, W) + 2 * stem_padding
        hint = max(1, padded - 6)
        raise ValueError(
            f"stem_kernel={stem_kernel} with stem_padding={stem_padding} is larger than the "
            f"padded {H}x{W} image ({padded} pixels a side), leaving no feature map; it "
            f"must be at most {padded} (e.g. stem_kernel={hint} gives "
            f"{padded - hint + 1}x{padded - hint + 1} maps)")
    return (Hm, Wm)


class ResNet(nnx.Module):
    """The paper's residual network: a convolutional stem with a large kernel, ``blocks``
    residual blocks, then a linear head without bias on the flattened feature maps.

    ``f(x) = head . vec(h(x))`` where ``h(x)`` (``Hm x Wm x width``) is
    ``blocks(relu(stem(x)))``; each block is ``relu(z + conv2(relu(conv1(z))))`` with two 3x3
    convolutions (SAME padding), no batch norm, no biases anywhere. The stem is a
    ``stem_kernel x stem_kernel`` convolution with ``stem_padding`` and stride 1, so the maps
    are ``Hm = H + 2*stem_padding - stem_kernel + 1`` (kernel 28, padding 1 on 32x32 images
    gives the paper's 7x7 maps; for 8x8 digits, e.g. kernel 6 gives 5x5 maps).

    Every convolution kernel has i.i.d. ``N(0, 1/fan_in)`` entries (``fan_in`` = input
    channels x kernel area) and the head (``k x head_size``) ``N(0, 1/head_size)``. All weights
    are trained; the readout is ``head``, whose Jacobian row at ``x`` is ``vec(h(x))``, the
    penultimate activations (``k = 1``). ``head_size = width * Hm * Wm``.

    Args:
        image_shape: ``(H, W, C)`` of one input; inputs come as rows of length ``H*W*C``.
        width: channels of the stem and the blocks.
        blocks: number of residual blocks.
        stem_kernel, stem_padding: the stem's kernel size and zero padding.
        k: number of outputs.
        rngs: Flax NNX random streams.
        dtype: dtype of the weights and activations.
    """

    readout_name = "head"

    def __init__(self, image_shape: tuple[int, int, int] = (32, 32, 3), width: int = 16,
                 blocks: int = 4, stem_kernel: int = 28, stem_padding: int = 1, k: int = 1, *,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        self.image_shape = _image_shape(image_shape)
        self.width = checks.positive_int("width", width)
        self.blocks_count = checks.nonnegative_int("blocks", blocks)
        self.stem_kernel = checks.positive_int("stem_kernel", stem_kernel)
        self.stem_padding = checks.nonnegative_int("stem_padding", stem_padding)
        self.k = checks.positive_int("k", k)
        self.feature_map_shape = feature_map_shape(self.image_shape, stem_kernel, stem_padding)
        C = self.image_shape[2]
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
        pad = ((stem_padding, stem_padding), (stem_padding, stem_padding))
        self.stem = nnx.Conv(C, width, (stem_kernel, stem_kernel), padding=pad, use_bias=False,
                             kernel_init=init, param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([_Block(width, rngs=rngs, dtype=dtype) for _ in range(blocks)])
        self.head = nnx.Param(_normal(rngs.params(), (k, self.head_size), self.head_size,
                                      dtype))

    @property
    def d(self) -> int:
        """Input dimension ``H*W*C``."""
        return math.prod(self.image_shape)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input as the solver sees it, ``(H*W*C,)``."""
        return (self.d,)

    @property
    def head_size(self) -> int:
        """Number of inputs of the head, ``width * Hm * Wm`` (the paper's ``p_L``)."""
        return self.width * self.feature_map_shape[0] * self.feature_map_shape[1]

    @property
    def p(self) -> int:
        """Parameter count of the readout ``head``, ``k * head_size``."""
        return self.k * self.head_size

    def penultimate(self, x: Array) -> Array:
        """``vec(h(x))`` for each row of ``x``: the flattened maps after the last block
        (``n x head_size``, in ``Hm, Wm, width`` order)."""
        x = _rows(x, self.d, "ResNet")
        z = jax.nn.relu(self.stem(x.reshape((x.shape[0],) + self.image_shape)))
        for block in self.blocks:
            z = block(z)
        return z.reshape(z.shape[0], -1)

    def __call__(self, x: Array) -> Array:
        """Outputs ``head . vec(h(x))`` for each row of ``x``: an ``n x k`` array."""
        return self.penultimate(x) @ self.head[...].T
