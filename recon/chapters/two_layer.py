"""The two-layer network on real images: the settings of the ``two_layer`` chapter (the
shared cells are in :mod:`recon.chapters.image_chapter`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from recon import checks
from recon.chapters.image_chapter import ChapterData, NetworkChapter
from recon.models import ACTIVATIONS
from recon.networks import TwoLayer


@dataclass(frozen=True)
class TwoLayerImages(NetworkChapter):
    """The two-layer network ``W2 act(W1 x)`` on the first ``k`` classes (``n/k`` images
    each, one-hot targets, globally standardised images); the readout ``W2`` is attacked, so
    ``p = width * k``.

    Attributes:
        k: number of classes (outputs of the network).
        activation: ``act``, one of :data:`recon.models.ACTIVATIONS`.
    """

    task: ClassVar[str] = "multiclass"
    p_formula: ClassVar[str] = "p = width k"

    dataset: str = "digits"
    n: int = 10
    width: int = 3200
    reseed_patience: int = 300
    k: int = 2
    activation: str = "relu"

    def __post_init__(self):
        super().__post_init__()
        checks.positive_int("k", self.k)
        checks.choice("activation", self.activation, ACTIVATIONS)
        if self.n % self.k:
            raise ValueError(f"n must be a multiple of k={self.k} (n/k images per class), "
                             f"got n={self.n}")

    def load_options(self) -> dict:
        """The first ``k`` classes (or the ones named), one-hot targets."""
        return {**super().load_options(), "k": self.k}

    def p_of(self, size: int) -> int:
        """``p = width * k``."""
        return size * self.k

    def model(self, data: ChapterData, width: int) -> TwoLayer:
        """A fresh :class:`recon.networks.TwoLayer`."""
        return TwoLayer(data.d, width, k=self.k, activation=self.activation, rngs=self.rngs())
