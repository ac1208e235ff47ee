"""The residual network on real images: the settings of the ``resnet`` chapter (the shared
cells are in :mod:`recon.chapters.image_chapter`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from recon import checks, networks
from recon.chapters.image_chapter import ChapterData, NetworkChapter


@dataclass(frozen=True)
class ResNetImages(NetworkChapter):
    """The paper's residual network on a binary task (labels ``-1/+1``, images normalised per
    channel): a ``stem_kernel`` stem, ``blocks`` residual blocks of ``width`` channels, and a
    linear head on the ``Hm x Wm x width`` maps; the head is attacked, so
    ``p = width * Hm * Wm``.

    Attributes:
        blocks: residual blocks (two 3x3 convolutions each).
        stem_kernel, stem_padding: the stem convolution's kernel and zero padding.
    """

    normalization: ClassVar[str] = "channel"
    p_formula: ClassVar[str] = "p = width Hm Wm"

    dataset: str = "digits"
    n: int = 4
    width: int = 102
    restarts: int = 4
    blocks: int = 2
    stem_kernel: int = 6
    stem_padding: int = 1

    def __post_init__(self):
        super().__post_init__()
        checks.nonnegative_int("blocks", self.blocks)
        networks.feature_map_shape(self.image_shape, self.stem_kernel, self.stem_padding)

    @property
    def feature_map_shape(self) -> tuple[int, int]:
        """``(Hm, Wm)``, the maps after the stem (:func:`recon.networks.feature_map_shape`)."""
        return networks.feature_map_shape(self.image_shape, self.stem_kernel, self.stem_padding)

    def p_of(self, size: int) -> int:
        """``p = width * Hm * Wm``."""
        Hm, Wm = self.feature_map_shape
        return size * Hm * Wm

    def summary(self) -> str:
        """The maps' size, then :meth:`ImageChapter.summary`."""
        Hm, Wm = self.feature_map_shape
        return f"maps {Hm}x{Wm}, {super().summary()}"

    def model(self, data: ChapterData, width: int) -> networks.ResNet:
        """A fresh :class:`recon.networks.ResNet`."""
        return networks.ResNet(data.dataset.image_shape, width, blocks=self.blocks,
                               stem_kernel=self.stem_kernel, stem_padding=self.stem_padding,
                               k=1, rngs=self.rngs())
