"""The house rules of the layout: three floors, small functions, thin notebooks."""

import ast
import json

import pytest

from conftest import ROOT

RECON = ROOT / "recon"
SCIENCE = [p for p in RECON.rglob("*.py")
           if p.parent == RECON and p.name != "__main__.py"] + list((RECON / "images").glob("*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("path", SCIENCE, ids=lambda p: p.relative_to(RECON).as_posix())
def test_the_science_never_imports_the_chapters_or_the_book(path):
    upstairs = [m for m in imported_modules(path)
                if m.startswith(("recon.chapters", "recon.book"))]
    assert not upstairs, f"{path.name} imports {upstairs}"


def test_the_book_floor_is_imported_only_by_the_book_and_the_chapters():
    for path in RECON.rglob("*.py"):
        floor = path.relative_to(RECON).parts[0]
        if floor in ("book", "chapters", "__main__.py"):
            continue
        assert not [m for m in imported_modules(path) if m.startswith("recon.book")], path


def test_every_library_function_fits_on_a_screen():
    long = []
    for path in RECON.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(RECON)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_thin_with_a_sentence_before_each_code_cell(path):
    """Code cells average under 8 lines, and each one a reader sees follows a markdown cell
    (the hidden cells: parameters, the install cell, a figure's download links)."""
    cells = json.loads(path.read_text())["cells"]
    hidden = {"parameters", "remove-cell", "remove-input"}
    shown = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and not hidden & set(c["metadata"].get("tags", []))]
    lengths = [len("".join(cells[i]["source"]).strip().splitlines()) for i in shown]
    assert sum(lengths) / len(lengths) < 8, lengths
    unexplained = [i for i in shown if cells[i - 1]["cell_type"] != "markdown"]
    assert not unexplained, f"code cells {unexplained} follow no sentence"
