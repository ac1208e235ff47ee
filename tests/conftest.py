import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from recon import precision

precision.use_float64()  # the Gram solves and the float64 theorem checks
from recon import problems
from recon.problems import setup_synthetic_rf

ROOT = Path(__file__).resolve().parent.parent


def make_rf(n, d, p, seed=0, activation="relu", dtype=jax.numpy.float32, slope=0.02):
    """A trained RF model on synthetic data, its problem and a solver key."""
    ds, model, fit, key = setup_synthetic_rf(n, d, p, seed, activation, dtype=dtype)
    problem = problems.random_features_problem(model, n, relu_surrogate_slope=slope)
    return ds, model, fit, problem, key


@pytest.fixture(scope="session")
def built_book():
    """Run every notebook at the smoke profile and build the site once per session; the site
    tests (test_notebooks, test_site, test_browser) all read this one build.

    ``RECON_REUSE_BOOK=1`` reuses an existing ``_build/html`` instead (for iterating on the
    site tests only; never set in CI, where the build itself is under test)."""
    html = ROOT / "_build" / "html"
    if os.environ.get("RECON_REUSE_BOOK") == "1" and not os.environ.get("CI"):
        if (html / "index.html").is_file():
            return html
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "recon", "book", "--profile", "smoke"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return ROOT / "_build" / "html"
