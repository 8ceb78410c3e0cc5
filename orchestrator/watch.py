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
  script's input triggers nothing (``out.json`` next to a script), and a data
  file (not ``.py``) modified while a batch was running is taken to be that
  batch's output, not an edit: it triggers nothing and a note says so.
  Python files and the config are always honoured.
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
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from .changes import Fingerprints, Tracking
from .discovery import skipped_dir
from .errors import OrchestratorError
from .execution import RESTARTED, execute
from .executors import make_executor
from .plan import Plan, RunOptions, build_plan
from .reporting import ConsoleReporter, FileReporter, Reporter
from .runner import terminate_all

__all__ = ["WatchOptions", "watch"]

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
    """Watches a set of folders (not recursively) and queues ``(when, paths)`` batches."""

    def __init__(self, ignore: Sequence[Path], stop: threading.Event) -> None:
        super().__init__(name="orch-watch", daemon=True)
        self.ignore = [str(p) for p in ignore]
        self.stop = stop
        self.batches: queue.SimpleQueue[tuple[float, set[tuple[Any, str]]]] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self._dirs: frozenset[Path] = frozenset()
        self._rewatch = threading.Event()

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
                        self.batches.put((time.time(), changes))
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


@dataclass
class _Batch:
    """What a batch of changes means: scripts to run and why."""

    why: dict[str, list[str]] = field(default_factory=dict)  # cause -> scripts
    scripts: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


class _Session:
    """The state ``orch watch`` keeps between batches."""

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
        self.watch_options = watch_options
        self.out = out
        self.stop = stop
        self.plan = build_plan(options)  # a broken config at start is a usage error
        self.project = project = self.plan.project
        self.root, self.scripts_dir = project.root, project.scripts_dir
        # One executor for the whole session: a Dask cluster is not started per batch.
        self.executor = make_executor(options.executor, options.scheduler)
        self.tracking = Tracking(project, options.python)
        self.graph, self.record = self.tracking.graph, self.tracking.record
        self.excluded = [project.reports_dir.resolve(), project.state_dir]
        self.watcher = _Watcher(self.excluded, stop)
        self.pending: list[tuple[float, set[tuple[Any, str]]]] = []
        self.running: set[str] = set()
        self.last_window = (0.0, 0.0)  # wall-clock start and end of the last batch
        self.last_ran: dict[Path, Mapping[str, Any]] = {}  # the scripts of the last batch

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def rel_root(self, path: Path) -> str:
        return self.project.rel(path)

    # -- what to watch ---------------------------------------------------------------

    def config_candidates(self) -> frozenset[Path]:
        return self.project.config_candidates()

    def watch_dirs(self) -> set[Path]:
        dirs = _pruned_dirs(self.scripts_dir, self.options.max_depth, self.excluded)
        dirs.update(p.parent for p in self.config_candidates())
        for job in self.plan.jobs:
            for path in self.graph.inputs(job.path, job.settings):
                dirs.add(path.parent)
            for pattern in job.settings["watch"]:
                static = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
                base = (
                    (self.root / static).parent
                    if not static.endswith("/")
                    else (self.root / static)
                )
                if base.is_dir():
                    depth = 64 if "**" in pattern else 0
                    dirs.update(_pruned_dirs(base, depth, self.excluded))
        return {d for d in dirs if not any(d == e or e in d.parents for e in self.excluded)}

    # -- from changes to scripts ------------------------------------------------------------

    def jobs_by_path(self, plan: Plan) -> dict[Path, Mapping[str, Any]]:
        return {job.path: job.settings for job in plan.jobs}

    def understand(self, batches: Sequence[tuple[float, set[tuple[Any, str]]]]) -> _Batch:
        import watchfiles

        batch = _Batch()
        changes: dict[Path, Any] = {}
        for _, items in batches:
            for change, name in items:
                changes[Path(name)] = change
        structural = any(
            c in (watchfiles.Change.added, watchfiles.Change.deleted) for c in changes.values()
        )
        start, end = self.last_window
        configs = self.config_candidates()
        paths: list[Path] = []
        for path in changes:
            # A data file an input of the last batch's scripts, modified while they ran,
            # is taken as their output: rerunning them for it would loop.
            if path.suffix != ".py" and path not in configs:
                with contextlib.suppress(OSError):
                    if start <= path.stat().st_mtime <= end + 0.05 and self.graph.affected(
                        [path], self.last_ran
                    ):
                        batch.notes.append(
                            f"{self.rel_root(path)} was written while the scripts reading it "
                            "ran; taken as their output, not an edit (save it again to rerun)"
                        )
                        continue
            paths.append(path)
        if not paths:
            return batch
        self.graph.invalidate(paths, structural=structural)

        old = self.plan
        if structural or any(p in configs for p in paths):
            try:
                # The config file in force may be another one now: locate it again.
                self.plan = build_plan(self.options)
            except OrchestratorError as exc:
                self.say(f"orch: error: {exc}")
                self.say("orch: still watching, with the last good config")
                # Deleted scripts go even so; new ones wait for a good config.
                self.plan = replace(self.plan, jobs=[j for j in self.plan.jobs if j.path.exists()])
        old_settings = {job.rel: job.settings for job in old.jobs}
        new_jobs = {job.rel: job for job in self.plan.jobs}
        for rel in old_settings.keys() - new_jobs.keys():
            batch.notes.append(f"{rel} is gone: dropped")
        causes: dict[str, set[str]] = {}
        for rel, job in new_jobs.items():
            if rel not in old_settings:
                causes.setdefault(f"new script {rel}", set()).add(rel)
            elif old_settings[rel] != job.settings:
                config = self.plan.config_file or "config"
                causes.setdefault(f"{self.rel_root(Path(config))} changed", set()).add(rel)
        by_path = {job.path: job.rel for job in self.plan.jobs}
        for script, files in self.graph.affected(paths, self.jobs_by_path(self.plan)).items():
            if by_path[script] not in old_settings:
                continue  # a new script: said so already
            for file in files:
                # A script is named as everywhere else; other files from the project root.
                name = by_path.get(file) or self.rel_root(file)
                causes.setdefault(f"{name} changed", set()).add(by_path[script])

        # Only what differs from what it last ran with: a save without a change reruns nothing.
        entries = self.record.load()
        fingerprints = self.fingerprints()
        candidates = set().union(*causes.values()) if causes else set()
        stale = {
            rel for rel in candidates if self.record.differs(new_jobs[rel], fingerprints, entries)
        }
        for dependent, via in self.plan.dependents_of(stale).items():
            stale.add(dependent)
            causes.setdefault(f"{via} reruns (depends_on)", set()).add(dependent)
        for cause, rels in causes.items():
            chosen = sorted(rels & stale)
            if chosen:
                batch.why[cause] = chosen
        batch.scripts = stale
        return batch

    # -- running -----------------------------------------------------------------------

    def run(self, rels: set[str] | None) -> None:
        plan = self.plan if rels is None else self.plan.subset(rels)
        if not plan.jobs:
            return
        reporters: list[Reporter] = [
            FileReporter(),
            ConsoleReporter(self.out, verbosity=self.options.verbosity, color=self.options.color),
            _BusyHook(self),
        ]
        began = time.time()
        try:
            execute(
                plan,
                self.options,
                reporters,
                stop=self.stop,
                graph=self.graph,
                executor=self.executor,
                force=self.force,
            )
        finally:
            self.last_window = (began, time.time())
            self.last_ran = self.jobs_by_path(plan)
            self.running.clear()

    def take_batches(self, timeout: float) -> list[tuple[float, set[tuple[Any, str]]]]:
        batches, self.pending = self.pending, []
        try:
            if not batches:
                batches.append(self.watcher.batches.get(timeout=timeout))
            while True:
                batches.append(self.watcher.batches.get_nowait())
        except queue.Empty:
            pass
        return batches

    def rewatch(self) -> bool:
        """Register the folders that now hold inputs; True if that changed the set.

        Re-registering leaves a short gap; the caller rescans for what it missed.
        """
        if not self.watcher.set_dirs(self.watch_dirs()):
            return False
        self.watcher.ready.wait(5)
        return True

    def fingerprints(self) -> Fingerprints:
        """Fingerprints under the current config (its groups may have changed)."""
        return self.tracking.fingerprints(self.plan)

    def rescan(self) -> set[str]:
        """Scripts that ran before and whose inputs differ from then (after a gap)."""
        entries, fingerprints = self.record.load(), self.fingerprints()
        return {
            job.rel
            for job in self.plan.jobs
            if self.record.differs(job, fingerprints, entries, unrecorded=False)
        }

    def loop(self) -> None:
        self.watcher.set_dirs(self.watch_dirs())
        self.watcher.start()
        self.watcher.ready.wait(10)
        if self.watch_options.initial:
            self.run(None)
        self.say(f"watching {self.rel_root(self.scripts_dir)}/ (Ctrl-C to stop)")
        missed: set[str] = set()
        while not self.stop.is_set():
            if self.watcher.failure is not None:
                raise self.watcher.failure
            batches = self.take_batches(_POLL)
            if (not batches and not missed) or self.stop.is_set():
                continue
            batch = self.understand(batches) if batches else _Batch()
            for note in batch.notes:
                self.say(note)
            for cause, rels in batch.why.items():
                self.say(f"{cause} -> {', '.join(rels)}")
            if missed - batch.scripts:
                self.say(f"changed while re-registering folders -> {', '.join(sorted(missed))}")
            scripts, missed = batch.scripts | missed, set()
            if self.rewatch():  # new folders are watched before anything runs
                scripts |= self.rescan()
            if scripts:
                self.run(scripts)
            if self.rewatch():
                missed = self.rescan()
            self.graph.save()


class _BusyHook(Reporter):
    """While a batch runs: keep incoming edits, and restart what they affect if asked."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def script_started(self, result_stub: Mapping[str, Any]) -> None:
        self.session.running.add(result_stub["script"])

    def script_finished(self, result: Mapping[str, Any]) -> None:
        self.session.running.discard(result["script"])

    def tick(self) -> None:
        session = self.session
        fresh = []
        with contextlib.suppress(queue.Empty):
            while True:
                fresh.append(session.watcher.batches.get_nowait())
        if not fresh:
            return
        session.pending.extend(fresh)
        if session.watch_options.on_busy != "restart" or not session.running:
            return
        paths = [Path(p) for _, items in fresh for _, p in items if p.endswith(".py")]
        if not paths:
            return
        session.graph.invalidate(paths)
        planned = session.jobs_by_path(session.plan)
        running = {Path(s): planned.get(Path(s), {}) for s in session.running}
        victims = {str(s) for s in session.graph.affected(paths, running)}
        if victims:
            terminate_all(RESTARTED, lambda script: script in victims)


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
        session.executor.stop_all("interrupted")
        terminate_all("interrupted")
        session.watcher.join(2)
        session.graph.save()
        session.executor.close()
    return 130
