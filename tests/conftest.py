import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _snapshot(*folders):
    """``{path: (size, mtime_ns)}`` of every file under ``folders`` (those that exist)."""
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns)
            for folder in folders if folder.is_dir() for f in folder.rglob("*") if f.is_file()}


# The user's own build (``make book``) as it was before any test ran: the tests build the book
# into a site folder of their own ($RECON_SITE, read when recon.book.notebooks is imported) and
# test_site checks that this snapshot still holds at the end.
USER_BUILD = (ROOT / "_build" / "html", ROOT / "book" / "chapters", ROOT / "_build" / "figures")
USER_BUILD_BEFORE = _snapshot(*USER_BUILD)
_TEST_SITE = os.environ.get("RECON_TEST_SITE")  # a fixed folder, to reuse a build across runs
if not _TEST_SITE:
    _TEST_SITE = tempfile.mkdtemp(prefix="recon-test-site-")
    atexit.register(shutil.rmtree, _TEST_SITE, ignore_errors=True)
os.environ["RECON_SITE"] = _TEST_SITE

import jax  # noqa: E402
import pytest  # noqa: E402

from recon import precision  # noqa: E402

precision.use_float64()  # the Gram solves and the float64 theorem checks
from recon import problems  # noqa: E402
from recon.book import notebooks  # noqa: E402
from recon.problems import setup_synthetic_rf  # noqa: E402


def load_benchmark(name: str):
    """The script ``benchmarks/NAME.py`` as a module (it is not a package), loaded afresh."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, notebooks.ROOT / "benchmarks"
                                                  / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_rf(n, d, p, seed=0, activation="relu", dtype=jax.numpy.float32, slope=0.02):
    """A trained RF model on synthetic data, its problem and a solver key."""
    ds, model, fit, key = setup_synthetic_rf(n, d, p, seed, activation, dtype=dtype)
    problem = problems.random_features_problem(model, n, relu_surrogate_slope=slope)
    return ds, model, fit, problem, key


@pytest.fixture(scope="session")
def built_book():
    """Run every notebook at the smoke profile and build the site once per session, in the
    tests' own site folder; the site tests (test_notebooks, test_site, test_browser) all read
    this one build.

    ``RECON_REUSE_BOOK=1`` with ``RECON_TEST_SITE=DIR`` reuses a build already in ``DIR``
    (for iterating on the site tests only; never set in CI, where the build is under test)."""
    html = notebooks.BUILD / "html"
    if os.environ.get("RECON_REUSE_BOOK") == "1" and not os.environ.get("CI"):
        if (html / "index.html").is_file():
            return html
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "recon", "book", "--profile", "smoke"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return html
