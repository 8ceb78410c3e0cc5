"""``orch run --changed``, the run record and ``orch deps``, through the real ``orch``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, wait_for

from orchestrator.changes import RECORD_VERSION


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["NO_COLOR"] = "1"
    return env


def _command(args: tuple[str | Path, ...]) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *map(str, args)]


def orch(
    *args: str | Path, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orchestrator ARGS`` to completion and capture its output."""
    return subprocess.run(
        _command(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The summary.json of the run the console output names on its ``reports:`` line."""
    match = re.search(r"^reports: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    data: dict[str, Any] = json.loads((Path(match.group(1)) / "summary.json").read_text())
    return data


def write(root: Path, rel: str, body: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip("\n"))
    return path


def edit(path: Path) -> None:
    """Change a file's content (and size), as an editor would."""
    with path.open("a") as handle:
        handle.write("\n# edited\n")


class Sample:
    """A project whose scripts append a line to ``runs/<name>`` each time they run.

    ``a/x.py`` and ``b/y.py`` import ``src/util.py``; ``c/z.py`` watches
    ``data/*.csv``; ``w.py`` imports nothing local.
    """

    def __init__(self, project: Project, runs: Path) -> None:
        self.project = project
        self.root = project.root
        self.runs = runs
        runs.mkdir(exist_ok=True)
        self.util = write(self.root, "src/util.py", "VALUE = 1\n")
        self.data = write(self.root, "data/input.csv", "a,b\n")
        self.add("a/x.py", "import util")
        self.add("b/y.py", "from util import VALUE")
        self.add("c/z.py")
        self.add("w.py")
        self.config('scripts:\n  c/z.py: {watch: ["data/*.csv"]}\n')

    def add(self, rel: str, head: str = "", tail: str = "") -> Path:
        """A script that imports ``head``, records its run, then runs ``tail``."""
        marker = self.runs / rel.replace("/", "_")
        body = f"{head}\nwith open({str(marker)!r}, 'a') as f:\n    f.write('run\\n')\n{tail}\n"
        return self.project.script(rel, body)

    def config(self, text: str) -> Path:
        return self.project.config(text)

    def path(self, rel: str) -> Path:
        return self.project.scripts / rel

    def count(self, rel: str) -> int:
        marker = self.runs / rel.replace("/", "_")
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    def counts(self) -> dict[str, int]:
        return {rel: self.count(rel) for rel in self.rels()}

    def rels(self) -> list[str]:
        scripts = self.project.scripts
        return sorted(p.relative_to(scripts).as_posix() for p in scripts.rglob("*.py"))

    def run(self, *args: str, code: int = 0) -> dict[str, Any]:
        """``orch run --changed ARGS`` from the project root; its summary."""
        result = orch("run", "--changed", *args, "scripts", "--no-color", cwd=self.root)
        assert result.returncode == code, result.stdout + result.stderr
        return summary_of(result)

    def record(self) -> dict[str, Any]:
        """The latest record entry of each script; every journal line must be valid JSON."""
        journal = self.root / ".orchestrator" / "record.jsonl"
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        return {entry["script"]: entry for entry in entries}


@pytest.fixture
def sample(project: Project, tmp_path: Path) -> Sample:
    """The sample project, after one full run (so every script has a passing record)."""
    sample = Sample(project, tmp_path / "runs")
    summary = sample.run()
    assert {r["status"] for r in summary["results"]} == {"passed"}
    return sample


def ran(summary: Mapping[str, Any]) -> set[str]:
    """The scripts a run started; every other one must be skipped as up to date."""
    started = set()
    for result in summary["results"]:
        if result["status"] == "skipped":
            assert result["skip_reason"] == "up-to-date", result
        else:
            started.add(result["path"])
    return started


def bumped(before: Mapping[str, int], after: Mapping[str, int]) -> set[str]:
    """The scripts whose run count grew."""
    return {rel for rel, n in after.items() if n != before.get(rel, 0)}


# -- what --changed runs ----------------------------------------------------------------


def test_nothing_changed_skips_everything_and_starts_nothing(sample: Sample) -> None:
    before = sample.counts()
    assert before == {"a/x.py": 1, "b/y.py": 1, "c/z.py": 1, "w.py": 1}
    summary = sample.run()
    assert ran(summary) == set()
    assert {r["path"]: r["status"] for r in summary["results"]} == dict.fromkeys(before, "skipped")
    assert sample.counts() == before


def test_editing_one_script_reruns_only_it(sample: Sample) -> None:
    before = sample.counts()
    edit(sample.path("w.py"))
    summary = sample.run()
    assert ran(summary) == {"w.py"}
    assert bumped(before, sample.counts()) == {"w.py"}
    assert ran(sample.run()) == set()


def test_editing_a_shared_module_reruns_exactly_its_importers(sample: Sample) -> None:
    before = sample.counts()
    sample.util.write_text("VALUE = 2\n")
    assert ran(sample.run()) == {"a/x.py", "b/y.py"}
    assert bumped(before, sample.counts()) == {"a/x.py", "b/y.py"}


def test_touching_a_module_without_changing_it_reruns_nothing(sample: Sample) -> None:
    before = sample.counts()
    stat = sample.util.stat()
    os.utime(sample.util, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3_000_000_000))
    sample.util.write_text(sample.util.read_text())
    assert ran(sample.run()) == set()
    assert sample.counts() == before


def test_editing_a_watched_file_reruns_its_script(sample: Sample) -> None:
    before = sample.counts()
    sample.data.write_text("a,b\n1,2\n")
    assert ran(sample.run()) == {"c/z.py"}
    write(sample.root, "data/new.csv", "c\n")  # a new file matching the glob is a change too
    assert ran(sample.run()) == {"c/z.py"}
    write(sample.root, "data/notes.txt", "not matched\n")
    assert ran(sample.run()) == set()
    assert bumped(before, sample.counts()) == {"c/z.py"}
    assert sample.count("c/z.py") == 3


def test_editing_a_file_under_a_recursive_watch_glob_reruns_its_script(sample: Sample) -> None:
    sample.config('scripts:\n  c/z.py: {watch: ["data/**"]}\n')
    sample.run()
    deps = orch("deps", "--reverse", sample.data, cwd=sample.root)
    assert deps.stdout.split() == ["c/z.py"]
    sample.data.write_text("a,b\n1,2\n")
    assert ran(sample.run()) == {"c/z.py"}
    write(sample.root, "data/deeper/more.txt", "x\n")
    assert ran(sample.run()) == {"c/z.py"}
    assert ran(sample.run()) == set()


def test_a_settings_change_reruns_only_that_script(sample: Sample) -> None:
    before = sample.counts()
    sample.config(
        """
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          b/y.py: {env: {MODE: "fast"}}
        """
    )
    assert ran(sample.run()) == {"b/y.py"}
    # A config edit that changes no effective setting reruns nothing.
    sample.config(
        """
        # a comment
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          b/y.py:
            env: {MODE: "fast"}
        """
    )
    assert ran(sample.run()) == set()
    assert bumped(before, sample.counts()) == {"b/y.py"}


def test_a_script_whose_last_run_failed_always_runs_again(sample: Sample, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    flag.write_text("")
    sample.add(
        "flaky.py", "from pathlib import Path", f"raise SystemExit(Path({str(flag)!r}).exists())"
    )
    first = sample.run(code=1)
    assert ran(first) == {"flaky.py"}
    assert sample.record()["scripts/flaky.py"]["status"] == "failed"
    # Nothing changed, but it failed: it runs again, and again.
    assert ran(sample.run(code=1)) == {"flaky.py"}
    flag.unlink()
    assert ran(sample.run()) == {"flaky.py"}
    assert sample.record()["scripts/flaky.py"]["status"] == "passed"
    assert ran(sample.run()) == set()
    assert sample.count("flaky.py") == 3
    assert sample.count("w.py") == 1


def _chain(sample: Sample) -> None:
    """prep.py <- report.py <- final.py (depends_on), besides the sample's scripts."""
    for name in ("prep.py", "report.py", "final.py"):
        sample.add(name)
    sample.config(
        """
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          report.py: {depends_on: [prep.py]}
          final.py: {depends_on: [report.py]}
        """
    )
    assert ran(sample.run()) == {"prep.py", "report.py", "final.py"}


def test_dependents_of_a_changed_script_run_too(sample: Sample) -> None:
    _chain(sample)
    before = sample.counts()
    edit(sample.path("prep.py"))
    summary = sample.run()
    assert ran(summary) == {"prep.py", "report.py", "final.py"}
    assert {r["status"] for r in summary["results"] if r["path"] in ran(summary)} == {"passed"}
    assert bumped(before, sample.counts()) == {"prep.py", "report.py", "final.py"}


def test_an_up_to_date_dependency_is_skipped_and_does_not_block(sample: Sample) -> None:
    _chain(sample)
    before = sample.counts()
    edit(sample.path("report.py"))
    summary = sample.run()
    statuses = {r["path"]: r["status"] for r in summary["results"]}
    assert statuses["prep.py"] == "skipped"
    assert statuses["report.py"] == "passed"
    assert statuses["final.py"] == "passed"
    assert ran(summary) == {"report.py", "final.py"}
    assert bumped(before, sample.counts()) == {"report.py", "final.py"}


def test_force_runs_everything(sample: Sample) -> None:
    before = sample.counts()
    summary = sample.run("--force")
    assert ran(summary) == set(before)
    assert {r["status"] for r in summary["results"]} == {"passed"}
    assert all(n == 2 for n in sample.counts().values())


def test_the_record_is_valid_json_after_every_run_and_git_ignores_it(sample: Sample) -> None:
    state = sample.root / ".orchestrator"
    assert "*" in (state / ".gitignore").read_text().splitlines()
    paths = {f"scripts/{rel}" for rel in sample.rels()}
    first = sample.record()
    assert set(first) == paths
    assert {e["status"] for e in first.values()} == {"passed"}
    assert all(e["v"] == RECORD_VERSION and key in e["inputs"] for key, e in first.items())
    sample.run()
    assert sample.record() == first, "skipped scripts keep their entries"
    sample.util.write_text("VALUE = 3\n")
    sample.run()
    second = sample.record()
    assert set(second) == paths
    changed = {k for k in paths if second[k]["inputs"] != first[k]["inputs"]}
    assert changed == {"scripts/a/x.py", "scripts/b/y.py"}
    sample.add("boom.py", tail="raise SystemExit(3)")
    sample.run(code=1)
    assert sample.record()["scripts/boom.py"]["status"] == "failed"


@pytest.mark.timeout(60)
def test_an_interrupted_run_keeps_the_finished_scripts_record(
    project: Project, tmp_path: Path
) -> None:
    sample = Sample(project, tmp_path / "runs")
    hold = tmp_path / "hold"
    hold.write_text("")
    sample.add("a_quick.py")
    sample.add(
        "b_long.py",
        "import time\nfrom pathlib import Path",
        f"while Path({str(hold)!r}).exists():\n    time.sleep(0.05)",
    )
    proc = subprocess.Popen(
        _command(("run", "--changed", "-k", "[ab]_*.py", "scripts", "--no-color")),
        cwd=sample.root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: sample.count("b_long.py") == 1, timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    record = sample.record()
    assert record["scripts/a_quick.py"]["status"] == "passed"
    assert "scripts/b_long.py" not in record, "an interrupted script says nothing; not recorded"

    hold.unlink()
    summary = sample.run("-k", "[ab]_*.py")
    assert ran(summary) == {"b_long.py"}
    assert sample.count("a_quick.py") == 1
    assert sample.count("b_long.py") == 2


# -- orch deps --------------------------------------------------------------------------


def deps_lines(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """``(kind, path)`` for each input line of ``orch deps SCRIPT``."""
    assert result.returncode == 0, result.stdout + result.stderr
    rows = []
    for line in result.stdout.splitlines()[1:]:
        kind, path = line.split()[:2]
        rows.append((kind, path))
    return rows


def test_deps_lists_a_scripts_modules_and_watched_files(sample: Sample) -> None:
    write(sample.root, "src/deep.py", "X = 1\n")
    sample.util.write_text("import deep\nVALUE = 1\n")
    result = orch("deps", "a/x.py", cwd=sample.root)
    assert result.stdout.splitlines()[0] == "a/x.py"
    assert deps_lines(result) == [
        ("static", "scripts/a/x.py"),
        ("static", "src/util.py"),
        ("static", "src/deep.py"),
    ]
    write(sample.root, "data/more.csv", "1\n")
    result = orch("deps", "-d", sample.project.scripts, sample.path("c/z.py"), cwd=sample.runs)
    assert result.stdout.splitlines()[0] == "c/z.py"
    assert deps_lines(result) == [
        ("static", "scripts/c/z.py"),
        ("watch", "data/input.csv"),
        ("watch", "data/more.csv"),
        ("config", "scripts/config.yaml"),  # it sets c/z.py's watch:
    ]


def test_deps_names_a_module_with_a_syntax_error(sample: Sample) -> None:
    sample.util.write_text("def broken(:\n")
    result = orch("deps", "b/y.py", cwd=sample.root)
    (line,) = [line for line in result.stdout.splitlines() if "src/util.py" in line]
    assert "SyntaxError" in line


def test_deps_reverse_lists_exactly_the_affected_scripts(sample: Sample) -> None:
    def reverse(target: str | Path) -> subprocess.CompletedProcess[str]:
        result = orch("deps", "--reverse", target, cwd=sample.root)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    assert reverse("src/util.py").stdout.splitlines() == ["a/x.py", "b/y.py"]
    assert reverse(sample.data).stdout.splitlines() == ["c/z.py"]
    assert reverse("w.py").stdout.splitlines() == ["w.py"]
    lonely = write(sample.root, "src/lonely.py", "")
    result = reverse(lonely)
    assert result.stdout == ""
    assert result.stderr.strip() == "no script depends on src/lonely.py"


@pytest.mark.parametrize("args", [["nope.py"], ["--reverse", "src/nope.py"]])
def test_deps_of_a_missing_target_is_one_line_and_exit_2(sample: Sample, args: list[str]) -> None:
    result = orch("deps", *args, cwd=sample.root)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nope.py" in lines[0]


def test_deps_of_a_file_that_is_not_a_script_is_one_line_and_exit_2(sample: Sample) -> None:
    result = orch("deps", "src/util.py", cwd=sample.root)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "src/util.py" in lines[0] and "not a script" in lines[0]


def test_a_torn_journal_line_is_skipped_and_compaction_keeps_the_latest(tmp_path: Path) -> None:
    from orchestrator.changes import Record, Snapshot
    from orchestrator.project import Project as Located

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "scripts").mkdir()
    record = Record(Located.locate(tmp_path / "scripts"))
    for i in range(100):
        record.update(tmp_path / "scripts" / "a.py", Snapshot({"a": f"h{i}"}, {}, {}), "passed")
    record.update(tmp_path / "scripts" / "b.py", Snapshot({"b": "h"}, {}, {}), "failed")
    with open(record.path, "a") as journal:
        journal.write('{"script": "scripts/c.py", "fingerp')  # a crash mid-write
    assert set(record.load()) == {"scripts/a.py", "scripts/b.py"}
    record.compact()
    lines = record.path.read_text().splitlines()
    assert len(lines) == 2
    assert record.load()["scripts/a.py"]["inputs"] == {"a": "h99"}


def test_the_record_read_again_sees_what_was_appended_since(project: Project) -> None:
    """The parse is kept while the file is the same; a line appended since is read."""
    from orchestrator.changes import Record, Snapshot
    from orchestrator.project import Project as Located

    record = Record(Located.locate(project.scripts))
    nothing = Snapshot(inputs={}, settings={}, python={}, packages={}, environ={})
    record.update(project.script("a.py"), nothing, "passed")
    assert set(record.load()) == {"scripts/a.py"}
    record.update(project.script("b.py"), nothing, "failed")
    entries = record.load()
    assert set(entries) == {"scripts/a.py", "scripts/b.py"}
    assert entries["scripts/b.py"]["status"] == "failed"
