"""A script's output and name cannot rewrite the user's screen or break a report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from conftest import Project

from orchestrator.reporting import plain, visible

_NAME = "x`<img src=x onerror=alert(1)>`y.py"


def test_plain_drops_every_control_and_visible_keeps_only_colour() -> None:
    text = "a\x1b]0;title\x07b\x1b[2Jc\x1b[31mred\x1b[0m\x00d\r\ne\rf\x9b2J"
    assert plain(text) == "abcredd\nef"
    shown = visible(text)
    assert "\x1b[31mred\x1b[0m" in shown
    assert "\\x1b]0;title\\x07" in shown and "\\x1b[2J" in shown and "\\x00" in shown
    without_colour = shown.replace("\x1b[31m", "").replace("\x1b[0m", "")
    assert not any(ord(c) < 32 and c != "\n" for c in without_colour)


def test_hostile_output_and_name_reach_no_output_raw(project: Project) -> None:
    project.script(
        _NAME,
        r"""
        import sys
        sys.stdout.write("\x1b]0;owned\x07\x1b[2J\x1b[32mgreen\x1b[0m\x00 end\n")
        sys.stderr.write("\x1b[1;1H\x07bell\n")
        sys.exit(3)
        """,
    )
    proc = project.orch("run", "-v", "-o", "out", "scripts")
    assert proc.returncode == 1, proc.stderr
    assert "\x1b]0" not in proc.stdout and "\x1b[2J" not in proc.stdout
    assert "\\x1b]0;owned\\x07" in proc.stdout
    assert "\x1b[32mgreen\x1b[0m" in proc.stdout  # colour is kept
    run_dir = next(p for p in (project.root / "out").iterdir() if p.is_dir())
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert not any(ord(c) < 32 and c not in "\n" for c in markdown), repr(markdown)
    # The name stays one code span: the backticks inside cannot end it.
    assert "``x`<img src=x onerror=alert(1)>`y.py``" in markdown
    assert markdown.count("<img") == markdown.count("``x`<img")
    junit = (run_dir / "junit.xml").read_text(encoding="utf-8")
    assert "\x1b" not in junit and "\x00" not in junit
    case = ET.fromstring(junit).find(".//testcase")
    assert case is not None and "green" in (case.findtext("system-out") or "")


def test_any_bytes_in_a_name_reach_every_output_escaped_and_masked(project: Project) -> None:
    import json
    import os

    scripts = os.fsencode(project.scripts)
    for name in (b"bad\xff\xfe.py", b"t\x1b]0;PWNED\x07\x1b[2J.py", b"new\nline.py"):
        with open(os.path.join(scripts, name), "w") as handle:
            handle.write("print('ran')\n")
    for name in (b"s3cr3tvalue99.py",):
        with open(os.path.join(scripts, name), "w") as handle:
            handle.write("print('ran')\n")
    # A folder with a control character, a failure in it, and a skip reason with the secret.
    os.mkdir(os.path.join(scripts, b"d\x1b[2J"))
    with open(os.path.join(scripts, b"d\x1b[2J", b"fails.py"), "w") as handle:
        handle.write("raise SystemExit(3)\n")
    project.script("skipped.py", "")
    project.config("scripts:\n  skipped.py: {skip: true, skip_reason: 'needs s3cr3tvalue99'}\n")
    env = {"MY_TOKEN": "s3cr3tvalue99"}
    run = project.orch("run", "scripts", env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    outputs = {"run": run.stdout + run.stderr}
    for command in (
        ("list", "scripts"),
        ("list", "--json", "scripts"),
        ("list", "--graph", "scripts"),
        ("list", "--graph", "--format", "mermaid", "scripts"),
        ("run", "--dry-run", "scripts"),
        ("docs", "scripts"),
    ):
        shown = project.orch(*command, env=env)
        assert shown.returncode == 0, shown.stderr
        outputs[" ".join(command)] = shown.stdout + shown.stderr
    run_dir = (project.root / "reports" / "latest").resolve()
    for name in ("summary.json", "report.md", "report.html", "junit.xml", "trace.json"):
        outputs[name] = (run_dir / name).read_text(encoding="utf-8")
    for where, text in outputs.items():
        assert "s3cr3tvalue99" not in text, where
        assert "\x1b" not in text and "\x07" not in text, where
    assert "bad\\xff\\xfe.py" in outputs["run"] and "new\\x0aline.py" in outputs["run"]
    ET.fromstring(outputs["junit.xml"])  # well-formed
    summary = json.loads(outputs["summary.json"])
    assert summary["totals"]["passed"] == 4 and summary["totals"]["failed"] == 1
    assert {r["path"] for r in summary["results"]} >= {"***.py", "new\nline.py"}


def test_docs_close_an_unclosed_fence_and_mermaid_labels_hold_quotes(project: Project) -> None:
    project.script("a.py", '"""Usage:\n\n```\norch run\n"""\n')
    project.script('b"c.py', "")
    docs = project.orch("docs", "scripts").stdout
    section = docs.split("### `a.py`", 1)[1].split("### ", 1)[0]
    assert section.count("```") == 2, section  # opened by the docstring, closed by orch
    assert docs.index('### `b"c.py`') > docs.index("### `a.py`")
    mermaid = project.orch("list", "--graph", "--format", "mermaid", "scripts").stdout
    assert '["b#quot;c.py"]' in mermaid, mermaid
