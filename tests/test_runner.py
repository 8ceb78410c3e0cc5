"""run_script and run_function, on real scripts in real subprocesses."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import RESULT_KEYS, Project, pid_alive, wait_for

from orchestrator import run_function, run_script
from orchestrator.processes import children


def test_passing_script_result_shape(project: Project) -> None:
    script = project.script(
        "sub/ok.py",
        """
        import sys
        print("hello out")
        print("hello err", file=sys.stderr)
        """,
    )
    result = run_script(script, scripts_dir=project.scripts)
    assert result.keys() >= RESULT_KEYS
    assert result["status"] == "passed"
    assert result["exit_code"] == 0
    assert result["stdout"] == "hello out\n"
    assert result["stderr"] == "hello err\n"
    assert result["error"] is None
    assert result["script"] == str(script)
    assert result["name"] == "ok.py"
    assert result["subdirectory"] == "sub"
    assert result["path"] == "sub/ok.py"
    start = datetime.fromisoformat(result["start_time"])
    end = datetime.fromisoformat(result["end_time"])
    assert start.utcoffset() is not None and end >= start
    assert isinstance(result["execution_time"], float) and result["execution_time"] > 0


def test_subdirectory_without_scripts_dir_is_parent_name(project: Project) -> None:
    script = project.script("grp/x.py", "")
    assert run_script(script)["subdirectory"] == "grp"


def test_exit_codes(project: Project) -> None:
    script = project.script("x.py", "raise SystemExit(3)")
    failed = run_script(script)
    assert failed["status"] == "failed"
    assert failed["exit_code"] == 3
    assert "3" in failed["error"]
    allowed = run_script(script, allowed_exit_codes=[0, 3])
    assert allowed["status"] == "passed"
    assert allowed["exit_code"] == 3


def test_killed_by_signal(project: Project) -> None:
    script = project.script("x.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = run_script(script)
    assert result["status"] == "failed"
    assert result["exit_code"] == -9
    assert "SIGKILL" in result["error"]


def test_timeout_kills_quickly(project: Project) -> None:
    script = project.script("slow.py", "import time\nprint('started', flush=True)\ntime.sleep(30)")
    began = time.monotonic()
    result = run_script(script, timeout=1)
    assert time.monotonic() - began < 3
    assert result["status"] == "timeout"
    assert result["exit_code"] is None
    assert "1 s" in result["error"]
    assert result["stdout"] == "started\n"


def test_timeout_kills_grandchild_that_ignores_sigterm(project: Project, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = project.script(
        "x.py",
        f"""
        import subprocess, sys, time
        code = (
            "import os, signal, time\\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
            "open({str(pidfile)!r}, 'w').write(str(os.getpid()))\\n"
            "time.sleep(60)\\n"
        )
        subprocess.Popen([sys.executable, "-c", code])
        time.sleep(60)
        """,
    )
    result = run_script(script, timeout=1.5, kill_grace=0.5)
    assert result["status"] == "timeout"
    assert pidfile.exists(), result
    assert not pid_alive(int(pidfile.read_text()))


def test_background_grandchild_holding_stdout_does_not_hang(
    project: Project, tmp_path: Path
) -> None:
    pidfile = tmp_path / "bg.pid"
    script = project.script(
        "x.py",
        f"""
        import subprocess
        proc = subprocess.Popen(["sleep", "60"])
        open({str(pidfile)!r}, "w").write(str(proc.pid))
        print("parent done", flush=True)
        """,
    )
    began = time.monotonic()
    result = run_script(script, timeout=30)
    assert time.monotonic() - began < 3
    assert result["status"] == "passed"
    assert result["stdout"] == "parent done\n"
    assert not pid_alive(int(pidfile.read_text()))


def test_daemonizing_script_is_killed(project: Project, tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    script = project.script(
        "daemon.py",
        f"""
        import os, sys, time
        r, w = os.pipe()
        if os.fork():
            os.read(r, 1)  # wait until the daemon is running
            sys.exit(0)
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        os.write(w, b"x")
        time.sleep(60)
        """,
    )
    result = run_script(script, timeout=30)
    assert result["status"] == "passed"
    assert not pid_alive(int(pidfile.read_text()))


def test_output_is_bounded_with_marker_and_full_log(project: Project, tmp_path: Path) -> None:
    script = project.script(
        "big.py",
        """
        import sys
        for i in range(300):
            sys.stdout.write(f"line {i:05d} " + "x" * 90 + "\\n")
        sys.stdout.write("THE END\\n")
        """,
    )
    result = run_script(script, max_output=4096, log_dir=tmp_path / "logs")
    assert result["status"] == "passed"
    assert result["stdout"].startswith("[... ")
    assert "bytes truncated" in result["stdout"].splitlines()[0]
    assert result["stdout"].endswith("THE END\n")
    marker = result["stdout"].splitlines()[0]
    assert marker.endswith("; full output in big.py.stdout.log ...]")
    assert str(tmp_path) not in marker  # bounded wherever the checkout lives
    assert len(result["stdout"].encode()) <= 4096 + len(marker) + 1
    full = Path(result["stdout_path"]).read_text()
    assert full.count("\n") == 301
    assert result["stderr_path"] is None  # an empty stream makes no file


def test_non_utf8_bytes_never_crash(project: Project) -> None:
    script = project.script(
        "bytes.py",
        "import sys\nsys.stderr.buffer.write(b'bad \\xff\\xfe bytes\\n')\n"
        "sys.stdout.buffer.write(b'\\xc3')\n",
    )
    result = run_script(script)
    assert result["status"] == "passed"
    assert result["stderr"] == "bad \ufffd\ufffd bytes\n"
    assert result["stdout"] == "\ufffd"


@pytest.mark.slow
def test_one_gib_of_output_keeps_memory_low(project: Project) -> None:
    script = project.script(
        "flood.py",
        """
        import sys
        block = b"y" * (1024 * 1024)
        for _ in range(1024):
            sys.stdout.buffer.write(block)
        """,
    )
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a probe started
    # from a big pytest process would report pytest's size, not its own.
    probe = (
        "import re\n"
        "from orchestrator import run_script\n"
        f"r = run_script({str(script)!r}, timeout=120)\n"
        "assert r['status'] == 'passed', r['error']\n"
        "assert len(r['stdout']) < 2 * 1024 * 1024\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=True
    )
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"


def test_start_errors_are_results(project: Project, tmp_path: Path) -> None:
    missing = run_script(tmp_path / "nope.py")
    assert missing["status"] == "error" and "not found" in missing["error"]
    assert missing["exit_code"] is None
    script = project.script("x.py", "")
    no_python = run_script(script, python=str(tmp_path / "no-python"))
    assert no_python["status"] == "error" and "interpreter" in no_python["error"]
    bad_cwd = run_script(script, cwd="does/not/exist")
    assert bad_cwd["status"] == "error" and "working directory" in bad_cwd["error"]
    for result in (missing, no_python, bad_cwd):
        assert result.keys() >= RESULT_KEYS
        assert result["start_time"] and result["end_time"]


def test_env_args_stdin_and_session(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHERITED_VAR", "kept")
    script = project.script(
        "x.py",
        """
        import os, sys
        print(os.environ["INHERITED_VAR"], os.environ["OVERLAID"], sys.argv[1:])
        print(repr(sys.stdin.read()))
        print(os.getsid(0) == os.getpid(), os.getpgrp() == os.getpid())
        """,
    )
    result = run_script(script, env={"OVERLAID": "new"}, args=["--n", "3"], timeout=10)
    lines = result["stdout"].splitlines()
    assert lines == ["kept new ['--n', '3']", "''", "True True"]


def test_cwd_defaults_to_project_root_and_paths_resolve_first(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.script("x.py", "import os\nprint(os.getcwd())")
    (project.root / "data").mkdir()
    monkeypatch.chdir(project.scripts)
    result = run_script("x.py")
    assert result["stdout"].strip() == str(project.root)
    assert run_script("x.py", cwd="data")["stdout"].strip() == str(project.root / "data")


def test_the_search_path_is_prepended_to_pythonpath(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = project.root / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("VALUE = 42\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/already/there", str(src)]))
    script = project.script(
        "x.py", "import os, pkg\nprint(pkg.VALUE)\nprint(os.environ['PYTHONPATH'])"
    )
    value, pythonpath = run_script(script)["stdout"].splitlines()
    assert value == "42"
    # src/ then the root (the one search path), then what was there, without duplicates.
    assert pythonpath.split(os.pathsep) == [str(src), str(project.root), "/already/there"]


def test_logging_events_carry_status(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    script = project.script("x.py", "raise SystemExit(2)")
    with caplog.at_level(logging.INFO, logger="orchestrator"):
        run_script(script)
    records = [r for r in caplog.records if r.name == "orchestrator"]
    assert len(records) == 2
    end: Any = records[1]
    assert (end.status, end.exit_code) == ("failed", 2)
    assert end.duration > 0


def test_terminate_all_interrupts_running_scripts(project: Project, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = project.script(
        "x.py", f"import time\nopen({str(ready)!r}, 'w').close()\ntime.sleep(30)"
    )
    results: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: results.append(run_script(script, timeout=60)))
    thread.start()
    assert wait_for(ready.exists, 10)
    assert children.terminate() == 1
    thread.join(5)
    assert not thread.is_alive()
    assert results[0]["status"] == "error"
    assert results[0]["error"] == results[0]["stopped"] == "interrupted"


# -- run_function: targets must be importable by a spawned child ---------------------


def add(a: int, b: int) -> int:
    print("adding")
    return a + b


def big_bytes(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def returns_lock() -> object:
    return threading.Lock()


def raises() -> None:
    raise ValueError("boom from child")


def sleeps(seconds: float) -> None:
    time.sleep(seconds)


def hard_exit() -> None:
    os._exit(7)


def test_run_function_returns_value_and_output() -> None:
    result = run_function(add, args=(2, 3))
    assert result["status"] == "passed"
    assert result["result"] == 5
    assert result["type"] == "function"
    assert result["name"] == "add"
    assert result["stdout"] == "adding\n"
    for key in ("error", "start_time", "end_time", "execution_time", "stderr"):
        assert key in result


def test_run_function_large_return_value_intact() -> None:
    size = 100 * 1024 * 1024
    result = run_function(big_bytes, args=(size,), timeout=60)
    assert result["status"] == "passed"
    assert result["result"] == big_bytes(size)


def test_run_function_unpicklable_return() -> None:
    result = run_function(returns_lock)
    assert result["status"] == "error"
    assert "pickle" in result["error"]


def test_run_function_raises() -> None:
    result = run_function(raises)
    assert result["status"] == "failed"
    assert "ValueError: boom from child" in result["error"]
    assert "Traceback" in result["error"]


def test_run_function_timeout() -> None:
    began = time.monotonic()
    result = run_function(sleeps, args=(30,), timeout=1)
    assert time.monotonic() - began < 4
    assert result["status"] == "timeout"


def test_run_function_process_death_is_reported() -> None:
    result = run_function(hard_exit)
    assert result["status"] == "error"
    assert "exit code 7" in result["error"]


def test_run_function_unpicklable_function() -> None:
    result = run_function(lambda: 1)
    assert result["status"] == "error"


def test_group_scan_finds_the_leader_after_a_pid_wrap() -> None:
    import orchestrator.guardian as guardian

    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        # PIDs wrapped since the leader started: the last PID handed out is below it.
        assert proc.pid in guardian.find_members(proc.pid, b"", last=lambda: 1).grouped
    finally:
        proc.kill()
        proc.wait()


def test_kill_all_does_not_wait_for_the_grace(project: Project) -> None:
    """A second Ctrl-C: SIGKILL now, even for a script that ignores SIGTERM."""
    ready = project.root / "ready"
    script = project.script(
        "stubborn.py",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').close()\ntime.sleep(60)\n",
    )
    results: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: results.append(run_script(script, timeout=120, kill_grace=60))
    )
    thread.start()
    assert wait_for(ready.exists, 10)  # SIGTERM is ignored from here on
    children.terminate()  # ignored by the script; the grace is a minute
    began = time.monotonic()
    assert children.kill() == 1
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - began < 5
    assert (results[0]["status"], results[0]["error"]) == ("error", "interrupted")


def test_children_started_by_the_registry_stop_on_terminate_and_leave_nothing() -> None:
    """Installers start as scripts do: registered, so Ctrl-C stops them, and reaped after."""
    proc, child = children.start(["sleep", "60"], "installer")
    try:
        with children.running(proc, child):
            assert children.terminate() == 1
            assert proc.wait(5) == -signal.SIGTERM
        # A block that ends with the child still running leaves nothing either.
        proc, child = children.start(["sh", "-c", "sleep 60 & sleep 60"], "installer")
        with pytest.raises(RuntimeError), children.running(proc, child):
            raise RuntimeError("the installer timed out")
        assert proc.poll() is not None
        assert wait_for(lambda: child.members() == [], timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_leftover_check_reads_only_pids_handed_out_since_the_run_began() -> None:
    """With few new PIDs it never lists /proc, so 1,000 other processes cost nothing."""
    from orchestrator.guardian import candidates as _candidates

    def listed() -> list[int]:
        raise AssertionError("listed /proc for a short span")

    assert list(_candidates(500, 503, listed)) == [500, 501, 502, 503]
    machine = [1, 7, 499, 500, 650, 90_000, 90_010]
    assert list(_candidates(500, 100_000, lambda: machine)) == [500, 650, 90_000, 90_010]
    assert list(_candidates(90_000, 10, lambda: machine)) == [1, 7, 90_000, 90_010]  # a wrap
    assert list(_candidates(500, None, lambda: machine)) == machine  # no /proc/loadavg


_ALLOCATE = """
import sys
block = bytearray({mb} * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
"""


def _allocating(mb: int, where: str) -> str:
    """A script that touches ``mb`` MB, in itself or in a Python child it waits for."""
    body = _ALLOCATE.format(mb=mb)
    if where == "script":
        return body
    return f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {body!r}], check=True)\n"


@pytest.mark.parametrize("where", ["script", "child"])
def test_peak_memory_is_the_scripts_own_largest_process(project: Project, where: str) -> None:
    body = _allocating(300, where)
    script = project.script("heavy.py", body)
    result = run_script(script, timeout=60, root=project.root, trace=True)
    assert result["status"] == "passed", result["stderr"]
    # The allocation plus an interpreter (~10 MB); never pytest's own size.
    assert 300 <= result["peak_memory_mb"] <= 330, result["peak_memory_mb"]


def test_a_trivial_script_costs_about_an_interpreter_never_zero(project: Project) -> None:
    script = project.script("light.py", "x = 1\n")
    result = run_script(script, timeout=60, root=project.root, trace=True)
    # pytest here is far bigger than 40 MB: a figure carried over from it would show.
    assert 3 <= result["peak_memory_mb"] <= 40, result["peak_memory_mb"]
    assert result["cpu_time"] is not None and 0 < result["cpu_time"] < 1


def test_cpu_time_counts_the_script_and_its_children_not_their_sleep(project: Project) -> None:
    burn = (
        "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass\\n"
    )
    script = project.script(
        "busy.py",
        f"import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', '{burn}'], check=True)\n"
        f"time.sleep(0.3)\n",
    )
    result = run_script(script, timeout=60, root=project.root, trace=True)
    assert result["status"] == "passed", result["stderr"]
    assert 0.3 <= result["cpu_time"] < 0.6, result["cpu_time"]
    assert result["execution_time"] >= 0.6


@pytest.mark.parametrize("where", ["script", "child"])
def test_a_script_over_its_memory_limit_fails_saying_so(project: Project, where: str) -> None:
    body = _allocating(300, where)
    script = project.script("greedy.py", body)
    result = run_script(script, timeout=60, root=project.root, trace=True, memory_limit_mb=200)
    assert result["status"] == "failed"
    assert result["error"] == "memory limit of 200 MB exceeded"
    modest = project.script("modest.py", _ALLOCATE.format(mb=50))
    fine = run_script(modest, timeout=60, root=project.root, trace=True, memory_limit_mb=200)
    assert fine["status"] == "passed", fine["stderr"]


def test_a_memory_limit_holds_for_what_a_script_starts_on_its_first_line(project: Project) -> None:
    """The cap is in force before the interpreter runs: a child forked at once has it."""
    project.config("default:\n  memory_limit_mb: 100\n")
    for i in range(8):  # sh forks grep at once
        project.script(f"sh{i}.py", "grep 'address space' /proc/self/limits\n")
    done = project.orch("run", "-j4", "--python", "/bin/sh", "scripts")
    assert done.returncode == 0, done.stdout + done.stderr
    limits = [
        path.read_text().split()[4]
        for path in (project.root / "reports" / "latest" / "logs").glob("*.stdout.log")
    ]
    assert limits == [str(100 * 1024 * 1024)] * 8
    forks = project.script(
        "forks.py",
        """
        import os, resource
        pid = os.fork()
        os.write(1, f"{resource.getrlimit(resource.RLIMIT_AS)[0]}\\n".encode())  # one write each
        if pid:
            os.wait()
        """,
    )
    result = run_script(forks, timeout=30, root=project.root, memory_limit_mb=100)
    assert result["stdout"].split() == [str(100 * 1024 * 1024)] * 2


def test_a_scripts_processes_are_never_orch_its_threads_or_a_starting_sibling() -> None:
    """A deep look (pipes too), as a timeout makes, while siblings start all the while: a
    sibling between fork and exec holds copies of every pipe, and orch's threads share
    its descriptors."""
    proc, child = children.start(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        "sleeper",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.deep = True
    stop = threading.Event()

    def siblings() -> None:
        while not stop.is_set():
            p, c = children.start(["true"], "sibling", stdout=subprocess.PIPE)
            with children.running(p, c):
                p.communicate()

    threads = [threading.Thread(target=siblings) for _ in range(2)]
    with children.running(proc, child):
        for thread in threads:
            thread.start()
        try:
            looks = 0
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                assert child.members() == [proc.pid]
                looks += 1
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert looks > 20
        assert not child.escaped
    assert proc.returncode == -signal.SIGTERM
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        pipe.close()


def exits_4() -> None:
    sys.exit(4)


def test_run_function_that_calls_sys_exit_ends_as_a_script_would() -> None:
    result = run_function(exits_4)
    assert (result["status"], result["exit_code"], result["error"]) == ("failed", 4, "exit code 4")
