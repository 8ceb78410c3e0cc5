"""``orch run -j2`` on 10,000 trivial scripts against 200, scaled linearly; orch's own peak memory.

Run: ``python benchmarks/scale.py [--scripts 10000] [--small 200] [--python PATH]``

Generates a tree of ``--scripts`` trivial scripts (100 to a folder) and a
tree of ``--small``, runs ``orch run -j2`` on each in one process per run
(``run_orchestrator`` in a fresh interpreter, which then prints its own peak
resident memory, ``VmHWM``: orch's, never a script's), and reports:

* the large run's time / (the small run's time x scripts / small) (target <= 1.1x);
* orch's peak memory on the large run (target <= 200 MB);
* whether every script was reported and the totals are right.

``--python /bin/true`` replaces the interpreter that runs each script with a
program that does nothing, to see orch's own cost without Python's start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_targets

_PROBE = """
import re, sys
from orchestrator import run_orchestrator
code = run_orchestrator(sys.argv[1:])
status = open("/proc/self/status").read()
print("PEAK_KIB", re.search(r"VmHWM:\\s+(\\d+)", status).group(1), "EXIT", code)
"""


def make_tree(root: Path, count: int) -> Path:
    """A project of ``count`` trivial scripts, 100 to a folder; returns its scripts folder."""
    (root / "pyproject.toml").write_text("[project]\nname = 'scale'\n")
    scripts = root / "scripts"
    for i in range(count):
        folder = scripts / f"d{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{i:05d}.py").write_text("x = 1\n")
    return scripts


def run(root: Path, jobs: int, python: str | None) -> tuple[float, int, int, dict[str, int]]:
    """``orch run -jN`` on ``root``'s tree: (seconds, peak KiB, exit code, totals)."""
    command = [sys.executable, "-c", _PROBE, "run", "-q", f"-j{jobs}", "scripts"]
    if python:
        command += ["--python", python]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    began = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    line = next(line for line in done.stdout.splitlines() if line.startswith("PEAK_KIB"))
    _, peak, _, code = line.split()
    summary = json.loads((root / "reports" / "latest" / "summary.json").read_text())
    return seconds, int(peak), int(code), summary["totals"] | {"results": len(summary["results"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--python", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orch-scale-") as tmp:
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        small.mkdir()
        large.mkdir()
        make_tree(small, args.small)
        make_tree(large, args.scripts)
        # The small tree twice, around the large one: the machine's drift shows.
        first = run(small, args.jobs, args.python)
        big = run(large, args.jobs, args.python)
        second = run(small, args.jobs, args.python)
    small_time = (first[0] + second[0]) / 2
    scaled = small_time * args.scripts / args.small
    print(f"{args.small} scripts: {first[0]:.2f} s and {second[0]:.2f} s")
    print(f"{args.scripts} scripts: {big[0]:.2f} s (linear from {args.small}: {scaled:.2f} s)")
    print(f"orch's peak memory on {args.scripts} scripts: {big[1] / 1024:.1f} MB")
    print(f"exit {big[2]}; totals {big[3]}")
    complete = big[3].get("passed") == args.scripts and big[3]["results"] == args.scripts
    print("every script reported, totals right" if complete else "RESULTS MISSING")
    print_targets(
        [
            (f"{args.scripts} / {args.small} scripts scaled", big[0] / scaled, 1.1, "x"),
            (f"orch's peak memory, {args.scripts} scripts", big[1] / 1024, 200.0, "MB"),
        ]
    )


if __name__ == "__main__":
    main()
