"""What a run will do: the run options, and the scripts with their effective settings.

:class:`RunOptions` is the single options model of a run. The CLI builds it
from argv; Python callers build it directly. :func:`build_plan` turns it into
an ordered list of :class:`ScriptJob` (discovery order), validating the config
before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import DEFAULT_ENVIRONMENT, Settings, config_masker, read_config, settings_for
from .dag import check_acyclic, start_order
from .discovery import MAX_DEPTH, discover_scripts, scan_scripts
from .errors import ConfigError, DiscoveryError
from .masking import Masker
from .project import Project

__all__ = [
    "FULL_RUN",
    "Plan",
    "RunOptions",
    "ScriptJob",
    "build_plan",
]


#: Why a script runs when nothing was compared: every script of the plan runs.
FULL_RUN = ("full run",)


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes one run. ``None`` means "use the config or built-in default"."""

    scripts_dir: Path
    jobs: int = 1
    timeout: float | None = None
    subdirs: tuple[str, ...] | None = None
    pattern: str | None = None
    max_depth: int = MAX_DEPTH
    dry_run: bool = False
    fail_fast: bool = False
    changed: bool = False
    force: bool = False
    #: The interpreter for scripts that have no isolated environment (default: ours).
    python: str | None = None
    #: Only the scripts of this ``environments:`` group (``"default"``: those in
    #: none), all run with ``python``: how a nox session per group runs its share.
    environment: str | None = None
    #: Write into this run id's directory, merging with what is there already.
    run_id: str | None = None
    #: Where scripts run: ``local`` (children of this process) or ``dask``.
    executor: str = "local"
    #: The Dask scheduler's address; None starts a LocalCluster.
    scheduler: str | None = None
    output_dir: Path | None = None
    #: The shared result cache (see :mod:`orchestrator.cache`): a folder or URL; None:
    #: the config's ``cache:``; ``""``: none.
    cache: str | None = None
    #: Publish passes to the cache (trusted CI only).
    cache_write: bool = False
    verbosity: int = 0
    color: bool | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScriptJob:
    """One discovered script and the settings it runs with."""

    path: Path
    rel: str
    #: Frozen: a plan's settings are what its scripts run and are fingerprinted with.
    settings: Settings = field(hash=False, compare=False)

    @property
    def subdirectory(self) -> str:
        """The script's folder relative to the scripts directory (``.`` at the top)."""
        return Path(self.rel).parent.as_posix()


@dataclass(frozen=True)
class Plan:
    """The scripts a run will run, in discovery order, and what the user should be told."""

    project: Project
    jobs: list[ScriptJob]
    notes: list[str] = field(default_factory=list)
    #: Scripts that are up to date (``--changed``): reported ``skipped``, never run.
    fresh: frozenset[str] = frozenset()
    #: Why each script that runs does (``--changed``, ``orch watch``); see :data:`FULL_RUN`.
    why: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Inferred order: ``{script: scripts that write a file it reads}``, from their traces.
    #: It starts after them, whatever their outcome (see :func:`~.changes.infer_order`).
    after: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The config's ``environments:`` groups.
    groups: dict[str, Any] = field(default_factory=dict)
    #: One line on the ``.py`` files discovery's rules left out (``count_left_out`` only).
    left_out: str | None = None
    #: The secrets every output of the run masks (the environment's and the config's).
    masker: Masker = field(default_factory=Masker)
    #: The config's ``secrets:`` names (a worker looks them up in its own environment).
    secret_names: tuple[str, ...] = ()
    #: The config's ``cache:`` (a folder relative to the project root, or a URL).
    cache: str | None = None

    @property
    def config_file(self) -> Path | None:
        """The config file the settings come from (None: built-in defaults)."""
        return self.project.config_file

    def shown_settings(self, job: ScriptJob) -> dict[str, Any]:
        """``job``'s settings as outputs show them: secret values masked."""
        masked: dict[str, Any] = self.masker.mask_data(job.settings.to_dict())
        return masked

    def watch_by_path(self) -> dict[Path, tuple[str, ...]]:
        """``{script path: its watch: globs}``: what :meth:`InputGraph.affected` takes."""
        return {job.path: job.settings.watch for job in self.jobs}

    def graph(self) -> dict[str, list[str]]:
        """``{script path: [paths it depends on]}`` for every job.

        A dependency outside the plan (see :meth:`subset`) is left out: it is
        taken as done.
        """
        rels = {job.rel for job in self.jobs}
        return {job.rel: [d for d in job.settings.depends_on if d in rels] for job in self.jobs}

    def order(self) -> dict[str, list[str]]:
        """:meth:`graph` with the inferred order added: what the run waits for."""
        graph = self.graph()
        for rel, writers in self.after.items():
            if rel in graph:
                graph[rel] += [w for w in writers if w in graph and w not in graph[rel]]
        return graph

    def subset(self, rels: Iterable[str]) -> Plan:
        """The plan narrowed to ``rels`` (``orch watch`` reruns a few scripts).

        Settings are never edited: a script keeps the fingerprint a full run
        gives it, and its ``depends_on`` outside the subset count as done.
        """
        wanted = set(rels)
        return replace(
            self,
            jobs=[job for job in self.jobs if job.rel in wanted],
            notes=[],
            fresh=frozenset(),
            why={rel: why for rel, why in self.why.items() if rel in wanted},
            after={rel: w for rel, w in self.after.items() if rel in wanted},
        )

    def reasons(self, rel: str) -> tuple[str, ...]:
        """Why ``rel`` runs: what its decision said, or :data:`FULL_RUN` with none made."""
        return self.why.get(rel, FULL_RUN)

    def start_order(self) -> list[str]:
        """The scripts in the order ``orch run -j1`` starts them (the workflow's ready queue)."""
        return start_order(self.order())

    def dependents_of(self, rels: Iterable[str]) -> dict[str, str]:
        """The scripts that depend on any of ``rels``, transitively, and not in it.

        Returns ``{dependent: the script through which it depends}``.
        """
        direct: dict[str, list[str]] = {}
        for job in self.jobs:
            for dep in job.settings.depends_on:
                direct.setdefault(dep, []).append(job.rel)
        seen = set(rels)
        found: dict[str, str] = {}
        todo = list(seen)
        while todo:
            rel = todo.pop()
            for dependent in direct.get(rel, ()):
                if dependent not in seen:
                    seen.add(dependent)
                    found[dependent] = rel
                    todo.append(dependent)
        return found


def _path_key(rel: str) -> list[str]:
    return rel.split("/")


def build_plan(options: RunOptions, *, count_left_out: bool = False) -> Plan:
    """Discover the scripts, resolve their settings and close over ``depends_on``.

    Command-line values (``options.timeout``) replace the config's ``default:``
    layer, so a script's own entry in ``scripts:`` still wins over them. A
    selected script's dependencies are added even when the selection left
    them out, with a note saying so. The reports folder is never searched;
    ``count_left_out`` counts what else discovery's rules leave out.

    Raises:
        ConfigError: the config file is invalid, or ``depends_on`` names a
            script that does not exist.
        CycleError: ``depends_on`` forms a cycle.
        DiscoveryError: the scripts directory is missing.
    """
    project = Project.locate(options.scripts_dir, options.output_dir)
    scripts_dir = project.scripts_dir
    if not scripts_dir.is_dir():
        discover_scripts(scripts_dir)  # raises the one-line DiscoveryError
    config = read_config(project.config_file)
    if options.timeout is not None:
        config = {**config, "default": {**config["default"], "timeout": float(options.timeout)}}
    source = str(project.config_file or scripts_dir / "config.yaml")

    def job_for(path: Path) -> ScriptJob:
        rel = path.relative_to(scripts_dir).as_posix()  # found below it, as spelled
        return ScriptJob(path, rel, settings_for(rel, config))

    for sub in options.subdirs or ():
        # discover_scripts only warns; asked for by name on the command line, a typo
        # must not pass as a green run of nothing.
        if not (scripts_dir / sub.strip("/")).is_dir():
            raise DiscoveryError(
                f"--subdirs {sub}: no such folder in {scripts_dir}; check the name"
            )
    found = scan_scripts(
        scripts_dir,
        subdirs=options.subdirs,
        pattern=options.pattern,
        max_depth=options.max_depth,
        prune=[project.reports_dir],
        count_left_out=count_left_out,
    )
    paths = found.scripts
    jobs = {job.rel: job for job in map(job_for, paths)}
    if options.environment is not None:
        known = [*config["environments"], DEFAULT_ENVIRONMENT]
        if options.environment not in known:
            raise ConfigError(
                f"{source}: environments: no group {options.environment!r}; "
                f"known: {', '.join(known)}"
            )
        # One nox session per group: only its scripts; what they depend on joins below.
        wanted = None if options.environment == DEFAULT_ENVIRONMENT else options.environment
        jobs = {rel: job for rel, job in jobs.items() if job.settings.environment == wanted}
    notes: list[str] = []
    queue = list(jobs.values())
    while queue:
        job = queue.pop(0)
        for dep in job.settings.depends_on:
            if dep in jobs:
                continue
            path = scripts_dir / dep
            if not path.is_file():
                raise ConfigError(
                    f"{source}: depends_on of {job.rel}: unknown script {dep!r} "
                    f"(no such file in {scripts_dir}); give a path relative to that directory"
                )
            jobs[dep] = job_for(path)
            queue.append(jobs[dep])
            notes.append(f"also running {dep}: {job.rel} depends on it")
    check_acyclic(
        {rel: job.settings.depends_on for rel, job in jobs.items()},
        source,
        "remove one of these depends_on entries",
    )
    ordered = sorted(jobs.values(), key=lambda job: _path_key(job.rel))
    return Plan(
        project,
        ordered,
        notes,
        groups=config["environments"],
        left_out=found.left_out_line(),
        masker=config_masker(config, os.environ),
        secret_names=tuple(config["secrets"]),
        cache=config.get("cache"),
    )


def cpu_jobs(value: str) -> int:
    """Parse a ``--jobs`` value: a positive integer or ``auto`` (the CPU count)."""
    if value == "auto":
        return os.cpu_count() or 1
    jobs = int(value)
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    return jobs
