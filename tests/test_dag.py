"""The one ready queue and cycle check that Workflow and ``--graph`` share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.dag import ReadyQueue, check_acyclic, start_order
from orchestrator.errors import CycleError
from orchestrator.workflow import Workflow, WorkflowEvent

Graph = dict[str, list[str]]


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    """Acyclic graphs in a random declaration order: each node may depend on any other."""
    n = draw(st.integers(min_value=0, max_value=12))
    rank = draw(st.permutations(range(n)))  # a hidden topological order
    graph: Graph = {}
    for node in draw(st.permutations(range(n))):
        earlier = [m for m in range(n) if rank[m] < rank[node]]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        graph[f"t{node}"] = [f"t{d}" for d in deps]
    return graph


@settings(max_examples=60, deadline=None)
@given(graph=dags())
def test_start_order_is_the_order_a_one_worker_workflow_starts_tasks(graph: Graph) -> None:
    """`orch run --graph` prints what `-j1` does: both read the same queue."""
    started: list[str] = []

    def listen(event: WorkflowEvent) -> None:
        if event.kind == "started":
            started.append(event.task)

    wf = Workflow("w", max_concurrency=1, listener=listen)
    for name, deps in graph.items():
        wf.add_task(name, lambda: None, dependencies=deps)
    wf.run_sync()
    assert start_order(graph) == started


def test_ready_queue_gives_the_first_declared_ready_node_and_drains_in_order() -> None:
    queue = ReadyQueue({"b": [], "a": ["b"], "c": [], "d": ["b", "c"]})
    assert queue.pop() == "b"  # declared before c
    queue.done("b")  # a becomes ready; d still waits for c
    assert queue.dependents("b") == ["a", "d"]
    assert queue.drain() == ["a", "c"]
    assert not queue
    queue.done("c")
    assert queue.pop() == "d"


def test_check_acyclic() -> None:
    check_acyclic({"a": ["b"], "b": [], "c": ["a", "b"]})
    with pytest.raises(CycleError) as caught:
        check_acyclic({"a": ["a"]}, "cfg.yaml", "remove it")
    assert caught.value.cycle == ["a", "a"]
    assert str(caught.value) == "cfg.yaml: dependency cycle: a -> a; remove it"


def test_remaining_chains_and_a_schedule_that_starts_them_first() -> None:
    from orchestrator.dag import remaining_chains, schedule

    graph = {"a": [], "b": [], "long": [], "after": ["long"]}
    cost = {"a": 1.0, "b": 1.0, "long": 3.0, "after": 2.0}
    chains = remaining_chains(graph, cost)
    assert chains == {"a": 1.0, "b": 1.0, "long": 5.0, "after": 2.0}
    fifo_order, fifo = schedule(graph, cost, 2)
    order, makespan = schedule(graph, cost, 2, chains)
    assert fifo_order[:2] == ["a", "b"] and fifo == 6.0
    assert order[0] == "long" and makespan == 5.0
