"""The files of a run: one JSON log per script, ``report.md``, ``junit.xml``, ``summary.json``.

Each is written atomically, so a crash never leaves half a file, and escaped
at the writer (one helper per format), so no name or output breaks a Markdown
table, a code span or an XML element. The writers are plain functions
(:func:`save_log`, :func:`generate_report`) so that Python callers can use them
on results they got some other way; :class:`FileReporter` calls them for a run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._files import atomic_write_text
from .dag import critical_path
from .errors import ExitCode, OrchestratorError, WriteError
from .ledger import INCOMPLETE
from .pages import render_page
from .reporting import (
    MAX_WHY,
    TAIL_LINES,
    Reporter,
    RunInfo,
    by_verdict,
    cache_line,
    md_cell,
    md_code,
    md_fence,
    md_table,
    memory_text,
    name_text,
    plain,
    spans,
    summarize,
    tail,
    timeline,
    verdict_note,
    why_text,
)
from .results import STATUSES, ScriptResult, Status, exit_code_for

__all__ = [
    "FileReporter",
    "as_results",
    "generate_report",
    "load_run",
    "point_latest",
    "render_junit",
    "render_markdown",
    "save_log",
]

logger = logging.getLogger("orchestrator")


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def _json_rows(data: Mapping[str, Any], rows: str) -> str:
    """``data`` indented, but its list ``rows`` one compact item a line: Python's C encoder
    writes those (``indent`` turns it off), so 10,000 results take milliseconds."""
    head = {k: v for k, v in data.items() if k != rows}
    items = ",\n".join(
        "    " + json.dumps(item, ensure_ascii=False, default=str) for item in data[rows]
    )
    text = _json(head).rstrip()[:-1].rstrip()  # the indented object, still open
    joint = "," if head else ""
    return f'{text}{joint}\n  "{rows}": [\n{items}\n  ]\n}}\n' if items else _json(data)


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


#: The headings of the verdicts' lists (see :mod:`orchestrator.history`).
_VERDICT_TITLES = {
    "new failure": "New failures: passed on their last run, with other inputs",
    "fixed": "Fixed: failed on their last run, with other inputs",
    "flaky": "Flaky: the same inputs passed and failed",
}

#: The Markdown tables' alignment: script and status left, figures right, notes left.
_ALIGN = "llrrrrll"


def render_markdown(summary: Mapping[str, Any], results: Sequence[ScriptResult]) -> str:
    """The Markdown report: totals, all scripts, slowest 10, per subdirectory, failures."""
    out = io.StringIO()
    out.write(f"# Orchestrator run {summary['run_id']}\n\n")
    totals = ", ".join(f"{n} {s}" for s, n in summary["totals"].items() if n) or "no scripts"
    efficiency = summary.get("parallel_efficiency")
    jobs = summary.get("jobs") or 1
    out.write(
        f"**{totals}** in {summary['total_time']:.2f} s summed, "
        f"{summary['wall_time']:.2f} s wall"
        + (f", parallel efficiency {efficiency:.0%} at -j{jobs}" if efficiency is not None else "")
        + (" - **interrupted**" if summary.get("interrupted") else "")
        + "\n\n"
    )
    cached = cache_line(summary.get("cache"))
    if cached is not None:
        out.write(f"{md_cell(cached)}\n\n")
    # What history says comes first: it is what changed since the last run.
    for verdict, found in by_verdict(results).items():
        out.write(f"## {_VERDICT_TITLES[verdict]}\n\n")
        for r in found:
            out.write(f"- {md_code(r.path)}: {md_cell(verdict_note(r))}\n")
        out.write("\n")
    for note in summary.get("notes", []):
        out.write(f"> {md_cell(note)}\n\n")

    def row(r: ScriptResult) -> list[Any]:
        return [
            md_code(r.path),
            r.status.value,
            "" if r.exit_code is None else r.exit_code,
            f"{r.execution_time or 0.0:.2f}",
            memory_text(r.peak_memory_mb),
            "" if r.cpu_time is None else f"{r.cpu_time:.2f}",
            md_cell(r.error or r.skip_reason or ""),
        ]

    headers = ["Script", "Status", "Exit", "Time (s)", "Memory", "CPU (s)", "Note"]
    # Why each ran, when a decision was made (--changed, watch): a full run says nothing.
    whys = [why_text(r.why, limit=MAX_WHY) for r in results]
    table = [row(r) for r in results]
    if any(whys):
        headers.append("Why it ran")
        for line, why in zip(table, whys, strict=True):
            line.append(md_cell(why))
    out.write("## Scripts\n\n")
    out.write(md_table(headers, table, _ALIGN))
    out.write("\n\n## Slowest\n\n")
    slowest = sorted(results, key=lambda r: -(r.execution_time or 0.0))[:10]
    out.write(md_table(headers[:6], [row(r)[:6] for r in slowest], _ALIGN))
    heaviest = sorted(
        (r for r in results if r.peak_memory_mb is not None),
        key=lambda r: -(r.peak_memory_mb or 0.0),
    )[:10]
    if heaviest:
        out.write("\n\n## Heaviest\n\n")
        out.write(md_table(headers[:6], [row(r)[:6] for r in heaviest], _ALIGN))
    out.write(_gantt(summary, results))
    out.write("\n\n## By subdirectory\n\n")
    out.write(
        md_table(
            ["Subdirectory", *STATUSES, "total"],
            (
                [md_code(d), *(c[s] for s in STATUSES), c["total"]]
                for d, c in summary["subdirectories"].items()
            ),
            "l" + "r" * (len(STATUSES) + 1),
        )
    )
    out.write("\n")
    failing = [r for r in results if not r.ok]
    if failing:
        out.write("\n## Failures\n")
    for r in failing:
        out.write(f"\n### {md_code(r.path)}: {r.status}\n\n")
        if r.error:
            out.write(f"{md_cell(r.error)}\n\n")
        for stream, captured in (("stderr", r.stderr), ("stdout", r.stdout)):
            text = plain(tail(captured, TAIL_LINES))
            if text.strip():
                fence = md_fence(text)
                out.write(f"{stream} (last {TAIL_LINES} lines):\n\n{fence}text\n{text}")
                out.write(("" if text.endswith("\n") else "\n") + f"{fence}\n\n")
    escaped = [r for r in results if r.escaped]
    unclaimed = int(summary.get("escaped") or 0)
    if escaped or unclaimed:
        out.write("\n## Escaped processes\n\nLeft their script's process group; killed:\n\n")
        for r in escaped:
            out.write(f"- {md_code(r.path)}: {r.escaped}\n")
        if unclaimed:
            out.write(f"- from scripts that ran at once and cannot be told apart: {unclaimed}\n")
    skipped = [r for r in results if r.status is Status.SKIPPED]
    if skipped:
        out.write("\n## Skipped\n\n")
        for r in skipped:
            out.write(f"- {md_code(r.path)}: {md_cell(r.skip_reason or '')}\n")
    return out.getvalue()


#: Bars at most in the Mermaid chart: the GitHub step summary must stay small.
GANTT_BARS = 30


def _gantt(summary: Mapping[str, Any], results: Sequence[ScriptResult]) -> str:
    """A Mermaid gantt chart of the run's longest chain, as it ran."""
    found = spans(results)
    chain = [path for path in summary.get("longest_chain") or () if path in found]
    if not chain:
        return ""
    ok = {r.path: r.ok for r in results}
    shown = chain[:GANTT_BARS]
    seconds = sum(float((found[p][1] - found[p][0]).total_seconds()) for p in chain)
    lines = [
        "\n\n## Longest chain\n",
        f"{len(chain)} scripts, {seconds:.2f} s"
        + (f" (the first {GANTT_BARS} drawn)" if len(chain) > GANTT_BARS else "")
        + "\n",
        "```mermaid",
        "gantt",
        "    dateFormat x",
        "    axisFormat %H:%M:%S",
        "    section chain",
    ]
    for path in shown:
        start, end = found[path]
        # Absolute times: Mermaid shows them in the reader's time zone, as the run's clock.
        begin = int(start.timestamp() * 1000)
        finish = max(begin + 1, int(end.timestamp() * 1000))
        tag = "done" if ok[path] else "crit"
        lines.append(f"    {_mermaid_name(path)} : {tag}, {begin}, {finish}")
    lines.append("```")
    return "\n".join(lines)


def _mermaid_name(text: str) -> str:
    """A gantt task name (not quoted there): controls shown, no ``:``, ``#``, ``;``."""
    return re.sub(r"[:#;`<>]", "_", name_text(text)).strip() or "_"


def render_trace(summary: Mapping[str, Any], results: Sequence[ScriptResult]) -> dict[str, Any]:
    """The run as Chrome trace events (Perfetto, ``chrome://tracing``): a bar per script,
    on the lane of its slot (see :func:`~orchestrator.reporting.timeline`)."""
    bars = timeline(results)
    by_path = {r.path: r for r in results}
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": 1,
            "tid": 0,
            "args": {"name": plain(f"orch run {summary.get('run_id', '')}")},
        }
    ]
    for path, bar in bars.items():
        r = by_path[path]
        events.append(
            {
                "name": plain(path),
                "cat": r.status.value,
                "ph": "X",
                "pid": 1,
                "tid": bar.lane,
                "ts": round(bar.start * 1e6),
                "dur": round(bar.duration * 1e6),
                "args": {
                    "status": r.status.value,
                    "exit_code": r.exit_code,
                    "peak_memory_mb": r.peak_memory_mb,
                    "cpu_time": r.cpu_time,
                    "attempts": r.attempts,
                },
            }
        )
    lanes = max((bar.lane for bar in bars.values()), default=0)
    events += [
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": lane, "args": {"name": f"slot {lane}"}}
        for lane in range(1, lanes + 1)
    ]
    return {"traceEvents": events, "displayTimeUnit": "ms"}


_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str | None) -> str:
    return _XML_ILLEGAL.sub("\ufffd", plain(text or ""))


def render_junit(summary: Mapping[str, Any], results: Sequence[ScriptResult]) -> str:
    """JUnit XML: a testsuite per subdirectory, a testcase per script."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="orchestrator")
    by_dir: dict[str, list[ScriptResult]] = {}
    for r in results:
        by_dir.setdefault(r.subdirectory, []).append(r)
    all_counts: Counter[Status] = Counter()
    for directory, group in by_dir.items():
        counts = Counter(r.status for r in group)
        failures = sum(counts[s] for s in Status if s.retryable)  # failed and timed out
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=_xml_text(name_text(directory)),
            tests=str(len(group)),
            failures=str(failures),
            errors=str(counts[Status.ERROR]),
            skipped=str(counts[Status.SKIPPED]),
            time=f"{sum(r.execution_time or 0.0 for r in group):.3f}",
            timestamp=str(group[0].start_time or summary.get("start_time") or ""),
        )
        all_counts.update(counts)
        for r in group:
            case = ET.SubElement(
                suite,
                "testcase",
                name=_xml_text(name_text(r.path)),
                classname=_xml_text(name_text(directory)).replace("/", "."),
                time=f"{r.execution_time or 0.0:.3f}",
            )
            costs = {"peak_memory_mb": r.peak_memory_mb, "cpu_time": r.cpu_time}
            if any(value is not None for value in costs.values()):
                properties = ET.SubElement(case, "properties")
                for key, value in costs.items():
                    if value is not None:
                        ET.SubElement(properties, "property", name=key, value=str(value))
            message = _xml_text(r.error or "")
            if r.status.retryable:  # failed, or timed out
                node = ET.SubElement(case, "failure", message=message, type=r.status.value)
                node.text = _xml_text(tail(r.stderr, TAIL_LINES))
            elif r.status is Status.ERROR:
                node = ET.SubElement(case, "error", message=message, type="error")
            elif r.status is Status.SKIPPED:
                ET.SubElement(case, "skipped", message=_xml_text(r.skip_reason or ""))
            if r.stdout:
                ET.SubElement(case, "system-out").text = _xml_text(r.stdout)
            if r.stderr:
                ET.SubElement(case, "system-err").text = _xml_text(r.stderr)
    suites.set("tests", str(len(results)))
    suites.set("failures", str(sum(all_counts[s] for s in Status if s.retryable)))
    suites.set("errors", str(all_counts[Status.ERROR]))
    suites.set("skipped", str(all_counts[Status.SKIPPED]))
    suites.set("time", f"{summary.get('wall_time', 0.0):.3f}")
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _complete(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result with every key the reports read: a library caller's may have only some."""
    script = str(result.get("script") or result.get("path") or result.get("name") or "")
    name = str(result.get("name") or os.path.basename(script))
    defaults: dict[str, Any] = {
        "script": script,
        "name": name,
        "path": result.get("path") or name,
        "subdirectory": os.path.dirname(str(result.get("path") or "")) or ".",
        "status": "error",
        "start_time": None,
        "end_time": None,
        "exit_code": None,
        "execution_time": 0.0,
        "stdout": "",
        "stderr": "",
        "error": None,
    }
    merged = {**defaults, **{k: v for k, v in result.items() if v is not None or k not in defaults}}
    for key in ("script", "name", "path", "subdirectory"):  # a caller's may be Paths
        merged[key] = (
            os.fspath(merged[key]) if isinstance(merged[key], os.PathLike) else merged[key]
        )
    return merged


def as_results(results: Iterable[Mapping[str, Any]]) -> list[ScriptResult]:
    """Result dicts (read from logs, or a library caller's) as values, missing keys filled."""
    return [ScriptResult.from_dict(_complete(r)) for r in results]


def generate_report(
    results: Sequence[ScriptResult | Mapping[str, Any]],
    output_dir: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    command: Sequence[str] = (),
    start_time: str = "",
    end_time: str = "",
    wall_time: float = 0.0,
    interrupted: bool = False,
    notes: Sequence[str] = (),
    jobs: int = 1,
    depends_on: Mapping[str, Sequence[str]] | None = None,
    escaped: int = 0,
    cache: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``summary.json``, ``report.md``, ``report.html``, ``junit.xml`` and
    ``trace.json``, atomically.

    ``results`` are :class:`ScriptResult` values or result dicts (``run_script``'s;
    a library caller's may have only some keys). ``jobs`` (the run's ``-j``)
    gives the parallel efficiency; ``depends_on`` (``{path: its dependencies}``)
    the longest chain drawn in the Markdown; ``escaped`` counts processes stopped
    as the run ended that no one script could be credited with; ``cache`` is
    what the shared cache restored and published (see ``RunInfo.cache``).
    When ``GITHUB_STEP_SUMMARY`` is set, the Markdown is appended to that file.
    Returns the written paths by kind (``summary``, ``markdown``, ``html``, ``junit``,
    ``trace``).
    """
    values = [r if isinstance(r, ScriptResult) else as_results([r])[0] for r in results]
    out = Path(output_dir)
    totals = summarize(values)
    summed = float(totals["total_time"])
    known = {r.path for r in values}
    graph = {
        r.path: [d for d in (depends_on or {}).get(r.path, ()) if d in known]
        for r in values
        if r.status is not Status.SKIPPED
    }
    graph = {path: [d for d in deps if d in graph] for path, deps in graph.items()}
    cost = {r.path: float(r.execution_time or 0.0) for r in values}
    summary: dict[str, Any] = {
        "run_id": run_id or out.name,
        "start_time": start_time,
        "end_time": end_time,
        "command": list(command),
        **totals,
        "wall_time": round(wall_time, 6),
        "jobs": jobs,
        # Busy slot-seconds over available ones: 1.0 when no slot ever waited.
        "parallel_efficiency": round(summed / (wall_time * jobs), 3) if wall_time > 0 else None,
        "longest_chain": critical_path(graph, cost),
        "interrupted": interrupted,
        "exit_code": exit_code_for((r.status.value for r in values), interrupted),
        "notes": list(notes),
        "escaped": escaped,
        "cache": dict(cache) if cache else None,
        "results": [_without_streams(r) for r in values],
    }
    markdown = render_markdown(summary, values)
    paths = {
        "html": out / "report.html",
        "summary": out / "summary.json",
        "markdown": out / "report.md",
        "junit": out / "junit.xml",
        "trace": out / "trace.json",
    }
    atomic_write_text(paths["trace"], _json_rows(render_trace(summary, values), "traceEvents"))
    atomic_write_text(paths["junit"], render_junit(summary, values))
    atomic_write_text(paths["markdown"], markdown)
    atomic_write_text(paths["html"], render_page(summary, values, out))
    # summary.json last: its presence means the run directory is complete.
    atomic_write_text(paths["summary"], _json_rows(summary, "results"))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        except OSError as exc:
            # The CI job summary is a courtesy; the run's own reports are written.
            logger.warning("cannot append to GITHUB_STEP_SUMMARY %s: %s", step_summary, exc)
    return paths


def _without_streams(result: ScriptResult) -> dict[str, Any]:
    """A result as ``summary.json`` lists it: its log holds the output tails."""
    data = result.to_dict()
    del data["stdout"], data["stderr"]
    return data


def point_latest(reports_dir: Path, run_dir: Path) -> None:
    """Make ``reports_dir/latest`` a relative symlink to ``run_dir``, replaced atomically."""
    link = reports_dir / "latest"
    tmp = reports_dir / f".latest.{os.getpid()}.{time.monotonic_ns()}"
    try:
        os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WriteError(link, exc) from exc


class FileReporter(Reporter):
    """Writes the run's reports and points ``latest`` at it.

    The per-script JSON logs are not its job: the engine writes each one in the
    worker that ran the script, the moment it ends.
    """

    def run_finished(self, run: RunInfo, results: Sequence[ScriptResult]) -> None:
        assert run.run_dir is not None
        start_time, wall_time, notes = run.start_time, run.wall_time, list(run.notes)
        escaped = run.escaped
        merged = list(results)
        if (run.run_dir / "summary.json").is_file():
            # A run id given again (one nox session per environment): one report for all.
            summary, earlier = load_run(run.run_dir)
            now = {r.path for r in results}
            merged += as_results(r for r in earlier if r["path"] not in now)
            merged.sort(key=lambda r: r.path.split("/"))
            start_time = summary.get("start_time") or start_time
            wall_time += float(summary.get("wall_time") or 0.0)
            notes = [n for n in summary.get("notes", []) if n not in notes] + notes
            escaped += int(summary.get("escaped") or 0)
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
            jobs=run.jobs,
            depends_on=run.depends_on,
            escaped=escaped,
            cache=run.cache,
        )
        point_latest(run.run_dir.parent, run.run_dir)


def load_run(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a saved run: ``(summary, results)``, results with their stdout/stderr tails.

    ``path`` is a run directory, or a reports directory: its ``latest`` run, or
    its newest run folder when there is no ``latest`` yet (the first run was killed).
    The summary's ``run_dir`` says which folder was read.
    """
    run_dir = Path(path)
    if not (run_dir / "summary.json").is_file() and not (run_dir / "logs").is_dir():
        if (run_dir / "latest").exists():
            run_dir = run_dir / "latest"
        else:
            runs = [p for p in _subfolders(run_dir) if (p / "logs").is_dir()]
            if runs:
                run_dir = max(runs, key=lambda p: p.stat().st_mtime_ns)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        if (run_dir / "logs").is_dir():
            summary, results = _incomplete_run(run_dir)
            return {**summary, "run_dir": str(run_dir.resolve())}, results
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
    return {**summary, "run_dir": str(run_dir.resolve())}, results


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _incomplete_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run whose orch died before its summary: what its logs and the ledger's note say.

    The summary has ``incomplete: true``; ``total`` is the number of scripts the
    run had planned when the ledger noted it (``orch`` sweeps it), else None.
    """
    note: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        note = json.loads((run_dir / INCOMPLETE).read_text(encoding="utf-8"))
    results = []
    for log in sorted((run_dir / "logs").rglob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(log.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "status" in data:
                data.pop("settings", None)
                results.append(data)
    summary = {
        "run_id": note.get("run_id", run_dir.name),
        "command": note.get("command", []),
        "incomplete": True,
        # Known killed once a sweep wrote the note; before, it may still be running.
        "killed": bool(note),
        "total": note.get("total"),
        "interrupted": True,
        "exit_code": int(ExitCode.INTERRUPTED),
    }
    return summary, results
