"""The workflow engine in-process: building, scheduling, retries, failures and timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import CycleError, OrchestratorError
from orchestrator.workflow import (
    RetryPolicy,
    TaskResult,
    TaskStatus,
    Workflow,
    WorkflowError,
    WorkflowEvent,
    WorkflowResults,
)

Graph = dict[str, list[str]]


def noop() -> None:
    """An action that does nothing."""


def boom() -> None:
    raise ValueError("boom from the action")


def statuses(results: Mapping[str, TaskResult]) -> dict[str, str]:
    return {name: result.status.value for name, result in results.items()}


def run(wf: Workflow, limit: float = 10.0) -> WorkflowResults:
    """Run ``wf`` on a fresh loop; a hang fails the test instead of stalling it."""

    async def bounded() -> WorkflowResults:
        return await asyncio.wait_for(wf.run(), limit)

    return asyncio.run(bounded())


def sleeper(seconds: float, value: Any = None) -> Callable[[], Any]:
    async def action() -> Any:
        await asyncio.sleep(seconds)
        return value

    return action


def transitive_dependents(graph: Mapping[str, Iterable[str]], roots: Iterable[str]) -> set[str]:
    """Every node that depends, directly or not, on one of ``roots`` (roots excluded)."""
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    for name, deps in graph.items():
        for dep in deps:
            dependents[dep].append(name)
    seen: set[str] = set()
    stack = [d for root in roots for d in dependents[root]]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(dependents[name])
    return seen


class Timeline:
    """Start and end times (``time.monotonic``) of actions, recorded from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: dict[str, float] = {}
        self.ends: dict[str, float] = {}

    def sync(self, name: str, seconds: float) -> Callable[[], str]:
        def action() -> str:
            with self.lock:
                self.starts[name] = time.monotonic()
            time.sleep(seconds)
            with self.lock:
                self.ends[name] = time.monotonic()
            return name

        return action


# -- building a workflow ----------------------------------------------------------------


def test_add_task_chains_and_keeps_order() -> None:
    wf = Workflow("w")
    same = wf.add_task("a", noop).add_task("b", noop, dependencies=["a"]).add_task("c", noop)
    assert same is wf
    assert list(wf.tasks) == ["a", "b", "c"]
    assert wf.tasks["b"].dependencies == ("a",)


def test_duplicate_task_name_is_an_error() -> None:
    wf = Workflow("w").add_task("a", noop)
    with pytest.raises(WorkflowError, match="'a'"):
        wf.add_task("a", noop)
    assert issubclass(WorkflowError, OrchestratorError)


def test_dependencies_as_a_bare_string_is_a_type_error() -> None:
    wf = Workflow("w").add_task("a", noop).add_task("b", noop)
    with pytest.raises(TypeError, match="'ab'"):
        wf.add_task("c", noop, dependencies="ab")
    assert "c" not in wf.tasks
    # A list holding that string is one dependency named "ab", never "a" and "b".
    wf.add_task("c", noop, dependencies=["ab"])
    with pytest.raises(WorkflowError, match="'ab'"):
        wf.validate()


def test_unknown_keyword_argument_is_a_type_error() -> None:
    wf = Workflow("w")
    with pytest.raises(TypeError):
        wf.add_task("a", noop, depends_on=["b"])  # type: ignore[call-arg]
    assert wf.tasks == {}


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Workflow("w", max_concurrency=0), ValueError),
        (lambda: Workflow("w", timeout=0), ValueError),
        (lambda: Workflow("w").add_task("a", noop, timeout=0), ValueError),
        (lambda: Workflow("w").add_task("a", "not callable"), TypeError),  # type: ignore[arg-type]
    ],
)
def test_invalid_arguments_are_rejected(
    build: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build()


def test_unknown_dependency_is_named_by_validate_and_run() -> None:
    called: list[str] = []
    wf = Workflow("w").add_task("a", lambda: called.append("a"), dependencies=["missing"])
    with pytest.raises(WorkflowError, match="'missing'"):
        wf.validate()
    with pytest.raises(WorkflowError, match="'missing'"):
        wf.run_sync()
    assert called == []


def test_cycle_is_raised_by_validate_and_run() -> None:
    called: list[str] = []
    wf = Workflow("w")
    for name, dep in (("a", "b"), ("b", "c"), ("c", "a")):
        wf.add_task(name, lambda name=name: called.append(name), dependencies=[dep])
    wf.add_task("free", lambda: called.append("free"))
    with pytest.raises(CycleError) as caught:
        wf.validate()
    rotations = [["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"]]
    assert caught.value.cycle in rotations
    assert " -> ".join(caught.value.cycle) in str(caught.value)
    assert isinstance(caught.value, OrchestratorError)
    with pytest.raises(CycleError):
        asyncio.run(wf.run())
    assert called == []


# -- running and results --------------------------------------------------------------


def test_run_sync_and_asyncio_run_give_the_same_results() -> None:
    def build() -> Workflow:
        return (
            Workflow("w")
            .add_task("a", lambda: 1)
            .add_task("b", sleeper(0.01, 2), dependencies=["a"])
        )

    by_sync = build().run_sync()
    by_asyncio = asyncio.run(build().run())
    for results in (by_sync, by_asyncio):
        assert isinstance(results, WorkflowResults)
        assert list(results) == ["a", "b"]
        assert {n: r.value for n, r in results.items()} == {"a": 1, "b": 2}


def test_sync_actions_run_in_threads_and_async_ones_on_the_loop() -> None:
    main = threading.get_ident()
    seen: dict[str, int] = {}

    def sync_action() -> None:
        seen["sync"] = threading.get_ident()
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()

    async def async_action() -> None:
        seen["async"] = threading.get_ident()
        asyncio.get_running_loop()

    wf = Workflow("w").add_task("s", sync_action).add_task("a", async_action)
    assert statuses(run(wf)) == {"s": "completed", "a": "completed"}
    assert seen["async"] == main
    assert seen["sync"] != main


def test_results_parameter_gets_direct_dependency_values() -> None:
    calls: dict[str, Any] = {}

    def plain(*args: Any, **kwargs: Any) -> str:
        calls["plain"] = (args, kwargs)
        return "p"

    def collect(results: dict[str, Any]) -> str:
        calls["collect"] = results
        return "c"

    async def top(tag: str, results: dict[str, Any]) -> None:
        calls["top"] = (tag, results)

    wf = (
        Workflow("w")
        .add_task("one", lambda: 1)
        .add_task("plain", plain, dependencies=["one"], args=[1, 2], kwargs={"k": 3})
        .add_task("collect", collect, dependencies=["one", "plain"])
        .add_task("top", top, dependencies=["collect"], args=["t"])
    )
    assert set(statuses(run(wf)).values()) == {"completed"}
    assert calls["plain"] == ((1, 2), {"k": 3})
    assert calls["collect"] == {"one": 1, "plain": "p"}
    # Only direct dependencies: "one" and "plain" are not passed to "top".
    assert calls["top"] == ("t", {"collect": "c"})


def test_task_result_fields() -> None:
    wf = Workflow("w").add_task("ok", sleeper(0.05, "value")).add_task("bad", boom)
    results = run(wf)
    ok, bad = results["ok"], results["bad"]

    assert ok.name == "ok"
    assert ok.status is TaskStatus.COMPLETED
    assert ok.value == "value"
    assert ok.error is None
    assert ok.attempts == 1
    assert ok.start_time is not None and ok.end_time is not None
    assert ok.start_time.tzinfo is timezone.utc
    assert ok.start_time <= ok.end_time
    assert 0.04 <= ok.duration < 2
    assert abs((ok.end_time - ok.start_time).total_seconds() - ok.duration) < 0.05

    assert bad.status is TaskStatus.FAILED
    assert bad.value is None
    assert bad.error is not None
    assert "Traceback" in bad.error
    assert "ValueError: boom from the action" in bad.error
    assert bad.attempts == 1

    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.status = TaskStatus.FAILED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.value = 2  # type: ignore[misc]


def test_run_never_raises_because_a_task_failed() -> None:
    def missing_key() -> None:
        raise KeyError("missing")

    wf = (
        Workflow("w")
        .add_task("bad", boom)
        .add_task("worse", missing_key)
        .add_task("after", noop, dependencies=["bad"])
        .add_task("ok", noop)
    )
    results = run(wf)
    assert statuses(results) == {
        "bad": "failed",
        "worse": "failed",
        "after": "skipped",
        "ok": "completed",
    }
    assert not results.succeeded
    assert results.summary() == {
        "completed": 1,
        "failed": 2,
        "skipped": 1,
        "timeout": 0,
        "cancelled": 0,
    }


def test_succeeded_when_everything_completed_or_was_skipped_by_condition() -> None:
    wf = Workflow("w").add_task("a", noop).add_task("b", noop, condition=lambda results: False)
    results = run(wf)
    assert statuses(results) == {"a": "completed", "b": "skipped"}
    assert results.succeeded
    assert results.summary()["skipped"] == 1


# -- scheduling -----------------------------------------------------------------------


def test_ready_queue_not_waves() -> None:
    timeline = Timeline()
    wf = (
        Workflow("w", max_concurrency=2)
        .add_task("A", timeline.sync("A", 0.6))
        .add_task("B", timeline.sync("B", 0.1))
        .add_task("C", timeline.sync("C", 0.05), dependencies=["B"])
    )
    assert set(statuses(run(wf)).values()) == {"completed"}
    assert timeline.starts["C"] >= timeline.ends["B"]
    # Waves would hold C until the whole first level (A included) is done.
    assert timeline.starts["C"] < timeline.ends["A"]


def test_a_slow_task_never_delays_an_unrelated_ready_task() -> None:
    timeline = Timeline()
    wf = Workflow("w", max_concurrency=2).add_task("slow", timeline.sync("slow", 0.8))
    for i in range(5):
        deps = [f"quick{i - 1}"] if i else []
        wf.add_task(f"quick{i}", timeline.sync(f"quick{i}", 0.02), dependencies=deps)
    wf.add_task("last", timeline.sync("last", 0.02), dependencies=["quick4"])
    assert set(statuses(run(wf)).values()) == {"completed"}
    assert timeline.ends["last"] < timeline.ends["slow"]


def test_ready_tasks_start_in_the_order_they_were_added() -> None:
    order: list[str] = []
    wf = Workflow("w", max_concurrency=1)
    for name in ("z", "y", "x"):
        wf.add_task(name, order.append, args=[name])
    wf.add_task("after_z", order.append, args=["after_z"], dependencies=["z"])
    run(wf)
    # after_z was added last, so it waits behind y and x that were ready before it.
    assert order == ["z", "y", "x", "after_z"]


# -- retries --------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 7))
def test_retry_delay_formula(n: int) -> None:
    policy = RetryPolicy(initial_delay=0.5, backoff=3.0, max_delay=20.0)
    assert policy.delay(n) == pytest.approx(min(0.5 * 3.0 ** (n - 1), 20.0))
    default = RetryPolicy()
    assert default.delay(n) == pytest.approx(min(1.0 * 2.0 ** (n - 1), 60.0))


def test_retry_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(initial_delay=2.0, backoff=2.0, max_delay=5.0, jitter=0.25)
    for attempt, base in ((1, 2.0), (2, 4.0), (5, 5.0)):
        delays = [policy.delay(attempt) for _ in range(300)]
        assert all(base * 0.75 <= d <= base * 1.25 for d in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize("attempts", [0, -1])
def test_max_attempts_below_one_is_a_value_error(attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=attempts)


def test_retry_on_a_single_type_is_normalised_to_a_tuple() -> None:
    assert RetryPolicy(retry_on=OSError).retry_on == (OSError,)  # type: ignore[arg-type]


def test_flaky_task_retried_until_it_passes_with_retrying_events() -> None:
    events: list[WorkflowEvent] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return "finally"

    policy = RetryPolicy(max_attempts=5, initial_delay=0.01, backoff=2.0)
    wf = Workflow("w", listener=events.append).add_task("f", flaky, retry_policy=policy)
    result = run(wf)["f"]
    assert result.status is TaskStatus.COMPLETED
    assert result.attempts == 3
    assert result.value == "finally"
    assert result.error is None
    assert [(e.kind, e.attempt) for e in events] == [
        ("started", 1),
        ("retrying", 1),
        ("started", 2),
        ("retrying", 2),
        ("started", 3),
        ("completed", 3),
    ]
    retrying = [e for e in events if e.kind == "retrying"]
    assert [e.delay for e in retrying] == pytest.approx([0.01, 0.02])
    assert events[-1].result == result


def test_retries_run_out() -> None:
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise ConnectionError("down")

    policy = RetryPolicy(max_attempts=3, initial_delay=0)
    result = run(Workflow("w").add_task("a", always, retry_policy=policy))["a"]
    assert result.status is TaskStatus.FAILED
    assert result.attempts == 3 == len(calls)
    assert result.error is not None and "ConnectionError: down" in result.error


@pytest.mark.parametrize(
    ("raised", "attempts"), [(ValueError("not retried"), 1), (ConnectionError("again"), 4)]
)
def test_retry_on_filters_exception_types(raised: Exception, attempts: int) -> None:
    def action() -> None:
        raise raised

    policy = RetryPolicy(max_attempts=4, initial_delay=0, retry_on=(OSError,))
    result = run(Workflow("w").add_task("a", action, retry_policy=policy))["a"]
    assert result.status is TaskStatus.FAILED
    assert result.attempts == attempts


# -- failures -------------------------------------------------------------------------


def test_failed_task_skips_its_transitive_dependents_only() -> None:
    wf = (
        Workflow("w")
        .add_task("x", boom)
        .add_task("child", noop, dependencies=["x"])
        .add_task("grandchild", noop, dependencies=["child"])
        .add_task("free", noop)
        .add_task("free_after", noop, dependencies=["free"])
        .add_task("mixed", noop, dependencies=["free", "grandchild"])
    )
    results = run(wf)
    assert statuses(results) == {
        "x": "failed",
        "child": "skipped",
        "grandchild": "skipped",
        "free": "completed",
        "free_after": "completed",
        "mixed": "skipped",
    }
    for name in ("child", "grandchild", "mixed"):
        assert results[name].reason == "dependency 'x' failed"
        assert results[name].attempts == 0
        assert not results[name].ok


def test_fail_fast_cancels_running_and_unstarted_tasks() -> None:
    called: list[str] = []

    async def bad() -> None:
        await asyncio.sleep(0.1)
        raise ValueError("first failure")

    wf = (
        Workflow("w", max_concurrency=2, fail_fast=True)
        .add_task("slow", sleeper(5))
        .add_task("bad", bad)
        .add_task("waiting", lambda: called.append("waiting"))
        .add_task("after_slow", lambda: called.append("after_slow"), dependencies=["slow"])
    )
    began = time.monotonic()
    results = run(wf)
    assert time.monotonic() - began < 1.5
    assert results["bad"].status is TaskStatus.FAILED
    for name in ("slow", "waiting", "after_slow"):
        assert results[name].status is TaskStatus.CANCELLED, name
        assert "bad" in (results[name].reason or "")
    assert called == []
    assert not results.succeeded


def test_fail_fast_starts_nothing_new_after_a_failure() -> None:
    order: list[str] = []
    wf = Workflow("w", max_concurrency=1, fail_fast=True)
    wf.add_task("a", order.append, args=["a"]).add_task("b", boom)
    for name in ("c", "d", "e"):
        wf.add_task(name, order.append, args=[name])
    results = run(wf)
    assert order == ["a"]
    assert statuses(results) == {
        "a": "completed",
        "b": "failed",
        "c": "cancelled",
        "d": "cancelled",
        "e": "cancelled",
    }


def test_condition_false_skips_the_task_and_its_dependents() -> None:
    seen: dict[str, Any] = {}

    def never(results: Mapping[str, TaskResult]) -> bool:
        seen["never"] = dict(results)
        return False

    called: list[str] = []
    wf = (
        Workflow("w", max_concurrency=1)
        .add_task("first", lambda: "v")
        .add_task("gated", lambda: called.append("gated"), dependencies=["first"], condition=never)
        .add_task("below", lambda: called.append("below"), dependencies=["gated"])
        .add_task("free", lambda: called.append("free"), condition=lambda r: True)
    )
    results = run(wf, limit=5)
    assert statuses(results) == {
        "first": "completed",
        "gated": "skipped",
        "below": "skipped",
        "free": "completed",
    }
    assert called == ["free"]
    assert results["gated"].reason == "condition was false"
    assert "gated" in (results["below"].reason or "")
    assert seen["never"]["first"].value == "v"
    assert results.succeeded


def test_condition_that_raises_fails_the_task() -> None:
    def broken(results: Mapping[str, TaskResult]) -> bool:
        raise RuntimeError("condition broke")

    wf = (
        Workflow("w")
        .add_task("a", noop, condition=broken)
        .add_task("b", noop, dependencies=["a"])
        .add_task("c", noop)
    )
    results = run(wf, limit=5)
    assert statuses(results) == {"a": "failed", "b": "skipped", "c": "completed"}
    assert results["a"].error is not None
    assert "Traceback" in results["a"].error
    assert "RuntimeError: condition broke" in results["a"].error
    assert results["b"].reason == "dependency 'a' failed"


# -- timeouts -------------------------------------------------------------------------


def test_task_timeout_bounds_each_attempt() -> None:
    wf = (
        Workflow("w")
        .add_task("slow", sleeper(1.0), timeout=0.2)
        .add_task("after", noop, dependencies=["slow"])
    )
    began = time.monotonic()
    results = run(wf)
    assert time.monotonic() - began < 0.8
    assert statuses(results) == {"slow": "timeout", "after": "skipped"}
    assert results["slow"].error is not None and "0.2" in results["slow"].error
    assert results["after"].reason == "dependency 'slow' failed"


def test_timeout_is_per_attempt_and_retried_as_timeout_error() -> None:
    attempts: list[float] = []

    async def slow() -> None:
        attempts.append(time.monotonic())
        await asyncio.sleep(0.5 if len(attempts) < 3 else 0.0)

    policy = RetryPolicy(max_attempts=3, initial_delay=0, retry_on=(TimeoutError,))
    wf = Workflow("w").add_task("a", slow, timeout=0.2, retry_policy=policy)
    result = run(wf)["a"]
    # Two timed-out attempts and a quick third: each had its own 0.2 s.
    assert result.status is TaskStatus.COMPLETED
    assert result.attempts == 3
    assert 0.35 < result.duration < 1.0


def test_timeout_not_retried_when_retry_on_excludes_it() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0, retry_on=(ValueError,))
    wf = Workflow("w").add_task("a", sleeper(1), timeout=0.1, retry_policy=policy)
    result = run(wf)["a"]
    assert result.status is TaskStatus.TIMEOUT
    assert result.attempts == 1


def test_sync_action_that_times_out_is_reported_at_once() -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> None:
        release.wait(10)
        finished.set()

    wf = (
        Workflow("w")
        .add_task("stuck", stuck, timeout=0.2)
        .add_task("after", noop, dependencies=["stuck"])
    )
    began = time.monotonic()
    try:
        results = run(wf)
        elapsed = time.monotonic() - began
        still_running = not finished.is_set()
    finally:
        release.set()
    assert elapsed < 1.0
    assert still_running
    assert statuses(results) == {"stuck": "timeout", "after": "skipped"}
    assert finished.wait(5)  # the thread ran on in the background, then ended


def test_timed_out_sync_action_does_not_hold_back_unrelated_task() -> None:
    release = threading.Event()
    ran: list[str] = []
    wf = (
        Workflow("w", max_concurrency=1)
        .add_task("stuck", lambda: release.wait(10), timeout=0.2)
        .add_task("free", lambda: ran.append("free"), timeout=0.5)
    )
    try:
        results = run(wf)
    finally:
        release.set()
    assert statuses(results) == {"stuck": "timeout", "free": "completed"}


def test_action_raising_timeout_error_is_a_failure_not_a_timeout() -> None:
    def raises() -> None:
        raise TimeoutError("the server said so")

    result = run(Workflow("w").add_task("a", raises, timeout=5))["a"]
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and "the server said so" in result.error


def test_workflow_timeout_is_enforced_while_a_task_runs() -> None:
    wf = (
        Workflow("w", timeout=0.3)
        .add_task("long", sleeper(5))
        .add_task("quick", sleeper(0.01, "q"))
        .add_task("after_long", noop, dependencies=["long"])
    )
    began = time.monotonic()
    results = run(wf)
    assert time.monotonic() - began < 1.0
    assert results["quick"].status is TaskStatus.COMPLETED
    assert results["long"].status is TaskStatus.TIMEOUT
    assert "0.3" in (results["long"].reason or "")
    assert results["after_long"].status in (TaskStatus.SKIPPED, TaskStatus.CANCELLED)
    assert not results.succeeded


def test_workflow_timeout_with_a_sync_task_running() -> None:
    release = threading.Event()
    wf = Workflow("w", timeout=0.3).add_task("stuck", lambda: release.wait(10))
    began = time.monotonic()
    try:
        results = run(wf)
        elapsed = time.monotonic() - began
    finally:
        release.set()
    assert elapsed < 1.0
    assert statuses(results) == {"stuck": "timeout"}


def test_workflow_timeout_cancels_tasks_not_yet_started() -> None:
    called: list[str] = []
    wf = (
        Workflow("w", max_concurrency=1, timeout=0.3)
        .add_task("long", sleeper(5))
        .add_task("queued", lambda: called.append("queued"))
    )
    began = time.monotonic()
    results = run(wf)
    assert time.monotonic() - began < 1.0
    assert statuses(results) == {"long": "timeout", "queued": "cancelled"}
    assert called == []


# -- stop and events ------------------------------------------------------------------


def test_stop_skips_tasks_not_started_and_lets_running_ones_finish() -> None:
    wf = Workflow("w", max_concurrency=2)
    called: list[str] = []

    def stopper() -> str:
        wf.stop("stopped by the test")  # from a worker thread
        time.sleep(0.1)
        return "finished"

    wf.add_task("running", stopper)
    wf.add_task("also_running", sleeper(0.2, "also"))
    wf.add_task("queued", lambda: called.append("queued"))
    wf.add_task("dependent", lambda: called.append("dependent"), dependencies=["running"])
    results = run(wf)
    assert results["running"].status is TaskStatus.COMPLETED
    assert results["running"].value == "finished"
    assert results["also_running"].value == "also"
    for name in ("queued", "dependent"):
        assert results[name].status is TaskStatus.SKIPPED, name
        assert results[name].reason == "stopped by the test"
    assert called == []


def test_listener_events_come_in_order() -> None:
    events: list[WorkflowEvent] = []
    wf = (
        Workflow("w", listener=events.append)
        .add_task("a", sleeper(0.01, 1))
        .add_task("b", boom, dependencies=["a"])
        .add_task("c", noop, dependencies=["b"])
        .add_task("d", noop, condition=lambda r: False)
    )
    results = run(wf)
    kinds = [(e.kind, e.task) for e in events]
    final = {e.task: e for e in events if e.result is not None}
    assert {t: e.kind for t, e in final.items()} == {
        "a": "completed",
        "b": "failed",
        "c": "skipped",
        "d": "skipped",
    }
    assert len([e for e in events if e.result is not None]) == 4
    for name in ("a", "b"):
        assert kinds.index(("started", name)) < kinds.index((final[name].kind, name))
    assert kinds.index(("completed", "a")) < kinds.index(("started", "b"))
    assert ("started", "c") not in kinds
    assert ("started", "d") not in kinds
    assert all(final[name].result == results[name] for name in results)


def test_failure_at_the_head_of_a_long_chain() -> None:
    n = 5000
    wf = Workflow("chain").add_task("t0", boom)
    for i in range(1, n):
        wf.add_task(f"t{i}", noop, dependencies=[f"t{i - 1}"])
    results = run(wf, limit=30)
    assert results["t0"].status is TaskStatus.FAILED
    rest = [results[f"t{i}"] for i in range(1, n)]
    assert all(r.status is TaskStatus.SKIPPED for r in rest)
    assert {r.reason for r in rest} == {"dependency 't0' failed"}
    assert results.summary()["skipped"] == n - 1


# -- properties on random DAGs --------------------------------------------------------

PROPERTY = settings(max_examples=60, deadline=None)


@st.composite
def dags(draw: st.DrawFn, min_nodes: int = 1, max_nodes: int = 25) -> Graph:
    """``{task: dependencies}``; a task only depends on tasks with a lower index."""
    n = draw(st.integers(min_nodes, max_nodes))
    graph: Graph = {}
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=min(i, 4))) if i else set()
        graph[f"t{i}"] = [f"t{j}" for j in sorted(deps)]
    # Add tasks in a random order: scheduling must not depend on it.
    order = draw(st.permutations(list(graph)))
    return {name: graph[name] for name in order}


def build(graph: Graph, action_for: Callable[[str], Callable[..., Any]], **kw: Any) -> Workflow:
    wf = Workflow("prop", **kw)
    for name, deps in graph.items():
        wf.add_task(name, action_for(name), dependencies=deps)
    return wf


@PROPERTY
@given(graph=dags(), data=st.data())
def test_every_task_runs_once_after_its_dependencies(graph: Graph, data: st.DataObject) -> None:
    lock = threading.Lock()
    log: list[tuple[str, str]] = []
    async_names = data.draw(st.sets(st.sampled_from(sorted(graph))))

    def action_for(name: str) -> Callable[..., Any]:
        if name in async_names:

            async def coro() -> str:
                with lock:
                    log.append(("start", name))
                await asyncio.sleep(0)
                with lock:
                    log.append(("end", name))
                return name

            return coro

        def sync() -> str:
            with lock:
                log.append(("start", name))
            with lock:
                log.append(("end", name))
            return name

        return sync

    limit = data.draw(st.none() | st.integers(1, 4))
    results = run(build(graph, action_for, max_concurrency=limit))
    assert statuses(results) == dict.fromkeys(graph, "completed")
    assert {n: r.value for n, r in results.items()} == {n: n for n in graph}
    starts = [name for kind, name in log if kind == "start"]
    assert sorted(starts) == sorted(graph)
    position = {event: i for i, event in enumerate(log)}
    for name, deps in graph.items():
        for dep in deps:
            assert position[("end", dep)] < position[("start", name)], (dep, name)


@PROPERTY
@given(graph=dags(), limit=st.integers(1, 4), use_async=st.booleans())
def test_max_concurrency_is_never_exceeded(graph: Graph, limit: int, use_async: bool) -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1

    def action_for(name: str) -> Callable[..., Any]:
        if use_async:

            async def coro() -> None:
                enter()
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                leave()

            return coro

        def sync() -> None:
            enter()
            time.sleep(0.001)
            leave()

        return sync

    results = run(build(graph, action_for, max_concurrency=limit))
    assert set(statuses(results).values()) == {"completed"}
    assert 1 <= state["peak"] <= limit
    assert state["now"] == 0


@PROPERTY
@given(graph=dags(min_nodes=2), data=st.data())
def test_back_edge_makes_a_cycle_that_validate_reports(graph: Graph, data: st.DataObject) -> None:
    if not any(graph.values()):
        graph["t1"] = ["t0"]
    start = data.draw(st.sampled_from(sorted(n for n, deps in graph.items() if deps)))
    path = [start, data.draw(st.sampled_from(graph[start]))]
    while len(graph[path[-1]]) > 0 and data.draw(st.booleans()):
        path.append(data.draw(st.sampled_from(graph[path[-1]])))
    # The path goes down through dependencies; its end now depends on its start.
    graph = {**graph, path[-1]: [*graph[path[-1]], path[0]]}
    wf = build(graph, lambda name: noop)
    with pytest.raises(CycleError) as caught:
        wf.validate()
    cycle = caught.value.cycle
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in graph[a], (a, b, cycle)
    assert " -> ".join(cycle) in str(caught.value)


@PROPERTY
@given(graph=dags(), data=st.data())
def test_exactly_the_dependents_of_failures_are_skipped(graph: Graph, data: st.DataObject) -> None:
    failing = data.draw(st.sets(st.sampled_from(sorted(graph))))

    def action_for(name: str) -> Callable[..., Any]:
        return boom if name in failing else noop

    limit = data.draw(st.none() | st.integers(1, 4))
    results = run(build(graph, action_for, max_concurrency=limit))
    skipped = transitive_dependents(graph, failing)
    expected = {
        name: "skipped" if name in skipped else "failed" if name in failing else "completed"
        for name in graph
    }
    assert statuses(results) == expected
    for name in skipped:
        reason = results[name].reason or ""
        assert reason.startswith("dependency '") and reason.endswith("' failed"), reason
    assert results.succeeded == (not failing)


def test_a_failure_returned_as_a_value_is_retried_by_looking_at_it() -> None:
    """failed_if marks a returned value a failure; retry_if decides on the value, no raise."""
    returned = iter(["flaky", "broken", "fine"])
    events: list[WorkflowEvent] = []
    policy = RetryPolicy(max_attempts=5, initial_delay=0, retry_if=lambda v: v == "flaky")
    wf = Workflow("w", listener=events.append)
    wf.add_task("t", lambda: next(returned), retry_policy=policy, failed_if=lambda v: v != "fine")
    wf.add_task("after", noop, dependencies=["t"])
    results = wf.run_sync()
    # "broken" is a failure retry_if refuses: no third attempt, the value is kept.
    assert (results["t"].status, results["t"].value, results["t"].attempts) == (
        TaskStatus.FAILED,
        "broken",
        2,
    )
    assert results["after"].status is TaskStatus.SKIPPED
    assert [(e.kind, e.value) for e in events if e.kind == "retrying"] == [("retrying", "flaky")]


def test_a_listener_that_raises_ends_the_run_instead_of_hanging_it() -> None:
    ran: list[str] = []

    def listener(event: WorkflowEvent) -> None:
        if event.kind == "completed" and event.task == "a":
            raise RuntimeError("listener broke")

    wf = Workflow("w", listener=listener)
    wf.add_task("a", lambda: ran.append("a"))
    wf.add_task("b", lambda: ran.append("b"), dependencies=["a"])
    with pytest.raises(RuntimeError, match="listener broke"):
        asyncio.run(asyncio.wait_for(wf.run(), timeout=10))
    assert ran == ["a"], "a task started after the listener raised"


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_a_failed_if_that_raises_fails_its_task_and_the_run_goes_on(timeout: float | None) -> None:
    """Both ways a sync action runs: its attempts in a worker thread, or awaited with a deadline."""

    def judge(value: str) -> bool:
        raise ValueError(f"cannot judge {value}")

    wf = Workflow("w").add_task("t", lambda: "odd", failed_if=judge, timeout=timeout)
    wf.add_task("after", lambda: "ran", dependencies=["t"])
    results = run(wf)
    assert results["t"].status is TaskStatus.FAILED
    assert "cannot judge odd" in (results["t"].error or "")
    assert results["after"].status is TaskStatus.SKIPPED


async def _one_retry_later(delay: float) -> None:
    """Return once a retry delay of ``delay`` has run its course on this loop."""
    tries = itertools.count()

    def twice() -> None:
        if next(tries) == 0:
            raise RuntimeError("first try")

    policy = RetryPolicy(max_attempts=2, initial_delay=delay)
    probe = await Workflow("probe").add_task("t", twice, retry_policy=policy).run()
    assert probe["t"].status is TaskStatus.COMPLETED


@pytest.mark.parametrize("how", ["fail_fast", "workflow timeout", "caller cancels"])
def test_a_sync_task_ended_by_the_run_is_never_attempted_again(how: str) -> None:
    """Its retries wait on the run's loop, not in its thread: a run that ends them ends them."""
    calls: list[float] = []
    events: list[WorkflowEvent] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("boom")

    def bad() -> None:
        raise ValueError("ends the run")

    async def main() -> None:
        wf = Workflow(
            "w",
            fail_fast=how == "fail_fast",
            timeout=0.1 if how == "workflow timeout" else None,
            listener=events.append,
        )
        policy = RetryPolicy(max_attempts=5, initial_delay=0.2)
        wf.add_task("flaky", flaky, retry_policy=policy)
        if how == "fail_fast":
            wf.add_task("bad", bad)
        if how == "caller cancels":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(wf.run(), 0.1)
        else:
            results = await wf.run()
            assert results["flaky"].status in (TaskStatus.CANCELLED, TaskStatus.TIMEOUT)
        seen, told = len(calls), len(events)
        await _one_retry_later(0.3)  # the loop lives on, past the retry that was due
        assert (len(calls), events[told:]) == (seen, [])

    asyncio.run(main())


def test_tasks_waiting_out_a_retry_hold_no_thread() -> None:
    """Many tasks between attempts never keep a ready task from a worker thread."""

    def failing() -> None:
        raise RuntimeError("again later")

    policy = RetryPolicy(max_attempts=2, initial_delay=0.5)
    wf = Workflow("w")
    for n in range(70):  # more than the thread pool's cap
        wf.add_task(f"failing{n}", failing, retry_policy=policy)
    for n in range(4):
        wf.add_task(f"quick{n}", noop)
    wf.add_task("deadline", noop, timeout=0.4)
    results = run(wf)
    failed_at = min(r.end_time for name, r in results.items() if name.startswith("failing"))
    for name in (*(f"quick{n}" for n in range(4)), "deadline"):
        assert results[name].status is TaskStatus.COMPLETED, name
        assert results[name].end_time < failed_at, name
