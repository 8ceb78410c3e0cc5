"""What changed since the last passing run: fingerprints and the run record.

A script's fingerprint is a content hash of its inputs (see
:mod:`orchestrator.inputs`), its effective settings and the interpreter. The
record, ``.orchestrator/record.jsonl`` under the project root, keeps each
script's last fingerprint and status. A line is appended after every script,
whole or not at all, so an interrupted run (or two runs at once) loses no
completed result.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._files import (
    atomic_write_bytes,
    atomic_write_text,
    clear_damaged,
    ensure_state_dir,
    locked,
    state_hint,
    warn_damaged,
)
from .dag import remaining_chains
from .environments import EnvBuildError, Environments
from .errors import WriteError
from .inputs import InputGraph
from .plan import Plan, ScriptJob
from .project import Project
from .tracing import Trace, TraceError, trace_fields, trace_in

__all__ = ["INTERPRETER", "Fingerprints", "Record", "Tracking", "select_changed"]

#: What of the interpreter goes into a fingerprint: another version or
#: virtualenv means other packages, so scripts run again.
INTERPRETER = f"{sys.implementation.name} {sys.version} {sys.executable}"


class Fingerprints:
    """Fingerprints of scripts: inputs, settings, and the interpreter each really runs on.

    The inputs are the static ones and those of the script's last recorded
    trace (see :meth:`InputGraph.sources`). The interpreter part is ours, or
    ``python`` when given, plus the key of the script's isolated environment:
    editing a group's requirements (or its requirements file) changes the
    fingerprints of its scripts.
    """

    def __init__(
        self,
        graph: InputGraph,
        envs: Environments,
        python: str | None = None,
        record: Record | None = None,
    ) -> None:
        self.graph = graph
        self.envs = envs
        self.python = python or ""
        self.record = record
        self._entries: dict[str, dict[str, Any]] | None = None
        self._traces: dict[Path, Trace | TraceError | None] = {}  # parsed once per script

    def entries(self) -> dict[str, dict[str, Any]]:
        """The run record, read once (what the traces come from)."""
        if self._entries is None:
            self._entries = self.record.load() if self.record is not None else {}
        return self._entries

    def trace(self, job: ScriptJob) -> Trace | TraceError | None:
        """The script's last recorded trace; None: it has none (never traced, or not run)."""
        if self.record is None or not job.settings["trace"]:
            return None
        if job.path not in self._traces:
            entry = self.entries().get(self.record.key(job.path))
            self._traces[job.path] = trace_in(entry) if isinstance(entry, dict) else None
        return self._traces[job.path]

    def traces(self, jobs: Iterable[ScriptJob]) -> dict[Path, Trace]:
        """``{script: trace}`` of the scripts among ``jobs`` with a known trace."""
        return {job.path: t for job in jobs if isinstance(t := self.trace(job), Trace)}

    def _interpreter(self, job: ScriptJob) -> str:
        try:
            spec = self.envs.spec_for(job.path, job.settings)
            env = spec.key() if spec is not None else ""
        except EnvBuildError:
            env = "<invalid inline metadata>"
        return f"{INTERPRETER} {self.python} {env}"

    def hashes(self, job: ScriptJob) -> dict[Path, str | None]:
        """The hash of each input of the script as of now (taken as it starts)."""
        trace = self.trace(job)
        known = trace if isinstance(trace, Trace) else None
        return self.graph.hashes(self.graph.inputs(job.path, job.settings, known))

    def of(self, job: ScriptJob) -> str:
        """The fingerprint of one planned script, as of now.

        A script whose recorded trace is unknown gets ``unknown: <why>``,
        which matches no record: it runs again.
        """
        trace = self.trace(job)
        if isinstance(trace, TraceError):
            return f"unknown: {trace}"
        return self.graph.fingerprint(job.path, job.settings, self._interpreter(job), trace)

    def after(self, job: ScriptJob, before: Mapping[Path, str | None], trace: Trace | None) -> str:
        """The fingerprint to record once the script ran, with ``trace`` its new trace.

        Inputs known before the run count with the hashes they had as it
        started (``before``, from :meth:`hashes`), so an edit made while it
        ran is still a change; those only its new trace names, as they are now;
        and those it wrote (a state file it loads and saves) as it left them, so
        that only someone else's edit afterwards is a change.
        """
        inputs = self.graph.inputs(job.path, job.settings, trace)
        left = {self.graph.root / p for p in trace.writes} if trace is not None else set()
        hashes = {
            p: before[p] if p in before and p not in left else self.graph.file_hash(p)
            for p in inputs
        }
        return self.graph.digest(hashes, job.settings, self._interpreter(job))


class Record:
    """The last fingerprint and status of each script: ``.orchestrator/record.jsonl``.

    A journal: each finished script appends one JSON line with a single
    ``write`` in append mode, so an entry is whole or absent (a torn last line
    from a crash is skipped on reading) and nothing earlier is ever rewritten
    in place. The last line for a script wins. :meth:`compact` rewrites the
    journal atomically, under an exclusive lock that appends wait for.
    """

    def __init__(self, project: Project) -> None:
        self.root = project.root
        self.state = project.state_dir
        self.path = self.state / "record.jsonl"
        self._lock = self.state / "record.lock"
        self._damaged = False  # found damaged: the next write starts it anew

    def key(self, script: Path) -> str:
        """The record's key for a script: its path relative to the project root."""
        return Path(os.path.relpath(script, self.root)).as_posix()

    def _lines(self) -> list[dict[str, Any]]:
        """Every whole entry; none when the journal is damaged (it is then rewritten).

        A torn last line (a crash mid-append) is skipped; any other damage (bytes
        that are not UTF-8 JSON, an entry of the wrong shape, a folder) makes the
        whole record count as absent, so every script reruns: never a stale pass.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            return self._damage(exc.strerror or type(exc).__name__)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._damage("not UTF-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        elif lines:
            lines.pop()  # torn by a crash: not an entry yet
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                return self._damage("a line that is not JSON")
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("script"), str)
                and isinstance(entry.get("fingerprint"), str)
            ):
                return self._damage("an entry of the wrong shape")
            entries.append(entry)
        return entries

    def _damage(self, why: str) -> list[dict[str, Any]]:
        warn_damaged(self.path, why)
        self._damaged = True
        return []

    def load(self) -> dict[str, dict[str, Any]]:
        """The latest entry of every script; an unreadable record counts as empty."""
        return {entry["script"]: entry for entry in self._lines()}

    def differs(
        self,
        job: ScriptJob,
        fingerprints: Fingerprints,
        entries: Mapping[str, Any],
        *,
        unrecorded: bool = True,
        unpassed: bool = False,
    ) -> bool:
        """Whether a script's inputs differ from those of its last recorded run.

        ``unrecorded``: what a script with no record counts as. ``unpassed``:
        a script whose last run did not pass counts as differing (``--changed``).
        """
        entry = entries.get(self.key(job.path))
        if not isinstance(entry, dict):
            return unrecorded
        if unpassed and entry.get("status") != "passed":
            return True
        return bool(entry.get("fingerprint") != fingerprints.of(job))

    def update(
        self,
        script: Path,
        fingerprint: str,
        status: str,
        trace: Trace | TraceError | None = None,
        duration: float | None = None,
    ) -> None:
        """Record one script's outcome: append its line to the journal.

        ``duration`` (seconds) is what the next parallel run schedules by.

        A traced run keeps its trace (or why it is unknown) in the same line,
        so the fingerprint and the inputs it covers agree.
        """
        entry: dict[str, Any] = {
            "script": self.key(script),
            "fingerprint": fingerprint,
            "status": status,
            "time": datetime.now(timezone.utc).isoformat(),
        }
        if duration is not None:
            entry["duration"] = round(duration, 6)
        entry.update(trace_fields(trace))
        line = (json.dumps(entry) + "\n").encode()
        ensure_state_dir(self.state)
        try:
            if self._damaged or self.path.is_dir():
                with locked(self._lock):
                    clear_damaged(self.path)
                    atomic_write_bytes(self.path, line, durable=False)
                self._damaged = False
                return
            with locked(self._lock, shared=True):
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    written = 0
                    while written < len(line):  # a short write (a disk filling up) goes on
                        written += os.write(fd, line[written:])
                finally:
                    os.close(fd)
        except WriteError as exc:
            raise WriteError(self.path, exc.cause, state_hint(self.path)) from None
        except OSError as exc:
            raise WriteError(self.path, exc, state_hint(self.path)) from None

    def compact(self, slack: int = 4) -> None:
        """Rewrite the journal with one line per script once it has ``slack`` times more."""
        lines = self._lines()
        latest = {entry["script"]: entry for entry in lines}
        if len(lines) <= slack * max(len(latest), 16):
            return
        try:
            with locked(self._lock):
                latest = self.load()  # appends may have landed since
                text = "".join(json.dumps(entry) + "\n" for entry in latest.values())
                atomic_write_text(self.path, text, durable=False)
        except WriteError as exc:
            raise WriteError(self.path, exc.cause, state_hint(self.path)) from None
        except OSError as exc:
            raise WriteError(self.path, exc, state_hint(self.path)) from None


#: Seconds a script without a recorded duration is expected to take, when no
#: script of the run has one either (otherwise: their median).
DEFAULT_ESTIMATE = 1.0


def estimates(plan: Plan, entries: Mapping[str, Any], record: Record) -> dict[str, float]:
    """``{script path: expected seconds}`` from each script's last recorded duration.

    A script with no history gets the median of those that have one, or
    :data:`DEFAULT_ESTIMATE`.
    """
    known: dict[str, float] = {}
    for job in plan.jobs:
        entry = entries.get(record.key(job.path))
        duration = entry.get("duration") if isinstance(entry, dict) else None
        if isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0:
            known[job.rel] = float(duration)
    default = statistics.median(known.values()) if known else DEFAULT_ESTIMATE
    return {job.rel: known.get(job.rel, default) for job in plan.jobs}


def expected_chains(plan: Plan, entries: Mapping[str, Any], record: Record) -> dict[str, float]:
    """Each script's expected remaining chain: what a parallel run starts first by.

    ``entries`` is the loaded record (:meth:`Record.load`). Scripts that are up
    to date (``plan.fresh``) take no time.
    """
    cost = estimates(plan, entries, record)
    cost.update(dict.fromkeys(plan.fresh, 0.0))
    return remaining_chains(plan.graph(), cost)


class Tracking:
    """One project's change tracking, assembled in one place: graph, record, fingerprints.

    ``orch run``, ``--changed``, ``--dry-run`` and ``orch watch`` each hold one.
    The fingerprints depend on the plan's ``environments:`` groups, which a
    config edit can change, so they are made per plan.
    """

    def __init__(
        self, project: Project, python: str | None = None, graph: InputGraph | None = None
    ) -> None:
        self.project = project
        self.python = python
        self.graph = graph or InputGraph(project)
        self.record = Record(project)

    def environments(self, plan: Plan) -> Environments:
        """The environment cache under the plan's groups."""
        return Environments(self.project, plan.groups)

    def fingerprints(self, plan: Plan, envs: Environments | None = None) -> Fingerprints:
        """Fingerprints under the plan's groups (``envs``: an environment cache to share)."""
        return Fingerprints(self.graph, envs or self.environments(plan), self.python, self.record)

    def traces(self, plan: Plan) -> dict[Path, Trace]:
        """The known traces of the plan's scripts, from the record as it is now."""
        return self.fingerprints(plan).traces(plan.jobs)


def select_changed(
    plan: Plan,
    fingerprints: Fingerprints,
    record: Record,
    entries: Mapping[str, Any] | None = None,
) -> Plan:
    """The plan with every script that is up to date marked ``fresh``.

    A script runs when it has no record, its last run did not pass, or its
    fingerprint differs; so do the scripts that depend on one that runs
    (through ``depends_on``, transitively). The rest are fresh: reported as
    skipped, ``up-to-date``. A script whose recorded trace is unknown runs,
    and a note of the plan says why.
    """
    entries = fingerprints.entries() if entries is None else entries
    stale = {
        job.rel for job in plan.jobs if record.differs(job, fingerprints, entries, unpassed=True)
    }
    notes = list(plan.notes)
    for job in plan.jobs:
        trace = fingerprints.trace(job)
        if isinstance(trace, TraceError) and job.rel in stale:
            notes.append(f"{job.rel} runs: what its last run used is unknown ({trace})")
    stale.update(plan.dependents_of(stale))
    fresh = frozenset(job.rel for job in plan.jobs if job.rel not in stale)
    return replace(plan, fresh=fresh, notes=notes)
