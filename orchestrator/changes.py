"""What changed since the last passing run: fingerprints and the run record.

A script's fingerprint is a content hash of its inputs (see
:mod:`orchestrator.inputs`), its effective settings and the interpreter. The
record, ``.orchestrator/record.json`` under the project root, keeps each
script's last fingerprint and status. It is updated after every script, under
a file lock and by atomic rename, so an interrupted run (or two runs at once)
loses no completed result.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._files import STATE_DIR, atomic_write_text, locked, state_dir
from .environments import EnvBuildError, Environments
from .inputs import InputGraph
from .plan import Plan, ScriptJob

__all__ = ["INTERPRETER", "Fingerprints", "Record", "select_changed"]

#: What of the interpreter goes into a fingerprint: another version or
#: virtualenv means other packages, so scripts run again.
INTERPRETER = f"{sys.implementation.name} {sys.version} {sys.executable}"


class Fingerprints:
    """Fingerprints of scripts: inputs, settings, and the interpreter each really runs on.

    The interpreter part is ours, or ``python`` when given, plus the key of the
    script's isolated environment: editing a group's requirements (or its
    requirements file) changes the fingerprints of its scripts.
    """

    def __init__(self, graph: InputGraph, envs: Environments, python: str | None = None) -> None:
        self.graph = graph
        self.envs = envs
        self.python = python or ""

    def of(self, job: ScriptJob) -> str:
        """The fingerprint of one planned script, as of now."""
        try:
            spec = self.envs.spec_for(job.path, job.settings)
            env = spec.key() if spec is not None else ""
        except EnvBuildError:
            env = "<invalid inline metadata>"
        interpreter = f"{INTERPRETER} {self.python} {env}"
        return self.graph.fingerprint(job.path, job.settings, interpreter)


class Record:
    """The last fingerprint and status of each script, in ``.orchestrator/record.json``."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self.path = project_root / STATE_DIR / "record.json"
        self._lock_path = project_root / STATE_DIR / "record.lock"

    def key(self, script: Path) -> str:
        """The record's key for a script: its path relative to the project root."""
        return Path(os.path.relpath(script, self.root)).as_posix()

    def load(self) -> dict[str, dict[str, Any]]:
        """Every entry; an unreadable record counts as empty (everything runs)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

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

    def update(self, script: Path, fingerprint: str, status: str) -> None:
        """Record one script's outcome: read, change one entry, rename into place."""
        entry = {
            "fingerprint": fingerprint,
            "status": status,
            "time": datetime.now(timezone.utc).isoformat(),
        }
        state_dir(self.root)
        with locked(self._lock_path):
            data = self.load()
            data[self.key(script)] = entry
            atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True), durable=False)


def changed_plan(plan: Plan, options: Any) -> Plan:
    """``select_changed`` with the project's own graph, environments and record."""
    from .environments import Environments

    root = options.project_root
    graph = InputGraph(root, options.scripts_dir.resolve())
    fingerprints = Fingerprints(graph, Environments(root, plan.groups), options.python)
    return select_changed(plan, fingerprints, Record(root))


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
    skipped, ``up-to-date``.
    """
    entries = record.load() if entries is None else entries
    stale = {
        job.rel for job in plan.jobs if record.differs(job, fingerprints, entries, unpassed=True)
    }
    stale.update(plan.dependents_of(stale))
    fresh = frozenset(job.rel for job in plan.jobs if job.rel not in stale)
    return replace(plan, fresh=fresh)
