"""Dependency graphs: the one cycle check and the one ready queue.

A graph is ``{node: its dependencies}`` in declaration order. :class:`ReadyQueue`
is what :class:`~orchestrator.workflow.Workflow` schedules with and what
``orch run --graph`` prints the start order from, so the two cannot disagree:
of the nodes whose dependencies are done, the one of highest priority goes
next (the longest remaining chain, when a run knows its scripts' durations),
then the first declared.

Kept free of asyncio and threads so that commands that only plan (``orch
list``, ``orch deps``) do not pay for importing them.
"""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Iterable, Mapping

from .errors import CycleError

__all__ = [
    "ReadyQueue",
    "check_acyclic",
    "critical_path",
    "remaining_chains",
    "schedule",
    "start_order",
]


def check_acyclic(graph: Mapping[str, Iterable[str]], source: str = "", hint: str = "") -> None:
    """Raise :class:`CycleError` if ``{node: dependencies}`` has a cycle.

    The error's path reads ``a -> b -> a``, where ``->`` means "depends on".
    """
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the one that depends on it.
        raise CycleError(list(reversed(exc.args[1])), source, hint) from None


def _dependents(graph: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """``{node: the nodes that depend on it}``, in declaration order."""
    found: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            found[dep].append(node)
    return found


class ReadyQueue:
    """The nodes of an acyclic graph whose dependencies are all done.

    Like :class:`graphlib.TopologicalSorter`'s ``get_ready``/``done``, but one
    node at a time: by ``priority`` (highest first, 0 when not given), then in
    declaration order, which is what makes a run deterministic. Every
    dependency must be a node of the graph.
    """

    def __init__(
        self, graph: Mapping[str, Iterable[str]], priority: Mapping[str, float] | None = None
    ) -> None:
        graph = {node: list(deps) for node, deps in graph.items()}  # read twice below
        rank = priority or {}
        self._order = {node: (-rank.get(node, 0.0), i) for i, node in enumerate(graph)}
        self._waiting = {node: len(list(deps)) for node, deps in graph.items()}
        self._dependents = _dependents(graph)
        self._ready = [(self._order[n], n) for n, count in self._waiting.items() if count == 0]
        heapq.heapify(self._ready)

    def __bool__(self) -> bool:
        return bool(self._ready)

    def pop(self) -> str:
        """The next ready node (first declared first); IndexError when none is ready."""
        return heapq.heappop(self._ready)[1]

    def done(self, node: str) -> None:
        """``node`` succeeded: the dependents it was the last to wait for become ready."""
        for dependent in self._dependents[node]:
            self.release(node, dependent)

    def release(self, node: str, dependent: str) -> None:
        """``dependent`` waits for ``node`` no more (of ``node``'s dependents, that one only)."""
        self._waiting[dependent] -= 1
        if self._waiting[dependent] == 0:
            heapq.heappush(self._ready, (self._order[dependent], dependent))

    def dependents(self, node: str) -> list[str]:
        """The nodes that depend on ``node`` directly, in declaration order."""
        return self._dependents[node]

    def drain(self) -> list[str]:
        """Take every ready node, in the order :meth:`pop` would give them."""
        nodes = [node for _, node in sorted(self._ready)]
        self._ready.clear()
        return nodes


def start_order(
    graph: Mapping[str, Iterable[str]], priority: Mapping[str, float] | None = None
) -> list[str]:
    """The order one worker starts the nodes in when every one succeeds."""
    queue = ReadyQueue(graph, priority)
    order: list[str] = []
    while queue:
        node = queue.pop()
        order.append(node)
        queue.done(node)
    return order


def remaining_chains(
    graph: Mapping[str, Iterable[str]], cost: Mapping[str, float]
) -> dict[str, float]:
    """Each node's cost plus the longest chain of costs of the nodes that depend on it.

    The critical-path rank of list scheduling: starting the longest remaining
    chain first lets a parallel run end as early as its work allows.
    """
    dependents = _dependents(graph)
    chain: dict[str, float] = {}
    # Dependents before what they depend on: the reverse of a topological order.
    for node in reversed(list(graphlib.TopologicalSorter(graph).static_order())):
        after = max((chain[d] for d in dependents[node]), default=0.0)
        chain[node] = cost.get(node, 0.0) + after
    return chain


def schedule(
    graph: Mapping[str, Iterable[str]],
    cost: Mapping[str, float],
    workers: int,
    priority: Mapping[str, float] | None = None,
) -> tuple[list[str], float]:
    """Simulate ``workers`` slots taking ready nodes from a :class:`ReadyQueue`.

    Returns the start order and the makespan, with ``cost`` as each node's duration.
    """
    queue = ReadyQueue(graph, priority)
    running: list[tuple[float, int, str]] = []  # (ends at, tie-break, node)
    order: list[str] = []
    now = 0.0
    while queue or running:
        while queue and len(running) < max(1, workers):
            node = queue.pop()
            order.append(node)
            heapq.heappush(running, (now + cost.get(node, 0.0), len(order), node))
        now, _, node = heapq.heappop(running)
        queue.done(node)
    return order, now


def critical_path(graph: Mapping[str, Iterable[str]], cost: Mapping[str, float]) -> list[str]:
    """The chain of dependencies with the largest summed cost, first node first.

    Without dependencies it is the single costliest node; an empty graph gives [].
    """
    chains = remaining_chains(graph, cost)
    if not chains:
        return []
    dependents = _dependents(graph)
    order = {node: i for i, node in enumerate(graph)}
    node = max(chains, key=lambda n: (chains[n], -order[n]))
    path = [node]
    while dependents[node]:
        node = max(dependents[node], key=lambda n: (chains[n], -order[n]))
        path.append(node)
    return path
