"""The ``orch`` command: argv in, options built, one library call, an exit code out.

Exit codes:
    0    every script passed or was skipped
    1    a script failed, timed out or errored
    2    usage or configuration error
    130  interrupted (Ctrl-C or SIGTERM)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import ExitCode, OrchestratorError

if TYPE_CHECKING:  # imported where used: start-up pays only for the command it runs
    from .changes import Tracking
    from .plan import Plan, RunOptions, ScriptJob

__all__ = ["main", "run_orchestrator"]


_DEPTH_HELP = "deepest folder level searched (default: %(default)s)"
_EPILOG = "exit codes:\n" + "".join(f"  {code.value:<4} {code.meaning}\n" for code in ExitCode)


class _UsageError(Exception):
    """argparse wanted to exit: carries the exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


class _Parser(argparse.ArgumentParser):
    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            self._print_message(message, sys.stderr)
        raise _UsageError(status)


def _jobs(value: str) -> int:
    from .plan import cpu_jobs

    try:
        return cpu_jobs(value)
    except ValueError:
        message = f"expected a positive number or 'auto', got {value!r}"
        raise argparse.ArgumentTypeError(message) from None


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return int(value)


def _timeout(value: str) -> float:
    from .config import timeout_seconds

    try:
        return timeout_seconds(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _depth(value: str) -> int:
    try:
        depth = int(value)
    except ValueError:
        depth = -1
    if depth < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive whole number, got {value!r}")
    return depth


def _selection_options(parser: argparse.ArgumentParser) -> None:
    from .discovery import MAX_DEPTH

    parser.add_argument(
        "scripts_dir",
        nargs="?",
        type=Path,
        metavar="SCRIPTS_DIR",
        help="the scripts directory (default: scripts/ under the project root)",
    )
    parser.add_argument(
        "--subdirs",
        action="append",
        metavar="DIR[,DIR]",
        help="only these subdirectories (repeat or comma-separate)",
    )
    parser.add_argument(
        "-k", "--pattern", help="only scripts whose name or relative path matches this glob"
    )
    parser.add_argument(
        "--max-depth",
        type=_depth,
        default=MAX_DEPTH,
        help=_DEPTH_HELP,
    )
    parser.add_argument(
        "--timeout", type=_timeout, help="seconds per script; replaces the config's default:"
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The options ``orch run`` and ``orch watch`` share."""
    _selection_options(parser)
    parser.add_argument(
        "-j",
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="scripts run at once; 'auto' = CPU count (default: 1)",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="start nothing new after the first failure; running scripts finish",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where run reports go (default: reports/ under the project root)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="show whole outputs")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only failures and totals")
    parser.add_argument("--no-color", action="store_true", help="never colour the output")
    parser.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="where scripts run: here (local, the default) or on a Dask cluster",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --executor dask: the scheduler, e.g. tcp://host:8786 "
        "(default: $ORCH_DASK_SCHEDULER, or a LocalCluster sized to this machine)",
    )
    _cache_options(parser)
    parser.add_argument(
        "--cache-write",
        action="store_true",
        help="publish passes to the cache: trusted CI on protected branches only",
    )


def _cache_options(parser: argparse.ArgumentParser) -> None:
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        metavar="URL",
        help="restore passes from this shared cache: a folder, file://, s3://bucket/prefix "
        "(default: $ORCH_CACHE, or the config's cache:)",
    )
    cache.add_argument("--no-cache", action="store_true", help="use no shared cache")


def _named_scripts_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``SCRIPT...``, ``-d``, ``--json``, ``--max-depth``: a command about named scripts."""
    from .discovery import MAX_DEPTH

    parser.add_argument("targets", nargs="*", type=Path, metavar="SCRIPT", help=default)
    parser.add_argument(
        "-d",
        "--scripts-dir",
        type=Path,
        help="the scripts directory (default: scripts/ under the project root)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--max-depth", type=_depth, default=MAX_DEPTH, help=_DEPTH_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``orch`` and its subcommands."""
    from .discovery import MAX_DEPTH

    parser = _Parser(
        prog="orch",
        description="Find, run and report on a repository's scripts.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the scripts",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(run)
    run.add_argument("--dry-run", action="store_true", help="show what would run; run nothing")
    run.add_argument(
        "--changed",
        action="store_true",
        help="run only scripts whose inputs changed since their last passing run",
    )
    run.add_argument("--force", action="store_true", help="with --changed: ignore the record")
    run.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter for scripts without an isolated environment (default: orch's own)",
    )
    run.add_argument(
        "--environment",
        metavar="NAME",
        help="only the scripts of this environments: group ('default': those in none), "
        "run with --python instead of a cached environment (what a nox session does)",
    )
    run.add_argument(
        "--run-id",
        metavar="ID",
        help="write into reports/ID, merging with the results already there",
    )

    watcher = commands.add_parser(
        "watch",
        help="run the scripts, then rerun the ones each edit affects",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(watcher)
    watcher.add_argument(
        "--no-initial", action="store_true", help="do not run everything before watching"
    )
    watcher.add_argument(
        "--on-busy",
        choices=("queue", "restart"),
        default="queue",
        help="edits while scripts run: rerun after the batch (queue, the default), "
        "or kill and restart the affected running scripts (restart)",
    )

    deps = commands.add_parser("deps", help="a script's inputs, or the scripts a file affects")
    deps.add_argument("target", type=Path, metavar="SCRIPT_OR_FILE")
    deps.add_argument("--reverse", action="store_true", help="list the scripts that FILE affects")
    deps.add_argument(
        "-d",
        "--scripts-dir",
        type=Path,
        help="the scripts directory (default: scripts/ under the project root)",
    )
    deps.add_argument(
        "--max-depth",
        type=_depth,
        default=MAX_DEPTH,
        help=_DEPTH_HELP,
    )

    why = commands.add_parser(
        "why", help="whether each script would run under --changed, and why; runs nothing"
    )
    _named_scripts_options(why, "default: every script")
    why.add_argument("--python", metavar="PATH", help="as orch run --python")
    _cache_options(why)

    history = commands.add_parser(
        "history", help="each script's recent runs, and whether it is flaky, newly failing or fixed"
    )
    _named_scripts_options(history, "default: every script with runs")
    history.add_argument(
        "-n", "--runs", type=_positive, default=10, metavar="N", help="runs shown a script (10)"
    )

    envs = commands.add_parser("envs", help="the cache of isolated environments")
    envs.add_argument("action", choices=("list", "clean"), help="list them, or remove them")
    envs.add_argument(
        "scripts_dir", nargs="?", type=Path, metavar="SCRIPTS_DIR", help="default: scripts/"
    )
    envs.add_argument(
        "--all", action="store_true", help="clean: remove every environment, not only unused ones"
    )
    envs.add_argument("--max-depth", type=_depth, default=MAX_DEPTH, help=argparse.SUPPRESS)

    lister = commands.add_parser("list", help="list the scripts and their effective settings")
    _selection_options(lister)
    lister.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lister.add_argument(
        "--graph", action="store_true", help="print the execution order with dependencies"
    )
    lister.add_argument(
        "-j",
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="with --graph: the start order and estimated makespan of `orch run -j N`",
    )
    lister.add_argument(
        "--format",
        choices=("text", "mermaid"),
        default="text",
        help="with --graph: plain text or a Mermaid flowchart (default: text)",
    )

    docs = commands.add_parser("docs", help="write a Markdown reference of the scripts")
    _selection_options(docs)
    docs.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")

    report = commands.add_parser("report", help="show the summary of a saved run again")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run or reports directory")
    report.add_argument("-v", "--verbose", action="count", default=0, help="show whole outputs")
    report.add_argument("--no-color", action="store_true", help="never colour the output")
    return parser


def _checked_run_id(run_id: str | None) -> str | None:
    from .ledger import RUN_ID

    if run_id is not None and (run_id == "latest" or RUN_ID.fullmatch(run_id) is None):
        raise OrchestratorError(
            f"--run-id {run_id!r}: use ASCII letters, digits, '-', '_' and '.', not first "
            "(it names a folder in the reports directory)"
        )
    return run_id


def _scripts_dir(args: argparse.Namespace) -> Path:
    """The scripts directory a command works on: given, found from its path, or ``scripts/``.

    The hint of the error names the way this command takes the directory.
    """
    from .project import default_scripts_dir, scripts_dir_of

    if args.command == "deps":
        hint = "pass the scripts directory with -d, e.g. `orch deps -d tools/ FILE`"
        if args.scripts_dir is not None:
            return Path(args.scripts_dir)
        if args.target.exists():  # a path typed from here locates its own project
            return scripts_dir_of(args.target, hint=hint)
        return default_scripts_dir(hint=hint)
    example = "orch envs list tools/" if args.command == "envs" else f"orch {args.command} tools/"
    hint = f"pass the scripts directory, e.g. `{example}`"
    if args.scripts_dir is None:
        return default_scripts_dir(hint=hint)
    if args.command == "envs" and Path(args.scripts_dir).is_file():
        return scripts_dir_of(args.scripts_dir, hint=hint)
    return Path(args.scripts_dir)


def _sweep(args: argparse.Namespace) -> None:
    """Before anything else in a project: stop what killed runs left (see :mod:`.ledger`)."""
    from .ledger import sweep
    from .project import Project

    project = Project.locate(_scripts_dir(args).resolve(), getattr(args, "output_dir", None))
    for line in sweep(project.state_dir, project.reports_dir):
        print(f"orch: {line}", file=sys.stderr)


def _options(args: argparse.Namespace, argv: Sequence[str]) -> Any:
    """The one RunOptions of every command; a command lacking an option gets its default."""
    from .plan import RunOptions

    subdirs = None
    if getattr(args, "subdirs", None):
        subdirs = tuple(s for item in args.subdirs for s in item.split(",") if s)
    scripts_dir = _scripts_dir(args)
    return RunOptions(
        scripts_dir=scripts_dir.resolve(),
        jobs=getattr(args, "jobs", 1),
        timeout=getattr(args, "timeout", None),
        subdirs=subdirs,
        pattern=getattr(args, "pattern", None),
        max_depth=args.max_depth,
        dry_run=getattr(args, "dry_run", False),
        fail_fast=getattr(args, "fail_fast", False),
        changed=getattr(args, "changed", False),
        force=getattr(args, "force", False),
        python=getattr(args, "python", None),
        environment=getattr(args, "environment", None),
        run_id=_checked_run_id(getattr(args, "run_id", None)),
        executor=getattr(args, "executor", "local"),
        scheduler=getattr(args, "scheduler", None),
        output_dir=getattr(args, "output_dir", None),
        cache=_cache_url(args),
        cache_write=getattr(args, "cache_write", False),
        verbosity=getattr(args, "verbose", 0) - getattr(args, "quiet", 0),
        color=False if getattr(args, "no_color", False) else None,
        command=("orch", *argv),
    )


def _cache_url(args: argparse.Namespace) -> str | None:
    """The cache of the command line, else of ``ORCH_CACHE``; None: the config's.

    A folder is taken from the current directory, as every path given here is.
    """
    if getattr(args, "no_cache", False):
        return ""
    url = getattr(args, "cache", None) or os.environ.get("ORCH_CACHE") or None
    if url is None or "://" in url:
        return url
    return str(Path(url).resolve())


@contextmanager
def _interrupts(stop: threading.Event, force: threading.Event) -> Iterator[None]:
    """While running, SIGINT, SIGTERM and SIGHUP stop the run instead of raising.

    The handler only sets events (it takes no lock and scans nothing): the
    engine's ticker sees ``stop`` within 0.1 s and stops the scripts (SIGTERM,
    SIGKILL after the grace). A second signal sets ``force``: SIGKILL at once.
    Reports are still written, atomically, so no Ctrl-C leaves half a file.
    """

    def say(line: bytes) -> None:
        with contextlib.suppress(OSError):  # a terminal that hung up: nothing to tell
            os.write(2, line)

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            say(b"\norch: interrupted; stopping scripts and writing reports\n")
        elif not force.is_set():
            force.set()
            say(b"\norch: interrupted again; killing the scripts now\n")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGHUP (the terminal closed) ends a run as SIGTERM does: scripts stopped, reports written.
    # SIGHUP ignored already (`nohup orch run`) stays ignored. SIGINT is handled even when
    # ignored: a shell starts a background job (`orch run &`) with SIGINT ignored, and
    # `kill -INT` must still stop it.
    stopping = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stopping.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in stopping}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _environments_of(plan: Any) -> dict[str, str]:
    """``{path: the isolated environment it runs in}`` for the scripts that have one."""
    from .environments import EnvBuildError, Environments

    envs = Environments(plan.project, plan.groups)
    found = {}
    for job in plan.jobs:
        try:
            spec = envs.spec_for(job.path, job.settings.environment)
        except EnvBuildError as exc:
            found[job.rel] = f"invalid PEP 723 metadata: {exc}"
            continue
        if spec is not None:
            found[job.rel] = f"{spec.name} (PEP 723)" if spec.inline else spec.name
    return found


def _cmd_list(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .plan import build_plan
    from .reporting import name_text

    options = _options(args, argv)
    plan = build_plan(options, count_left_out=not (args.graph or args.json))
    jobs = plan.jobs
    if args.graph:
        from .changes import Tracking, estimates, infer_order
        from .console import render_graph

        tracking = Tracking(plan.project)
        snapshots = tracking.snapshots(plan)
        said = len(plan.notes)
        plan = infer_order(plan, snapshots.traces(plan.jobs))
        for note in plan.notes[said:]:  # a cycle it broke
            print(name_text(plan.masker.mask(note)), file=sys.stderr)
        expected = estimates(plan, snapshots.entries(), tracking.record)
        sys.stdout.write(plan.masker.mask(render_graph(plan, args.format, expected, options.jobs)))
        return ExitCode.OK
    if args.json:
        runs_in = _environments_of(plan)
        data = [
            {
                "path": j.rel,
                "script": str(j.path),
                "settings": plan.shown_settings(j),
                "runs_in": runs_in.get(j.rel),  # its isolated environment, or null
            }
            for j in jobs
        ]
        print(plan.masker.mask(json.dumps(data, indent=2)))
        return ExitCode.OK
    from .console import render_plan

    sys.stdout.write(render_plan(plan, envs=_environments_of(plan)))
    print(f"\n{len(jobs)} scripts in {name_text(plan.masker.mask(str(options.scripts_dir)))}")
    if plan.left_out:
        print(plan.left_out)
    return ExitCode.OK


def _cmd_docs(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ._files import atomic_write_text
    from .docs import render_script_reference
    from .plan import build_plan

    options = _options(args, argv)
    plan = build_plan(options)
    text = plan.masker.mask(render_script_reference(plan.jobs, plan.project.scripts_dir))
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}")
    return ExitCode.OK


def _cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .console import render_console_summary, use_color
    from .reporting import name_text
    from .reports import as_results, load_run

    summary, results = load_run(args.run_dir)
    color = use_color(sys.stdout, False if args.no_color else None)
    # What the run itself printed at its end, no more: the table, the tails, the totals.
    if summary.get("incomplete"):
        planned = summary.get("total")
        of = f" of {planned}" if planned is not None else ""
        why = (
            "orch was killed before the run's end"
            if summary.get("killed")
            else "no summary.json yet (orch is still running it, or was killed)"
        )
        print(f"incomplete: {why}; {len(results)}{of} scripts have a result")
    sys.stdout.write(
        render_console_summary(
            as_results(results),
            color=color,
            verbosity=args.verbose,
            wall_time=summary.get("wall_time"),
            interrupted=bool(summary.get("interrupted")),
        )
    )
    print(f"reports: {name_text(summary['run_dir'])}")
    page = Path(summary["run_dir"]) / "report.html"
    if page.is_file():
        print(f"report.html: {name_text(str(page))}")
    return int(summary.get("exit_code", ExitCode.OK))


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .console import ConsoleReporter
    from .execution import execute
    from .plan import build_plan
    from .reporting import Reporter
    from .reports import FileReporter

    options = _options(args, argv)
    plan = build_plan(options)
    if options.dry_run:
        from .console import render_dry_run
        from .execution import select

        sys.stdout.write(render_dry_run(select(plan, options), _environments_of(plan)))
        return ExitCode.OK
    reporters: list[Reporter] = [
        FileReporter(),
        ConsoleReporter(verbosity=options.verbosity, color=options.color),
    ]
    stop, force = threading.Event(), threading.Event()
    with _interrupts(stop, force):
        outcome = execute(plan, options, reporters, stop=stop, force=force)
    return outcome.exit_code


def _cmd_watch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .watch import WatchOptions, watch

    options = _options(args, argv)
    if args.on_busy == "restart" and options.executor != "local":
        raise OrchestratorError(
            "--on-busy restart stops scripts on this machine only: use it with the local "
            "executor, or --on-busy queue"
        )
    stop, force = threading.Event(), threading.Event()
    with _interrupts(stop, force):
        return watch(
            options,
            WatchOptions(initial=not args.no_initial, on_busy=args.on_busy),
            stop=stop,
            force=force,
        )


def _target(project: Any, target: Path) -> Path:
    """The file a command-line name means: relative to ., the scripts folder or the root."""
    scripts_dir, root = project.scripts_dir, project.root
    candidates = [Path.cwd() / target, scripts_dir / target, root / target]
    path = next((Path(os.path.abspath(c)) for c in candidates if c.exists()), None)
    if path is None:
        raise OrchestratorError(f"{target}: no such file (looked in ., {scripts_dir}, {root})")
    return path


def _cmd_why(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .changes import Tracking, incomplete, stale
    from .plan import build_plan
    from .reporting import name_text

    options = _options(args, argv)
    plan = build_plan(options)
    project = plan.project
    wanted = _wanted(project, plan, args.targets)
    tracking = Tracking(project, options.python)
    snapshots = tracking.snapshots(plan)
    why = stale(plan, snapshots)  # over the whole plan: a dependency's rerun counts
    answers = []
    for job in wanted:
        rel = job.rel
        entry = snapshots.entry(job) or {}
        since = None if rel in why else entry.get("time")
        answers.append(
            {
                "script": rel,
                "runs": rel in why,
                "why": list(why.get(rel, ())),
                "since": since,
                "inputs_incomplete": list(incomplete(job, snapshots.trace(job))),
            }
        )
    _cached(plan, options, tracking, answers)
    tracking.graph.save()
    mask = plan.masker.mask_data
    if args.json:
        print(json.dumps(mask(answers), indent=2))
        return ExitCode.OK
    for answer in mask(answers):
        name = name_text(answer["script"])
        if answer["runs"]:
            print(f"{name} runs:")
            for reason in answer["why"]:
                print(f"  {name_text(reason)}")
            if answer.get("cache"):
                print(f"  would be restored from the cache: {name_text(answer['cache'])}")
        else:
            print(f"{name} is up to date: passed with the same inputs at {answer['since']}")
        for gap in answer["inputs_incomplete"]:
            print(f"  inputs incomplete: {name_text(gap)}")
    return ExitCode.OK


def _wanted(project: Any, plan: Plan, targets: Sequence[Path]) -> list[ScriptJob]:
    """The plan's jobs that ``targets`` name (all of them for none), in plan order."""
    if not targets:
        return list(plan.jobs)
    jobs = {job.path: job for job in plan.jobs}
    wanted = []
    for target in targets:
        job = jobs.get(_target(project, target))
        if job is None:
            raise OrchestratorError(
                f"{target} is not a script in {project.rel(project.scripts_dir)}/"
            )
        wanted.append(job)
    return list({job.rel: job for job in wanted}.values())


def _cmd_history(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .history import History, judge
    from .plan import build_plan
    from .reporting import flaky_text, memory_text, name_text

    options = _options(args, argv)
    plan = build_plan(options)
    project = plan.project
    history = History(project.state_dir)
    answers = []
    for job in _wanted(project, plan, args.targets):
        runs = history.of(project.rel(job.path)).past
        if not runs and not args.targets:
            continue  # never ran: nothing to say unless asked
        verdict = judge(runs[:-1], runs[-1]) if runs else None
        durations = sorted(o.duration for o in runs if o.passed)
        answers.append(
            {
                "script": job.rel,
                "verdict": None
                if verdict is None
                else ("flaky" if verdict.flaky else verdict.change),
                "flaky": verdict.flaky.to_dict() if verdict and verdict.flaky else None,
                "median": durations[len(durations) // 2] if durations else None,
                "runs": [o.to_line() for o in runs[-args.runs :]],
            }
        )
    answers = plan.masker.mask_data(answers)
    if args.json:
        print(json.dumps(answers, indent=2))
        return ExitCode.OK
    if not answers:
        print("no runs recorded yet: orch run keeps each script's history")
    for answer in answers:
        runs = answer["runs"]
        if not runs:
            print(f"{name_text(answer['script'])}: no runs recorded yet")
            continue
        if answer["flaky"]:
            said = f"flaky ({flaky_text(answer['flaky'])})"
        else:
            last = "passing" if runs[-1]["status"] == "passed" else "failing"
            said = answer["verdict"] or last
        median = f", median {answer['median']:.2f} s" if answer["median"] is not None else ""
        print(f"{name_text(answer['script'])}: {said}{median}")
        for run in runs:
            # Read from a file: shown as names are, so no byte of it reaches the terminal raw.
            when = name_text(run["time"][:19].replace("T", " "))
            fields = [when, f"{name_text(run['status']):<7}", f"{run['duration']:8.2f} s"]
            fields.append(f"{memory_text(run['memory']):>9}")
            fields.append(name_text(run["commit"] or "")[:10].ljust(10))
            fields.append(f"inputs {name_text(run['inputs'] or 'unknown'):<16}")
            if run["attempts"] > 1:
                fields.append(f"attempt {run['attempts']}")
            if run["signature"] and run["status"] != "passed":
                fields.append(name_text(run["signature"]))
            print("  " + "  ".join(fields).rstrip())
    return ExitCode.OK


def _cached(
    plan: Plan, options: RunOptions, tracking: Tracking, answers: list[dict[str, Any]]
) -> None:
    """``orch why``: say of each script that would run whether the cache holds its pass."""
    from .cache import Cache, cache_url, open_store

    url = cache_url(options.cache, plan.cache, plan.project.root)
    runs = {answer["script"]: answer for answer in answers if answer["runs"]}
    if not url or not runs:
        return
    envs = tracking.environments(plan)
    cache = Cache(
        open_store(url, plan.project.root),
        tracking.graph,
        envs,
        options.python,
        plan.masker,
        plan.secret_names,
        build=False,
    )
    try:
        jobs = [job for job in plan.jobs if job.rel in runs]
        cache.prefetch(jobs)
        for job in jobs:
            entry = cache.lookup(job)
            runs[job.rel]["cache"] = entry.origin if entry is not None else None
    finally:
        cache.close()


def _cmd_deps(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .changes import Tracking
    from .config import sets_settings
    from .plan import build_plan
    from .reporting import name_text
    from .tracing import Trace

    options = _options(args, argv)
    plan = build_plan(options)
    project = plan.project
    scripts_dir = project.scripts_dir
    tracking = Tracking(project)
    graph, snapshots = tracking.graph, tracking.snapshots(plan)
    jobs = {job.path: job for job in plan.jobs}
    path = _target(project, args.target)
    config, rel = project.config_file, project.rel

    if args.reverse:
        if config is not None and path.resolve() == config:
            hits = {script for script, job in jobs.items() if sets_settings(job.settings)}
        else:
            traces = snapshots.traces(plan.jobs)
            hits = set(graph.affected([path], plan.watch_by_path(), traces))
        for script in sorted(hits, key=lambda p: jobs[p].rel.split("/")):
            print(name_text(jobs[script].rel))
        if not hits:
            print(f"no script depends on {rel(path)}", file=sys.stderr)
        graph.save()
        return ExitCode.OK
    job = jobs.get(path)
    if job is None:
        raise OrchestratorError(f"{rel(path)} is not a script in {rel(scripts_dir)}/")
    print(name_text(job.rel))
    trace = snapshots.trace(job)
    known = trace if isinstance(trace, Trace) else None
    attempts = frozenset(known.reads) if known else frozenset()
    for file, origin in graph.sources(path, job.settings.watch, known).items():
        name = rel(file)
        if origin == "traced" and not file.exists():
            if name not in attempts:
                continue  # where a module it loaded from elsewhere would shadow it
            name += "  (missing: making it is a change)"
        elif file.suffix == ".py" and (error := graph.syntax_error(file)):
            name += f"  ({error})"
        print(f"  {origin:<6}  {name_text(name)}")
    if config is not None and sets_settings(job.settings):
        print(f"  config  {rel(config)}")
    for written in known.writes if known else ():
        kept = "  (it reads it too: an input as it left it)" if written in attempts else ""
        print(f"  output  {name_text(written)}{kept}")
    for gap in known.gaps() if known else ():
        print(f"  inputs incomplete: {name_text(gap)}")
    if not job.settings.trace:
        print("  not traced (trace: false): static inputs only")
    elif trace is None:
        print("  no trace yet: static inputs only until it runs")
    elif known is None:
        print(f"  its last trace is unknown ({trace}): it runs again")
    graph.save()
    return ExitCode.OK


def _cmd_envs(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from tabulate import tabulate

    from .environments import Environments
    from .plan import build_plan

    options = _options(args, argv)
    plan = build_plan(options)
    envs = Environments(plan.project, plan.groups)
    used = envs.used_by(plan.jobs)
    if args.action == "clean":
        removed = envs.clean(None if args.all else set(used))
        print(f"removed {len(removed)} environment(s) from {envs.dir}")
        return ExitCode.OK
    rows = [
        [
            env["key"],
            env.get("name", "?"),
            " ".join(env.get("requirements") or []) or env.get("requirements_file") or "",
            f"{env['size'] / 1e6:.1f} MB",
            ", ".join(used.get(env["key"], [])) or "(unused)",
        ]
        for env in envs.cached()
    ]
    print(tabulate(rows, headers=["Key", "Name", "Requirements", "Size", "Scripts"]))
    print(f"\n{len(rows)} environment(s) in {envs.dir}")
    return ExitCode.OK


_COMMANDS = {
    "run": _cmd_run,
    "watch": _cmd_watch,
    "list": _cmd_list,
    "docs": _cmd_docs,
    "report": _cmd_report,
    "deps": _cmd_deps,
    "why": _cmd_why,
    "history": _cmd_history,
    "envs": _cmd_envs,
}


def _say_warnings() -> None:
    """orch's warnings (a damaged state file) as one ``orch: warning:`` line on stderr.

    Set up once a command has been parsed: ``orch --version`` and ``--help``
    never import :mod:`logging` (about 6 ms).
    """
    import logging

    class WarningLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            from .reporting import name_text

            with contextlib.suppress(OSError):
                print(f"orch: warning: {name_text(record.getMessage())}", file=sys.stderr)

    logger = logging.getLogger("orchestrator")
    if not any(type(h).__name__ == "WarningLine" for h in logger.handlers):
        logger.addHandler(WarningLine(logging.WARNING))


def _silence_stdout() -> None:
    """Send what is left of stdout nowhere, so that Python's flush at exit cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``orch`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # what scripts probe: answered before any parser or import
        print(f"orch {__version__}")
        return ExitCode.OK
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse fills `envs ACTION [SCRIPTS_DIR]` in one go: after `clean --all` the
        # folder is left over. It is the folder all the same, as `ls -l dir` takes it.
        lone = len(extra) == 1 and not extra[0].startswith("-")
        if args.command == "envs" and args.scripts_dir is None and lone:
            args.scripts_dir, extra = Path(extra[0]), []
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except _UsageError as exc:
        return exc.code
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE
    _say_warnings()
    try:
        if hasattr(args, "scripts_dir"):
            _sweep(args)
        return _COMMANDS[args.command](args, argv)
    except OrchestratorError as exc:
        print(f"orch: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("\norch: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `orch list | head -1`: the reader has what it wanted
        _silence_stdout()
        return ExitCode.OK


def run_orchestrator(argv: Sequence[str] | None = None) -> int:
    """The ``orch`` command as a function: ``run_orchestrator(["run", "scripts"])`` -> exit code."""
    return main(argv)


def entry_point() -> None:
    """Console-script entry point: the only place that calls ``sys.exit``."""
    sys.exit(main())
