"""The module layout the README's contributors section draws, enforced."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import orchestrator

REPO = Path(__file__).resolve().parent.parent
# The package under test: the checkout's, or the installed wheel's in `nox -s release_check`.
PACKAGE = Path(orchestrator.__file__).parent


def _layers() -> dict[str, int]:
    """``{module: layer}`` from the README's table (``| 3 model | `config.py` | ...``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## For contributors", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for row in re.finditer(r"^\| (\d+) [a-z ]+ \| (.+?) \| .+\|$", section, re.MULTILINE):
        for name in re.findall(r"`([a-z_]+)\.py`", row.group(2)):
            layers[name] = int(row.group(1))
    return layers


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (``from .x import``, ``from . import``).

    ``from . import name`` imports a module only when ``name`` is one; otherwise it
    reads a name of ``__init__`` (``from . import __version__``), so it imports that.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
                continue
            for alias in node.names:
                is_module = (PACKAGE / f"{alias.name}.py").is_file()
                found.add(alias.name if is_module else "__init__")
    return found


def test_every_module_is_in_the_table() -> None:
    layers = _layers()
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - layers.keys() == set(), "add these modules to README's table"
    assert layers.keys() - modules == set(), "README's table names modules that are gone"


def test_modules_import_only_lower_layers() -> None:
    layers = _layers()
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        mine = layers[path.stem]
        for other in sorted(_imports(path) & layers.keys()):
            if layers[other] >= mine:
                wrong.append(f"{path.stem} ({mine}) imports {other} ({layers[other]})")
    assert wrong == []


@pytest.mark.parametrize("path", ["_boot/sitecustomize.py", "guardian.py"])
def test_files_run_as_programs_import_only_the_standard_library(path: str) -> None:
    """The trace bootstrap runs inside every traced script, on whatever Python and
    packages it has; the guardian runs as a script of its own (``python -I -S``)."""
    tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path} must not import orchestrator"
            imported.add((node.module or "").split(".")[0])
    assert imported and imported <= sys.stdlib_module_names | {"__future__"}, imported
