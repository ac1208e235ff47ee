import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from flax import nnx

import recon  # noqa: F401  (turns on x64)
from recon import data, models, problems, train

ROOT = Path(__file__).resolve().parent.parent


def make_rf(n, d, p, seed=0, activation="relu", dtype=jax.numpy.float32, slope=0.02):
    """A trained RF model on synthetic data, its problem and a solver key."""
    k_data, k_model, k_solve = jax.random.split(jax.random.key(seed), 3)
    ds = data.synthetic_regression(k_data, n, d, dtype=dtype)
    model = models.RandomFeatures(d, p, activation, rngs=nnx.Rngs(params=k_model), dtype=dtype)
    fit = train.fit_min_norm(model, ds.X, ds.y)
    problem = problems.random_features_problem(model, n, relu_surrogate_slope=slope)
    return ds, model, fit, problem, k_solve


@pytest.fixture(scope="session")
def built_book():
    """Run every notebook at the smoke profile and build the site once per session."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "recon", "book", "--profile", "smoke"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return ROOT / "_build" / "html"
