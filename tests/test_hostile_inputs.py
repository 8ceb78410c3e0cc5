"""Hostile inputs a script can open: hashing them never blocks, balloons or misses an edit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import ORCH_ENV, Project

# run_orchestrator in a fresh interpreter, which then prints its own peak memory (VmHWM).
_PROBE = """
import re, sys
from orchestrator import run_orchestrator
code = run_orchestrator(sys.argv[1:])
status = open("/proc/self/status").read()
print("PEAK_KIB", re.search(r"VmHWM:\\s+(\\d+)", status).group(1), "EXIT", code)
"""


def _orch_peak(project: Project, *args: str) -> tuple[int, int, str]:
    """``(exit code, orch's peak KiB, output)`` of ``orch ARGS`` in the project."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=project.root,
        env=ORCH_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"PEAK_KIB (\d+) EXIT (\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return int(found[2]), int(found[1]), done.stdout + done.stderr


def test_a_fifo_dev_zero_and_a_sparse_gigabyte_are_hashed_without_blocking_or_ballooning(
    project: Project,
) -> None:
    data = project.root / "data"
    data.mkdir()
    fifo = data / "pipe"
    os.mkfifo(fifo)
    (data / "zero").symlink_to("/dev/zero")
    sparse = data / "sparse.bin"
    with sparse.open("wb") as handle:
        handle.truncate(1024**3)
    project.script(
        "reads.py",
        f"""
        import os
        fd = os.open({str(fifo)!r}, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO no one writes
        os.close(fd)
        with open({str(data / "zero")!r}, "rb") as handle:
            assert handle.read(10) == bytes(10)
        with open({str(sparse)!r}, "rb") as handle:
            assert handle.read(16) == bytes(16)
        """,
    )
    code, peak, out = _orch_peak(project, "run", "scripts")
    assert code == 0, out
    trace = json.loads((project.root / "reports" / "latest" / "logs" / "reads.py.json").read_text())
    assert {"data/pipe", "data/zero", "data/sparse.bin"} <= set(trace["trace"]["reads"]), trace
    code, peak_changed, out = _orch_peak(project, "run", "--changed", "scripts")
    assert code == 0, out
    assert "up-to-date" in out, out
    print(f"orch's peak: {peak // 1024} MB (run), {peak_changed // 1024} MB (--changed)")
    assert max(peak, peak_changed) < 300 * 1024, f"orch's peak {max(peak, peak_changed)} KiB"


def test_a_same_size_edit_with_its_old_mtime_restored_still_reruns(project: Project) -> None:
    data = project.root / "data.csv"
    data.write_text("a,1\n")
    old = data.stat().st_mtime_ns - 3600 * 10**9  # an hour ago: old enough to be cached
    os.utime(data, ns=(old, old))
    project.script("reads.py", f"open({str(data)!r}).read()\n")
    first = project.orch("run", "scripts")
    assert first.returncode == 0, first.stdout + first.stderr
    fresh = project.orch("run", "--changed", "scripts")
    assert "up-to-date" in fresh.stdout, fresh.stdout
    before = data.stat()
    data.write_text("a,2\n")  # same size; then the old mtime back, as cp -p or touch -d do
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_mtime_ns == before.st_mtime_ns
    again = project.orch("run", "--changed", "scripts")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up-to-date" not in again.stdout, again.stdout
    assert re.search(r"PASSED\s+reads\.py", again.stdout) or "1 passed" in again.stdout
