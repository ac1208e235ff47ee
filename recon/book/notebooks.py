"""Running the book's notebooks with papermill, and reading back the numbers they glue.

Notebooks live in ``notebooks/``; ``notebooks/profiles.yml`` names, for each notebook, the
parameter sets ``smoke`` (tests), ``quick`` (the book on a CPU) and ``paper`` (the authors'
sizes, for a GPU).

The site is built in the checkout (``book/chapters/``, ``_build/``) unless ``$RECON_SITE`` names
another folder: then the book's sources (:data:`SITE_SOURCES`) are copied there and the executed
chapters, figures, run records and HTML are written there instead, leaving the checkout's own
build untouched (the tests build this way).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from recon import checks
from recon.book import claims

ROOT = Path(__file__).resolve().parents[2]  # the repository: recon/book/ is two below it
NOTEBOOKS = ROOT / "notebooks"
SITE = Path(os.environ.get("RECON_SITE") or ROOT).resolve()  # where the site is built
CHAPTERS_IN_SITE = "book/chapters"  # the executed chapters, relative to the site (as _toc.yml)
CHAPTERS = SITE / CHAPTERS_IN_SITE
BUILD = SITE / "_build"
SITE_SOURCES = ("_config.yml", "_toc.yml", "book")  # what Jupyter Book reads, besides chapters
PROFILES = ("smoke", "quick", "paper")


def load_profiles(path: Path | None = None) -> dict[str, dict[str, dict]]:
    """``{notebook: {profile: parameters}}`` from ``profiles.yml``, in book order."""
    path = Path(path) if path else NOTEBOOKS / "profiles.yml"
    if not path.is_file():
        raise FileNotFoundError(f"no notebook profiles at {path}")
    profiles = yaml.safe_load(path.read_text()) or {}
    for name, sets in profiles.items():
        missing = [p for p in PROFILES if p not in (sets or {})]
        if missing:
            raise ValueError(f"{path}: notebook {name!r} lacks profile(s) {missing}")
    return profiles


def resolve(names: list[str] | None, profile: str) -> list[str]:
    """Check notebook names and the profile name against ``profiles.yml``; all notebooks when
    ``names`` is empty."""
    profiles = load_profiles()
    checks.choice("profile", profile, PROFILES)
    for name in names or []:
        checks.choice("notebook", name, profiles)
        if not (NOTEBOOKS / f"{name}.ipynb").is_file():
            raise FileNotFoundError(f"notebook {name!r} is in profiles.yml but "
                                    f"{NOTEBOOKS / (name + '.ipynb')} does not exist")
    return list(names) if names else list(profiles)


def prepare_site() -> Path:
    """Copy the book's sources into :data:`SITE` when it is not the checkout (the executed
    chapters are not copied: they are made there). Returns the site's folder."""
    if SITE != ROOT:
        SITE.mkdir(parents=True, exist_ok=True)
        for name in SITE_SOURCES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, SITE / name, dirs_exist_ok=True,
                                ignore=lambda folder, names: (
                                    ["chapters"] if Path(folder) == ROOT / "book" else []))
            else:
                shutil.copy2(source, SITE / name)
    return SITE


def run_notebook(name: str, profile: str = "quick", output_dir: Path | None = None,
                 overrides: dict | None = None, figures: Path | None = None,
                 compile_cache: Path | None = None) -> dict:
    """Execute ``notebooks/NAME.ipynb`` with papermill at ``profile`` (plus ``overrides``)
    into ``output_dir/NAME.ipynb``, writing figures to ``figures`` and (unless
    ``$JAX_COMPILATION_CACHE_DIR`` is set) JAX's compiled programs to ``compile_cache``.
    Returns a status record: parameters, seconds, success, the time it finished (UTC), the
    count of the claims it glued that its run supports (:func:`recon.book.claims.count`) and
    the error if it failed; on failure the exception is re-raised with the record as its
    ``recon_record`` attribute."""
    import papermill as pm

    (name,) = resolve([name], profile)
    params = dict(load_profiles()[name][profile] or {})
    params.update(overrides or {})
    output_dir = Path(output_dir) if output_dir else CHAPTERS
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"{name}.ipynb"
    record = {"notebook": name, "profile": profile, "parameters": params, "output": str(output)}
    start = time.perf_counter()
    try:
        with _run_environment(profile, figures, compile_cache):
            pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(output),
                                parameters=params, kernel_name="python3", progress_bar=False,
                                cwd=str(output_dir))
        record.update(success=True, error=None)
        glued = read_glued(output).get("claims")
        if isinstance(glued, list):
            record["claims"] = claims.count(glued)
    except Exception as exc:
        record.update(success=False, error=f"{type(exc).__name__}: {exc}")
        try:
            exc.recon_record = record
        except AttributeError:  # an exception type that takes no attributes
            pass
        raise
    finally:
        record["seconds"] = round(time.perf_counter() - start, 2)
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


@contextlib.contextmanager
def _run_environment(profile: str, figures: Path | None, compile_cache: Path | None):
    """Set the variables the notebook's kernel reads (profile, figure folder, JAX's compile
    cache) for the duration of a run, then restore them."""
    names = ("RECON_PROFILE", "RECON_FIGURES", "JAX_COMPILATION_CACHE_DIR",
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    before = {k: os.environ.get(k) for k in names}
    os.environ["RECON_PROFILE"] = profile
    if figures is not None:
        os.environ["RECON_FIGURES"] = str(Path(figures).resolve())
    if compile_cache is not None and not before["JAX_COMPILATION_CACHE_DIR"]:
        # JAX's persistent cache: a rerun skips recompiling the solver for shapes seen before
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(Path(compile_cache).resolve())
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.3"
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def read_glued(path: str | os.PathLike) -> dict:
    """The values an executed notebook glued with ``myst_nb.glue``, by name.

    Plain numbers, strings, lists and dicts come back as Python values (parsed from their
    text representation); anything else as its text.
    """
    import ast

    nb = json.loads(Path(path).read_text())
    values = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            scrap = out.get("metadata", {}).get("scrapbook")
            if not scrap:
                continue
            text = out.get("data", {}).get("application/papermill.record/text/plain")
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[scrap["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[scrap["name"]] = text
    return values
