"""Device check of the image chapters: the random-features chapter at CIFAR-10's shape
(``d = 3072``, ``n = 10``, ``p = 1e5`` and ``p = d n``) and the two-layer chapter at a reduced
width, with their glued numbers and timings written to one JSON file.

    python benchmarks/image_device_check.py --out image_device_check.json          # accelerator
    python benchmarks/image_device_check.py --size tiny --out /tmp/check.json     # any CPU, seconds
    python benchmarks/image_device_check.py --data-root ~/.cache/recon --out ...  # with CIFAR-10

With ``--data-root`` (a folder holding ``cifar-10-binary.tar.gz``) the images are CIFAR-10's
frog and truck (two-layer: its first two classes); without it, the 32x32 colour thumbnails of
the photos that ship with scikit-image and scikit-learn (``recon.images.photos``). The chapters
run through their settings classes, exactly as their notebooks do, without papermill.

The JSON holds ``device`` (JAX's devices and backend), ``size``, ``dataset``, and per chapter
(``images_rf``, ``two_layer``): the settings, the glued headline numbers (the names the
chapters' text quotes: ``image_side``, ``channels``, ``recovered_fraction``, ``mean_ssim``,
``ssim_baseline``, ``beats_baseline``, ``p_over_dn``, ...), the claims, and per model of the
sweep its ``p``, ``p_over_dn``, ``wall_seconds`` (training, attack and evaluation), solver
seconds and compile seconds, plus ``total_seconds`` for the chapter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from recon import precision
from recon.book import claims as claims_mod
from recon.chapters import image_chapter as chapter
from recon.chapters.images_rf import ImagesRF
from recon.chapters.two_layer import TwoLayerImages

#: per size: the data (side, n) and the chapters' knobs. ``device`` is the CIFAR-10 shape.
SIZES = {
    "device": {"side": 32, "n": 10, "rf_p": 100_000, "rf_steps": 20_000, "width_ratio": 4.0,
               "train_steps": 20_000, "net_steps": 5000},
    "tiny": {"side": 8, "n": 2, "rf_p": 1_920, "rf_steps": 300, "width_ratio": 5.0,
             "train_steps": 300, "net_steps": 200},
}


def data_options(size: dict, data_root: str | None) -> dict:
    """The chapters' data settings: CIFAR-10 from ``data_root``, else the photos."""
    if data_root:
        return {"dataset": "cifar10", "data_root": data_root, "sample_seed": -1,
                "downsample": 32 // size["side"]}
    return {"dataset": "photos", "image_side": size["side"], "channels": 3, "sample_seed": -1,
            "downsample": 1}


def run_chapter(settings, sizes_label: str) -> dict:
    """Run ``settings``'s main model and sweep; the glued numbers, claims and timings."""
    start = time.perf_counter()
    data = settings.load()
    load_seconds = time.perf_counter() - start
    main = settings.run(data, settings.main_size, progress=False)
    outcomes = settings.sweep(data, main=main, progress=False)
    table = chapter.sweep_table(outcomes, sizes_label, data=data)
    headline = settings.headline(data, main, table)
    checked = settings.claims(data, main, table)
    return {
        "settings": settings.as_dict(),
        "glued": headline,
        "claims": claims_mod.as_records(checked),
        "models": [{"p": o.p, "p_over_dn": o.p_over_dn, "wall_seconds": o.wall_seconds,
                    "solver_seconds": o.seconds, "compile_seconds": o.compile_seconds,
                    "iterations": o.iterations, "beats_baseline": o.beats_baseline,
                    "mean_ssim": o.mean_ssim, "recovered_fraction": o.recovered_fraction}
                   for o in outcomes],
        "load_seconds": load_seconds,
        "total_seconds": time.perf_counter() - start,
    }


def check(size_name: str, data_root: str | None = None) -> dict:
    """The whole check at ``size_name`` (a key of :data:`SIZES`)."""
    if size_name not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size_name!r}")
    size = SIZES[size_name]
    options = data_options(size, data_root)
    d = size["side"] ** 2 * 3
    dn = d * size["n"]
    rf = ImagesRF(n=size["n"], p=size["rf_p"], ratios=[1.0, size["rf_p"] / dn],
                  max_steps=size["rf_steps"], lr=0.02, show=size["n"], **options)
    k = 2
    width = round(size["width_ratio"] * dn / k)
    two = TwoLayerImages(n=size["n"], k=k, width=width, ratios=[1.0, size["width_ratio"]],
                         train_steps=size["train_steps"], max_steps=size["net_steps"],
                         lr=0.05, tol=1e-6, show=size["n"], **options)
    report = {
        "size": size_name,
        "dataset": options["dataset"],
        "device": {"backend": jax.default_backend(),
                   "devices": [str(device) for device in jax.devices()]},
        "float64": bool(jax.config.jax_enable_x64),
    }
    report["images_rf"] = run_chapter(rf, "p")
    report["two_layer"] = run_chapter(two, "width")
    return report


def _plain(value):
    """JSON-ready: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--size", choices=sorted(SIZES), default="device",
                        help="device: CIFAR-10's shape (an accelerator); tiny: seconds on a CPU")
    parser.add_argument("--data-root", default=None,
                        help="folder holding cifar-10-binary.tar.gz; without it, the photos")
    parser.add_argument("--float32", action="store_true",
                        help="compute in float32 (default float64, as the book)")
    args = parser.parse_args(argv)
    if not args.float32:
        precision.use_float64()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = _plain(check(args.size, args.data_root))
    out.write_text(json.dumps(report, indent=1) + "\n")
    for name in ("images_rf", "two_layer"):
        glued = report[name]["glued"]
        print(f"{name}: {report[name]['total_seconds']:.1f} s, p/(dn) {glued['p_over_dn']}, "
              f"recovered {glued['recovered_fraction']}, mean SSIM {glued['mean_ssim']}, "
              f"beats baseline {glued['beats_baseline']}/{glued['n_images']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
