"""The console: progress lines while a run goes, the final table, and plan tables.

Colour only on a TTY with ``NO_COLOR`` unset, unless asked; every path in the
form ``-k`` and ``config.yaml`` keys take (relative to the scripts directory).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from .reporting import (
    TAIL_LINES,
    Reporter,
    RunInfo,
    ScriptStarted,
    by_verdict,
    cache_line,
    memory_text,
    mermaid_label,
    name_text,
    tail,
    totals_line,
    verdict_note,
    visible,
    why_text,
)
from .results import ScriptResult, Status

__all__ = [
    "ConsoleReporter",
    "render_console_summary",
    "render_dry_run",
    "render_graph",
    "render_plan",
    "use_color",
]


def _display_path(result: ScriptResult) -> str:
    # One form in every output: the path relative to the scripts directory, the one
    # `-k` and config.yaml keys take.
    # A file name may hold control characters, and bytes that are not UTF-8.
    return name_text(result.path or result.script)


# -- console -----------------------------------------------------------------------------------


_COLORS = {
    Status.PASSED: "32",
    Status.FAILED: "31",
    Status.TIMEOUT: "33",
    Status.ERROR: "35",
    Status.SKIPPED: "36",
}


#: How the summary names what history says of a script (see :mod:`orchestrator.history`).
_VERDICT_LABELS = {
    "new failure": "new failures (passed last run)",
    "fixed": "fixed (failed last run)",
    "flaky": "flaky",
}


def use_color(stream: TextIO, requested: bool | None) -> bool:
    """Colour only on a TTY, with ``NO_COLOR`` unset, unless explicitly turned off."""
    if requested is False or os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _paint(status: Status, text: str, color: bool) -> str:
    return f"\x1b[{_COLORS[status]}m{text}\x1b[0m" if color else text


def render_console_summary(
    results: Sequence[ScriptResult],
    *,
    color: bool = False,
    verbosity: int = 0,
    wall_time: float | None = None,
    interrupted: bool = False,
) -> str:
    """The final table (script, status, exit code, time), failure tails, and the totals line.

    ``orch run`` prints it at the end and ``orch report`` prints it again from
    the saved run, so both show a run the same way.
    """
    out = io.StringIO()
    if verbosity >= 0 and results:
        from tabulate import tabulate  # about 13 ms to import: only when a table is shown

        rows = [
            [
                _display_path(r),
                _paint(r.status, r.status.value.upper(), color),
                "" if r.exit_code is None else r.exit_code,
                f"{r.execution_time or 0.0:.2f}s",
                memory_text(r.peak_memory_mb),
            ]
            for r in results
        ]
        out.write(
            tabulate(
                rows,
                headers=["Script", "Status", "Exit", "Time", "Mem"],
                tablefmt="simple",
                colalign=("left", "left", "right", "right", "right"),
            )
        )
        out.write("\n")
    for r in results:
        if r.ok:
            continue
        header = f"{r.status.value.upper()}: {_display_path(r)}"
        if r.error:
            header += f" ({visible(r.error)})"
        out.write("\n" + _paint(r.status, header, color) + "\n")
        lines = None if verbosity > 0 else TAIL_LINES
        streams = {"stderr": r.stderr, "stdout": r.stdout}
        for stream, captured in streams.items():
            text = tail(captured, lines)
            if text.strip():
                label = f"--- {stream}" + ("" if lines is None else f" (last {lines} lines)")
                out.write(f"{label} ---\n{visible(text)}")
        for stream, captured in streams.items():
            if (where := r.extra.get(f"{stream}_path")) and captured.strip():
                out.write(f"full {stream}: {where}\n")
    if verbosity >= 0:
        by_reason: dict[str, list[str]] = {}
        for r in results:
            if r.status is Status.SKIPPED:
                by_reason.setdefault(r.skip_reason or "", []).append(_display_path(r))
        shown = None if verbosity > 0 else 5
        for reason, paths in by_reason.items():
            listed = ", ".join(paths[:shown])
            if shown is not None and len(paths) > shown:
                listed += f" and {len(paths) - shown} more"
            out.write(f"\nskipped ({name_text(reason or 'no reason given')}): {listed}")
        if by_reason:
            out.write("\n")
    if verbosity >= 0:
        for verdict, found in by_verdict(results).items():
            named = found if verbosity > 0 else found[:5]
            listed = ", ".join(
                f"{_display_path(r)} ({name_text(verdict_note(r))})"
                if verdict == "flaky"
                else _display_path(r)
                for r in named
            )
            more = f" and {len(found) - len(named)} more" if len(found) > len(named) else ""
            out.write(f"\n{_VERDICT_LABELS[verdict]}: {listed}{more}")
    out.write("\n" + totals_line(results, wall_time) + "\n")
    if interrupted:
        out.write("interrupted: scripts still running were stopped\n")
    return out.getvalue()


class ConsoleReporter(Reporter):
    """Progress while the run goes, then the summary table.

    On a TTY a single status line is redrawn (done/total, running scripts,
    elapsed); otherwise one line is printed per finished script. Script output
    is never streamed, so parallel scripts cannot interleave.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        verbosity: int = 0,
        color: bool | None = None,
        live: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.verbosity = verbosity
        self.color = use_color(self.stream, color)
        self.live = self.stream.isatty() if live is None else live
        self.done = 0
        self.running: dict[str, str] = {}
        self.run: RunInfo | None = None
        self.began = time.monotonic()
        self._line_drawn = False
        self.closed = False  # the reader of the stream went away

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:
            # The reader left (`orch run | head -1`, a terminal that hung up): the console
            # stops, the run goes on, as `git log | head` does. What Python would flush at
            # exit goes nowhere.
            self.closed = True
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self.stream.fileno())
                os.close(null)

    def _clear(self) -> None:
        if self._line_drawn:
            self._write("\r\x1b[K")
            self._line_drawn = False

    def _draw(self) -> None:
        if not self.live or self.verbosity < 0 or self.run is None:
            return
        names = ", ".join(list(self.running.values())[:4])
        more = len(self.running) - 4
        if more > 0:
            names += f" +{more}"
        elapsed = time.monotonic() - self.began
        line = f"[{self.done}/{self.run.total}] {elapsed:.1f}s"
        if names:
            line += f" running: {names}"
        width = 120
        self._write("\r\x1b[K" + line[:width])
        self._line_drawn = True

    def run_started(self, run: RunInfo) -> None:
        self.run = run
        self.began = time.monotonic()
        if self.verbosity >= 0:
            for note in run.notes:
                self._write(name_text(note) + "\n")
        self._draw()

    def script_started(self, started: ScriptStarted) -> None:
        self.running[started.script] = name_text(started.name)
        self._draw()

    def script_finished(self, result: ScriptResult) -> None:
        self.done += 1
        self.running.pop(result.script, None)
        if self.live:
            self._draw()
        elif self.verbosity >= 0 and self.run is not None:
            status = _paint(result.status, result.status.value.upper(), self.color)
            why = why_text(result.why)
            because = f" ({name_text(why)})" if why else ""
            self._write(
                f"[{self.done}/{self.run.total}] {status} {name_text(result.path)} "
                f"{result.execution_time or 0.0:.2f}s{because}\n"
            )

    def script_retrying(self, result: ScriptResult, attempt: int, delay: float) -> None:
        if self.live:
            self._draw()
        elif self.verbosity >= 0 and self.run is not None:
            self._write(
                f"[retry] {name_text(result.path)} {result.status} on attempt {attempt}; "
                f"trying again in {delay:g}s\n"
            )

    def tick(self) -> None:
        self._draw()

    def run_finished(self, run: RunInfo, results: Sequence[ScriptResult]) -> None:
        self._clear()
        if self.verbosity >= 0 and not self.live:
            self._write("\n")
        self._write(
            render_console_summary(
                results,
                color=self.color,
                verbosity=self.verbosity,
                wall_time=run.wall_time,
                interrupted=run.interrupted,
            )
        )
        cached = cache_line(run.cache)
        if cached is not None:
            self._write(f"{name_text(cached)}\n")
        if run.escaped and self.verbosity >= 0:
            self._write(
                f"escaped: {run.escaped} processes left by scripts that ran at once "
                "(which one is not known) were stopped\n"
            )
        if run.run_dir is not None and self.verbosity >= 0:
            # After a write error, what is there may be partial: the error line follows.
            broken = " (not all written: orch could not write its files)" if run.unwritable else ""
            self._write(f"reports: {name_text(str(run.run_dir))}{broken}\n")
            page = run.run_dir / "report.html"
            if page.is_file():
                self._write(f"report.html: {name_text(str(page))}\n")


# -- plans -------------------------------------------------------------------------------------


def _settings_rows(plan: Any, envs: Mapping[str, str]) -> list[list[Any]]:
    rows = []
    for job in plan.jobs:
        s = job.settings
        skip = (s.skip_reason or "yes") if s.skip else ""
        if job.rel in plan.fresh:
            skip = "up-to-date"
        args = " ".join(s.args)
        row = [name_text(job.rel), f"{s.timeout:g}", name_text(args), name_text(skip)]
        rows.append([*row, name_text(envs.get(job.rel, ""))] if envs else row)
    return rows


def render_plan(plan: Any, header: str = "Script", envs: Mapping[str, str] | None = None) -> str:
    """``orch list``'s table: each script with its timeout, args and why it is skipped.

    ``envs`` (``{path: environment}``) adds the isolated environment each runs in.
    """
    from tabulate import tabulate

    headers = [header, "Timeout", "Args", "Skip", *(["Environment"] if envs else [])]
    table = tabulate(_settings_rows(plan, envs or {}), headers=headers)
    return str(plan.masker.mask(table)) + "\n"  # args may carry a secret


def render_dry_run(plan: Any, envs: Mapping[str, str] | None = None) -> str:
    """``--dry-run``: the plan's table, its notes, and how many scripts would run."""
    notes = (name_text(plan.masker.mask(note)) + "\n" for note in plan.notes)
    lines = [render_plan(plan, "Would run", envs), *notes]
    count = len(plan.jobs) - len(plan.fresh)
    lines.append(f"\n{count} of {len(plan.jobs)} scripts would run; nothing was run (--dry-run)\n")
    return "".join(lines)


def render_graph(
    plan: Any, fmt: str = "text", expected: Mapping[str, float] | None = None, jobs: int = 1
) -> str:
    """The start order with dependencies, as text or as a Mermaid flowchart.

    An order inferred from traces (:attr:`Plan.after`) is marked ``(inferred)``,
    or drawn dotted.

    With ``jobs`` above 1 and ``expected`` durations (from the run record), the
    order is the one ``orch run -j N`` starts them in, longest remaining chain
    first, and the text ends with the estimated makespan; otherwise it is
    :meth:`Plan.start_order`, the order of ``orch run -j1``.
    """
    from .dag import remaining_chains, schedule

    graph = plan.order()
    declared = plan.graph()
    # A skipped script is no step: it is shown as skipped, and costs nothing.
    skipped = {job.rel: job.settings.skip_reason or "yes" for job in plan.jobs if job.settings.skip}
    cost = {**(expected or {}), **dict.fromkeys(skipped, 0.0)} if expected else {}
    priority = remaining_chains(graph, cost) if jobs > 1 and cost else None
    order, makespan = schedule(graph, cost, jobs, priority)
    if fmt == "mermaid":
        ids = {rel: f"s{i}" for i, rel in enumerate(order)}
        lines = ["flowchart TD"]
        # A label is a quoted string: a quote or a newline in a name must not end it.
        lines += [
            f'    {ids[rel]}["{mermaid_label(rel)}{" (skipped)" if rel in skipped else ""}"]'
            for rel in order
        ]
        # An inferred order (one script reads what another writes) is a dotted arrow.
        lines += [
            f"    {ids[dep]} {'-->' if dep in declared[rel] else '-.->'} {ids[rel]}"
            for rel in order
            for dep in graph[rel]
        ]
        return "\n".join(lines) + "\n"
    width = len(str(len(order)))
    lines = []
    for i, rel in enumerate(order, 1):
        inferred = [d for d in graph[rel] if d not in declared[rel]]
        waits = [*map(name_text, declared[rel]), *(f"{name_text(d)} (inferred)" for d in inferred)]
        after = f"  (after {', '.join(waits)})" if waits else ""
        if rel in skipped:
            after += f"  (skipped: {name_text(skipped[rel])})"
        lines.append(f"{i:>{width}}. {name_text(rel)}{after}")
    if cost:
        lines.append(
            f"\nestimated makespan at -j{jobs}: {makespan:.2f} s (last durations from the "
            "run record; a script without one counts as their median, or 1 s)"
        )
    return "\n".join(lines) + "\n"
