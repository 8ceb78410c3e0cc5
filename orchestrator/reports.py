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
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._files import atomic_write_text
from .errors import ExitCode, OrchestratorError, WriteError
from .ledger import INCOMPLETE
from .reporting import TAIL_LINES, Reporter, RunInfo, memory_text, plain, summarize, tail
from .results import NOT_OK, STATUSES, ScriptResult, exit_code_for

__all__ = [
    "FileReporter",
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


def _longest_backticks(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _fence(text: str) -> str:
    return "`" * max(3, _longest_backticks(text) + 1)


def _md_cell(text: str) -> str:
    # Text in a table cell or a line: no controls, no raw HTML, no cell break.
    text = plain(text).replace("\n", " ").replace("\t", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def _md_code(text: str) -> str:
    """``text`` as a Markdown code span that no backtick, pipe or newline inside can end.

    The fence is one backtick longer than the longest run inside (CommonMark),
    padded with spaces when the text begins or ends with one; ``|`` is escaped,
    which GitHub's tables honour inside code spans too.
    """
    text = plain(text).replace("\n", " ").replace("\t", " ").replace("|", "\\|")
    fence = "`" * (_longest_backticks(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
        out.write(f"> {_md_cell(note)}\n\n")

    def row(r: Mapping[str, Any]) -> list[Any]:
        return [
            _md_code(str(r["path"])),
            r["status"],
            "" if r.get("exit_code") is None else r["exit_code"],
            f"{r.get('execution_time') or 0.0:.2f}",
            memory_text(r.get("peak_memory_mb")),
            "" if r.get("cpu_time") is None else f"{r['cpu_time']:.2f}",
            _md_cell(r.get("error") or r.get("skip_reason") or ""),
        ]

    headers = ["Script", "Status", "Exit", "Time (s)", "Memory", "CPU (s)", "Note"]
    out.write("## Scripts\n\n")
    out.write(tabulate([row(r) for r in results], headers=headers, tablefmt="github"))
    out.write("\n\n## Slowest\n\n")
    slowest = sorted(results, key=lambda r: -(r.get("execution_time") or 0.0))[:10]
    out.write(tabulate([row(r)[:6] for r in slowest], headers=headers[:6], tablefmt="github"))
    heaviest = sorted(
        (r for r in results if r.get("peak_memory_mb") is not None),
        key=lambda r: -r["peak_memory_mb"],
    )[:10]
    if heaviest:
        out.write("\n\n## Heaviest\n\n")
        table = [row(r)[:6] for r in heaviest]
        out.write(tabulate(table, headers=headers[:6], tablefmt="github"))
    out.write("\n\n## By subdirectory\n\n")
    out.write(
        tabulate(
            [
                [_md_code(d), *(c[s] for s in STATUSES), c["total"]]
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
        out.write(f"\n### {_md_code(str(r['path']))}: {r['status']}\n\n")
        if r.get("error"):
            out.write(f"{_md_cell(r['error'])}\n\n")
        for stream in ("stderr", "stdout"):
            text = plain(tail(r.get(stream) or "", TAIL_LINES))
            if text.strip():
                fence = _fence(text)
                out.write(f"{stream} (last {TAIL_LINES} lines):\n\n{fence}text\n{text}")
                out.write(("" if text.endswith("\n") else "\n") + f"{fence}\n\n")
    escaped = [r for r in results if r.get("escaped")]
    if escaped:
        out.write("\n## Escaped processes\n\nLeft their script's process group; killed:\n\n")
        for r in escaped:
            out.write(f"- {_md_code(str(r['path']))}: {int(r['escaped'])}\n")
    flaky = [r for r in results if r.get("flaky")]
    if flaky:
        out.write("\n## Flaky\n\nPassed only after a retry:\n\n")
        for r in flaky:
            out.write(f"- {_md_code(str(r['path']))}: passed on attempt {r.get('attempts')}\n")
    skipped = [r for r in results if r["status"] == "skipped"]
    if skipped:
        out.write("\n## Skipped\n\n")
        for r in skipped:
            out.write(f"- {_md_code(str(r['path']))}: {_md_cell(r.get('skip_reason') or '')}\n")
    return out.getvalue()


_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str | None) -> str:
    return _XML_ILLEGAL.sub("\ufffd", plain(text or ""))


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
            costs = {"peak_memory_mb": r.get("peak_memory_mb"), "cpu_time": r.get("cpu_time")}
            if any(value is not None for value in costs.values()):
                properties = ET.SubElement(case, "properties")
                for key, value in costs.items():
                    if value is not None:
                        ET.SubElement(properties, "property", name=key, value=str(value))
            message = _xml_text(r.get("error") or "")
            if r["status"] in ("failed", "timeout"):
                node = ET.SubElement(case, "failure", message=message, type=r["status"])
                node.text = _xml_text(tail(r.get("stderr") or "", TAIL_LINES))
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
        "exit_code": exit_code_for((r["status"] for r in results), interrupted),
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
        merged = [result.to_dict() for result in results]
        if (run.run_dir / "summary.json").is_file():
            # A run id given again (one nox session per environment): one report for all.
            summary, earlier = load_run(run.run_dir)
            now = {r.path for r in results}
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
        if (run_dir / "logs").is_dir():
            return _incomplete_run(run_dir)
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
        "total": note.get("total"),
        "interrupted": True,
        "exit_code": int(ExitCode.INTERRUPTED),
    }
    return summary, results
