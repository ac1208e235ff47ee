"""The image chapters (random features on real images, the two-layer network, the ResNet):
each notebook at its smoke profile through papermill, the image metrics, and the refusal of
bad parameters before any computation."""

import numpy as np
import papermill as pm
import pytest

from conftest import ROOT
from recon import checks, images, metrics, plots
from recon.book import notebooks
from recon.chapters.image_chapter import ChapterData, Outcome, shown, sweep_table
from recon.chapters.images_rf import ImagesRF
from recon.chapters.resnet import ResNetImages
from recon.chapters.two_layer import TwoLayerImages
from recon.solver import Polish, Reseed

CHAPTERS = {"images_rf": "images-rf", "two_layer": "two-layer", "resnet": "resnet"}
GLUED = {"p_over_dn", "recovered_fraction", "mean_ssim", "ssim_success", "dataset",
         "n_images", "mean_error", "mean_psnr", "sign_flips", "first_full_recovery",
         "image_side", "channels", "ssim_baseline", "beats_baseline", "d", "sweep_seconds"}


def execute(tmp_path, name, **overrides):
    params = dict(notebooks.load_profiles()[name]["smoke"] or {}, **overrides)
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    return notebooks.read_glued(out)


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_chapter_runs_at_smoke_and_glues_its_numbers(built_book, name):
    # the book build ran every notebook at its smoke profile (tests/conftest.py)
    glued = notebooks.read_glued(notebooks.CHAPTERS / f"{name}.ipynb")
    figures_dir = notebooks.BUILD / "figures"
    assert GLUED <= set(glued), GLUED - set(glued)
    assert glued["dataset"] == "digits"
    assert glued["p_over_dn"] > 1
    assert 0.0 <= glued["recovered_fraction"] <= 1.0
    assert -1.0 <= glued["mean_ssim"] <= 1.0
    assert isinstance(glued["ssim_success"], int)
    assert 0 <= glued["ssim_success"] <= glued["n_images"]
    assert glued["sign_flips"] == 0  # ReLU recovers the sign
    if name != "resnet":  # well above d*n, RF and the two-layer network give the images away
        assert glued["recovered_fraction"] == 1.0
        assert glued["mean_ssim"] > 0.99 and glued["ssim_success"] == glued["n_images"]
        assert glued["beats_baseline"] == glued["n_images"]
    else:  # the trained network leaves a positive loss floor at the truth
        assert glued["loss_at_truth"] > 0
    assert (glued["image_side"], glued["channels"], glued["d"]) == (8, 1, 64)
    assert 0 < glued["ssim_baseline"] < 1
    for figure in ("grid", "quality", "sweep", "law"):
        for ext in ("png", "pdf", "svg", "json"):
            path = figures_dir / f"{CHAPTERS[name]}-{figure}.{ext}"
            assert path.stat().st_size > 0, path


def test_a_bad_dataset_stops_the_notebook_before_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_FIGURES", str(tmp_path / "figures"))
    with pytest.raises(pm.PapermillExecutionError) as info:
        execute(tmp_path, "images_rf", dataset="mnist")
    assert "unknown dataset 'mnist'" in str(info.value)
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize("make, error, message", [
    (lambda: ImagesRF(dataset="mnist"), ValueError, "unknown dataset 'mnist'"),
    (lambda: ImagesRF(p=0), ValueError, "p must be an integer >= 1, got 0"),
    (lambda: ImagesRF(n="6"), TypeError, "n must be an integer"),
    (lambda: ResNetImages(n=3), ValueError, "n must be even"),
    (lambda: ImagesRF(classes="frog"), TypeError, "classes must be a list"),
    (lambda: ImagesRF(dataset="digits", downsample=3), ValueError, "must divide the 8x8"),
    (lambda: ImagesRF(ratios=[2.0, 1.0]), ValueError, "ratios must be increasing"),
    (lambda: ImagesRF(ssim_level=1.5), ValueError, "ssim_level must lie in [0, 1]"),
    (lambda: ImagesRF(sample_seed=-2), ValueError, "sample_seed must be an integer >= -1"),
    (lambda: TwoLayerImages(n=5, k=2), ValueError, "n must be a multiple of k=2"),
    (lambda: TwoLayerImages(width=2.5), TypeError, "width must be an integer"),
    (lambda: ResNetImages(stem_kernel=20), ValueError, "stem_kernel=20"),
    (lambda: ResNetImages(blocks=-1), ValueError, "blocks must be an integer >= 0"),
    (lambda: ImagesRF(image_side=24), ValueError, "side must be one of 8, 16, 32, 64"),
    (lambda: ImagesRF(channels=2), ValueError, "channels must be 1 .grey. or 3"),
    (lambda: ImagesRF(dataset="digits", image_side=16), ValueError,
     "image_side=16 does not apply to dataset 'digits', whose images are 8x8x1"),
    (lambda: TwoLayerImages(dataset="cifar10", channels=1), ValueError,
     "channels=1 does not apply"),
    (lambda: ImagesRF(holdout=0), ValueError, "holdout must be an integer >= 1"),
    (lambda: ImagesRF(baseline_margin=1.5), ValueError, "baseline_margin must lie in [0, 1]"),
    (lambda: ImagesRF(dataset="photos", n=22), ValueError, "n must be at most 20 for dataset"),
    (lambda: ResNetImages(reseed_pool=0), ValueError, "reseed_pool must be an integer >= 1"),
    (lambda: ImagesRF(reseed_steps=-1), ValueError, "reseed_steps must be an integer >= 0"),
])
def test_settings_refuse_bad_parameters(make, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_sizes_follow_the_ratios():
    rf = ImagesRF(dataset="digits", n=6, downsample=1)
    assert rf.dn == 384 and rf.size_for(5.0) == 1920
    two = TwoLayerImages(n=10, k=2)
    assert two.size_for(10.0) == 3200 and two.p_of(3200) == 6400
    res = ResNetImages(n=4, stem_kernel=6, stem_padding=1)
    assert res.feature_map_shape == (5, 5) and res.p_of(102) == 2550
    assert shown(10, 4).tolist() == [0, 3, 6, 9] and shown(3, 10).tolist() == [0, 1, 2]


def test_the_reseeding_settings_reach_the_solver():
    """The chapter's re-seed period, search pool and search length make the solver's
    :class:`recon.solver.Reseed` (with cloning at its checks); period 0 turns both off."""
    solver = ResNetImages(reseed_patience=200, reseed_pool=8, reseed_steps=100).make_solver()
    assert solver.reseed == Reseed(patience=200, pool=8, steps=100, shared=False,
                                   search_work=0.0)
    # per start, as the parameter says, whatever the problem's size
    assert solver.reseed.per_start(4).pool == solver.reseed.per_start(4, 1e12).pool == 8
    assert solver.cloning is not None
    assert solver.polish == Polish(cg_work=0.0)  # the full CG steps at any size
    off = ResNetImages(reseed_patience=0, reseed_pool=8).make_solver()
    assert off.reseed is None and off.cloning is None
    assert ImagesRF().make_solver().reseed == Reseed(patience=300, shared=False,
                                                     search_work=0.0)


def test_settings_come_from_the_parameters_cell_with_its_sentinels():
    cell = {"dataset": "digits", "n": 4, "classes": [], "data_root": "", "lr": 0, "tol": 0.0,
            "train_lr": 0.0, "width": 8, "show": 2, "data": "not a parameter"}
    two = TwoLayerImages.from_parameters(cell)
    assert (two.classes, two.data_root, two.lr, two.tol, two.train_lr) == (None,) * 5
    assert two.width == 8 and two.show == 2 and two.as_dict()["n"] == 4
    rf = ImagesRF.from_parameters({"classes": ["3", "8"], "lr": 0.02, "tol": 1e-8})
    assert rf.classes == ["3", "8"] and rf.lr == 0.02 and rf.tol == 1e-8
    with pytest.raises(ValueError, match="show must be an integer >= 1"):
        ResNetImages.from_parameters({"show": 0})
    assert checks.increasing_ratios("ratios", (0.5, 2)) == [0.5, 2.0]
    with pytest.raises(TypeError, match="ratios must be a non-empty list"):
        checks.increasing_ratios("ratios", [])


def _outcome(p, mean_error, ssim, **extra):
    fields = dict(size=p, p=p, p_over_dn=p / 128, train_loss=9.2876e-9, train_steps=165,
                  loss=9.5837e-11, loss_at_truth=8.956e-6, iterations=534, seconds=0.6449,
                  compile_seconds=2.0, converged=True, X_hat=None,
                  errors=np.array([mean_error, 2 * mean_error]), sign_flips=0,
                  recovered_fraction=float(mean_error < 1e-2), mean_error=mean_error,
                  images_hat=None, psnr=np.array([100.04, 113.2]), ssim=np.asarray(ssim),
                  ssim_success=2, beats_baseline=2, history=None, wall_seconds=3.04)
    return Outcome(**{**fields, **extra})


def test_headline_names_and_rounds_the_numbers_as_the_text_quotes_them():
    ds = images.load_images("digits", 2)
    data = ChapterData(ds, *images.to_sphere(ds.X), np.array([0.61234, 0.7]))
    main = _outcome(640, 1.86123e-5, [0.99991, 1.0])
    table = sweep_table([_outcome(64, 1.0342, [0.48429, 0.5], beats_baseline=0), main],
                        data=data)
    np.testing.assert_allclose(table.mean_baseline, [0.65617, 0.65617])
    rf = ImagesRF(dataset="digits", n=2, downsample=1).headline(data, main, table)
    assert rf == {"dataset": "digits", "dataset_description": "digits (0 vs 1), 2 images of 8x8x1",
                  "image_side": 8, "channels": 1, "d": 64,
                  "n_images": 2, "dn": 128, "p_over_dn": 5.0, "recovered_fraction": 1.0,
                  "mean_error": 1.86e-05, "mean_ssim": 1.0, "mean_psnr": 106.6,
                  "ssim_success": 2, "ssim_baseline": 0.656, "beats_baseline": 2,
                  "baseline_margin": 0.5, "holdout": 20, "first_all_beat_baseline": 5.0,
                  "sweep_seconds": 6.0,
                  "sign_flips": 0, "loss": 9.6e-11, "iterations": 534,
                  "seconds": 0.6, "threshold": 0.01, "sweep_points": 2,
                  "best_ssim_below_dn": 0.492, "first_full_recovery": 5.0}
    two = TwoLayerImages(n=2).headline(data, main, table[1:])
    assert set(two) - set(rf) == {"p", "train_loss", "train_steps", "max_error",
                                  "loss_at_truth", "best_sweep_error"}
    assert (two["p"], two["train_loss"], two["train_steps"], two["max_error"],
            two["loss_at_truth"], two["best_sweep_error"]) == (640, 9.3e-09, 165, 3.72e-05,
                                                               9e-06, 1.86e-05)
    assert two["best_ssim_below_dn"] == "n/a" and two["first_full_recovery"] == 5.0


def test_image_metrics_on_known_inputs():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 8, 8, 3))
    same = metrics.image_metrics(images, images)
    np.testing.assert_allclose(same.ssim, 1.0)
    assert np.all(np.isinf(same.psnr) | (same.psnr > 100))

    noisy = np.clip(images + 0.1 * rng.normal(size=images.shape), 0, 1)
    worse = metrics.image_metrics(images, noisy)
    assert np.all(worse.ssim < 0.99) and np.all(np.isfinite(worse.psnr))
    assert np.all((worse.psnr > 15) & (worse.psnr < 25))  # noise std 0.1: about 20 dB
    noisier = metrics.image_metrics(images, np.clip(images + 0.3 * rng.normal(size=images.shape),
                                                    0, 1))
    assert np.all(noisier.ssim < worse.ssim) and np.all(noisier.psnr < worse.psnr)

    grey = metrics.image_metrics(images[..., 0], images[..., 0])  # (m, H, W) is accepted
    np.testing.assert_allclose(grey.ssim, 1.0)
    small = metrics.image_metrics(images[:, :4, :4], noisy[:, :4, :4])  # window shrinks to 3
    assert small.ssim.shape == (3,)
    with pytest.raises(ValueError, match="same shape"):
        metrics.image_metrics(images, images[:2])
    with pytest.raises(ValueError, match="at least 3x3"):
        metrics.image_metrics(images[:, :2, :2], images[:, :2, :2])


def test_ssim_success_counts_images_above_the_level():
    assert metrics.ssim_success([0.1, 0.4, 0.41, 0.9]) == 2
    assert metrics.ssim_success([0.1, 0.4, 0.41, 0.9], level=0.05) == 4
    with pytest.raises(ValueError, match="level must be > 0"):
        metrics.ssim_success([0.5], level=0)


def test_image_grid_puts_originals_above_reconstructions():
    rng = np.random.default_rng(1)
    originals, recon = rng.uniform(size=(2, 5, 8, 8, 1))
    fig = plots.plot_image_grid(originals, recon, titles=list("abcde"), columns=3)
    axes = np.array(fig.axes).reshape(4, 3)  # two blocks of (originals, reconstructions)
    np.testing.assert_allclose(axes[0, 0].images[0].get_array(), originals[0, ..., 0])
    np.testing.assert_allclose(axes[1, 0].images[0].get_array(), recon[0, ..., 0])
    np.testing.assert_allclose(axes[3, 1].images[0].get_array(), recon[4, ..., 0])
    assert axes[0, 2].get_title() == "c" and not axes[2, 2].images
    with pytest.raises(ValueError, match="matched image stacks"):
        plots.plot_image_grid(originals, recon[:4])


def test_law_grid_puts_the_training_images_above_one_row_per_model():
    rng = np.random.default_rng(2)
    originals = rng.uniform(size=(3, 8, 8, 3))
    rows = [rng.uniform(size=(3, 8, 8, 3)) for _ in range(2)]
    fig = plots.plot_law_grid(originals, rows, ["p/(dn) = 0.5", "p/(dn) = 5"], list("abc"))
    axes = np.array(fig.axes).reshape(3, 3)
    np.testing.assert_allclose(axes[0, 1].images[0].get_array(), originals[1])
    np.testing.assert_allclose(axes[2, 2].images[0].get_array(), rows[1][2])
    assert axes[2, 0].get_ylabel() == "p/(dn) = 5" and axes[0, 2].get_title() == "c"
    with pytest.raises(ValueError, match="one entry per row"):
        plots.plot_law_grid(originals, rows, ["only one"])
    with pytest.raises(ValueError, match="matched image stacks"):
        plots.plot_law_grid(originals, [rows[0][:2]], ["x"])


def test_sweep_figure_draws_the_baseline():
    ds = images.load_images("digits", 2)
    data = ChapterData(ds, *images.to_sphere(ds.X), np.array([0.3, 0.5]))
    table = sweep_table([_outcome(64, 1.0, [0.2, 0.3], beats_baseline=0),
                         _outcome(640, 1e-5, [1.0, 1.0])], data=data)
    fig = plots.plot_error_against_p(table, 128, 1e-2, 0.4, main_p=640)
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert "without the weights (0.40)" in labels


def test_device_check_runs_at_the_tiny_size(tmp_path):
    import json
    import runpy

    check = runpy.run_path(str(ROOT / "benchmarks" / "image_device_check.py"))
    out = tmp_path / "check.json"
    assert check["main"](["--size", "tiny", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dataset"] == "photos" and report["size"] == "tiny"
    for name in ("images_rf", "two_layer"):
        glued = report[name]["glued"]
        assert {"image_side", "channels", "dataset", "recovered_fraction", "mean_ssim",
                "ssim_baseline", "beats_baseline", "p_over_dn"} <= set(glued)
        assert glued["image_side"] == 8 and glued["channels"] == 3 and glued["d"] == 192
        assert len(report[name]["models"]) == 2
        assert all(m["wall_seconds"] > 0 for m in report[name]["models"])
    assert report["images_rf"]["models"][-1]["p"] == 1920
    with pytest.raises(ValueError, match="size must be one of"):
        check["check"]("huge")


def test_intro_shows_the_figure_the_rf_chapter_saves():
    import json

    intro = (ROOT / "book" / "intro.md").read_text()
    source = json.loads((ROOT / "notebooks" / "images_rf.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code")
    assert 'chapter.law_figure("images-rf-law"' in code
    assert 'src="../figures/images-rf-law.png"' in intro
