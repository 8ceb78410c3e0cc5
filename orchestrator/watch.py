"""``orch watch``: rerun exactly the scripts an edit affects, and nothing else.

The loop, and how it avoids the known traps:

* A watcher thread runs :func:`watchfiles.watch` over the folders that hold
  inputs, non-recursively, so ``.git``, ``.venv``, ``node_modules``,
  ``reports/`` and ``.orchestrator/`` are never registered. When the set of
  folders changes (a new subfolder, a new module elsewhere) it re-registers.
* Each batch of changes is turned into the affected scripts: those with a
  changed file among their inputs, new scripts, scripts whose effective
  settings a config edit changed, and then their ``depends_on`` dependents.
  Deleted scripts are dropped. A script whose inputs hash the same as when it
  last ran is left alone, so saving a file unchanged reruns nothing.
* Loops: files the orchestrator writes are never watched, a file that is no
  script's input triggers nothing (``out.json`` next to a script), and a file
  a script writes (its trace says so) is its output, never its input: its own
  writes never rerun it, while a hand edit of a file it reads always does.
* Edits made while scripts run are kept: with ``--on-busy queue`` they are
  handled right after the batch; with ``--on-busy restart`` the running
  scripts they affect are killed (their whole process group) and run again.
* A broken config prints its one-line error; watching goes on with the last
  good config.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from .changes import Tracking, stale
from .console import ConsoleReporter
from .discovery import skipped_dir
from .errors import ExitCode, OrchestratorError
from .execution import execute
from .executors import Executor, Restarting, make_executor
from .patterns import Glob
from .plan import Plan, RunOptions, build_plan
from .processes import children
from .reporting import Reporter, name_text, why_text
from .reports import FileReporter
from .results import StopReason

__all__ = ["Batch", "Edit", "WatchOptions", "WatchState", "plan_batch", "watch"]

#: watchfiles yields a batch this long (ms) after the last change in it.
STEP_MS = 10
_POLL = 0.1


@dataclass(frozen=True)
class WatchOptions:
    """How ``orch watch`` behaves beyond the run options."""

    initial: bool = True
    on_busy: str = "queue"  # or "restart"


class _Either:
    """An event that is set when either of two events is (watchfiles' ``stop_event``)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()


class _Watcher(threading.Thread):
    """Watches a set of folders (not recursively) and queues each batch of :class:`Edit`."""

    def __init__(
        self,
        ignore: Sequence[Path],
        stop: threading.Event,
        on_edits: Callable[[Sequence[Edit]], None] | None = None,
    ) -> None:
        super().__init__(name="orch-watch", daemon=True)
        self.ignore = [str(p) for p in ignore]
        self.stop = stop
        self.on_edits = on_edits  # told of each batch as it arrives, in this thread
        self.batches: queue.SimpleQueue[list[Edit]] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self._dirs: frozenset[Path] = frozenset()
        self._rewatch = threading.Event()

    @property
    def dirs(self) -> frozenset[Path]:
        """The folders watched (or about to be)."""
        return self._dirs

    def set_dirs(self, dirs: Iterable[Path]) -> bool:
        """Watch these folders from now on; return whether that changed anything."""
        dirs = frozenset(dirs)
        if dirs == self._dirs:
            return False
        self._dirs = dirs
        self.ready.clear()
        self._rewatch.set()
        return True

    def _filter(self, change: Any, path: str) -> bool:
        if any(path == p or path.startswith(p + os.sep) for p in self.ignore):
            return False
        name = os.path.basename(path)
        return not (name.endswith((".pyc", "~", ".swp", ".swx", ".tmp")) or name.startswith(".#"))

    def run(self) -> None:
        import watchfiles

        try:
            while not self.stop.is_set():
                self._rewatch.clear()
                dirs = sorted(str(d) for d in self._dirs if d.is_dir())
                if not dirs:
                    self._rewatch.wait(_POLL)
                    continue
                for changes in watchfiles.watch(
                    *dirs,
                    watch_filter=self._filter,
                    step=STEP_MS,
                    stop_event=_Either(self.stop, self._rewatch),
                    recursive=False,
                    raise_interrupt=False,
                    rust_timeout=200,
                    yield_on_timeout=True,
                ):
                    self.ready.set()  # the first (possibly empty) batch: we are watching
                    if changes:
                        edits = [Edit(change.name, Path(path)) for change, path in changes]
                        self.batches.put(edits)
                        if self.on_edits is not None:
                            self.on_edits(edits)
        except BaseException as exc:  # surfaced by the main loop
            self.failure = exc
            self.ready.set()


def _pruned_dirs(top: Path, max_depth: int, excluded: Sequence[Path]) -> set[Path]:
    found: set[Path] = set()
    stack = [(top, 0)]
    while stack:
        directory, depth = stack.pop()
        if directory in excluded:
            continue
        found.add(directory)
        if depth >= max_depth:
            continue
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and not skipped_dir(entry.name):
                    stack.append((Path(entry.path), depth + 1))
    return found


class Edit(NamedTuple):
    """One change the watcher saw: ``kind`` is ``added``, ``modified`` or ``deleted``."""

    kind: str
    path: Path


@dataclass(frozen=True)
class WatchState:
    """What the planner needs from the batches before: the plan in force.

    The last runs' traces are in the run record, which the planner reads.
    """

    plan: Plan


@dataclass
class Batch:
    """What a batch of changes means: scripts to run and why, and what to say."""

    plan: Plan  # the plan from now on (a config edit or a new script makes a new one)
    #: The scripts to run, each with its decision's reasons.
    why: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Config errors: printed, and watching goes on with the last good config.
    errors: list[str] = field(default_factory=list)

    @property
    def scripts(self) -> set[str]:
        """The scripts the batch runs."""
        return set(self.why)


def plan_batch(
    edits: Iterable[Edit], state: WatchState, tracking: Tracking, options: RunOptions
) -> Batch:
    """Turn a batch of edits into the scripts to rerun: no watcher, no process, no output.

    The candidates are the scripts with a changed file among their inputs
    (static or traced by their last run), new scripts and the scripts whose
    effective settings a config edit changed; each runs when its decision
    (:meth:`Snapshots.decide`) says something differs from its last run, and
    then its ``depends_on`` dependents.
    """
    graph, project = tracking.graph, tracking.project
    edits = list(edits)
    # Over every edit, not the last per path: `added` then `modified` is still an addition.
    structural = any(edit.kind in ("added", "deleted") for edit in edits)
    paths = list(dict.fromkeys(edit.path for edit in edits))
    configs = project.config_candidates()
    batch = Batch(plan=state.plan)
    if not paths:
        return batch
    graph.invalidate(paths, structural=structural)

    old = state.plan
    if structural or any(p in configs for p in paths):
        try:
            # The config file in force may be another one now: locate it again.
            batch.plan = build_plan(options)
        except OrchestratorError as exc:
            batch.errors.append(f"orch: error: {exc}")
            # Deleted scripts go even so; new ones wait for a good config.
            batch.plan = replace(old, jobs=[j for j in old.jobs if j.path.exists()])
    plan = batch.plan
    old_settings = {job.rel: job.settings for job in old.jobs}
    new_jobs = {job.rel: job for job in plan.jobs}
    for rel in old_settings.keys() - new_jobs.keys():
        batch.notes.append(f"{rel} is gone: dropped")
    candidates = {
        rel
        for rel, job in new_jobs.items()
        if rel not in old_settings or old_settings[rel] != job.settings
    }
    by_path = {job.path: job.rel for job in plan.jobs}
    traces = tracking.traces(plan)
    candidates.update(by_path[s] for s in graph.affected(paths, plan.watch_by_path(), traces))
    # Only what differs from what it last ran with: a save without a change reruns nothing.
    batch.why = stale(plan, tracking.snapshots(plan), candidates, unpassed=False)
    return batch


class _Session:
    """The state ``orch watch`` keeps between batches: a loop around :func:`plan_batch`."""

    def __init__(
        self,
        options: RunOptions,
        watch_options: WatchOptions,
        out: TextIO,
        stop: threading.Event,
        force: threading.Event | None = None,
    ) -> None:
        self.options = options
        self.force = force
        self.out = out
        self.stop = stop
        plan = build_plan(options)  # a broken config at start is a usage error
        self.state = WatchState(plan)
        self.project = project = plan.project
        # One executor for the whole session: a Dask cluster is not started per batch.
        executor = make_executor(options.executor, options.scheduler)
        self.restarting = Restarting(executor) if watch_options.on_busy == "restart" else None
        self.executor: Executor = self.restarting or executor
        self.initial = watch_options.initial
        self.tracking = Tracking(project, options.python)
        self.graph, self.record = self.tracking.graph, self.tracking.record
        self.excluded = [project.reports_dir.resolve(), project.state_dir]
        on_edits = self.restart_affected if self.restarting is not None else None
        self.watcher = _Watcher(self.excluded, stop, on_edits)

    def say(self, text: str) -> None:
        """One line to the console, masked, with any name in it shown safely."""
        self.out.write(name_text(self.state.plan.masker.mask(text)) + "\n")
        self.out.flush()

    def watch_dirs(self) -> set[Path]:
        """The folders that hold inputs now, never the excluded ones.

        Also the folders a script listed (an entry added there changes what it
        saw), except below folders discovery skips (``os.walk`` lists all of
        ``.git``), and the folder of the target of each input that is a symlink.
        """
        project = self.project
        dirs = _pruned_dirs(project.scripts_dir, self.options.max_depth, self.excluded)
        dirs.update(p.parent for p in project.config_candidates())
        traces = self.tracking.traces(self.state.plan)
        for job in self.state.plan.jobs:
            trace = traces.get(job.path)
            for path in self.graph.inputs(job.path, job.settings.watch, trace):
                folder = path.parent
                while not folder.is_dir() and project.root in folder.parents:
                    folder = folder.parent  # a file not made yet, in a folder not made yet
                dirs.add(folder)
                if path.is_symlink():  # an edit of the target is an edit of the input
                    target = Path(os.path.realpath(path)).parent
                    if target.is_dir():
                        dirs.add(target)
            for rel in trace.listed if trace is not None else ():
                listed = project.root / rel
                if listed.is_dir() and not any(map(skipped_dir, Path(rel).parts)):
                    dirs.add(listed)
            for glob in map(Glob.of, job.settings.watch):
                base = project.root / glob.fixed
                depth = 64 if glob.depth is None else glob.depth
                if not base.is_dir():  # a file, or one not made yet: its folder alone
                    base, depth = base.parent, 0
                if base.is_dir():
                    dirs.update(_pruned_dirs(base, depth, self.excluded))
        return {d for d in dirs if not any(d == e or e in d.parents for e in self.excluded)}

    # Runs in the watcher's thread, as edits arrive.
    def restart_affected(self, edits: Sequence[Edit]) -> None:
        """``--on-busy restart``: kill the running scripts that these edits affect."""
        assert self.restarting is not None
        running = self.restarting.running()
        paths = [edit.path for edit in edits if edit.path.suffix == ".py"]
        if not running or not paths:
            return
        self.graph.invalidate(paths)
        plan = self.state.plan
        planned = plan.watch_by_path()
        busy = {Path(s): planned.get(Path(s), ()) for s in running}
        traces = self.tracking.traces(plan)
        victims = [str(script) for script in self.graph.affected(paths, busy, traces)]
        if victims:
            self.restarting.restart(victims)

    def run(self, why: Mapping[str, tuple[str, ...]] | None) -> None:
        """Run the plan (or the scripts ``why`` names, for its reasons) and report them."""
        plan = self.state.plan
        if why is not None:
            plan = replace(plan.subset(why), why=dict(why))
        if not plan.jobs:
            return
        reporters: list[Reporter] = [
            FileReporter(),
            ConsoleReporter(self.out, verbosity=self.options.verbosity, color=self.options.color),
        ]
        execute(
            plan,
            self.options,
            reporters,
            stop=self.stop,
            graph=self.graph,
            executor=self.executor,
            force=self.force,
        )

    def take_edits(self, timeout: float) -> list[Edit]:
        """The edits queued so far, waiting up to ``timeout`` for the first."""
        edits: list[Edit] = []
        try:
            edits.extend(self.watcher.batches.get(timeout=timeout))
            while True:
                edits.extend(self.watcher.batches.get_nowait())
        except queue.Empty:
            pass
        return edits

    def rewatch(self) -> set[Path]:
        """Register the folders that now hold inputs; returns those newly watched.

        Re-registering leaves a short gap: see :meth:`catch_up`.
        """
        before = self.watcher.dirs
        if not self.watcher.set_dirs(self.watch_dirs()):
            return set()
        self.watcher.ready.wait(5)
        return set(self.watcher.dirs - before)

    def tell(self, batch: Batch) -> None:
        """Take the batch's plan, and say its errors, notes and why each script runs."""
        self.state = replace(self.state, plan=batch.plan)
        for line in batch.errors:
            self.say(line)
            self.say("orch: still watching, with the last good config")
        for note in batch.notes:
            self.say(note)
        grouped: dict[str, list[str]] = {}
        for rel, why in batch.why.items():
            grouped.setdefault(why_text(why) or "full run", []).append(rel)
        for text, rels in grouped.items():
            self.say(f"{text} -> {', '.join(sorted(rels))}")

    def catch_up(self, new_dirs: set[Path]) -> dict[str, tuple[str, ...]]:
        """What changed while folders were re-registered: scripts to run, and why.

        A new folder may have got its files before it was watched (``mkdir``,
        then a script written at once): it counts as added, so its scripts
        are new ones. And scripts that ran before and whose inputs differ from
        then (an edit in the gap).
        """
        gap = plan_batch(
            [Edit("added", d) for d in sorted(new_dirs)], self.state, self.tracking, self.options
        )
        self.tell(gap)
        plan = self.state.plan
        rest = [job.rel for job in plan.jobs if job.rel not in gap.why]
        snapshots = self.tracking.snapshots(plan)
        return {**gap.why, **stale(plan, snapshots, rest, unpassed=False, recorded_only=True)}

    def loop(self) -> None:
        """Run, then rerun what each batch of edits affects, until ``stop`` is set."""
        self.watcher.set_dirs(self.watch_dirs())
        self.watcher.start()
        self.watcher.ready.wait(10)
        if self.initial:
            self.run(None)
        self.say(f"watching {self.project.rel(self.project.scripts_dir)}/ (Ctrl-C to stop)")
        missed: dict[str, tuple[str, ...]] = {}
        while not self.stop.is_set():
            if self.watcher.failure is not None:
                raise self.watcher.failure
            edits = self.take_edits(_POLL)
            if (not edits and not missed) or self.stop.is_set():
                continue
            if edits:
                batch = plan_batch(edits, self.state, self.tracking, self.options)
            else:
                batch = Batch(self.state.plan)
            self.tell(batch)
            if missed.keys() - batch.why.keys():
                self.say(f"changed while re-registering folders -> {', '.join(sorted(missed))}")
            why, missed = {**missed, **batch.why}, {}
            new_dirs = self.rewatch()  # new folders are watched before anything runs
            if new_dirs:
                why.update(self.catch_up(new_dirs))
            if why:
                self.run(why)
            new_dirs = self.rewatch()
            if new_dirs:
                missed = self.catch_up(new_dirs)
            self.graph.save()


def watch(
    options: RunOptions,
    watch_options: WatchOptions | None = None,
    *,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
    force: threading.Event | None = None,
) -> int:
    """Watch the scripts' inputs and rerun the affected scripts until ``stop`` is set.

    Returns 130 once stopped (Ctrl-C). Raises ConfigError/DiscoveryError only
    for the first load; later config errors are printed and watching goes on.
    """
    stop = stop or threading.Event()
    session = _Session(options, watch_options or WatchOptions(), out or sys.stdout, stop, force)
    try:
        session.loop()
    finally:
        stop.set()
        session.executor.stop_all(StopReason.INTERRUPTED)
        children.terminate()
        session.watcher.join(2)
        session.graph.save()
        session.executor.close()
    return ExitCode.INTERRUPTED
