"""Change awareness: edit-to-start latency of ``orch watch``, the affected-set cost, ``--changed``.

Run: ``python benchmarks/watch.py [--edits 20]``

Measured in one run:

* the latency from a file write to the affected script's start, over
  ``--edits`` edits of a module it imports (target: median <= 100 ms);
* the time to compute the affected set for one changed module in a generated
  tree of 1,000 scripts over 200 local modules, cache warm (target <= 100 ms);
* ``orch run --changed`` on 200 unchanged scripts beside ``orch run`` on the
  same tree (target <= 0.5 s in total, with no script started).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.inputs import InputGraph
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
        jobs = {job.path: job.settings for job in plan.jobs}
        warm = InputGraph(root, scripts.resolve())
        warm.affected([lib / "m0.py"], jobs)
        warm.save()
        graph = InputGraph(root, scripts.resolve())  # a fresh process, cache on disk warm
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    samples = latency(args.edits)
    cost = affected_cost()
    full, changed, started = changed_run()
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


if __name__ == "__main__":
    main()
