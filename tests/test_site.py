"""The book as a site: its table of contents, configuration, status page, buttons, downloads,
figures, citation metadata and the Pages workflow. The tests that read the built site share
the one smoke build of the session (the ``built_book`` fixture)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

import conftest
from conftest import ROOT
from recon.book import figures, notebooks, status

CHAPTERS = notebooks.CHAPTERS_IN_SITE  # book/chapters
PARTS = ["Introduction", "The law", "Theorems", "Beyond random features",
         "Privacy: leakage and defences", "Reproducing"]
REPOSITORY = "https://github.com/recon-companion/data-reconstruction-law"


def tool(name: str) -> str:
    """A command-line tool of the dev extra: next to this Python, else on PATH. Missing, it
    fails the test in CI (CI=true) and skips it elsewhere."""
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: pip install -e '.[dev]'"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def parameter_names(name: str) -> list[str]:
    """The names the parameters cell of ``notebooks/NAME.ipynb`` assigns."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]+)?=", cell.source, flags=re.M)


def page(built_book: Path, docname: str) -> str:
    return (built_book / f"{docname}.html").read_text()


# --- table of contents and configuration ------------------------------------------------------

def test_toc_has_parts_with_captions_in_the_book_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    captions = [part.get("caption") for part in toc["parts"]]
    assert all(captions), "every part has a caption"
    assert captions[0] == "Introduction" and captions[-1] == "Reproducing"
    assert [c for c in PARTS if c in captions] == captions, f"parts out of order: {captions}"
    for part in toc["parts"]:
        assert part.get("chapters"), f"part {part['caption']!r} has no chapters"
        has_notebooks = any(c["file"].startswith(CHAPTERS + "/") and c["file"] !=
                            f"{CHAPTERS}/status" for c in part["chapters"])
        if has_notebooks:
            assert part.get("numbered") is True, f"chapters of {part['caption']!r} are numbered"
    assert f"{CHAPTERS}/status" in status.toc_files()


def test_every_notebook_is_a_chapter_and_every_chapter_a_notebook():
    in_toc = status.toc_notebooks()
    profiles = notebooks.load_profiles()
    assert sorted(set(in_toc)) == sorted(in_toc), "a chapter is listed twice"
    assert set(in_toc) == set(profiles), (
        f"notebooks in profiles.yml but not in _toc.yml: {sorted(set(profiles) - set(in_toc))}; "
        f"in _toc.yml but not in profiles.yml: {sorted(set(in_toc) - set(profiles))}")
    for name in in_toc:
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), name


def test_config_turns_on_the_book_features():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    extensions = config["sphinx"]["extra_extensions"]
    for ext in ("sphinx_proof", "sphinx_exercise", "sphinx-mathjax-offline", "recon.book.sphinx"):
        assert ext in extensions
    assert config["repository"]["url"] == REPOSITORY
    assert config["repository"]["branch"] == "main"
    html = config["html"]
    assert html["use_repository_button"] and html["use_issues_button"]
    assert config["sphinx"]["config"]["html_theme_options"]["use_download_button"] is True
    launch = config["launch_buttons"]
    assert launch["colab_url"] and launch["binderhub_url"]
    assert launch["notebook_interface"] in ("classic", "jupyterlab")
    assert "bibtex_bibfiles" in config and config["sphinx"]["config"]["numfig"] is True


def test_papermill_help_lists_every_parameter_and_profiles_use_only_parameters():
    for name, sets in notebooks.load_profiles().items():
        names = parameter_names(name)
        assert names, f"{name}: no parameters found"
        result = subprocess.run([str(Path(sys.executable).parent / "papermill"),
                                 "--help-notebook", str(ROOT / "notebooks" / f"{name}.ipynb")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        for param in names:
            assert re.search(rf"^\s+{param}:", result.stdout, flags=re.M), (name, param)
        for profile, params in sets.items():
            unknown = set(params or {}) - set(names)
            assert not unknown, f"{name}/{profile} sets unknown parameters {sorted(unknown)}"


# --- citation and workflow ------------------------------------------------------------------

def test_citation_cff_is_valid_and_in_step_with_the_package():
    import recon

    cff = ROOT / "CITATION.cff"
    result = subprocess.run([tool("cffconvert"), "--validate", "-i", str(cff)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    meta = yaml.safe_load(cff.read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, flags=re.M).group(1)
    assert str(meta["version"]) == version == recon.__version__
    assert meta["repository-code"] == REPOSITORY
    assert "2509.22214" in json.dumps(meta["preferred-citation"])


def test_pages_workflow_is_valid_and_builds_then_deploys():
    workflow = ROOT / ".github" / "workflows" / "book.yml"
    result = subprocess.run([tool("actionlint"), "-no-color", str(workflow)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    wf = yaml.safe_load(workflow.read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as a boolean
    assert "main" in triggers["push"]["branches"]
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    runs = " ".join(step.get("run", "") for step in build["steps"])
    assert "make book" in runs
    uploads = [s for s in build["steps"] if s.get("uses", "").startswith(
        "actions/upload-pages-artifact@")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])


# --- helpers: figure links and the status page ----------------------------------------------

def test_figure_links_point_at_every_file_of_a_saved_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("RECON_FIGURES", str(tmp_path))
    monkeypatch.delenv("RECON_PROFILE", raising=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    figures.save_figure(fig, "demo-figure", data={"y": [1, 0]})
    plt.close(fig)
    local = figures.figure_links("demo-figure")
    assert f'href="{tmp_path.as_posix()}/demo-figure.pdf"' in local._repr_html_()
    monkeypatch.setenv("RECON_PROFILE", "smoke")  # as when `python -m recon run` runs it
    links = figures.figure_links("demo-figure")
    html, markdown = links._repr_html_(), links._repr_markdown_()
    for ext in ("png", "pdf", "svg", "json"):
        assert f'href="../../figures/demo-figure.{ext}"' in html
        assert f"(../../figures/demo-figure.{ext})" in markdown
    assert str(links) == markdown
    with pytest.raises(FileNotFoundError, match="call figures.save_figure"):
        figures.figure_links("never-saved")
    with pytest.raises(ValueError, match="figure name"):
        figures.figure_links("no spaces")


def test_status_page_shows_failures_and_unrun_notebooks():
    records = [{"notebook": "a", "profile": "paper", "parameters": {"sizes": [[1, 2]], "s": "x|y"},
                "seconds": 12.345, "success": False, "error": "ValueError: p must be >= 1",
                "finished": "2026-01-02T03:04:05+00:00"}]
    env = {"git_revision": "0123456789abcdef", "git_dirty": True, "devices": ["cuda:0"],
           "python": "3.11", "platform": "Linux", "recon": "0.1.0", "created": "now",
           "packages": {"jax": "0.5"}}
    text = status.render_status(records, env, ["a", "b"], ["a"], REPOSITORY)
    assert "| {doc}`a` | `paper` | `sizes=[[1, 2]]`, `s=x\\|y` | 12.3 s | **failed** |" in text
    assert "| `b` (not in the book) | | | | not run | |" in text
    assert "ValueError: p must be >= 1" in text
    assert f"({REPOSITORY}/commit/0123456789abcdef)" in text and "uncommitted" in text
    assert "`cuda:0`" in text and "| jax | 0.5 |" in text


def test_toc_helpers_read_any_number_of_parts(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(yaml.safe_dump({"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "A", "chapters": [{"file": f"{CHAPTERS}/one", "sections": [
            {"file": f"{CHAPTERS}/two"}]}]},
        {"caption": "B", "chapters": [{"file": "book/x"}, {"file": f"{CHAPTERS}/status"}]}]}))
    assert status.toc_files(toc) == ["book/intro", f"{CHAPTERS}/one", f"{CHAPTERS}/two",
                                     "book/x", f"{CHAPTERS}/status"]
    assert status.toc_notebooks(toc) == ["one", "two"]
    assert "book/x" in status.missing_toc_files(toc)


# --- the built site ---------------------------------------------------------------------------

def test_status_page_records_each_notebook_and_the_environment(built_book):
    runs = json.loads((notebooks.BUILD / "runs.json").read_text())
    by_name = {r["notebook"]: r for r in runs}
    text = re.sub(r"<[^>]+>", "", page(built_book, f"{CHAPTERS}/status"))
    env = figures.provenance()
    for name in notebooks.load_profiles():
        record = by_name[name]
        assert record["success"] and record["profile"] == "smoke" and record["seconds"] > 0
        assert record["parameters"] == notebooks.load_profiles()[name]["smoke"]
    for name in status.toc_notebooks():
        title = nbformat.read(notebooks.CHAPTERS / f"{name}.ipynb", as_version=4).cells[0]
        assert title.source.splitlines()[0].lstrip("# ").strip() in text  # linked by its title
    assert "smoke" in text and "ok" in text and "failed" not in text
    if env["git_revision"]:
        assert env["git_revision"][:12] in text
    for device in env["devices"]:
        assert device in text
    for package in ("jax", "flax", "optax", "jupyter-book", "papermill"):
        assert re.search(rf"{re.escape(package)}\s+\d", text), package


def test_chapters_launch_their_source_notebook_and_download_the_executed_one(built_book):
    for name in status.toc_notebooks():
        html = page(built_book, f"{CHAPTERS}/{name}")
        source = f"notebooks/{name}.ipynb"
        assert (ROOT / source).is_file()
        assert f'href="https://colab.research.google.com/github/recon-companion/' \
               f'data-reconstruction-law/blob/main/{source}"' in html
        assert re.search(r'href="https://mybinder\.org/v2/gh/recon-companion/data-reconstruction-'
                         rf'law/main\?urlpath=(lab/)?tree/{re.escape(source)}"', html)
        assert f"{CHAPTERS}/{name}.ipynb" not in re.sub(r"_sources/[^\"]+", "", html)
        assert f'href="{REPOSITORY}"' in html and f'href="{REPOSITORY}/issues/new' in html
        (download,) = re.findall(r'href="([^"]+\.ipynb)"[^>]*btn-download', html)
        executed = (built_book / CHAPTERS / download).resolve()
        nb = nbformat.read(executed, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.papermill.parameters == notebooks.load_profiles()[name]["smoke"]
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_every_figure_file_is_in_the_site(built_book):
    sidecars = sorted((built_book / "figures").glob("*.json"))
    assert sidecars
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        assert meta["name"] == sidecar.stem and "provenance" in meta
        for ext in figures.FORMATS:
            assert sidecar.with_suffix(f".{ext}").stat().st_size > 0, sidecar.stem


def test_every_chapter_links_each_figure_it_saves_to_its_files(built_book):
    for name in status.toc_notebooks():
        nb = nbformat.read(notebooks.CHAPTERS / f"{name}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        saved = re.findall(r"save_figure\(\s*\w+\s*,\s*[\"']([A-Za-z0-9_-]+)[\"']", code)
        html = page(built_book, f"{CHAPTERS}/{name}")
        for figure in saved:
            for ext in (*figures.FORMATS, "json"):
                assert f'href="../../figures/{figure}.{ext}"' in html, (name, figure, ext)


def test_theorems_exercises_equations_and_figure_references_render(built_book):
    intro = page(built_book, "book/intro")
    assert '<div class="proof theorem admonition" id="thm-law-informal">' in intro
    assert 'id="equation-eq-projection-loss"' in intro
    assert re.search(r'href="chapters/\w+\.html#fig-[\w-]+"><span class="std std-numref">Fig\. '
                     r"\d+\.\d+", intro), "a figure is cited by its number"
    reproducing = page(built_book, "book/reproducing")
    assert '<div class="exercise admonition" id="ex-rerun-below-threshold">' in reproducing
    assert '<div class="solution dropdown admonition"' in reproducing
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "cdn.jsdelivr.net/npm/mathjax" not in intro, "MathJax is served from the site"


def test_intro_opens_with_the_law_in_pictures(built_book):
    intro = page(built_book, "book/intro")
    assert 'src="../figures/images-rf-law.png"' in intro
    assert intro.index("images-rf-law.png") < intro.index('id="the-claim"')
    assert (built_book / "figures" / "images-rf-law.png").stat().st_size > 0


def test_every_chapter_glues_its_claims_and_shows_each_failing_one(built_book):
    """Each chapter glues ``claims`` as records; every claim its run does not support is
    named in a warning box on its page (none when all hold), and the status page counts
    them. At the smoke sizes some claims fail (the law's grid has no size with n > 2), so
    the warnings are exercised."""
    failing_anywhere = []
    status_page = page(built_book, f"{CHAPTERS}/status")
    for name in notebooks.load_profiles():
        glued = notebooks.read_glued(notebooks.CHAPTERS / f"{name}.ipynb")["claims"]
        assert glued and all(set(r) == {"name", "holds", "values"} for r in glued), name
        failing = sorted(r["name"] for r in glued if not r["holds"])
        html = page(built_book, f"{CHAPTERS}/{name}")
        boxes = re.findall(r'recon-claim-failed">(.*?)</div>', html, flags=re.S)
        shown = sorted(set(re.findall(r"<code>(\w+)</code>", "".join(boxes))))
        assert shown == failing, (name, shown, failing)
        supported = len(glued) - len(failing)
        assert f"{supported} / {len(glued)}" in status_page, name
        failing_anywhere += failing
    assert failing_anywhere, "no claim failed at smoke: the warning path went untested"


def test_the_tests_leave_the_users_own_build_untouched(built_book):
    """The smoke build lives in the tests' own site: a site built by ``make book`` before
    ``make test`` (its HTML, executed chapters and figures) is exactly as it was."""
    assert notebooks.ROOT not in built_book.resolve().parents
    assert conftest._snapshot(*conftest.USER_BUILD) == conftest.USER_BUILD_BEFORE
