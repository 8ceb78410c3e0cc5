"""report.html with 10,000 scripts: its size, the time to write it, and Chromium's time to draw it.

Run: ``python benchmarks/page.py [--scripts 10000] [--repeat 3]`` (needs Debian's chromium)

The results are made, not run (a real run of 10,000 scripts takes minutes and
says nothing more about the page): every script prints three lines, one in a
hundred fails with a 20-line traceback, each has twelve earlier durations,
two run at once. Measured:

* the size of report.html (target: at most 5 MB);
* ``generate_report`` (every file of the run, the page among them);
* Chromium, headless, from ``file://``: the time from navigation to the page
  saying it is drawn (target: at most 2 s), the median of ``--repeat`` loads;
* the time to filter the table to one name, and to sort it by duration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import print_targets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import CHROMIUM, MISSING, browser, file_url

from orchestrator.reports import generate_report
from orchestrator.results import ScriptResult, Status


def _results(count: int) -> list[ScriptResult]:
    results = []
    for i in range(count):
        failed = i % 100 == 0
        start = 1_000_000 + (i // 2) * 25  # milliseconds: two at once, 25 ms each
        results.append(
            ScriptResult(
                script=f"/p/scripts/group{i % 50}/check_{i}.py",
                name=f"check_{i}.py",
                path=f"group{i % 50}/check_{i}.py",
                subdirectory=f"group{i % 50}",
                status=Status.FAILED if failed else Status.PASSED,
                start_time=_iso(start),
                end_time=_iso(start + 24),
                exit_code=1 if failed else 0,
                execution_time=0.024,
                stdout=f"loading group {i % 50}\nchecked {i} rows\n\x1b[32mok\x1b[0m\n",
                stderr=("Traceback (most recent call last):\n  ...\nValueError: bad row\n" * 7)
                if failed
                else "",
                error="exit code 1" if failed else None,
                peak_memory_mb=12.5,
                cpu_time=0.02,
                attempts=1,
                why=("full run",),
                extra={"recent": [0.021, 0.025, 0.023, 0.026] * 3},
            )
        )
    return results


def _iso(milliseconds: int) -> str:
    seconds, ms = divmod(milliseconds, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-12-05T{hours % 24:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}000+00:00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scripts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit(MISSING)
    results = _results(args.scripts)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        began = time.perf_counter()
        paths = generate_report(
            results, out, run_id="bench", wall_time=args.scripts * 0.0125, jobs=2
        )
        written = time.perf_counter() - began
        size = paths["html"].stat().st_size / 1e6
        loads, drawn, filters, sorts = [], [], [], []
        with browser() as page:
            for _ in range(args.repeat):
                began = time.perf_counter()
                page.open(file_url(paths["html"]))
                loads.append(time.perf_counter() - began)
                drawn.append(float(page.eval("document.body.dataset.renderMs")) / 1000)
                # The box waits for typing to pause: timed until the table shows one row.
                filters.append(
                    page.eval(
                        """new Promise(resolve => {
                            const box = document.getElementById('filter');
                            const shown = document.getElementById('shown');
                            const began = performance.now();
                            new MutationObserver((_, observer) => {
                                if (/showing 1 of/.test(shown.textContent)) {
                                    observer.disconnect();
                                    resolve(performance.now() - began);
                                }
                            }).observe(shown, {childList: true, subtree: true});
                            box.value = 'check_4242.py';
                            box.dispatchEvent(new Event('input', {bubbles: true}));
                        })"""
                    )
                    / 1000
                )
                sorts.append(
                    page.eval(
                        """new Promise(resolve => {
                            const box = document.getElementById('filter');
                            const shown = document.getElementById('shown');
                            const sort = () => {
                                const header = [...document.querySelectorAll('#scripts th')]
                                    .find(th => /duration|time/i.test(th.textContent));
                                const began = performance.now();
                                (header.querySelector('button') || header).click();
                                resolve(performance.now() - began);
                            };
                            new MutationObserver((_, observer) => {
                                if (!/showing 1 of/.test(shown.textContent)) {
                                    observer.disconnect();
                                    sort();
                                }
                            }).observe(shown, {childList: true, subtree: true});
                            box.value = '';
                            box.dispatchEvent(new Event('input', {bubbles: true}));
                        })"""
                    )
                    / 1000
                )
            errors = page.errors()
            rows = page.eval("document.querySelectorAll('#scripts tr.row').length")
    load, clock = statistics.median(loads), statistics.median(drawn)
    print(
        f"{args.scripts} scripts: report.html {size:.2f} MB, all the run's files in {written:.2f} s"
    )
    print(f"Chromium: navigation to drawn {load:.2f} s (the page's own clock: {clock:.2f} s)")
    print(
        f"filter to one name {statistics.median(filters) * 1000:.0f} ms (typing pause included), ",
        end="",
    )
    print(f"sort by duration {statistics.median(sorts) * 1000:.0f} ms")
    print(
        f"rows in the document: {rows} (drawn as they scroll into view); errors: {errors or 'none'}"
    )
    print_targets(
        [
            ("report.html size, 10,000 scripts (MB)", size, 5.0, ""),
            ("Chromium: navigation to drawn (s)", statistics.median(loads), 2.0, "s"),
        ]
    )


if __name__ == "__main__":
    main()
