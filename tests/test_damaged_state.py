"""Damaged state under ``.orchestrator/``: one warning line, treated as absent, repaired."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.changes import RECORD_VERSION


def _ran(out: str) -> bool:
    return "PASSED a.py" in out


@pytest.fixture
def ran_once(project: Project) -> Project:
    project.script("a.py", "print('a')\n")
    first = project.orch("run", "scripts")
    assert first.returncode == 0, first.stdout + first.stderr
    fresh = project.orch("run", "--changed", "scripts")
    assert not _ran(fresh.stdout), fresh.stdout
    return project


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("orch: warning:")]


@pytest.mark.parametrize(
    "damage",
    ["bytes", "wrong types", "folder"],
)
def test_a_damaged_record_is_one_warning_reruns_everything_and_is_repaired(
    ran_once: Project, damage: str
) -> None:
    record = ran_once.root / ".orchestrator" / "record.jsonl"
    if damage == "bytes":
        record.write_bytes(record.read_bytes() + b"\xff\xfe{\n")
    elif damage == "wrong types":
        entry = {"v": RECORD_VERSION, "script": "scripts/a.py", "inputs": 7}
        record.write_text(json.dumps(entry) + "\n")
    else:
        record.unlink()
        (record / "inner").mkdir(parents=True)
    for command in (("list", "--graph", "scripts"), ("deps", "scripts/a.py")):
        shown = ran_once.orch(*command)
        assert "Traceback" not in shown.stderr, shown.stderr
    run = ran_once.orch("run", "--changed", "scripts")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    warnings = _warnings(run.stderr)
    assert len(warnings) == 1 and str(record) in warnings[0], run.stderr
    assert _ran(run.stdout), "a damaged record must never give a stale pass"
    assert record.is_file()
    again = ran_once.orch("run", "--changed", "scripts")
    assert _warnings(again.stderr) == [] and not _ran(again.stdout), again.stdout + again.stderr


def test_an_older_orch_s_record_is_one_line_and_each_script_runs_once_to_record_anew(
    ran_once: Project,
) -> None:
    record = ran_once.root / ".orchestrator" / "record.jsonl"
    older = {"script": "scripts/a.py", "fingerprint": "0" * 64, "status": "passed"}
    record.write_text(json.dumps(older) + "\n")
    run = ran_once.orch("run", "--changed", "scripts", "--no-color")
    assert run.returncode == 0, run.stdout + run.stderr
    warnings = _warnings(run.stderr)
    assert len(warnings) == 1 and "older orch" in warnings[0], run.stderr
    assert "(recorded by an older orch)" in run.stdout, run.stdout
    again = ran_once.orch("run", "--changed", "scripts")
    assert _warnings(again.stderr) == [] and not _ran(again.stdout), again.stdout + again.stderr


def test_a_folder_for_the_lock_and_an_empty_gitignore_are_repaired(ran_once: Project) -> None:
    state = ran_once.root / ".orchestrator"
    (state / "record.lock").unlink()
    (state / "record.lock").mkdir()
    (state / ".gitignore").write_text("")  # as a full disk leaves it
    (state / "hashes.json").write_text("{not json")
    run = ran_once.orch("run", "scripts")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert (state / "record.lock").is_file()
    assert (state / ".gitignore").read_text().splitlines()[-1] == "*"
    assert isinstance(json.loads((state / "hashes.json").read_text()), dict)
    assert len(_warnings(run.stderr)) == 3, run.stderr  # the lock, the cache, the .gitignore


def test_a_state_folder_that_cannot_be_written_names_the_fix(project: Project) -> None:
    project.script("a.py", "print('a')\n")
    (project.root / ".orchestrator").write_text("a file where the state folder belongs")
    run = project.orch("run", "scripts")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "writable" in lines[0] and " -o" not in lines[0], lines[0]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(min_size=1, max_size=200))
def test_random_bytes_in_the_record_never_crash_and_never_give_a_stale_pass(
    project: Project, junk: bytes
) -> None:
    from orchestrator.changes import Record, Snapshot
    from orchestrator.project import Project as OrchProject

    state = project.root / ".orchestrator"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    first = Record(OrchProject.locate(project.scripts))
    first.update(project.scripts / "a.py", Snapshot({"scripts/a.py": "f"}, {}, {}), "passed")
    good = (state / "record.jsonl").read_bytes()
    (state / "record.jsonl").write_bytes(good + junk + b"\n")
    record = Record(OrchProject.locate(project.scripts))
    entries = record.load()
    # Either the junk parses as whole entries, or the record counts as absent.
    assert entries == {} or "scripts/a.py" in entries
    record.update(project.scripts / "a.py", Snapshot({"scripts/a.py": "g"}, {}, {}), "passed")
    entry = Record(OrchProject.locate(project.scripts)).load()["scripts/a.py"]
    assert entry["inputs"] == {"scripts/a.py": "g"}


def test_a_gitignore_that_still_ignores_everything_is_left_as_the_user_wrote_it(
    ran_once: Project,
) -> None:
    ignore = ran_once.root / ".orchestrator" / ".gitignore"
    ignore.write_text("*\n!notes.txt\n")
    run = ran_once.orch("run", "scripts")
    assert run.returncode == 0 and _warnings(run.stderr) == [], run.stderr
    assert ignore.read_text() == "*\n!notes.txt\n"
