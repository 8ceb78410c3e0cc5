"""A DAG of tasks run on asyncio with a ready queue, retries, timeouts and events.

Scheduling works like :class:`graphlib.TopologicalSorter`: each task counts its
unfinished dependencies; when the count reaches zero it joins the ready queue
(ordered by the order tasks were added) and starts as soon as fewer than
``max_concurrency`` tasks run. There are no waves: a task starts the moment its
last dependency completes, and a slow task never holds back an unrelated one.

Actions
    A coroutine function runs on the event loop; a plain function runs in a
    worker thread (at most ``max_concurrency`` of them, or 64 when that is
    unbounded; threads are made as needed and reused). An action that
    declares a parameter named ``results`` receives ``{dependency name:
    value}`` for its direct dependencies; other actions are called with just
    ``args`` and ``kwargs``.

Failures
    A task whose action raises is ``failed`` (``error`` holds the traceback),
    after its retries. Its transitive dependents are ``skipped`` with the
    reason ``dependency 'x' failed``; independent branches run on. With
    ``fail_fast=True``, nothing new starts after the first failure, running
    tasks are cancelled, and the rest are ``cancelled``. A task whose
    ``condition(results)`` is false is ``skipped``, and so are its dependents.
    A task only ordered ``after`` another starts once that one ended, however.

Timeouts
    ``timeout`` on a task bounds each attempt; ``timeout`` on the workflow
    bounds the whole run at any moment. A coroutine is cancelled. A thread
    cannot be killed: a sync action that times out is reported ``timeout`` at
    once and its dependents are skipped, but its thread runs on to the end in
    the background. Work that must really be stopped belongs in a script
    (:func:`orchestrator.run_script`) or in :func:`orchestrator.run_function`.

Cycles are reported as :class:`~orchestrator.errors.CycleError` whose path
reads ``a -> b -> c -> a``, where ``->`` means "depends on".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import inspect
import math
import queue
import random
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .dag import ReadyQueue, check_acyclic
from .errors import OrchestratorError

__all__ = [
    "RetryPolicy",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowError",
    "WorkflowEvent",
    "WorkflowResults",
]


class WorkflowError(OrchestratorError):
    """The workflow is not well formed: a duplicate task or an unknown dependency."""


class TaskStatus(str, enum.Enum):
    """How a task ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and after how long, a failed attempt is tried again.

    The delay before attempt ``n + 1`` is ``min(initial_delay * backoff ** (n - 1),
    max_delay)``, then multiplied by a random factor in ``[1 - jitter, 1 + jitter]``.
    Only exceptions that are instances of ``retry_on`` are retried; a timed-out
    attempt counts as :class:`TimeoutError`. An attempt that returned a
    failure (see ``failed_if`` of :meth:`Workflow.add_task`) is retried when
    ``retry_if`` of its value is true.
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    max_delay: float = 60.0
    backoff: float = 2.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_if: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("initial_delay", "max_delay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more")
        if not self.backoff > 0:
            raise ValueError("backoff must be greater than 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if isinstance(self.retry_on, type):
            object.__setattr__(self, "retry_on", (self.retry_on,))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        base = min(self.initial_delay * self.backoff ** (attempt - 1), self.max_delay)
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt."""
        return isinstance(exc, self.retry_on)

    def retries_value(self, value: Any) -> bool:
        """Whether an attempt that returned the failure ``value`` is worth another."""
        return self.retry_if is not None and bool(self.retry_if(value))


@dataclass(frozen=True)
class TaskResult:
    """How one task ended. ``reason`` says why a task was skipped or cancelled."""

    name: str
    status: TaskStatus
    value: Any = None
    error: str | None = None
    attempts: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: float = 0.0
    reason: str | None = None

    #: Skipped because a ``condition`` was false (its own, or a dependency's).
    by_condition: bool = False

    @property
    def ok(self) -> bool:
        """Completed, or skipped by a condition: nothing went wrong."""
        return self.status is TaskStatus.COMPLETED or self.by_condition


class WorkflowResults(dict[str, TaskResult]):
    """``{task name: TaskResult}`` in the order tasks were added, with a summary."""

    @property
    def succeeded(self) -> bool:
        """True when no task failed, timed out or was cancelled."""
        return all(r.ok for r in self.values())

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats a finished task's result into reprs
        # it builds on the way out, and 10,000 full TaskResults cost ~0.1 s.
        counts = ", ".join(f"{n} {s}" for s, n in self.summary().items() if n)
        return f"<WorkflowResults {len(self)} tasks: {counts or 'none'}>"

    def summary(self) -> dict[str, int]:
        """Counts by status, every status present."""
        counts = {status.value: 0 for status in TaskStatus}
        for result in self.values():
            counts[result.status.value] += 1
        return counts


@dataclass(frozen=True)
class WorkflowEvent:
    """What a listener is told: ``kind`` is started, retrying, completed, failed,
    timeout, skipped or cancelled; ``result`` is set on the final ones, ``value``
    on ``retrying`` (what the failed attempt returned, if it returned)."""

    kind: str
    task: str
    attempt: int = 0
    delay: float = 0.0
    result: TaskResult | None = None
    value: Any = None


@dataclass
class Task:
    """One node of a workflow. Build these with :meth:`Workflow.add_task`.

    ``tags`` are the caller's labels (to select or group tasks); the engine keeps
    them and does not read them.
    """

    name: str
    action: Callable[..., Any]
    dependencies: tuple[str, ...] = ()
    #: Tasks it only starts after, whatever their outcome: an order, not a need.
    after: tuple[str, ...] = ()
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retry_policy: RetryPolicy | None = None
    condition: Callable[[Mapping[str, TaskResult]], bool] | None = None
    failed_if: Callable[[Any], bool] | None = None
    tags: tuple[str, ...] = ()
    #: Among ready tasks, the higher goes first (then the first added).
    priority: float = 0.0
    wants_results: bool = False
    is_async: bool = False


def _now() -> datetime:
    return datetime.now(timezone.utc)


_NO_RETRY = RetryPolicy(max_attempts=1)
# Sync actions of a workflow without max_concurrency share this many threads.
_MAX_THREADS = 64


class _Threads:
    """Worker threads for sync actions, made on demand and reused when idle.

    At most ``cap`` run at once; the scheduler's own limit keeps them under it.
    A thread whose action timed out cannot be stopped, so :meth:`abandon`
    raises the cap by one: it must not hold back the tasks after it. Threads
    are daemons, so an abandoned one never keeps the interpreter from exiting.
    """

    def __init__(self, cap: int, name: str) -> None:
        self.cap = cap
        self.name = name
        self.queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self.lock = threading.Lock()
        self.idle = 0  # workers waiting for an item nobody has claimed
        self.backlog = 0  # items queued while every worker was busy and at the cap
        self.count = 0

    def submit(self, fn: Callable[[], Any], future: Future[Any] | None = None) -> Future[Any]:
        """Run ``fn`` in a worker; its outcome goes to ``future`` (made when not given)."""
        future = Future() if future is None else future
        self.queue.put((future, fn))
        with self.lock:
            if self.idle:
                self.idle -= 1  # that idle worker takes this item
                return future
            if self.count >= self.cap:
                self.backlog += 1
                return future
            self.count += 1
        threading.Thread(target=self._work, name=f"{self.name}-{self.count}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            with self.lock:
                if self.backlog:
                    self.backlog -= 1  # this worker takes a queued item next
                else:
                    self.idle += 1

    def abandon(self) -> None:
        """One thread is stuck in an action that timed out: allow one more."""
        with self.lock:
            self.cap += 1
            if not self.backlog:
                return
            self.backlog -= 1
            self.count += 1
        threading.Thread(target=self._work, name=f"{self.name}-{self.count}", daemon=True).start()

    def shutdown(self) -> None:
        """Let every worker exit once it is idle."""
        for _ in range(self.count):
            self.queue.put(None)


class _Expired(Exception):
    """A task's own deadline passed (unlike a TimeoutError its action raised)."""


# Introspecting an action costs microseconds; workflows reuse a few actions many times.
_traits_cache: dict[Any, tuple[bool, bool]] = {}


def _traits(action: Callable[..., Any]) -> tuple[bool, bool]:
    """``(wants_results, is_async)`` of an action, cached when it is hashable."""
    # A bound method's key would keep its object (a whole run) alive: key on the function.
    key = getattr(action, "__func__", action)
    try:
        return _traits_cache[key]
    except (KeyError, TypeError):
        pass
    traits = (_wants_results(action), _is_async(action))
    try:
        if len(_traits_cache) < 1024:
            _traits_cache[key] = traits
    except TypeError:
        pass
    return traits


def _wants_results(action: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(action).parameters
    except (TypeError, ValueError):
        return False
    param = parameters.get("results")
    return param is not None and param.kind is not inspect.Parameter.POSITIONAL_ONLY


def _is_async(action: Callable[..., Any]) -> bool:
    while hasattr(action, "func"):  # functools.partial
        action = action.func
    return inspect.iscoroutinefunction(action) or inspect.iscoroutinefunction(
        getattr(action, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class Workflow:
    """A named DAG of tasks. ``add_task`` chains; ``run()`` / ``run_sync()`` run it."""

    def __init__(
        self,
        name: str,
        max_concurrency: int | None = None,
        fail_fast: bool = False,
        timeout: float | None = None,
        listener: Callable[[WorkflowEvent], None] | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be greater than 0")
        self.name = name
        self.max_concurrency = max_concurrency
        self.fail_fast = fail_fast
        self.timeout = timeout
        self.listener = listener
        self.tasks: dict[str, Task] = {}
        self._stop_reason: str | None = None
        self._wake: Callable[[], None] | None = None

    def add_task(
        self,
        name: str,
        action: Callable[..., Any],
        dependencies: Collection[str] | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        condition: Callable[[Mapping[str, TaskResult]], bool] | None = None,
        tags: Iterable[str] = (),
        failed_if: Callable[[Any], bool] | None = None,
        priority: float = 0.0,
        after: Collection[str] = (),
    ) -> Workflow:
        """Add a task and return the workflow, so that calls chain.

        Of the tasks whose dependencies are done, the one of highest
        ``priority`` starts first; equal ones in the order they were added.
        ``after``: tasks it starts after, whatever their outcome (an order,
        not a need: their failure does not skip it).

        ``failed_if`` is for actions that return their failures as values
        rather than raising them: an attempt whose return value it holds true
        for has failed (the task keeps the value), and is retried as
        ``retry_policy.retry_if`` says.

        Raises:
            WorkflowError: ``name`` is already taken.
            TypeError: ``dependencies`` is a string rather than a collection of
                names, or ``action`` is not callable.
        """
        if name in self.tasks:
            raise WorkflowError(f"workflow {self.name!r}: task {name!r} is added twice")
        if not callable(action):
            raise TypeError(f"task {name!r}: action must be callable")
        if isinstance(dependencies, str | bytes):
            raise TypeError(
                f"task {name!r}: dependencies must be a collection of names, "
                f"not the string {dependencies!r}; write [{dependencies!r}]"
            )
        if timeout is not None and not timeout > 0:
            raise ValueError(f"task {name!r}: timeout must be greater than 0")
        self.tasks[name] = Task(
            name=name,
            action=action,
            dependencies=tuple(dict.fromkeys(dependencies or ())),
            after=tuple(dict.fromkeys(after)),
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            timeout=timeout,
            retry_policy=retry_policy,
            condition=condition,
            failed_if=failed_if,
            tags=tuple(tags),
            priority=float(priority),
        )
        self.tasks[name].wants_results, self.tasks[name].is_async = _traits(action)
        return self

    def validate(self) -> None:
        """Check that every dependency exists and that there is no cycle.

        Raises:
            WorkflowError: a task depends on an unknown task.
            CycleError: the dependencies form a cycle; ``.cycle`` is its path.
        """
        for task in self.tasks.values():
            for dep in (*task.dependencies, *task.after):
                if dep not in self.tasks:
                    known = ", ".join(sorted(self.tasks)[:10])
                    raise WorkflowError(
                        f"workflow {self.name!r}: task {task.name!r} depends on unknown "
                        f"task {dep!r} (known: {known})"
                    )
        check_acyclic(
            {t.name: (*t.dependencies, *t.after) for t in self.tasks.values()},
            f"workflow {self.name!r}",
        )

    def stop(self, reason: str) -> None:
        """Start nothing new; tasks not yet started end ``skipped`` with ``reason``.

        Running tasks finish. Thread-safe: a signal handler may call it.
        """
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._wake is not None:
            self._wake()

    def run_sync(self) -> WorkflowResults:
        """Run the workflow with :func:`asyncio.run`, for callers without an event loop."""
        return asyncio.run(self.run())

    async def run(self) -> WorkflowResults:
        """Run every task once, dependencies first; never raises because a task failed.

        Raises:
            WorkflowError, CycleError: the workflow is not well formed (checked first).
        """
        self.validate()
        run = _Run(self, asyncio.get_running_loop())
        self._wake = run.wake_threadsafe
        try:
            return await run.go()
        finally:
            self._wake = None
            self._stop_reason = None  # a stop() before run() counts; after it, not again


class _Attempt(NamedTuple):
    """One attempt of a sync action: its task result so far, and whether another follows."""

    result: TaskResult
    again: bool


class _Run:
    """The state of one run of a workflow; lives on one event loop."""

    def __init__(self, workflow: Workflow, loop: asyncio.AbstractEventLoop) -> None:
        self.wf = workflow
        self.loop = loop
        self.tasks = workflow.tasks
        self.queue = ReadyQueue(
            {name: dict.fromkeys((*t.dependencies, *t.after)) for name, t in self.tasks.items()},
            {name: t.priority for name, t in self.tasks.items() if t.priority},
        )
        self.results: dict[str, TaskResult] = {}
        # An asyncio task of attempts, or the thread future of a sync action's (see start).
        self.running: dict[str, asyncio.Future[Any] | Future[Any]] = {}
        self.started: dict[str, tuple[datetime, float, int]] = {}
        self.limit = workflow.max_concurrency or math.inf
        self.done = loop.create_future()
        self.failed_first = False
        self.dispatching = False
        self.stopped = asyncio.Event()  # set by Workflow.stop(): wakes retry delays
        # Sync attempts to hand to threads once a dispatch ends (see start), and the
        # sync tasks waiting out a retry delay: the timer, and their last outcome.
        self.starting: list[tuple[Future[_Attempt], Callable[[], _Attempt]]] = []
        self.waiting: dict[str, tuple[asyncio.TimerHandle, _Attempt]] = {}
        self.pool: _Threads | None = None

    # -- bookkeeping ----------------------------------------------------------------------

    def emit(self, kind: str, name: str, **extra: Any) -> None:
        if self.wf.listener is None:
            return
        try:
            self.wf.listener(WorkflowEvent(kind, name, **extra))
        except Exception as exc:
            # Raised in a callback it would only be logged, and the run would wait
            # forever for a result never recorded: it ends the run instead.
            if self.wf._stop_reason is None:
                self.wf._stop_reason = f"not started: the listener raised {type(exc).__name__}"
            if not self.done.done():
                self.done.set_exception(exc)

    def wake_threadsafe(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.on_stop)

    def on_stop(self) -> None:
        self.stopped.set()
        for name in list(self.waiting):  # no new attempt: the last one's outcome stands
            timer, last = self.waiting.pop(name)
            timer.cancel()
            self.record(last.result)
        self.dispatch()

    def record(self, *results: TaskResult) -> None:
        """Tasks have final results: release or skip their dependents, then start more.

        A worklist rather than recursion, so that a failure at the head of a
        10,000-task chain skips the chain without exhausting the stack.
        """
        stack = list(reversed(results))
        while stack:
            result = stack.pop()
            name = result.name
            if name in self.results:
                continue
            self.results[name] = result
            self.running.pop(name, None)
            self.emit(result.status.value, name, attempt=result.attempts, result=result)
            if result.status is TaskStatus.COMPLETED:
                self.queue.done(name)
                continue
            if result.status is TaskStatus.SKIPPED:
                reason = result.reason or ""
                cause = (
                    reason if reason.startswith("dependency ") else f"dependency {name!r} skipped"
                )
            elif result.status is TaskStatus.CANCELLED:
                cause = result.reason or f"dependency {name!r} cancelled"
            else:
                cause = f"dependency {name!r} failed"
            status = (
                TaskStatus.CANCELLED
                if result.status is TaskStatus.CANCELLED
                else (TaskStatus.SKIPPED)
            )
            for dependent in reversed(self.queue.dependents(name)):
                if name not in self.tasks[dependent].dependencies:
                    self.queue.release(name, dependent)  # only ordered after it: may start
                elif dependent not in self.results:
                    stack.append(
                        self.final(
                            dependent, status, reason=cause, by_condition=result.by_condition
                        )
                    )
            if (
                self.wf.fail_fast
                and result.status in (TaskStatus.FAILED, TaskStatus.TIMEOUT)
                and not self.failed_first
            ):
                self.failed_first = True
                stack.extend(
                    reversed(self.cancel_all(f"fail_fast: {name!r} {result.status.value}"))
                )
        self.dispatch()

    def final(
        self,
        name: str,
        status: TaskStatus,
        *,
        reason: str | None = None,
        error: str | None = None,
        by_condition: bool = False,
    ) -> TaskResult:
        start, began, attempts = self.started.get(name, (None, None, 0))
        now = _now()
        return TaskResult(
            name=name,
            status=status,
            error=error,
            attempts=attempts,
            start_time=start or now,
            end_time=now,
            duration=time.monotonic() - began if began is not None else 0.0,
            reason=reason,
            by_condition=by_condition,
        )

    def cancel_all(self, reason: str) -> list[TaskResult]:
        """Cancel running tasks and return ``cancelled`` results for every unfinished one."""
        for future in self.running.values():
            future.cancel()
        for timer, _ in self.waiting.values():  # no retry of a cancelled task
            timer.cancel()
        self.waiting.clear()
        self.queue.drain()
        return [
            self.final(name, TaskStatus.CANCELLED, reason=reason)
            for name in self.tasks
            if name not in self.results
        ]

    def dispatch(self) -> None:
        """Start ready tasks while there is room; finish the run when all have results."""
        if self.dispatching:  # re-entered from record(): the outer loop picks it up
            return
        self.dispatching = True
        try:
            while True:
                stop = self.wf._stop_reason
                if stop is not None and self.queue:
                    skipped = [
                        self.final(name, TaskStatus.SKIPPED, reason=stop)
                        for name in self.queue.drain()
                        if name not in self.results
                    ]
                    self.dispatching = False
                    self.record(*skipped)
                    self.dispatching = True
                    continue
                if not self.queue or len(self.running) >= self.limit or stop is not None:
                    break
                name = self.queue.pop()
                if name not in self.results:
                    self.start(name)
        finally:
            self.dispatching = False
            starting, self.starting = self.starting, []
            for handle, attempts in starting:
                self.threads().submit(attempts, handle)
        if len(self.results) == len(self.tasks) and not self.done.done():
            self.done.set_result(None)

    # -- running one task ---------------------------------------------------------------

    def start(self, name: str) -> None:
        task = self.tasks[name]
        if task.condition is not None:
            try:
                go = task.condition(self.results)
            except Exception:
                self.started[name] = (_now(), time.monotonic(), 0)
                self.record(self.final(name, TaskStatus.FAILED, error=traceback.format_exc()))
                return
            if not go:
                self.record(
                    self.final(
                        name, TaskStatus.SKIPPED, reason="condition was false", by_condition=True
                    )
                )
                return
        self.started[name] = (_now(), time.monotonic(), 0)
        if task.is_async or task.timeout is not None:
            future = asyncio.ensure_future(self.attempts(task))
            self.running[name] = future
            future.add_done_callback(functools.partial(self.settle, name))
            return
        # A sync action without a deadline: each attempt is one hand-off to a worker
        # thread and back (no asyncio task or future chain); a retry's delay is a
        # timer on the loop, so no thread sleeps through it.
        self.emit("started", name, attempt=1)
        # Handed to a thread once this dispatch has started all it starts: a task that
        # stops the workflow at once must not keep its siblings from starting.
        self.starting.append(self.attempt(task, 1))

    def attempt(self, task: Task, number: int) -> tuple[Future[_Attempt], Callable[[], _Attempt]]:
        """A sync task's attempt ``number``, registered as running: submit the pair."""
        start, began, _ = self.started[task.name]
        self.started[task.name] = (start, began, number)
        handle: Future[_Attempt] = Future()
        self.running[task.name] = handle
        handle.add_done_callback(functools.partial(self.hand_back, task.name))
        return handle, functools.partial(self.attempt_here, task, self.kwargs(task), number)

    def attempt_here(self, task: Task, kwargs: dict[str, Any], number: int) -> _Attempt:
        """In a worker thread: one attempt of a sync action, judged."""
        value, exc = None, None
        try:
            value = task.action(*task.args, **kwargs)
        except Exception as caught:
            exc = caught
        status, error, again = self.judge(task, number, value, exc)
        return _Attempt(self.outcome(task, number, status, value, error), again)

    def hand_back(self, name: str, handle: Future[_Attempt]) -> None:
        """In the worker thread: the attempt goes to the loop (gone: the run ended without it)."""
        with contextlib.suppress(RuntimeError):  # the loop closed since the run returned
            self.loop.call_soon_threadsafe(self.attempted, name, handle)

    def ended(self, name: str, future: asyncio.Future[Any] | Future[Any]) -> Any:
        """What a task's finished future holds; None when there is nothing to record
        (cancelled, recorded already) or once its failure is recorded."""
        if future.cancelled() or name in self.results:
            return None  # cancel_all recorded it already
        exc = future.exception()
        if exc is not None:  # failed_if raised: the task failed, the run goes on
            error = "".join(traceback.format_exception(exc))
            self.record(self.final(name, TaskStatus.FAILED, error=error))
            return None
        return future.result()

    def attempted(self, name: str, handle: Future[_Attempt]) -> None:
        """A sync attempt ended: record its result, or wait out the delay to the next."""
        done: _Attempt | None = self.ended(name, handle)
        if done is None:
            return
        if not done.again or self.wf._stop_reason is not None:
            self.record(done.result)
            return
        task, number = self.tasks[name], done.result.attempts
        delay = (task.retry_policy or _NO_RETRY).delay(number)
        # Still running (its slot held, as max_concurrency counts it) until it ends.
        self.emit("retrying", name, attempt=number, delay=delay, value=done.result.value)
        timer = self.loop.call_later(delay, self.retry, name)
        self.waiting[name] = (timer, done)

    def retry(self, name: str) -> None:
        """A retry's delay has passed: the next attempt of a sync task."""
        if self.waiting.pop(name, None) is None or name in self.results:
            return
        number = self.started[name][2] + 1
        self.emit("started", name, attempt=number)
        handle, attempt = self.attempt(self.tasks[name], number)
        self.threads().submit(attempt, handle)

    def settle(self, name: str, future: asyncio.Future[TaskResult]) -> None:
        """An async task's attempts ended: record their result (a late one is ignored)."""
        result: TaskResult | None = self.ended(name, future)
        if result is not None:
            self.record(result)

    def threads(self) -> _Threads:
        if self.pool is None:
            cap = int(min(self.limit, _MAX_THREADS, max(len(self.tasks), 1)))
            self.pool = _Threads(cap, f"workflow-{self.wf.name}")
        return self.pool

    def kwargs(self, task: Task) -> dict[str, Any]:
        if not task.wants_results:
            return task.kwargs
        return {**task.kwargs, "results": {d: self.results[d].value for d in task.dependencies}}

    def call(self, task: Task) -> Awaitable[Any]:
        """The awaitable of one attempt: the coroutine itself, or a thread's future."""
        kwargs = self.kwargs(task)
        if task.is_async:
            awaitable: Awaitable[Any] = task.action(*task.args, **kwargs)
            return awaitable
        future = self.threads().submit(functools.partial(task.action, *task.args, **kwargs))
        return asyncio.wrap_future(future, loop=self.loop)

    def judge(
        self, task: Task, attempt: int, value: Any, exc: BaseException | None
    ) -> tuple[TaskStatus, str | None, bool]:
        """An attempt's status and error, and whether another attempt follows."""
        policy = task.retry_policy or _NO_RETRY
        if isinstance(exc, _Expired):
            status, error, retry = (
                TaskStatus.TIMEOUT,
                f"timed out after {task.timeout:g} s",
                policy.retries(TimeoutError()),
            )
        elif exc is not None:
            status, error, retry = (
                TaskStatus.FAILED,
                "".join(traceback.format_exception(exc)),
                policy.retries(exc),
            )
        elif task.failed_if is None or not task.failed_if(value):
            return TaskStatus.COMPLETED, None, False
        else:
            status, error, retry = TaskStatus.FAILED, None, policy.retries_value(value)
        again = retry and attempt < policy.max_attempts and self.wf._stop_reason is None
        return status, error, again

    def outcome(
        self, task: Task, attempt: int, status: TaskStatus, value: Any, error: str | None
    ) -> TaskResult:
        start, began, _ = self.started[task.name]
        return TaskResult(
            name=task.name,
            status=status,
            value=value,
            error=error,
            attempts=attempt,
            start_time=start,
            end_time=_now(),
            duration=time.monotonic() - began,
        )

    async def attempts(self, task: Task) -> TaskResult:
        policy = task.retry_policy or _NO_RETRY
        start, began, _ = self.started[task.name]
        attempt = 0
        while True:
            attempt += 1
            self.started[task.name] = (start, began, attempt)
            self.emit("started", task.name, attempt=attempt)
            value, exc = None, None
            try:
                pending = self.call(task)
                if task.timeout is None:
                    value = await pending
                else:
                    # Not wait_for: an action that raises TimeoutError itself has failed,
                    # and only a deadline that really passed is a timeout.
                    attempt_future = asyncio.ensure_future(pending)
                    await asyncio.wait({attempt_future}, timeout=task.timeout)
                    if not attempt_future.done():
                        attempt_future.cancel()
                        if not task.is_async and self.pool is not None:
                            self.pool.abandon()
                        raise _Expired(task.timeout)
                    value = attempt_future.result()
            except asyncio.CancelledError:
                raise
            except Exception as caught:
                exc = caught
            status, error, again = self.judge(task, attempt, value, exc)
            if not again:
                break
            delay = policy.delay(attempt)
            self.emit("retrying", task.name, attempt=attempt, delay=delay, value=value)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), delay)
            if self.wf._stop_reason is not None:  # stopped while waiting: no new attempt
                break
        return self.outcome(task, attempt, status, value, error)

    async def go(self) -> WorkflowResults:
        try:
            self.dispatch()
            if self.wf.timeout is None:
                await self.done
            else:
                await asyncio.wait({self.done}, timeout=self.wf.timeout)
                if not self.done.done():
                    reason = f"workflow timed out after {self.wf.timeout:g} s"
                    timed_out = [
                        self.final(name, TaskStatus.TIMEOUT, reason=reason, error=reason)
                        for name in self.running
                    ]
                    running = set(self.running)
                    # Not started: cancelled, before the timed-out ones skip their dependents.
                    cancelled = [r for r in self.cancel_all(reason) if r.name not in running]
                    self.record(*cancelled, *timed_out)
        except asyncio.CancelledError:
            self.record(*self.cancel_all("cancelled"))
            raise
        finally:
            if self.pool is not None:
                # Threads that outlived a timeout finish in the background.
                self.pool.shutdown()
        return WorkflowResults((name, self.results[name]) for name in self.tasks)
