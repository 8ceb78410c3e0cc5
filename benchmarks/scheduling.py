"""Makespan of a heavy-tailed workload: first run (no history) against the second, and the bound.

Run: ``python benchmarks/scheduling.py [--jobs 2 4] [--seed 1]``

The tree: 40 scripts sleeping 0.1-0.5 s and a chain of 3 scripts of 3 s each
(each depending on the one before), named so that they come last. For each
``-j``, a fresh copy is run twice: the first run has no recorded durations
(every script counts 1 s, so only the chain's length orders it), the
second schedules by the first's durations. Printed: first-in-first-out
order (declared order, simulated with :func:`orchestrator.dag.schedule` from
the second run's measured times), both runs' makespans (first script's start
to last script's end) and the lower bound ``max(sum / j, longest chain)`` of
the same measured times.

Targets: the second run at most 1.1x the bound, and at least 25 % below the first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from _common import print_targets

from orchestrator.dag import remaining_chains, schedule


def make_tree(root: Path, seed: int) -> tuple[float, float]:
    """Write the workload; returns (summed seconds, longest chain seconds)."""
    rng = random.Random(seed)
    (root / "pyproject.toml").write_text("[project]\nname = 'sched'\n")
    scripts = root / "scripts"
    scripts.mkdir()
    total = 0.0
    for i in range(40):
        seconds = round(rng.uniform(0.1, 0.5), 3)
        total += seconds
        (scripts / f"a{i:02d}.py").write_text(f"import time\ntime.sleep({seconds})\n")
    for i in range(3):
        (scripts / f"z{i}.py").write_text("import time\ntime.sleep(3)\n")
    (scripts / "config.yaml").write_text(
        "scripts:\n  z1.py: {depends_on: [z0.py]}\n  z2.py: {depends_on: [z1.py]}\n"
    )
    return total + 9.0, 9.0


def makespan(root: Path, jobs: int) -> tuple[float, dict[str, float]]:
    """One ``orch run -jN``: first start to last end, and each script's duration."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "orchestrator", "run", "-q", f"-j{jobs}", "scripts"]
    subprocess.run(command, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((root / "reports" / "latest" / "summary.json").read_text())
    starts = [datetime.fromisoformat(r["start_time"]) for r in summary["results"]]
    ends = [datetime.fromisoformat(r["end_time"]) for r in summary["results"]]
    durations = {r["path"]: r["execution_time"] for r in summary["results"]}
    return (max(ends) - min(starts)).total_seconds(), durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for jobs in args.jobs:
        with tempfile.TemporaryDirectory(prefix="orch-sched-") as tmp:
            root = Path(tmp)
            make_tree(root, args.seed)
            first, _ = makespan(root, jobs)
            second, took = makespan(root, jobs)
        # The bound and FIFO of the work as it ran (each script's measured time,
        # its interpreter's start included), not of the nominal sleeps.
        graph = {rel: [] for rel in took} | {"z1.py": ["z0.py"], "z2.py": ["z1.py"]}
        graph = {rel: graph[rel] for rel in sorted(took)}
        total = sum(took.values())
        chain = max(remaining_chains(graph, took).values())
        bound = max(total / jobs, chain)
        _, fifo = schedule(graph, took, jobs)
        print(
            f"-j{jobs}: first-in-first-out {fifo:.2f} s (simulated from the measured times), "
            f"first run {first:.2f} s, second run {second:.2f} s, bound {bound:.2f} s "
            f"(sum {total:.2f} s / {jobs}, chain {chain:.2f} s)"
        )
        rows.append((f"-j{jobs} second run / bound", second / bound, 1.1, "x"))
        rows.append((f"-j{jobs} second run / first-in-first-out", second / fifo, 0.75, "x"))
    print_targets(rows)


if __name__ == "__main__":
    main()
