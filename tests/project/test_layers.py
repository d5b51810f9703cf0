"""The packages' layering, read from their source: ``tagging`` and ``recsys`` never import each other,
``fusion`` joins them, ``annotation`` sits above all three, no library package imports the toy catalog
(a dev and demo package the wheel leaves out), a script or a benchmark, and nothing imports a ``__main__``
(a command's code lives in its package's ``cli``)."""

import ast
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ("coldtag", "tagging", "recsys", "fusion", "annotation")
NOT_LIBRARY = ("toycatalog", "scripts", "benchmarks", "tests", "train")
# What each library package may import of the others.
ALLOWED = {
    "coldtag": set(),
    "tagging": {"coldtag"},
    "recsys": {"coldtag"},
    "fusion": {"coldtag", "tagging", "recsys"},
    "annotation": {"coldtag", "tagging", "recsys", "fusion"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each top-level package of this repository imported anywhere in ``package`` (imports inside
    functions included), with the files that import it."""
    ours = {*LIBRARY, *NOT_LIBRARY}
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ours and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", LIBRARY)
def test_a_library_package_imports_only_the_layers_below_it(package):
    imported = imported_packages(package)
    forbidden = {name: files for name, files in imported.items() if name not in ALLOWED[package]}
    assert not forbidden, f"{package} imports {forbidden}"


def test_the_rule_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """The reader of imports finds what a lazy import hides, so the rule above can fail."""
    (tmp_path / "tagging").mkdir()
    (tmp_path / "tagging" / "x.py").write_text("def f():\n    from fusion.model import LateFusionRegressor\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert imported_packages("tagging") == {"fusion": {"tagging/x.py"}}


def test_the_wheel_holds_the_library_and_not_the_toy_catalog():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packaged = {name.split(".")[0] for name in find_packages(ROOT, include=include)}
    assert packaged == set(LIBRARY)


def main_imports(folder: Path) -> list[str]:
    """``file: module`` for every import of a ``__main__`` module under ``folder`` (inside functions too)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module or ''}.{alias.name}" for alias in node.names] + [node.module or ""]
            else:
                continue
            found += [f"{path.relative_to(folder)}: {name}" for name in names if name.split(".")[-1] == "__main__"]
    return found


def test_nothing_imports_a_main_module():
    assert main_imports(ROOT) == []


def test_the_main_rule_sees_each_form_of_import(tmp_path):
    (tmp_path / "a.py").write_text("import fusion.__main__\n")
    (tmp_path / "b.py").write_text("def f():\n    from recsys.__main__ import main\n")
    (tmp_path / "c.py").write_text("from annotation import __main__\n")
    (tmp_path / "d.py").write_text("from fusion.cli import main\n")
    assert main_imports(tmp_path) == ["a.py: fusion.__main__", "b.py: recsys.__main__", "c.py: annotation.__main__"]


def test_every_main_module_is_a_shim_of_its_cli():
    """A package's ``__main__`` only runs its ``cli``: the commands' code is importable without running."""
    mains = sorted(path for package in ("coldtag", *LIBRARY[1:], "toycatalog")
                   for path in (ROOT / package).rglob("__main__.py"))
    assert mains, "no __main__ found"
    for path in mains:
        body = [node for node in ast.parse(path.read_text()).body
                if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]  # the docstring
        assert len(body) == 2 and isinstance(body[0], ast.ImportFrom) and body[0].module.endswith(".cli"), path
