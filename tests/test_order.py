"""Reads and writes order the work: a script starts after the scripts that write what it reads."""

from __future__ import annotations

import re

from conftest import Project

from orchestrator.workflow import TaskStatus, Workflow


def test_a_task_ordered_after_another_starts_after_it_whatever_its_outcome() -> None:
    order: list[str] = []

    def fail() -> None:
        order.append("writer")
        raise RuntimeError("the writer broke")

    workflow = Workflow("w", max_concurrency=2)
    workflow.add_task("reader", lambda: order.append("reader"), after=["writer"])
    workflow.add_task("needs", lambda: order.append("needs"), dependencies=["writer"])
    workflow.add_task("writer", fail)
    results = workflow.run_sync()
    assert order == ["writer", "reader"]
    assert results["reader"].status is TaskStatus.COMPLETED, "an order, not a need"
    assert results["needs"].status is TaskStatus.SKIPPED


def pipeline(project: Project, content: str) -> None:
    # Named so that, by name alone, the reader would start first.
    project.script("a_reader.py", "assert open('out.txt').read() == 'ok', 'broken input'\n")
    project.script("b_writer.py", f"open('out.txt', 'w').write({content!r})\n")


def test_a_reader_is_checked_after_its_writer_ran_and_reruns_on_what_it_wrote(
    project: Project,
) -> None:
    (project.root / "out.txt").write_text("ok")
    pipeline(project, "ok")
    first = project.orch("run", "scripts", "--no-color")
    assert first.returncode == 0, first.stdout + first.stderr

    graph = project.orch("list", "--graph", "scripts")
    assert "a_reader.py  (after b_writer.py (inferred))" in graph.stdout, graph.stdout
    assert graph.stdout.index("b_writer.py") < graph.stdout.index("a_reader.py")

    same = project.orch("run", "--changed", "-j2", "scripts", "--no-color")
    assert "PASSED" not in same.stdout, "nothing changed: " + same.stdout

    pipeline(project, "broken")
    run = project.orch("run", "--changed", "-j2", "scripts", "--no-color")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = re.findall(r"^\[\d/2\] (\w+) (\S+) \S+ \((.*)\)$", run.stdout, re.M)
    assert lines == [
        ("PASSED", "b_writer.py", "scripts/b_writer.py changed"),
        ("FAILED", "a_reader.py", "out.txt changed"),
    ], run.stdout


def test_a_writer_s_failure_does_not_skip_its_reader(project: Project) -> None:
    (project.root / "out.txt").write_text("ok")
    pipeline(project, "ok")
    assert project.orch("run", "scripts").returncode == 0
    project.script("b_writer.py", "open('out.txt', 'w').write('ok')\nraise SystemExit(1)\n")
    run = project.orch("run", "scripts", "--no-color")
    assert re.search(r"^\[1/2\] FAILED b_writer.py", run.stdout, re.M), run.stdout
    assert re.search(r"^\[2/2\] PASSED a_reader.py", run.stdout, re.M), run.stdout


def test_an_inferred_cycle_is_one_line_and_broken_never_a_hang(project: Project) -> None:
    for name in ("x", "y"):
        (project.root / name).write_text("0")
    project.script("a.py", "open('x').read()\nopen('y', 'w').write('1')\n")
    project.script("b.py", "open('y').read()\nopen('x', 'w').write('1')\n")
    assert project.orch("run", "scripts").returncode == 0
    run = project.orch("run", "scripts", "--no-color", timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    notes = [line for line in run.stdout.splitlines() if line.startswith("inferred order")]
    assert len(notes) == 1 and "cycle is broken" in notes[0], run.stdout
    graph = project.orch("list", "--graph", "scripts", timeout=30)
    assert graph.returncode == 0 and graph.stderr.count("inferred order") == 1, graph.stderr
