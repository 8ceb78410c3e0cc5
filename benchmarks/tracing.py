"""What tracing costs, and what it finds that the static graph does not, measured in one run.

Run: ``python benchmarks/tracing.py [--scripts 200] [--modules 200] [--repeat 5]``

Cost, each pair interleaved in one run (medians):

* ``orch run -j1`` on N trivial scripts, traced against ``trace: false``: the
  cost per script (target <= 1 ms);
* one script importing M local modules, run by Python with and without the
  bootstrap: the ratio (target <= 1.03x).

Soundness, on ``examples/`` and on a generated tree whose scripts load
modules by computed names, read data files, start Python children and keep
an import in a branch never taken. Each tree is run once (traced), then for
every script and every local file we ask whether the rule reruns the script
when that file changes, against the truth of what its run used (its trace):

* recall and precision of the old rule (static graph + ``watch:``) and of the union
  (static + ``watch:`` + trace) against the trace;
* the false reruns (reruns for a file the run never used) and the missed
  reruns (a file the run used, left ``up-to-date``: a stale pass) of the old
  static-only rule and of the union.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import interleaved, print_targets

from orchestrator.changes import Tracking
from orchestrator.plan import RunOptions, build_plan
from orchestrator.tracing import Trace, trace_env

REPO = Path(__file__).resolve().parent.parent


def cost(n: int, modules: int, repeat: int) -> list[tuple[str, float, float, str]]:
    """The two cost figures: ms per trivial script, and the ratio on an import-heavy one."""
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="orch-trace-bench-") as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        for name in ("traced", "bare"):
            folder = root / name
            folder.mkdir()
            for i in range(n):
                (folder / f"s{i:04d}.py").write_text("x = 1\n")
        (root / "bare" / "config.yaml").write_text("default: {trace: false}\n")
        orch = [py, "-m", "orchestrator", "run", "-q", "-j1"]
        runs = {
            "traced": [*orch, "-o", str(root / "r1"), "traced"],
            "trace: false": [*orch, "-o", str(root / "r2"), "bare"],
        }
        interleaved(runs, root, 1)  # warm the caches and the bootstrap's bytecode
        whole = interleaved(runs, root, repeat)

        src = root / "src"
        src.mkdir()
        for i in range(modules):
            (src / f"mod{i:04d}.py").write_text(f"VALUE = {i}\n")
        heavy = root / "heavy.py"
        heavy.write_text("".join(f"import mod{i:04d}\n" for i in range(modules)))
        plain = {**os.environ, "PYTHONPATH": str(src)}
        traced = dict(plain)
        trace_env(traced, str(root / "trace.bin"), str(root), [])
        one = {"bare": [py, str(heavy)], "traced": [py, str(heavy)]}
        envs = {"bare": plain, "traced": traced}
        interleaved(one, root, 1, envs)
        heavy_times = interleaved(one, root, repeat * 4, envs)

    per_script = (whole["traced"] - whole["trace: false"]) / n * 1000
    print(f"{n} trivial scripts, orch run -j1, median of {repeat}:")
    for name, value in whole.items():
        print(f"  {name:<14} {value:7.3f} s")
    print(f"one script importing {modules} local modules, median of {repeat * 4}:")
    for name, value in heavy_times.items():
        print(f"  {name:<14} {value * 1000:7.1f} ms")
    return [
        ("tracing, per trivial script", per_script, 1.0, " ms"),
        (
            f"traced / bare, {modules} local imports",
            heavy_times["traced"] / heavy_times["bare"],
            1.03,
            "x",
        ),
    ]


_GENERATED_SCRIPT = """
import importlib, os, subprocess, sys
import pkg.static{i}
importlib.import_module("pkg.computed" + "{i}")
for name in ["loop{i}a", "loop{i}b"]:
    __import__("pkg." + name)
open("data/d{i}.txt").read()
try:
    open("data/optional{i}.txt").read()
except FileNotFoundError:
    pass
if os.environ.get("NEVER_SET_{i}"):
    import pkg.unused{i}
subprocess.run([sys.executable, "-c", "import pkg.child{i}"], check=True)
"""


def generate(root: Path, n: int) -> None:
    """A tree whose scripts use each kind of input that ``ast`` cannot see, and one it only sees."""
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'generated'\n")
    pkg = root / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (root / "data").mkdir()
    (root / "scripts").mkdir()
    for i in range(n):
        for kind in ("static", "computed", "loop{}a", "loop{}b", "unused", "child"):
            name = kind.format(i) if "{}" in kind else f"{kind}{i}"
            (pkg / f"{name}.py").write_text("X = 1\n")
        (root / "data" / f"d{i}.txt").write_text("1\n")
        (root / "scripts" / f"s{i:03d}.py").write_text(_GENERATED_SCRIPT.format(i=i))


def soundness(name: str, root: Path) -> list[str]:
    """Run the tree once, traced; then compare the rules' reruns with what each run used."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "-q", "-j2", "scripts"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"{name}: the run failed:\n{result.stdout}{result.stderr}")
    plan = build_plan(RunOptions(scripts_dir=root / "scripts"))
    tracking = Tracking(plan.project)
    snapshots = tracking.snapshots(plan)
    graph = tracking.graph
    counts = {"static": [0, 0, 0], "union": [0, 0, 0]}  # hits, claimed, truth
    reruns = {"static": [0, 0], "union": [0, 0]}  # false, missed
    files = {p for p in root.rglob("*") if p.is_file() and not _skipped(root, p)}
    for job in plan.jobs:
        if job.settings["skip"]:
            continue  # never run: nothing to compare
        trace = snapshots.trace(job)
        if not isinstance(trace, Trace):
            raise SystemExit(f"{name}: {job.rel} has no trace: {trace}")
        used = {p for p in graph.traced(job.path, trace) if p.is_file()}
        static = set(graph.sources(job.path, job.settings))
        union = set(graph.sources(job.path, job.settings, trace))
        for rule, claimed in (("static", static), ("union", union)):
            claimed = {p for p in claimed if p.is_file()}
            counts[rule][0] += len(claimed & used)
            counts[rule][1] += len(claimed)
            counts[rule][2] += len(used)
            for file in files:
                if file in claimed and file not in used:
                    reruns[rule][0] += 1
                elif file in used and file not in claimed:
                    reruns[rule][1] += 1
    lines = [f"{name}: {len(plan.jobs)} scripts, {len(files)} files"]
    for rule in ("static", "union"):
        hits, claimed, truth = counts[rule]
        false, missed = reruns[rule]
        lines.append(
            f"  {rule:<7} recall {hits / truth:7.2%}  precision {hits / claimed:7.2%}  "
            f"false reruns {false:5d}  missed reruns {missed:5d}"
        )
    return lines


def _skipped(root: Path, path: Path) -> bool:
    parts = path.relative_to(root).parts
    return parts[0] in (".orchestrator", "reports") or "__pycache__" in parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--generated", type=int, default=50)
    args = parser.parse_args()

    figures = cost(args.scripts, args.modules, args.repeat)
    print()
    with tempfile.TemporaryDirectory(prefix="orch-trace-sound-") as tmp:
        examples = Path(tmp) / "examples"
        shutil.copytree(
            REPO / "examples",
            examples,
            ignore=shutil.ignore_patterns("reports", ".orchestrator", "__pycache__"),
        )
        generated = Path(tmp) / "generated"
        generate(generated, args.generated)
        for line in [*soundness("examples/", examples), *soundness("generated", generated)]:
            print(line)

    print_targets(figures)


if __name__ == "__main__":
    main()
