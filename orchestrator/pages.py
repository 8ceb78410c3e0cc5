"""``report.html``: a run as one self-contained page, to look at rather than read.

The page is a fixed shell, the stylesheet and script in ``_page/``, and the
run's data embedded once as JSON; the script draws the verdict header, the
timeline and the table from it, rows as they scroll into view, so ten thousand
scripts stay quick. Nothing is fetched: the page works from ``file://`` and as
a CI artifact.

Nothing a script names or prints can become markup: the data is JSON with
``<``, ``>`` and ``&`` escaped inside a ``<script type="application/json">``,
and the page's script puts every string into the document as text. A
Content-Security-Policy allows only the page's own script and stylesheet (by
their hashes), so markup that got in anyway could not run. Outputs keep their
colours (SGR) and every other control sequence is shown as ``\\xNN``, as on the
console; secrets were masked before any output saw them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .reporting import MAX_WHY, cache_line, name_text, timeline, visible, why_text
from .results import ScriptResult

__all__ = ["render_page"]

_ASSETS = Path(__file__).parent / "_page"
#: Characters of a stream's tail a row embeds; the rest is in the linked log file.
LOG_TAIL = 8_000
#: Characters of output the page embeds in all, as escaped in its JSON (failures first),
#: so that 10,000 scripts make a page under 5 MB.
LOG_BUDGET = 2_000_000
#: Characters of a script's error or skip reason a row shows (its log has all).
MAX_NOTE = 1_000
#: Row fields, in the order each row lists them (the script reads them by this list).
COLUMNS = (
    "path",
    "status",
    "exit",
    "start",
    "time",
    "lane",
    "mem",
    "cpu",
    "why",
    "note",
    "attempts",
    "flaky",
    "change",
    "recent",
    "out",
    "err",
    "cut",
    "logs",
)
_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


@functools.lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    """The page's script and stylesheet, as shipped beside this module."""
    script = (_ASSETS / "report.js").read_text(encoding="utf-8")
    style = (_ASSETS / "report.css").read_text(encoding="utf-8")
    # Either would end its element early: a bug in the assets, caught before any page.
    assert "</script" not in script.lower() and "</style" not in style.lower()
    return script, style


def _digest(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def _tail(text: str, limit: int) -> tuple[str, bool]:
    """The last ``limit`` characters of ``text`` from a line's start, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    if limit <= 0:
        return "", True
    cut = text[-limit:]
    newline = cut.find("\n")
    return (cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut), True


def _logs(result: ScriptResult, run_dir: Path) -> dict[str, str] | None:
    """The result's log files, as links relative to the page (inside ``logs/`` only)."""
    links = {}
    for stream in ("stdout", "stderr"):
        where = result.extra.get(f"{stream}_path")
        if not isinstance(where, str):
            continue
        rel = os.path.relpath(where, run_dir)
        if rel.startswith("logs" + os.sep) and ".." not in Path(rel).parts:
            links[stream] = Path(rel).as_posix()
    return links or None


def _embedded_size(text: str) -> int:
    """The characters ``text`` takes in the page's JSON."""
    return len(json.dumps(text, ensure_ascii=False).translate(_JSON_ESCAPES))


def _figure(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def page_data(
    summary: Mapping[str, Any], results: Sequence[ScriptResult], run_dir: Path
) -> dict[str, Any]:
    """What the page shows, as the JSON it embeds (see ``_page/report.js`` for the reader)."""
    bars = timeline(results)
    index = {r.path: i for i, r in enumerate(results)}
    budget = LOG_BUDGET
    outputs: dict[str, tuple[str, str, bool]] = {}
    # Failures' output first: when the budget runs out, passes keep only their links.
    for r in sorted(results, key=lambda r: r.ok):
        streams, cut = [], False
        for text in (r.stdout, r.stderr):
            shown, short = _tail(text, min(LOG_TAIL, max(budget, 0)))
            shown = visible(shown)
            budget -= _embedded_size(shown)  # as written: escapes make some text longer
            streams.append(shown)
            cut = cut or short
        outputs[r.path] = (streams[0], streams[1], cut)
    rows = []
    for r in results:
        bar = bars.get(r.path)
        out, err, cut = outputs[r.path]
        recent = r.extra.get("recent")
        rows.append(
            [
                name_text(r.path),
                r.status.value,
                r.exit_code,
                None if bar is None else _figure(bar.start),
                _figure(r.execution_time or 0.0),
                None if bar is None else bar.lane,
                _figure(r.peak_memory_mb, 1),
                _figure(r.cpu_time),
                visible(why_text(r.why, limit=MAX_WHY) or "; ".join(r.why)),
                visible((r.error or r.skip_reason or "")[:MAX_NOTE]),
                r.attempts,
                dict(r.flaky) if r.flaky else None,
                r.change,
                [_figure(d) for d in recent] if isinstance(recent, list) else [],
                out,
                err,
                cut,
                _logs(r, run_dir),
            ]
        )
    counts = summary.get("totals") or {}
    # Only a script --changed left out carries ``saved``: its last duration.
    saved_changed = sum(float(r.extra.get("saved") or 0.0) for r in results)
    cache = summary.get("cache") or {}
    return {
        "v": 1,
        "run": {
            "id": name_text(str(summary.get("run_id", ""))),
            "command": visible(" ".join(map(str, summary.get("command") or ()))),
            "start": summary.get("start_time") or "",
            "end": summary.get("end_time") or "",
            "wall": _figure(summary.get("wall_time") or 0.0),
            "summed": _figure(summary.get("total_time") or 0.0),
            "jobs": summary.get("jobs") or 1,
            "efficiency": summary.get("parallel_efficiency"),
            "counts": {status: n for status, n in counts.items() if n},
            "interrupted": bool(summary.get("interrupted")),
            "saved": {
                "changed": _figure(saved_changed) or None,
                "cache": _figure(cache.get("saved")) or None,
            },
            "cache": cache_line(cache),
            "notes": [visible(str(note)) for note in summary.get("notes") or ()],
            "chain": [index[p] for p in summary.get("longest_chain") or () if p in index],
            "lanes": max((bar.lane for bar in bars.values()), default=0),
        },
        "columns": list(COLUMNS),
        "rows": rows,
    }


def render_page(summary: Mapping[str, Any], results: Sequence[ScriptResult], run_dir: Path) -> str:
    """``report.html`` of a run: the shell, its script and style, and the data as JSON."""
    script, style = _assets()
    data = json.dumps(
        page_data(summary, results, run_dir), separators=(",", ":"), ensure_ascii=False
    ).translate(_JSON_ESCAPES)
    policy = (
        f"default-src 'none'; script-src 'sha256-{_digest(script)}'; "
        f"style-src 'sha256-{_digest(style)}'; img-src data:"
    )
    title = html.escape(f"orch run {name_text(str(summary.get('run_id', '')))}")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        f"<title>{title}</title>\n<style>{style}</style></head>\n"
        "<body><noscript>This report needs JavaScript; the same run is in report.md and "
        "summary.json beside it.</noscript>\n"
        '<main id="app"></main>\n'
        f'<script id="orch-data" type="application/json">{data}</script>\n'
        f"<script>{script}</script>\n</body></html>\n"
    )
