"""What a build of the book records about itself: the status page.

:func:`write_status_page` writes ``book/chapters/status.md`` (never committed) from the run
records in ``_build/runs.json``: for each notebook of ``notebooks/profiles.yml`` its profile,
parameters, run time and result, then the git revision, the JAX devices and the package
versions of the build. ``python -m recon run`` calls it after every run, so the page the table
of contents lists always exists before Jupyter Book starts. (The book's Sphinx hooks are in
:mod:`recon.book.sphinx`.)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import yaml

from recon.book import notebooks

ROOT = notebooks.ROOT
RUNS = notebooks.BUILD / "runs.json"
STATUS_PAGE = notebooks.CHAPTERS / "status.md"
TOC = ROOT / "_toc.yml"
CONFIG = ROOT / "_config.yml"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib", "papermill",
            "jupyter-book", "sphinx", "myst-nb", "sphinx-book-theme")


def toc_files(toc: Path | None = None) -> list[str]:
    """Every ``file`` of the table of contents (root first), without its suffix, in order."""
    data = yaml.safe_load(Path(toc or TOC).read_text()) or {}
    files = [data["root"]] if data.get("root") else []

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk(data.get("parts"))
    walk(data.get("chapters"))
    return files


def toc_notebooks(toc: Path | None = None) -> list[str]:
    """Names of the notebooks the table of contents lists as chapters (``book/chapters/NAME``),
    in book order; the status page is not one."""
    prefix = notebooks.CHAPTERS_IN_SITE + "/"
    status = f"{notebooks.CHAPTERS_IN_SITE}/{STATUS_PAGE.stem}"
    return [f[len(prefix):] for f in toc_files(toc) if f.startswith(prefix) and f != status]


def missing_toc_files(toc: Path | None = None) -> list[str]:
    """Table-of-contents entries with no ``.md`` or ``.ipynb`` file in the site."""
    return [f for f in toc_files(toc) if not any(
        (notebooks.SITE / f"{f}{suffix}").is_file() for suffix in (".md", ".ipynb"))]


def repository_url(config: Path | None = None) -> str | None:
    """The repository URL of ``_config.yml`` (``repository.url``), if any."""
    data = yaml.safe_load(Path(config or CONFIG).read_text()) or {}
    url = (data.get("repository") or {}).get("url")
    return url.rstrip("/") if url else None


def merge_runs(records: list[dict], path: Path | None = None) -> list[dict]:
    """Merge this run's ``records`` into the last record of every notebook kept in ``path``
    (``_build/runs.json``), write it back and return it in the order of ``profiles.yml``.
    Notebooks no longer in ``profiles.yml`` are dropped."""
    path = Path(path or RUNS)
    previous = json.loads(path.read_text()) if path.is_file() else []
    by_name = {r["notebook"]: r for r in previous if isinstance(r, dict) and "notebook" in r}
    by_name.update({r["notebook"]: r for r in records})
    merged = [by_name[name] for name in notebooks.load_profiles() if name in by_name]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1))
    return merged


def environment() -> dict:
    """The build's environment: :func:`recon.book.figures.provenance` (versions, JAX devices, git
    revision), plus whether the work tree had local changes, the platform and the versions of
    the packages that ran and rendered the notebooks."""
    # The notebooks have finished when this runs, but never let JAX take a GPU's memory here.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from recon.book import figures

    env = figures.provenance()
    try:
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, cwd=ROOT)
        env["git_dirty"] = bool(changes.stdout.strip()) if changes.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        env["git_dirty"] = None
    env["platform"] = platform.platform()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    env["packages"] = versions
    return env


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parameters(params: dict) -> str:
    if not params:
        return "defaults"
    return ", ".join(f"`{k}={_cell(_value(v))}`" for k, v in params.items())


def render_status(records: list[dict], env: dict, names: list[str],
                  in_toc: list[str], repository: str | None = None) -> str:
    """The status page (MyST Markdown): one row per notebook of ``names``, then the build's
    environment. Chapters listed in ``in_toc`` are linked."""
    profiles = sorted({r["profile"] for r in records if r.get("profile")})
    lines = [
        "# Build status",
        "",
        "This page is written by `python -m recon run` (which `python -m recon book` calls) "
        "each time the notebooks run, just before the site is built; it is never committed. "
        "It says how each chapter of this site was computed, and on what.",
        "",
    ]
    if profiles:
        listed = ", ".join(f"`{p}`" for p in profiles)
        lines += [f"Profile(s) used: {listed} (parameter sets in `notebooks/profiles.yml`; "
                  "see [](../reproducing.md)).", ""]
    lines += _notebook_rows(records, names, in_toc) + _environment_rows(env, repository)
    return "\n".join(lines) + "\n"


def _claims(count: dict | None) -> str:
    """``supported / total`` of a chapter's claims, the failing ones named in bold."""
    if not count:
        return ""
    text = f"{count['supported']} / {count['total']}"
    if count["failing"]:
        text = f"**{text}** (not supported: {', '.join(map(_cell, count['failing']))})"
    return text


def _notebook_rows(records: list[dict], names: list[str], in_toc: list[str]) -> list[str]:
    """The page's table of notebooks, then the error of each that failed."""
    by_name = {r["notebook"]: r for r in records}
    lines = [
        "## Notebooks",
        "",
        "| chapter | profile | parameters | run time | result | claims supported | finished (UTC) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    failures = []
    for name in names:
        chapter = f"{{doc}}`{name}`" if name in in_toc else f"`{name}` (not in the book)"
        record = by_name.get(name)
        if record is None:
            lines.append(f"| {chapter} | | | | not run | | |")
            continue
        result = "ok" if record.get("success") else "**failed**"
        if not record.get("success"):
            failures.append(record)
        seconds = record.get("seconds")
        run_time = f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        finished = (record.get("finished") or "").replace("T", " ")[:16]
        lines.append(f"| {chapter} | `{_cell(record.get('profile', ''))}` | "
                     f"{_parameters(record.get('parameters') or {})} | {run_time} | {result} | "
                     f"{_claims(record.get('claims'))} | {finished} |")
    lines += ["", "Parameters not listed are at the notebook's defaults: "
              "`papermill --help-notebook notebooks/NAME.ipynb` lists them all.", ""]
    for record in failures:
        lines += [f"### `{record['notebook']}` failed", "", "````text",
                  str(record.get("error") or "")[-3000:], "````", ""]
    return lines


def _environment_rows(env: dict, repository: str | None) -> list[str]:
    """The page's tables of the build's environment: revision, devices, versions."""
    revision = env.get("git_revision")
    if revision and repository:
        rev = f"[`{revision[:12]}`]({repository}/commit/{revision})"
    else:
        rev = f"`{revision[:12]}`" if revision else "unknown (not a git checkout)"
    if env.get("git_dirty"):
        rev += ", with uncommitted changes"
    devices = ", ".join(f"`{_cell(d)}`" for d in env.get("devices", [])) or "none"
    lines = [
        "## Environment of the build",
        "",
        "| item | value |",
        "| --- | --- |",
        f"| git revision | {rev} |",
        f"| JAX devices | {devices} |",
        f"| Python | {_cell(env.get('python', ''))} on `{_cell(env.get('platform', ''))}` |",
        f"| recon | {_cell(env.get('recon', ''))} |",
        f"| written at (UTC) | {_cell(str(env.get('created', '')).replace('T', ' '))} |",
        "",
        "| package | version |",
        "| --- | --- |",
    ]
    return lines + [f"| {k} | {_cell(v)} |" for k, v in env.get("packages", {}).items()]


def write_status_page(records: list[dict] | None = None, page: Path | None = None,
                      runs: Path | None = None) -> Path:
    """Write the status page from ``records`` (default: those in ``_build/runs.json``).
    Returns its path."""
    if records is None:
        runs = Path(runs or RUNS)
        records = json.loads(runs.read_text()) if runs.is_file() else []
    page = Path(page or STATUS_PAGE)
    page.parent.mkdir(parents=True, exist_ok=True)
    text = render_status(records, environment(), list(notebooks.load_profiles()),
                         toc_notebooks(), repository_url())
    page.write_text(text)
    return page
