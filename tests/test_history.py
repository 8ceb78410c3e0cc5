"""History: each run's outcome per script, and the verdicts it gives (flaky, new failure, fixed)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

from orchestrator.history import KEEP, History, Outcome, failure_signature, judge

SHM = Path("/dev/shm")


@pytest.fixture
def toggle() -> Iterator[Path]:
    """A counter file orch does not follow (``/dev``): a script's outcome hidden from it."""
    if not SHM.is_dir():
        pytest.skip("no /dev/shm here: the flip needs state outside what orch traces")
    path = SHM / f"orch-test-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def flip_script(counter: Path) -> str:
    """Fails on every other run (the first passes), whatever its inputs."""
    return f"""
        import os
        counter = {str(counter)!r}
        runs = int(open(counter).read()) if os.path.exists(counter) else 0
        open(counter, "w").write(str(runs + 1))
        print("run", runs)
        raise SystemExit(runs % 2)
        """


def results_of(project: Project) -> dict[str, dict[str, Any]]:
    summary = json.loads((project.root / "reports" / "latest" / "summary.json").read_text())
    return {r["path"]: r for r in summary["results"]}


def test_same_inputs_pass_then_fail_is_flaky(project: Project, toggle: Path) -> None:
    project.script("flip.py", flip_script(toggle))
    project.script("steady.py", "print('ok')")
    first = project.orch("run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "flaky" not in results_of(project)["flip.py"]

    second = project.orch("run")
    assert second.returncode == 1
    flip = results_of(project)["flip.py"]
    assert flip["status"] == "failed"
    assert (flip["flaky"]["passes"], flip["flaky"]["failures"]) == (1, 1)
    assert "change" not in flip  # flaky: its failure is no news about a change
    assert "flaky" not in results_of(project)["steady.py"]
    assert "flaky: flip.py (same inputs: 1 pass, 1 failure since" in second.stdout
    assert "new failures" not in second.stdout
    report = (project.root / "reports" / "latest" / "report.md").read_text()
    assert "## Flaky" in report and "## New failures" not in report

    third = project.orch("run")
    assert third.returncode == 0
    flaky = results_of(project)["flip.py"]["flaky"]
    assert (flaky["passes"], flaky["failures"]) == (2, 1)


def test_a_failure_after_an_input_change_is_new_and_its_fix_is_fixed(project: Project) -> None:
    data = project.root / "limit.txt"
    data.write_text("10\n")
    project.script(
        "check.py",
        """
        from pathlib import Path
        limit = int(Path("limit.txt").read_text())
        if limit < 5:
            raise SystemExit(f"limit {limit} is below 5")
        """,
    )
    assert project.orch("run").returncode == 0
    data.write_text("3\n")
    broken = project.orch("run")
    assert broken.returncode == 1
    check = results_of(project)["check.py"]
    assert check.get("change") == "new failure"
    assert "flaky" not in check
    assert "new failures (passed last run): check.py" in broken.stdout
    report = (project.root / "reports" / "latest" / "report.md").read_text()
    assert "## New failures" in report and "limit N is below N" not in report
    assert "limit 3 is below 5" in report

    data.write_text("7\n")
    fixed = project.orch("run")
    assert fixed.returncode == 0
    assert results_of(project)["check.py"].get("change") == "fixed"
    assert "fixed (failed last run): check.py" in fixed.stdout
    # The same failure twice is not new: it failed last time too.
    data.write_text("1\n")
    project.orch("run")
    data.write_text("2\n")
    project.orch("run")
    assert "change" not in results_of(project)["check.py"]


def test_orch_history_prints_runs_and_verdict(project: Project, toggle: Path) -> None:
    project.script("flip.py", flip_script(toggle))
    project.script("never.py", "")
    project.config("skip: [never.py]\n")
    for _ in range(3):
        project.orch("run")
    shown = project.orch("history")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("flip.py: flaky (same inputs: 2 passes, 1 failure since ")
    assert [line.split()[2] for line in lines[1:4]] == ["passed", "failed", "passed"]
    assert "run N" in lines[2]  # the failure's signature: its last line, numbers taken out
    assert "never.py" not in shown.stdout  # never ran: not listed unless asked

    asked = project.orch("history", "never.py", "flip.py", "-n", "1", "--json")
    answers = json.loads(asked.stdout)
    assert [a["script"] for a in answers] == ["never.py", "flip.py"]
    assert answers[0]["runs"] == [] and answers[0]["verdict"] is None
    assert answers[1]["verdict"] == "flaky" and len(answers[1]["runs"]) == 1
    run = answers[1]["runs"][0]
    assert {"time", "status", "duration", "inputs", "exit_code", "memory", "attempts"} <= set(run)

    missing = project.orch("history", "nope.py")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "nope.py" in missing.stderr


def test_untraced_scripts_are_never_judged_flaky_across_runs(
    project: Project, toggle: Path
) -> None:
    project.script("flip.py", flip_script(toggle))
    project.config("scripts:\n  flip.py: {trace: false}\n")
    project.orch("run")
    project.orch("run")
    # Its inputs are not known whole: pass then fail is no proof of anything.
    assert "flaky" not in results_of(project)["flip.py"]
    history = History(project.root / ".orchestrator").of("scripts/flip.py").past
    assert [o.status for o in history] == ["passed", "failed"]
    assert {o.inputs for o in history} == {None}


def test_a_damaged_history_is_one_warning_and_written_anew(project: Project) -> None:
    project.script("ok.py", "")
    assert project.orch("run").returncode == 0
    journal = project.root / ".orchestrator" / "history" / "scripts" / "ok.py.jsonl"
    journal.write_bytes(b"\xff\xfe not json\n")
    again = project.orch("run")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    warnings = [line for line in again.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and "ok.py.jsonl" in warnings[0]
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] == "passed"


def test_a_file_where_the_history_folder_belongs_is_one_warning(project: Project) -> None:
    project.script("ok.py", "")
    state = project.root / ".orchestrator"
    state.mkdir()
    (state / "history").write_text("a file where a folder belongs")
    result = project.orch("run")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and "history" in warnings[0]
    assert (state / "history" / "scripts" / "ok.py.jsonl").is_file()


def outcome(status: str, inputs: str | None = "a", **more: Any) -> Outcome:
    return Outcome(time=more.pop("time", "2026-12-01T00:00:00+00:00"), status=status,
                   duration=more.pop("duration", 1.0), inputs=inputs,
                   source=more.pop("source", "s1"), **more)  # fmt: skip


def test_judge_counts_evidence_from_the_scripts_last_edit() -> None:
    past = [outcome("passed"), outcome("failed")]
    assert judge(past, outcome("passed")).flaky is not None
    # The script itself was edited since: the old evidence does not hold.
    assert judge(past, outcome("passed", source="s2")).flaky is None
    # Different inputs: a failure then a pass is a fix, not flakiness.
    verdict = judge([outcome("failed", inputs="a")], outcome("passed", inputs="b"))
    assert (verdict.flaky, verdict.change) == (None, "fixed")
    # An error is orch's (an environment that would not build), never evidence.
    assert judge([outcome("error")], outcome("passed")).flaky is None
    # A pass on the third attempt: two failures and a pass, in one run.
    flaky = judge([], outcome("passed", inputs=None, attempts=3)).flaky
    assert flaky is not None and (flaky.passes, flaky.failures) == (1, 2)
    assert judge([outcome("passed", duration=2.0)], outcome("passed")).recent == (2.0,)
    # An error between a pass and a failure hides nothing: the failure is new.
    changed = outcome("failed", inputs="b")
    assert (
        judge([outcome("passed"), outcome("error", inputs=None)], changed).change == "new failure"
    )


def test_failure_signatures_compare_across_runs() -> None:
    one = failure_signature("failed", None, "Traceback\nKeyError: 'row 12' at 0x7f3a\n", "")
    two = failure_signature("failed", None, "Traceback\nKeyError: 'row 97' at 0x55aa\n", "")
    assert one == two == "KeyError: 'row N' at 0x?"
    assert failure_signature("timeout", None, "", "") == "timeout"
    assert failure_signature("passed", None, "warning\n", "") is None
    assert failure_signature("failed", "exit code 3", "", "") == "exit code N"


def test_history_keeps_the_last_runs_of_each_script(tmp_path: Path) -> None:
    history = History(tmp_path / ".orchestrator")
    for n in range(2 * KEEP + 10):
        history.of("scripts/a.py").add(outcome("passed", duration=float(n)))
    kept = history.of("scripts/a.py").past
    assert KEEP <= len(kept) < 2 * KEEP
    assert kept[-1].duration == 2 * KEEP + 9  # the newest is never dropped
    assert [o.duration for o in kept] == sorted(o.duration for o in kept)
    # A script outside the project root keeps its history inside the state folder.
    history.of("../elsewhere/b.py").add(outcome("passed"))
    assert not (tmp_path / "elsewhere").exists()
    assert len(history.of("../elsewhere/b.py").past) == 1
    assert os.listdir(tmp_path) == [".orchestrator"]


def test_history_keeps_no_secret_and_no_comparison_of_an_input_edited_mid_run(
    project: Project,
) -> None:
    project.config("default: {env: {DB_PASSWORD: hunter42hunter}}\n")
    project.script(
        "leaks.py",
        "import os\nraise SystemExit('login refused for ' + os.environ['DB_PASSWORD'])\n",
    )
    (project.root / "data.txt").write_text("0\n")
    # reader.py reads data.txt; writer.py, beside it (-j2), rewrites it while it runs.
    project.script(
        "reader.py",
        """
        import time
        from pathlib import Path
        data = Path("data.txt")
        first = data.read_text()
        Path("ready.txt").write_text("read")
        deadline = time.monotonic() + 20
        while data.read_text() == first and time.monotonic() < deadline:
            time.sleep(0.02)
        """,
    )
    project.script(
        "writer.py",
        """
        import time
        from pathlib import Path
        deadline = time.monotonic() + 20
        while not Path("ready.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        Path("data.txt").write_text("1\\n")
        """,
    )
    project.orch("run", "-j2")
    state = project.root / ".orchestrator"
    journal = (state / "history" / "scripts" / "leaks.py.jsonl").read_text()
    assert "hunter" not in journal  # masked before the digits were taken out
    assert History(state).of("scripts/leaks.py").past[0].signature == "login refused for ***"
    reader = History(state).of("scripts/reader.py").past[0]
    assert (reader.status, reader.inputs, reader.source) == ("passed", None, None)
    writer = History(state).of("scripts/writer.py").past[0]
    assert writer.inputs is not None  # what it wrote itself counts as it left it
