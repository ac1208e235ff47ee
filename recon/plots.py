"""Plots used by more than one chapter, in one style (:func:`use_style`). Each function takes
plain arrays or tables and returns a matplotlib figure; chapters save it with
:func:`recon.book.figures.save_figure`."""

from __future__ import annotations

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

def use_style() -> None:
    """Apply the book's matplotlib style for the rest of the session.

    (A ``matplotlib.rc_context`` would be tidier, but leaving one resets the notebook's inline
    backend, and later figures are then never displayed.)
    """
    matplotlib.rcParams.update(STYLE)


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


# ----------------------------------------------------------------------------- image chapters

def _show(ax, image) -> None:
    image = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_image_grid(originals, reconstructions, titles=None, columns: int = 10):
    """Training images above their matched reconstructions: for each block of up to
    ``columns`` images, a row of originals and, below it, a row of reconstructions.

    ``originals`` and ``reconstructions`` are ``(m, H, W, C)`` (or grey ``(m, H, W)``) arrays in
    ``[0, 1]``, in the same (matched) order; ``titles`` are optional labels above each original
    (e.g. the class, or the SSIM).
    """
    originals = np.asarray(originals)
    reconstructions = np.asarray(reconstructions)
    if originals.shape != reconstructions.shape or originals.ndim not in (3, 4):
        raise ValueError(f"originals {originals.shape} and reconstructions "
                         f"{reconstructions.shape} must be matched image stacks of one shape, "
                         "(m, H, W, C) or (m, H, W)")
    m = len(originals)
    if titles is not None and len(titles) != m:
        raise ValueError(f"titles must have one entry per image ({m}), got {len(titles)}")
    columns = max(1, min(int(columns), m))
    blocks = -(-m // columns)
    fig, axes = plt.subplots(2 * blocks, columns, squeeze=False,
                             figsize=(1.1 * columns + 0.9, 2.3 * blocks + 0.2))
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(m):
        block, col = divmod(i, columns)
        top, bottom = axes[2 * block, col], axes[2 * block + 1, col]
        top.set_axis_on()
        bottom.set_axis_on()
        _show(top, originals[i])
        _show(bottom, reconstructions[i])
        if titles is not None:
            top.set_title(str(titles[i]), fontsize=8)
    for block in range(blocks):
        axes[2 * block, 0].set_ylabel("original", fontsize=8)
        axes[2 * block + 1, 0].set_ylabel("reconstructed", fontsize=8)
    fig.tight_layout(h_pad=0.8, w_pad=0.2)
    return fig


def plot_law_grid(originals, rows, row_labels, titles=None):
    """The law in pictures: the training images (top row) above their matched reconstructions
    from models of growing size, one row per model (e.g. ``p/(dn)`` = 0.5, 1, 2, 5).

    ``originals`` is ``(m, H, W, C)`` (or grey ``(m, H, W)``) in ``[0, 1]``; ``rows`` a list of
    arrays of that shape, matched to the originals; ``row_labels`` one label per row;
    ``titles`` optional labels above the originals.
    """
    originals = np.asarray(originals)
    rows = [np.asarray(r) for r in rows]
    if originals.ndim not in (3, 4) or any(r.shape != originals.shape for r in rows):
        raise ValueError(f"originals {originals.shape} and every row of reconstructions "
                         f"{[r.shape for r in rows]} must be matched image stacks of one shape")
    if len(row_labels) != len(rows):
        raise ValueError(f"row_labels must have one entry per row ({len(rows)}), got "
                         f"{len(row_labels)}")
    m = len(originals)
    if titles is not None and len(titles) != m:
        raise ValueError(f"titles must have one entry per image ({m}), got {len(titles)}")
    fig, axes = plt.subplots(1 + len(rows), m, squeeze=False,
                             figsize=(1.0 * m + 1.2, 1.05 * (1 + len(rows)) + 0.3))
    for col in range(m):
        _show(axes[0, col], originals[col])
        if titles is not None:
            axes[0, col].set_title(str(titles[col]), fontsize=7)
        for r, row in enumerate(rows):
            _show(axes[r + 1, col], row[col])
    axes[0, 0].set_ylabel("training", fontsize=8)
    for r, label in enumerate(row_labels):
        axes[r + 1, 0].set_ylabel(str(label), fontsize=8)
    fig.tight_layout(h_pad=0.3, w_pad=0.2)
    return fig


def plot_error_against_p(table, dn: int, threshold: float | None = None,
                         ssim_level: float | None = None, main_p: int | None = None):
    """Reconstruction quality against the readout's size ``p``, with ``p = d n`` marked:
    the mean matched error (left, log scale) and the mean SSIM of the images (right), with
    the SSIM reached without the weights (column ``mean_baseline``, if the table has it: the
    best look-alike among held-out images, :func:`recon.metrics.ssim_baseline`).

    ``table`` has columns ``p``, ``mean_error`` and ``mean_ssim`` (e.g. from
    :func:`recon.chapters.image_chapter.sweep_table`); ``main_p`` highlights the chapter's main run.
    """
    p = np.asarray(table["p"], np.float64)
    error = np.asarray(table["mean_error"], np.float64)
    ssim = np.asarray(table["mean_ssim"], np.float64)
    fig, (ax_err, ax_ssim) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_err.loglog(p, np.maximum(error, 1e-16), marker="o")
    ax_ssim.semilogx(p, ssim, marker="o")
    for ax in (ax_err, ax_ssim):
        ax.axvline(dn, color="k", ls=":", lw=1, label=f"p = d n = {dn}")
        if main_p is not None and main_p in set(p.astype(int)):
            j = int(np.flatnonzero(p.astype(int) == main_p)[0])
            y = error[j] if ax is ax_err else ssim[j]
            ax.plot([p[j]], [max(y, 1e-16)], marker="*", ms=12, color="C3", ls="none",
                    label="main run")
        ax.set_xlabel("readout parameters $p$")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if threshold is not None:
        ax_err.axhline(threshold, color="C2", ls="--", lw=1, label=f"recovered below {threshold:g}")
    if ssim_level is not None:
        ax_ssim.axhline(ssim_level, color="C2", ls="--", lw=1, label=f"SSIM {ssim_level:g}")
    if "mean_baseline" in table:
        baseline = float(np.mean(table["mean_baseline"]))
        ax_ssim.axhline(baseline, color="C1", ls="-.", lw=1.2,
                        label=f"without the weights ({baseline:.2f})")
    ax_err.set(ylabel="mean matched error", title="distance to the training images")
    ax_ssim.set(ylabel="mean SSIM", title="image similarity", ylim=(min(0.0, ssim.min()), 1.05))
    ax_err.legend(fontsize=8)
    ax_ssim.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_image_quality(psnr, ssim, level: float = 0.4):
    """Per-image PSNR (left) and SSIM (right) of the matched reconstructions, with the SSIM
    level above which an image counts as reconstructed. Infinite PSNRs (exact copies) are
    drawn at the top of the axis."""
    psnr = np.asarray(psnr, np.float64)
    ssim = np.asarray(ssim, np.float64)
    idx = np.arange(len(ssim))
    finite = psnr[np.isfinite(psnr)]
    top = (finite.max() if finite.size else 0.0) + 10.0
    fig, (ax_psnr, ax_ssim) = plt.subplots(1, 2, figsize=(9, 3.0))
    ax_psnr.bar(idx, np.where(np.isfinite(psnr), psnr, top))
    ax_psnr.set(xlabel="training image $i$", ylabel="PSNR (dB)", title="PSNR")
    ax_ssim.bar(idx, ssim, color=np.where(ssim > level, "C0", "C3"))
    ax_ssim.axhline(level, color="k", ls=":", lw=1)
    ax_ssim.set(xlabel="training image $i$", ylabel="SSIM",
                title=f"SSIM (dotted line: {level:g}; red: below it)",
                ylim=(min(0.0, ssim.min()), 1.05))
    for ax in (ax_psnr, ax_ssim):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
