"""Why a script runs: one decision with its reasons, in results, console, reports and `orch why`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCH_ENV, Project, wait_for

from orchestrator.changes import EDITED, Snapshot, differences


def ran(out: str) -> dict[str, str]:
    """``{script: why}`` of the console's result lines of scripts that ran."""
    lines = re.findall(
        r"^\[\d+/\d+\] (PASSED|FAILED|TIMEOUT|ERROR) (\S+) \S+s(?: \((.*)\))?$", out, re.M
    )
    return {name: why for _, name, why in lines}


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    match = re.search(r"^reports: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    data: dict[str, Any] = json.loads((Path(match.group(1)) / "summary.json").read_text())
    return data


def changed(project: Project, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    run = project.orch("run", "--changed", *args, "scripts", "--no-color", env=env)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return ran(run.stdout)


# -- the phrases --------------------------------------------------------------------------


def test_differences_name_each_kind_of_change() -> None:
    then = Snapshot(
        inputs={
            "a.py": "1",
            "src/u.py": "2",
            "data/old.csv": "3",
            "data/w.csv": "4",
            "in.txt": EDITED,
        },
        settings={"timeout": "t1", "env.API_URL": "e1", "args": "x"},
        python={"version": "3.11.7", "build": "b", "path": "/p", "env": ""},
        packages={"six": "1.16.0", "gone": "1.0"},
        environ={"MODE": "m1", "UNSET": None},
    )
    now = Snapshot(
        inputs={
            "a.py": "1",
            "src/u.py": "22",
            "data/old.csv": None,
            "data/extra.csv": "5",
            "in.txt": "6",
        },
        settings={"timeout": "t2", "env.API_URL": "e2", "args": "x"},
        python={"version": "3.12.1", "build": "b", "path": "/p", "env": ""},
        packages={"six": "1.17.0"},
        environ={"MODE": "m2", "UNSET": None},
    )
    why = differences(then, now, lambda rel: None)
    assert why == [
        "src/u.py changed",
        "data/old.csv removed",
        "new input data/extra.csv",
        "in.txt changed while it ran",
        "data/w.csv removed",
        "settings changed: env.API_URL, timeout",
        "interpreter changed: 3.11.7 -> 3.12.1",
        "gone 1.0 removed",
        "six 1.16.0 -> 1.17.0",
        "environment variable MODE changed",
    ]
    assert differences(then, then, lambda rel: "x") == []


def test_a_long_list_of_reasons_is_cut_and_counted() -> None:
    then = Snapshot({f"f{i}": "a" for i in range(40)}, {}, {})
    now = Snapshot({f"f{i}": "b" for i in range(40)}, {}, {})
    why = differences(then, now, lambda rel: None)
    assert len(why) == 12 and why[-1] == "and 29 more"


# -- orch run --changed ---------------------------------------------------------------------


@pytest.fixture
def tree(project: Project) -> Project:
    root = project.root
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/pkg/__init__.py").write_text("")
    (root / "src/pkg/util.py").write_text("VALUE = 1\n")
    (root / "data").mkdir()
    (root / "data/old.csv").write_text("a\n")
    project.script("a.py", "from pkg import util\n")
    project.script(
        "b.py",
        """
        for name in ("data/old.csv", "data/extra.csv"):
            try:
                open(name).read()
            except FileNotFoundError:  # an attempt is traced too
                pass
        """,
    )
    project.script("c.py", "print('c')\n")
    project.script("d.py", "print('d')\n")
    project.config("scripts:\n  d.py: {depends_on: [a.py]}\n")
    return project


def test_each_result_says_why_it_ran_on_the_console_and_in_every_report(tree: Project) -> None:
    full = tree.orch("run", "scripts", "--no-color")
    assert full.returncode == 0, full.stdout + full.stderr
    assert set(ran(full.stdout).values()) == {""}, "a full run adds nothing to each line"
    whys = {r["path"]: r["why"] for r in summary(full)["results"]}
    assert whys == {name: ["full run"] for name in ("a.py", "b.py", "c.py", "d.py")}
    assert changed(tree) == {}, "nothing changed since the full run"

    (tree.root / "src/pkg/util.py").write_text("VALUE = 2\n")
    (tree.root / "data/extra.csv").write_text("x\n")
    run = tree.orch("run", "--changed", "scripts", "--no-color")
    assert ran(run.stdout) == {
        "a.py": "src/pkg/util.py changed",
        "b.py": "new input data/extra.csv",
        "d.py": "depends on a.py, which runs",
    }, run.stdout
    results = {r["path"]: r for r in summary(run)["results"]}
    assert results["a.py"]["why"] == ["src/pkg/util.py changed"]
    assert results["c.py"]["why"] == [] and results["c.py"]["skip_reason"] == "up-to-date"
    report = (Path(re.search(r"^reports: (.+)$", run.stdout, re.M)[1]) / "report.md").read_text()
    assert "Why it ran" in report and "new input data/extra.csv" in report

    (tree.root / "data/old.csv").unlink()
    assert changed(tree) == {"b.py": "data/old.csv removed"}
    assert changed(tree, "--force") == dict.fromkeys(["a.py", "b.py", "c.py", "d.py"], "forced")


def test_a_new_script_a_failure_and_a_settings_change_each_say_so(tree: Project) -> None:
    assert set(changed(tree).values()) == {"new script"}
    tree.script("c.py", "raise SystemExit(3)\n")
    assert changed(tree) == {"c.py": "scripts/c.py changed"}
    assert changed(tree) == {"c.py": "last run failed"}
    tree.config(
        """
        scripts:
          d.py: {depends_on: [a.py]}
          b.py: {timeout: 30, env: {API_URL: "http://x"}}
        """
    )
    assert changed(tree)["b.py"] == "settings changed: env.API_URL, timeout"


def test_orch_why_answers_without_running_anything(tree: Project) -> None:
    assert tree.orch("run", "scripts").returncode == 0
    marker = tree.root / "ran.txt"
    tree.script("c.py", f"open({str(marker)!r}, 'a').write('ran')\n")
    why = tree.orch("why", "a.py", "scripts/c.py", "a.py")
    assert why.returncode == 0, why.stderr
    lines = why.stdout.splitlines()
    assert lines[0].startswith("a.py is up to date: passed with the same inputs at 20"), lines
    assert lines[1:] == ["c.py runs:", "  scripts/c.py changed"], lines
    assert not marker.exists(), "orch why runs nothing"
    answer = json.loads(tree.orch("why", "--json").stdout)
    assert [a["script"] for a in answer] == ["a.py", "b.py", "c.py", "d.py"]
    assert [a["runs"] for a in answer] == [False, False, True, False]
    bad = tree.orch("why", "nope.py")
    assert bad.returncode == 2 and "nope.py: no such file" in bad.stderr, bad.stderr


def test_an_input_edited_while_the_script_ran_is_never_recorded_as_passed_with_it(
    project: Project, tmp_path: Path
) -> None:
    data = project.root / "data.txt"
    data.write_text("first\n")
    ready, go = tmp_path / "ready", tmp_path / "go"
    project.script(
        "a.py",
        f"""
        import os, time
        open("data.txt").read()  # known from its trace only: not in its first snapshot
        open({str(ready)!r}, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists({str(go)!r}):
            assert time.monotonic() < deadline, "the test never said go"
            time.sleep(0.01)
        """,
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--changed", "scripts", "--no-color"],
        cwd=project.root,
        env=ORCH_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(ready.exists, 30), "the script never started"
        data.write_text("second, after the script read the first\n")
        go.touch()
        out, _ = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, out
    assert changed(project) == {"a.py": "data.txt changed while it ran"}
    assert changed(project) == {}, "read as it is now: up to date"


def test_a_dependency_version_change_reruns_the_scripts_that_imported_it(
    project: Project, tmp_path: Path
) -> None:
    site = tmp_path / "lib" / "site-packages"
    (site / "mypkg").mkdir(parents=True)
    (site / "mypkg/__init__.py").write_text("VALUE = 1\n")
    info = site / "mypkg-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 1.2.0\n")
    project.script("uses.py", f"import sys\nsys.path.insert(0, {str(site)!r})\nimport mypkg\n")
    project.script("other.py", "print('no packages')\n")
    assert set(changed(project)) == {"uses.py", "other.py"}
    assert changed(project) == {}
    info.rename(site / "mypkg-1.3.0.dist-info")
    assert changed(project) == {"uses.py": "mypkg 1.2.0 -> 1.3.0"}


def test_an_inherited_variable_the_script_reads_is_an_input_by_value(project: Project) -> None:
    project.script("reads.py", "import os\nprint(os.environ.get('MODE'))\n")
    project.script(
        "passes_on.py", "import os, subprocess\nsubprocess.run(['true'], env=dict(os.environ))\n"
    )
    one, two = "mode-value-one-Q7", "mode-value-two-Q7"
    assert set(changed(project, env={"MODE": one})) == {"reads.py", "passes_on.py"}
    assert changed(project, env={"MODE": one}) == {}
    assert changed(project, env={"MODE": two, "OTHER": "x"}) == {
        "reads.py": "environment variable MODE changed"
    }
    record = (project.root / ".orchestrator" / "record.jsonl").read_text()
    assert "MODE" in record and "Q7" not in record, "names are kept, values only as hashes"


def test_another_interpreter_at_the_same_path_reruns_everything_it_ran(
    project: Project, tmp_path: Path
) -> None:
    fake = tmp_path / "python3"

    def interpreter(version: str) -> None:
        fake.write_text(
            textwrap.dedent(
                f"""\
                #!/bin/sh
                if [ "$1" = -I ]; then echo "{version} (fake build)"; exit 0; fi
                exec {sys.executable} "$@"
                """
            )
        )
        fake.chmod(0o755)

    interpreter("3.99.0")
    project.script("a.py", "print('a')\n")
    assert changed(project, "--python", str(fake)) == {"a.py": "new script"}
    assert changed(project, "--python", str(fake)) == {}
    interpreter("3.99.1")
    assert changed(project, "--python", str(fake)) == {
        "a.py": "interpreter changed: 3.99.0 -> 3.99.1"
    }


def test_a_module_that_shadows_the_standard_library_is_a_new_input(project: Project) -> None:
    project.script("a.py", "import fractions\nprint(fractions.Fraction(1, 3))\n")
    assert changed(project) == {"a.py": "new script"}
    assert changed(project) == {}
    project.script("fractions.py", "Fraction = None\n")
    assert changed(project)["a.py"] == "new input scripts/fractions.py"
