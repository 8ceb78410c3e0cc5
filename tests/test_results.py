"""Results as values: what each status means, and the dict contract both ways."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import RESULT_KEYS

from orchestrator.results import (
    NOT_OK,
    STATUSES,
    ScriptResult,
    Status,
    StopReason,
    skipped_result,
    unrun_result,
)
from orchestrator.runner import run_script


def test_each_status_knows_whether_it_is_ok_and_retryable() -> None:
    assert {s.value: (s.ok, s.retryable) for s in Status} == {
        "passed": (True, False),
        "failed": (False, True),
        "timeout": (False, True),
        "error": (False, False),
        "skipped": (True, False),
    }
    assert STATUSES == ("passed", "failed", "timeout", "error", "skipped")
    assert NOT_OK == ("failed", "timeout", "error")


def test_a_real_result_survives_a_round_trip_through_json(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "sub" / "x.py"
    script.parent.mkdir(parents=True)
    script.write_text("print('hi')\nraise SystemExit(3)\n")
    raw = run_script(script, scripts_dir=tmp_path / "scripts", log_dir=tmp_path / "logs")
    assert raw.keys() >= RESULT_KEYS
    value = ScriptResult.from_dict(json.loads(json.dumps(raw)))
    assert value.status is Status.FAILED and not value.ok and value.recorded
    assert (value.path, value.subdirectory, value.exit_code) == ("sub/x.py", "sub", 3)
    assert value.extra["stdout_path"].endswith("x.py.stdout.log")
    assert value.to_dict() == raw


def test_run_fields_appear_only_once_set() -> None:
    value = skipped_result("/p/scripts/a.py", "/p/scripts", "up-to-date")
    assert ScriptResult.from_dict(value.to_dict()) == value
    assert "attempts" not in value.to_dict() and "stopped" not in value.to_dict()
    assert value.to_dict()["skip_reason"] == "up-to-date"
    ran = replace(value, attempts=0, flaky=False).to_dict()
    assert (ran["attempts"], ran["flaky"], ran["status"]) == (0, False, "skipped")


@pytest.mark.parametrize("reason", list(StopReason))
def test_a_script_stopped_from_outside_is_not_recorded(reason: StopReason) -> None:
    value = unrun_result("/p/scripts/a.py", "/p/scripts", Status.ERROR, error=reason.value)
    assert value.recorded  # an error of its own: recorded
    stopped = value.stopped_by(reason)
    assert stopped.stopped is reason and not stopped.recorded
    assert stopped.to_dict()["stopped"] == reason.value
    assert ScriptResult.from_dict(stopped.to_dict()) == stopped
