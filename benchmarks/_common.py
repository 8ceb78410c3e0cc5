"""What the benchmarks share: timing a command, interleaved rounds, the targets table."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def time_command(command: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> float:
    """Wall seconds of one run of ``command`` (its output discarded)."""
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def interleaved(
    cases: Mapping[str, list[str]],
    cwd: Path,
    repeat: int,
    envs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, float]:
    """The median of ``repeat`` rounds per case, the cases taking turns within each round.

    Taking turns spreads the machine's noise over every case alike.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, command in cases.items():
            times[name].append(time_command(command, cwd, (envs or {}).get(name)))
    return {name: statistics.median(values) for name, values in times.items()}


def print_targets(rows: Sequence[tuple[str, float, float, str]]) -> None:
    """The ``measure / measured / target / verdict`` table every benchmark ends with."""
    print(f"\n{'measure':<44} {'measured':>10} {'target':>9}")
    for name, value, target, unit in rows:
        verdict = "ok" if value <= target else "MISSED"
        print(f"{name:<44} {value:8.2f}{unit:<3} {target:6.2f}{unit:<3} {verdict}")
