"""Time ``discover_scripts`` against ``find`` and a pruned ``os.walk`` on a large tree.

Run it from the repository root::

    python benchmarks/discovery.py                  # 100,000 files, 7 timed runs each
    python benchmarks/discovery.py --files 20000 --repeat 5 --tree /tmp/tree

The tree is generated once and cached (in the system temp directory, or in
``--tree``); a marker file records how it was made, so later runs reuse it. It
is nested four levels deep, mixes ``.py`` with other files, and holds pruned
directories (``.git``, ``node_modules``, ``__pycache__``, ``build``,
``*.egg-info``) full of files, so pruning matters.

Each method runs once to warm the caches, then ``--repeat`` times interleaved;
the median is reported. All three must return the same set of files, or the
script stops. The target is ``discover_scripts`` at most 1.0x ``find``.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator import discover_scripts
from orchestrator.discovery import SKIP_DIRS, SKIP_PATTERNS

MAX_DEPTH = 10
TARGET_RATIO = 1.0
_MARKER = ".bench-tree"
_LAYOUT_VERSION = 1
_OTHER_SUFFIXES = (".txt", ".json", ".md", ".cfg", ".pyc", ".sh")


def _tree_files(total: int) -> list[str]:
    """The relative paths of a deterministic tree of ``total`` files."""
    rng = random.Random(total)
    # Fan-out f gives f + f^2 + f^3 + f^4 directories; aim for ~16 files each.
    fanout = max(2, round((total / 16) ** 0.25))
    dirs = [""]
    level = [""]
    for _ in range(4):
        level = [f"{parent}d{i}/" for parent in level for i in range(fanout)]
        dirs.extend(level)

    pruned_share = total * 3 // 10
    pruned: list[str] = []
    per_part = pruned_share // 5
    pruned += [f".git/objects/{i % 256:02x}/obj{i}" for i in range(per_part)]
    pruned += [f"node_modules/pkg{i % 200}/lib/m{i}.py" for i in range(per_part)]
    pycache_dirs = dirs[1 : 1 + max(1, len(dirs) // 8)]
    pruned += [
        f"{pycache_dirs[i % len(pycache_dirs)]}__pycache__/m{i}.cpython-311.pyc"
        for i in range(per_part)
    ]
    pruned += [f"d0/build/lib/b{i}.py" for i in range(per_part)]
    rest = pruned_share - len(pruned)
    pruned += [f"d1/pkg.egg-info/e{i}.py" for i in range(rest)]

    files = pruned
    packages: set[str] = set()
    for i in range(total - len(pruned)):
        directory = dirs[i % len(dirs)]
        roll = rng.random()
        if roll < 0.45:
            name = f"script_{i}.py"
        elif roll < 0.5:
            # Some __init__.py files, which every method must leave out.
            name = f"tool_{i}.py" if directory in packages else "__init__.py"
            packages.add(directory)
        else:
            name = f"data_{i}{rng.choice(_OTHER_SUFFIXES)}"
        files.append(f"{directory}{name}")
    return files


def _ensure_tree(tree: Path, total: int) -> Path:
    """Generate the tree at ``tree`` unless a matching one is already there."""
    stamp = f"{_LAYOUT_VERSION} {total}\n"
    marker = tree / _MARKER
    if marker.is_file() and marker.read_text() == stamp:
        return tree.resolve()
    if tree.exists() and any(tree.iterdir()):
        if not marker.is_file():
            sys.exit(f"{tree} exists and was not made by this benchmark; pick another --tree")
        shutil.rmtree(tree)
    started = time.perf_counter()
    made: set[Path] = set()
    for rel in _tree_files(total):
        path = tree / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(b"")
    marker.write_text(stamp)
    print(f"generated {total} files in {tree} ({time.perf_counter() - started:.1f} s)")
    return tree.resolve()


def run_discover(tree: Path) -> list[Path]:
    return discover_scripts(tree, max_depth=MAX_DEPTH)


def run_find(tree: Path) -> list[str]:
    prune: list[str] = []
    for name in sorted(SKIP_DIRS):
        prune += ["-o", "-name", name] if prune else ["-name", name]
    skip_files: list[str] = []
    for name in sorted(SKIP_PATTERNS):
        skip_files += ["!", "-name", name]
    # -maxdepth counts the files too: a file in a directory at MAX_DEPTH is one deeper.
    command = [
        "find",
        str(tree),
        "-maxdepth",
        str(MAX_DEPTH + 1),
        "(",
        *prune,
        ")",
        "-prune",
        "-o",
        "-name",
        "*.py",
        *skip_files,
        "-type",
        "f",
        "-print",
    ]
    output = subprocess.run(command, capture_output=True, check=True).stdout
    return os.fsdecode(output).splitlines()


def run_os_walk(tree: Path) -> list[str]:
    skip_dirs = tuple(SKIP_DIRS)
    skip_files = tuple(SKIP_PATTERNS)
    base_depth = str(tree).count(os.sep)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        if dirpath.count(os.sep) - base_depth >= MAX_DEPTH:
            dirnames.clear()
        else:
            dirnames[:] = [
                d for d in dirnames if not any(fnmatch.fnmatchcase(d, s) for s in skip_dirs)
            ]
        found.extend(
            os.path.join(dirpath, name)
            for name in filenames
            if name.endswith(".py") and not any(fnmatch.fnmatchcase(name, s) for s in skip_files)
        )
    return sorted(found)


def _time(func: Callable[[Path], Sequence[object]], tree: Path) -> float:
    started = time.perf_counter()
    func(tree)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="files in the tree")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per method")
    parser.add_argument("--tree", type=Path, help="where to build or reuse the tree")
    args = parser.parse_args(argv)
    if shutil.which("find") is None:
        sys.exit("this benchmark needs find(1) on PATH")

    tree = args.tree or Path(tempfile.gettempdir()) / f"orchestrator-discovery-{args.files}"
    tree = _ensure_tree(tree, args.files)

    methods: dict[str, Callable[[Path], Sequence[object]]] = {
        "discover_scripts": run_discover,
        "find": run_find,
        "os.walk": run_os_walk,
    }
    # The warm-up run doubles as the fairness check.
    results = {name: {str(p) for p in func(tree)} for name, func in methods.items()}
    expected = results["discover_scripts"]
    for name, found in results.items():
        assert found == expected, (
            f"{name} disagrees with discover_scripts: "
            f"{len(found - expected)} extra, {len(expected - found)} missing"
        )

    timings: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, func in methods.items():
            timings[name].append(_time(func, tree))
    median = {name: statistics.median(times) for name, times in timings.items()}

    print(f"tree: {tree} ({args.files} files, {len(expected)} scripts found)")
    print(f"median of {args.repeat} runs after one warm-up, max_depth={MAX_DEPTH}")
    print()
    print(f"{'method':<18}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, times in timings.items():
        print(f"{name:<18}{median[name]:>10.4f}{min(times):>10.4f}{max(times):>10.4f}")
    print()
    vs_find = median["discover_scripts"] / median["find"]
    vs_walk = median["discover_scripts"] / median["os.walk"]
    print(f"discover/find    {vs_find:6.2f}x   (target: at most {TARGET_RATIO:.1f}x)")
    print(f"discover/os.walk {vs_walk:6.2f}x")
    verdict = "meets" if vs_find <= TARGET_RATIO else "misses"
    print(f"discover_scripts {verdict} the target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
