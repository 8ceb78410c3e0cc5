"""reporting: summaries, the report files, JUnit XML, Markdown, per-script logs, load_run."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import Project
from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite

from orchestrator import run_script
from orchestrator.reporting import summarize
from orchestrator.reports import as_results, generate_report, load_run, render_markdown, save_log
from orchestrator.results import STATUSES


def result(
    path: str,
    status: str,
    *,
    stdout: str = "",
    stderr: str = "",
    error: str | None = None,
    exit_code: int | None = 0,
    execution_time: float = 0.5,
    **extra: Any,
) -> dict[str, Any]:
    """A hand-made result dict with the keys run_script returns."""
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    return {
        "script": f"/proj/scripts/{path}",
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "subdirectory": parent,
        "start_time": "2024-05-01T10:00:00+00:00",
        "end_time": "2024-05-01T10:00:01+00:00",
        "status": status,
        "exit_code": exit_code,
        "execution_time": execution_time,
        "stdout": stdout,
        "stderr": stderr,
        "error": error,
        **extra,
    }


@pytest.fixture
def results() -> list[dict[str, Any]]:
    return [
        result("a/ok.py", "passed", stdout="fine\n"),
        result(
            "a/bad.py",
            "failed",
            stdout="partial\n",
            stderr="Traceback: boom\n",
            error="exit code 1 (allowed: [0])",
            exit_code=1,
            execution_time=1.25,
        ),
        result("b/slow.py", "timeout", error="timed out after 2 s", exit_code=None, stderr="zz\n"),
        result("b/broken.py", "error", error="interrupted", exit_code=None, execution_time=0.0),
        result(
            "skipme.py",
            "skipped",
            exit_code=None,
            execution_time=0.0,
            skip_reason="listed under skip: in config.yaml",
        ),
    ]


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CI runner sets it; these tests must not append to the real job summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def test_summarize_counts(results: list[dict[str, Any]]) -> None:
    summary = summarize(as_results(results))
    assert summary["total"] == 5
    assert summary["totals"] == {"passed": 1, "failed": 1, "timeout": 1, "error": 1, "skipped": 1}
    assert list(summary["subdirectories"]) == [".", "a", "b"]
    assert summary["subdirectories"]["a"] == {
        "passed": 1,
        "failed": 1,
        "timeout": 0,
        "error": 0,
        "skipped": 0,
        "total": 2,
    }
    assert summary["subdirectories"]["."]["skipped"] == 1
    assert summary["subdirectories"]["."]["failed"] == 0
    assert summary["subdirectories"]["b"]["total"] == 2
    assert summary["total_time"] == pytest.approx(0.5 + 1.25 + 0.5)


def test_summarize_empty() -> None:
    summary = summarize([])
    assert summary["total"] == 0
    assert summary["totals"] == dict.fromkeys(STATUSES, 0)
    assert summary["subdirectories"] == {}
    assert summary["total_time"] == 0


def test_generate_report_writes_five_files(results: list[dict[str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "run-1"
    paths = generate_report(
        results,
        out,
        run_id="run-1",
        command=["orch", "run", "scripts"],
        start_time="2024-05-01T10:00:00+00:00",
        end_time="2024-05-01T10:00:03+00:00",
        wall_time=3.0,
    )
    assert paths == {
        "summary": out / "summary.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
        "junit": out / "junit.xml",
        "trace": out / "trace.json",
    }
    names = sorted(p.name for p in out.iterdir())
    assert names == ["junit.xml", "report.html", "report.md", "summary.json", "trace.json"]
    summary = json.loads(paths["summary"].read_text())
    assert summary["run_id"] == "run-1"
    assert summary["command"] == ["orch", "run", "scripts"]
    assert summary["start_time"] == "2024-05-01T10:00:00+00:00"
    assert summary["end_time"] == "2024-05-01T10:00:03+00:00"
    assert summary["wall_time"] == 3.0
    assert summary["totals"]["failed"] == 1
    assert summary["exit_code"] == 1
    assert [r["path"] for r in summary["results"]] == [r["path"] for r in results]
    assert all("stdout" not in r and "stderr" not in r for r in summary["results"])
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# Orchestrator run run-1")
    assert "1 passed, 1 failed, 1 timeout, 1 error, 1 skipped" in markdown
    assert "listed under skip: in config.yaml" in markdown
    assert "Traceback: boom" in markdown.split("## Failures", 1)[1]


def test_generate_report_appends_to_github_step_summary(
    results: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    generate_report(results, tmp_path / "one")
    generate_report(results, tmp_path / "two")
    text = step_summary.read_text()
    assert text.count("# Orchestrator run one") == 1
    assert text.count("# Orchestrator run two") == 1
    assert (tmp_path / "one" / "report.md").read_text() in text


def _suites(path: Path) -> dict[str, TestSuite]:
    xml = JUnitXml.fromfile(str(path))
    return {suite.name: suite for suite in xml}


def test_junit_structure(results: list[dict[str, Any]], tmp_path: Path) -> None:
    paths = generate_report(results, tmp_path / "run", wall_time=2.0)
    xml = JUnitXml.fromfile(str(paths["junit"]))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (5, 2, 1, 1)
    suites = _suites(paths["junit"])
    assert set(suites) == {"a", "b", "."}
    cases = {case.name: case for suite in suites.values() for case in suite}
    assert len(cases) == 5
    assert [case.name for case in suites["a"]] == ["a/ok.py", "a/bad.py"]
    assert (suites["a"].tests, suites["a"].failures, suites["a"].errors) == (2, 1, 0)
    assert (suites["b"].failures, suites["b"].errors) == (1, 1)
    assert suites["."].skipped == 1

    assert cases["a/ok.py"].is_passed
    assert cases["a/ok.py"].system_out == "fine\n"
    assert cases["a/ok.py"].system_err is None

    (failure,) = cases["a/bad.py"].result
    assert isinstance(failure, Failure)
    assert failure.message == "exit code 1 (allowed: [0])"
    assert failure.type == "failed"
    assert "Traceback: boom" in (failure.text or "")
    assert cases["a/bad.py"].system_out == "partial\n"
    assert cases["a/bad.py"].system_err == "Traceback: boom\n"

    (timeout,) = cases["b/slow.py"].result
    assert isinstance(timeout, Failure) and timeout.type == "timeout"

    (error,) = cases["b/broken.py"].result
    assert isinstance(error, Error) and error.message == "interrupted"
    assert cases["b/broken.py"].system_out is None

    (skipped,) = cases["skipme.py"].result
    assert isinstance(skipped, Skipped)
    assert skipped.message == "listed under skip: in config.yaml"


def test_junit_survives_control_characters(tmp_path: Path) -> None:
    nasty = "before\x00nul \x1b[31mred\x1b[0m \x08 after\n"
    bad = result(
        "x/bad.py",
        "failed",
        stdout=nasty,
        stderr=nasty,
        error="exit code 1\x1b",
        exit_code=1,
    )
    paths = generate_report([bad], tmp_path / "run")
    ET.parse(paths["junit"])
    (case,) = next(iter(_suites(paths["junit"]).values()))
    for text in (case.system_out, case.system_err):
        assert text is not None
        assert "before" in text and "red" in text and "after" in text
        assert "\x00" not in text and "\x1b" not in text
    summary = json.loads(paths["summary"].read_text())
    assert summary["results"][0]["error"] == "exit code 1\x1b"


@pytest.mark.parametrize("run", [3, 5, 9])
def test_markdown_fence_is_longer_than_any_backtick_run(run: int) -> None:
    output = f"before\n{'`' * run}python\ncode\n{'`' * run}\nafter\n"
    failed = result("bad.py", "failed", stdout=output, error="exit code 1", exit_code=1)
    [value] = as_results([failed])
    markdown = render_markdown({**summarize([value]), "run_id": "r", "wall_time": 1.0}, [value])
    blocks = re.findall(r"^(`{3,})text\n(.*?)^\1$", markdown, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1
    fence, body = blocks[0]
    assert len(fence) > run
    assert body == output


def test_markdown_names_the_scripts_whose_processes_escaped() -> None:
    leaky = {**result("daemon.py", "passed", exit_code=0), "escaped": 2}
    quiet = result("plain.py", "passed", exit_code=0)
    values = as_results([leaky, quiet])
    summary = {**summarize(values), "run_id": "r", "wall_time": 1.0}
    markdown = render_markdown(summary, values)
    section = markdown.split("## Escaped processes", 1)[1]
    assert "- `daemon.py`: 2\n" in section and "plain.py" not in section


def test_save_log_is_atomic_and_mirrors_the_tree(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    first = result("deep/sub/x.py", "failed", stdout="one\n", exit_code=1)
    target = save_log(first, logs, {"timeout": 5.0, "args": ["-v"]})
    assert target == logs / "deep" / "sub" / "x.py.json"
    record = json.loads(target.read_text())
    assert record == {**first, "settings": {"timeout": 5.0, "args": ["-v"]}}

    second = result("deep/sub/x.py", "passed", stdout="two\n")
    assert save_log(second, logs) == target
    assert json.loads(target.read_text()) == second
    assert os.listdir(target.parent) == ["x.py.json"]
    assert not [p for p in logs.rglob("*") if p.is_file() and p != target]


def test_load_run_round_trips(results: list[dict[str, Any]], tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run_dir = reports / "20240501T100000Z-abcdef"
    for entry in results:
        save_log(entry, run_dir / "logs")
    generate_report(results, run_dir, command=["orch", "run"], wall_time=1.5)
    summary, loaded = load_run(run_dir)
    assert summary.pop("run_dir") == str(run_dir.resolve())
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert as_results(loaded) == as_results(results)  # every field, as it was written

    # A killed first run leaves no `latest`: the reports folder shows its newest run.
    newest, _ = load_run(reports)
    assert newest["run_dir"] == str(run_dir.resolve())

    (reports / "latest").symlink_to(run_dir.name)
    summary_via_latest, loaded_via_latest = load_run(reports)
    assert summary_via_latest.pop("run_dir") == str(run_dir.resolve())
    assert summary_via_latest == summary
    assert loaded_via_latest == loaded


def test_real_run_script_result_in_reports(project: Project, tmp_path: Path) -> None:
    script = project.script(
        "grp/real.py",
        """
        import sys
        print("real out")
        print("real err", file=sys.stderr)
        sys.exit(7)
        """,
    )
    run_dir = tmp_path / "run"
    real = run_script(script, scripts_dir=project.scripts, log_dir=run_dir / "logs" / "grp")
    assert real["status"] == "failed"
    save_log(real, run_dir / "logs")
    generate_report([real], run_dir)

    (suite,) = JUnitXml.fromfile(str(run_dir / "junit.xml"))
    assert suite.name == "grp"
    (case,) = suite
    assert case.name == "grp/real.py"
    assert isinstance(case.result[0], Failure)
    assert case.system_out == "real out\n"
    assert case.system_err == "real err\n"

    summary, (loaded,) = load_run(run_dir)
    assert summary["totals"]["failed"] == 1
    assert summary["subdirectories"] == {
        "grp": {"passed": 0, "failed": 1, "timeout": 0, "error": 0, "skipped": 0, "total": 1}
    }
    assert loaded == real
    assert Path(real["stdout_path"]).read_text() == "real out\n"


def test_a_leftover_temporary_file_of_the_same_pid_does_not_stop_a_write(tmp_path: Path) -> None:
    """A killed orch with our PID (PID 1 in a container) may leave `.x.<pid>.<n>.tmp`."""
    import os

    from orchestrator import _files

    target = tmp_path / "x.json"
    upcoming = next(_files._SERIAL) + 1
    for n in range(upcoming, upcoming + 5):
        (tmp_path / f".x.json.{os.getpid()}.{n}.tmp").write_text("half")
    _files.atomic_write_text(target, "whole\n")
    assert target.read_text() == "whole\n"
    assert len(list(tmp_path.glob(".x.json.*.tmp"))) == 5  # theirs, untouched; none of ours


def test_the_longest_chain_chart_draws_at_most_30_bars(tmp_path: Path) -> None:
    chain = [result(f"c{i:02d}.py", "passed") for i in range(40)]
    depends = {f"c{i:02d}.py": [f"c{i - 1:02d}.py"] for i in range(1, 40)}
    paths = generate_report(chain, tmp_path / "run", wall_time=40.0, jobs=2, depends_on=depends)
    summary = json.loads(paths["summary"].read_text())
    assert len(summary["longest_chain"]) == 40
    assert summary["parallel_efficiency"] == 0.25  # 20 s busy of 2 slots x 40 s
    markdown = paths["markdown"].read_text()
    assert "40 scripts, 1.00 s" not in markdown  # the chain's own times: 40 x 1 s
    assert "40 scripts, 40.00 s (the first 30 drawn)" in markdown
    chart = markdown.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert sum(1 for line in chart.splitlines() if " : done, " in line) == 30
    json.loads(paths["trace"].read_text())  # and the timeline parses


def test_generate_report_takes_a_minimal_result(tmp_path: Path) -> None:
    paths = generate_report([{"script": "/x/a.py", "status": "passed"}], tmp_path)
    summary = json.loads(paths["summary"].read_text())
    assert summary["totals"]["passed"] == 1
    assert summary["results"][0]["subdirectory"] == "."


def test_generate_report_takes_a_library_callers_paths(tmp_path: Path) -> None:
    """A result dict whose path is a Path, as a caller's may be, reports like a string."""
    paths = generate_report([{"path": Path("a/b.py"), "status": "passed"}], tmp_path)
    assert "`a/b.py`" in paths["markdown"].read_text()
    assert json.loads(paths["summary"].read_text())["results"][0]["path"] == "a/b.py"
