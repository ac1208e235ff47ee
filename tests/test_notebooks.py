"""The notebooks through papermill, the command line, and the built book."""

import re
import subprocess
import sys

import papermill as pm
import pytest

from conftest import ROOT
from recon.book import notebooks
from recon.chapters.synthetic import SyntheticRF

NB = ROOT / "notebooks" / "synthetic_random_features.ipynb"
GLUED = {"train_mse", "recovered_fraction", "mean_error", "iterations", "seconds"}


def execute(tmp_path, **params):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NB), str(out), parameters=params, kernel_name="python3",
                        progress_bar=False, cwd=str(tmp_path))
    return notebooks.read_glued(out)


def test_every_notebook_has_one_parameters_cell_and_no_outputs():
    import nbformat

    for name in notebooks.load_profiles():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
        assert nb.metadata.kernelspec.name == "python3"


def test_papermill_run_recovers_every_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_FIGURES", str(tmp_path / "figures"))
    glued = execute(tmp_path, n=8, d=20, p=1600, seed=1, compare_steps=100)
    assert GLUED <= set(glued)
    assert glued["recovered_fraction"] == 1.0
    assert glued["train_mse"] < 1e-8
    assert glued["mean_error"] < 1e-2
    for name in ("rf-synthetic-history", "rf-synthetic-per-sample", "rf-synthetic-samples"):
        for ext in ("png", "pdf", "svg", "json"):
            assert (tmp_path / "figures" / f"{name}.{ext}").stat().st_size > 0


@pytest.mark.parametrize("params, message", [
    ({"p": 0}, "p must be an integer >= 1, got 0"),
    ({"n": "abc"}, "n must be an integer >= 1, got 'abc'"),
    ({"activation": "sigmoid"}, "unknown activation 'sigmoid'"),
])
def test_bad_parameters_stop_the_notebook_with_a_clear_message(tmp_path, params, message):
    with pytest.raises(pm.PapermillExecutionError) as info:
        execute(tmp_path, **params)
    assert message in str(info.value)
    assert "solve" not in info.value.traceback[-1] if info.value.traceback else True


def test_settings_refuse_wrong_types_directly():
    with pytest.raises(TypeError, match="d must be an integer"):
        SyntheticRF(n=2, d=3.5, p=10)
    with pytest.raises(ValueError, match="unknown solver 'sgd'"):
        SyntheticRF(n=2, d=3, p=10, solver="sgd")


def test_settings_from_the_parameters_cell_map_zero_to_the_presets_value():
    s = SyntheticRF.from_parameters({"n": 2, "d": 3, "p": 10, "lr": 0.0, "tol": 0,
                                     "compare_steps": 0, "threshold": 1e-2})
    assert s.lr is None and s.tol is None and s.compare_steps == 0
    assert s.make_solver().tol == 1e-10  # the default preset's
    with pytest.raises(ValueError, match="compare_steps must be an integer >= 0"):
        SyntheticRF(n=2, d=3, p=10, compare_steps=-1)


def _parameters_cell(name: str) -> dict:
    """``{parameter: (annotation, default)}`` of a notebook's parameters cell."""
    import ast

    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return {node.target.id: (ast.unparse(node.annotation), ast.literal_eval(node.value))
            for node in ast.parse(cell.source).body}


def _settings_class(name: str):
    from recon.chapters import (defences, images_rf, law, leakage, resnet, synthetic, theorems,
                                two_layer)

    return {"synthetic_random_features": synthetic.SyntheticRF, "law": law.LawSweep,
            "theorems": theorems.TheoremChecks, "images_rf": images_rf.ImagesRF,
            "two_layer": two_layer.TwoLayerImages, "resnet": resnet.ResNetImages,
            "leakage": leakage.Leakage, "defences": defences.Defences}[name]


#: wrong values by the parameter's annotation: a wrong type, a fraction for a count, a
#: negative number (sample_seed accepts -1, no parameter accepts -7)
_BAD_VALUES = {"int": ["abc", 2.5, -7], "float": ["abc", -1.0], "str": [5], "list": [5]}
_BAD_CASES = [(name, parameter, bad)
              for name in notebooks.load_profiles()
              for parameter, (kind, _) in _parameters_cell(name).items()
              for bad in _BAD_VALUES[kind]]


@pytest.mark.parametrize("name, parameter, bad", _BAD_CASES,
                         ids=[f"{n}-{p}={b!r}" for n, p, b in _BAD_CASES])
def test_every_parameter_is_checked_by_the_settings_naming_it(name, parameter, bad):
    """Each parameter of each notebook, given a wrong value, is refused by the chapter's
    settings (the settings cell, before any computation) with the parameter's own name."""
    cell = {k: v for k, (_, v) in _parameters_cell(name).items()}
    settings = _settings_class(name)
    settings.from_parameters(cell)  # the defaults pass
    with pytest.raises((TypeError, ValueError)) as info:
        settings.from_parameters(cell | {parameter: bad})
    assert parameter in str(info.value)


def test_every_parameter_of_a_notebook_is_a_field_of_its_settings():
    import dataclasses

    for name in notebooks.load_profiles():
        fields = {f.name for f in dataclasses.fields(_settings_class(name))}
        assert set(_parameters_cell(name)) <= fields, name


@pytest.mark.parametrize("args, message", [
    (["run", "--profile", "fast"], "unknown profile 'fast'"),
    (["run", "no_such_notebook", "--profile", "smoke"], "unknown notebook 'no_such_notebook'"),
])
def test_cli_refuses_unknown_names(args, message):
    result = subprocess.run([sys.executable, "-m", "recon", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr


def test_book_builds_with_the_chapter_and_its_figures(built_book):
    assert (built_book / "index.html").is_file()
    page = built_book / "book" / "chapters" / "synthetic_random_features.html"
    html = page.read_text()
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert len(images) >= 3, "the chapter shows its figures"
    for src in images:
        assert (page.parent / src).resolve().stat().st_size > 0
    glued = notebooks.read_glued(notebooks.CHAPTERS / "synthetic_random_features.ipynb")
    assert GLUED <= set(glued)
    assert glued["recovered_fraction"] == 1.0
    text = re.sub(r"<[^>]+>", "", html)
    assert f"in {glued['iterations']}" in text.replace("\n", " ")  # glued text, not typed
    assert (built_book / "figures" / "rf-synthetic-history.svg").is_file()


def test_cli_parameters_go_on_top_of_the_profile_and_unknown_names_are_refused():
    from recon.book import cli

    assert cli.parameter_overrides(["synthetic_random_features"],
                                   [["seed", "3"], ["tol", "1e-3"], ["solver", "reference"]],
                                   "lr: 0.5") == {"lr": 0.5, "seed": 3, "tol": 1e-3,
                                                  "solver": "reference"}
    result = subprocess.run([sys.executable, "-m", "recon", "run", "synthetic_random_features",
                             "--profile", "smoke", "-p", "max_step", "300"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "has no parameter(s) max_step; accepted: " in result.stderr
    assert "max_steps" in result.stderr


def test_a_failed_book_build_names_its_errors_and_leaves_no_site(tmp_path, monkeypatch):
    from recon.book import cli

    fake = tmp_path / "jupyter-book"
    fake.write_text("#!/bin/sh\nmkdir -p \"$2/_build/html\"\ntouch \"$2/_build/html/index.html\"\n"
                    "echo 'reading sources... [100%] intro'\n"
                    "echo 'book/intro.md:3: WARNING: undefined label: fig-nowhere'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cli, "_jupyter_book", lambda: str(fake))
    monkeypatch.setattr(cli, "BUILD", tmp_path / "_build")
    monkeypatch.setattr(cli.notebooks, "SITE", tmp_path)
    with pytest.raises(SystemExit, match="(?s)build failed.*undefined label: fig-nowhere") as exc:
        cli.build_site()
    assert "reading sources" not in str(exc.value)
    assert not (tmp_path / "_build" / "html").exists()
