"""What ``orch run`` adds per script and per run, next to make and plain loops, side by side.

Run: ``python benchmarks/overhead.py [--scripts 200] [--repeat 5] [--idle 1000]``

Generates trivial scripts in temporary projects and times, interleaved in one
run (the median of ``--repeat`` rounds), with everything on (logs, record,
masking, the trace environment, reports):

* the cost a runner adds per task: ``--scripts`` tasks against twice as many,
  each running ``/bin/true``, one at a time: ``make -j1`` (a phony target
  per task) and ``orch run -j1 --python /bin/true`` (target: orch at most 2x
  make's cost per task);
* ``orch run -j1`` of ``--scripts`` trivial Python scripts against
  ``for f in *.py; do python f; done`` (target <= 1.03x), and ``-j2``
  against the same loop (target <= 0.55x on 2 cores);
* ``orch run -j1`` beyond a bare ``subprocess.run`` loop in one Python
  process, alone and with ``--idle`` sleeping processes on the machine
  (target <= 1.5 ms a script): the check that no process is left behind
  must not grow with what else the machine runs;
* ``orch --version`` against ``python -c pass`` (target <= 1.5x);
* the fixed cost of a run: ``orch run`` of a project with one trivial script,
  the whole process, against ``python script.py`` (target <= 3x).

The same interpreter runs the scripts in every case. The package's bytecode
is compiled first, as an installed package's is.
"""

from __future__ import annotations

import argparse
import compileall
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import interleaved, print_targets

import orchestrator

_BARE_LOOP = """
import pathlib, subprocess, sys
for script in sorted(pathlib.Path("scripts").glob("*.py")):
    subprocess.run([sys.executable, str(script)], stdin=subprocess.DEVNULL,
                   capture_output=True, start_new_session=True)
"""


def _project(root: Path, scripts: int, body: str = "x = 1\n") -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    for i in range(scripts):
        (root / "scripts" / f"s{i:05d}.py").write_text(body)
    return root


def _makefile(root: Path, tasks: int) -> Path:
    root.mkdir(parents=True)
    names = [f"t{i}" for i in range(tasks)]
    rules = "".join(f"{name}:\n\t@/bin/true\n" for name in names)
    (root / "Makefile").write_text(
        f".PHONY: all {' '.join(names)}\nall: {' '.join(names)}\n{rules}"
    )
    return root


def per_task(root: Path, n: int, repeat: int) -> dict[str, float]:
    """Milliseconds each runner adds per task: (time of 2n tasks - time of n) / n."""
    py = sys.executable
    cases: dict[str, list[str]] = {}
    for size in (n, 2 * n):
        make = _makefile(root / f"make{size}", size)
        cases[f"make {size}"] = ["make", "-j1", "-s", "-C", str(make)]
        orch = _project(root / f"orch{size}", size)
        cases[f"orch {size}"] = [
            *("env", "-C", str(orch), py, "-m", "orchestrator", "run", "-q", "-j1"),
            *("--python", "/bin/true"),
        ]
    med = interleaved(cases, root, repeat)
    return {
        runner: (med[f"{runner} {2 * n}"] - med[f"{runner} {n}"]) / n * 1000
        for runner in ("make", "orch")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    n = args.scripts
    compileall.compile_dir(Path(orchestrator.__file__).parent, quiet=1)
    py = sys.executable
    orch = [py, "-m", "orchestrator"]

    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        root = Path(tmp)
        tasks = per_task(root / "tasks", n, args.repeat)

        work = _project(root / "python", n)
        cases = {
            "shell loop": ["bash", "-c", f'for f in scripts/*.py; do "{py}" "$f"; done'],
            "subprocess.run loop": [py, "-c", _BARE_LOOP],
            "orch run -j1": [*orch, "run", "-q", "-j1", "-o", str(root / "r1"), "scripts"],
            "orch run -j2": [*orch, "run", "-q", "-j2", "-o", str(root / "r2"), "scripts"],
        }
        med = interleaved(cases, work, args.repeat)

        idle_cases = {k: cases[k] for k in ("subprocess.run loop", "orch run -j1")}
        sleepers = [
            subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL) for _ in range(args.idle)
        ]
        try:
            idle = interleaved(idle_cases, work, args.repeat)
        finally:
            for proc in sleepers:
                proc.kill()
            for proc in sleepers:
                proc.wait()

        one = _project(root / "one", 1)
        start = interleaved(
            {
                "python -c pass": [py, "-c", "pass"],
                "orch --version": [*orch, "--version"],
                "python script.py": [py, "scripts/s00000.py"],
                "orch run, one script": [*orch, "run", "-q"],
            },
            one,
            max(args.repeat, 20),
        )

    loop_t = med["shell loop"]
    beyond = (med["orch run -j1"] - med["subprocess.run loop"]) / n * 1000
    beyond_idle = (idle["orch run -j1"] - idle["subprocess.run loop"]) / n * 1000
    rows = [
        ("orch / make, cost per task (/bin/true)", tasks["orch"] / tasks["make"], 2.0, "x"),
        ("orch run -j1 / shell loop", med["orch run -j1"] / loop_t, 1.03, "x"),
        ("orch run -j2 / shell loop", med["orch run -j2"] / loop_t, 0.55, "x"),
        (f"orch -j1 beyond subprocess.run, {args.idle} idle", beyond_idle, 1.5, " ms"),
        (
            "orch --version / python -c pass",
            start["orch --version"] / start["python -c pass"],
            1.5,
            "x",
        ),
        (
            "orch run, one script / python script.py",
            start["orch run, one script"] / start["python script.py"],
            3.0,
            "x",
        ),
    ]
    print(
        f"cost per task, {n} against {2 * n} tasks: make {tasks['make']:.2f} ms, "
        f"orch {tasks['orch']:.2f} ms"
    )
    print(f"orch -j1 beyond a bare subprocess.run loop: {beyond:.2f} ms a script")
    for name, value in {**med, **{f"{k}, idle": v for k, v in idle.items()}, **start}.items():
        print(f"  {name:<28} {value:8.3f} s")
    print_targets(rows)


if __name__ == "__main__":
    main()
