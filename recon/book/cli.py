"""Command line: ``python -m recon run|book|sweep``.

- ``run``: execute notebooks (all, or those named) with papermill at a profile, into
  ``book/chapters/``; a failing notebook stops the run with its traceback. Each run's record
  (profile, parameters, seconds, success) is merged into ``_build/runs.json`` and the build's
  status page, ``book/chapters/status.md``, is written from it.
- ``book``: ``run``, then build the site with Jupyter Book into ``_build/html``, warnings as
  errors, and copy the figures' files to ``_build/html/figures``.
- ``sweep``: run a parameter grid into a resumable on-disk store (see :mod:`recon.book.sweep`).

``run`` and ``book`` write into the checkout unless ``$RECON_SITE`` names another folder (see
:mod:`recon.book.notebooks`); JAX's compile cache stays in the checkout's ``_build/jax-cache``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from recon.book import notebooks, status

BUILD = notebooks.BUILD
COMPILE_CACHE = notebooks.ROOT / "_build" / "jax-cache"  # shared by every site of the checkout


def parameter_overrides(names: list[str], pairs: list[list[str]],
                        yaml_text: str | None) -> dict:
    """The parameters given on the command line, read as papermill reads them: ``-y`` YAML
    text, then each ``-p NAME VALUE`` (numbers, ``True``/``False``/``None``, else a string:
    papermill's own rule), checked against the ``parameters`` cell of every notebook in
    ``names`` (read by papermill). Raises ``ValueError`` naming an unknown parameter and the
    accepted ones."""
    import papermill as pm
    from papermill.cli import _resolve_type  # papermill's reading of a -p value

    overrides = {}
    if yaml_text:
        given = yaml.safe_load(yaml_text)
        if not isinstance(given, dict):
            raise ValueError(f"-y must be a YAML mapping of parameter names to values, got "
                             f"{yaml_text!r}")
        overrides.update(given)
    overrides.update({name: _resolve_type(text) for name, text in pairs or []})
    for notebook in names:
        accepted = pm.inspect_notebook(str(notebooks.NOTEBOOKS / f"{notebook}.ipynb"))
        unknown = sorted(set(overrides) - set(accepted))
        if unknown:
            raise ValueError(f"notebook {notebook!r} has no parameter(s) {', '.join(unknown)}; "
                             f"accepted: {', '.join(accepted)}")
    return overrides


def _run(names: list[str], profile: str, overrides: dict | None = None) -> list[dict]:
    """Execute the notebooks ``names`` at ``profile`` (with the parameter ``overrides`` on
    top) into ``book/chapters/``, recording each run; the first failure stops the run (exit
    status 1)."""
    names = notebooks.resolve(names, profile)
    notebooks.prepare_site()
    figures = BUILD / "figures"
    records = []
    for name in names:
        print(f"[recon] running {name} at profile {profile!r} ...", flush=True)
        try:
            record = notebooks.run_notebook(name, profile, figures=figures,
                                            compile_cache=COMPILE_CACHE, overrides=overrides)
        except Exception as exc:
            print(f"[recon] notebook {name} FAILED:\n{exc}", file=sys.stderr, flush=True)
            records.append(getattr(exc, "recon_record", None) or {
                "notebook": name, "profile": profile, "success": False,
                "error": f"{type(exc).__name__}: {exc}"})
            _record(records)
            raise SystemExit(1)
        records.append(record)
        print(f"[recon] {name}: done in {record['seconds']:.1f} s", flush=True)
    _record(records)
    return records


def _record(records: list[dict]) -> None:
    """Merge the run records into ``_build/runs.json`` and write the status page."""
    merged = status.merge_runs(records, BUILD / "runs.json")
    page = status.write_status_page(merged)
    print(f"[recon] run records in {BUILD / 'runs.json'}, status page {page}", flush=True)


def _jupyter_book() -> str:
    """The ``jupyter-book`` executable next to this Python, else on ``PATH``."""
    exe = Path(sys.executable).parent / "jupyter-book"
    found = str(exe) if exe.exists() else shutil.which("jupyter-book")
    if not found:
        raise SystemExit("jupyter-book is not installed: pip install 'jupyter-book>=1.0.4,<2'")
    return found


# the lines of Jupyter Book's output that say why a build failed
_FAULT = re.compile(r"(ERROR|WARNING|CRITICAL|Error|Exception)\b")


def build_site() -> Path:
    """Jupyter Book on the site, warnings as errors, its output shown as it comes. A failed
    build leaves no ``_build/html`` behind (nothing that looks complete) and its message
    repeats the error and warning lines that caused it. Returns the HTML folder."""
    html = BUILD / "html"
    cmd = [_jupyter_book(), "build", str(notebooks.SITE), "--warningiserror", "--keep-going"]
    print("[recon] building the book:", " ".join(cmd), flush=True)
    faults = []
    with subprocess.Popen(cmd, cwd=notebooks.SITE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as build:
        for line in build.stdout:
            print(line, end="", flush=True)
            if _FAULT.search(line):
                faults.append(line.rstrip())
    if build.returncode != 0:
        shutil.rmtree(html, ignore_errors=True)
        shown = "\n".join(faults[-20:]) or "(Jupyter Book printed no error line)"
        raise SystemExit(f"[recon] the book build failed (exit {build.returncode}); "
                         f"{html} was removed. Jupyter Book reported:\n{shown}")
    return html


def _book(names: list[str], profile: str, overrides: dict | None = None) -> None:
    """Run the notebooks, then build the site with warnings as errors into ``_build/html``."""
    _run(names, profile, overrides)
    missing = status.missing_toc_files()
    if missing:
        chapters = notebooks.CHAPTERS_IN_SITE
        unrun = [n for n in status.toc_notebooks() if f"{chapters}/{n}" in missing]
        hint = (f"; run them first: python -m recon run {' '.join(unrun)} --profile {profile}"
                if unrun else "")
        raise SystemExit(f"[recon] _toc.yml lists pages that do not exist: "
                         f"{', '.join(missing)}{hint}")
    html = build_site()
    if not (html / "index.html").is_file():
        raise SystemExit(f"[recon] the build finished but {html / 'index.html'} is missing")
    if (BUILD / "figures").is_dir():
        shutil.copytree(BUILD / "figures", html / "figures", dirs_exist_ok=True)
    print(f"[recon] the book is at {html / 'index.html'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m recon run|book|sweep``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m recon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, help_text in (("run", "execute notebooks with papermill"),
                               ("book", "execute notebooks, then build the site")):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("names", nargs="*", help="notebook names (default: all in profiles.yml)")
        p.add_argument("--profile", default="quick", help="smoke, quick (default) or paper")
        p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="set a notebook parameter on top of the profile (as papermill's "
                            "-p; unknown names are refused)")
        p.add_argument("-y", "--yaml", help="parameters as YAML text (as papermill's -y)")
    sub.add_parser("sweep", help="run a parameter grid (see python -m recon sweep -h)",
                   add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "sweep":
        from recon.book import sweep

        return sweep.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        names = notebooks.resolve(args.names, args.profile)
        overrides = parameter_overrides(names, args.parameter, args.yaml)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.command == "run":
        _run(args.names, args.profile, overrides)
    else:
        _book(args.names, args.profile, overrides)
    return 0
