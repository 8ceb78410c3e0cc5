"""Scheduling cost per task of the workflow engine, next to a bare graphlib loop and dask.

Run: ``python benchmarks/dag.py [--layers 100] [--width 100] [--repeat 3]``

Builds a layered DAG (``layers`` x ``width`` no-op tasks, each depending on 2
tasks of the layer before) and times, in one run, the median of ``--repeat``:

* ``Workflow.run_sync()`` with async no-op actions (target <= 20 us per task);
* ``Workflow.run_sync()`` with sync no-op actions (target <= 60 us per task);
* a bare ``graphlib.TopologicalSorter`` loop calling each no-op in turn;
* ``dask.get`` with the threaded scheduler, if dask is installed.
"""

from __future__ import annotations

import argparse
import graphlib
import statistics
import time
from collections.abc import Callable

from orchestrator.workflow import Workflow


def _deps(layer: int, i: int, width: int) -> list[str]:
    if layer == 0:
        return []
    return [f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % width}"]


def _noop() -> None:
    return None


async def _async_noop() -> None:
    return None


def workflow(layers: int, width: int, action: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        wf = Workflow("bench", max_concurrency=None)
        for layer in range(layers):
            for i in range(width):
                wf.add_task(f"t{layer}_{i}", action, _deps(layer, i, width))
        results = wf.run_sync()
        assert results.succeeded

    return run


def bare_graphlib(layers: int, width: int) -> Callable[[], None]:
    def run() -> None:
        graph = {
            f"t{layer}_{i}": _deps(layer, i, width) for layer in range(layers) for i in range(width)
        }
        sorter = graphlib.TopologicalSorter(graph)
        sorter.prepare()
        while sorter.is_active():
            for node in sorter.get_ready():
                _noop()
                sorter.done(node)

    return run


def dask_threaded(layers: int, width: int) -> Callable[[], None] | None:
    try:
        import dask.threaded
    except ImportError:
        return None

    def run() -> None:
        graph: dict[str, object] = {}
        for layer in range(layers):
            for i in range(width):
                graph[f"t{layer}_{i}"] = (lambda *_: None, *_deps(layer, i, width))
        dask.threaded.get(graph, list(graph))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.layers * args.width
    cases: dict[str, Callable[[], None] | None] = {
        "bare graphlib loop": bare_graphlib(args.layers, args.width),
        "Workflow, async no-ops": workflow(args.layers, args.width, _async_noop),
        "Workflow, sync no-ops": workflow(args.layers, args.width, _noop),
        "dask threaded get": dask_threaded(args.layers, args.width),
    }
    times: dict[str, list[float]] = {name: [] for name, fn in cases.items() if fn}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            if fn is None:
                continue
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    per_task = {name: statistics.median(v) / n * 1e6 for name, v in times.items()}
    base = per_task["bare graphlib loop"]
    targets = {"Workflow, async no-ops": 20.0, "Workflow, sync no-ops": 60.0}
    print(f"{n} tasks ({args.layers} layers x {args.width}), median of {args.repeat}")
    print(f"{'case':<26} {'us/task':>9} {'vs graphlib':>12} {'target':>8}")
    for name, value in per_task.items():
        target = targets.get(name)
        verdict = "" if target is None else ("ok" if value <= target else "MISSED")
        shown = f"{target:.0f}" if target else "-"
        print(f"{name:<26} {value:9.1f} {value / base:11.1f}x {shown:>8}  {verdict}")
    if "dask threaded get" not in per_task:
        print("(dask not installed: pip install dask to compare)")


if __name__ == "__main__":
    main()
