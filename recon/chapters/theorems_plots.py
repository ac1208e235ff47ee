"""The figures of the theorems chapter: one ``plot_*`` function per figure (plain arrays in,
a Matplotlib figure out) and one ``*_figure`` function per section that draws it from the
section's results (:mod:`recon.chapters.theorems`) and returns the figure with the data its
sidecar stores, so that each notebook cell only saves it::

    fig, data = theorems_plots.landing_figure(settings, shares, other_zeros)
    figures.save_figure(fig, "theorems-landing", params=settings.as_dict(), data=data)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

#: Values below this are drawn at this floor on logarithmic axes (exact zeros included).
LOG_FLOOR = 1e-18


# ------------------------------------------------------------------ one figure per section


def great_circles_figure(settings, circles: dict, through: dict):
    """The span residual along random great circles (``circles``, by ratio ``p / (d n)``)
    and along the circles through two zeros (``through``); see :func:`plot_great_circles`."""
    labels = {ratio: f"$p/(dn) = {ratio:g}$ ($p = {settings.p(ratio)}$)" for ratio in circles}
    fig = plot_great_circles({labels[k]: v for k, v in circles.items()}, through)
    data = {"angles": circles[settings.circle_ratios[0]].angles,
            "median_r": {f"{k:g}": np.median(v.residuals.reshape(-1, len(v.angles)), axis=0)
                         for k, v in circles.items()},
            "through": {k: {"angles": a, "r": r, "zeros": z}
                        for k, (a, r, z) in through.items()}}
    return fig, data


def landing_figure(settings, shares: dict, other_zeros: dict):
    """The one-point solver's shares by ratio (:func:`recon.chapters.theorems.landing_shares`);
    see :func:`plot_landing`."""
    fig = plot_landing(settings.landing_ratios, list(shares.values()),
                       list(other_zeros.values()), settings.count_ratio)
    data = {"ratios": settings.landing_ratios, "landing_share": shares,
            "other_zero_share": other_zeros, "count_ratio": settings.count_ratio}
    return fig, data


def rank_figure(scans: dict):
    """The rank scans (``scans`` maps a :func:`recon.chapters.theorems.rank_key` to a
    :class:`recon.theory.RankScan`); see :func:`plot_rank_scans`."""
    fig = plot_rank_scans(list(scans.values()))
    data = {key: {"p": s.p_values, "rank": s.ranks, "bound": s.bounds,
                  "sigma_min": s.sigma_min, "full_rank": s.full_rank, "jump": s.jump}
            for key, s in scans.items()}
    return fig, data


def null_figure(settings, X, null: dict):
    """The true data ``X`` next to the null-direction datasets below and above the threshold
    (``null`` maps a ratio to a :class:`recon.theory.NullDirectionDataset`)."""
    below, above = settings.null_ratios
    dn = settings.null_size[0] * settings.null_size[1]
    titles = {ratio: (f"$p = {settings.p(ratio, settings.null_size)}$ "
                      f"({'below' if ratio < 1 else 'above'} $dn = {dn}$): "
                      f"$L$ = {null[ratio].loss:.0e}") for ratio in (below, above)}
    fig = plot_null_datasets(X, {titles[r]: null[r].X_alt for r in (below, above)})
    data = {"X": X, **{f"{r:g}": {"X_alt": null[r].X_alt, "loss": null[r].loss,
                                  "distance": null[r].distance} for r in (below, above)}}
    return fig, data


def symmetry_figure(settings, runs):
    """The matched errors of the sign check (a :class:`recon.chapters.theorems.SymmetryRuns`);
    see :func:`plot_sign_errors`."""
    fig = plot_sign_errors(runs.sign_errors, settings.threshold)
    return fig, {"errors": runs.sign_errors, "flip_loss": runs.flip_loss}


# ------------------------------------------------------------------------------ the plots


def plot_great_circles(random: dict, through: dict):
    """Left: the span residual ``r`` along random great circles from the training points
    (``random`` maps a label to a :class:`recon.theory.GreatCircleResiduals`; line: median
    over circles, band: 10% to 90%). Right: ``r`` along single great circles (``through``
    maps a label to ``(angles, r, zeros)``, ``zeros`` the angles of the points the circle was
    drawn through, marked on the curve)."""
    fig, (ax_rand, ax_thru) = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    for label, res in random.items():
        r = np.asarray(res.residuals).reshape(-1, len(res.angles))
        low, mid, high = np.quantile(r, [0.1, 0.5, 0.9], axis=0)
        (line,) = ax_rand.plot(res.angles, mid, label=label)
        ax_rand.fill_between(res.angles, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax_rand.set(xlabel="angle from the training point (rad)", ylabel=r"span residual $r(x)$",
                title="random great circles", xlim=(0, np.pi))
    ax_rand.legend()
    for label, (angles, r, zeros) in through.items():
        (line,) = ax_thru.plot(angles, r, label=label)
        for z in np.atleast_1d(zeros):
            ax_thru.plot([z], [np.interp(z, angles, r)], marker="o", ms=6, mfc="none",
                         color=line.get_color())
    ax_thru.set(xlabel="angle from the training point (rad)",
                title="circles through two zeros of $r$", xlim=(0, np.pi))
    ax_thru.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_landing(ratios, landed, others, count_ratio: float | None = None):
    """Share of one-point runs that land on a training point (``landed``) and share that
    end on another zero of ``r`` (``others``), against ``p / (d n)``; vertical lines at the
    one-point count ``p - n = d - 1`` (``count_ratio``) and at ``p = d n``."""
    ratios = np.asarray(ratios, float)
    fig, ax = plt.subplots()
    ax.plot(ratios, others, marker="s", ls="--", label="find another zero of $r$")
    ax.plot(ratios, landed, marker="o", label="land on a training point")
    ax.axvline(1.0, color="k", ls=":", lw=1, label="$p = dn$")
    if count_ratio is not None:
        ax.axvline(count_ratio, color="0.5", ls="-.", lw=1, label="$p - n = d - 1$")
    ax.set_xscale("log")
    ax.set(xlabel="$p / (dn)$", ylabel="share of runs", ylim=(-0.03, 1.03),
           title="one-point solver from random starts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rank_scans(scans: list):
    """One column per size ``(n, d)``: the rank of the restricted Jacobian divided by the
    full rank ``(d - 1) n`` (top; dashed: the bound ``min(p - n, (d - 1) n)``) and its
    ``(d - 1) n``-th singular value relative to the largest (bottom, log scale), against
    ``p - d n``, for each activation. ``scans`` is a list of
    :class:`recon.theory.RankScan`."""
    sizes = list(dict.fromkeys((s.n, s.d) for s in scans))
    fig, axes = plt.subplots(2, len(sizes), figsize=(3.4 * len(sizes), 5.2), sharex="col",
                             squeeze=False)
    markers = dict(zip(dict.fromkeys(s.activation for s in scans), "osD^vx+*"))
    for col, (n, d) in enumerate(sizes):
        ax_rank, ax_sigma = axes[0, col], axes[1, col]
        dn = d * n
        for j, s in enumerate(s for s in scans if (s.n, s.d) == (n, d)):
            x = s.p_values - dn
            if j == 0:
                ax_rank.plot(x, s.bounds / s.full_rank, color="k", ls="--", lw=1,
                             label=r"$\min(p-n, (d-1)n)$")
                ax_sigma.axhline(s.rtol, color="k", ls=":", lw=1, label="rank tolerance")
            jump = "none" if s.jump is None else f"{s.jump - dn:+d}"
            style = {"marker": markers[s.activation], "ms": 4, "mfc": "none", "lw": 1}
            ax_rank.plot(x, s.ranks / s.full_rank, label=f"{s.activation} (full at $dn${jump})",
                         **style)
            ax_sigma.semilogy(x, np.maximum(s.sigma_min, LOG_FLOOR), label=s.activation, **style)
        ax_rank.axvline(0, color="0.6", lw=0.8)
        ax_sigma.axvline(0, color="0.6", lw=0.8)
        ax_rank.set(title=f"$n={n}$, $d={d}$ ($dn={dn}$)",
                    ylabel="rank / $(d-1)n$" if col == 0 else None)
        ax_sigma.set(xlabel="$p - dn$",
                     ylabel=r"$\sigma_{(d-1)n} / \sigma_{\max}$" if col == 0 else None)
        ax_rank.legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_null_datasets(X, alternatives: dict):
    """The true data ``X`` (``n x d``, filled markers) next to each alternative dataset
    (``alternatives`` maps a panel title to an ``n x d`` array, crosses), coordinate by
    coordinate, one colour per sample."""
    X = np.asarray(X)
    fig, axes = plt.subplots(1, len(alternatives), figsize=(4.7 * len(alternatives), 3.4),
                             sharey=True, squeeze=False)
    coords = np.arange(X.shape[1])
    for ax, (title, X_alt) in zip(axes[0], alternatives.items()):
        X_alt = np.asarray(X_alt)
        for i in range(X.shape[0]):
            (line,) = ax.plot(coords, X[i], marker="o", lw=1, alpha=0.7,
                              label=f"$x_{i}$" if i < 3 else None)
            ax.plot(coords, X_alt[i], marker="x", ls="--", lw=1, ms=8,
                    color=line.get_color(), label=rf"$\hat x_{i}$" if i < 3 else None)
        ax.set(xlabel="coordinate", title=title, xticks=coords)
    axes[0, 0].set(ylabel="value")
    axes[0, 0].legend(ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


def plot_sign_errors(errors: dict, threshold: float):
    """Matched per-sample errors, sign-aware and signed, one panel per activation
    (``errors`` maps an activation to ``{"sign-aware": e, "signed": e}``), log scale, with
    the recovery ``threshold`` dotted."""
    fig, axes = plt.subplots(1, len(errors), figsize=(3.3 * len(errors), 3.3), sharey=True,
                             squeeze=False)
    for ax, (act, measures) in zip(axes[0], errors.items()):
        width = 0.8 / len(measures)
        for j, (label, e) in enumerate(measures.items()):
            idx = np.arange(len(e))
            ax.bar(idx + (j - (len(measures) - 1) / 2) * width,
                   np.maximum(np.asarray(e), LOG_FLOOR), width=width, label=label)
        ax.set_yscale("log")
        ax.axhline(threshold, color="k", ls=":", lw=1)
        ax.set(title=act, xlabel="training sample $i$", xticks=np.arange(len(e)))
    axes[0, 0].set(ylabel=r"matched error / $\sqrt{d}$")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
