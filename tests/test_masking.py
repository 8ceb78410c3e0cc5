"""Secret values never reach what orch writes: files, console, step summary, listings."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from conftest import ORCH_ENV, Project
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import run_script
from orchestrator.masking import MASK, Masker, looks_secret

CONFIG_TOKEN = "cfg-t0ken-Sx9&q=1/é"
INHERITED = "ghp_inheritedValue123"
LISTED = "listed-but-plain-name"
SHORT = "abc12"


def spellings(value: str) -> list[str]:
    """The forms a leak would take."""
    raw = value.encode()
    return [
        value,
        json.dumps(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("API_TOKEN", True),
        ("github_token", True),
        ("DB_PASSWORD", True),
        ("MY_PASSWD", True),
        ("STRIPE_API_KEY", True),
        ("SSH_PRIVATE_KEY", True),
        ("AWS_CREDENTIALS", True),
        ("HTTP_AUTH", True),
        ("CLIENT_SECRET", True),
        ("HOME", False),
        ("PATH", False),
        ("KEYBOARD", False),
    ],
)
def test_names_that_look_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_every_spelling_is_masked_and_short_values_are_not() -> None:
    masker = Masker.of([("API_TOKEN", CONFIG_TOKEN), ("X_TOKEN", SHORT), ("HOME", "/home/user")])
    for form in spellings(CONFIG_TOKEN):
        assert masker.mask(f"<{form}>") == f"<{MASK}>", form
    # Inside a longer base64 (HTTP Basic auth), at each alignment.
    for user in ("u", "us", "usr"):
        basic = base64.b64encode(f"{user}:{CONFIG_TOKEN}".encode()).decode()
        assert MASK in masker.mask(basic) and basic not in masker.mask(basic)
    assert masker.mask(f"short {SHORT} and /home/user") == f"short {SHORT} and /home/user"
    assert not Masker() and Masker().mask("anything") == "anything"
    assert CONFIG_TOKEN not in repr(masker)


def test_each_line_of_a_multi_line_secret_is_masked() -> None:
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\nQWERTYuiop1234\n-----END KEY-----"
    masker = Masker.of([("DEPLOY_PRIVATE_KEY", key)])
    assert masker.mask("line: AAAAB3NzaC1yc2EAAAADAQAB\n") == f"line: {MASK}\n"
    assert masker.mask(key) == MASK


@given(
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_a_stream_masks_a_value_split_across_reads(
    before: bytes, after: bytes, cuts: list[int]
) -> None:
    masker = Masker([CONFIG_TOKEN, INHERITED])
    data = before + CONFIG_TOKEN.encode() + after + base64.b64encode(INHERITED.encode())
    stream = masker.stream()
    out = b""
    start = 0
    for cut in sorted(min(cut, len(data)) for cut in cuts):
        out += stream.feed(data[start:cut])
        start = max(start, cut)
    out += stream.feed(data[start:]) + stream.end()
    assert out == masker.mask_bytes(data)
    assert CONFIG_TOKEN.encode() not in out and base64.b64encode(INHERITED.encode()) not in out


def test_run_script_masks_its_environment_in_streams_logs_and_error(tmp_path: Path) -> None:
    script = tmp_path / "leak.py"
    script.write_text(
        "import os, sys, time\n"
        "value = os.environ['SERVICE_TOKEN']\n"
        "sys.stdout.write(value[:7]); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stdout.write(value[7:] + '\\n'); sys.stdout.flush()\n"
        "raise SystemExit('failed with ' + value)\n"
    )
    result = run_script(script, env={"SERVICE_TOKEN": INHERITED}, log_dir=tmp_path / "logs")
    assert result["status"] == "failed"
    assert result["stdout"] == f"{MASK}\n"
    assert result["stderr"] == f"failed with {MASK}\n"
    for log in (tmp_path / "logs").iterdir():
        assert INHERITED not in log.read_text(), log.name


def _everything_written(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and "scripts" not in path.parts
    }


def test_no_output_of_a_run_holds_a_secret(project: Project, tmp_path: Path) -> None:
    project.config(
        f"""
        secrets: [PLAIN_NAME]
        default:
          env:
            API_TOKEN: {json.dumps(CONFIG_TOKEN)}
            PLAIN_NAME: {LISTED}
            BUILD_TOKEN: {SHORT}
          args: ["--key={CONFIG_TOKEN}"]
        """
    )
    # Prints each secret in each spelling, one of them split across two writes,
    # and dies with one in its traceback.
    project.script(
        "leak.py",
        """
        import base64, json, os, sys, time
        from urllib.parse import quote, quote_plus
        values = [os.environ[n] for n in ("API_TOKEN", "GITHUB_TOKEN", "PLAIN_NAME")]
        for value in values:
            raw = value.encode()
            for form in (value, json.dumps(value)[1:-1], quote(value, safe=""),
                         quote_plus(value), base64.b64encode(raw).decode()):
                print("form:", form)
        half = len(values[1]) // 2
        sys.stdout.write(values[1][:half]); sys.stdout.flush(); time.sleep(0.2)
        print(values[1][half:])
        print("short stays:", os.environ["BUILD_TOKEN"], "args:", sys.argv[1:])
        raise RuntimeError("bad " + values[0])
        """,
    )
    summary = tmp_path / "step-summary.md"
    env = {**ORCH_ENV, "GITHUB_TOKEN": INHERITED, "GITHUB_STEP_SUMMARY": str(summary)}
    outputs = {}
    for command in (["run", "-v"], ["run", "--dry-run"], ["list", "--json"], ["list"]):
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", *command, "scripts"],
            cwd=project.root,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode in (0, 1), proc.stderr
        outputs[" ".join(command)] = proc.stdout + proc.stderr
    written = _everything_written(project.root)
    assert any(name.endswith("leak.py.stdout.log") for name in written), sorted(written)
    written.update(outputs, summary=summary.read_bytes())
    for secret in (CONFIG_TOKEN, INHERITED, LISTED):
        for form in spellings(secret):
            leaks = [name for name, data in written.items() if form.encode() in data]
            assert not leaks, f"{form!r} in {leaks}"
    log = next(data for name, data in written.items() if name.endswith("leak.py.json"))
    record = json.loads(log)
    assert record["settings"]["env"]["API_TOKEN"] == MASK
    assert record["settings"]["args"] == [f"--key={MASK}"]
    assert f"short stays: {SHORT}" in record["stdout"]  # under 6 characters: not masked
    assert record["stdout"].count(MASK) >= 13
    assert f"RuntimeError: bad {MASK}" in record["stderr"]


def test_secrets_must_be_a_list_of_names(project: Project) -> None:
    project.config("secrets: {A: 1}\n")
    proc = project.orch("run", "scripts")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "config.yaml: secrets:" in proc.stderr


def test_run_script_masks_the_named_secrets_of_its_own_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a Dask worker: the value exists only where the script runs.
    monkeypatch.setenv("DEPLOY_KEY_ID", LISTED)
    script = tmp_path / "show.py"
    script.write_text("import os\nprint(os.environ['DEPLOY_KEY_ID'])\n")
    plain = run_script(script)
    masked = run_script(script, secret_names=["DEPLOY_KEY_ID"])
    assert plain["stdout"] == f"{LISTED}\n" and masked["stdout"] == f"{MASK}\n"
