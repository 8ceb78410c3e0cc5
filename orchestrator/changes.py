"""Why a script runs: what it ran with last time, what it would run with now, the difference.

What decides a script's outcome is a :class:`Snapshot`: the hash of each of
its inputs (see :mod:`orchestrator.inputs`), its effective settings, the
interpreter, the versions of the distributions it imported and the values of
the environment variables it read. The record, ``.orchestrator/record.jsonl``
under the project root, keeps each script's last snapshot and status; a line
is appended after every script, whole or not at all, so an interrupted run (or
two runs at once) loses no completed result.

Every "does it run?" is one :class:`Decision`, made here by
:meth:`Snapshots.decide` for ``--changed``, ``orch watch`` and ``orch why``
alike: it lists what differs (``src/util.py changed``, ``six 1.16.0 -> 1.17.0``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._files import Journal, ensure_state_dir
from .config import Settings
from .dag import remaining_chains
from .environments import EnvBuildError, Environments, interpreter_identity
from .inputs import InputGraph
from .plan import Plan, ScriptJob
from .project import Project
from .tracing import Trace, TraceError, trace_fields, trace_in

__all__ = [
    "RECORD_VERSION",
    "Decision",
    "Record",
    "Snapshot",
    "Snapshots",
    "Tracking",
    "infer_order",
    "select_changed",
    "stale",
]

#: The record's line format. A line of another version is read as "recorded by
#: an older orch": the script runs once, and its next line has this format.
RECORD_VERSION = 3
#: Hex digits of an input's SHA-256 the record keeps: 64 bits tell an edit apart, and a
#: tree whose scripts each import hundreds of modules keeps a record half the size.
RECORD_DIGEST = 16
#: The hash kept for an input that changed while the script ran (or as it started):
#: it matches no content, so the next check reruns the script and says so.
EDITED = "changed while it ran"
#: Reasons listed per script; the rest are counted (``and 3 more``).
MAX_REASONS = 12
#: What a script's last status means for ``--changed``.
_LAST_RUN = {
    "failed": "last run failed",
    "timeout": "last run timed out",
    "error": "last run errored",
    "skipped": "last run skipped",
}


def _short_hash(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:16]


@functools.lru_cache(maxsize=1024)
def setting_hashes(settings: Settings) -> dict[str, str]:
    """A short hash of each effective setting, ``env`` one per variable (``env.API_URL``).

    Hashes, not values: a config ``env:`` may hold a secret, and the record is a file.
    Remembered by value (most scripts of a tree share their settings); the dict
    returned is shared, never changed.
    """
    hashes: dict[str, str] = {}
    for name, value in settings.to_dict().items():
        if name == "env" and isinstance(value, Mapping):
            hashes.update({f"env.{k}": _short_hash(v) for k, v in value.items()})
        else:
            hashes[name] = _short_hash(value)
    return hashes


@dataclass(frozen=True)
class Snapshot:
    """What decides a script's outcome, at one moment: what the record keeps of a run.

    ``inputs`` maps each input (a path relative to the project root) to its
    content hash, None when it does not exist; ``settings`` each effective
    setting to a short hash (:func:`setting_hashes`); ``python`` the
    interpreter's identity and isolated environment; ``packages`` each
    distribution the script imported to its version; ``environ`` each inherited
    environment variable it read to a short hash of its value (None: unset).
    """

    inputs: Mapping[str, str | None]
    settings: Mapping[str, str]
    python: Mapping[str, str]
    packages: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str | None] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready fields of a record line; absent inputs are left out."""
        return {
            "inputs": {rel: h for rel, h in self.inputs.items() if h is not None},
            "settings": dict(self.settings),
            "python": dict(self.python),
            "packages": dict(self.packages),
            "environ": dict(self.environ),
        }

    def fingerprint(self) -> str:
        """A short hash of it all: two runs with equal fingerprints ran with the same inputs."""
        return _short_hash(self.to_record())

    @classmethod
    def from_record(cls, entry: Mapping[str, Any]) -> Snapshot:
        """Read :meth:`to_record`'s fields back from a record line (checked by the Record)."""
        return cls(
            entry["inputs"], entry["settings"], entry["python"], entry["packages"], entry["environ"]
        )


def _str_map(value: Any, *, nullable: bool = False) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and (isinstance(v, str) or (nullable and v is None))
        for k, v in value.items()
    )


def _current(entry: Mapping[str, Any]) -> bool:
    """Whether a record line has this version's format (else an older orch wrote it)."""
    return entry.get("v") == RECORD_VERSION


def _valid_entry(entry: Any) -> bool:
    """Whether a record line has this version's shape (an older one is checked less)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("script"), str):
        return False
    if not _current(entry):
        return True  # an older orch's line: never compared, so its shape does not matter
    return (
        isinstance(entry.get("status"), str)
        and _str_map(entry.get("inputs"))
        and _str_map(entry.get("settings"))
        and _str_map(entry.get("python"))
        and _str_map(entry.get("packages"))
        and _str_map(entry.get("environ"), nullable=True)
    )


@dataclass(frozen=True)
class Decision:
    """Whether a script runs, and why: the one answer ``--changed``, watch and ``orch why`` give."""

    runs: bool
    #: What differs from its last recorded run, each a short phrase (``src/util.py changed``).
    why: tuple[str, ...] = ()
    #: For a script that does not run: when its last run (which passed) ended.
    since: str | None = None


def differences(then: Snapshot, now: Snapshot, hash_of: Callable[[str], str | None]) -> list[str]:
    """What differs between two snapshots of a script, in a few words each.

    ``hash_of`` gives the current hash of an input ``then`` had and ``now`` has
    not (a ``watch:`` file deleted since is ``removed``).
    """
    why: list[str] = []
    for rel, digest in now.inputs.items():
        old = then.inputs.get(rel)
        if old == digest:
            continue
        if old is None:
            why.append(f"new input {rel}")
        elif digest is None:
            why.append(f"{rel} removed")
        elif old == EDITED:
            why.append(f"{rel} changed while it ran")
        else:
            why.append(f"{rel} changed")
    why.extend(
        f"{rel} removed"
        for rel in sorted(then.inputs.keys() - now.inputs.keys())
        if hash_of(rel) is None
    )
    settings = sorted(
        name
        for name in then.settings.keys() | now.settings.keys()
        if then.settings.get(name) != now.settings.get(name)
    )
    if settings:
        why.append(f"settings changed: {', '.join(settings)}")
    was, now_python = then.python, now.python
    for part in ("version", "build", "path"):
        if was.get(part) != now_python.get(part):
            why.append(f"interpreter changed: {was.get(part)} -> {now_python.get(part)}")
            break
    if was.get("env") != now_python.get("env"):
        why.append("isolated environment changed")
    for dist, version in sorted(then.packages.items()):
        current = now.packages.get(dist)
        if current != version:
            why.append(f"{dist} {version} -> {current}" if current else f"{dist} {version} removed")
    why.extend(
        f"environment variable {name} changed"
        for name in sorted(then.environ)
        if now.environ.get(name) != then.environ[name]
    )
    if len(why) > MAX_REASONS:
        why[MAX_REASONS - 1 :] = [f"and {len(why) - MAX_REASONS + 1} more"]
    return why


def _recorded(digest: str | None) -> str | None:
    """An input's hash as the record keeps it (see :data:`RECORD_DIGEST`)."""
    return digest if digest is None or digest == EDITED else digest[:RECORD_DIGEST]


class Snapshots:
    """Snapshots of scripts and the decisions they give: inputs, settings, interpreter.

    The inputs are the static ones and those of the script's last recorded
    trace (see :meth:`InputGraph.sources`). The interpreter is ours, or
    ``python`` when given, plus the key of the script's isolated environment:
    editing a group's requirements (or its requirements file) reruns its scripts.
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
        self._inside = str(graph.root).rstrip("/") + "/"

    def entries(self) -> dict[str, dict[str, Any]]:
        """The run record, read once (what the traces come from)."""
        if self._entries is None:
            self._entries = self.record.load() if self.record is not None else {}
        return self._entries

    def entry(self, job: ScriptJob) -> dict[str, Any] | None:
        """The script's last record line, if it has one."""
        if self.record is None:
            return None
        return self.entries().get(self.record.key(job.path))

    def trace(self, job: ScriptJob) -> Trace | TraceError | None:
        """The script's last recorded trace; None: it has none (never traced, or not run)."""
        if self.record is None or not job.settings.trace:
            return None
        if job.path not in self._traces:
            entry = self.entry(job)
            current = isinstance(entry, dict) and _current(entry)
            self._traces[job.path] = trace_in(entry) if current else None  # type: ignore[arg-type]
        return self._traces[job.path]

    def traces(self, jobs: Iterable[ScriptJob]) -> dict[Path, Trace]:
        """``{script: trace}`` of the scripts among ``jobs`` with a known trace."""
        return {job.path: t for job in jobs if isinstance(t := self.trace(job), Trace)}

    def _python(self, job: ScriptJob) -> dict[str, str]:
        try:
            spec = self.envs.spec_for(job.path, job.settings.environment)
            env = spec.key() if spec is not None else ""
        except EnvBuildError:
            env = "<invalid inline metadata>"
        return {**self._identity, "env": env}

    @functools.cached_property
    def _identity(self) -> dict[str, str]:
        # Once per run: its realpath and stat cost more than a trivial script's whole record.
        return interpreter_identity(self.python)

    def _rel(self, path: Path) -> str:
        text = str(path)
        if text.startswith(self._inside):
            return text[len(self._inside) :]  # the common case, without relpath's work
        return Path(os.path.relpath(path, self.graph.root)).as_posix()

    def _environ(self, job: ScriptJob, names: Iterable[str]) -> dict[str, str | None]:
        # The value the script gets: the config's env: over ours (see runner).
        given = job.settings.env
        values = {name: given.get(name, os.environ.get(name)) for name in names}
        return {name: None if v is None else _short_hash(v) for name, v in values.items()}

    def _snapshot(
        self, job: ScriptJob, hashes: Mapping[Path, str | None], trace: Trace | None
    ) -> Snapshot:
        from .distributions import installed

        return Snapshot(
            inputs={self._rel(p): _recorded(h) for p, h in hashes.items()},
            settings=setting_hashes(job.settings),
            python=self._python(job),
            packages=installed(trace.packages) if trace is not None else {},
            environ=self._environ(job, trace.environ) if trace is not None else {},
        )

    def now(self, job: ScriptJob) -> Snapshot:
        """The script's snapshot as of now, with the inputs its last trace names."""
        trace = self.trace(job)
        known = trace if isinstance(trace, Trace) else None
        inputs = self.graph.inputs(job.path, job.settings.watch, known)
        return self._snapshot(job, self.graph.hashes(inputs), known)

    def after(
        self, job: ScriptJob, before: Snapshot, trace: Trace | None, started_ns: int
    ) -> Snapshot:
        """The snapshot to record once the script ran, with ``trace`` its new trace.

        Inputs known before the run count with the hashes they had as it
        started (``before``, from :meth:`now`), so an edit made while it ran is
        still a change. Those only its new trace names count as they are now,
        unless they changed after it started (``started_ns``, on the clock
        file times are stamped with): those are kept as :data:`EDITED`, never
        as "passed with these inputs". Those it wrote (a state file it loads
        and saves) count as it left them: only someone else's edit is a change.
        """
        inputs = self.graph.inputs(job.path, job.settings.watch, trace)
        left = {self.graph.root / p for p in trace.writes} if trace is not None else set()
        hashes: dict[Path, str | None] = {}
        for path in inputs:
            rel = self._rel(path)
            if rel in before.inputs and path not in left:
                hashes[path] = before.inputs[rel]
                continue
            digest = self.graph.file_hash(path)
            if digest is not None and path not in left and _stamped_since(path, started_ns):
                digest = EDITED
            hashes[path] = digest
        return self._snapshot(job, hashes, trace)

    def decide(self, job: ScriptJob, *, unpassed: bool = True) -> Decision:
        """Whether the script runs, and why: what differs from its last recorded run.

        ``unpassed``: a script whose last run did not pass runs (``--changed``;
        ``orch watch`` reruns a failed script only when something changed).
        """
        entry = self.entry(job)
        if not isinstance(entry, dict):
            return Decision(True, ("new script",))
        if not _current(entry):
            return Decision(True, ("recorded by an older orch",))
        why = []
        if unpassed and entry["status"] != "passed":
            why.append(_LAST_RUN.get(entry["status"], f"last run {entry['status']}"))
        trace = self.trace(job)
        if isinstance(trace, TraceError):
            why.append(f"inputs unknown: {trace}")
        then = Snapshot.from_record(entry)
        root = self.graph.root
        why += differences(then, self.now(job), lambda rel: self.graph.file_hash(root / rel))
        return Decision(bool(why), tuple(why), None if why else entry.get("time"))


def incomplete(job: ScriptJob, trace: Trace | TraceError | None) -> tuple[str, ...]:
    """Where orchestrator's knowledge of what ``job`` used ends, from ``trace``: the
    programs it ran whose reads are not traced, the files outside the project it read,
    or ``not traced (trace: false)``. Empty: every input it used is followed."""
    if not job.settings.trace:
        return ("not traced (trace: false)",)
    return trace.gaps() if isinstance(trace, Trace) else ()


def _stamped_since(path: Path, started_ns: int) -> bool:
    """Whether ``path`` was modified (content or inode) at or after ``started_ns``."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    return max(st.st_mtime_ns, st.st_ctime_ns) >= started_ns


def file_clock_ns() -> int:
    """Now, on the clock the kernel stamps file times with (coarse on Linux).

    A file written after this moment has a time at or after it, whichever
    clock the file system uses: the coarse one lags the precise one.
    """
    coarse = getattr(time, "CLOCK_REALTIME_COARSE", 5 if sys.platform == "linux" else None)
    if coarse is not None:
        try:
            return time.clock_gettime_ns(coarse)
        except OSError:
            pass
    return time.time_ns() - 20_000_000  # no coarse clock: a margin instead


class Record:
    """The last fingerprint and status of each script: ``.orchestrator/record.jsonl``.

    A :class:`~orchestrator._files.Journal`: each finished script appends one
    line, whole or absent, and the last line for a script wins. A damaged
    record counts as empty, so every script reruns: never a stale pass.
    :meth:`compact` rewrites it with one line per script.
    """

    def __init__(self, project: Project) -> None:
        self.root = project.root
        self.state = project.state_dir
        self.path = self.state / "record.jsonl"
        self.journal = Journal(self.path, self.state / "record.lock", _valid_entry)
        self._older = False  # holds an older orch's lines (said once)
        self._checked: list[dict[str, Any]] | None = None  # the lines last checked for that

    def key(self, script: Path) -> str:
        """The record's key for a script: its path relative to the project root."""
        return Path(os.path.relpath(script, self.root)).as_posix()

    def _lines(self) -> list[dict[str, Any]]:
        lines = self.journal.read()
        if lines is not self._checked:
            self._checked = lines
            if not self._older and not all(map(_current, lines)):
                self._older = True
                _say_older(self.path)
        return lines

    def load(self) -> dict[str, dict[str, Any]]:
        """The latest entry of every script; an unreadable record counts as empty."""
        return {entry["script"]: entry for entry in self._lines()}

    def update(
        self,
        script: Path,
        snapshot: Snapshot,
        status: str,
        trace: Trace | TraceError | None = None,
        duration: float | None = None,
    ) -> None:
        """Record one script's outcome: append its line to the journal.

        ``snapshot`` is what it ran with (:meth:`Snapshots.after`); ``duration``
        (seconds) is what the next parallel run schedules by. A traced run keeps
        its trace (or why it is unknown) in the same line, so the inputs and the
        trace that names them agree.
        """
        entry: dict[str, Any] = {
            "v": RECORD_VERSION,
            "script": self.key(script),
            "status": status,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if duration is not None:
            entry["duration"] = round(duration, 6)
        entry.update(snapshot.to_record())
        entry.update(trace_fields(trace))
        ensure_state_dir(self.state)
        if self._older:  # written anew without an older orch's lines
            self.journal.rewrite(lambda lines: [*_latest(lines), entry])
            self._older = False
        else:
            self.journal.append([entry])

    def compact(self, slack: int = 4) -> None:
        """Rewrite the journal with one line per script once it has ``slack`` times more."""
        lines = self._lines()
        if len(lines) > slack * max(len({e["script"] for e in lines}), 16):
            self.journal.rewrite(_latest)


def _latest(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last current line of each script."""
    return [e for e in {e["script"]: e for e in lines}.values() if _current(e)]


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
    from statistics import median  # its fractions and decimal cost 4 ms at start-up

    default = median(known.values()) if known else DEFAULT_ESTIMATE
    return {job.rel: known.get(job.rel, default) for job in plan.jobs}


def expected_chains(plan: Plan, entries: Mapping[str, Any], record: Record) -> dict[str, float]:
    """Each script's expected remaining chain: what a parallel run starts first by.

    ``entries`` is the loaded record (:meth:`Record.load`). Scripts that are up
    to date (``plan.fresh``) take no time.
    """
    cost = estimates(plan, entries, record)
    cost.update(dict.fromkeys(plan.fresh, 0.0))
    return remaining_chains(plan.order(), cost)


class Tracking:
    """One project's change tracking, assembled in one place: graph, record, snapshots.

    ``orch run``, ``--changed``, ``--dry-run``, ``orch watch`` and ``orch why``
    each hold one. Snapshots depend on the plan's ``environments:`` groups,
    which a config edit can change, so they are made per plan.
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

    def snapshots(self, plan: Plan, envs: Environments | None = None) -> Snapshots:
        """Snapshots under the plan's groups (``envs``: an environment cache to share)."""
        return Snapshots(self.graph, envs or self.environments(plan), self.python, self.record)

    def traces(self, plan: Plan) -> dict[Path, Trace]:
        """The known traces of the plan's scripts, from the record as it is now."""
        return self.snapshots(plan).traces(plan.jobs)


def stale(
    plan: Plan,
    snapshots: Snapshots,
    candidates: Iterable[str] | None = None,
    *,
    unpassed: bool = True,
    recorded_only: bool = False,
) -> dict[str, tuple[str, ...]]:
    """``{script: why}`` of the scripts that run, by their decisions, and their dependents.

    ``candidates``: the scripts to decide on (default: all). ``unpassed``: a
    script whose last run did not pass runs (``--changed``; ``orch watch``
    reruns one only when something changed). ``recorded_only``: a script that
    never ran is left alone. A script that depends (``depends_on``,
    transitively) on one that runs runs too.
    """
    jobs = {job.rel: job for job in plan.jobs}
    why: dict[str, tuple[str, ...]] = {}
    with snapshots.graph.batch():
        for rel in sorted(jobs if candidates is None else candidates):
            job = jobs[rel]
            if recorded_only and snapshots.entry(job) is None:
                continue
            decision = snapshots.decide(job, unpassed=unpassed)
            if decision.runs:
                why[rel] = decision.why
    for dependent, via in plan.dependents_of(why).items():
        why[dependent] = (f"depends on {via}, which runs",)
    return why


def select_changed(plan: Plan, snapshots: Snapshots) -> Plan:
    """The plan with every script that is up to date marked ``fresh``, and why the rest run.

    ``--changed``: a script runs when its decision says so (no record, its last
    run did not pass, or something it used differs), and so do its
    dependents (see :func:`stale`). The rest are fresh: reported as skipped,
    ``up-to-date``.
    """
    why = stale(plan, snapshots)
    fresh = frozenset(job.rel for job in plan.jobs if job.rel not in why)
    return replace(plan, fresh=fresh, why=why)


#: Inferred-order notes said at most (one per broken cycle), the rest counted.
MAX_ORDER_NOTES = 5


def infer_order(plan: Plan, traces: Mapping[Path, Trace]) -> Plan:
    """The plan with each script ordered after those that write a file it reads.

    From their last traces: a script that read a file another one wrote (and
    did not read: a file several scripts load and save is shared state, not a
    hand-off) starts after that writer ends, whatever its outcome, without a
    ``depends_on``. An inferred edge that would close a cycle (two scripts
    that each read what the other writes, or against a ``depends_on``) is left
    out, and a note says so in one line.
    """
    writers: dict[str, list[str]] = {}
    for job in plan.jobs:
        trace = traces.get(job.path)
        if trace is not None:
            for written in set(trace.writes) - set(trace.reads):
                writers.setdefault(written, []).append(job.rel)
    if not writers:
        return plan
    order = plan.graph()
    after: dict[str, list[str]] = {}
    broken: list[str] = []
    for job in plan.jobs:
        trace = traces.get(job.path)
        if trace is None:
            continue
        for read in trace.reads:
            for writer in writers.get(read, ()):
                if writer == job.rel or writer in order[job.rel]:
                    continue
                if _reaches(order, writer, job.rel):
                    broken.append(
                        f"inferred order: {job.rel} reads {read}, which {writer} writes, but "
                        f"{writer} already runs after {job.rel}: that cycle is broken there"
                    )
                    continue
                order[job.rel].append(writer)
                after.setdefault(job.rel, []).append(writer)
    if len(broken) > MAX_ORDER_NOTES:
        broken[MAX_ORDER_NOTES - 1 :] = [
            f"inferred order: {len(broken) - MAX_ORDER_NOTES + 1} more cycles broken"
        ]
    return replace(
        plan,
        after={rel: tuple(w) for rel, w in after.items()},
        notes=[*plan.notes, *broken],
    )


def _reaches(graph: Mapping[str, Iterable[str]], start: str, goal: str) -> bool:
    """Whether ``start`` waits for ``goal``, directly or through others."""
    seen, todo = {start}, [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep == goal:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def _say_older(path: Path) -> None:
    import logging  # only with something to say

    logging.getLogger("orchestrator").warning(
        "%s has lines from an older orch: those scripts run once, to record what they use", path
    )
