"""``orch watch``: the real command, the real watcher, real edits; runs counted exactly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from conftest import Project, pid_alive, wait_for

from orchestrator.changes import Snapshot, Tracking
from orchestrator.plan import Plan, RunOptions, build_plan
from orchestrator.tracing import Trace
from orchestrator.watch import Batch, Edit, WatchState, plan_batch

#: Seconds to wait for something that should happen (a loaded machine delays the watcher).
TIMEOUT = 30.0
#: The script :meth:`Sample.settled` edits to show that nothing more is coming.
SENTINEL = "zz_settle.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["NO_COLOR"] = "1"
    return env


class Watch:
    """A running ``orch watch scripts --no-color ARGS``, its output collected by a thread."""

    def __init__(self, root: Path, *args: str, ready: bool = True) -> None:
        command = [sys.executable, "-m", "orchestrator", "watch", "scripts", "--no-color", *args]
        self.proc = subprocess.Popen(
            command,
            cwd=root,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if ready:
            self.wait(r"^watching scripts/")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def mark(self) -> int:
        """The current end of the output: pass it as ``after`` to look only at what follows."""
        return len(self.output)

    def since(self, after: int) -> str:
        return self.output[after:]

    def wait(self, pattern: str, after: int = 0, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` (a multiline regex) in the output after ``after``."""
        regex = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = regex.search(self.output, after)
            if match:
                found.append(match)
            return match is not None or not self.alive()

        if not wait_for(seen, timeout) or not found:
            self._reader.join(1)  # it exited: read its last words before giving up
            seen()
        if not found:
            state = "running" if self.alive() else f"exited {self.proc.returncode}"
            raise AssertionError(f"{pattern!r} not seen in {timeout} s ({state}):\n{self.output}")
        return found[0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self, timeout: float = 10) -> int:
        """Send SIGINT (Ctrl-C) and return the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.alive():
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Sample:
    """A project whose scripts append a line to ``runs/<name>`` each time they start."""

    def __init__(self, project: Project, runs: Path) -> None:
        self.project = project
        self.root = project.root
        self.scripts = project.scripts
        self.runs = runs
        runs.mkdir(exist_ok=True)
        self.session: Watch | None = None  # the watch running on it, if any

    def standard(self) -> Sample:
        """``a/x.py`` and ``b/y.py`` import ``src/util.py``; ``c/z.py`` watches ``data/*.csv``."""
        self.util = self.write("src/util.py", "VALUE = 1\n")
        self.data = self.write("data/input.csv", "a,b\n")
        self.add("a/x.py", "import util")
        self.add("b/y.py", "from util import VALUE")
        self.add("c/z.py")
        self.add("w.py")
        self.project.config('scripts:\n  c/z.py: {watch: ["data/*.csv"]}\n')
        return self

    def write(self, rel: str, body: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip("\n"))
        return path

    def marker(self, rel: str) -> Path:
        return self.runs / rel.replace("/", "_")

    def add(self, rel: str, head: str = "", tail: str = "") -> Path:
        """A script that runs ``head``, appends to its marker, then runs ``tail``."""
        body = (
            f"{head}\n"
            f"with open({str(self.marker(rel))!r}, 'a') as f:\n"
            "    f.write('run\\n')\n"
            f"{tail}\n"
        )
        return self.project.script(rel, body)

    def count(self, rel: str) -> int:
        marker = self.marker(rel)
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    def counts(self) -> dict[str, int]:
        scripts = sorted(p.relative_to(self.scripts).as_posix() for p in self.scripts.rglob("*.py"))
        return {rel: self.count(rel) for rel in scripts if rel != SENTINEL}

    def reached(self, expected: Mapping[str, int], timeout: float = TIMEOUT) -> None:
        """Wait until each script has started at least its ``expected`` number of times."""
        if not wait_for(lambda: all(self.count(r) >= n for r, n in expected.items()), timeout):
            raise AssertionError(f"runs {self.counts()}, expected {dict(expected)}")

    def settled(self, expected: Mapping[str, int]) -> None:
        """Once whatever is coming has run, the run counts are exactly ``expected``.

        Not a quiet spell, which a slow machine makes pass vacuously: a sentinel
        script is edited (added the first time) and its run awaited. watch runs
        what it sees in order, and an edit made while a batch runs waits for it,
        so once the sentinel has run, every run caused before it has too.
        """
        self.reached(expected)
        self.settle()
        assert self.counts() == dict(expected)

    def settle(self) -> None:
        """Wait until whatever the edits so far cause has run (see :meth:`settled`)."""
        before = self.count(SENTINEL)
        pos = self.session.mark() if self.session is not None else 0
        sentinel = self.scripts / SENTINEL
        if sentinel.exists():
            edit(sentinel)
        else:
            self.add(SENTINEL)
        if not wait_for(lambda: self.count(SENTINEL) > before, TIMEOUT):
            raise AssertionError(f"the sentinel never ran; runs {self.counts()}")
        if self.session is not None:  # and its batch has ended: what follows is new
            self.session.wait(rf"{re.escape(SENTINEL)}(?:.*\n)+?reports: ", after=pos)


@pytest.fixture
def sample(project: Project, tmp_path: Path) -> Sample:
    return Sample(project, tmp_path / "runs")


@pytest.fixture
def watch(project: Project, sample: Sample) -> Iterator[type[Watch]]:
    """Start ``Watch(root, *args)`` sessions; each is interrupted at teardown.

    The latest is the sample's, which :meth:`Sample.settled` waits on.
    """
    started: list[Watch] = []

    class _Tracked(Watch):
        def __init__(self, root: Path, *args: str, ready: bool = True) -> None:
            started.append(self)
            sample.session = self
            super().__init__(root, *args, ready=ready)

    yield _Tracked
    for session in started:
        session.close()


def edit(path: Path) -> None:
    """Change a file's content (and size), as an editor would."""
    with path.open("a") as handle:
        handle.write("# edited\n")


def after_edit(w: Watch, sample: Sample, pos: int, expected: Mapping[str, int]) -> str:
    """Wait for the batch an edit caused to end, and for all that follows; its output."""
    sample.reached(expected)
    w.wait(r"^reports: ", after=pos)
    out = w.since(pos)
    sample.settled(expected)
    assert w.alive()
    return out


ALL_ONCE = {"a/x.py": 1, "b/y.py": 1, "c/z.py": 1, "w.py": 1}


# -- the initial run ----------------------------------------------------------------------


def test_the_initial_run_runs_every_script_once(sample: Sample, watch: type[Watch]) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    assert "Traceback" not in w.output


def test_no_initial_runs_nothing_until_an_edit(sample: Sample, watch: type[Watch]) -> None:
    sample.standard()
    w = watch(sample.root, "--no-initial")
    assert "reports:" not in w.output
    sample.settled(dict.fromkeys(ALL_ONCE, 0))  # the sentinel, a new script, runs alone
    assert re.findall(r"^\[\d+/\d+\] \w+ (\S+)", w.output, re.MULTILINE) == [SENTINEL]
    w.wait(r"^reports: ")
    pos = w.mark()
    edit(sample.scripts / "w.py")
    out = after_edit(w, sample, pos, {**dict.fromkeys(ALL_ONCE, 0), "w.py": 1})
    # Never run (--no-initial): nothing to compare with.
    assert re.search(r"^new script -> w\.py$", out, re.MULTILINE), out


# -- edits ------------------------------------------------------------------------------


def test_editing_a_script_reruns_only_it_into_a_new_report(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.standard()
    w = watch(sample.root)
    latest = sample.root / "reports" / "latest"
    first = latest.resolve()
    sample.settled(ALL_ONCE)
    pos = w.mark()
    edit(sample.scripts / "b/y.py")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "b/y.py": 2})
    assert re.search(r"^scripts/b/y\.py changed -> b/y\.py$", out, re.MULTILINE), out
    reported = re.search(r"^reports: (.+)$", out, re.MULTILINE)
    assert reported, out
    second = Path(reported[1])
    assert second != first and second.parent == first.parent
    summary = json.loads((second / "summary.json").read_text())
    assert [(r["path"], r["status"]) for r in summary["results"]] == [("b/y.py", "passed")]
    assert {first, second} <= set(latest.parent.iterdir())  # the first run's report is kept


def test_editing_a_shared_module_reruns_exactly_its_importers(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    sample.util.write_text("VALUE = 2\n")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "a/x.py": 2, "b/y.py": 2})
    assert re.search(r"^src/util\.py changed -> a/x\.py, b/y\.py$", out, re.MULTILINE), out


def test_editing_a_watched_data_file_reruns_its_script(sample: Sample, watch: type[Watch]) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    sample.data.write_text("a,b\n1,2\n")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "c/z.py": 2})
    assert re.search(r"^data/input\.csv changed -> c/z\.py$", out, re.MULTILINE), out


def test_a_config_edit_reruns_only_the_script_whose_settings_changed(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    sample.project.config(
        """
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          a/x.py: {env: {MODE: "slow"}}
        """
    )
    out = after_edit(w, sample, pos, {**ALL_ONCE, "a/x.py": 2})
    assert re.search(r"^settings changed: env\.MODE -> a/x\.py$", out, re.MULTILINE), out


def test_a_script_rerun_by_watch_is_up_to_date_for_the_next_changed_run(
    sample: Sample, watch: type[Watch]
) -> None:
    """A watch batch records the fingerprint a full run computes, depends_on included."""
    sample.standard()
    sample.project.config(
        """
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          b/y.py: {depends_on: [a/x.py]}
        """
    )
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    edit(sample.scripts / "b/y.py")  # reruns b/y.py alone: a/x.py is out of the batch
    after_edit(w, sample, pos, {**ALL_ONCE, "b/y.py": 2})
    assert w.interrupt() == 130
    again = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "scripts", "--changed", "--no-color"],
        cwd=sample.root,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert sample.counts() == {**ALL_ONCE, "b/y.py": 2}, again.stdout


def test_saving_identical_content_reruns_nothing(sample: Sample, watch: type[Watch]) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    for path in (sample.util, sample.scripts / "a/x.py", sample.data):
        path.write_bytes(path.read_bytes())
    # A real edit afterwards: once it has run, the saves before it were seen too.
    edit(sample.scripts / "w.py")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "w.py": 2})
    assert "x.py" not in out and "z.py" not in out, out


# -- scripts that come and go ------------------------------------------------------------


def test_a_new_script_runs(sample: Sample, watch: type[Watch]) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    sample.add("c/new.py", "import util")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "c/new.py": 1})
    assert re.search(r"^new script -> c/new\.py$", out, re.MULTILINE), out
    pos = w.mark()
    sample.util.write_text("VALUE = 2\n")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "a/x.py": 2, "b/y.py": 2, "c/new.py": 2})
    assert re.search(r"^src/util\.py changed -> a/x\.py, b/y\.py, c/new\.py$", out, re.M), out


def test_a_new_script_in_a_new_folder_runs_and_its_edits_are_seen(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    fresh = sample.add("d/fresh.py")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "d/fresh.py": 1})
    assert "new script -> d/fresh.py" in out, out
    pos = w.mark()
    edit(fresh)
    after_edit(w, sample, pos, {**ALL_ONCE, "d/fresh.py": 2})


def test_a_deleted_script_is_dropped_and_watching_goes_on(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.standard()
    w = watch(sample.root)
    sample.settled(ALL_ONCE)
    pos = w.mark()
    (sample.scripts / "b/y.py").unlink()
    w.wait(r"^b/y\.py is gone: dropped$", after=pos)
    sample.settled({k: v for k, v in ALL_ONCE.items() if k != "b/y.py"})
    assert re.findall(r"^\[\d+/\d+\] \w+ (\S+)", w.since(pos), re.MULTILINE) == [SENTINEL]
    pos = w.mark()
    sample.util.write_text("VALUE = 2\n")
    out = after_edit(w, sample, pos, {"a/x.py": 2, "c/z.py": 1, "w.py": 1})
    assert sample.count("b/y.py") == 1
    assert re.search(r"^src/util\.py changed -> a/x\.py$", out, re.MULTILINE), out
    assert "Traceback" not in w.output


@pytest.mark.slow
def test_an_edit_to_a_new_folders_script_during_its_first_run_is_kept(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.add("w.py")
    w = watch(sample.root)
    sample.settled({"w.py": 1})
    pos = w.mark()
    fresh = sample.add("d/fresh.py", tail="import time\ntime.sleep(1)")
    sample.reached({"d/fresh.py": 1})
    edit(fresh)
    w.wait(r"^reports: ", after=pos)
    assert wait_for(lambda: sample.count("d/fresh.py") == 2, 3.0), w.since(pos)


# -- loops -------------------------------------------------------------------------------


def test_a_script_writing_next_to_itself_runs_once_per_edit(
    sample: Sample, watch: type[Watch]
) -> None:
    write_out = (
        "import json\nfrom pathlib import Path\n"
        "out = Path(__file__).with_name({name!r})\n"
        "n = json.loads(out.read_text())['n'] if out.exists() else 0\n"
        "out.write_text(json.dumps({{'n': n + 1}}))"
    )
    sample.add("writer.py", tail=write_out.format(name="out.json"))
    # Worse: its own output is one of its inputs.
    sample.add("loop/looper.py", tail=write_out.format(name="state.json"))
    sample.project.config('scripts:\n  loop/looper.py: {watch: ["scripts/loop/*.json"]}\n')
    w = watch(sample.root)
    sample.settled({"writer.py": 1, "loop/looper.py": 1})
    pos = w.mark()
    edit(sample.scripts / "writer.py")
    edit(sample.scripts / "loop/looper.py")
    sample.reached({"writer.py": 2, "loop/looper.py": 2})
    w.wait(r"^reports: ", after=pos)
    sample.settled({"writer.py": 2, "loop/looper.py": 2})
    assert json.loads((sample.scripts / "out.json").read_text()) == {"n": 2}
    assert json.loads((sample.scripts / "loop/state.json").read_text()) == {"n": 2}
    assert w.alive()


# -- edits while scripts run -------------------------------------------------------------


def _slow(sample: Sample, seconds: float, name: str = "slow") -> Path:
    """``slow.py``: starts (marker), sleeps ``seconds`` in a child, ends (``slow.end``)."""
    return sample.add(
        f"{name}.py",
        "import subprocess",
        f"""
child = subprocess.Popen(["sleep", "{seconds}"])
with open({str(sample.runs / f"{name}.pids")!r}, "a") as f:
    f.write(f"{{child.pid}}\\n")
child.wait()
with open({str(sample.runs / f"{name}.end")!r}, "a") as f:
    f.write("end\\n")
""",
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _words(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_an_edit_while_scripts_run_is_queued_until_the_batch_ends(
    sample: Sample, watch: type[Watch]
) -> None:
    slow = _slow(sample, 2)
    quick = sample.add("quick.py")
    w = watch(sample.root, ready=False)
    sample.reached({"quick.py": 1, "slow.py": 1})
    edit(quick)
    edit(slow)  # the running script itself: it ran with the old text, so it must run again
    w.wait(r"^watching scripts/")
    sample.reached({"quick.py": 2, "slow.py": 2})
    assert wait_for(lambda: len(_lines(sample.runs / "slow.end")) == 2, TIMEOUT)
    sample.settled({"quick.py": 2, "slow.py": 2})
    assert len(_lines(sample.runs / "slow.end")) == 2, "nothing was killed"
    assert "restarted" not in w.output


def test_on_busy_restart_kills_the_affected_running_script_and_starts_it_again(
    sample: Sample, watch: type[Watch]
) -> None:
    slow = _slow(sample, 60)
    probe = _slow(sample, 60, "probe")
    quick = sample.add("quick.py")
    pids = sample.runs / "slow.pids"
    w = watch(sample.root, "--on-busy", "restart", "-j3", ready=False)
    assert wait_for(lambda: len(_lines(pids)) == len(_lines(sample.runs / "probe.pids")) == 1)
    first = int(_lines(pids)[0])
    assert pid_alive(first)

    probed = int(_lines(sample.runs / "probe.pids")[0])
    edit(quick)  # quick.py is not running: slow.py is left alone
    edit(probe)  # seen after quick's edit: once probe.py is killed, quick's edit was handled
    assert wait_for(lambda: not pid_alive(probed), TIMEOUT), w.output
    assert pid_alive(first)
    assert sample.counts() == {"probe.py": 1, "quick.py": 1, "slow.py": 1}

    edit(slow)
    assert wait_for(lambda: not pid_alive(first), TIMEOUT), "the old run's child survived"
    # The batch is over: what was killed or edited runs again, once.
    sample.reached({"probe.py": 2, "quick.py": 2, "slow.py": 2})
    assert wait_for(lambda: len(_lines(pids)) == 2, TIMEOUT)
    second = int(_lines(pids)[1])
    assert second != first and pid_alive(second)
    assert sample.counts() == {"probe.py": 2, "quick.py": 2, "slow.py": 2}
    assert _lines(sample.runs / "slow.end") == []
    assert "restarted" in w.output
    w.close()
    assert wait_for(lambda: not pid_alive(second), 2)


# -- config errors and Ctrl-C ------------------------------------------------------------


def test_a_broken_config_is_one_error_line_and_watching_goes_on(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.standard()
    good = 'scripts:\n  c/z.py: {watch: ["data/*.csv"]}\n  a/x.py: {env: {MODE: "%s"}}\n'
    sample.project.config(good % "1")
    w = watch(sample.root)
    sample.settled(ALL_ONCE)

    pos = w.mark()
    sample.project.config("scripts: [\n")
    w.wait(r"^orch: still watching", after=pos)  # the edit was handled: nothing ran for it
    assert sample.counts() == ALL_ONCE
    errors = [line for line in w.since(pos).splitlines() if line.startswith("orch: error:")]
    assert len(errors) == 1, w.since(pos)
    assert "config.yaml" in errors[0]
    assert "Traceback" not in w.output

    pos = w.mark()
    edit(sample.scripts / "w.py")
    after_edit(w, sample, pos, {**ALL_ONCE, "w.py": 2})

    pos = w.mark()
    sample.project.config(good % "2")
    out = after_edit(w, sample, pos, {**ALL_ONCE, "w.py": 2, "a/x.py": 2})
    assert re.search(r"^settings changed: env\.MODE -> a/x\.py$", out, re.MULTILINE), out
    assert "orch: error" not in out


def test_ctrl_c_ends_the_watch_at_once_and_leaves_no_process(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.add(
        "busy.py",
        "import os, subprocess",
        f"""
child = subprocess.Popen(["sleep", "60"])
with open({str(sample.runs / "busy.pids")!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
child.wait()
""",
    )
    pids_file = sample.runs / "busy.pids"
    w = watch(sample.root, ready=False)
    assert wait_for(lambda: len(_words(pids_file)) == 2, TIMEOUT)
    pids = [int(p) for p in _words(pids_file)]
    assert all(pid_alive(p) for p in pids)
    began = time.monotonic()
    code = w.interrupt()
    took = time.monotonic() - began
    assert code == 130, w.output
    assert took < 1.0, f"took {took:.2f} s"
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), 0.5), pids
    assert "Traceback" not in w.output


# -- the batch planner alone: replayed edits, no watcher, no process -----------------------


class Replay:
    """A project whose scripts are all recorded as run, and edits fed to plan_batch."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.options = RunOptions(scripts_dir=project.scripts)

    def start(self) -> None:
        plan = build_plan(self.options)
        self.tracking = Tracking(plan.project)
        self.record_all(plan)
        self.state = WatchState(plan)

    def record_all(self, plan: Plan) -> None:
        snapshots = self.tracking.snapshots(plan)
        for job in plan.jobs:
            self.tracking.record.update(job.path, snapshots.now(job), "passed")

    def feed(self, *edits: tuple[str, Path]) -> Batch:
        batch = plan_batch(
            [Edit(kind, path) for kind, path in edits], self.state, self.tracking, self.options
        )
        self.state = WatchState(batch.plan)
        return batch

    def record_trace(self, rel: str, trace: Trace) -> None:
        """Record ``rel`` as last run with ``trace``, its inputs as they are now."""
        plan = self.state.plan
        (job,) = [job for job in plan.jobs if job.rel == rel]
        snapshot = self.tracking.snapshots(plan).after(job, Snapshot({}, {}, {}), trace, 2**62)
        self.tracking.record.update(job.path, snapshot, "passed", trace=trace)


@pytest.fixture
def replay(sample: Sample, project: Project) -> Replay:
    """The standard sample, with w.py depending on c/z.py; nothing is run."""
    sample.standard()
    project.config(
        """
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          w.py: {depends_on: [c/z.py]}
        """
    )
    r = Replay(project)
    r.start()
    return r


def test_planner_a_module_edit_reruns_exactly_its_importers(replay: Replay) -> None:
    util = replay.project.root / "src" / "util.py"
    util.write_text("VALUE = 2\n")
    batch = replay.feed(("modified", util))
    assert batch.scripts == {"a/x.py", "b/y.py"}
    assert batch.why == dict.fromkeys(["a/x.py", "b/y.py"], ("src/util.py changed",))
    assert batch.notes == [] and batch.errors == []


def test_planner_a_save_without_a_change_reruns_nothing(replay: Replay) -> None:
    util = replay.project.root / "src" / "util.py"
    util.write_bytes(util.read_bytes())
    assert replay.feed(("modified", util)).scripts == set()


def test_planner_a_data_edit_reruns_its_reader_and_its_dependents(replay: Replay) -> None:
    data = replay.project.root / "data" / "input.csv"
    data.write_text("a\n1\n")
    batch = replay.feed(("modified", data))
    assert batch.scripts == {"c/z.py", "w.py"}
    assert batch.why == {
        "c/z.py": ("data/input.csv changed",),
        "w.py": ("depends on c/z.py, which runs",),
    }


def test_planner_a_config_edit_reruns_the_script_whose_settings_changed(
    replay: Replay,
) -> None:
    config = replay.project.config(
        """
        scripts:
          c/z.py: {watch: ["data/*.csv"]}
          w.py: {depends_on: [c/z.py]}
          a/x.py: {env: {MODE: slow}}
        """
    )
    batch = replay.feed(("modified", config))
    assert batch.why == {"a/x.py": ("settings changed: env.MODE",)}
    settings = {job.rel: job.settings for job in batch.plan.jobs}  # the new plan, in force now
    assert settings["a/x.py"].env == {"MODE": "slow"}


def test_planner_new_and_deleted_scripts(replay: Replay) -> None:
    new = replay.project.script("a/new.py", "")
    gone = replay.project.scripts / "b" / "y.py"
    gone.unlink()
    batch = replay.feed(("added", new), ("deleted", gone))
    assert batch.why == {"a/new.py": ("new script",)}
    assert batch.notes == ["b/y.py is gone: dropped"]
    assert "b/y.py" not in {job.rel for job in batch.plan.jobs}


def test_planner_a_broken_config_keeps_the_last_good_plan_minus_deleted_scripts(
    replay: Replay,
) -> None:
    gone = replay.project.scripts / "w.py"
    gone.unlink()
    config = replay.project.config("scripts: [\n")
    batch = replay.feed(("modified", config), ("deleted", gone))
    assert len(batch.errors) == 1 and batch.errors[0].startswith("orch: error: ")
    assert "config.yaml" in batch.errors[0]
    assert {job.rel for job in batch.plan.jobs} == {"a/x.py", "b/y.py", "c/z.py"}
    assert batch.scripts == set()


def test_planner_ignores_exactly_a_script_s_own_writes(replay: Replay) -> None:
    """What a script wrote (its trace says so) never reruns it; a hand edit beside it does."""
    root = replay.project.root
    out = root / "data" / "out.csv"  # matched by z.py's watch: glob, but its output
    out.write_text("first\n")
    replay.record_trace("c/z.py", Trace(reads=("data/input.csv",), writes=("data/out.csv",)))
    out.write_text("written by z.py\n")
    assert replay.feed(("modified", out)).scripts == set()
    data = root / "data" / "input.csv"
    data.write_text("a\nedited by hand\n")  # no matter when: no guess from timestamps
    assert replay.feed(("modified", data)).scripts == {"c/z.py", "w.py"}


def test_planner_an_addition_then_a_modification_is_still_an_addition(replay: Replay) -> None:
    """Edits queued over several watcher batches: the first kind counts too."""
    new = replay.project.script("a/new.py", "")
    batch = replay.feed(("added", new), ("modified", new))
    assert batch.why == {"a/new.py": ("new script",)}


def watched_dirs(project: Project) -> set[Path]:
    """The folders `orch watch` on ``project``'s scripts registers, without watching."""
    import io

    from orchestrator.watch import WatchOptions, _Session

    session = _Session(
        RunOptions(scripts_dir=project.scripts), WatchOptions(), io.StringIO(), threading.Event()
    )
    try:
        return session.watch_dirs()
    finally:
        session.executor.close()


def test_a_watched_file_registers_its_folder_alone(project: Project) -> None:
    """`watch: [data/in.csv]` needs data/, not the tree below it (watch limits are finite)."""
    (project.root / "data" / "deep" / "deeper").mkdir(parents=True)
    (project.root / "data" / "in.csv").write_text("1\n")
    (project.root / "logs" / "old").mkdir(parents=True)
    project.script("x.py", "")
    project.config('scripts:\n  x.py: {watch: ["data/in.csv", "logs"]}\n')
    dirs = {d.relative_to(project.root).as_posix() for d in watched_dirs(project)}
    assert "data" in dirs and "data/deep" not in dirs
    assert {"logs", "logs/old"} <= dirs  # a folder named: all below it
