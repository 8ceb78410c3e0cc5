"""report.html: one self-contained page per run, checked as text and in a real Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, MISSING, Browser, browser, file_url
from conftest import Project

from orchestrator.reports import generate_report
from orchestrator.results import ScriptResult, Status

HOSTILE = "<img src=x onerror=window.pwned=1>.py"
SECRET = "s3cr3t-Value-42"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with a hostile name and output, a secret, a failure, a retried pass, a skip."""
    project = Project(tmp_path_factory.mktemp("page") / "proj")
    counter = project.root / "runs.txt"
    project.script(
        HOSTILE,
        r"""
        import os, sys
        print("</script><script>window.pwned=1</script>")
        print("\x1b]0;owned\x07\x1b[31mred words\x1b[0m and", os.environ["API_TOKEN"])
        sys.stderr.write("<b>bold?</b> \x1b[1;1H\n")
        """,
    )
    project.script("sub/fails.py", "raise SystemExit('it broke: ' + 'x' * 20)")
    project.script(
        "retried.py",
        f"""
        from pathlib import Path
        counter = Path({str(counter)!r})
        runs = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(runs))
        raise SystemExit(1 if runs == 1 else 0)
        """,
    )
    project.script("later.py", "")
    project.script("off.py", "")
    project.config(
        f"""
        default: {{env: {{API_TOKEN: {SECRET}}}}}
        skip: [off.py]
        scripts:
          retried.py: {{retries: 1, retry_delay: 0}}
          later.py: {{depends_on: [retried.py]}}
        """
    )
    result = project.orch("run", "-j", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    return (project.root / "reports" / "latest").resolve()


def page_json(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="orch-data" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_every_run_writes_one_self_contained_page(hostile_run: Path) -> None:
    html = (hostile_run / "report.html").read_text(encoding="utf-8")
    # Nothing from the network: no element that loads anything, a policy that forbids it.
    assert re.search(r"<(link|img|iframe|object|embed)\b", html.split('id="orch-data"')[0]) is None
    assert "default-src 'none'" in html
    assert html.count("</script>") == 2
    raw = html.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    assert "<" not in raw and ">" not in raw and "&" not in raw  # all escaped in the JSON
    assert SECRET not in html and "\x1b" not in html and "\x07" not in html
    data = page_json(html)
    rows = [dict(zip(data["columns"], row, strict=True)) for row in data["rows"]]
    by_path = {row["path"]: row for row in rows}
    assert set(by_path) == {HOSTILE, "sub/fails.py", "retried.py", "later.py", "off.py"}
    assert by_path["retried.py"]["flaky"]["failures"] == 1
    assert by_path["off.py"]["lane"] is None and by_path["off.py"]["status"] == "skipped"
    assert "\x1b[31mred words\x1b[0m" in by_path[HOSTILE]["out"]  # colour kept, as data
    assert "\\x1b]0;owned\\x07" in by_path[HOSTILE]["out"]  # the title change shown, inert
    assert by_path[HOSTILE]["logs"]["stdout"].startswith("logs/")
    assert 1 <= data["run"]["lanes"] <= 2
    # report.md, which GITHUB_STEP_SUMMARY receives, links to nothing it cannot show.
    markdown = (hostile_run / "report.md").read_text(encoding="utf-8")
    assert "](" not in markdown and "report.html" not in markdown


def test_orch_report_says_where_the_page_is(hostile_run: Path) -> None:
    project = Project(hostile_run.parent.parent.parent)
    shown = project.orch("report", hostile_run)
    assert f"report.html: {hostile_run / 'report.html'}" in shown.stdout


def _clock(i: int) -> str:
    """A hundredth of a second apart, two at once: ``2026-12-05T10:01:40.01``."""
    return f"2026-12-05T10:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}"


def test_ten_thousand_scripts_make_a_page_under_five_megabytes(tmp_path: Path) -> None:
    results = [
        ScriptResult(
            script=f"/p/scripts/group{i % 50}/check_{i}.py",
            name=f"check_{i}.py",
            path=f"group{i % 50}/check_{i}.py",
            subdirectory=f"group{i % 50}",
            status=Status.FAILED if i % 97 == 0 else Status.PASSED,
            start_time=f"{_clock(i)}0000+00:00",
            end_time=f"{_clock(i)}5000+00:00",
            exit_code=1 if i % 97 == 0 else 0,
            execution_time=0.005,
            stdout=f"checked {i} rows\n" * 3,
            stderr="Traceback ...\nValueError: bad row\n" * (20 if i % 97 == 0 else 0),
            peak_memory_mb=12.5,
            attempts=1,
            extra={"recent": [0.004, 0.005, 0.006] * 4},
        )
        for i in range(10_000)
    ]
    paths = generate_report(results, tmp_path, run_id="big", wall_time=60.0, jobs=2)
    size = paths["html"].stat().st_size
    assert size <= 5_000_000, f"report.html is {size / 1e6:.1f} MB for 10,000 scripts"
    assert len(page_json(paths["html"].read_text())["rows"]) == 10_000


# -- in a real browser ---------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)


@pytest.fixture(scope="module")
def page(hostile_run: Path) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(MISSING)
    with browser() as opened:
        opened.open(file_url(hostile_run / "report.html"))
        yield opened


@needs_chromium
def test_the_page_loads_from_file_without_an_error_or_a_request(page: Browser) -> None:
    assert page.errors() == []
    assert page.requests() == []  # nothing but the page itself was fetched


@needs_chromium
def test_the_page_shows_every_script_the_timeline_and_the_badges(page: Browser) -> None:
    paths = page.eval("[...document.querySelectorAll('#scripts tr.row')].map(r => r.dataset.path)")
    assert set(paths) == {HOSTILE, "sub/fails.py", "retried.py", "later.py", "off.py"}
    assert paths[0] == "sub/fails.py"  # failures first
    assert page.eval("document.querySelectorAll('#timeline rect.bar').length") == 4
    flaky = page.eval(
        "[...document.querySelectorAll('#scripts tr.row')]"
        ".filter(r => r.querySelector('.badge.flaky')).map(r => r.dataset.path)"
    )
    assert flaky == ["retried.py"]


@needs_chromium
def test_a_hostile_name_or_output_stays_text_in_the_page(page: Browser) -> None:
    rows = "[...document.querySelectorAll('#scripts tr.row')]"
    row = f"{rows}.find(r => r.dataset.path === {json.dumps(HOSTILE)})"
    page.eval(f"{row}.querySelector('button').click()")
    logs = page.eval(
        "[...document.querySelectorAll('pre.log')].map(p => p.textContent).join('\\n')"
    )
    assert "</script><script>window.pwned=1</script>" in logs
    assert "<b>bold?</b>" in logs
    assert page.eval("typeof window.pwned") == "undefined"
    assert page.eval("document.querySelectorAll('img, iframe').length") == 0
    assert (
        page.eval("[...document.querySelectorAll('b')].some(b => b.textContent === 'bold?')")
        is False
    )
    assert (
        page.eval("document.title")
        == f"orch run {Path(page.eval('location.pathname')).parent.name}"
    )
    # Its colour is drawn, the title change is not obeyed.
    red = page.eval(
        "getComputedStyle([...document.querySelectorAll('pre.log span')]"
        ".find(s => s.textContent === 'red words')).color"
    )
    assert red not in ("", "rgb(0, 0, 0)")
    assert SECRET not in page.eval("document.body.innerText")
    assert page.errors() == []


def test_the_page_counts_the_time_changed_saved(project: Project) -> None:
    project.script("slow.py", "import time\ntime.sleep(0.2)\n")
    project.script("edited.py", "")
    assert project.orch("run").returncode == 0
    project.script("edited.py", "x = 1\n")
    assert project.orch("run", "--changed").returncode == 0
    html = (project.root / "reports" / "latest" / "report.html").read_text(encoding="utf-8")
    data = page_json(html)
    rows = {row[0]: dict(zip(data["columns"], row, strict=True)) for row in data["rows"]}
    assert rows["slow.py"]["status"] == "skipped" and rows["edited.py"]["status"] == "passed"
    assert data["run"]["saved"]["changed"] >= 0.2  # the last run of slow.py
    assert data["run"]["saved"]["cache"] is None


def test_a_run_saved_by_an_older_orch_with_flaky_true_still_reports(tmp_path: Path) -> None:
    from orchestrator.console import render_console_summary
    from orchestrator.reports import as_results

    older = {"script": "/p/scripts/a.py", "path": "a.py", "status": "passed", "attempts": 3}
    results = as_results([{**older, "flaky": True}, {**older, "path": "b.py", "flaky": False}])
    assert results[0].flaky == {"passes": 1, "failures": 2, "since": ""}
    assert results[1].flaky is None
    assert "flaky: a.py (same inputs: 1 pass, 2 failures" in render_console_summary(results)
    paths = generate_report(results, tmp_path)
    assert "## Flaky" in paths["markdown"].read_text()
