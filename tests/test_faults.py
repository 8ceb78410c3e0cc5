"""Faults from outside: a full disk, a killed orch, daemons that escape their group."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCH_ENV, Project, pid_alive, wait_for


def _fsize_limit(limit: int) -> None:
    # As a full disk does, writes past the limit fail (EFBIG) instead of killing orch.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_ends_the_run_with_one_line_and_nothing_left(project: Project) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    for i in range(12):
        # Each prints 100 kB, more than a log may hold, then would sleep for a minute.
        project.script(
            f"s{i:02d}.py",
            f"""
            import os, sys, time
            open(os.path.join({str(pids)!r}, str(os.getpid())), "w").close()
            sys.stdout.write("x" * 100_000)
            sys.stdout.flush()
            time.sleep(60)
            """,
        )
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "-j2", "scripts"],
        cwd=project.root,
        env=ORCH_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: _fsize_limit(50_000),
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("orch: error: cannot write ")
    assert "File too large" in errors[0]
    assert "(not all written: orch could not write its files)" in proc.stdout
    started = [int(p.name) for p in pids.iterdir()]
    assert started, "no script ran"
    assert len(started) < 12, "scripts went on starting after the disk was full"
    assert wait_for(lambda: not any(pid_alive(p) for p in started), 2.0)


def _spawner(pids: Path) -> str:
    """A script that starts a child in its group and a daemon that left it, then waits."""
    return f"""
        import os, subprocess, sys, time
        def note(pid):
            open(os.path.join({str(pids)!r}, str(pid)), "w").close()
        note(os.getpid())
        note(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid)
        # Leaves the session and clears its environment: neither group nor marker finds it.
        note(subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            start_new_session=True, env={{}},
        ).pid)
        time.sleep(60)
        """


def test_kill_9_of_orch_leaves_no_script_process_alive(project: Project) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    for name in ("a.py", "b.py"):
        project.script(name, _spawner(pids))
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "-j2", "scripts"],
        cwd=project.root,
        env=ORCH_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: len(list(pids.iterdir())) == 6, 20), list(pids.iterdir())
        started = [int(p.name) for p in pids.iterdir()]
        assert all(pid_alive(p) for p in started)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not any(pid_alive(p) for p in started), 2.0), [
            p for p in started if pid_alive(p)
        ]
    finally:
        proc.kill()
        proc.wait()


def test_a_daemon_that_leaves_its_session_and_environment_is_killed_and_counted(
    project: Project,
) -> None:
    from orchestrator import run_script

    pids = project.root / "pids"
    pids.mkdir()
    script = project.script(
        "daemon.py",
        f"""
        import os, subprocess, sys
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            start_new_session=True, env={{}},
        )
        open(os.path.join({str(pids)!r}, str(child.pid)), "w").close()
        """,
    )
    result = run_script(script, timeout=30, root=project.root)
    assert result["status"] == "passed"
    assert result["escaped"] == 1
    daemon = int(next(pids.iterdir()).name)
    assert not pid_alive(daemon)
    assert result["execution_time"] < 2.0, "waited for the daemon's pipes"


def _guardians_of(orch: int) -> list[int]:
    """The live guardians of the orch process ``orch``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                words = (entry / "cmdline").read_bytes().split(b"\0")
                if any(w.endswith(b"guardian.py") for w in words) and str(orch).encode() in words:
                    found.append(int(entry.name))
    return [pid for pid in found if pid_alive(pid)]


def test_the_next_command_stops_what_a_run_killed_with_its_guardian_left(
    project: Project,
) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    project.script("a_done.py", "print('finished before the kill')\n")
    for name in ("b.py", "c.py"):
        project.script(
            name,
            f"""
            import os, subprocess, sys, time
            def note(pid):
                open(os.path.join({str(pids)!r}, str(pid)), "w").close()
            note(os.getpid())
            note(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid)
            note(subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
            ).pid)
            time.sleep(60)
            """,
        )
    # Its own group, so that one killpg takes orch and its guardian at once.
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "-j3", "scripts"],
        cwd=project.root,
        env=ORCH_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        logs = project.root / "reports"
        assert wait_for(lambda: len(list(pids.iterdir())) == 6, 20), list(pids.iterdir())
        assert wait_for(lambda: any(logs.glob("*/logs/a_done.py.json")), 10)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    started = [int(p.name) for p in pids.iterdir()]
    # Its guardian was in orch's group: once it is gone, nothing can stop the scripts.
    assert wait_for(lambda: not _guardians_of(proc.pid), 5)
    assert all(pid_alive(p) for p in started), "the guardian was not killed with orch"

    listing = project.orch("list", "scripts", timeout=30)
    assert listing.returncode == 0, listing.stderr
    notices = listing.stderr.splitlines()
    assert len(notices) == 1 and "was killed" in notices[0], listing.stderr
    assert "stopped 6 processes" in notices[0]
    assert wait_for(lambda: not any(pid_alive(p) for p in started), 2.0)
    assert not list((project.root / ".orchestrator" / "runs").iterdir())

    run_dir = next(p for p in logs.iterdir() if p.is_dir())
    report = project.orch("report", str(run_dir), timeout=30)
    assert report.returncode == 130, report.stderr
    assert "incomplete" in report.stdout and "1 of 3 scripts have a result" in report.stdout
    assert "a_done.py" in report.stdout
    # Swept once: the next command says nothing.
    again = project.orch("list", "scripts", timeout=30)
    assert again.stderr == ""


def test_a_sweep_judges_each_entry_and_never_raises(tmp_path: Path) -> None:
    import dataclasses

    from orchestrator.ledger import LiveRun, enter, sweep

    state, reports = tmp_path / ".orchestrator", tmp_path / "reports"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = LiveRun.of_this_process("r1", "ORCHESTRATOR_CHILD_feedbeef0000_", None, 3, [])
    (reports / "r1").mkdir(parents=True)
    gone = dataclasses.replace(
        me,
        pid=int(dead.stdout),
        started="1",
        run_dir=str(reports / "r1"),
        marker="ORCHESTRATOR_CHILD_0123456789ab_",
    )
    enter(state, gone)
    enter(state, dataclasses.replace(me, run_id="r2"))  # this process: alive
    (state / "runs" / "r3.json").write_text(json.dumps({"run_id": 3}))  # not a name orch writes
    killed, ignored = sweep(state, reports)  # in the order of their names
    assert ignored.startswith(f"ignored {state / 'runs' / 'r3.json'}: not an entry orch writes")
    assert killed.startswith("run r1 was killed") and "orch report" in killed
    assert (reports / "r1" / "incomplete.json").is_file()
    assert [p.name for p in (state / "runs").iterdir()] == [
        f"feedbeef0000-{os.getpid()}-{me.started}-r2.json"
    ]


# Run inside a PID namespace of the test's own: nothing outside it can be signalled.
_FORGERY = """
import json, os, subprocess, sys, time
from pathlib import Path
from orchestrator.ledger import sweep

root = Path(sys.argv[1])
state, reports = root / ".orchestrator", root / "reports"
runs = state / "runs"
runs.mkdir(parents=True)
reports.mkdir()
dead = subprocess.Popen(["true"])
dead.wait()
token, other = "0123456789ab", "fedcba987654"
marker = f"ORCHESTRATOR_CHILD_{token}_"
script_var = marker + "0" * 32
def start(env):
    return subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], **env})
victim = start({})  # unrelated: PATH= in its environment, as in every process
in_value = start({"NOTE": script_var + "=1"})  # the marker in a value, not a name
other_run = start({f"ORCHESTRATOR_CHILD_{other}_" + "1" * 32: "1"})
left = start({script_var: "1"})  # a script of the dead run
def execd(*procs):  # once each runs sleep, its environment is the one given
    def runs_sleep(p):
        with open(f"/proc/{p.pid}/comm") as comm:
            return comm.read().strip() == "sleep"
    deadline = time.monotonic() + 10
    while not all(map(runs_sleep, procs)):
        assert time.monotonic() < deadline, "a process never exec'd sleep"
        time.sleep(0.01)
execd(victim, in_value, other_run, left)
entry = {
    "run_id": "forged", "pid": dead.pid, "started": "1", "marker": "PATH=",
    "run_dir": "/tmp/outside", "total": 1, "command": [], "host": "",
}
(runs / f"{other}-{dead.pid}-1-forged.json").write_text(json.dumps(entry))
lines = sweep(state, reports)
alive = {n: p.poll() is None for n, p in
         [("victim", victim), ("in_value", in_value), ("other_run", other_run), ("left", left)]}
(runs / f"{token}-{dead.pid}-1-cut.json").write_text('{"run_id": "cut", "pid": ')
# A live orch's token named by a damaged entry, and a run id that climbs out.
live_token = "abcdefabcdef"
guarded = start({f"ORCHESTRATOR_CHILD_{live_token}_" + "2" * 32: "1"})
execd(guarded)
with open("/proc/self/stat", "rb") as handle:
    me_start = handle.read().rsplit(b")", 1)[1].split()[19].decode()
(runs / f"{live_token}-{os.getpid()}-{me_start}-alive.json").write_text(json.dumps({
    "run_id": "alive", "pid": os.getpid(), "started": me_start,
    "marker": f"ORCHESTRATOR_CHILD_{live_token}_", "run_dir": None, "total": 1,
    "command": [], "host": "",
}))
(runs / f"{live_token}-{dead.pid}-1-posing.json").write_text("{")
(runs / f"{other}-{dead.pid}-1-...json").write_text("{")
lines += sweep(state, reports)
alive["left_after"] = left.poll() is None
alive["guarded"] = guarded.poll() is None
guarded.kill()
print(json.dumps({"lines": lines, "alive": alive, "outside": os.path.exists("/tmp/outside")}))
for p in (victim, in_value, other_run, left):
    p.kill()
"""


@pytest.fixture
def pid_namespace() -> list[str]:
    """The command prefix that runs a program in a PID namespace of its own."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a PID namespace of the test's own needs root and unshare")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"])
    if probe.returncode != 0:
        pytest.skip("this machine refuses new PID namespaces")
    return ["unshare", "--pid", "--fork", "--mount-proc"]


def test_a_forged_or_truncated_ledger_entry_never_reaches_a_process_not_its_own(
    tmp_path: Path, pid_namespace: list[str]
) -> None:
    done = subprocess.run(
        [*pid_namespace, sys.executable, "-c", _FORGERY, str(tmp_path)],
        env=ORCH_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["alive"] == {
        "victim": True,
        "in_value": True,
        "other_run": True,  # the forged entry's name names its token: not acted on
        "left": True,
        "left_after": False,
        "guarded": True,  # its orch lives: a damaged entry naming its token is not acted on
    }, seen
    assert not seen["outside"]
    forged, cut, climbing = seen["lines"]
    assert climbing.startswith("ignored ") and "not an entry orch writes" in climbing
    assert forged.startswith("ignored ") and "marker does not agree" in forged
    assert "nothing stopped" in forged
    assert "run cut was killed" in cut and "stopped 1 processes" in cut
    assert "damaged (unreadable" in cut


def _daemonizer(pids: Path, then: str = "") -> str:
    """A script whose grandchild double-forks, leaves the session, sends its stdio to
    /dev/null and execs ``sleep`` with an empty environment: no group, marker or pipe
    finds it, and its parent is gone."""
    return (
        textwrap.dedent(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                open(os.path.join({str(pids)!r}, str(os.getpid())), "w").close()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execve("/bin/sleep", ["sleep", "100"], {{}})
            os._exit(0)
        os.wait()
        """)
        + then
        + "\n"
    )


def _until_two_in(folder: Path) -> str:
    """Script lines that wait, 20 s at most, until ``folder`` holds two files."""
    return (
        f"deadline = time.monotonic() + 20\n"
        f"while len(os.listdir({str(folder)!r})) < 2:\n"
        f"    assert time.monotonic() < deadline, 'the other script never came'\n"
        f"    time.sleep(0.01)\n"
    )


def _daemonizers_at_once(project: Project) -> tuple[Path, list[Path]]:
    """``a.py`` and ``b.py``: each waits until both run, starts its daemon, and waits until
    both daemons are up, so either daemon could be either script's. Returns the folder
    their daemons note their PIDs in, and the scripts."""
    pids, started = project.root / "pids", project.root / "started"
    pids.mkdir()
    started.mkdir()
    both = (
        "import os, time\n"
        f"open(os.path.join({str(started)!r}, str(os.getpid())), 'w').close()\n"
        + _until_two_in(started)
    )
    body = both + _daemonizer(pids, _until_two_in(pids))
    return pids, [project.script(name, body) for name in ("a.py", "b.py")]


def _results(project: Project) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    summary = json.loads((project.root / "reports" / "latest" / "summary.json").read_text())
    return summary, {r["path"]: r for r in summary["results"]}


def test_a_double_forked_daemon_without_environment_or_output_is_stopped_and_counted(
    project: Project,
) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    project.script("daemon.py", _daemonizer(pids, "print('left a daemon')"))
    project.script("other.py", "print('runs after it')\n")
    done = project.orch("run", "-j1", "scripts")
    assert done.returncode == 0, done.stdout + done.stderr
    daemons = [int(p.name) for p in pids.iterdir()]
    assert len(daemons) == 1
    assert not pid_alive(daemons[0]), "the daemon outlived the run"
    summary, results = _results(project)
    assert results["daemon.py"]["status"] == "passed"
    assert results["daemon.py"]["escaped"] == 1
    assert "escaped" not in results["other.py"]
    assert summary["escaped"] == 0


def test_daemons_of_scripts_running_at_once_are_stopped_at_the_end_and_counted_in_the_summary(
    project: Project,
) -> None:
    pids, _ = _daemonizers_at_once(project)
    done = project.orch("run", "-j2", "scripts")
    assert done.returncode == 0, done.stdout + done.stderr
    daemons = [int(p.name) for p in pids.iterdir()]
    assert len(daemons) == 2
    assert not any(pid_alive(p) for p in daemons), "a daemon outlived the run"
    summary, results = _results(project)
    assert summary["escaped"] == 2
    assert not any("escaped" in r for r in results.values())
    assert "escaped: 2 processes left by scripts that ran at once" in done.stdout
    report = (project.root / "reports" / "latest" / "report.md").read_text()
    assert "cannot be told apart: 2" in report


def test_a_library_caller_running_scripts_at_once_is_left_no_daemon(project: Project) -> None:
    """Without a run around them, the daemons no script could claim are stopped once
    the last script ends."""
    import threading

    from orchestrator import run_script

    pids, scripts = _daemonizers_at_once(project)
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(run_script(s, root=project.root)))
        for s in scripts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [r["status"] for r in results] == ["passed", "passed"], results
    daemons = [int(p.name) for p in pids.iterdir()]
    assert len(daemons) == 2
    assert not any(pid_alive(p) for p in daemons), "a daemon outlived the library calls"
