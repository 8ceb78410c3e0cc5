"""Per-script overhead of ``orch run`` next to a plain shell loop, measured side by side.

Run: ``python benchmarks/overhead.py [--scripts 200] [--repeat 3]``

Generates N trivial scripts in a temporary project and times, interleaved in
one run (the median of ``--repeat`` rounds):

* ``orch run -j1`` against ``for f in *.py; do python f; done`` (target <= 1.05x);
* ``orch run -j2`` against the same loop (target <= 0.55x);
* ``orch --version`` against ``python -c pass`` (target <= 3x).

The same interpreter runs the scripts in every case.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        scripts = root / "scripts"
        scripts.mkdir()
        for i in range(args.scripts):
            (scripts / f"s{i:04d}.py").write_text("x = 1\n")
        py = sys.executable
        orch = [py, "-m", "orchestrator"]
        loop = ["bash", "-c", f'for f in scripts/*.py; do "{py}" "$f"; done']
        cases = {
            "shell loop": loop,
            "orch run -j1": [*orch, "run", "-q", "-j1", "-o", str(root / "r1"), "scripts"],
            "orch run -j2": [*orch, "run", "-q", "-j2", "-o", str(root / "r2"), "scripts"],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        _time(cases["orch run -j1"], root)  # warm caches
        for _ in range(args.repeat):
            for name, command in cases.items():
                times[name].append(_time(command, root))
        startup: dict[str, list[float]] = {"python -c pass": [], "orch --version": []}
        for _ in range(20):
            startup["python -c pass"].append(_time([py, "-c", "pass"], root))
            startup["orch --version"].append(_time([*orch, "--version"], root))

    med = {name: statistics.median(v) for name, v in {**times, **startup}.items()}
    loop_t = med["shell loop"]
    rows = [
        ("orch run -j1 / shell loop", med["orch run -j1"] / loop_t, 1.05),
        ("orch run -j2 / shell loop", med["orch run -j2"] / loop_t, 0.55),
        ("orch --version / python -c pass", med["orch --version"] / med["python -c pass"], 3.0),
    ]
    print(f"{args.scripts} scripts, median of {args.repeat} rounds")
    for name, value in med.items():
        print(f"  {name:<18} {value:8.3f} s")
    print(f"\n{'ratio':<34} {'measured':>9} {'target':>8}")
    for name, ratio, target in rows:
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"{name:<34} {ratio:8.2f}x {target:7.2f}x  {verdict}")


if __name__ == "__main__":
    main()
