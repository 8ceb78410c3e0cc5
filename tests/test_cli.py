"""The ``orch`` command, driven as a real subprocess on sample trees in tmp_path."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCH_ENV, RESULT_KEYS, Project, pid_alive, wait_for

import orchestrator
from orchestrator.cli import run_orchestrator

STATUS_WORDS = "PASSED|FAILED|TIMEOUT|ERROR|SKIPPED"
PROGRESS = re.compile(rf"^\[(\d+)/(\d+)\] ({STATUS_WORDS}) (\S+) \d+\.\d\ds$")
TOTALS = re.compile(r"^\d+ \w+(, \d+ \w+)* in \d+\.\d\d s \(wall \d+\.\d\d s\)$")
# summary.json's entries: the contract's keys without the output streams, plus path.
SUMMARY_KEYS = (RESULT_KEYS - {"stdout", "stderr"}) | {"path"}


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def _command(args: tuple[str | Path, ...]) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *map(str, args)]


def orch(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orchestrator ARGS`` to completion and capture its output."""
    return subprocess.run(
        _command(args), cwd=cwd, env=_env(env), capture_output=True, text=True, timeout=timeout
    )


def orch_popen(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start ``python -m orchestrator ARGS`` without waiting for it."""
    return subprocess.Popen(
        _command(args),
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_dir_of(stdout: str) -> Path:
    """The run directory the console summary names on its ``reports:`` line."""
    match = re.search(r"^reports: (.+)$", stdout, re.MULTILINE)
    assert match, stdout
    return Path(match.group(1))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def summary_of(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = load_json(run_dir / "summary.json")
    return data


def statuses(summary: Mapping[str, Any]) -> dict[str, str]:
    return {r["path"]: r["status"] for r in summary["results"]}


def console_table_paths(stdout: str) -> list[str]:
    """The first column of the final console table, top to bottom."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^Script\s+Status\s+Exit", line))
    assert set(lines[start + 1].replace(" ", "")) == {"-"}
    paths = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        paths.append(line.split()[0])
    return paths


def markdown_table_paths(markdown: str) -> list[str]:
    """The script paths of the report's ``## Scripts`` table, top to bottom."""
    section = markdown.split("## Scripts", 1)[1].split("## ", 1)[0]
    return re.findall(r"^\| `([^`]+)`", section, re.MULTILINE)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- exit codes and usage errors ----------------------------------------------------


def test_all_passing_or_skipped_exits_0(project: Project) -> None:
    project.script("a/ok.py", "print('ok')")
    project.script("a/skipped.py", "raise SystemExit(1)")
    project.config("skip: [a/skipped.py]")
    result = orch("run", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = summary_of(run_dir_of(result.stdout))
    assert statuses(summary) == {"a/ok.py": "passed", "a/skipped.py": "skipped"}


@pytest.mark.parametrize(
    ("body", "config", "status"),
    [
        ("raise SystemExit(3)", "", "failed"),
        ("import time\ntime.sleep(30)", "default: {timeout: 0.5}", "timeout"),
        ("print('never runs')", "scripts: {bad.py: {cwd: no/such/dir}}", "error"),
    ],
)
def test_any_failure_timeout_or_error_exits_1(
    project: Project, body: str, config: str, status: str
) -> None:
    project.script("ok.py", "")
    project.script("bad.py", body)
    if config:
        project.config(config)
    result = orch("run", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    assert statuses(summary_of(run_dir_of(result.stdout))) == {"bad.py": status, "ok.py": "passed"}


def test_missing_scripts_dir_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(orch("run", tmp_path / "nope"))
    assert "nope" in line


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("default: [unclosed\n", "invalid YAML"),
        ("defaults:\n  timeout: 3\n", "defaults"),
        ("default:\n  timeot: 3\n", "timeot"),
    ],
)
def test_bad_config_is_one_line(project: Project, config: str, expected: str) -> None:
    project.script("x.py", "")
    project.config(config)
    line = one_error_line(orch("run", project.scripts))
    assert "config.yaml" in line
    assert expected in line
    assert not (project.root / "reports").exists()


def test_unknown_option_exits_2(project: Project) -> None:
    project.script("x.py", "")
    result = orch("run", "--no-such-option", project.scripts)
    assert result.returncode == 2
    assert "--no-such-option" in result.stderr
    assert "Traceback" not in result.stderr


def test_negative_max_depth_is_a_usage_error(project: Project) -> None:
    project.script("x.py", "")
    result = orch("run", "--max-depth", "-1", project.scripts)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "max-depth" in result.stderr


def test_run_without_argument_and_no_scripts_dir(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'empty'\n")
    line = one_error_line(orch("run", cwd=tmp_path))
    assert "scripts/" in line


@pytest.mark.parametrize("where", [".", "scripts/a"])
def test_run_without_argument_uses_project_scripts_dir(project: Project, where: str) -> None:
    project.script("a/x.py", "print('x')")
    project.script("top.py", "")
    result = orch("run", cwd=project.root / where)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_dir_of(result.stdout)
    assert run_dir.parent == project.root / "reports"
    assert statuses(summary_of(run_dir)) == {"a/x.py": "passed", "top.py": "passed"}


# -- console output -----------------------------------------------------------------


def test_progress_lines_table_and_totals(project: Project) -> None:
    project.script("a.py", "")
    project.script("b.py", "raise SystemExit(4)")
    project.script("sub/c.py", "")
    result = orch("run", project.scripts)
    assert result.returncode == 1
    progress = [m for m in map(PROGRESS.match, result.stdout.splitlines()) if m]
    assert [(m[1], m[2]) for m in progress] == [("1", "3"), ("2", "3"), ("3", "3")]
    # One path form everywhere: relative to the scripts directory, as -k and config keys take.
    assert {(m[3], m[4]) for m in progress} == {
        ("PASSED", "a.py"),
        ("FAILED", "b.py"),
        ("PASSED", "sub/c.py"),
    }
    assert console_table_paths(result.stdout) == ["a.py", "b.py", "sub/c.py"]
    assert re.search(r"^b\.py\s+FAILED\s+4\s+\d+\.\d\ds\s+\d+\.\d MB$", result.stdout, re.MULTILINE)
    totals = [line for line in result.stdout.splitlines() if TOTALS.match(line)]
    assert len(totals) == 1 and totals[0].startswith("2 passed, 1 failed in ")
    assert "\x1b[" not in result.stdout


def test_parallel_run_keeps_discovery_order(project: Project) -> None:
    for index, seconds in enumerate((0.8, 0.6, 0.4, 0.2), start=1):
        project.script(f"s{index}.py", f"import time\ntime.sleep({seconds})")
    expected = ["s1.py", "s2.py", "s3.py", "s4.py"]
    result = orch("run", "-j", "4", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_dir_of(result.stdout)
    summary = summary_of(run_dir)
    assert [r["path"] for r in summary["results"]] == expected
    assert markdown_table_paths((run_dir / "report.md").read_text()) == expected
    assert console_table_paths(result.stdout) == expected
    # 2.0 s is the sum of the sleeps: anything well below it ran in parallel.
    assert summary["wall_time"] < 2.0


def test_fail_fast_skips_later_scripts(project: Project) -> None:
    project.script("a.py", "")
    project.script("b.py", "raise SystemExit(1)")
    project.script("c.py", "")
    project.script("d.py", "")
    result = orch("run", "-j", "1", "--fail-fast", project.scripts)
    assert result.returncode == 1
    results = {r["path"]: r for r in summary_of(run_dir_of(result.stdout))["results"]}
    assert [results[p]["status"] for p in ("a.py", "b.py", "c.py", "d.py")] == [
        "passed",
        "failed",
        "skipped",
        "skipped",
    ]
    for path in ("c.py", "d.py"):
        assert "fail-fast" in results[path]["skip_reason"]
        assert "b.py" in results[path]["skip_reason"]


def test_cli_timeout_replaces_default_but_not_script_entry(project: Project) -> None:
    project.script("slow.py", "import time\ntime.sleep(30)")
    project.script("x.py", "import time\ntime.sleep(1.5)")
    project.config(
        """
        default:
          timeout: 30
        scripts:
          x.py:
            timeout: 5
        """
    )
    result = orch("run", "--timeout", "1", "-j", "2", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    run_dir = run_dir_of(result.stdout)
    results = {r["path"]: r for r in summary_of(run_dir)["results"]}
    assert results["slow.py"]["status"] == "timeout"
    assert "1 s" in results["slow.py"]["error"]
    assert results["x.py"]["status"] == "passed"
    assert load_json(run_dir / "logs/slow.py.json")["settings"]["timeout"] == 1.0
    assert load_json(run_dir / "logs/x.py.json")["settings"]["timeout"] == 5.0


def test_dry_run_runs_nothing(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    project.script("x.py", f"open({str(marker)!r}, 'w').close()")
    result = orch("run", "--dry-run", project.scripts)
    assert result.returncode == 0, result.stderr
    assert "x.py" in result.stdout
    assert not marker.exists()
    assert not (project.root / "reports").exists()


@pytest.fixture
def selection_tree(project: Project) -> Project:
    for rel in (
        "top.py",
        "a/x.py",
        "a/x_check.py",
        "a/deep/d.py",
        "a/deep/deeper/e.py",
        "b/y.py",
        "c/z.py",
    ):
        project.script(rel, "")
    return project


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ["a/deep/d.py", "a/x.py", "a/x_check.py", "b/y.py", "c/z.py", "top.py"]),
        (["-k", "*_check.py"], ["a/x_check.py"]),
        (["--pattern", "b/*"], ["b/y.py"]),
        (["--subdirs", "a,b"], ["a/deep/d.py", "a/x.py", "a/x_check.py", "b/y.py"]),
        (["--subdirs", "b", "--subdirs", "c"], ["b/y.py", "c/z.py"]),
        (["--max-depth", "0"], ["top.py"]),
        (["--max-depth", "1"], ["a/x.py", "a/x_check.py", "b/y.py", "c/z.py", "top.py"]),
        (["--max-depth", "3", "--subdirs", "a/deep"], ["a/deep/d.py", "a/deep/deeper/e.py"]),
    ],
)
def test_selection_options(
    selection_tree: Project, options: list[str], expected: list[str]
) -> None:
    result = orch("list", "--json", *options, selection_tree.scripts)
    assert result.returncode == 0, result.stderr
    assert [entry["path"] for entry in json.loads(result.stdout)] == expected


def test_run_uses_selection(selection_tree: Project) -> None:
    result = orch("run", "-k", "x*.py", "--subdirs", "a", selection_tree.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = summary_of(run_dir_of(result.stdout))
    assert list(statuses(summary)) == ["a/x.py", "a/x_check.py"]


def test_config_skipped_scripts_have_skip_reason(project: Project) -> None:
    project.script("a/run.py", "")
    project.script("a/listed.py", "raise SystemExit(1)")
    project.script("b/flagged.py", "raise SystemExit(1)")
    project.config(
        """
        skip: [a/listed.py]
        scripts:
          b/flagged.py:
            skip: true
            skip_reason: broken upstream
        """
    )
    result = orch("run", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = summary_of(run_dir_of(result.stdout))
    results = {r["path"]: r for r in summary["results"]}
    assert results["a/run.py"]["status"] == "passed"
    assert results["a/listed.py"]["status"] == "skipped"
    assert "config.yaml" in results["a/listed.py"]["skip_reason"]
    assert results["b/flagged.py"]["status"] == "skipped"
    assert results["b/flagged.py"]["skip_reason"] == "broken upstream"
    assert summary["totals"]["skipped"] == 2
    assert summary["totals"]["failed"] == 0
    assert summary["subdirectories"]["b"]["skipped"] == 1
    assert summary["subdirectories"]["b"]["failed"] == 0


# -- reports ------------------------------------------------------------------------


def test_reports_default_location_latest_and_unique_run_ids(project: Project) -> None:
    project.script("x.py", "print('x')")
    first = orch("run", project.scripts)
    second = orch("run", project.scripts)
    assert first.returncode == second.returncode == 0
    reports = project.root / "reports"
    one, two = run_dir_of(first.stdout), run_dir_of(second.stdout)
    assert one != two
    assert one.parent == two.parent == reports
    assert summary_of(one)["run_id"] == one.name
    assert summary_of(two)["run_id"] == two.name
    assert (reports / "latest").is_symlink()
    assert (reports / "latest").resolve() == two.resolve()


def test_reports_under_output_dir(project: Project, tmp_path: Path) -> None:
    project.script("x.py", "")
    out = tmp_path / "out"
    result = orch("run", "-o", out, project.scripts)
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(result.stdout)
    assert run_dir.parent == out
    for name in ("summary.json", "report.md", "junit.xml"):
        assert (run_dir / name).is_file()
    assert (out / "latest").resolve() == run_dir.resolve()
    assert not (project.root / "reports").exists()


def test_per_script_log_and_summary_shape(project: Project) -> None:
    lines = [f"line {i}" for i in range(200)]
    project.script(
        "grp/talk.py",
        f"""
        import sys
        for line in {lines!r}:
            print(line)
        print("to stderr", file=sys.stderr)
        raise SystemExit(2)
        """,
    )
    project.script("grp/quiet.py", "")
    project.script("other/skip.py", "")
    project.config("skip: [other]")
    result = orch("run", project.scripts)
    assert result.returncode == 1
    run_dir = run_dir_of(result.stdout)

    log = load_json(run_dir / "logs/grp/talk.py.json")
    assert SUMMARY_KEYS | {"stdout", "stderr", "settings", "stdout_path", "stderr_path"} <= set(log)
    assert log["status"] == "failed" and log["exit_code"] == 2
    assert log["settings"]["timeout"] == 60.0 and log["settings"]["skip"] is False
    assert Path(log["stdout_path"]).read_text() == "".join(f"{line}\n" for line in lines)
    assert Path(log["stderr_path"]).read_text() == "to stderr\n"
    assert (run_dir / "logs/other/skip.py.json").is_file()

    summary = summary_of(run_dir)
    assert summary["run_id"] == run_dir.name
    assert summary["start_time"] <= summary["end_time"]
    assert summary["command"] == ["orch", "run", str(project.scripts)]
    assert summary["totals"] == {"passed": 1, "failed": 1, "timeout": 0, "error": 0, "skipped": 1}
    assert summary["total_time"] >= 0 and summary["wall_time"] > 0
    assert summary["subdirectories"]["grp"]["failed"] == 1
    assert summary["subdirectories"]["grp"]["total"] == 2
    assert summary["subdirectories"]["other"]["skipped"] == 1
    assert summary["subdirectories"]["other"]["failed"] == 0
    for entry in summary["results"]:
        assert set(entry) >= SUMMARY_KEYS
        assert "stdout" not in entry and "stderr" not in entry


def test_log_files_hold_output_beyond_the_in_memory_tail(project: Project) -> None:
    size = 3 * 1024 * 1024 // 2  # more than the 1 MiB kept in the result
    project.script(
        "big.py",
        f"""
        import sys
        sys.stdout.write("first line\\n" + "x" * {size} + "\\nlast line\\n")
        """,
    )
    result = orch("run", project.scripts)
    assert result.returncode == 0, result.stderr
    log = load_json(run_dir_of(result.stdout) / "logs/big.py.json")
    full = Path(log["stdout_path"]).read_text()
    assert full.startswith("first line\n") and full.endswith("\nlast line\n")
    assert len(full) == size + len("first line\n\nlast line\n")
    assert "first line" not in log["stdout"]
    assert log["stdout"].endswith("last line\n")
    # The truncation marker names the full log, by the name it has beside the JSON log.
    assert f"full output in {Path(log['stdout_path']).name} ..." in log["stdout"]


def test_github_step_summary_is_appended(project: Project, tmp_path: Path) -> None:
    project.script("x.py", "")
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(step_summary)}
    first = orch("run", project.scripts, env=env)
    second = orch("run", project.scripts, env=env)
    assert first.returncode == second.returncode == 0
    text = step_summary.read_text()
    assert text.startswith("earlier step\n")
    assert text.count("# Orchestrator run ") == 2
    md1 = (run_dir_of(first.stdout) / "report.md").read_text()
    md2 = (run_dir_of(second.stdout) / "report.md").read_text()
    assert md1 in text and md2 in text
    assert text.index(md1) < text.index(md2)


def test_unwritable_github_step_summary_does_not_crash_the_run(
    project: Project, tmp_path: Path
) -> None:
    project.script("x.py", "")
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "step_summary.md")}
    result = orch("run", project.scripts, env=env)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0
    latest = project.root / "reports" / "latest"
    assert summary_of(latest)["totals"]["passed"] == 1


# -- interrupts -----------------------------------------------------------------------

_SPAWNER = """
import os, subprocess, time
from pathlib import Path
child = subprocess.Popen(["sleep", "60"])
target = Path({pid_dir!r}) / {name!r}
tmp = target.with_suffix(".tmp")
tmp.write_text(f"{{os.getpid()}} {{child.pid}}")
os.replace(tmp, target)
time.sleep(60)
"""


def _start_spawners(project: Project, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start ``orch run -j 3`` on three scripts that each wait on a grandchild."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    for name in ("one", "two", "three"):
        project.script(f"{name}.py", _SPAWNER.format(pid_dir=str(pid_dir), name=name))
    proc = orch_popen("run", "-j", "3", project.scripts)
    if not wait_for(lambda: _all_pids(pid_dir), timeout=20):
        _cleanup(proc, _recorded_pids(pid_dir))
        pytest.fail("the scripts never wrote their pid files")
    return proc, pid_dir


def _all_pids(pid_dir: Path) -> bool:
    return all((pid_dir / name).exists() for name in ("one", "two", "three"))


def _recorded_pids(pid_dir: Path) -> list[int]:
    return [int(p) for f in pid_dir.iterdir() if f.suffix != ".tmp" for p in f.read_text().split()]


def _cleanup(proc: subprocess.Popen[str], pids: list[int]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _assert_interrupted_reports(project: Project, stdout: str) -> None:
    run_dir = run_dir_of(stdout)
    summary = summary_of(run_dir)
    ET.parse(run_dir / "junit.xml")
    assert summary["interrupted"] is True
    assert len(summary["results"]) == 3
    for entry in summary["results"]:
        assert entry["status"] == "error"
        assert entry["error"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_everything_and_writes_reports(
    project: Project, tmp_path: Path, sig: signal.Signals
) -> None:
    proc, pid_dir = _start_spawners(project, tmp_path)
    pids = _recorded_pids(pid_dir)
    try:
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 130, stdout + stderr
        assert [pid for pid in pids if pid_alive(pid)] == []
        assert "Traceback" not in stderr
        _assert_interrupted_reports(project, stdout)
    finally:
        _cleanup(proc, pids)


def test_second_sigint_still_leaves_parseable_reports(project: Project, tmp_path: Path) -> None:
    proc, pid_dir = _start_spawners(project, tmp_path)
    pids = _recorded_pids(pid_dir)
    try:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 130, stdout + stderr
        assert [pid for pid in pids if pid_alive(pid)] == []
        assert "Traceback" not in stderr
        _assert_interrupted_reports(project, stdout)
    finally:
        _cleanup(proc, pids)


def test_two_concurrent_runs_share_an_output_dir(project: Project, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        project.script(f"{name}.py", "import time\ntime.sleep(0.1)\nprint('done')")
    out = tmp_path / "out"
    procs = [orch_popen("run", "-j", "2", "-o", out, project.scripts) for _ in range(2)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    run_dirs = [run_dir_of(stdout) for stdout, _ in outputs]
    assert run_dirs[0] != run_dirs[1]
    for run_dir in run_dirs:
        summary = summary_of(run_dir)
        assert summary["totals"]["passed"] == 3
    assert (out / "latest").resolve() in {d.resolve() for d in run_dirs}


# -- failure output -------------------------------------------------------------------


def test_failure_output_in_markdown_and_console(project: Project) -> None:
    project.script(
        "fence.py",
        """
        for i in range(30):
            print(f"out {i:02d}")
        print("```python")
        print("inside = 1")
        print("```")
        print("`````")
        raise SystemExit(1)
        """,
    )
    project.script("ok.py", "")
    result = orch("run", project.scripts)
    assert result.returncode == 1
    markdown = (run_dir_of(result.stdout) / "report.md").read_text()
    failures = markdown.split("## Failures", 1)[1]
    blocks = re.findall(r"^(`{3,})text\n(.*?)^\1$", failures, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, failures
    fence, body = blocks[0]
    assert len(fence) > 5
    tail = "".join(f"out {i:02d}\n" for i in range(14, 30))
    assert body == tail + "```python\ninside = 1\n```\n`````\n"

    stdout = result.stdout
    table_end = stdout.index("\nok.py ")
    assert stdout.index("FAILED: fence.py") > table_end
    assert stdout.index(tail) > table_end
    assert "`````\n" in stdout
    assert "out 13\n" not in stdout

    verbose = orch("run", "-v", project.scripts)
    assert verbose.returncode == 1
    assert "".join(f"out {i:02d}\n" for i in range(30)) in verbose.stdout


# -- list, docs, report ---------------------------------------------------------------


def test_list_table_and_json(project: Project) -> None:
    project.script("a/x.py", "")
    project.script("b/y.py", "")
    project.script("top.py", "")
    project.config(
        """
        default:
          timeout: 30
        skip: [b/y.py]
        scripts:
          a/x.py:
            timeout: 7
            args: ["--fast", "3"]
        """
    )
    table = orch("list", project.scripts)
    assert table.returncode == 0, table.stderr
    assert re.search(r"^Script\s+Timeout\s+Args\s+Skip\s*$", table.stdout, re.MULTILINE)
    assert re.search(r"^a/x\.py\s+7\s+--fast 3\s*$", table.stdout, re.MULTILINE)
    assert re.search(
        r"^b/y\.py\s+30\s+listed under skip: in config\.yaml\s*$", table.stdout, re.MULTILINE
    )
    assert re.search(r"^top\.py\s+30\s*$", table.stdout, re.MULTILINE)
    assert "3 scripts in" in table.stdout

    listed = orch("list", "--json", project.scripts)
    assert listed.returncode == 0, listed.stderr
    entries = {entry["path"]: entry for entry in json.loads(listed.stdout)}
    assert list(entries) == ["a/x.py", "b/y.py", "top.py"]
    assert entries["a/x.py"]["script"] == str(project.scripts / "a/x.py")
    assert entries["a/x.py"]["settings"]["timeout"] == 7
    assert entries["a/x.py"]["settings"]["args"] == ["--fast", "3"]
    assert entries["b/y.py"]["settings"]["skip"] is True
    assert entries["top.py"]["settings"]["timeout"] == 30
    assert entries["top.py"]["settings"]["skip"] is False


def test_docs_reads_docstrings_without_running(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    project.script(
        "a/x.py",
        f'''
        """Export the widgets.

        Reads the warehouse.
        """
        open({str(marker)!r}, "w").close()
        ''',
    )
    project.script("b/y.py", '"""Check the gadgets."""\n')
    project.script("top.py", "print('no docstring here')\n")
    out = tmp_path / "docs" / "scripts.md"
    result = orch("docs", project.scripts, "-o", out)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    text = out.read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert sorted(headings) == ["(top level)", "a", "b"]
    for rel in ("a/x.py", "b/y.py", "top.py"):
        assert f"`{rel}`" in text
    assert "Export the widgets.\n\nReads the warehouse." in text
    assert "Check the gadgets." in text
    section_b = re.split(r"^## ", text.split("\n## b\n", 1)[1], flags=re.MULTILINE)[0]
    assert "`b/y.py`" in section_b and "Check the gadgets." in section_b
    assert "`a/x.py`" not in section_b


def test_report_rerenders_a_run_and_returns_its_exit_code(project: Project) -> None:
    script = project.script("check.py", "")
    project.script("other.py", "")
    passing = orch("run", project.scripts)
    assert passing.returncode == 0
    script.write_text("raise SystemExit(5)\n")
    failing = orch("run", project.scripts)
    assert failing.returncode == 1
    first, second = run_dir_of(passing.stdout), run_dir_of(failing.stdout)

    again = orch("report", first)
    assert again.returncode == 0, again.stderr
    assert first.name in again.stdout
    assert console_table_paths(again.stdout) == ["check.py", "other.py"]
    assert any(TOTALS.match(line) and "2 passed" in line for line in again.stdout.splitlines())

    latest = orch("report", project.root / "reports")
    assert latest.returncode == 1, latest.stderr
    assert second.name in latest.stdout
    assert any(
        TOTALS.match(line) and line.startswith("1 passed, 1 failed")
        for line in latest.stdout.splitlines()
    )


def test_report_of_a_directory_without_runs_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(orch("report", tmp_path))
    assert "summary.json" in line


# -- version, help, library entry -------------------------------------------------------


def test_version_help_and_module_entry_agree() -> None:
    console_script = Path(sys.executable).with_name("orch")
    by_script = subprocess.run(
        [str(console_script), "--version"], capture_output=True, text=True, env=_env()
    )
    by_module = orch("--version")
    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout == f"orch {orchestrator.__version__}\n"

    helped = orch("--help")
    assert helped.returncode == 0
    codes = re.findall(r"^\s+(\d+)\s+\S", helped.stdout.split("exit codes:", 1)[1], re.MULTILINE)
    assert codes == ["0", "1", "2", "130"]
    run_help = orch("run", "--help")
    assert run_help.returncode == 0 and "130" in run_help.stdout


def test_run_orchestrator_in_process(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.script("x.py", "print('x')")
    project.script("y.py", "raise SystemExit(1)")
    code = run_orchestrator(["run", "--no-color", str(project.scripts)])
    assert code == 1 and isinstance(code, int)
    assert "1 passed, 1 failed" in capsys.readouterr().out


def test_run_orchestrator_is_exported_from_the_package(project: Project) -> None:
    project.script("x.py", "")
    code = orchestrator.run_orchestrator(["run", "--no-color", str(project.scripts)])
    assert code == 0


# -- a new user's first commands (issue 10) ------------------------------------------


def _nested(tmp_path: Path) -> Project:
    """A repository whose project lives in a subfolder, like the shipped ``examples/``."""
    (tmp_path / ".git").mkdir()
    sample = Project(tmp_path / "examples")
    sample.script("data/check.py", "import demo_lib\nopen('data/numbers.csv').read()\n")
    sample.script("other.py", "")
    (sample.root / "src" / "demo_lib").mkdir(parents=True)
    (sample.root / "src" / "demo_lib" / "__init__.py").write_text("VALUE = 1\n")
    (sample.root / "data").mkdir()
    (sample.root / "data" / "numbers.csv").write_text("1\n")
    sample.config("scripts:\n  data/check.py: {watch: [data/numbers.csv]}\n")
    return sample


def test_deps_finds_the_project_from_the_path_typed(tmp_path: Path) -> None:
    _nested(tmp_path)
    forward = orch("deps", "examples/scripts/data/check.py", cwd=tmp_path)
    assert forward.returncode == 0, forward.stderr
    assert forward.stdout.splitlines() == [
        "data/check.py",
        "  static  scripts/data/check.py",
        "  static  src/demo_lib/__init__.py",
        "  watch   data/numbers.csv",
        "  config  scripts/config.yaml",
        "  no trace yet: static inputs only until it runs",
    ]
    reverse = orch("deps", "--reverse", "examples/src/demo_lib/__init__.py", cwd=tmp_path)
    assert reverse.returncode == 0, reverse.stderr
    assert reverse.stdout.splitlines() == ["data/check.py"]


def test_deps_reverse_of_the_config_lists_the_scripts_it_sets(tmp_path: Path) -> None:
    _nested(tmp_path)
    result = orch("deps", "--reverse", "examples/scripts/config.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["data/check.py"]  # it sets nothing of other.py's
    config = tmp_path / "examples" / "scripts" / "config.yaml"
    config.write_text(config.read_text() + "default: {timeout: 30}\n")
    result = orch("deps", "--reverse", "examples/scripts/config.yaml", cwd=tmp_path)
    assert result.stdout.splitlines() == ["data/check.py", "other.py"]
    # A config file that is not the one in force sets nothing.
    (tmp_path / "examples" / "config.yaml").write_text("default: {timeout: 5}\n")
    shadowed = orch("deps", "--reverse", "examples/config.yaml", cwd=tmp_path)
    assert shadowed.returncode == 0
    assert shadowed.stdout == ""
    assert "no script depends on config.yaml" in shadowed.stderr


def test_commands_that_cannot_find_scripts_name_their_own_option(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "tool.py").write_text("")
    deps = orch("deps", "tool.py", cwd=tmp_path)
    envs = orch("envs", "list", cwd=tmp_path)
    listed = orch("list", cwd=tmp_path)
    for result, hint in (
        (deps, "with -d, e.g. `orch deps -d tools/ FILE`"),
        (envs, "e.g. `orch envs list tools/`"),
        (listed, "e.g. `orch list tools/`"),
    ):
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("orch: error: "), result.stderr
        assert hint in lines[0]
        assert "Traceback" not in result.stderr
    assert "orch run" not in deps.stderr + envs.stderr


def test_envs_finds_the_project_from_a_script_path(tmp_path: Path) -> None:
    sample = _nested(tmp_path)
    result = orch("envs", "list", "examples/scripts/other.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"in {sample.root / '.orchestrator' / 'envs'}" in result.stdout


def test_a_scripts_folder_named_reports_is_run_and_listed(project: Project) -> None:
    project.script("reports/generate_coverage_report.py", "")
    project.script("a/b/c/too_deep.py", "")
    project.script("pkg/__init__.py", "")
    listed = orch("list", project.scripts)
    assert listed.returncode == 0, listed.stderr
    assert "reports/generate_coverage_report.py" in listed.stdout
    left_out = [line for line in listed.stdout.splitlines() if line.startswith("not listed:")]
    assert left_out == ["not listed: 1 __init__.py (not a script), 1 files below --max-depth 2"], (
        listed.stdout
    )
    result = orch("run", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    # The project's own reports folder holds no script, but it is never searched either.
    assert statuses(summary_of(run_dir_of(result.stdout))) == {
        "reports/generate_coverage_report.py": "passed"
    }


def test_the_reports_folder_is_pruned_wherever_it_is(project: Project) -> None:
    project.script("x.py", "")
    project.script("out/stray.py", "")
    listed = orch("list", project.scripts)
    assert "out/stray.py" in listed.stdout  # an ordinary folder, until it holds the reports
    run = orch("run", "-o", project.scripts / "out", project.scripts)
    assert run.returncode == 0, run.stdout + run.stderr
    assert statuses(summary_of(run_dir_of(run.stdout))) == {"x.py": "passed"}


def test_one_path_form_in_every_output(project: Project) -> None:
    project.script("data/check.py", "raise SystemExit(3)")
    project.script("top.py", "print('hi')")
    forms = {"data/check.py", "top.py"}
    run = orch("run", project.scripts)
    assert run.returncode == 1
    progress = {m[4] for m in map(PROGRESS.match, run.stdout.splitlines()) if m}
    assert progress == forms
    assert set(console_table_paths(run.stdout)) == forms
    assert "FAILED: data/check.py (" in run.stdout
    run_dir = run_dir_of(run.stdout)
    assert set(markdown_table_paths((run_dir / "report.md").read_text())) == forms
    junit = ET.parse(run_dir / "junit.xml").getroot()
    assert {case.get("name") for case in junit.iter("testcase")} == forms
    listed = orch("list", project.scripts)
    assert {line.split()[0] for line in listed.stdout.splitlines()[2:4]} == forms
    dry = orch("run", "--dry-run", project.scripts)
    assert {line.split()[0] for line in dry.stdout.splitlines()[2:4]} == forms
    # Each path works as typed into -k.
    for form in forms:
        picked = orch("run", "-k", form, "--dry-run", project.scripts)
        assert "1 of 1 scripts would run" in picked.stdout, picked.stdout


def test_report_prints_a_run_as_the_run_printed_it(project: Project) -> None:
    project.script("a.py", "import sys\nprint('out')\nsys.exit(2)")
    project.script("b.py", "")
    project.config("skip: [c.py]\n")
    project.script("c.py", "")
    run = orch("run", project.scripts)
    assert run.returncode == 1
    report = orch("report", run_dir_of(run.stdout))
    assert report.returncode == 1
    # No header the run never printed: from its table to its reports line, the same.
    assert report.stdout == run.stdout[run.stdout.index("Script ") :], report.stdout


@pytest.mark.parametrize("pattern", ["[z-a]*", "x[/]y"])
def test_an_invalid_k_glob_is_one_line_naming_the_option(project: Project, pattern: str) -> None:
    project.script("a.py", "")
    result = orch("run", "-k", pattern, project.scripts)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "-k/--pattern" in lines[0] and pattern in lines[0]


def test_timeouts_at_j4_never_kill_a_sibling_or_orch(project: Project) -> None:
    for i in range(40):
        project.script(f"q{i:02d}.py", f"print({i})\n")
    for i in range(6):
        project.script(f"s{i}.py", "import time\ntime.sleep(100)\n")
    for _ in range(3):
        done = project.orch("run", "-j4", "--timeout", "0.3", "scripts")
        assert done.returncode == 1, done.stdout + done.stderr  # the timeouts, not an interrupt
        summary = json.loads((project.root / "reports" / "latest" / "summary.json").read_text())
        statuses = {r["path"]: r["status"] for r in summary["results"]}
        assert [p for p, s in statuses.items() if s != "passed"] == [f"s{i}.py" for i in range(6)]
        assert all(s == "timeout" for p, s in statuses.items() if p.startswith("s"))
        assert not any(r.get("escaped") for r in summary["results"])


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "604801", "0", "-1", "soon"])
def test_a_timeout_outside_the_configs_bounds_is_one_usage_line(
    project: Project, value: str
) -> None:
    project.script("a.py", "print('a')\n")
    done = project.orch("run", "--timeout", value, "scripts")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "--timeout" in lines[-1] and repr(value) in lines[-1], done.stderr


@pytest.mark.parametrize("key", ["env", "args"])
def test_a_nul_byte_in_env_or_args_is_one_line_naming_the_key(project: Project, key: str) -> None:
    project.script("a.py", "print('a')\n")
    value = '{X: "a\\0b"}' if key == "env" else '["a\\0b"]'
    project.config(f"scripts:\n  a.py: {{{key}: {value}}}\n")
    done = project.orch("run", "scripts")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "NUL" in lines[0], done.stderr


def test_a_reader_that_leaves_stops_the_console_not_the_run(project: Project) -> None:
    for i in range(6):
        project.script(f"s{i}.py", "import time\ntime.sleep(0.2)\nprint('done')\n")
    command = f"{sys.executable} -m orchestrator run -j2 scripts | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=project.root,
        env=ORCH_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr  # the run's own code, all passed
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert len(done.stdout.splitlines()) == 1
    run_dir = (project.root / "reports" / "latest").resolve()
    for name in ("summary.json", "report.md", "junit.xml"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["totals"]["passed"] == 6 and not summary["interrupted"]


def test_envs_clean_takes_its_folder_after_all(project: Project) -> None:
    project.script("a.py", "")
    for argv in (("envs", "clean", "--all", "scripts"), ("envs", "clean", "scripts", "--all")):
        done = project.orch(*argv)
        assert done.returncode == 0, done.stderr
        assert "removed 0 environment(s)" in done.stdout


def test_the_graph_shows_a_config_skipped_script_as_skipped(project: Project) -> None:
    project.script("a.py", "")
    project.script("b.py", "")
    project.config("skip: [b.py]\n")
    text = project.orch("list", "--graph", "scripts").stdout
    assert re.search(r"^2\. b\.py  \(skipped: listed under skip: in config\.yaml\)$", text, re.M)
    mermaid = project.orch("list", "--graph", "--format", "mermaid", "scripts").stdout
    assert '["b.py (skipped)"]' in mermaid


def test_a_listing_cut_short_by_its_reader_is_no_traceback(project: Project) -> None:
    for i in range(300):
        project.script(f"s{i:03d}.py", "")
    for listing in ("list", "list --json"):
        command = f"{sys.executable} -m orchestrator {listing} scripts | head -1"
        done = subprocess.run(
            ["bash", "-c", command], cwd=project.root, env=ORCH_ENV, capture_output=True, text=True
        )
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("inherited", "code"),
    [(signal.SIG_DFL, 130), (signal.SIG_IGN, 0)],
    ids=["from-a-terminal", "under-nohup"],
)
def test_sighup_ends_a_run_as_sigterm_does_unless_ignored(
    project: Project, tmp_path: Path, inherited: signal.Handlers, code: int
) -> None:
    started = tmp_path / "started"
    project.script("slow.py", f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(2)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "scripts"],
        cwd=project.root,
        env=ORCH_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGHUP as a terminal leaves it, or as nohup does, whatever the tests run under.
        preexec_fn=lambda: signal.signal(signal.SIGHUP, inherited),
    )
    assert wait_for(started.exists, 20)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, out + err
    summary = json.loads((project.root / "reports" / "latest" / "summary.json").read_text())
    assert summary["interrupted"] is (code == 130)
    assert summary["results"][0]["status"] == ("error" if code == 130 else "passed")
