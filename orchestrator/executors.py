"""Where scripts run: in this process's children, or on a Dask cluster's workers.

An executor takes a :class:`ScriptCall` (plain values, so it can travel) and
returns the script's result dict, blocking; the workflow engine calls it from
its worker threads, and ``-j`` bounds how many calls are in flight. The engine,
the reporters and the CLI never know which executor runs.

On a worker, a script runs through the same :func:`~orchestrator.runner.script_result`,
so process groups, timeouts, bounded output and every status behave exactly as
locally; results gain a ``worker`` field. Before running, the worker checks the
content hash of the script and of every local module it imports against the
submitting checkout: a mismatch is status ``error`` naming the worker and the
file, never a silent run of other code. A worker that dies mid-script is
detected by the scheduler; the script is submitted once more, and a second
loss is status ``error`` with the reason. Task keys share one prefix,
``orch-script-<id>``, because a prefix per key slows the scheduler down
quadratically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from .errors import OrchestratorError
from .processes import KILL_GRACE, children
from .results import ScriptResult, Status, StopReason, unrun_result
from .runner import ScriptCall

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "ScriptCall", "make_executor"]

#: Where ``--executor dask`` finds its scheduler when ``--scheduler`` is not given.
SCHEDULER_ENV = "ORCH_DASK_SCHEDULER"


class Executor(Protocol):
    """Runs script calls; ``run`` blocks and is called from several threads at once."""

    #: Whether calls carry input hashes to check (another machine may run them).
    verifies: bool

    def run(self, call: ScriptCall) -> ScriptResult:
        """Run one script and return its result; never raises for the script."""

    def stop_all(self, reason: StopReason) -> None:
        """Kill every running script's process group; pending ones end ``error``."""

    def close(self) -> None:
        """Release what the executor holds (a cluster, a client)."""


class LocalExecutor:
    """Children of this process: the default."""

    verifies = False

    def run(self, call: ScriptCall) -> ScriptResult:
        """Run the script in a child process of this one."""
        return call.run()

    def stop_all(self, reason: StopReason) -> None:
        """Kill every running child's process group."""
        children.terminate(reason)

    def close(self) -> None:
        """Nothing to release."""


class Restarting:
    """``orch watch --on-busy restart``: a local executor that knows what it is running.

    :meth:`restart` kills the named running scripts (their whole process
    groups); they end ``error``, stopped with :attr:`StopReason.RESTARTED`, and
    are not recorded, so the next batch runs them again.
    """

    def __init__(self, inner: Executor | None = None) -> None:
        self.inner = inner or LocalExecutor()
        self.verifies = self.inner.verifies
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def run(self, call: ScriptCall) -> ScriptResult:
        """Run the call, known as running until it returns."""
        script = os.fspath(call.script)
        with self._lock:
            self._running[script] = self._running.get(script, 0) + 1
        try:
            return self.inner.run(call)
        finally:
            with self._lock:
                self._running[script] -= 1
                if not self._running[script]:
                    del self._running[script]

    def running(self) -> list[str]:
        """The scripts running now, by absolute path."""
        with self._lock:
            return list(self._running)

    def restart(self, scripts: Iterable[str]) -> int:
        """Kill these running scripts; returns how many were stopped."""
        chosen = frozenset(scripts)
        return children.terminate(StopReason.RESTARTED, lambda script: script in chosen)

    def stop_all(self, reason: StopReason) -> None:
        """Kill every running script's process group."""
        self.inner.stop_all(reason)

    def close(self) -> None:
        """Release what the inner executor holds."""
        self.inner.close()


def _hash(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _remote_run(call: ScriptCall) -> ScriptResult:
    """On a worker: check the checkout, then run the script as locally."""
    from distributed import get_worker

    try:
        worker = get_worker().address
    except ValueError:  # not on a worker (a synchronous test client)
        worker = "local"
    for path, digest in call.inputs.items():
        if _hash(path) != digest:
            what = "is missing" if os.path.exists(path) is False else "differs"
            return unrun_result(
                call.script,
                call.scripts_dir,
                Status.ERROR,
                error=f"worker {worker}: {path} {what} from the submitting checkout; "
                "workers must see the same files",
            ).with_extra(worker=worker)
    return call.run().with_extra(worker=worker)


def _stop_here(reason: StopReason, tag: str | None) -> int:
    return children.terminate(reason, tag=tag)


def _refused(address: str) -> None:
    """Raise ConnectionRefusedError at once when nothing listens at a ``tcp://`` address.

    ``Client`` retries a refused connection until its timeout: a mistyped port
    would cost the user 10 s before the one-line error.
    """
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        return  # Client says what is wrong with it
    if parts.scheme != "tcp" or not host or not port:
        return
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        raise
    except OSError:
        return  # a slow or unknown host: Client's own timeout decides


class DaskExecutor:
    """Scripts run on the workers of a Dask ``distributed`` cluster."""

    verifies = True

    def __init__(self, scheduler: str | None = None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise OrchestratorError(
                "--executor dask needs Dask's distributed: pip install 'orchestrator[dask]'"
            ) from None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self._futures: set[Any] = set()
        self._stopped: StopReason | None = None
        self._give_up_at: float | None = None
        self._tag: str | None = None
        if scheduler:
            try:
                _refused(scheduler)
                self.client: Any = Client(scheduler, timeout="10s")
            except (OSError, ValueError, TypeError) as exc:
                from_env = scheduler == os.environ.get(SCHEDULER_ENV)
                hint = (
                    f"set {SCHEDULER_ENV} right, or unset it"
                    if from_env
                    else ("give tcp://HOST:PORT of a running `dask scheduler`")
                )
                raise OrchestratorError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}; {hint}"
                ) from None
        else:
            # A death is ours to retry once (see run()); the scheduler should not retry too.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = LocalCluster(
                    n_workers=os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # Not 8787: another cluster may hold it, and distributed would warn.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                )
            self.client = Client(self._cluster)

    def run(self, call: ScriptCall) -> ScriptResult:
        """Submit the script, wait for its result; on a lost worker, submit once more."""
        from distributed import CancelledError

        reason = ""
        for _ in range(2):
            if self._stopped:
                break
            future = self.client.submit(
                _remote_run, call, key=f"orch-script-{uuid.uuid4().hex}", pure=False
            )
            with self._lock:
                self._futures.add(future)
                self._tag = call.tag
            try:
                result: ScriptResult = self._wait(future)
                if reason:  # it may have run before: the result says why it ran again
                    result = result.with_extra(resubmitted=reason)
                return result
            except CancelledError:
                break
            except Exception as exc:  # KilledWorker, a lost connection: the worker is gone
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self._futures.discard(future)
        if self._stopped is not None:  # stopped from here: says nothing about the script
            return unrun_result(call.script, call.scripts_dir, Status.ERROR).stopped_by(
                self._stopped
            )
        error = f"the worker running it died, twice ({reason})"
        return unrun_result(call.script, call.scripts_dir, Status.ERROR, error=error)

    def _wait(self, future: Any) -> Any:
        """The future's result; after a stop, give up on it once the grace has passed."""
        from distributed import CancelledError
        from distributed import TimeoutError as DaskTimeout

        while True:
            try:
                return future.result(timeout=0.2)
            except (TimeoutError, DaskTimeout):
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    self.client.cancel([future], force=True)
                    raise CancelledError() from None

    def stop_all(self, reason: StopReason) -> None:
        """Cancel the scripts not yet started; kill the running ones' process groups.

        Running scripts are stopped on their workers, so their results (with
        their output so far) still come back, as they do locally; only a
        worker that does not answer within the grace loses its result.
        """
        self._stopped = reason
        with self._lock:
            futures = list(self._futures)
        with contextlib.suppress(Exception):  # a dying cluster may refuse; we cancel anyway
            processing = {k for keys in self.client.processing().values() for k in keys}
            self.client.cancel([f for f in futures if f.key not in processing], force=True)
        with contextlib.suppress(Exception):
            self.client.run(_stop_here, reason, self._tag)
        self._give_up_at = time.monotonic() + KILL_GRACE + 5.0

    def close(self) -> None:
        """Close the client, and the cluster if we started it."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(name: str, scheduler: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``dask``).

    Raises:
        OrchestratorError: an unknown name, or dask is missing or unreachable.
    """
    if name == "local":
        return LocalExecutor()
    if name == "dask":
        return DaskExecutor(scheduler or os.environ.get(SCHEDULER_ENV) or None)
    raise OrchestratorError(f"unknown executor {name!r}: use local or dask")
