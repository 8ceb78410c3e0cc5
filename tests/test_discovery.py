"""Tests for orchestrator.discovery: real trees built in tmp_path, no mocks."""

from __future__ import annotations

import fnmatch
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import DiscoveryError, discover_scripts
from orchestrator.discovery import SKIP_DIRS, SKIP_PATTERNS, scan_scripts

MakeTree = Callable[[Iterable[str]], Path]


def build_tree(root: Path, paths: Iterable[str]) -> Path:
    """Create an empty file at each POSIX relative path under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in paths:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    return root


def rel_paths(found: Iterable[Path], root: Path) -> list[str]:
    """The POSIX paths of ``found`` relative to ``root``, in the order given."""
    base = root.resolve()
    return [p.relative_to(base).as_posix() for p in found]


@pytest.fixture
def make_tree(tmp_path: Path) -> MakeTree:
    def make(paths: Iterable[str]) -> Path:
        return build_tree(tmp_path / "scripts", paths)

    return make


def test_finds_script_in_scripts_dir_itself(make_tree: MakeTree) -> None:
    root = make_tree(["x.py"])
    assert rel_paths(discover_scripts(root), root) == ["x.py"]


def test_default_max_depth_is_two(make_tree: MakeTree) -> None:
    root = make_tree(["x.py", "a/x.py", "a/b/x.py", "a/b/c/x.py", "a/b/c/d/x.py"])
    assert rel_paths(discover_scripts(root), root) == ["a/b/x.py", "a/x.py", "x.py"]


@pytest.mark.parametrize(
    ("max_depth", "expected"),
    [
        (0, ["x.py"]),
        (1, ["a/x.py", "x.py"]),
        (3, ["a/b/c/x.py", "a/b/x.py", "a/x.py", "x.py"]),
    ],
)
def test_max_depth_bounds_the_walk(
    make_tree: MakeTree, max_depth: int, expected: list[str]
) -> None:
    root = make_tree(["x.py", "a/x.py", "a/b/x.py", "a/b/c/x.py", "a/b/c/d/x.py"])
    assert rel_paths(discover_scripts(root, max_depth=max_depth), root) == expected


PRUNED = [
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    "node_modules",
    "build",
    "dist",
    ".pytest_cache",
    ".mypy_cache",
    ".tox",
    ".nox",
    ".orchestrator",
    "foo.egg-info",
]


@pytest.mark.parametrize("name", PRUNED)
def test_skip_dirs_are_pruned(make_tree: MakeTree, name: str) -> None:
    root = make_tree([f"{name}/x.py", f"a/{name}/x.py", "a/kept.py", "kept.py"])
    assert rel_paths(discover_scripts(root), root) == ["a/kept.py", "kept.py"]


def test_a_folder_named_reports_is_a_script_folder(make_tree: MakeTree) -> None:
    # Only the project's own reports folder is pruned, by path, never by name.
    root = make_tree(["reports/generate_coverage_report.py", "a/reports/x.py"])
    assert rel_paths(discover_scripts(root), root) == [
        "a/reports/x.py",
        "reports/generate_coverage_report.py",
    ]


def test_prune_takes_folders_by_path(make_tree: MakeTree) -> None:
    root = make_tree(["out/run.py", "a/out/kept.py", "kept.py"])
    found = discover_scripts(root, prune=[root / "out"])
    assert rel_paths(found, root) == ["a/out/kept.py", "kept.py"]


def test_scan_counts_what_rules_leave_out(make_tree: MakeTree, tmp_path: Path) -> None:
    root = make_tree(
        ["x.py", "a/__init__.py", "a/b/y.py", "a/b/c/deep.py", "a/b/c/d/deeper.py", ".venv/v.py"]
    )
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "z.py").touch()
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    scan = scan_scripts(root, count_left_out=True)
    assert rel_paths(scan.scripts, root) == ["a/b/y.py", "x.py"]
    assert scan.left_out == {
        "__init__.py (not a script)": 1,
        "files below --max-depth 2": 2,
        "symlinked folder(s) not followed": 1,
    }
    line = scan.left_out_line()
    assert line is not None and "\n" not in line
    assert line.startswith("not listed: 1 __init__.py")
    # Without counting, the same scripts and no extra walking.
    assert scan_scripts(root).scripts == scan.scripts
    assert scan_scripts(root).left_out == {}


def test_skipped_dir_name_is_only_pruned_as_a_directory(make_tree: MakeTree) -> None:
    # A file named like a skipped directory is still a script.
    root = make_tree(["build.py", "venv.py"])
    assert rel_paths(discover_scripts(root), root) == ["build.py", "venv.py"]


@pytest.mark.parametrize("name", sorted(SKIP_PATTERNS))
def test_skip_patterns_are_not_scripts(make_tree: MakeTree, name: str) -> None:
    root = make_tree([name, f"a/{name}", "a/kept.py"])
    assert rel_paths(discover_scripts(root), root) == ["a/kept.py"]


def test_init_and_conftest_are_in_skip_patterns() -> None:
    assert {"__init__.py", "conftest.py"} <= SKIP_PATTERNS


def test_only_py_files_are_scripts(make_tree: MakeTree) -> None:
    root = make_tree(
        ["x.py", "x.txt", "x.pyc", "x.pyi", "x.py.bak", "xpy", "README", "pkg.py/inner.py"]
    )
    # pkg.py is a directory: walked into, never returned itself.
    assert rel_paths(discover_scripts(root), root) == ["pkg.py/inner.py", "x.py"]


SUBDIR_TREE = ["top.py", "a/x.py", "a/b/y.py", "a/c/z.py", "b/w.py", "c/v.py"]


@pytest.mark.parametrize(
    ("subdirs", "expected"),
    [
        (["a"], ["a/b/y.py", "a/c/z.py", "a/x.py"]),
        (["a/b"], ["a/b/y.py"]),
        (["b", "a/c"], ["a/c/z.py", "b/w.py"]),
        (["a/b/"], ["a/b/y.py"]),
        ([], []),
    ],
)
def test_subdirs_restrict_the_walk(
    make_tree: MakeTree, subdirs: list[str], expected: list[str]
) -> None:
    root = make_tree(SUBDIR_TREE)
    assert rel_paths(discover_scripts(root, subdirs=subdirs), root) == expected


@pytest.mark.parametrize("subdirs", [["a", "a"], ["a", "a/"], ["a", "a/b"]])
def test_subdirs_duplicates_are_removed(make_tree: MakeTree, subdirs: list[str]) -> None:
    root = make_tree(SUBDIR_TREE)
    found = discover_scripts(root, subdirs=subdirs)
    assert rel_paths(found, root) == ["a/b/y.py", "a/c/z.py", "a/x.py"]


def test_subdirs_depth_counts_from_scripts_dir(make_tree: MakeTree) -> None:
    root = make_tree(["a/x.py", "a/b/y.py", "a/b/c/z.py"])
    assert rel_paths(discover_scripts(root, subdirs=["a"], max_depth=1), root) == ["a/x.py"]
    assert rel_paths(discover_scripts(root, subdirs=["a/b"], max_depth=2), root) == ["a/b/y.py"]


def test_missing_subdir_warns_and_others_are_searched(
    make_tree: MakeTree, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_tree(SUBDIR_TREE)
    caplog.set_level(logging.WARNING, logger="orchestrator")
    found = discover_scripts(root, subdirs=["nope", "b", "a/missing"])
    assert rel_paths(found, root) == ["b/w.py"]
    warnings = [r for r in caplog.records if r.name == "orchestrator" and r.levelno >= 30]
    messages = " | ".join(r.getMessage() for r in warnings)
    assert len(warnings) == 2, messages
    assert "'nope'" in messages
    assert "'a/missing'" in messages


def test_subdir_outside_scripts_dir_is_refused(
    make_tree: MakeTree, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_tree(["a/x.py"])
    build_tree(root.parent / "outside", ["evil.py"])
    caplog.set_level(logging.WARNING, logger="orchestrator")
    assert discover_scripts(root, subdirs=["../outside", "a"]) == [root.resolve() / "a/x.py"]
    assert any("outside" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*_check.py", ["a/deep_check.py", "data/db_check.py", "lint_check.py"]),
        ("data/*.py", ["data/db_check.py", "data/load.py"]),
        ("load.py", ["data/load.py", "load.py"]),
        ("nothing*.py", []),
    ],
)
def test_pattern_matches_name_or_relative_path(
    make_tree: MakeTree, pattern: str, expected: list[str]
) -> None:
    root = make_tree(
        [
            "lint_check.py",
            "check.py",
            "lint_check.txt",
            "load.py",
            "a/deep_check.py",
            "data/load.py",
            "data/db_check.py",
            "other/load2.py",
        ]
    )
    assert rel_paths(discover_scripts(root, pattern=pattern), root) == expected


def test_pattern_does_not_resurrect_skipped_files(make_tree: MakeTree) -> None:
    root = make_tree(["__init__.py", "build/x.py"])
    assert discover_scripts(root, pattern="*.py") == []


def test_results_are_sorted_absolute_unique_paths(
    make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(["z.py", "b.py", "a/z.py", "a/a.py", "m/n/o.py", "A.py"])
    monkeypatch.chdir(root.parent)
    found = discover_scripts("scripts", subdirs=["a", "m", "a", "m/n"])
    assert all(isinstance(p, Path) and p.is_absolute() for p in found)
    assert found == sorted(found)
    assert len(set(found)) == len(found)
    assert rel_paths(found, root) == ["a/a.py", "a/z.py", "m/n/o.py"]

    everything = discover_scripts(Path("scripts"))
    assert everything == sorted(everything)
    assert rel_paths(everything, root) == ["A.py", "a/a.py", "a/z.py", "b.py", "m/n/o.py", "z.py"]


@pytest.mark.timeout(10)
def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "scripts", ["a/x.py", "a/b/y.py"])
    outside = build_tree(tmp_path / "outside", ["o.py"])
    # A loop (a/b/loop -> a) and a link out of the tree.
    os.symlink(root / "a", root / "a" / "b" / "loop", target_is_directory=True)
    os.symlink(root, root / "a" / "up", target_is_directory=True)
    os.symlink(outside, root / "ext", target_is_directory=True)
    os.symlink(outside, root / "linked.py", target_is_directory=True)
    found = discover_scripts(root, max_depth=50)
    assert rel_paths(found, root) == ["a/b/y.py", "a/x.py"]


def test_missing_scripts_dir_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(DiscoveryError) as info:
        discover_scripts(missing)
    assert str(missing.resolve()) in str(info.value)
    assert "does not exist" in str(info.value)


def test_file_as_scripts_dir_raises(tmp_path: Path) -> None:
    script = build_tree(tmp_path, ["x.py"]) / "x.py"
    with pytest.raises(DiscoveryError) as info:
        discover_scripts(script)
    assert str(script.resolve()) in str(info.value)
    assert "not a directory" in str(info.value)


def test_custom_skip_dirs_replace_the_defaults(make_tree: MakeTree) -> None:
    root = make_tree(["generated/x.py", "gen2/y.py", "keep/z.py", "build/b.py"])
    found = discover_scripts(root, skip_dirs={"gen*"})
    assert rel_paths(found, root) == ["build/b.py", "keep/z.py"]
    everything = discover_scripts(root, skip_dirs=())
    assert len(everything) == 4


def test_custom_skip_patterns_replace_the_defaults(make_tree: MakeTree) -> None:
    root = make_tree(["test_a.py", "a/test_b.py", "__init__.py", "run.py", "tool.py"])
    found = discover_scripts(root, skip_patterns=["test_*.py", "tool.py"])
    assert rel_paths(found, root) == ["__init__.py", "run.py"]


DIR_NAMES = ["a", "b", "build", "node_modules", "x.egg-info", "__pycache__", ".git", "data"]
FILE_NAMES = ["x.py", "y_check.py", "__init__.py", "conftest.py", "setup.py", "notes.txt", "z.txt"]
PATTERNS = [None, "*_check.py", "data/*.py", "a/*", "a", "*/*_check.py", "[ab]*"]

rel_path_strategy = st.builds(
    lambda dirs, name: "/".join([*dirs, name]),
    st.lists(st.sampled_from(DIR_NAMES), max_size=4),
    st.sampled_from(FILE_NAMES),
)


def _glob_oracle(pattern: str, rel: str) -> bool:
    """The documented dialect for patterns without ``**``: part by part, a folder covers below."""
    want, have = pattern.split("/"), rel.split("/")
    return len(have) >= len(want) and all(map(fnmatch.fnmatchcase, have, want))


def brute_force(root: Path, max_depth: int, pattern: str | None) -> set[str]:
    """The scripts under ``root`` by the documented rules, with os.walk."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        depth = len(rel_dir.parts)
        dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatchcase(d, s) for s in SKIP_DIRS)]
        if depth >= max_depth:
            dirnames.clear()
        for name in filenames:
            if not name.endswith(".py"):
                continue
            if any(fnmatch.fnmatchcase(name, s) for s in SKIP_PATTERNS):
                continue
            rel = (rel_dir / name).as_posix()
            if pattern is None or _glob_oracle(pattern, name) or _glob_oracle(pattern, rel):
                found.add(rel)
    return found


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=st.lists(rel_path_strategy, max_size=15),
    max_depth=st.integers(min_value=0, max_value=4),
    pattern=st.sampled_from(PATTERNS),
)
def test_matches_brute_force_walk(paths: list[str], max_depth: int, pattern: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = build_tree(Path(tmp).resolve() / "scripts", paths)
        found = discover_scripts(root, max_depth=max_depth, pattern=pattern)
        assert found == sorted(found)
        assert set(rel_paths(found, root)) == brute_force(root, max_depth, pattern)
        assert len(found) == len(set(found))


def test_negative_max_depth_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("")
    with pytest.raises(ValueError, match="max_depth"):
        discover_scripts(tmp_path, max_depth=-1)


def test_k_uses_the_config_dialect_star_stays_in_one_folder(make_tree: MakeTree) -> None:
    """-k's `*` does not cross `/` (as in config.yaml keys); `**` does; a folder covers below."""
    root = make_tree(["data/load.py", "data/deep/x.py", "data/deep/deeper/y.py", "z.py"])
    found = {
        pattern: rel_paths(discover_scripts(root, pattern=pattern, max_depth=4), root)
        for pattern in ("data/*.py", "data/**/*.py", "data", "*.py", "data/deep")
    }
    assert found == {
        "data/*.py": ["data/load.py"],
        "data/**/*.py": ["data/deep/deeper/y.py", "data/deep/x.py", "data/load.py"],
        "data": ["data/deep/deeper/y.py", "data/deep/x.py", "data/load.py"],
        "*.py": ["data/deep/deeper/y.py", "data/deep/x.py", "data/load.py", "z.py"],  # names
        "data/deep": ["data/deep/deeper/y.py", "data/deep/x.py"],
    }
