"""One plotting style for the book, ``save_figure``: PNG, PDF and SVG plus a JSON sidecar with
the numbers plotted, the parameters and the versions that produced them, and ``figure_links``,
which shows links to those files under a figure in the book."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}

FORMATS = ("png", "pdf", "svg")

# Where the built site keeps the figures' files (``_build/html/figures``), relative to a chapter
# page (``book/chapters/NAME.html``).
SITE_FIGURES = "../../figures"


def use_style() -> None:
    """Apply the book's matplotlib style for the rest of the session.

    (A ``matplotlib.rc_context`` would be tidier, but leaving one resets the notebook's inline
    backend, and later figures are then never displayed.)
    """
    matplotlib.rcParams.update(STYLE)


def figures_dir() -> Path:
    """Where figures are written: ``$RECON_FIGURES`` if set, else ``./figures``."""
    return Path(os.environ.get("RECON_FIGURES", "figures"))


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
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"figure name must use letters, digits, '-' and '_', got {name!r}")
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
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"figure name must use letters, digits, '-' and '_', got {name!r}")
    missing = [f"{name}.{ext}" for ext in (*FORMATS, "json")
               if not (figures_dir() / f"{name}.{ext}").is_file()]
    if missing:
        raise FileNotFoundError(f"figure {name!r} has no file(s) {missing} in {figures_dir()}: "
                                f"call figures.save_figure(fig, {name!r}) first")
    if base is None:
        base = SITE_FIGURES if os.environ.get("RECON_PROFILE") else figures_dir().as_posix()
    return FigureLinks(name, base)


def plot_history(histories: dict, threshold: float | None = None):
    """Loss (per step) and matched error (per block) over iterations, one line per solver.

    ``histories`` maps a label to a :class:`recon.solver.History`.
    """
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, h in histories.items():
        ax_loss.semilogy(np.arange(1, len(h.loss) + 1), h.loss, label=label)
        if len(h.error):
            ax_err.semilogy(h.error_steps, h.error, label=label)
    ax_loss.set(xlabel="iteration", ylabel=r"loss $L(\hat X)$", title="projection loss")
    ax_err.set(xlabel="iteration", ylabel="mean matched error", title="distance to the data")
    if threshold is not None:
        ax_err.axhline(threshold, color="k", ls=":", lw=1, label=f"threshold {threshold:g}")
    ax_loss.legend()
    ax_err.legend()
    fig.tight_layout()
    return fig


def plot_per_sample_errors(errors: dict, threshold: float):
    """Matched per-sample errors ``||x_i - x_hat_i|| / sqrt(d)`` for each error measure."""
    fig, ax = plt.subplots()
    width = 0.8 / max(len(errors), 1)
    count = 0
    for j, (label, e) in enumerate(errors.items()):
        idx = np.arange(len(e))
        count = max(count, len(e))
        ax.bar(idx + (j - (len(errors) - 1) / 2) * width, np.maximum(e, 1e-16), width=width,
               label=label)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # one per sample
    ax.set_xlim(-0.6, count - 0.4)
    ax.set_yscale("log")
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"recovered below {threshold:g}")
    ax.set(xlabel="training sample $i$", ylabel=r"$\|x_i - \hat x_i\| / \sqrt{d}$")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_samples(X, X_hat, count: int = 3):
    """True against reconstructed entries: the first ``count`` samples as profiles, and all
    entries of all matched samples as a scatter around the diagonal."""
    X = np.asarray(X)
    X_hat = np.asarray(X_hat)
    count = min(count, len(X))
    fig, (ax_prof, ax_scatter) = plt.subplots(1, 2, figsize=(9, 3.4))
    for i in range(count):
        (line,) = ax_prof.plot(X[i], lw=1.5, alpha=0.6, label=f"$x_{i}$")
        ax_prof.plot(X_hat[i], ls="none", marker=".", ms=3, color=line.get_color(),
                     label=rf"$\hat x_{i}$")
    ax_prof.set(xlabel="coordinate", ylabel="value", title="samples and reconstructions")
    ax_prof.legend(ncol=2, fontsize=8)
    lim = float(np.abs(X).max()) * 1.05
    ax_scatter.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
    ax_scatter.scatter(X.ravel(), X_hat.ravel(), s=3, alpha=0.5)
    ax_scatter.set(xlabel="true entry", ylabel="reconstructed entry", title="all entries",
                   xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    fig.tight_layout()
    return fig
