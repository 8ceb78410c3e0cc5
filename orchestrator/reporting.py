"""What every output listens to: the run's events, and the figures all outputs share.

The execution engine never prints. It calls the :class:`Reporter` methods, in
the main thread, in this order::

    run_started -> (script_started | script_retrying | script_finished | tick)* -> run_finished

Each output is a reporter in a module of its own, and several listen at once:
:mod:`~orchestrator.console` (progress and the final table),
:mod:`~orchestrator.reports` (JSON logs, ``report.md``, ``report.html`` through
:mod:`~orchestrator.pages`, ``junit.xml``, ``summary.json``); :mod:`~orchestrator.docs`
renders the script reference.
A new format is a new reporter, not a branch in the engine.
"""

from __future__ import annotations

import contextlib
import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .project import Project
from .results import STATUSES, ScriptResult, Status

__all__ = [
    "MAX_WHY",
    "TAIL_LINES",
    "VERDICTS",
    "Bar",
    "Reporter",
    "RunInfo",
    "ScriptStarted",
    "by_verdict",
    "flaky_text",
    "md_cell",
    "md_code",
    "md_fence",
    "md_table",
    "memory_text",
    "mermaid_label",
    "name_text",
    "plain",
    "spans",
    "summarize",
    "tail",
    "timeline",
    "totals_line",
    "verdict_note",
    "verdict_of",
    "visible",
    "why_text",
]

TAIL_LINES = 20
#: Reasons a report lists per script (the result holds them all).
MAX_WHY = 5


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
    #: Set when one of the run's files could not be written: why (the run stops).
    unwritable: str | None = None
    #: Scripts run at once (``-j``), and ``{path: its dependencies}`` of what ran.
    jobs: int = 1
    depends_on: dict[str, list[str]] = field(default_factory=dict)
    #: Processes left by scripts that could not be told apart, stopped as the run ended.
    escaped: int = 0
    #: The shared cache's part (:meth:`~orchestrator.cache.Cache.summary`); None: no cache.
    cache: dict[str, Any] | None = None


@dataclass(frozen=True)
class ScriptStarted:
    """A script's first attempt began."""

    script: str  #: its absolute path
    path: str  #: relative to the scripts directory
    name: str  #: its file name


class Reporter:
    """Receives run events, as values; every method is optional."""

    def run_started(self, run: RunInfo) -> None:
        """The run is about to start its first script."""

    def script_started(self, started: ScriptStarted) -> None:
        """A script started."""

    def script_retrying(self, result: ScriptResult, attempt: int, delay: float) -> None:
        """Attempt ``attempt`` of a script ended with ``result``; another follows in ``delay`` s."""

    def script_finished(self, result: ScriptResult) -> None:
        """A script has its final result (including skipped ones)."""

    def tick(self) -> None:
        """Called a few times a second while scripts run."""

    def run_finished(self, run: RunInfo, results: Sequence[ScriptResult]) -> None:
        """Every script has a result, in discovery order."""


# -- summaries -----------------------------------------------------------------------------


def why_text(why: Sequence[str], limit: int = 2) -> str:
    """Why a script ran, in a few words: its first ``limit`` reasons, the rest counted.

    Empty for ``full run`` (every script ran: saying so on each line is noise)
    and for a script that did not run.
    """
    if not why or list(why) == ["full run"]:
        return ""
    shown = list(why[:limit])
    if len(why) > limit:
        shown.append(f"{len(why) - limit} more")
    return "; ".join(shown)


def memory_text(megabytes: float | None) -> str:
    """A peak memory as the tables show it: ``59.3 MB``, or empty when unknown."""
    return "" if megabytes is None else f"{megabytes:.1f} MB"


def cache_line(cache: Mapping[str, Any] | None) -> str | None:
    """What a run got from the shared cache and gave it, in a sentence (None: no cache)."""
    if not cache:
        return None
    restored, saved = int(cache.get("restored") or 0), float(cache.get("saved") or 0.0)
    line = f"cache {cache.get('url')}: {restored} restored"
    if restored:
        line += f", {saved:.2f} s of running saved"
    line += f", {int(cache.get('published') or 0)} published"
    if cache.get("unavailable"):
        line += f" (unavailable: {cache['unavailable']})"
    return line


#: The verdicts of history a report lists apart, in the order it lists them.
VERDICTS = ("new failure", "fixed", "flaky")


def verdict_of(result: ScriptResult) -> str | None:
    """``flaky``, ``new failure``, ``fixed`` (see :mod:`orchestrator.history`), or None."""
    return "flaky" if result.flaky else result.change


def by_verdict(results: Iterable[ScriptResult]) -> dict[str, list[ScriptResult]]:
    """The results with a verdict, grouped: ``{"new failure": [...], "fixed": [...], ...}``."""
    groups: dict[str, list[ScriptResult]] = {verdict: [] for verdict in VERDICTS}
    for result in results:
        verdict = verdict_of(result)
        if verdict is not None:
            groups[verdict].append(result)
    return {verdict: found for verdict, found in groups.items() if found}


def flaky_text(evidence: Mapping[str, Any]) -> str:
    """A flaky script's evidence: ``same inputs: 3 passes, 2 failures since 2026-12-01``."""
    passes, failures = int(evidence.get("passes") or 0), int(evidence.get("failures") or 0)
    return (
        f"same inputs: {passes} pass{'' if passes == 1 else 'es'}, "
        f"{failures} failure{'' if failures == 1 else 's'} since {str(evidence.get('since'))[:10]}"
    )


def verdict_note(result: ScriptResult) -> str:
    """What a verdict rests on, for a list of them: the evidence, or the failure."""
    if result.flaky:
        return flaky_text(result.flaky)
    if result.change == "new failure":
        last = tail(result.error or result.stderr, 1).strip()
        return f"{result.status.value}: {last}" if last else result.status.value
    return "passed"


def summarize(results: Iterable[ScriptResult]) -> dict[str, Any]:
    """Totals by status (every status present, zero included) and per subdirectory."""
    results = list(results)
    totals = {status: 0 for status in STATUSES}
    per_dir: dict[str, dict[str, int]] = {}
    for result in results:
        totals[result.status.value] += 1
        counts = per_dir.setdefault(result.subdirectory, {s: 0 for s in STATUSES})
        counts[result.status.value] += 1
    for counts in per_dir.values():
        counts["total"] = sum(counts[s] for s in STATUSES)
    return {
        "total": len(results),
        "totals": totals,
        "subdirectories": dict(sorted(per_dir.items())),
        "total_time": round(sum(r.execution_time or 0.0 for r in results), 6),
    }


def spans(results: Iterable[ScriptResult]) -> dict[str, tuple[datetime, datetime]]:
    """Each script that ran: its start and end, by path (a skipped one has none)."""
    found: dict[str, tuple[datetime, datetime]] = {}
    for r in results:
        if r.status is Status.SKIPPED or not r.start_time or not r.end_time:
            continue
        with contextlib.suppress(ValueError, TypeError):
            found[r.path] = (
                datetime.fromisoformat(r.start_time),
                datetime.fromisoformat(r.end_time),
            )
    return found


@dataclass(frozen=True)
class Bar:
    """A script on the run's timeline: seconds from the first start, and its slot."""

    start: float
    duration: float
    lane: int


def timeline(results: Iterable[ScriptResult]) -> dict[str, Bar]:
    """The scripts that ran as bars on lanes, by start time (the trace and report.html).

    Lanes are the run's slots, found again from the times: each script goes to
    the lowest lane free when it started, so no two bars of a lane overlap and
    there are never more lanes than scripts ran at once.
    """
    found = spans(results)
    first = min((start for start, _ in found.values()), default=None)
    bars: dict[str, Bar] = {}
    free: list[int] = []
    busy: list[tuple[datetime, int]] = []
    for path, (start, end) in sorted(found.items(), key=lambda item: item[1][0]):
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lane = heapq.heappop(free) if free else len(busy) + 1
        heapq.heappush(busy, (end, lane))
        assert first is not None
        bars[path] = Bar(
            (start - first).total_seconds(), max(0.0, (end - start).total_seconds()), lane
        )
    return bars


def totals_line(results: Sequence[ScriptResult], wall_time: float | None = None) -> str:
    """``3 passed, 1 failed in 2.31 s`` (zero counts left out)."""
    summary = summarize(results)
    parts = [f"{n} {status}" for status, n in summary["totals"].items() if n]
    text = ", ".join(parts) or "no scripts"
    text += f" in {summary['total_time']:.2f} s"
    if wall_time is not None:
        text += f" (wall {wall_time:.2f} s)"
    return text


def tail(text: str, lines: int | None) -> str:
    """The last ``lines`` lines of ``text`` (all of it for None)."""
    if lines is None:
        return text
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


# -- a script's text, made safe for each output ------------------------------------------

# An escape sequence: CSI (ESC [ ... final), OSC and the other strings (ESC ] ... BEL or
# ESC \), or ESC and one character; and the 8-bit CSI.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b.?"
    r"|\x9b[0-?]*[ -/]*[@-~]",
    re.DOTALL,
)
_SGR = re.compile(r"\x1b\[[0-9;:]*m\Z")
# Every other control character: C0 but tab and newline, DEL, C1.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# A byte of a file name that is not UTF-8, as Python reads it (surrogateescape).
_UNDECODED = re.compile("[\udc80-\udcff]")
# In a name, every control character: a tab or a newline would break a table row.
_NAME_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\udc80-\udcff]")


def _shown(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def plain(text: str) -> str:
    """``text`` without escape sequences or control characters (tab and newline kept).

    For files read by other programs (Markdown, JUnit): nothing in them can
    move a cursor, retitle a window or end an XML document. A byte that is not
    UTF-8 (in a file name) is shown as ``\\xNN``.
    """
    text = text.replace("\r\n", "\n")
    return _UNDECODED.sub(lambda m: _shown(m.group()), _CONTROL.sub("", _ESCAPE.sub("", text)))


def name_text(name: str) -> str:
    """A script's name or path for any output: every control character and every byte
    that is not UTF-8 shown as ``\\xNN``, so a name can neither reach a terminal as a
    command nor break a table row, a Markdown span or an XML document."""
    return _NAME_CONTROL.sub(lambda m: _shown(m.group()), name)


def visible(text: str) -> str:
    """``text`` for a terminal: colour (SGR) kept, every other control shown as ``\\xNN``.

    So a script's output can paint its words but never clear the screen,
    move the cursor or set the window's title.
    """
    text = text.replace("\r\n", "\n")

    def escape(match: re.Match[str]) -> str:
        sequence = match.group()
        if _SGR.match(sequence):
            return sequence
        return _CONTROL.sub(lambda m: _shown(m.group()), sequence)

    pieces = []
    last = 0
    for match in _ESCAPE.finditer(text):
        pieces.append(_CONTROL.sub(lambda m: _shown(m.group()), text[last : match.start()]))
        pieces.append(escape(match))
        last = match.end()
    pieces.append(_CONTROL.sub(lambda m: _shown(m.group()), text[last:]))
    return _UNDECODED.sub(lambda m: _shown(m.group()), "".join(pieces))


# -- Markdown: one helper per form, so that no name or output can break a document --


def _longest_backticks(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def md_fence(text: str) -> str:
    """A code fence (backticks) that no run of backticks inside ``text`` can close."""
    return "`" * max(3, _longest_backticks(text) + 1)


def md_cell(text: str) -> str:
    """Text for a Markdown table cell or line: no controls, no raw HTML, no cell break."""
    text = plain(text).replace("\n", " ").replace("\t", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A GitHub Markdown table of cells made safe already (:func:`md_cell`, :func:`md_code`).

    ``align`` has an ``l`` or ``r`` per column (missing: ``l``). Columns are
    padded to their width, so the file reads well as text too. Written here,
    not with tabulate: a report of 10,000 scripts takes milliseconds, not seconds.
    """
    table = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(3, *(len(row[i]) for row in table)) for i in range(len(headers))]
    right = [i < len(align) and align[i] == "r" for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(cells, widths, right, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        "-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)
    )
    return "\n".join([line(table[0]), f"|{rule}|", *map(line, table[1:])])


def md_code(text: str) -> str:
    """``text`` (a name, a path) as a Markdown code span nothing inside can end.

    Controls and bytes that are not UTF-8 show as ``\\xNN`` (:func:`name_text`).
    The fence is one backtick longer than the longest run inside (CommonMark),
    padded with spaces when the text begins or ends with one; ``|`` is escaped,
    which GitHub's tables honour inside code spans too.
    """
    text = name_text(text).replace("|", "\\|")
    fence = "`" * (_longest_backticks(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def mermaid_label(text: str) -> str:
    """``text`` inside a quoted Mermaid label: controls shown, quotes and markup as entities."""
    text = name_text(text).replace("&", "#amp;").replace('"', "#quot;")
    return text.replace("<", "#lt;").replace(">", "#gt;")
