"""A real headless Chromium for the tests, driven over the DevTools protocol on a pipe.

Chromium reads commands on its fd 3 and writes replies and events on fd 4, each a
JSON message ended by a NUL (``--remote-debugging-pipe``): no port, no extra
package. Every console message, exception and browser log entry of the page is
collected, so a test can assert that a page loaded without a single error.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
#: Why browser tests skip where there is no browser (`.ci/run` installs Debian's).
MISSING = "no chromium on PATH: .ci/run installs Debian's chromium (apt-get install chromium)"

# What keeps a headless start from reaching for the network (refused on these machines).
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)


class Browser:
    """One Chromium, one page; :meth:`open` a URL, :meth:`eval` JavaScript in it."""

    def __init__(self, executable: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="orch-chromium-")
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, to_browser, 3),
            (os.POSIX_SPAWN_DUP2, from_browser, 4),
            # Its own log (D-Bus is absent in a container) is noise: errors come on the pipe.
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        self.pid = os.posix_spawn(
            executable,
            [executable, *_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            os.environ,
            file_actions=actions,
            setsid=True,  # its helpers in one group: all of them stopped at the end
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        self.url = "about:blank"
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=self.session)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._replies, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._lock:
                    waiting = self._answers.get(message.get("id", -1))
                    if waiting is None:
                        self.events.append(message)
                        self._lock.notify_all()
                if waiting is not None:
                    waiting.put(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait (at most 30 s) for its reply's result."""
        with self._lock:
            self._next += 1
            ident = self._next
            answer: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[ident] = answer
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        reply = answer.get(timeout=30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def open(self, url: str, ready: str = "document.body && document.body.dataset.ready") -> None:
        """Go to ``url``, wait for its load event, then until ``ready`` is truthy (30 s each).

        The page is watched with a MutationObserver: no polling.
        """
        with self._lock:
            seen = len(self.events)
        self.url = url
        self.call("Page.navigate", {"url": url}, self.session)
        with self._lock:
            loaded = self._lock.wait_for(
                lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]),
                timeout=30,
            )
        if not loaded:
            raise TimeoutError(f"{url}: no load event after 30 s; errors: {self.errors()}")
        waited = self.eval(
            f"""new Promise(resolve => {{
                const ready = () => Boolean({ready});
                if (ready()) return resolve(true);
                const timer = setTimeout(() => resolve(false), 30000);
                new MutationObserver((_, observer) => {{
                    if (ready()) {{ observer.disconnect(); clearTimeout(timer); resolve(true); }}
                }}).observe(document.documentElement,
                    {{attributes: true, childList: true, subtree: true}});
            }})"""
        )
        if not waited:
            raise TimeoutError(f"{url}: not ready after 30 s; errors: {self.errors()}")

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def errors(self) -> list[str]:
        """Every error the page met: exceptions, console errors, refused resources (CSP)."""
        found = []
        with self._lock:
            events = list(self.events)
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def requests(self) -> list[str]:
        """What the page fetched beyond itself (``data:`` URLs are part of it)."""
        with self._lock:
            events = list(self.events)
        return [
            url
            for event in events
            if event.get("method") == "Network.requestWillBeSent"
            and (url := event["params"]["request"]["url"]) != self.url
            and not url.startswith(("data:", "about:"))
        ]

    def close(self) -> None:
        """Stop the browser and every process it started; wait for it."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._commands)
        self._reader.join(timeout=10)
        os.close(self._replies)
        shutil.rmtree(self.profile, ignore_errors=True)


@contextmanager
def browser() -> Iterator[Browser]:
    """A fresh Chromium for one test (the caller skips first where there is none)."""
    assert CHROMIUM is not None, MISSING
    opened = Browser(CHROMIUM)
    try:
        yield opened
    finally:
        opened.close()


def file_url(path: Path) -> str:
    """``file://`` URL of a local file."""
    return path.resolve().as_uri()
