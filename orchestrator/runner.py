"""Run one script, or one function, and make a result of how it ended.

What to start (the interpreter, the script's environment, ``PYTHONPATH``, the
trace bootstrap, a memory cap) and what the child's end means (status, exit
code, error, the bounded tails of its output, peak memory and CPU time, the
trace). The child's life itself, in a group of its own that cannot outlive
the run, is :mod:`.processes`'.

A script's failure is data: :func:`run_script` never raises for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import WriteError
from .masking import Masker
from .processes import CHUNK, KILL_GRACE, Capture, Child, children, exited, pump
from .project import STATE_DIR, find_project_root, search_path
from .results import ScriptResult, Status, StopReason, base_result
from .tracing import TraceError, read_trace, trace_env, trace_fields

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "KILL_GRACE",
    "ScriptCall",
    "children",
    "run_function",
    "run_script",
    "script_result",
]

logger = logging.getLogger("orchestrator")

#: Bytes of each stream kept in the result; the rest is only on disk.
DEFAULT_MAX_OUTPUT = 1024 * 1024


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- scripts ------------------------------------------------------------------------


def _pythonpath(env: dict[str, str], root: Path | None) -> None:
    """Put the project's search path first on PYTHONPATH, keeping the rest without duplicates."""
    if root is None:
        return
    entries = [*map(str, search_path(root)), *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(e for e in entries if e))


def _take_trace(extra: dict[str, Any], trace_file: str, root: Path) -> int | None:
    """Read the script's trace into ``extra["trace"]`` (or why not into ``trace_error``).

    Returns the largest peak memory (KiB) its Python processes reported.
    """
    peak = None
    try:
        trace = read_trace(trace_file, root)
        extra.update(trace_fields(trace))
        peak = trace.peak_kib
    except TraceError as exc:
        extra.update(trace_fields(exc))
    with contextlib.suppress(OSError):
        os.unlink(trace_file)
    return peak


def _own_peak_kib() -> int:
    """This process's peak resident memory in KiB: at least what a child it spawns carries.

    ``getrusage`` rather than ``/proc/self/status``: a system call, not a file
    parsed per script; it may be larger than our own peak (it keeps what our
    own parent carried into us), which only makes the test stricter.
    """
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there


def _cost(
    usage: Any, traced_kib: int | None, spawner_kib: int
) -> tuple[float | None, float | None]:
    """``(peak_memory_mb, cpu_time)`` of a finished script (None: unknown).

    ``wait4``'s ``ru_maxrss`` is the largest of the child and the children it
    waited for, but Linux carries the spawner's peak into it across ``exec``:
    it is the script's own only when above orch's peak at the spawn
    (``spawner_kib``). Below, the traced processes' own ``VmHWM`` tells.
    """
    candidates = [traced_kib or 0]
    cpu = None
    if usage is not None:
        cpu = round(usage.ru_utime + usage.ru_stime, 6)
        maxrss = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss  # bytes
        if maxrss > spawner_kib:
            candidates.append(maxrss)
    peak = max(candidates)
    return (round(peak / 1024, 1) if peak else None), cpu


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def _memory_cap(megabytes: float) -> tuple[list[str], Callable[[], None] | None] | None:
    """How to start a child whose every process has at most ``megabytes`` of address space.

    The cap (``RLIMIT_AS``) must hold from the child's first instruction, for
    whatever it forks at once too: so it is set before ``exec``, by util-linux's
    ``prlimit`` put in front of the command (an exec, and starts stay
    ``vfork``-fast). Without ``prlimit``, by a ``preexec_fn``, which makes every
    start of a capped script a full ``fork`` of orch. Returns the command's
    prefix and the ``preexec_fn``; None when a lower hard limit is already
    inherited (that is then the cap, and not claimed as this one).
    """
    import resource

    limit = int(megabytes * 1024 * 1024)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < limit:
        return None
    tool = _prlimit()
    if tool is not None:
        return [tool, f"--as={limit}", "--"], None
    return [], functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))


# What a process that ran out of address space prints (Python, C, C++, Rust).
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|std::bad_alloc|memory allocation of"
)


def _ran_out(stderr: str, peak: float | None, megabytes: float) -> bool:
    """Whether a failed script failed for its memory limit: it said so, or it reached it."""
    if _OUT_OF_MEMORY.search(stderr[-8192:]):
        return True
    return peak is not None and peak >= 0.9 * megabytes


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _finish(result: dict[str, Any], start: datetime, started: float) -> dict[str, Any]:
    result["start_time"] = start.isoformat()
    result["end_time"] = _now().isoformat()
    result["execution_time"] = round(time.monotonic() - started, 6)
    return result


@dataclass(frozen=True)
class ScriptCall:
    """One script run, as plain values: what :func:`run_script` takes, and what a
    Dask worker is sent (it pickles). See :func:`run_script` for each field."""

    script: str | os.PathLike[str]
    timeout: float | None = 60
    env: Mapping[str, str] | None = field(default=None, repr=False)  # secrets: never logged
    cwd: str | os.PathLike[str] | None = None
    args: Sequence[str] | None = None
    allowed_exit_codes: Iterable[int] = (0,)
    python: str | None = None
    log_dir: str | os.PathLike[str] | None = None
    scripts_dir: str | os.PathLike[str] | None = None
    root: str | os.PathLike[str] | None = None
    max_output: int = DEFAULT_MAX_OUTPUT
    kill_grace: float = KILL_GRACE
    tag: str | None = None
    trace: bool = False
    trace_skip: Sequence[str] = ()
    masker: Masker | None = field(default=None, repr=False)
    memory_limit_mb: float | None = None
    secret_names: Sequence[str] = ()
    #: ``{path: sha256}`` of the script and its local modules, checked where it runs
    #: (another machine); a local run checks nothing.
    inputs: Mapping[str, str | None] = field(default_factory=dict)

    def run(self) -> ScriptResult:
        """Run the script here."""
        return script_result(self)


def run_script(
    script_path: str | os.PathLike[str],
    timeout: float | None = 60,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    args: Sequence[str] | None = None,
    allowed_exit_codes: Iterable[int] = (0,),
    python: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    *,
    scripts_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    kill_grace: float = KILL_GRACE,
    tag: str | None = None,
    trace: bool = False,
    trace_skip: Sequence[str] = (),
    masker: Masker | None = None,
    memory_limit_mb: float | None = None,
    secret_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``[python, script, *args]`` and return its result dict; never raises for the script.

    Args:
        script_path: the script; a relative path is resolved against the
            current directory before anything else.
        timeout: seconds before the process group is killed (None: no limit).
        env: variables laid over the inherited environment.
        cwd: working directory; relative to the project root, which is also
            the default (the nearest parent with ``pyproject.toml`` or ``.git``).
        args: extra command-line arguments.
        allowed_exit_codes: exit codes that count as ``passed``.
        python: the interpreter (default: ``sys.executable``).
        log_dir: if given, the full stdout and stderr are written there as
            ``<name>.stdout.log`` and ``<name>.stderr.log`` (when not empty).
        scripts_dir: the scripts directory, used for ``path`` and ``subdirectory``.
        root: the project root (a run passes its :class:`~orchestrator.project.Project`'s);
            found from ``scripts_dir`` or the script's folder when not given.
        max_output: bytes of each stream kept in the result (a tail).
        kill_grace: seconds between SIGTERM and SIGKILL.
        tag: a label (a run id) that ``children.terminate(tag=...)`` can pick it by.
        trace: record what the script (and its Python children) imported, read,
            wrote and listed under the project root (see :mod:`orchestrator.tracing`);
            needs a root. ``trace_skip``: folders not to record (the reports).
        masker: secret values to mask in the streams (logs and tails) and the
            error, besides those of the script's environment, which are always
            masked (see :mod:`orchestrator.masking`); a run passes its plan's.
            ``secret_names``: more variable names whose values are secret
            (the config's ``secrets:``), looked up in the script's environment.
        memory_limit_mb: the address space the script and the processes it
            starts may each take (``RLIMIT_AS``); one that runs out fails with
            ``memory limit of N MB exceeded``.

    Returns:
        A dict with ``script, name, path, subdirectory, start_time, end_time,
        status, exit_code, execution_time, stdout, stderr, error`` (and
        ``stdout_path``/``stderr_path`` with ``log_dir``: the full stream's
        file, or None when the stream was empty; ``trace`` with ``trace``:
        :meth:`~orchestrator.tracing.Trace.to_dict`, or None with
        ``trace_error`` saying why it is unknown).
    """
    return script_result(
        ScriptCall(
            script=script_path,
            timeout=timeout,
            env=env,
            cwd=cwd,
            args=args,
            allowed_exit_codes=allowed_exit_codes,
            python=python,
            log_dir=log_dir,
            scripts_dir=scripts_dir,
            root=root,
            max_output=max_output,
            kill_grace=kill_grace,
            tag=tag,
            trace=trace,
            trace_skip=trace_skip,
            masker=masker,
            memory_limit_mb=memory_limit_mb,
            secret_names=secret_names,
        )
    ).to_dict()


def script_result(call: ScriptCall) -> ScriptResult:
    """:func:`run_script` as a value: what a run uses; the dict is for library callers."""
    # abspath, not resolve: a symlinked script keeps the name it was found under.
    script = Path(os.path.abspath(call.script))
    base = Path(os.path.abspath(call.scripts_dir)) if call.scripts_dir is not None else None
    blank = base_result(script, base)
    start, started = _now(), time.monotonic()
    environ = {**os.environ, **(call.env or {})}  # os.environ decodes each item it gives
    secrets = Masker.of_environment(environ, call.secret_names)
    secrets |= call.masker or Masker()
    extra: dict[str, Any] = {}  # stdout_path/stderr_path, trace/trace_error, write_error

    def done(**fields: Any) -> ScriptResult:
        if fields.get("error"):
            fields["error"] = secrets.mask(fields["error"])
        return replace(
            blank,
            start_time=start.isoformat(),
            end_time=_now().isoformat(),
            execution_time=round(time.monotonic() - started, 6),
            extra=extra,
            **fields,
        )

    # A library call locates the root here, at the edge; a run passes its Project's.
    found = Path(call.root) if call.root is not None else find_project_root(base or script.parent)
    home = found or Path.cwd()
    workdir = home / call.cwd if call.cwd is not None else home

    if not script.is_file():
        return done(error=f"script not found: {script}")
    if not workdir.is_dir():
        return done(error=f"working directory does not exist: {workdir}")

    token = os.urandom(16).hex()  # uuid costs 2 ms of imports at start-up
    variable = f"{children.marker_prefix}{token}"
    marker = f"{variable}=".encode()
    child_env = {**environ, variable: "1"}
    _pythonpath(child_env, found)
    trace_file = None
    if call.trace and found is not None:
        # Made by the script's bootstrap: no file afterwards means it never ran traced.
        trace_file = os.path.join(tempfile.gettempdir(), f"orch-trace-{token}")
        skip = [str(found / STATE_DIR), *map(str, call.trace_skip)]
        trace_env(child_env, trace_file, str(found), skip)
    command = [call.python or sys.executable, str(script), *(call.args or ())]
    cap = _memory_cap(call.memory_limit_mb) if call.memory_limit_mb is not None else None
    if cap is not None and cap[0] and shutil.which(command[0], path=child_env.get("PATH")) is None:
        cap = None  # let the start fail as an interpreter not found, not as prlimit's error
    if cap is not None:
        command[:0] = cap[0]

    logs = Path(call.log_dir) if call.log_dir is not None else None
    paths: dict[str, Path | None] = {"stdout": None, "stderr": None}
    if logs is not None:
        try:
            logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            extra["write_error"] = str(WriteError(logs, exc))
            return done(error=extra["write_error"])
        shown = secrets.mask(script.name)  # a log's name must not carry a secret either
        for stream in paths:
            paths[stream] = logs / f"{shown}.{stream}.log"
            extra[f"{stream}_path"] = str(paths[stream])
    out = Capture(call.max_output, paths["stdout"], secrets)
    err = Capture(call.max_output, paths["stderr"], secrets)

    logger.info("started %s", script, extra={"script": str(script)})
    wake_r, wake_w = os.pipe()  # a stop from outside wakes the pump's select()
    try:
        proc, child = children.start(
            command,
            str(script),
            grace=call.kill_grace,
            marker=marker,
            tag=call.tag,
            wake=wake_w,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=child_env,
            preexec_fn=cap[1] if cap is not None else None,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        os.close(wake_r)
        os.close(wake_w)
        out.close()
        err.close()
        what = "interpreter not found" if isinstance(exc, FileNotFoundError) else "cannot start"
        reason = getattr(exc, "strerror", None) or exc
        return done(error=f"{what}: {call.python or sys.executable}: {reason}")

    # Read once the child has exec'd: what it carried can only be below this.
    spawner_kib = _own_peak_kib()
    timed_out = False
    try:
        with children.running(proc, child):
            try:
                timed_out = pump(proc, child, out, err, call.timeout, wake_r)
            finally:
                child.wake = None
                os.close(wake_r)
                os.close(wake_w)
    finally:
        out.close()
        err.close()

    code = proc.returncode
    stdout, stderr = out.text(), err.text()
    traced_kib = None
    if trace_file is not None and found is not None:
        traced_kib = _take_trace(extra, trace_file, found)
    peak, cpu = _cost(child.usage, traced_kib, spawner_kib)
    for stream, capture in (("stdout", out), ("stderr", err)):
        if logs is not None and not capture.size and not capture.dropped:
            extra[f"{stream}_path"] = None
    ended = {
        "stdout": stdout,
        "stderr": stderr,
        "peak_memory_mb": peak,
        "cpu_time": cpu,
        "escaped": len(child.escaped) or None,
    }
    unwritable = out.error or err.error
    stopped = StopReason.UNWRITABLE if unwritable is not None else child.reason
    if stopped is not None:
        result = done(**ended).stopped_by(stopped)
        if unwritable is not None:
            extra["write_error"] = str(unwritable)
            result = replace(result, error=secrets.mask(extra["write_error"]))
    elif timed_out:
        result = done(**ended, status=Status.TIMEOUT, error=f"timed out after {call.timeout:g} s")
    else:
        allowed = set(call.allowed_exit_codes)
        error = None
        if code not in allowed:
            if code is not None and code < 0:
                error = f"killed by {_signal_name(-code)}"
            else:
                error = f"exit code {code} (allowed: {sorted(allowed)})"
            limit = call.memory_limit_mb
            if cap is not None and limit is not None and _ran_out(stderr, peak, limit):
                error = f"memory limit of {limit:g} MB exceeded"
        status = Status.PASSED if code in allowed else Status.FAILED
        result = done(**ended, status=status, exit_code=code, error=error)
    logger.info(
        "finished %s: %s",
        script,
        result.status.value,
        extra={
            "script": str(script),
            "status": result.status.value,
            "exit_code": result.exit_code,
            "duration": result.execution_time,
        },
    )
    return result


# -- functions --------------------------------------------------------------------------


def _function_child(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    conn: Any,
    out_path: str,
    err_path: str,
) -> None:
    """Entry point of the child process behind :func:`run_function`."""
    os.setsid()
    for fd, path in ((1, out_path), (2, err_path)):
        handle = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    import pickle

    try:
        value = func(*args, **kwargs)
        message: tuple[str, Any] = ("ok", value)
    except SystemExit as exc:  # sys.exit(N) in the function: its exit code, as a script's
        # sys.exit() is 0, sys.exit(True) 1, and sys.exit("message") prints it and is 1.
        number = int(exc.code) if isinstance(exc.code, int) else 1
        message = ("exit", 0 if exc.code is None else number)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        message = ("raised", traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        payload = pickle.dumps(
            ("unpicklable", f"return value cannot be pickled: {type(exc).__name__}: {exc}")
        )
    conn.send_bytes(payload)
    conn.close()


def _read_tail(path: str, limit: int, masker: Masker) -> str:
    capture = Capture(limit, None, masker)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            capture.write(chunk)
    capture.close()
    return capture.text()


def run_function(
    func: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    *,
    max_output: int = DEFAULT_MAX_OUTPUT,
    kill_grace: float = KILL_GRACE,
) -> dict[str, Any]:
    """Call ``func(*args, **kwargs)`` in a child process, so that it can be stopped.

    The child is started with the ``spawn`` method, so ``func``, its arguments
    and its return value must be picklable (a module-level function, not a
    lambda). It runs in its own session; on timeout its group is killed.

    Returns:
        A dict with ``name, type ("function"), status, result, error,
        start_time, end_time, execution_time, exit_code, stdout, stderr``.
        ``status`` is ``passed``, ``failed`` (it raised; ``error`` holds the
        traceback), ``timeout``, or ``error`` (it could not be started, its
        return value could not be pickled, or the process died).
    """
    import multiprocessing
    import pickle
    import tempfile

    name = getattr(func, "__qualname__", None) or repr(func)
    result: dict[str, Any] = {
        "name": name,
        "type": "function",
        "status": Status.ERROR.value,
        "result": None,
        "error": None,
        "start_time": None,
        "end_time": None,
        "execution_time": 0.0,
        "exit_code": None,
        "stdout": "",
        "stderr": "",
    }
    start, started = _now(), time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="orch-func-") as tmp:
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for path in (out_path, err_path):
            open(path, "wb").close()
        process = ctx.Process(
            target=_function_child,
            args=(func, tuple(args), dict(kwargs or {}), sender, out_path, err_path),
            daemon=True,
        )
        try:
            with children.spawning() as admit:
                process.start()
                assert process.pid is not None
                admit(process.pid)
        except Exception as exc:
            # spawn pickles the target's arguments in the parent
            result["error"] = f"cannot start {name}: {type(exc).__name__}: {exc}"
            receiver.close()
            sender.close()
            return _finish(result, start, started)
        sender.close()
        child = Child(name, process.pid, kill_grace, registry=children)
        message: Any = None
        with children.running(process, child):  # the one way a child ends, as a script's
            deadline = started + timeout if timeout is not None else None
            try:
                while message is None:
                    wait = (
                        0.05
                        if deadline is None
                        else max(0.0, min(0.05, deadline - time.monotonic()))
                    )
                    if receiver.poll(wait):
                        try:
                            message = pickle.loads(receiver.recv_bytes())
                        except (EOFError, OSError):
                            message = ("died", None)
                    elif child.stopped.is_set():
                        message = ("stopped", child.reason)
                    elif deadline is not None and time.monotonic() >= deadline:
                        message = ("timeout", None)
                    elif exited(process.pid):
                        message = ("died", None)
            finally:
                receiver.close()
                if message and message[0] in ("ok", "raised"):  # let it end by itself
                    until = time.monotonic() + 0.5
                    while not exited(process.pid) and time.monotonic() < until:
                        time.sleep(0.005)
        result["exit_code"] = process.exitcode
        kind, payload = message
        if kind == "ok":
            result["status"], result["result"] = Status.PASSED.value, payload
        elif kind == "exit":
            result["exit_code"] = payload
            if payload == 0:
                result["status"] = Status.PASSED.value
            else:
                result["status"], result["error"] = Status.FAILED.value, f"exit code {payload}"
        elif kind == "raised":
            result["status"], result["error"] = Status.FAILED.value, payload
        elif kind == "unpicklable":
            result["error"] = payload
        elif kind == "timeout":
            result["status"] = Status.TIMEOUT.value
            result["exit_code"] = None
            result["error"] = f"timed out after {timeout:g} s"
        elif kind == "stopped":  # as ScriptResult.stopped_by: never recorded
            result["error"] = result["stopped"] = payload.value
        else:
            code = process.exitcode
            how = f"killed by {_signal_name(-code)}" if code and code < 0 else f"exit code {code}"
            result["error"] = f"the function's process died without a result ({how})"
            if getattr(func, "__module__", None) == "__main__":
                # spawn imports the calling script again in the child, to find the function.
                result["error"] += (
                    "; a function defined in the script that calls run_function must be "
                    'called under `if __name__ == "__main__":` (the child imports the script)'
                )
        secrets = Masker.of_environment(os.environ)
        result["stdout"] = _read_tail(out_path, max_output, secrets)
        result["stderr"] = _read_tail(err_path, max_output, secrets)
        if result["error"]:
            result["error"] = secrets.mask(result["error"])  # a traceback shows values
    return _finish(result, start, started)
