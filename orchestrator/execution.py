"""Run a plan of scripts: parallelism, fail-fast, interrupts, and events to reporters.

The engine never prints; it calls reporters in the main thread. Results come
back in plan (discovery) order whatever order the scripts finish in.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .plan import RunOptions, ScriptJob
from .reporting import NOT_OK, Reporter, RunInfo, exit_code_for
from .runner import run_script, skipped_result, terminate_all

__all__ = ["RunOutcome", "execute", "new_run_id"]

_TICK = 0.1


def new_run_id(now: datetime | None = None) -> str:
    """A UTC timestamp plus a random suffix: sortable, and unique for runs in the same second."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunOutcome:
    """The results of a run in plan order, and how it ended."""

    run: RunInfo
    results: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        """0 all passed or skipped, 1 something failed, 130 interrupted."""
        return exit_code_for(self.results, self.run.interrupted)


def _run_job(job: ScriptJob, scripts_dir: Path, run_dir: Path | None) -> dict[str, Any]:
    settings = job.settings
    log_dir = None
    if run_dir is not None:
        log_dir = run_dir / "logs" / Path(job.rel).parent
    return run_script(
        job.path,
        timeout=settings["timeout"],
        env=settings["env"],
        cwd=settings["cwd"],
        args=settings["args"],
        allowed_exit_codes=settings["allowed_exit_codes"],
        log_dir=log_dir,
        scripts_dir=scripts_dir,
    )


def execute(
    jobs: Sequence[ScriptJob],
    options: RunOptions,
    reporters: Sequence[Reporter] = (),
    *,
    stop: threading.Event | None = None,
    write_reports: bool = True,
) -> RunOutcome:
    """Run ``jobs`` with up to ``options.jobs`` at once and return every result.

    Setting ``stop`` (a signal handler does) stops starting scripts and kills
    the running ones' process groups; they end with status ``error`` and
    reason ``interrupted``, and the rest are ``skipped``.
    """
    stop = stop or threading.Event()
    scripts_dir = options.scripts_dir.resolve()
    start = datetime.now(timezone.utc)
    began = time.monotonic()
    run_id = new_run_id(start)
    run = RunInfo(
        run_id=run_id,
        scripts_dir=scripts_dir,
        project_root=options.project_root,
        total=len(jobs),
        run_dir=options.reports_dir / run_id if write_reports else None,
        command=options.command,
        start_time=start.isoformat(),
    )
    results: list[dict[str, Any] | None] = [None] * len(jobs)

    def emit(method: str, *args: Any) -> None:
        for reporter in reporters:
            getattr(reporter, method)(*args)

    def finish(index: int, result: dict[str, Any]) -> None:
        results[index] = result
        emit("script_finished", result)

    emit("run_started", run)
    pending = list(range(len(jobs)))
    pending.reverse()  # pop() from the end keeps discovery order
    running: dict[Future[dict[str, Any]], int] = {}
    failed_first: str | None = None
    stopped_reason: str | None = None
    with ThreadPoolExecutor(max_workers=max(1, options.jobs), thread_name_prefix="orch") as pool:
        try:
            while pending or running:
                if stop.is_set() and stopped_reason is None:
                    stopped_reason = "not started: the run was interrupted"
                    terminate_all("interrupted")
                while pending and len(running) < options.jobs and stopped_reason is None:
                    index = pending.pop()
                    job = jobs[index]
                    if job.settings["skip"]:
                        reason = job.settings["skip_reason"] or "skipped by config"
                        finish(index, skipped_result(job.path, scripts_dir, reason))
                        continue
                    future = pool.submit(_run_job, job, scripts_dir, run.run_dir)
                    running[future] = index
                    emit(
                        "script_started",
                        {"script": str(job.path), "path": job.rel, "name": job.path.name},
                    )
                if stopped_reason is not None:
                    while pending:
                        index = pending.pop()
                        finish(index, skipped_result(jobs[index].path, scripts_dir, stopped_reason))
                if not running:
                    continue
                done, _ = wait(running, timeout=_TICK, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    result = future.result()
                    finish(index, result)
                    if (
                        result["status"] in NOT_OK
                        and options.fail_fast
                        and failed_first is None
                        and not stop.is_set()
                    ):
                        failed_first = result["path"]
                        stopped_reason = f"not started: --fail-fast after {failed_first} failed"
                emit("tick")
        finally:
            if running:  # an exception of our own: leave no child behind
                terminate_all("interrupted")
    run.interrupted = stop.is_set()
    run.end_time = datetime.now(timezone.utc).isoformat()
    run.wall_time = round(time.monotonic() - began, 6)
    final = [r for r in results if r is not None]
    emit("run_finished", run, final)
    return RunOutcome(run, final)
