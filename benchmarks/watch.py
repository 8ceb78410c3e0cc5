"""Change awareness: edit-to-start latency of ``orch watch``, the affected-set cost, ``--changed``.

Run: ``python benchmarks/watch.py [--edits 20]``

Measured in one run:

* the latency from a file write to the affected script's start, over
  ``--edits`` edits of a module it imports (target: median <= 100 ms);
* the time to compute the affected set for one changed module in a generated
  tree of 1,000 scripts over 200 local modules, cache warm (target <= 100 ms);
* ``orch run --changed`` on 200 unchanged scripts beside ``orch run`` on the
  same tree (target <= 0.5 s in total, with no script started);
* the whole ``orch deps --reverse src/pkg/__init__.py`` command, process start
  included, on a generated tree of 1,000 scripts over 1,200 modules in nested
  subpackages of ``src/pkg``: cold, with ``.orchestrator/`` removed so there is
  no parse cache (target <= 1.0 s), and warm, caches present (target <= 0.3 s);
* the whole ``orch why`` command over the same 1,000 scripts after a run
  recorded them all, warm (target <= 0.5 s).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.inputs import STATE_DIR, InputGraph
from orchestrator.plan import RunOptions, build_plan


def _project(root: Path) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    scripts = root / "scripts"
    scripts.mkdir()
    return scripts


def latency(edits: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="orch-watch-bench-") as tmp:
        root = Path(tmp)
        scripts = _project(root)
        (root / "src").mkdir()
        (root / "src" / "helper.py").write_text("VALUE = 0\n")
        starts = root / "starts.txt"
        (scripts / "probe.py").write_text(
            f"import time\nopen({str(starts)!r}, 'a').write(f'{{time.time()}}\\n')\nimport helper\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "watch", str(scripts), "-q", "--no-color"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("watching"):
                    break
            time.sleep(0.5)
            seen = len(starts.read_text().splitlines()) if starts.exists() else 0
            samples = []
            for i in range(1, edits + 1):
                written = time.time()
                (root / "src" / "helper.py").write_text(f"VALUE = {i}\n")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    lines = starts.read_text().splitlines() if starts.exists() else []
                    if len(lines) > seen:
                        samples.append(float(lines[-1]) - written)
                        seen = len(lines)
                        break
                    time.sleep(0.002)
                time.sleep(0.3)  # let the batch finish before the next edit
            return samples
        finally:
            proc.send_signal(2)
            proc.wait(10)


def affected_cost() -> float:
    with tempfile.TemporaryDirectory(prefix="orch-affected-bench-") as tmp:
        root = Path(tmp)
        scripts = _project(root)
        lib = root / "src" / "lib"
        lib.mkdir(parents=True)
        (lib / "__init__.py").write_text("")
        rng = random.Random(7)
        for m in range(200):
            deps = "".join(f"from lib import m{d}\n" for d in rng.sample(range(m), min(m, 2)))
            (lib / f"m{m}.py").write_text(f"{deps}X = {m}\n")
        for s in range(1000):
            folder = scripts / f"g{s % 10}"
            folder.mkdir(exist_ok=True)
            mods = rng.sample(range(200), 3)
            (folder / f"s{s}.py").write_text("".join(f"from lib import m{m}\n" for m in mods))
        plan = build_plan(RunOptions(scripts_dir=scripts))
        jobs = plan.watch_by_path()
        warm = InputGraph(plan.project)
        warm.affected([lib / "m0.py"], jobs)
        warm.save()
        graph = InputGraph(plan.project)  # a fresh process, cache on disk warm
        graph.affected([lib / "m0.py"], jobs)
        times = []
        for m in (10, 50, 100, 150, 199):
            changed = lib / f"m{m}.py"
            changed.write_text(changed.read_text() + "# edit\n")
            began = time.perf_counter()
            graph.invalidate([changed])
            graph.affected([changed], jobs)
            times.append(time.perf_counter() - began)
        return statistics.median(times)


def changed_run() -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="orch-changed-bench-") as tmp:
        root = Path(tmp)
        scripts = _project(root)
        marker = root / "ran.txt"
        for i in range(200):
            (scripts / f"s{i:03d}.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n")
        cmd = [sys.executable, "-m", "orchestrator", "run", "-q", "--no-color", str(scripts)]
        began = time.perf_counter()
        subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)
        full = time.perf_counter() - began
        before = marker.stat().st_size
        began = time.perf_counter()
        subprocess.run([*cmd, "--changed"], cwd=root, check=True, stdout=subprocess.DEVNULL)
        changed = time.perf_counter() - began
        return full, changed, marker.stat().st_size - before


_MODULE_BODY = """

LOG = logging.getLogger(__name__)


class Record{n}:
    \"\"\"One row of table {n}.\"\"\"

    def __init__(self, key: str, values: dict[str, Any] | None = None) -> None:
        self.key = key
        self.values = dict(values or {{}})

    def merge(self, other: Record{n}) -> Record{n}:
        merged = {{**self.values, **other.values}}
        return Record{n}(self.key, merged)

    def to_dict(self) -> dict[str, Any]:
        return {{"key": self.key, **self.values}}


def load_{n}(path: str) -> list[Record{n}]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, _, rest = line.partition(",")
            rows.append(Record{n}(key, {{"rest": rest.strip()}}))
    LOG.debug("loaded %d rows from %s", len(rows), path)
    return rows


def summarise_{n}(rows: list[Record{n}]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.key] += 1
    return dict(sorted(counts.items()))


def write_{n}(rows: list[Record{n}], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([r.to_dict() for r in rows], handle, indent=2)
"""

_SCRIPT_BODY = """

def main() -> int:
    parser = argparse.ArgumentParser(description="job {n}")
    parser.add_argument("--input", type=Path, default=Path("data") / "in{n}.csv")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    total = 0
    for attempt in range(3):
        try:
            total += attempt
        except ValueError:
            logging.exception("attempt %d", attempt)
    print(f"job {n}: {{total}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
"""


def _package_tree(src: Path, modules: int, rng: random.Random) -> list[tuple[str, ...]]:
    """``src/pkg`` with 8 subpackages of 5 each, half of those with 2 more: module paths."""
    packages: list[tuple[str, ...]] = [("pkg",)]
    for a in range(8):
        packages.append(("pkg", f"a{a}"))
        for b in range(5):
            packages.append(("pkg", f"a{a}", f"b{b}"))
            if b % 2 == 0:
                packages.extend(("pkg", f"a{a}", f"b{b}", f"c{c}") for c in range(2))
    for package in packages:
        folder = src.joinpath(*package)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(f'"""The {".".join(package)} package."""\n')
    names = [(*packages[n % len(packages)], f"m{n}") for n in range(modules)]
    for n, name in enumerate(names):
        lines = ["from __future__ import annotations", "", "import json", "import logging"]
        lines += ["from collections import defaultdict", "from typing import Any", ""]
        for d in rng.sample(range(n), min(n, rng.randint(2, 4))):  # earlier ones: no cycles
            dep = names[d]
            style = rng.randrange(4)
            if style == 0:
                lines.append(f"from {'.'.join(dep[:-1])} import {dep[-1]}")
            elif style == 1:
                lines.append(f"import {'.'.join(dep)}")
            elif style == 2:
                lines.append(f"from {'.'.join(dep)} import load_{d}")
            elif dep[:-1] == name[:-1]:
                lines.append(f"from . import {dep[-1]}")
            elif dep[:-2] == name[:-2] and len(dep) > 2:
                lines.append(f"from ..{dep[-2]} import {dep[-1]}")
            else:
                lines.append(f"from {'.'.join(dep)} import summarise_{d}")
        body = "\n".join(lines) + _MODULE_BODY.format(n=n)
        src.joinpath(*name[:-1], f"{name[-1]}.py").write_text(body)
    return names


def _real_tree(root: Path, scripts: int = 1000, modules: int = 1200) -> None:
    """A tree like a real one: scripts in folders importing several modules of ``src/pkg``."""
    rng = random.Random(11)
    folder = _project(root)
    names = _package_tree(root / "src", modules, rng)
    for s in range(scripts):
        group = folder / f"g{s % 20}"
        group.mkdir(exist_ok=True)
        lines = ["import argparse", "import logging", "import sys", "from pathlib import Path", ""]
        for m in rng.sample(range(modules), rng.randint(3, 6)):
            lines.append(f"from {'.'.join(names[m][:-1])} import {names[m][-1]}")
        (group / f"job{s}.py").write_text("\n".join(lines) + _SCRIPT_BODY.format(n=s))
    # Files changed within the last seconds are never cached (racy mtimes): age them all.
    past = time.time_ns() - 3600 * 10**9
    for folder_name, _, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(folder_name, name), ns=(past, past))


def deps_reverse(repeat: int = 3) -> tuple[float, float]:
    """Median seconds of ``orch deps --reverse src/pkg/__init__.py``: cold, then warm."""
    with tempfile.TemporaryDirectory(prefix="orch-deps-bench-") as tmp:
        root = Path(tmp)
        _real_tree(root)
        cmd = [sys.executable, "-m", "orchestrator", "deps", "--reverse", "src/pkg/__init__.py"]
        cold, warm = [], []
        for _ in range(repeat):
            shutil.rmtree(root / STATE_DIR, ignore_errors=True)
            for times in (cold, warm):
                began = time.perf_counter()
                out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True)
                times.append(time.perf_counter() - began)
                if len(out.stdout.splitlines()) != 1000:
                    raise SystemExit(f"expected 1,000 affected scripts:\n{out.stdout}{out.stderr}")
        return statistics.median(cold), statistics.median(warm)


def why_all(repeat: int = 3) -> float:
    """Median seconds of ``orch why`` (every script) on the deps tree, after one recorded run."""
    with tempfile.TemporaryDirectory(prefix="orch-why-bench-") as tmp:
        root = Path(tmp)
        _real_tree(root)
        orch = [sys.executable, "-m", "orchestrator"]
        subprocess.run([*orch, "run", "-q", "-j2"], cwd=root, check=True, capture_output=True)
        times = []
        for _ in range(repeat + 1):  # the first warms the caches
            began = time.perf_counter()
            out = subprocess.run(
                [*orch, "why"], cwd=root, check=True, capture_output=True, text=True
            )
            times.append(time.perf_counter() - began)
            if out.stdout.count("up to date") != 1000:
                raise SystemExit(f"expected 1,000 scripts up to date:\n{out.stdout}{out.stderr}")
        return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    samples = latency(args.edits)
    cost = affected_cost()
    full, changed, started = changed_run()
    cold, warm = deps_reverse()
    why = why_all()
    median, worst = statistics.median(samples) * 1000, max(samples) * 1000
    print(
        f"edit -> start latency over {len(samples)} edits: median {median:.0f} ms, "
        f"max {worst:.0f} ms (target: median <= 100 ms)"
    )
    print(
        f"affected set, 1,000 scripts / 200 modules, warm cache: {cost * 1000:.1f} ms "
        "(target <= 100 ms)"
    )
    print(
        f"orch run --changed, 200 unchanged scripts: {changed:.2f} s, {started} started "
        f"(target <= 0.5 s, none); orch run on the same tree: {full:.2f} s "
        f"({changed / full:.2f}x)"
    )
    print(
        f"orch deps --reverse src/pkg/__init__.py, 1,000 scripts / 1,200 modules: "
        f"cold {cold:.2f} s (target <= 1.0 s), warm {warm:.2f} s (target <= 0.3 s)"
    )
    print(f"orch why, 1,000 recorded scripts, warm: {why:.2f} s (target <= 0.5 s)")


if __name__ == "__main__":
    main()
