"""Turn run events and results into output: console progress, JSON logs, Markdown, JUnit.

The execution engine never prints. It calls the :class:`Reporter` methods, in
the main thread, in this order::

    run_started -> (script_started | script_finished | tick)* -> run_finished

Each output is a reporter; several listen at once. A new format is a new
class, not a branch in the engine. The file writers are plain functions
(:func:`save_log`, :func:`generate_report`) so that Python callers can use
them on results they got some other way.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ._files import atomic_write_text
from .errors import OrchestratorError
from .project import Project
from .results import NOT_OK, STATUSES, exit_code_for

__all__ = [
    "STATUSES",
    "ConsoleReporter",
    "FileReporter",
    "Reporter",
    "RunInfo",
    "generate_report",
    "load_run",
    "render_console_summary",
    "save_log",
    "summarize",
]

logger = logging.getLogger("orchestrator")

TAIL_LINES = 20


@dataclass
class RunInfo:
    """What reporters know about the run as a whole."""

    run_id: str
    project: Project
    total: int
    run_dir: Path | None = None
    command: tuple[str, ...] = ()
    start_time: str = ""
    end_time: str = ""
    wall_time: float = 0.0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


class Reporter:
    """Receives run events; every method is optional."""

    def run_started(self, run: RunInfo) -> None:
        """The run is about to start its first script."""

    def script_started(self, result_stub: Mapping[str, Any]) -> None:
        """A script started; ``result_stub`` has ``script``, ``path`` and ``name``."""

    def script_retrying(self, result: Mapping[str, Any], attempt: int, delay: float) -> None:
        """Attempt ``attempt`` of a script ended with ``result``; another follows in ``delay`` s."""

    def script_finished(self, result: Mapping[str, Any]) -> None:
        """A script has its final result (including skipped ones)."""

    def tick(self) -> None:
        """Called a few times a second while scripts run."""

    def run_finished(self, run: RunInfo, results: Sequence[Mapping[str, Any]]) -> None:
        """Every script has a result, in discovery order."""


# -- summaries -----------------------------------------------------------------------------


def summarize(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals by status (every status present, zero included) and per subdirectory."""
    results = list(results)
    totals = {status: 0 for status in STATUSES}
    per_dir: dict[str, dict[str, int]] = {}
    for result in results:
        totals[result["status"]] += 1
        counts = per_dir.setdefault(result["subdirectory"], {s: 0 for s in STATUSES})
        counts[result["status"]] += 1
    for counts in per_dir.values():
        counts["total"] = sum(counts[s] for s in STATUSES)
    return {
        "total": len(results),
        "totals": totals,
        "subdirectories": dict(sorted(per_dir.items())),
        "total_time": round(sum(r.get("execution_time") or 0.0 for r in results), 6),
    }


def totals_line(results: Sequence[Mapping[str, Any]], wall_time: float | None = None) -> str:
    """``3 passed, 1 failed in 2.31 s`` (zero counts left out)."""
    summary = summarize(results)
    parts = [f"{n} {status}" for status, n in summary["totals"].items() if n]
    text = ", ".join(parts) or "no scripts"
    text += f" in {summary['total_time']:.2f} s"
    if wall_time is not None:
        text += f" (wall {wall_time:.2f} s)"
    return text


def _tail(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


def _display_path(result: Mapping[str, Any]) -> str:
    # One form in every output: the path relative to the scripts directory, the one
    # `-k` and config.yaml keys take.
    return str(result.get("path") or result["script"])


# -- console -----------------------------------------------------------------------------------

_COLORS = {"passed": "32", "failed": "31", "timeout": "33", "error": "35", "skipped": "36"}


def use_color(stream: TextIO, requested: bool | None) -> bool:
    """Colour only on a TTY, with ``NO_COLOR`` unset, unless explicitly turned off."""
    if requested is False or os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _paint(status: str, text: str, color: bool) -> str:
    return f"\x1b[{_COLORS[status]}m{text}\x1b[0m" if color and status in _COLORS else text


def render_console_summary(
    results: Sequence[Mapping[str, Any]],
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
    from tabulate import tabulate

    out = io.StringIO()
    if verbosity >= 0 and results:
        rows = [
            [
                _display_path(r),
                _paint(r["status"], r["status"].upper(), color),
                "" if r.get("exit_code") is None else r["exit_code"],
                f"{r.get('execution_time') or 0.0:.2f}s",
            ]
            for r in results
        ]
        out.write(
            tabulate(
                rows,
                headers=["Script", "Status", "Exit", "Time"],
                tablefmt="simple",
                colalign=("left", "left", "right", "right"),
            )
        )
        out.write("\n")
    for r in results:
        if r["status"] not in NOT_OK:
            continue
        header = f"{r['status'].upper()}: {_display_path(r)}"
        if r.get("error"):
            header += f" ({r['error']})"
        out.write("\n" + _paint(r["status"], header, color) + "\n")
        lines = None if verbosity > 0 else TAIL_LINES
        for stream in ("stderr", "stdout"):
            text = _tail(r.get(stream) or "", lines)
            if text.strip():
                label = f"--- {stream}" + ("" if lines is None else f" (last {lines} lines)")
                out.write(f"{label} ---\n{text}")
        for stream in ("stderr", "stdout"):
            if r.get(f"{stream}_path") and (r.get(stream) or "").strip():
                out.write(f"full {stream}: {r[f'{stream}_path']}\n")
    if verbosity >= 0:
        by_reason: dict[str, list[str]] = {}
        for r in results:
            if r["status"] == "skipped":
                by_reason.setdefault(r.get("skip_reason") or "", []).append(_display_path(r))
        shown = None if verbosity > 0 else 5
        for reason, paths in by_reason.items():
            listed = ", ".join(paths[:shown])
            if shown is not None and len(paths) > shown:
                listed += f" and {len(paths) - shown} more"
            out.write(f"\nskipped ({reason or 'no reason given'}): {listed}")
        if by_reason:
            out.write("\n")
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

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

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
                self._write(note + "\n")
        self._draw()

    def script_started(self, result_stub: Mapping[str, Any]) -> None:
        self.running[result_stub["script"]] = result_stub["name"]
        self._draw()

    def script_finished(self, result: Mapping[str, Any]) -> None:
        self.done += 1
        self.running.pop(result["script"], None)
        if self.live:
            self._draw()
        elif self.verbosity >= 0 and self.run is not None:
            path = _display_path(result)
            status = _paint(result["status"], result["status"].upper(), self.color)
            self._write(
                f"[{self.done}/{self.run.total}] {status} {path} "
                f"{result.get('execution_time') or 0.0:.2f}s\n"
            )

    def script_retrying(self, result: Mapping[str, Any], attempt: int, delay: float) -> None:
        if self.live:
            self._draw()
        elif self.verbosity >= 0 and self.run is not None:
            path = _display_path(result)
            self._write(
                f"[retry] {path} {result['status']} on attempt {attempt}; "
                f"trying again in {delay:g}s\n"
            )

    def tick(self) -> None:
        self._draw()

    def run_finished(self, run: RunInfo, results: Sequence[Mapping[str, Any]]) -> None:
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
        if run.run_dir is not None and self.verbosity >= 0:
            self._write(f"reports: {run.run_dir}\n")


# -- files -------------------------------------------------------------------------------------


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def save_log(
    result: Mapping[str, Any],
    log_dir: str | os.PathLike[str],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write one result as ``<log_dir>/<path>.json`` atomically and return the file's path.

    ``path`` is the script's path relative to the scripts directory, so the
    logs mirror the scripts tree. ``settings`` are stored beside the result.
    """
    rel = str(result.get("path") or result["name"])
    target = Path(log_dir) / f"{rel}.json"
    record = dict(result)
    if settings is not None:
        record["settings"] = dict(settings)
    atomic_write_text(target, _json(record), durable=False)
    return target


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown report: totals, all scripts, slowest 10, per subdirectory, failures."""
    from tabulate import tabulate

    out = io.StringIO()
    out.write(f"# Orchestrator run {summary['run_id']}\n\n")
    totals = ", ".join(f"{n} {s}" for s, n in summary["totals"].items() if n) or "no scripts"
    out.write(
        f"**{totals}** in {summary['total_time']:.2f} s (wall {summary['wall_time']:.2f} s)"
        + (" - **interrupted**" if summary.get("interrupted") else "")
        + "\n\n"
    )
    for note in summary.get("notes", []):
        out.write(f"> {note}\n\n")

    def row(r: Mapping[str, Any]) -> list[Any]:
        return [
            f"`{_md_cell(r['path'])}`",
            r["status"],
            "" if r.get("exit_code") is None else r["exit_code"],
            f"{r.get('execution_time') or 0.0:.2f}",
            _md_cell(r.get("error") or r.get("skip_reason") or ""),
        ]

    headers = ["Script", "Status", "Exit", "Time (s)", "Note"]
    out.write("## Scripts\n\n")
    out.write(tabulate([row(r) for r in results], headers=headers, tablefmt="github"))
    out.write("\n\n## Slowest\n\n")
    slowest = sorted(results, key=lambda r: -(r.get("execution_time") or 0.0))[:10]
    out.write(tabulate([row(r)[:4] for r in slowest], headers=headers[:4], tablefmt="github"))
    out.write("\n\n## By subdirectory\n\n")
    out.write(
        tabulate(
            [
                [f"`{d}`", *(c[s] for s in STATUSES), c["total"]]
                for d, c in summary["subdirectories"].items()
            ],
            headers=["Subdirectory", *STATUSES, "total"],
            tablefmt="github",
        )
    )
    out.write("\n")
    failing = [r for r in results if r["status"] in NOT_OK]
    if failing:
        out.write("\n## Failures\n")
    for r in failing:
        out.write(f"\n### `{r['path']}`: {r['status']}\n\n")
        if r.get("error"):
            out.write(f"{_md_cell(r['error'])}\n\n")
        for stream in ("stderr", "stdout"):
            text = _tail(r.get(stream) or "", TAIL_LINES)
            if text.strip():
                fence = _fence(text)
                out.write(f"{stream} (last {TAIL_LINES} lines):\n\n{fence}text\n{text}")
                out.write(("" if text.endswith("\n") else "\n") + f"{fence}\n\n")
    flaky = [r for r in results if r.get("flaky")]
    if flaky:
        out.write("\n## Flaky\n\nPassed only after a retry:\n\n")
        for r in flaky:
            out.write(f"- `{r['path']}`: passed on attempt {r.get('attempts')}\n")
    skipped = [r for r in results if r["status"] == "skipped"]
    if skipped:
        out.write("\n## Skipped\n\n")
        for r in skipped:
            out.write(f"- `{r['path']}`: {_md_cell(r.get('skip_reason') or '')}\n")
    return out.getvalue()


_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str | None) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text or "")


def render_junit(summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> str:
    """JUnit XML: a testsuite per subdirectory, a testcase per script."""
    suites = ET.Element("testsuites", name="orchestrator")
    by_dir: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_dir.setdefault(r["subdirectory"], []).append(r)
    all_counts: Counter[str] = Counter()
    for directory, group in by_dir.items():
        counts = Counter(r["status"] for r in group)
        failures = counts["failed"] + counts["timeout"]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=directory,
            tests=str(len(group)),
            failures=str(failures),
            errors=str(counts["error"]),
            skipped=str(counts["skipped"]),
            time=f"{sum(r.get('execution_time') or 0.0 for r in group):.3f}",
            timestamp=str(group[0].get("start_time") or summary.get("start_time") or ""),
        )
        all_counts.update(counts)
        for r in group:
            case = ET.SubElement(
                suite,
                "testcase",
                name=str(r["path"]),
                classname=directory.replace("/", "."),
                time=f"{r.get('execution_time') or 0.0:.3f}",
            )
            message = _xml_text(r.get("error") or "")
            if r["status"] in ("failed", "timeout"):
                node = ET.SubElement(case, "failure", message=message, type=r["status"])
                node.text = _xml_text(_tail(r.get("stderr") or "", TAIL_LINES))
            elif r["status"] == "error":
                node = ET.SubElement(case, "error", message=message, type="error")
            elif r["status"] == "skipped":
                ET.SubElement(case, "skipped", message=_xml_text(r.get("skip_reason") or ""))
            if r.get("stdout"):
                ET.SubElement(case, "system-out").text = _xml_text(r["stdout"])
            if r.get("stderr"):
                ET.SubElement(case, "system-err").text = _xml_text(r["stderr"])
    suites.set("tests", str(len(results)))
    suites.set("failures", str(all_counts["failed"] + all_counts["timeout"]))
    suites.set("errors", str(all_counts["error"]))
    suites.set("skipped", str(all_counts["skipped"]))
    suites.set("time", f"{summary.get('wall_time', 0.0):.3f}")
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def generate_report(
    results: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    command: Sequence[str] = (),
    start_time: str = "",
    end_time: str = "",
    wall_time: float = 0.0,
    interrupted: bool = False,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``summary.json``, ``report.md`` and ``junit.xml`` into ``output_dir``, atomically.

    When ``GITHUB_STEP_SUMMARY`` is set, the Markdown is appended to that file.
    Returns the written paths by kind (``summary``, ``markdown``, ``junit``).
    """
    out = Path(output_dir)
    summary: dict[str, Any] = {
        "run_id": run_id or out.name,
        "start_time": start_time,
        "end_time": end_time,
        "command": list(command),
        **summarize(results),
        "wall_time": round(wall_time, 6),
        "interrupted": interrupted,
        "exit_code": exit_code_for(results, interrupted),
        "notes": list(notes),
        "results": [{k: v for k, v in r.items() if k not in ("stdout", "stderr")} for r in results],
    }
    markdown = render_markdown(summary, results)
    paths = {
        "summary": out / "summary.json",
        "markdown": out / "report.md",
        "junit": out / "junit.xml",
    }
    atomic_write_text(paths["junit"], render_junit(summary, results))
    atomic_write_text(paths["markdown"], markdown)
    # summary.json last: its presence means the run directory is complete.
    atomic_write_text(paths["summary"], _json(summary))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        except OSError as exc:
            # The CI job summary is a courtesy; the run's own reports are written.
            logger.warning("cannot append to GITHUB_STEP_SUMMARY %s: %s", step_summary, exc)
    return paths


def point_latest(reports_dir: Path, run_dir: Path) -> None:
    """Make ``reports_dir/latest`` a relative symlink to ``run_dir``, replaced atomically."""
    link = reports_dir / "latest"
    tmp = reports_dir / f".latest.{os.getpid()}.{time.monotonic_ns()}"
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)


class FileReporter(Reporter):
    """Writes the run's reports and points ``latest`` at it.

    The per-script JSON logs are not its job: the engine writes each one in the
    worker that ran the script, the moment it ends.
    """

    def run_finished(self, run: RunInfo, results: Sequence[Mapping[str, Any]]) -> None:
        assert run.run_dir is not None
        start_time, wall_time, notes = run.start_time, run.wall_time, list(run.notes)
        merged = list(results)
        if (run.run_dir / "summary.json").is_file():
            # A run id given again (one nox session per environment): one report for all.
            summary, earlier = load_run(run.run_dir)
            now = {r["path"] for r in results}
            merged += [r for r in earlier if r["path"] not in now]
            merged.sort(key=lambda r: str(r["path"]).split("/"))
            start_time = summary.get("start_time") or start_time
            wall_time += float(summary.get("wall_time") or 0.0)
            notes = [n for n in summary.get("notes", []) if n not in notes] + notes
        generate_report(
            merged,
            run.run_dir,
            run_id=run.run_id,
            command=run.command,
            start_time=start_time,
            end_time=run.end_time,
            wall_time=wall_time,
            interrupted=run.interrupted,
            notes=notes,
        )
        point_latest(run.run_dir.parent, run.run_dir)


def load_run(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a saved run: ``(summary, results)``, results with their stdout/stderr tails.

    ``path`` is a run directory, or a reports directory (its ``latest`` run is used).
    """
    run_dir = Path(path)
    if not (run_dir / "summary.json").is_file() and (run_dir / "latest").exists():
        run_dir = run_dir / "latest"
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise OrchestratorError(f"{run_dir}: no summary.json here; pass a run directory")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        results = []
        for entry in summary["results"]:
            log = run_dir / "logs" / f"{entry['path']}.json"
            full = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else {}
            results.append(
                {**entry, "stdout": full.get("stdout", ""), "stderr": full.get("stderr", "")}
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OrchestratorError(
            f"{summary_path}: not a run summary orch can read ({type(exc).__name__}: {exc}); "
            "pass a run directory written by orch run"
        ) from None
    return summary, results


def _docstring(path: Path) -> str:
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as exc:
        return f"*(could not read the docstring: {type(exc).__name__})*"
    return ast.get_docstring(tree) or "*(no docstring)*"


def render_script_reference(jobs: Sequence[Any], scripts_dir: Path) -> str:
    """Markdown reference of the scripts: a section per subdirectory, then per script.

    Docstrings are read with :mod:`ast`; no script is imported or run.
    """
    out = io.StringIO()
    out.write(f"# Script reference: `{scripts_dir.name}/`\n\n")
    out.write(f"{len(jobs)} scripts. Generated by `orch docs`; do not edit by hand.\n")
    by_dir: dict[str, list[Any]] = {}
    for job in jobs:
        by_dir.setdefault(job.subdirectory, []).append(job)
    for directory, group in by_dir.items():
        title = "(top level)" if directory == "." else directory
        out.write(f"\n## {title}\n")
        for job in group:
            out.write(f"\n### `{job.rel}`\n\n{_docstring(job.path)}\n\n")
            s = job.settings
            facts = [f"timeout: {s['timeout']:g} s"]
            if s["args"]:
                facts.append("args: " + " ".join(f"`{a}`" for a in s["args"]))
            if s["env"]:
                facts.append("env: " + ", ".join(f"`{k}`" for k in s["env"]))
            if s["cwd"]:
                facts.append(f"cwd: `{s['cwd']}`")
            if s["allowed_exit_codes"] != [0]:
                facts.append(f"allowed exit codes: {s['allowed_exit_codes']}")
            if s["skip"]:
                facts.append(f"**skipped**: {s['skip_reason'] or 'by config'}")
            out.write("".join(f"- {fact}\n" for fact in facts))
    return out.getvalue()


def _settings_rows(plan: Any) -> list[list[Any]]:
    rows = []
    for job in plan.jobs:
        s = job.settings
        skip = (s["skip_reason"] or "yes") if s["skip"] else ""
        if job.rel in plan.fresh:
            skip = "up-to-date"
        rows.append([job.rel, f"{s['timeout']:g}", " ".join(s["args"]), skip])
    return rows


def render_plan(plan: Any, header: str = "Script") -> str:
    """``orch list``'s table: each script with its timeout, args and why it is skipped."""
    from tabulate import tabulate

    return tabulate(_settings_rows(plan), headers=[header, "Timeout", "Args", "Skip"]) + "\n"


def render_dry_run(plan: Any) -> str:
    """``--dry-run``: the plan's table, its notes, and how many scripts would run."""
    lines = [render_plan(plan, "Would run"), *(note + "\n" for note in plan.notes)]
    count = len(plan.jobs) - len(plan.fresh)
    lines.append(f"\n{count} of {len(plan.jobs)} scripts would run; nothing was run (--dry-run)\n")
    return "".join(lines)


def render_graph(plan: Any, fmt: str = "text") -> str:
    """The execution order with dependencies, as text or as a Mermaid flowchart.

    The order is :meth:`Plan.start_order`, the one ``orch run -j1`` starts them in.
    """
    graph = plan.graph()
    order: list[str] = plan.start_order()
    if fmt == "mermaid":
        ids = {rel: f"s{i}" for i, rel in enumerate(order)}
        lines = ["flowchart TD"]
        lines += [f'    {ids[rel]}["{rel}"]' for rel in order]
        lines += [f"    {ids[dep]} --> {ids[rel]}" for rel in order for dep in graph[rel]]
        return "\n".join(lines) + "\n"
    width = len(str(len(order)))
    lines = []
    for i, rel in enumerate(order, 1):
        after = f"  (after {', '.join(graph[rel])})" if graph[rel] else ""
        lines.append(f"{i:>{width}}. {rel}{after}")
    return "\n".join(lines) + "\n"
