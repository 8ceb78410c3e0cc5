"""Per-script overhead of ``orch run`` next to plain loops, measured side by side.

Run: ``python benchmarks/overhead.py [--scripts 200] [--repeat 3] [--idle 1000]``

Generates N trivial scripts in a temporary project and times, interleaved in
one run (the median of ``--repeat`` rounds):

* ``orch run -j1`` against ``for f in *.py; do python f; done`` (target <= 1.05x);
* ``orch run -j2`` against the same loop (target <= 0.50x on 2 cores);
* ``orch run -j1`` against a bare ``subprocess.run`` loop in one Python
  process: the cost per script beyond it (target <= 1.0 ms);
* the same two again with ``--idle`` sleeping processes running on the
  machine (target <= 1.5 ms a script): the check that no process is left
  behind must not grow with what else the machine runs;
* ``orch --version`` against ``python -c pass`` (target <= 3x).

The same interpreter runs the scripts in every case.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import interleaved, print_targets, time_command

_BARE_LOOP = """
import pathlib, subprocess, sys
for script in sorted(pathlib.Path("scripts").glob("*.py")):
    subprocess.run([sys.executable, str(script)], stdin=subprocess.DEVNULL,
                   capture_output=True, start_new_session=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    n = args.scripts

    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        scripts = root / "scripts"
        scripts.mkdir()
        for i in range(n):
            (scripts / f"s{i:04d}.py").write_text("x = 1\n")
        py = sys.executable
        orch = [py, "-m", "orchestrator"]
        cases = {
            "shell loop": ["bash", "-c", f'for f in scripts/*.py; do "{py}" "$f"; done'],
            "subprocess.run loop": [py, "-c", _BARE_LOOP],
            "orch run -j1": [*orch, "run", "-q", "-j1", "-o", str(root / "r1"), "scripts"],
            "orch run -j2": [*orch, "run", "-q", "-j2", "-o", str(root / "r2"), "scripts"],
        }
        time_command(cases["orch run -j1"], root)  # warm caches
        med = interleaved(cases, root, args.repeat)

        idle_cases = {k: cases[k] for k in ("subprocess.run loop", "orch run -j1")}
        sleepers = [
            subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL) for _ in range(args.idle)
        ]
        try:
            idle = interleaved(idle_cases, root, args.repeat)
        finally:
            for proc in sleepers:
                proc.kill()
            for proc in sleepers:
                proc.wait()

        startup: dict[str, list[float]] = {"python -c pass": [], "orch --version": []}
        for _ in range(20):
            startup["python -c pass"].append(time_command([py, "-c", "pass"], root))
            startup["orch --version"].append(time_command([*orch, "--version"], root))
        start = {name: statistics.median(v) for name, v in startup.items()}

    loop_t = med["shell loop"]
    per_script = (med["orch run -j1"] - med["subprocess.run loop"]) / n * 1000
    per_script_idle = (idle["orch run -j1"] - idle["subprocess.run loop"]) / n * 1000
    ratios = [
        ("orch run -j1 / shell loop", med["orch run -j1"] / loop_t, 1.05, "x"),
        ("orch run -j2 / shell loop", med["orch run -j2"] / loop_t, 0.50, "x"),
        ("orch -j1 beyond subprocess.run, per script", per_script, 1.0, " ms"),
        (f"the same, {args.idle} idle processes", per_script_idle, 1.5, " ms"),
        (
            "orch --version / python -c pass",
            start["orch --version"] / start["python -c pass"],
            3.0,
            "x",
        ),
    ]
    print(f"{n} scripts, median of {args.repeat} rounds")
    for name, value in med.items():
        print(f"  {name:<22} {value:8.3f} s")
    for name, value in idle.items():
        print(f"  {name + ', idle':<22} {value:8.3f} s")
    print_targets(ratios)


if __name__ == "__main__":
    main()
