"""Traced inputs: what a script really loads and reads reruns it, under ``--changed`` and watch."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project
from test_changes import edit, orch, ran, summary_of, write
from test_watch import watched_dirs

from orchestrator.changes import Tracking
from orchestrator.plan import Plan, RunOptions, build_plan
from orchestrator.project import Project as ProjectPaths
from orchestrator.runner import run_script
from orchestrator.tracing import Trace, TraceError, read_trace
from orchestrator.watch import Edit, WatchState, plan_batch

# -- the bootstrap keeps a script as `python script.py` runs it ----------------------------

_FAITHFUL = """
import sys
print(__name__, sys.argv, repr(sys.path[0]))
print("boot" in " ".join(sys.path), "sitecustomize" in sys.modules)
def fail():
    raise ValueError("boom")
if sys.argv[1:] == ["raise"]:
    fail()
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("args", [["3"], ["0"], ["raise"]])
def test_a_traced_script_runs_exactly_as_python_runs_it(project: Project, args: list[str]) -> None:
    script = project.script("faithful.py", _FAITHFUL)
    bare = subprocess.run(
        [sys.executable, str(script), *args], cwd=project.root, capture_output=True, text=True
    )
    traced = run_script(script, root=project.root, args=args, trace=True, allowed_exit_codes=())
    assert traced["exit_code"] == bare.returncode
    assert traced["stdout"].splitlines()[0] == bare.stdout.splitlines()[0]
    # The boot folder is off sys.path before the script runs.
    assert traced["stdout"].splitlines()[1].startswith("False")
    assert traced["stderr"] == bare.stderr  # the same traceback, line for line
    assert traced["trace"] is not None, traced.get("trace_error")


def test_an_untraced_run_has_no_trace(project: Project) -> None:
    script = project.script("plain.py", "print('hi')\n")
    result = run_script(script, root=project.root)
    assert "trace" not in result and result["status"] == "passed"


def test_a_trace_records_reads_writes_attempts_and_listings(project: Project) -> None:
    write(project.root, "data/in.txt", "x\n")
    write(project.root, "src/helper.py", "X = 1\n")
    script = project.script(
        "s.py",
        """
        import glob, helper
        open("data/in.txt").read()
        open("data/out.txt", "w").write("y")
        try:
            open("data/absent.txt")
        except FileNotFoundError:
            pass
        glob.glob("data/*.txt")
        try:
            import not_made_yet
        except ImportError:
            pass
        """,
    )
    result = run_script(script, root=project.root, trace=True)
    trace = Trace.from_dict(result["trace"])
    assert {"scripts/s.py", "src/helper.py", "data/in.txt", "data/absent.txt"} <= set(trace.reads)
    assert trace.writes == ("data/out.txt",)
    assert "data" in trace.listed
    assert {"helper", "not_made_yet"} <= set(trace.modules)
    assert not any("__pycache__" in p or p.startswith(".orchestrator") for p in trace.reads)


def test_a_killed_script_leaves_what_it_used_so_far(project: Project) -> None:
    write(project.root, "data/first.txt", "x\n")
    script = project.script(
        "slow.py", "open('data/first.txt').read()\nimport time\ntime.sleep(30)\n"
    )
    result = run_script(script, root=project.root, trace=True, timeout=1)
    assert result["status"] == "timeout"
    assert "data/first.txt" in result["trace"]["reads"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (None, "no trace was written"),
        (b"garbage\0", "corrupt"),
        (b"#orchestrator-trace 1\0r/elsewhere/x.py\0", "outside the project"),
        (b"#orchestrator-trace 1\0r", "truncated"),
        (b"#orchestrator-trace 1\0zwhat\0", "unknown record"),
    ],
)
def test_a_bad_trace_file_is_one_clear_reason(tmp_path: Path, data: bytes | None, why: str) -> None:
    path = tmp_path / "trace"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(TraceError, match=why):
        read_trace(path, tmp_path / "root")


# -- the mutation suite: each input kind reruns its script, and only it --------------------

_KINDS: dict[str, tuple[dict[str, str], str, str]] = {
    # script: ({file: content}, the script's body, the file to change ("+" = create))
    "plain.py": ({"src/plainmod.py": "X = 1\n"}, "import plainmod\n", "src/plainmod.py"),
    "relative.py": (
        {
            "src/pkg/__init__.py": "",
            "src/pkg/sub.py": "from . import helper\n",
            "src/pkg/helper.py": "X = 1\n",
        },
        "import pkg.sub\n",
        "src/pkg/helper.py",
    ),
    "computed.py": (
        {"src/tables/__init__.py": "", "src/tables/t1.py": "X = 1\n"},
        "import importlib\nimportlib.import_module('tables.' + 't' + str(1))\n",
        "src/tables/t1.py",
    ),
    "loop.py": (
        {"src/loopa_mod.py": "", "src/loopb_mod.py": ""},
        "for n in ['loopa', 'loopb']:\n    __import__(n + '_mod')\n",
        "src/loopb_mod.py",
    ),
    "spec.py": (
        {"plugins/plug.py": "X = 1\n"},
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('plug', 'plugins/plug.py')\n"
        "mod = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(mod)\n",
        "plugins/plug.py",
    ),
    "lazy.py": (
        {
            "src/lazypkg/__init__.py": "import importlib\n"
            "def __getattr__(name):\n    return importlib.import_module('.' + name, __name__)\n",
            "src/lazypkg/heavy.py": "X = 1\n",
        },
        "import lazypkg\nlazypkg.heavy.X\n",
        "src/lazypkg/heavy.py",
    ),
    "reader.py": ({"data/table.txt": "1\n"}, "open('data/table.txt').read()\n", "data/table.txt"),
    "optional.py": (
        {},
        "try:\n    open('data/optional.txt').read()\nexcept FileNotFoundError:\n    pass\n",
        "+data/optional.txt",
    ),
    "child.py": (
        {"src/childmod.py": "X = 1\n"},
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import childmod'], check=True)\n",
        "src/childmod.py",
    ),
}


class Mutations:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.root = project.root
        for rel, (files, body, _) in _KINDS.items():
            for name, text in files.items():
                write(self.root, name, text)
            project.script(rel, body)
        project.script("configured.py", "pass\n")
        project.script("bystander.py", "import json\n")
        write(self.root, "src/unrelated.py", "X = 1\n")
        write(self.root, "data/other.txt", "x\n")
        self.config = project.config("scripts:\n  configured.py: {args: ['1']}\n")

    def run(self) -> set[str]:
        result = orch("run", "--changed", "scripts", "--no-color", cwd=self.root)
        assert result.returncode == 0, result.stdout + result.stderr
        return ran(summary_of(result))

    def plan(self) -> Plan:
        return build_plan(RunOptions(scripts_dir=self.project.scripts))

    def planned(
        self, changed: Path, kind: str = "modified", before: Plan | None = None
    ) -> set[str]:
        """What ``orch watch`` would rerun for this edit (its planner, on the real record).

        ``before``: the plan watch held before the edit (a config edit changes it).
        """
        options = RunOptions(scripts_dir=self.project.scripts)
        plan = before or build_plan(options)
        tracking = Tracking(plan.project)
        return plan_batch([Edit(kind, changed)], WatchState(plan), tracking, options).scripts


@pytest.fixture
def mutations(project: Project) -> Mutations:
    sample = Mutations(project)
    assert len(sample.run()) == len(_KINDS) + 2  # the first run runs everything
    return sample


def test_each_input_kind_reruns_exactly_its_script(mutations: Mutations) -> None:
    for rel, (_, _, target) in _KINDS.items():
        created = target.startswith("+")
        path = mutations.root / target.lstrip("+")
        if created:
            write(mutations.root, target.lstrip("+"), "new\n")
        else:
            edit(path)
        assert mutations.planned(path, "added" if created else "modified") == {rel}, target
        assert mutations.run() == {rel}, target
    before = mutations.plan()
    mutations.config.write_text("scripts:\n  configured.py: {args: ['2']}\n")
    assert mutations.planned(mutations.config, before=before) == {"configured.py"}
    assert mutations.run() == {"configured.py"}


def test_an_unrelated_edit_reruns_nothing(mutations: Mutations) -> None:
    for rel in ("src/unrelated.py", "data/other.txt"):
        edit(mutations.root / rel)
        assert mutations.planned(mutations.root / rel) == set(), rel
    assert mutations.run() == set()


def test_a_traced_file_that_is_deleted_is_a_change(mutations: Mutations) -> None:
    (mutations.root / "data/table.txt").unlink()
    assert mutations.planned(mutations.root / "data/table.txt", "deleted") == {"reader.py"}


def test_a_corrupt_trace_in_the_record_reruns_the_script_and_says_why(
    mutations: Mutations,
) -> None:
    journal = mutations.root / ".orchestrator" / "record.jsonl"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    for entry in lines:
        if entry["script"] == "scripts/plain.py":
            entry["trace"] = {"reads": "not a list"}
    journal.write_text("".join(json.dumps(e) + "\n" for e in lines))
    result = orch("run", "--changed", "scripts", "--no-color", cwd=mutations.root)
    assert result.returncode == 0, result.stderr
    assert ran(summary_of(result)) == {"plain.py"}
    assert re.search(r"PASSED plain.py \S+ \(inputs unknown: the recorded trace", result.stdout)
    assert mutations.run() == set()  # traced again: known again


def test_a_script_s_own_writes_never_rerun_it(project: Project) -> None:
    project.script("writer.py", "open('data/out.txt', 'w').write('x')\n")
    (project.root / "data").mkdir()
    result = orch("run", "scripts", "--no-color", cwd=project.root)
    assert result.returncode == 0, result.stderr
    options = RunOptions(scripts_dir=project.scripts)
    plan = build_plan(options)
    out = project.root / "data/out.txt"
    assert (
        plan_batch(
            [Edit("modified", out)], WatchState(plan), Tracking(plan.project), options
        ).scripts
        == set()
    )


def test_trace_false_runs_bare_and_deps_says_so(project: Project) -> None:
    write(project.root, "data/table.txt", "1\n")
    project.script("bare.py", "import sys\nopen('data/table.txt').read()\nprint(sys.path)\n")
    project.config("scripts:\n  bare.py: {trace: false}\n")
    result = orch("run", "scripts", "--no-color", cwd=project.root)
    assert result.returncode == 0, result.stderr
    log = json.loads(
        next((project.root / "reports" / "latest" / "logs").glob("bare.py.json")).read_text()
    )
    assert "trace" not in log and "_boot" not in log["stdout"]
    deps = orch("deps", "scripts/bare.py", cwd=project.root)
    assert "not traced (trace: false)" in deps.stdout
    assert "data/table.txt" not in deps.stdout


def test_deps_marks_where_each_input_comes_from(mutations: Mutations) -> None:
    deps = orch("deps", "scripts/computed.py", cwd=mutations.root)
    assert deps.returncode == 0, deps.stderr
    lines = deps.stdout.splitlines()
    assert "  static  scripts/computed.py" in lines
    assert "  traced  src/tables/t1.py" in lines
    assert not any(line.startswith("  config  ") for line in lines)  # it sets nothing here
    configured = orch("deps", "scripts/configured.py", cwd=mutations.root).stdout.splitlines()
    assert any(line.startswith("  config  scripts/config.yaml") for line in configured)
    reverse = orch("deps", "--reverse", "src/tables/t1.py", cwd=mutations.root)
    assert reverse.stdout.split() == ["computed.py"]
    configured = orch("deps", "--reverse", "scripts/config.yaml", cwd=mutations.root)
    assert configured.stdout.split() == ["configured.py"]


def test_deps_lists_a_script_s_outputs(project: Project) -> None:
    project.script("writer.py", "open('out.txt', 'w').write('x')\n")
    assert orch("run", "scripts", "--no-color", cwd=project.root).returncode == 0
    deps = orch("deps", "scripts/writer.py", cwd=project.root)
    assert "  output  out.txt" in deps.stdout.splitlines()


def test_the_search_path_is_the_same_for_the_analysis_and_the_script(project: Project) -> None:
    write(project.root, "src/insrc.py", "")
    write(project.root, "atroot.py", "")
    script = project.script("paths.py", "import sys, insrc, atroot\nprint(sys.path[1:3])\n")
    paths = ProjectPaths.locate(project.scripts)
    result = run_script(script, root=project.root)
    assert result["status"] == "passed", result["stderr"]
    assert result["stdout"].strip() == repr([str(p) for p in paths.search_path])


def test_watch_registers_the_nearest_folder_of_a_traced_file_not_made_yet(
    project: Project,
) -> None:
    """An attempt on data/later/x.txt, in folders not made yet: watching the root sees it made."""

    project.script(
        "hopeful.py", "import os\ntry:\n    open('data/later/x.txt')\nexcept OSError:\n    pass\n"
    )
    assert orch("run", "scripts", "--no-color", cwd=project.root).returncode == 0
    dirs = watched_dirs(project)
    assert project.root in dirs
    assert not any(
        d.relative_to(project.root).parts[:1] == ("data",) for d in dirs if d != project.root
    )


def test_a_script_walking_the_whole_tree_settles(project: Project) -> None:
    """Its walk lists reports/ and .orchestrator/, which every run changes: not inputs."""
    project.script("walker.py", 'import os\nprint(sum(len(f) for _, _, f in os.walk(".")))\n')
    first = project.orch("run", "scripts")
    assert first.returncode == 0, first.stdout + first.stderr
    for _ in range(2):
        again = project.orch("run", "--changed", "scripts")
        assert "SKIPPED walker.py" in again.stdout, again.stdout
    (project.scripts / "new.txt").write_text("a file where it walks\n")
    changed = project.orch("run", "--changed", "scripts")
    assert "PASSED walker.py" in changed.stdout, changed.stdout


def test_a_state_file_a_script_loads_and_saves_is_an_input_as_it_left_it(
    project: Project,
) -> None:
    state = project.root / "state.json"
    state.write_text('{"n": 0}')
    project.script(
        "counter.py",
        f"""
        import json
        path = {str(state)!r}
        with open(path) as handle:
            n = json.load(handle)["n"]
        with open(path, "w") as handle:
            json.dump({{"n": n + 1}}, handle)
        """,
    )
    assert project.orch("run", "scripts").returncode == 0
    for _ in range(2):  # its own save is no change: it settles
        again = project.orch("run", "--changed", "scripts")
        assert "SKIPPED counter.py" in again.stdout, again.stdout
    state.write_text("not json")  # someone else's edit that breaks it
    broken = project.orch("run", "--changed", "scripts")
    assert "FAILED counter.py" in broken.stdout, broken.stdout


def test_a_sqlite_database_a_script_queries_is_an_input(project: Project) -> None:
    import sqlite3

    database = project.root / "data.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("create table t (v integer)")
        db.execute("insert into t values (1)")
        db.commit()
    project.script(
        "query.py",
        f"""
        import sqlite3
        db = sqlite3.connect({str(database)!r})
        assert db.execute("select v from t").fetchone() == (1,)
        """,
    )
    assert project.orch("run", "scripts").returncode == 0
    assert "SKIPPED query.py" in project.orch("run", "--changed", "scripts").stdout
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("update t set v = 2")
        db.commit()
    changed = project.orch("run", "--changed", "scripts")
    assert "FAILED query.py" in changed.stdout, changed.stdout


def test_where_the_knowledge_ends_is_said(project: Project) -> None:
    """Programs whose reads are not traced: anything but Python, and Python with -I/-E/-S."""
    data = project.root / "data.txt"
    data.write_text("x\n")
    project.script(
        "starts.py",
        f"""
        import subprocess, sys
        subprocess.run(["cat", {str(data)!r}], check=True, capture_output=True)
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        subprocess.run([sys.executable, "-c", "pass"], check=True)  # traced itself
        """,
    )
    run = project.orch("run", "scripts")
    assert run.returncode == 0, run.stdout + run.stderr
    log = json.loads((project.root / "reports" / "latest" / "logs" / "starts.py.json").read_text())
    assert log["trace"]["programs"] == sorted(["cat", sys.executable]), log["trace"]
    assert log["inputs_incomplete"] == [f"ran {p}" for p in log["trace"]["programs"]], log
    deps = project.orch("deps", "scripts/starts.py").stdout
    assert "  inputs incomplete: ran cat\n" in deps, deps
    why = project.orch("why", "scripts/starts.py").stdout
    assert "  inputs incomplete: ran cat\n" in why, why


def test_a_read_outside_the_project_is_named_where_the_knowledge_ends(
    project: Project, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "data.txt"
    outside.parent.mkdir()
    outside.write_text("x\n")
    project.script(
        "away.py",
        f"""
        import json, os, tempfile
        open({str(outside)!r}).read()
        open(os.devnull).read()           # a device: no one's data
        open(json.__file__).read()        # the interpreter's own files
        fd, own = tempfile.mkstemp()      # what it wrote itself, then read back
        os.write(fd, b"y"); os.close(fd)
        open(own).read(); os.unlink(own)
        """,
    )
    project.script("inside.py", "open('pyproject.toml').read()\n")
    assert project.orch("run", "scripts").returncode == 0
    logs = project.root / "reports" / "latest" / "logs"
    log = json.loads((logs / "away.py.json").read_text())
    gap = f"read {outside} (outside the project)"
    assert log["trace"]["outside"] == [str(outside)], log["trace"]
    assert log["inputs_incomplete"] == [gap], log
    assert "inputs_incomplete" not in json.loads((logs / "inside.py.json").read_text())
    assert f"  inputs incomplete: {gap}\n" in project.orch("deps", "scripts/away.py").stdout
    why = project.orch("why", "--json", "scripts/away.py", "scripts/inside.py").stdout
    assert [a["inputs_incomplete"] for a in json.loads(why)] == [[gap], []], why
