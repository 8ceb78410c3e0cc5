"""Scripts run as a workflow: depends_on, retries, fail-fast and graphs, through real ``orch``."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, wait_for


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["NO_COLOR"] = "1"
    return env


def orch(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orchestrator ARGS`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dir_of(result: subprocess.CompletedProcess[str]) -> Path:
    """The run directory the console summary names on its ``reports:`` line."""
    match = re.search(r"^reports: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    return Path(match.group(1))


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir_of(result) / "summary.json").read_text())
    return data


def by_path(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in summary["results"]}


def statuses(summary: Mapping[str, Any]) -> dict[str, str]:
    return {r["path"]: r["status"] for r in summary["results"]}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def counting_script(counter: Path, fail_until: int) -> str:
    """A script that counts its runs in ``counter`` and fails the first ``fail_until``."""
    return f"""
        from pathlib import Path
        counter = Path({str(counter)!r})
        runs = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(runs))
        raise SystemExit(1 if runs <= {fail_until} else 0)
        """


def _prep_and_report(project: Project, marker: Path) -> None:
    project.script(
        "prep.py",
        f"""
        import time
        from pathlib import Path
        time.sleep(0.3)
        Path({str(marker)!r}).write_text("ready")
        """,
    )
    project.script(
        "report.py",
        f"""
        from pathlib import Path
        assert Path({str(marker)!r}).read_text() == "ready"
        """,
    )
    project.config("scripts:\n  report.py: {depends_on: [prep.py]}\n")


# -- depends_on -----------------------------------------------------------------------


def test_dependent_starts_after_its_dependency_ended(project: Project, tmp_path: Path) -> None:
    _prep_and_report(project, tmp_path / "marker")
    result = orch("run", "-j", "4", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    results = by_path(summary_of(result))
    assert {p: r["status"] for p, r in results.items()} == {
        "prep.py": "passed",
        "report.py": "passed",
    }
    prep_end = datetime.fromisoformat(results["prep.py"]["end_time"])
    report_start = datetime.fromisoformat(results["report.py"]["start_time"])
    assert report_start >= prep_end


def test_selecting_a_script_also_runs_its_dependencies(project: Project, tmp_path: Path) -> None:
    _prep_and_report(project, tmp_path / "marker")
    project.script("unrelated.py", "raise SystemExit(1)")
    result = orch("run", "-k", "report.py", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "also running prep.py" in result.stdout
    summary = summary_of(result)
    assert statuses(summary) == {"prep.py": "passed", "report.py": "passed"}
    assert any("also running prep.py" in note for note in summary["notes"])


def test_failed_script_skips_its_dependents(project: Project, tmp_path: Path) -> None:
    project.script("bad.py", "raise SystemExit(3)")
    project.script("child.py", f"open({str(tmp_path / 'child-ran')!r}, 'w')")
    project.script("grandchild.py", "")
    project.script("free.py", "")
    project.config(
        """
        scripts:
          child.py: {depends_on: [bad.py]}
          grandchild.py: {depends_on: [child.py]}
        """
    )
    result = orch("run", "-j", "2", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    results = by_path(summary_of(result))
    assert {p: r["status"] for p, r in results.items()} == {
        "bad.py": "failed",
        "child.py": "skipped",
        "free.py": "passed",
        "grandchild.py": "skipped",
    }
    for path in ("child.py", "grandchild.py"):
        assert "dependency 'bad.py' failed" in results[path]["skip_reason"]
    assert not (tmp_path / "child-ran").exists()


def test_config_skipped_script_skips_its_dependents(project: Project) -> None:
    project.script("off.py", "raise SystemExit(1)")
    project.script("needs_off.py", "raise SystemExit(1)")
    project.script("ok.py", "")
    project.config(
        """
        skip: [off.py]
        scripts:
          needs_off.py: {depends_on: [off.py]}
        """
    )
    result = orch("run", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    results = by_path(summary_of(result))
    assert {p: r["status"] for p, r in results.items()} == {
        "needs_off.py": "skipped",
        "off.py": "skipped",
        "ok.py": "passed",
    }
    assert "off.py" in results["needs_off.py"]["skip_reason"]


# -- retries --------------------------------------------------------------------------


def test_flaky_script_passes_on_retry(project: Project, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    project.script("flaky.py", counting_script(counter, fail_until=1))
    project.script("steady.py", "")
    project.config("scripts:\n  flaky.py: {retries: 2, retry_delay: 0.1}\n")
    result = orch("run", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counter.read_text() == "2"
    assert "[retry] flaky.py" in result.stdout
    results = by_path(summary_of(result))
    assert results["flaky.py"]["status"] == "passed"
    assert results["flaky.py"]["attempts"] == 2
    # A pass on a retry is evidence: the same inputs failed, then passed.
    assert results["flaky.py"]["flaky"]["passes"] == 1
    assert results["flaky.py"]["flaky"]["failures"] == 1
    assert results["steady.py"]["attempts"] == 1
    assert "flaky" not in results["steady.py"]
    report = (run_dir_of(result) / "report.md").read_text()
    flaky_section = report.split("## Flaky", 1)[1].split("\n## ", 1)[0]
    assert "`flaky.py`" in flaky_section
    assert "steady.py" not in flaky_section


def test_script_that_always_fails_uses_up_its_retries(project: Project, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    project.script("broken.py", counting_script(counter, fail_until=99))
    project.config("scripts:\n  broken.py: {retries: 1, retry_delay: 0}\n")
    result = orch("run", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    assert counter.read_text() == "2"
    broken = by_path(summary_of(result))["broken.py"]
    assert broken["status"] == "failed"
    assert broken["attempts"] == 2
    assert "flaky" not in broken
    assert "## Flaky" not in (run_dir_of(result) / "report.md").read_text()


def test_retry_on_timeout_does_not_retry_a_failure(project: Project, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    project.script("broken.py", counting_script(counter, fail_until=99))
    project.config("scripts:\n  broken.py: {retries: 3, retry_delay: 0, retry_on: [timeout]}\n")
    result = orch("run", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    assert counter.read_text() == "1"
    broken = by_path(summary_of(result))["broken.py"]
    assert (broken["status"], broken["attempts"]) == ("failed", 1)


# -- fail-fast ------------------------------------------------------------------------


def test_fail_fast_skips_later_scripts(project: Project, tmp_path: Path) -> None:
    project.script("a_fails.py", "raise SystemExit(1)")
    for name in ("b.py", "c.py"):
        project.script(name, f"open({str(tmp_path / name)!r}, 'w')")
    result = orch("run", "-j", "1", "--fail-fast", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    results = by_path(summary_of(result))
    assert results["a_fails.py"]["status"] == "failed"
    for name in ("b.py", "c.py"):
        assert results[name]["status"] == "skipped"
        assert "fail-fast" in results[name]["skip_reason"]
        assert not (tmp_path / name).exists()


# -- configuration errors -------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "list"])
def test_dependency_cycle_is_one_line(project: Project, command: str) -> None:
    for name in ("a.py", "b.py", "c.py"):
        project.script(name, "")
    project.config(
        """
        scripts:
          a.py: {depends_on: [b.py]}
          b.py: {depends_on: [c.py]}
          c.py: {depends_on: [a.py]}
        """
    )
    line = one_error_line(orch(command, project.scripts))
    assert "config.yaml" in line
    rotations = ["a.py -> b.py -> c.py -> a.py", "b.py -> c.py -> a.py -> b.py"]
    rotations.append("c.py -> a.py -> b.py -> c.py")
    assert any(path in line for path in rotations), line
    assert not (project.root / "reports").exists()


def test_two_script_cycle_shows_the_path(project: Project) -> None:
    project.script("a.py", "")
    project.script("b.py", "")
    project.config("scripts:\n  a.py: {depends_on: [b.py]}\n  b.py: {depends_on: [a.py]}\n")
    line = one_error_line(orch("run", project.scripts))
    assert "a.py -> b.py -> a.py" in line or "b.py -> a.py -> b.py" in line


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("{depends_on: [nope.py]}", "nope.py"),
        ("{retries: -1}", "retries"),
        ("{retry_on: [error]}", "retry_on"),
    ],
)
def test_invalid_workflow_settings_are_one_line(
    project: Project, settings: str, expected: str
) -> None:
    project.script("a.py", "")
    project.config(f"scripts:\n  a.py: {settings}\n")
    line = one_error_line(orch("run", project.scripts))
    assert "config.yaml" in line
    assert expected in line
    assert not (project.root / "reports").exists()


# -- graphs ---------------------------------------------------------------------------


def _diamond(project: Project) -> None:
    for name in ("fetch.py", "clean.py", "stats.py", "publish.py"):
        project.script(name, "")
    project.config(
        """
        scripts:
          clean.py: {depends_on: [fetch.py]}
          stats.py: {depends_on: [fetch.py]}
          publish.py: {depends_on: [clean.py, stats.py]}
        """
    )


def test_list_graph_text(project: Project) -> None:
    _diamond(project)
    result = orch("list", "--graph", project.scripts)
    assert result.returncode == 0, result.stderr
    steps, makespan = result.stdout.split("\n\n")
    # No history: each script counts 1 s, one at a time.
    assert makespan.startswith("estimated makespan at -j1: 4.00 s")
    lines = steps.splitlines()
    order = [re.match(r"^\s*\d+\. (\S+)", line)[1] for line in lines]  # type: ignore[index]
    assert sorted(order) == ["clean.py", "fetch.py", "publish.py", "stats.py"]
    assert order[0] == "fetch.py"
    assert order[-1] == "publish.py"
    publish = next(line for line in lines if "publish.py" in line.split()[1])
    assert "clean.py" in publish and "stats.py" in publish
    fetch = next(line for line in lines if "fetch.py" in line.split()[1])
    assert "after" not in fetch


def test_list_graph_mermaid(project: Project) -> None:
    _diamond(project)
    result = orch("list", "--graph", "--format", "mermaid", project.scripts)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart")
    ids = dict(re.findall(r'^\s*(\w+)\["([^"]+)"\]', result.stdout, re.MULTILINE))
    edges = {(ids[a], ids[b]) for a, b in re.findall(r"(\w+) --> (\w+)", result.stdout)}
    assert edges == {
        ("fetch.py", "clean.py"),
        ("fetch.py", "stats.py"),
        ("clean.py", "publish.py"),
        ("stats.py", "publish.py"),
    }


# -- result records -------------------------------------------------------------------


def test_every_log_and_result_has_attempts_and_flaky_only_with_evidence(
    project: Project, tmp_path: Path
) -> None:
    project.script("pass.py", "")
    project.script("fail.py", "raise SystemExit(1)")
    project.script("sub/after_fail.py", "")
    project.script("off.py", "")
    project.script("slow.py", "import time\ntime.sleep(30)")
    project.script("flaky.py", counting_script(tmp_path / "runs", fail_until=1))
    project.config(
        """
        skip: [off.py]
        scripts:
          sub/after_fail.py: {depends_on: [fail.py]}
          slow.py: {timeout: 0.3}
          flaky.py: {retries: 1, retry_delay: 0}
        """
    )
    result = orch("run", "-j", "3", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = summary_of(result)
    assert statuses(summary) == {
        "fail.py": "failed",
        "flaky.py": "passed",
        "off.py": "skipped",
        "pass.py": "passed",
        "slow.py": "timeout",
        "sub/after_fail.py": "skipped",
    }
    logs = sorted((run_dir_of(result) / "logs").rglob("*.json"))
    assert len(logs) == len(summary["results"])
    records = [json.loads(log.read_text()) for log in logs] + summary["results"]
    for record in records:
        assert isinstance(record["attempts"], int), record
        assert record.get("flaky") is None or set(record["flaky"]) == {
            "passes",
            "failures",
            "since",
        }, record
    flaky = [r for r in records if r.get("flaky")]
    assert {r["path"] for r in flaky} == {"flaky.py"}


# -- interrupts, retries and usage errors found in review -------------------------------


def test_retry_on_failed_does_not_retry_a_timeout(project: Project) -> None:
    project.script("slow.py", "import time\ntime.sleep(5)\n")
    project.config(
        """
        scripts:
          slow.py: {timeout: 0.5, retries: 2, retry_delay: 0.1, retry_on: [failed]}
        """
    )
    result = orch("run", project.scripts)
    (entry,) = summary_of(result)["results"]
    assert (entry["status"], entry["attempts"]) == ("timeout", 1)


def test_ctrl_c_is_not_followed_by_a_retry(project: Project, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    project.script(
        "slow.py",
        f"import time\nopen({str(starts)!r}, 'a').write('x')\ntime.sleep(20)\n",
    )
    project.config("scripts:\n  slow.py: {retries: 2, retry_delay: 0.2}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(project.scripts)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_for(lambda: starts.exists(), 10)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 130
    # orch has exited, and nothing of its run outlives it: no restart can come later.
    assert starts.read_text() == "x", "the interrupted script was started again"
    assert "[retry]" not in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--run-id", "../escape"), "--run-id"),
        (("--subdirs", "nope"), "nope"),
        (("-o", "/proc/no-such-place"), "/proc/no-such-place"),
    ],
)
def test_bad_run_options_are_usage_errors(
    project: Project, args: tuple[str, ...], needle: str
) -> None:
    project.script("x.py", "")
    result = orch("run", project.scripts, *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_of_a_malformed_summary_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"results": 3}')
    result = orch("report", tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_changed_dry_run_lists_only_what_would_run(project: Project) -> None:
    project.script("a.py", "")
    project.script("b.py", "")
    assert orch("run", project.scripts).returncode == 0
    project.script("b.py", "x = 2\n")
    result = orch("run", project.scripts, "--changed", "--dry-run")
    assert result.returncode == 0
    assert "1 of 2 scripts would run" in result.stdout
    assert "up-to-date" in result.stdout


def test_reports_are_readable_by_others(project: Project) -> None:
    project.script("x.py", "")
    run_dir = run_dir_of(orch("run", project.scripts))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("summary.json", "report.md", "junit.xml", "logs/x.py.json"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_library_reporter_hears_every_event_as_a_value(project: Project) -> None:
    """execute() tells reporters typed values: ScriptStarted, then ScriptResults."""
    from orchestrator.execution import execute
    from orchestrator.plan import RunOptions, build_plan
    from orchestrator.reporting import Reporter, RunInfo, ScriptStarted
    from orchestrator.results import ScriptResult, Status

    project.script("ok.py", "")
    project.script("flaky.py", "raise SystemExit(1)")
    project.config("scripts:\n  flaky.py: {retries: 1, retry_delay: 0}\n")
    heard: list[tuple[str, Any]] = []

    class Listener(Reporter):
        def script_started(self, started: ScriptStarted) -> None:
            heard.append(("started", started))

        def script_retrying(self, result: ScriptResult, attempt: int, delay: float) -> None:
            heard.append(("retrying", (result, attempt)))

        def script_finished(self, result: ScriptResult) -> None:
            heard.append(("finished", result))

        def run_finished(self, run: RunInfo, results: Any) -> None:
            heard.append(("run", list(results)))

    options = RunOptions(scripts_dir=project.scripts, output_dir=project.root / "out")
    outcome = execute(build_plan(options), options, [Listener()])
    kinds = [kind for kind, _ in heard]
    assert kinds.count("started") == 2 and kinds.count("retrying") == 1 and kinds[-1] == "run"
    started = {value.path for kind, value in heard if kind == "started"}
    assert started == {"ok.py", "flaky.py"}
    retried, attempt = next(value for kind, value in heard if kind == "retrying")
    assert (retried.path, retried.status, attempt) == ("flaky.py", Status.FAILED, 1)
    finished = {v.path: v for kind, v in heard if kind == "finished"}
    assert finished["flaky.py"].attempts == 2 and finished["ok.py"].ok
    assert heard[-1][1] == outcome.results and outcome.exit_code == 1


def test_without_a_root_marker_scripts_run_in_the_current_directory(unmarked: Path) -> None:
    """As run_script alone does: no root found, so no src/ on PYTHONPATH and cwd as is."""
    scripts = unmarked / "loose" / "scripts"
    scripts.mkdir(parents=True)
    (unmarked / "loose" / "src").mkdir()
    out = unmarked / "seen.txt"
    (scripts / "where.py").write_text(
        "import os, sys\n"
        f"open({str(out)!r}, 'w').write(os.getcwd() + '\\n' + os.environ.get('PYTHONPATH', ''))\n"
    )
    here = unmarked / "elsewhere"
    here.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(scripts), "-o", str(unmarked / "r")],
        cwd=here,
        env={k: v for k, v in _env().items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cwd, pythonpath = out.read_text().split("\n")
    assert cwd == str(here)
    assert "loose" not in pythonpath


def test_a_thousand_scripts_are_all_reported_in_bounded_memory(project: Project) -> None:
    # orch's side of the scale: each script's "interpreter" is /bin/true, so the test
    # pays for orch's work, not for Python start-ups. The 10,000-script run, against
    # 200 scaled linearly and with real Python, is benchmarks/scale.py.
    count = 1_000
    for i in range(count):
        folder = project.scripts / f"d{i // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"s{i:05d}.py").write_text("x = 1\n")
    probe = (
        "import re, sys\n"
        "from orchestrator import run_orchestrator\n"
        "code = run_orchestrator(['run', '-q', '-j2', '--python', '/bin/true', 'scripts'])\n"
        "status = open('/proc/self/status').read()\n"
        "print(code, re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    code, peak_kib = map(int, done.stdout.split()[-2:])
    print(f"orch's peak memory on {count} scripts: {peak_kib / 1024:.1f} MB")
    assert code == 0, done.stdout[-2000:]
    run_dir = (project.root / "reports" / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["totals"]["passed"] == count and len(summary["results"]) == count
    assert len({r["path"] for r in summary["results"]}) == count
    assert sum(1 for _ in (run_dir / "logs").rglob("*.json")) == count
    assert peak_kib < 200 * 1024, f"orch's peak memory {peak_kib} KiB"


def test_a_parallel_run_starts_the_longest_recorded_chain_first(project: Project) -> None:
    for i in range(4):
        project.script(f"a{i}.py", "import time\ntime.sleep(0.05)\n")
    project.script("y_long.py", "import time\ntime.sleep(0.4)\n")
    project.script("z_after.py", "import time\ntime.sleep(0.05)\n")
    project.script("z_before.py", "import time\ntime.sleep(0.05)\n")
    # Without history every script counts alike: the chain of two goes first.
    project.config("scripts:\n  z_after.py: {depends_on: [z_before.py]}\n")

    def starts(result: subprocess.CompletedProcess[str]) -> list[str]:
        results = summary_of(result)["results"]
        return [r["path"] for r in sorted(results, key=lambda r: r["start_time"])]

    first = orch("run", "-j2", project.scripts)
    assert first.returncode == 0, first.stdout + first.stderr
    # Two slots start together: the first two, in either order.
    assert set(starts(first)[:2]) == {"z_before.py", "a0.py"}
    graph = orch("list", "--graph", "-j2", project.scripts)
    assert graph.stdout.splitlines()[0] == "1. y_long.py"
    assert "estimated makespan at -j2:" in graph.stdout
    second = orch("run", "-j2", project.scripts)
    assert second.returncode == 0, second.stdout + second.stderr
    # Recorded, y_long.py is the longest chain: it starts first now.
    # The second slot's pick hangs on the short scripts' recorded times: not asserted.
    assert "y_long.py" in starts(second)[:2]
    one_at_a_time = orch("run", "-j1", project.scripts)
    assert starts(one_at_a_time)[:2] == ["a0.py", "a1.py"]  # -j1 keeps the declared order


def test_trace_json_has_a_bar_per_script_on_lanes_that_never_overlap(project: Project) -> None:
    for i in range(5):
        project.script(f"s{i}.py", "import time\ntime.sleep(0.2)\n")
    project.script("t:ail#;.py", "import time\ntime.sleep(0.2)\n")
    project.config("scripts:\n  't:ail#;.py': {depends_on: [s4.py]}\n")
    result = orch("run", "-j2", project.scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_dir_of(result)
    trace = json.loads((run_dir / "trace.json").read_text())
    bars = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert sorted(b["name"] for b in bars) == sorted(
        ["s0.py", "s1.py", "s2.py", "s3.py", "s4.py", "t:ail#;.py"]
    )
    assert {b["tid"] for b in bars} == {1, 2}  # two slots, as -j2
    for lane in (1, 2):
        spans = sorted((b["ts"], b["ts"] + b["dur"]) for b in bars if b["tid"] == lane)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    for bar in bars:
        assert bar["dur"] >= 150_000 and bar["args"]["status"] == "passed"
        assert bar["args"]["exit_code"] == 0 and bar["args"]["attempts"] == 1
        assert bar["args"]["peak_memory_mb"] > 0
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert names == {"slot 1", "slot 2"}

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["longest_chain"] == ["s4.py", "t:ail#;.py"]
    assert summary["jobs"] == 2 and 0.5 < summary["parallel_efficiency"] <= 1.0
    markdown = (run_dir / "report.md").read_text()
    assert "parallel efficiency" in markdown and "at -j2" in markdown
    chart = markdown.split("```mermaid\n", 1)[1].split("```", 1)[0]
    bars_drawn = [line for line in chart.splitlines() if line.startswith("    ") and ", " in line]
    assert [line.split(" : ")[0].strip() for line in bars_drawn] == ["s4.py", "t_ail__.py"]


def test_memory_limit_mb_stops_only_the_script_that_goes_over(project: Project) -> None:
    project.script(
        "greedy.py",
        "block = bytearray(400 * 1024 * 1024)\nfor i in range(0, len(block), 4096):\n"
        "    block[i] = 1\n",
    )
    project.script("other.py", "print('fine')\n")
    project.config("scripts:\n  greedy.py: {memory_limit_mb: 150}\n")
    result = orch("run", "-j2", project.scripts)
    assert result.returncode == 1, result.stdout + result.stderr
    by_path = {r["path"]: r for r in summary_of(result)["results"]}
    assert by_path["greedy.py"]["status"] == "failed"
    assert by_path["greedy.py"]["error"] == "memory limit of 150 MB exceeded"
    assert by_path["other.py"]["status"] == "passed"

    project.config("scripts:\n  greedy.py: {memory_limit_mb: 0}\n")
    bad = orch("run", project.scripts)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "memory_limit_mb" in bad.stderr and "greater than 0" in bad.stderr
