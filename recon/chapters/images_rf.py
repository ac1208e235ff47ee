"""Random features on real images: the settings of the ``images_rf`` chapter (the shared
cells are in :mod:`recon.chapters.image_chapter`)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from recon import checks, problems, train
from recon.chapters.image_chapter import ChapterData, ImageChapter
from recon.models import ACTIVATIONS, RandomFeatures


@dataclass(frozen=True)
class ImagesRF(ImageChapter):
    """Random features on real images: binary task (labels ``-1/+1``), images standardised
    by one global mean and standard deviation, ``phi(x) = act(V x)`` with ``p`` features,
    ``theta`` the minimum-norm interpolator; ``size`` is ``p``.

    Attributes:
        p: random features of the main run (the readout ``theta`` has ``p`` entries).
        activation: ``act``, one of :data:`recon.models.ACTIVATIONS`.
    """

    downsample: int = 4
    p: int = 5760
    activation: str = "relu"

    def __post_init__(self):
        super().__post_init__()
        checks.positive_int("p", self.p)
        checks.choice("activation", self.activation, ACTIVATIONS)

    def train(self, data: ChapterData, size: int, progress: bool = True):
        """RF with ``p = size`` features, ``theta`` set to the min-norm interpolator."""
        model = RandomFeatures(data.d, size, self.activation, rngs=self.rngs())
        fit = train.fit_min_norm(model, jnp.asarray(data.X), jnp.asarray(data.dataset.y))
        return problems.random_features_problem(model, data.n), fit.train_mse, 0
