"""The book's figures: ``save_figure`` writes PNG, PDF and SVG plus a JSON sidecar with the
numbers plotted, the parameters and the versions that produced them (``provenance``), and
``figure_links`` shows links to those files under a figure in the book. (The plotting style is
:func:`recon.plots.use_style`.)"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import numpy as np

FORMATS = ("png", "pdf", "svg")

# Where the built site keeps the figures' files (``_build/html/figures``), relative to a chapter
# page (``book/chapters/NAME.html``).
SITE_FIGURES = "../../figures"


def figures_dir() -> Path:
    """Where figures are written: ``$RECON_FIGURES`` if set, else ``./figures``."""
    return Path(os.environ.get("RECON_FIGURES", "figures"))


def _check_name(name) -> None:
    """Raise unless ``name`` is a stable identifier (letters, digits, ``-`` and ``_``)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"figure name must use letters, digits, '-' and '_', got {name!r}")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def provenance() -> dict:
    """Versions, JAX devices, platform and git revision (when available) of this run."""
    import jax
    import flax
    import optax
    import scipy

    import recon

    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=5, cwd=Path(recon.__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {
        "recon": recon.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
        "git_revision": revision or None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_figure(fig, name: str, data: dict | None = None, params: dict | None = None,
                directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``fig`` as ``NAME.png``, ``NAME.pdf`` and ``NAME.svg`` and ``NAME.json`` (the
    plotted ``data``, the ``params``, the profile from ``$RECON_PROFILE`` and the provenance).

    ``name`` must be a stable identifier (letters, digits, ``-`` and ``_``) so the files can
    be cited. Returns the paths written.
    """
    _check_name(name)
    directory = Path(directory) if directory is not None else figures_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = {fmt: directory / f"{name}.{fmt}" for fmt in FORMATS}
    for fmt, path in paths.items():
        fig.savefig(path, format=fmt)
    sidecar = {
        "name": name,
        "profile": os.environ.get("RECON_PROFILE"),
        "params": _jsonable(params or {}),
        "data": _jsonable(data or {}),
        "provenance": provenance(),
    }
    paths["json"] = directory / f"{name}.json"
    paths["json"].write_text(json.dumps(sidecar, indent=1))
    return paths


class FigureLinks:
    """Links to the files of a saved figure: HTML in the book (and Jupyter), Markdown where only
    Markdown is shown. ``str()`` gives the Markdown."""

    LABELS = {"png": "PNG", "pdf": "PDF", "svg": "SVG", "json": "data and provenance (JSON)"}

    def __init__(self, name: str, base: str):
        self.name = name
        self.base = base.rstrip("/")
        self.links = {label: f"{self.base}/{name}.{ext}" for ext, label in self.LABELS.items()}

    def _repr_html_(self) -> str:
        links = " · ".join(f'<a href="{url}">{label}</a>' for label, url in self.links.items())
        return (f'<p class="recon-figure-files">Files of <code>{self.name}</code>: '
                f"{links}</p>")

    def _repr_markdown_(self) -> str:
        links = " · ".join(f"[{label}]({url})" for label, url in self.links.items())
        return f"Files of `{self.name}`: {links}"

    def __str__(self) -> str:
        return self._repr_markdown_()

    def __repr__(self) -> str:
        return f"FigureLinks({self.name!r}, base={self.base!r})"


def figure_links(name: str, base: str | None = None) -> FigureLinks:
    """Links to the PNG, PDF, SVG and JSON files that ``save_figure(fig, name)`` wrote, for a
    notebook to display right below the figure, so a reader can download and cite exactly
    what they see.

    ``base`` is the folder of the files as the page sees it. By default: ``../../figures``
    when the notebook runs for the book (``python -m recon run`` sets ``$RECON_PROFILE``; the
    site keeps the files in ``figures/`` at its root and chapters are ``book/chapters/NAME``),
    else the local folder :func:`figures_dir`. Raises ``FileNotFoundError`` if the figure was
    not saved under that name.
    """
    _check_name(name)
    missing = [f"{name}.{ext}" for ext in (*FORMATS, "json")
               if not (figures_dir() / f"{name}.{ext}").is_file()]
    if missing:
        raise FileNotFoundError(f"figure {name!r} has no file(s) {missing} in {figures_dir()}: "
                                f"call figures.save_figure(fig, {name!r}) first")
    if base is None:
        base = SITE_FIGURES if os.environ.get("RECON_PROFILE") else figures_dir().as_posix()
    return FigureLinks(name, base)
