"""Run a plan of scripts as a :class:`~orchestrator.workflow.Workflow`.

Each script is a task named by its relative path; ``depends_on`` gives its
dependencies, ``-j`` the workflow's ``max_concurrency``, and ``retries`` its
retry policy. The task's action, in a worker thread, hands the script to an
executor (:mod:`orchestrator.executors`: a child of this process, or a Dask
worker), records what it ran with and writes its JSON log as soon as it ends, so
a result is on disk before anyone is told about it. Workflow events are turned
into reporter calls in the main thread; the engine itself never prints.

A failed script's dependents are ``skipped`` with the reason. So are a
config-skipped script's dependents: what they need did not run. With
``--fail-fast`` the workflow is stopped: running scripts finish and the rest
are ``skipped``. An interrupt (``stop`` set by a signal handler) kills the
running scripts' process groups; they end ``error`` with ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from . import ledger
from ._files import atomic_write_text, ensure_state_dir
from .cache import Cache, Entry, Store, cache_url, open_store
from .changes import (
    EDITED,
    Snapshot,
    Snapshots,
    Tracking,
    expected_chains,
    file_clock_ns,
    incomplete,
    infer_order,
    select_changed,
)
from .config import Settings
from .environments import EnvBuildError
from .errors import ExitCode, OrchestratorError, WriteError
from .executors import Executor, LocalExecutor, make_executor
from .history import History, Outcome, Runs, Verdict, failure_signature, judge
from .inputs import InputGraph
from .ledger import LiveRun
from .plan import Plan, RunOptions, ScriptJob
from .processes import children
from .project import git_commit
from .reporting import Reporter, RunInfo, ScriptStarted
from .reports import save_log
from .results import ScriptResult, Status, StopReason, exit_code_for, skipped_result, unrun_result
from .runner import ScriptCall
from .tracing import Trace, trace_in
from .workflow import RetryPolicy, TaskResult, TaskStatus, Workflow, WorkflowEvent

__all__ = ["RunOutcome", "execute", "new_run_id"]

_TICK = 0.1


def new_run_id(now: datetime | None = None) -> str:
    """A UTC timestamp plus a random suffix: sortable, and unique for runs in the same second."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(3).hex()}"


_MISSING = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
#: The fields, and extra keys, of a result that outputs show as text: masked before
#: anything sees them.
_SHOWN = ("script", "name", "path", "subdirectory", "error", "skip_reason")
_SHOWN_EXTRA = ("stdout_path", "stderr_path", "trace_error")


@dataclass
class RunOutcome:
    """The results of a run in plan order, and how it ended."""

    run: RunInfo
    results: list[ScriptResult]

    @property
    def exit_code(self) -> ExitCode:
        """0 all passed or skipped, 1 something failed, 130 interrupted."""
        return exit_code_for((r.status for r in self.results), self.run.interrupted)


def retry_policy(settings: Settings) -> RetryPolicy | None:
    """The retry policy of a script's settings: ``retries`` more attempts, a constant delay.

    Retried by value: an attempt whose status ``retry_on`` names.
    """
    if settings.retries <= 0:
        return None
    retry_on = frozenset(settings.retry_on)
    return RetryPolicy(
        max_attempts=settings.retries + 1,
        initial_delay=settings.retry_delay,
        backoff=1.0,
        retry_if=lambda result: result.status.value in retry_on,
    )


def _failed(result: ScriptResult) -> bool:
    return not result.ok


class _Judged(NamedTuple):
    """A run as history judges it (see :meth:`_ScriptRun.judged`)."""

    verdict: Verdict
    outcome: Outcome
    runs: Runs


class _ScriptRun:
    """Bridges one run: the workflow's actions and events to scripts and reporters."""

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        reporters: Sequence[Reporter],
        run: RunInfo,
        stop: threading.Event,
        graph: InputGraph | None = None,
        executor: Executor | None = None,
        force: threading.Event | None = None,
    ) -> None:
        self.plan = plan
        self.options = options
        self.reporters = reporters
        self.run = run
        self.stop = stop
        self.scripts_dir = plan.project.scripts_dir
        # Without a root marker, run_script's own rule: the current directory (the worker's).
        self.root = str(plan.project.root) if plan.project.marked else None
        self.jobs = {job.rel: job for job in plan.jobs}
        self.attempts = dict.fromkeys(self.jobs, 0)
        self.results: dict[str, ScriptResult] = {}
        #: Reasons decided during the run (see :meth:`stale_now`), over the plan's.
        self.why: dict[str, tuple[str, ...]] = {}
        self.stopping = False
        # The first file orchestrator could not write: the run stops and execute() raises it.
        self.fault: OrchestratorError | None = None
        self.tracking = Tracking(plan.project, options.python, graph)
        self.graph, self.record = self.tracking.graph, self.tracking.record
        self.envs = self.tracking.environments(plan)
        self.executor = executor or LocalExecutor()
        self.force = force
        self.snapshots = self.tracking.snapshots(plan, self.envs)
        self.history = History(plan.project.state_dir)
        #: The shared result cache, when the run has one (see :meth:`use_cache`).
        self.cache: Cache | None = None
        self.workflow = Workflow(
            f"orch run {run.run_id}", max_concurrency=options.jobs, listener=self.on_event
        )
        depends = plan.graph()
        for job in plan.jobs:
            self.workflow.add_task(
                job.rel,
                self.action,
                dependencies=depends[job.rel],
                args=(job,),
                retry_policy=retry_policy(job.settings),
                condition=(lambda results: False) if job.settings.skip else None,
                failed_if=_failed,
            )

    def schedule(self) -> None:
        """Order each script after those it reads from, and start the longest chain first.

        The inferred order (:attr:`Plan.after`) and, in parallel, critical-path
        list scheduling by recorded durations; called once the plan knows which
        scripts are up to date (they take no time). One at a time, the
        declared order stays.
        """
        for rel, writers in self.plan.after.items():
            self.workflow.tasks[rel].after = writers
        if self.options.jobs > 1:
            # The record as the snapshots read it: the journal is not read twice.
            entries = self.snapshots.entries()
            for rel, chain in expected_chains(self.plan, entries, self.record).items():
                self.workflow.tasks[rel].priority = chain

    @functools.cached_property
    def commit(self) -> str | None:
        """The commit checked out, as the history notes each run."""
        return git_commit(self.plan.project.root)

    def use_cache(self, store: Store) -> None:
        """Look passes up in ``store`` (publish there with ``--cache-write``).

        What will run is fetched ahead; ``--force`` runs everything and looks nothing up.
        """
        self.cache = Cache(
            store,
            self.graph,
            self.envs,
            self.options.python,
            self.plan.masker,
            self.plan.secret_names,
            write=self.options.cache_write,
            commit=self.commit,
        )
        if not self.options.force:
            self.cache.prefetch(
                job
                for job in self.plan.jobs
                if job.rel not in self.plan.fresh and not job.settings.skip
            )

    def tell(self, event: Callable[[Reporter], None]) -> None:
        """Give every reporter an event: ``tell(lambda r: r.tick())``."""
        for reporter in self.reporters:
            with self.writing():  # the other outputs still get theirs
                event(reporter)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around each write of a run's own files: a failure stops the run, not the thread."""
        try:
            yield
        except WriteError as exc:
            self.cannot_write(exc)

    def cannot_write(self, exc: OrchestratorError) -> None:
        """A log, the record or a report cannot be written: stop the run (any thread).

        What runs is stopped with its groups, nothing new starts, and the
        outputs that still can be written are; :func:`execute` then raises.
        """
        if self.fault is not None:
            return
        self.fault = exc
        self.run.unwritable = str(exc)
        self.executor.stop_all(StopReason.UNWRITABLE)
        children.terminate(StopReason.UNWRITABLE, tag=self.run.run_id)
        self.halt(f"not started: {StopReason.UNWRITABLE}")

    def finish(
        self, job: ScriptJob, result: ScriptResult, attempts: int, verdict: Verdict | None = None
    ) -> ScriptResult:
        """The attempt's result, masked, with its history's ``verdict``; its log on disk
        before anyone is told."""
        # An executor's own error may quote the call, and a file may be named after a
        # secret: what every output shows of a result is masked once, here.
        mask, extra = self.plan.masker.mask, dict(result.extra)
        for key in _SHOWN_EXTRA:
            if extra.get(key):
                extra[key] = mask(extra[key])
        if verdict is not None and verdict.recent:
            extra["recent"] = list(verdict.recent)
        if extra.get("trace"):  # the paths a script read or wrote
            extra["trace"] = self.plan.masker.mask_data(extra["trace"])
        # A script that was not run has no reason to; one that was, says why it was.
        why = () if result.status is Status.SKIPPED else self.reasons(job.rel)
        shown: dict[str, Any] = {k: mask(v) for k in _SHOWN if (v := getattr(result, k))}
        value = replace(
            result,
            **shown,
            inputs_incomplete=tuple(map(mask, result.inputs_incomplete)),
            extra=extra,
            attempts=attempts,
            flaky=verdict.flaky.to_dict() if verdict and verdict.flaky else None,
            change=verdict.change if verdict else None,
            why=tuple(map(mask, why)),
        )
        if self.run.run_dir is not None:
            with self.writing():
                save_log(value.to_dict(), self.run.run_dir / "logs", self.plan.shown_settings(job))
        return value

    def reasons(self, rel: str) -> tuple[str, ...]:
        """Why a script runs: decided during the run, or by the plan."""
        return self.why.get(rel) or self.plan.reasons(rel)

    def not_started(self, job: ScriptJob) -> ScriptResult:
        """The run was interrupted before this script could start."""
        reason = "not started: the run was interrupted"
        return self.finish(job, skipped_result(job.path, self.scripts_dir, reason), 0)

    # Runs in a worker thread, once per attempt.
    def action(self, job: ScriptJob) -> ScriptResult:
        if self.stop.is_set():  # dispatched just before the ticker saw the interrupt
            return self.not_started(job)
        if job.rel in self.plan.fresh and not self.stale_now(job):
            # Passed, as far as its dependents are concerned; its last duration is saved.
            fresh = skipped_result(job.path, self.scripts_dir, "up-to-date")
            last = (self.snapshots.entry(job) or {}).get("duration")
            if isinstance(last, int | float):
                fresh = fresh.with_extra(saved=last)
            return self.finish(job, fresh, 0)
        self.attempts[job.rel] += 1
        settings = job.settings
        # Taken as the script starts: what it ran with, whatever it writes.
        started_ns = file_clock_ns()
        before = self.snapshots.now(job)
        if self.cache is not None and not self.options.force:
            entry = self.cache.lookup(job)
            if entry is not None:
                return self.restore(job, entry, before, started_ns)
        try:
            python = self.interpreter(job)
        except EnvBuildError as exc:
            error = unrun_result(job.path, self.scripts_dir, Status.ERROR, error=str(exc))
            return self.finish(job, error, self.attempts[job.rel])
        if self.stop.is_set():  # interrupted while its environment was being built
            return self.not_started(job)
        log_dir = None
        if self.run.run_dir is not None:
            log_dir = str(self.run.run_dir / "logs" / Path(job.rel).parent)
        inputs: dict[str, str | None] = {}
        if self.executor.verifies:
            for path in self.graph.inputs(job.path):
                inputs[str(path)] = self.graph.file_hash(path)
        call = ScriptCall(
            script=str(job.path),
            scripts_dir=str(self.scripts_dir),
            root=self.root,
            timeout=settings.timeout,
            env=settings.env,
            cwd=settings.cwd,
            args=settings.args,
            allowed_exit_codes=settings.allowed_exit_codes,
            python=python,
            log_dir=log_dir,
            inputs=inputs,
            tag=self.run.run_id,
            trace=settings.trace and self.root is not None,
            trace_skip=[str(self.plan.project.reports_dir)],
            masker=self.plan.masker,
            secret_names=list(self.plan.secret_names),
            memory_limit_mb=settings.memory_limit_mb,
        )
        raw = self.executor.run(call)
        trace = trace_in(raw.extra)  # as it was: the record keeps real paths, outputs masked
        known = trace if isinstance(trace, Trace) else None
        raw = replace(self.explained(job, raw), inputs_incomplete=incomplete(job, trace))
        if "write_error" in raw.extra:  # its stream logs: the disk is full
            self.cannot_write(OrchestratorError(raw.extra["write_error"]))
        if not raw.recorded:  # stopped from outside: says nothing about the script
            return self.finish(job, raw, self.attempts[job.rel])
        snapshot = self.snapshots.after(job, before, known, started_ns)
        judged = self.judged(job, raw, snapshot)
        result = self.finish(job, raw, self.attempts[job.rel], judged and judged.verdict)
        with self.writing():
            self.record.update(
                job.path, snapshot, result.status.value, trace=trace, duration=raw.execution_time
            )
            if judged is not None:
                judged.runs.add(judged.outcome)
        if (
            self.cache is not None
            and self.fault is None  # not recorded: not shared either
            and result.status is Status.PASSED
            and result.flaky is None
        ):
            self.share(job, result, snapshot, known)
        return result

    def judged(self, job: ScriptJob, result: ScriptResult, snapshot: Snapshot) -> _Judged | None:
        """The verdict of the script's history on this run, the run as history keeps
        it, and the history it joins; None for an attempt that will be retried (the last
        attempt's line counts them)."""
        attempt = self.attempts[job.rel]
        policy = self.workflow.tasks[job.rel].retry_policy
        stopping = self.stopping or self.stop.is_set()  # a stopping workflow retries nothing
        if (
            policy is not None
            and not stopping
            and attempt < policy.max_attempts
            and policy.retries_value(result)
        ):
            return None
        key = self.record.key(job.path)
        mask = self.plan.masker.mask
        # An input edited while it ran matches no content: such a run is compared with none.
        edited = EDITED in snapshot.inputs.values()
        outcome = Outcome(
            time=result.end_time or datetime.now(timezone.utc).isoformat(),
            status=result.status.value,
            duration=round(result.execution_time, 6),
            # What orch cannot see whole is never compared: no verdict rests on a guess.
            inputs=None if result.inputs_incomplete or edited else snapshot.fingerprint(),
            source=None if edited else snapshot.inputs.get(key),
            commit=self.commit,
            exit_code=result.exit_code,
            memory=result.peak_memory_mb,
            attempts=attempt,
            # Masked before numbers are taken out: a secret with digits is still found.
            signature=failure_signature(
                result.status.value,
                mask(result.error or ""),
                mask(result.stderr[-4096:]),
                mask(result.stdout[-4096:]),
            ),
            run=self.run.run_id,
        )
        runs = self.history.of(key)
        return _Judged(judge(runs.past, outcome), outcome, runs)

    def share(
        self,
        job: ScriptJob,
        result: ScriptResult,
        snapshot: Snapshot,
        known: Trace | None,
    ) -> None:
        """Publish a pass to the cache, when it may be shared (``--cache-write``).

        A flaky script's pass (a retried one among them) is never shared: it is
        not what its inputs give.
        """
        assert self.cache is not None
        if not self.cache.write:
            return
        if self.cache.unpublishable(job, known, result.inputs_incomplete) is None:
            assert known is not None
            self.cache.publish(
                job,
                known,
                snapshot.inputs,
                result.execution_time,
                result.stdout,
                result.stderr,
                result.peak_memory_mb,
            )

    def restore(
        self, job: ScriptJob, entry: Entry, before: Snapshot, started_ns: int
    ) -> ScriptResult:
        """A script the cache holds a pass of: ``skipped``, its logs as they were, and
        recorded as passed, so that the next ``--changed`` knows it too."""
        assert self.cache is not None
        mask = self.plan.masker.mask
        extra: dict[str, Any] = {
            "cache": {
                "url": self.cache.url,
                "key": entry.key,
                "host": mask(entry.host),
                "commit": entry.commit,
                "time": entry.time,
                "saved": entry.execution_time,
            }
        }
        if self.run.run_dir is not None:
            logs = self.run.run_dir / "logs" / Path(job.rel).parent
            for stream, text in (("stdout", entry.stdout), ("stderr", entry.stderr)):
                if text:
                    path = logs / f"{mask(job.path.name)}.{stream}.log"
                    with self.writing():
                        atomic_write_text(path, mask(text), durable=False)
                    extra[f"{stream}_path"] = str(path)
        result = replace(
            skipped_result(job.path, self.scripts_dir, mask(entry.reason)),
            stdout=mask(entry.stdout),
            stderr=mask(entry.stderr),
            extra=extra,
        )
        trace = self.cache.trace_of(job, entry)
        snapshot = self.snapshots.after(job, before, trace, started_ns)
        with self.writing():
            self.record.update(
                job.path, snapshot, Status.PASSED.value, trace=trace, duration=entry.execution_time
            )
        return self.finish(job, result, 0)

    def stale_now(self, job: ScriptJob) -> bool:
        """Whether an up-to-date script must run after all: decided again, now.

        Its check waits for what it is ordered after: a script that ran in this
        run may have rewritten a file it reads (inferred order), or may itself
        have been found stale only now (``depends_on``). What it says joins the
        plan's reasons.
        """
        ran = {
            rel
            for rel in (*self.plan.graph()[job.rel], *self.plan.after.get(job.rel, ()))
            if (done := self.results.get(rel)) is not None and done.status is not Status.SKIPPED
        }
        if not ran:
            return False
        declared = [rel for rel in self.plan.graph()[job.rel] if rel in ran]
        if declared:
            why: tuple[str, ...] = (f"depends on {declared[0]}, which ran",)
        else:
            decision = self.snapshots.decide(job)
            if not decision.runs:
                return False
            why = decision.why
        self.why[job.rel] = why
        return True

    def explained(self, job: ScriptJob, result: ScriptResult) -> ScriptResult:
        """A failure for want of a module, in an isolated environment, says which and where."""
        missing = _MISSING.search(result.stderr[-4096:])
        if result.status is not Status.FAILED or missing is None:
            return result
        try:
            spec = self.envs.spec_for(job.path, job.settings.environment)
        except EnvBuildError:
            return result
        if spec is None:
            return result
        where = (
            "its PEP 723 `dependencies`"
            if spec.inline
            else f"the requirements of environment {spec.name!r} in the config"
        )
        hint = (
            f"it runs in an isolated environment ({spec.name}), without module "
            f"{missing[1]!r}: add its distribution to {where}"
        )
        return replace(result, error=f"{result.error or 'failed'}; {hint}")

    def interpreter(self, job: ScriptJob) -> str | None:
        """The Python a script runs with: its isolated environment's, or the run's."""
        spec = self.envs.spec_for(job.path, job.settings.environment)
        in_session = (
            self.options.environment is not None
            and spec is not None
            and (spec.name == job.settings.environment)
        )
        if spec is None or in_session:  # a nox session installed the group already
            return self.options.python
        return str(self.envs.python(spec))

    def result_of(self, task: TaskResult) -> ScriptResult:
        if isinstance(task.value, ScriptResult):  # the action ran: its value, pass or fail
            return task.value
        job = self.jobs[task.name]
        if task.status in (TaskStatus.SKIPPED, TaskStatus.CANCELLED):
            if job.settings.skip:
                reason = job.settings.skip_reason or "skipped by config"
            else:
                reason = task.reason or task.status.value
            result = skipped_result(job.path, self.scripts_dir, reason)
        else:  # our own bug in the action: keep the traceback
            error = task.error or task.reason or "unknown error"
            result = unrun_result(job.path, self.scripts_dir, Status.ERROR, error=error)
        return self.finish(job, result, task.attempts)

    # Runs in the event loop's thread (the main thread).
    def on_event(self, event: WorkflowEvent) -> None:
        job = self.jobs[event.task]
        if event.kind == "started":
            if event.attempt == 1:
                mask = self.plan.masker.mask
                started = ScriptStarted(mask(str(job.path)), mask(job.rel), mask(job.path.name))
                self.tell(lambda r: r.script_started(started))
            return
        if event.kind == "retrying":
            self.tell(lambda r: r.script_retrying(event.value, event.attempt, event.delay))
            return
        if event.result is None:
            return
        result = self.result_of(event.result)
        self.results[event.task] = result
        self.tell(lambda r: r.script_finished(result))
        if self.options.fail_fast and not result.ok and not self.stop.is_set():
            self.halt(f"not started: --fail-fast after {result.path} {result.status}")

    def halt(self, reason: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.workflow.stop(reason)

    async def go(self) -> None:
        async def ticker() -> None:
            told = False
            while True:
                await asyncio.sleep(_TICK)
                if self.stop.is_set():
                    if not told:
                        told = True
                        self.executor.stop_all(StopReason.INTERRUPTED)
                    # Again each tick: a child that registered just after the last call.
                    children.terminate()
                    if self.force is not None and self.force.is_set():
                        children.kill()
                    self.halt("not started: the run was interrupted")
                self.tell(lambda r: r.tick())

        ticking = asyncio.create_task(ticker())
        try:
            await self.workflow.run()
        finally:
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking
            with self.writing():
                self.graph.save()


def select(
    plan: Plan,
    options: RunOptions,
    tracking: Tracking | None = None,
    snapshots: Snapshots | None = None,
) -> Plan:
    """The plan with what ``--changed`` leaves out marked fresh, and why the rest run.

    Without ``--changed`` the plan itself (every script: ``full run``); with
    ``--force`` every script runs, ``forced``. ``snapshots``: the run's own, so
    that the record is read once.
    """
    if not options.changed:
        return plan
    if options.force:
        return replace(plan, why=dict.fromkeys((job.rel for job in plan.jobs), ("forced",)))
    tracking = tracking or Tracking(plan.project, options.python)
    return select_changed(plan, snapshots or tracking.snapshots(plan))


def execute(
    plan: Plan,
    options: RunOptions,
    reporters: Sequence[Reporter] = (),
    *,
    stop: threading.Event | None = None,
    write_reports: bool = True,
    graph: InputGraph | None = None,
    executor: Executor | None = None,
    force: threading.Event | None = None,
) -> RunOutcome:
    """Run the plan with up to ``options.jobs`` scripts at once and return every result.

    Setting ``stop`` (a signal handler does) starts nothing new and kills the
    running scripts' process groups (SIGTERM, then SIGKILL after the grace,
    or at once when ``force`` is set too); they end ``error`` with
    ``interrupted`` and the rest are ``skipped``. ``executor`` is used and
    left open (``orch watch`` keeps one); without it one is made and closed.

    Raises:
        OrchestratorError: the executor cannot start, or the reports folder
            cannot be written.
        WriteError: a log, the record or a report could not be written (a
            full disk, a folder gone read-only): the running scripts were
            stopped, and what could still be written was.
    """
    stop = stop or threading.Event()
    start = datetime.now(timezone.utc)
    began = time.monotonic()
    run_id = options.run_id or new_run_id(start)
    run = RunInfo(
        run_id=run_id,
        project=plan.project,
        total=len(plan.jobs),
        run_dir=plan.project.reports_dir / run_id if write_reports else None,
        command=plan.masker.mask_data(options.command),
        start_time=start.isoformat(),
    )
    url = cache_url(options.cache, plan.cache, plan.project.root)
    store = open_store(url, plan.project.root) if url else None  # a bad URL: before anything
    own_executor = executor is None
    if executor is None:
        executor = make_executor(options.executor, options.scheduler)  # may refuse: first
    if run.run_dir is not None:
        try:
            (run.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if own_executor:
                executor.close()
            raise OrchestratorError(
                f"cannot write reports to {run.run_dir.parent}: {exc.strerror}; "
                "pass a writable folder with -o"
            ) from None
    ensure_state_dir(plan.project.state_dir)
    bridge = _ScriptRun(plan, options, reporters, run, stop, graph, executor, force)
    bridge.record.compact()
    plan = select(plan, options, bridge.tracking, bridge.snapshots)
    bridge.plan = plan = infer_order(plan, bridge.snapshots.traces(plan.jobs))
    bridge.schedule()
    if store is not None:
        bridge.use_cache(store)
    run.notes = [plan.masker.mask(note) for note in plan.notes]  # with what the selection says
    mask = plan.masker.mask
    run.jobs = options.jobs
    run.depends_on = {mask(rel): [mask(d) for d in deps] for rel, deps in plan.order().items()}
    # Kept until the reports are written: a run killed before has no summary, and
    # the next orch command finds its leftovers by the marker.
    live = LiveRun.of_this_process(
        run_id, children.marker_prefix, run.run_dir, run.total, list(run.command)
    )
    entry = ledger.enter(plan.project.state_dir, live)
    try:
        bridge.tell(lambda r: r.run_started(run))
        try:
            with children.adopting():  # between scripts too: an orphan never reaches init
                asyncio.run(bridge.go())
        finally:
            if len(bridge.results) < len(plan.jobs):  # our own exception: leave no child behind
                executor.stop_all(StopReason.INTERRUPTED)
                children.terminate()
            if own_executor:
                executor.close()
            if bridge.cache is not None:  # what it publishes is in the store before we end
                bridge.cache.close()
                run.cache = bridge.cache.summary()
            # What no script could claim (see Registry): nothing of the run may outlive it.
            run.escaped = children.stop_orphans()
        run.interrupted = stop.is_set()
        run.end_time = datetime.now(timezone.utc).isoformat()
        run.wall_time = round(time.monotonic() - began, 6)
        results = [bridge.results[job.rel] for job in plan.jobs]
        bridge.tell(lambda r: r.run_finished(run, results))
    finally:
        ledger.leave(entry)
    if bridge.fault is not None:
        raise bridge.fault
    return RunOutcome(run, results)
