"""orchestrator's trace bootstrap: records the local files a script imports, reads and writes.

Python imports ``sitecustomize`` at start-up from the first folder of
``sys.path`` that has one; orchestrator puts this folder first on
``PYTHONPATH`` for a traced script, so the script itself runs exactly as
``python script.py`` runs it (its ``__main__``, ``sys.argv``, tracebacks and
exit code are Python's own) and Python children that inherit the environment
are traced too. This file imports nothing of orchestrator and must run on any
Python from 3.8: an isolated environment may have another version.

An audit hook (``sys.addaudithook``) sees ``open`` (``open()``, ``os.open``,
and ``io.open_code``, which the import system uses for sources and
bytecode), ``import`` and directory listings made outside the import system.
Each new local path is appended to the trace file at once, one record per
``os.write``, so a killed script leaves what it used so far. A record is a
kind byte, the path and a NUL:

* ``r`` a file opened for reading (it may not exist: an attempt counts);
* ``w`` a file opened for writing;
* ``m`` a module name the import system loaded (to find local files that did
  not exist);
* ``l`` a folder listed (``os.listdir``, ``os.scandir``, globbing).

Afterwards the next ``sitecustomize`` on the path, if any, runs as usual.
"""

import os
import sys

MYPY = False
if MYPY:  # typing costs milliseconds at start-up, in every traced process
    from typing import Any

# What site.py itself tries to import at start-up.
_SITE_HOOKS = frozenset({"sitecustomize", "usercustomize"})


def _install() -> None:
    trace = os.environ.get("ORCHESTRATOR_TRACE")
    root = os.environ.get("ORCHESTRATOR_TRACE_ROOT")
    here = os.path.dirname(os.path.abspath(__file__))
    # Leave sys.path as the script would have it without us.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if not trace or not root or not hasattr(sys, "addaudithook"):
        return
    try:
        fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    inside = root.rstrip("/") + "/"
    # Our own folders, and the interpreter's (a .venv inside the project): never inputs.
    skipped = os.environ.get("ORCHESTRATOR_TRACE_SKIP", "").split(os.pathsep)
    skipped += [sys.prefix, sys.exec_prefix, sys.base_prefix]
    # Only those that can match a path under the root: one startswith() per open.
    skip = tuple(
        q
        for q in (p.rstrip("/") + "/" for p in skipped if p)
        if q.startswith(inside) or inside.startswith(q)
    )
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    builtin = frozenset(sys.builtin_module_names)
    seen = set()
    getcwd, fspath, fsdecode, write = os.getcwd, os.fspath, os.fsdecode, os.write
    normpath = os.path.normpath
    O_WRITES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    state = {"fd": fd}
    # The hook runs on every open of the process: an absolute path's verdict is
    # kept, so the import system's second look at a file costs one dict lookup.
    verdicts: dict[str, object] = {}
    modes: dict[str, bool] = {}
    unjudged = object()

    def emit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        record = key.encode("utf-8", "surrogateescape") + b"\0"  # os.fsencode, cheaper
        try:
            write(state["fd"], record)
        except OSError:
            # The script closed our descriptor (os.closerange): open the file again.
            try:
                state["fd"] = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                write(state["fd"], record)
            except OSError:
                pass

    def judge(text: str) -> "str | None":
        if "//" in text or "/." in text or text.endswith("/"):
            text = normpath(text)
        if not text.startswith(inside) or (skip and text.startswith(skip)):
            return None
        if "-packages/" in text and ("/site-packages/" in text or "/dist-packages/" in text):
            return None
        if "/__pycache__/" in text:
            # Bytecode stands for its source: cache/name.cpython-311.pyc -> name.py.
            folder, _, name = text.rpartition("/__pycache__/")
            text = folder + "/" + name.partition(".")[0] + ".py"
        return text

    def local(path: "Any") -> "str | None":
        if type(path) is not str:
            if isinstance(path, int):
                return None
            try:
                path = fsdecode(fspath(path))
            except TypeError:
                return None
        if path[:1] != "/":
            return judge(getcwd() + "/" + path)  # depends on the cwd: not kept
        verdict = verdicts.get(path, unjudged)
        if verdict is unjudged:
            verdict = verdicts[path] = judge(path)
        return verdict  # type: ignore[return-value]

    def hook(event: str, args: "tuple[Any, ...]") -> None:
        if event == "open":
            path = local(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2]
            writes: bool | None
            if mode is None:
                writes = bool(flags & O_WRITES)
            else:
                writes = modes.get(mode)
                if writes is None:
                    writes = modes[mode] = any(c in mode for c in "wax+")
            emit(("w" if writes else "r") + path)
        elif event == "import":
            name = args[0]
            if not isinstance(name, str):
                return
            top = name.partition(".")[0]
            if top in stdlib or top in builtin or top in _SITE_HOOKS:
                return
            if top != name:
                # Below a package loaded from elsewhere nothing can be local.
                parent = sys.modules.get(top)
                where = getattr(parent, "__file__", None) or ""
                if where and not where.startswith(inside):
                    return
            emit("m" + name)
        elif event == "os.listdir" or event == "os.scandir":
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return  # the import system's own folder listings
            path = local(args[0] if args and args[0] is not None else ".")
            if path is not None:
                emit("l" + path)

    emit("#orchestrator-trace 1")
    sys.addaudithook(hook)


def _chain() -> None:
    # Run the sitecustomize this one shadows (a distribution's or a virtualenv's).
    mine = sys.modules.pop("sitecustomize", None)
    try:
        __import__("sitecustomize")
    except ImportError:
        if mine is not None:
            sys.modules["sitecustomize"] = mine


def _compile() -> None:
    # Compiling this file costs each traced process 5 ms (PYTHONDONTWRITEBYTECODE
    # is common): the first process of each Python version, or the first after
    # this file changed, writes the bytecode.
    cached = globals().get("__cached__")
    if not cached:
        return
    try:
        with open(cached, "rb") as f:
            head = f.read(16)
        st = os.stat(__file__)
        # The header check the import system makes (PEP 552, unchecked: mtime, size).
        if (
            len(head) == 16
            and head[4:8] == b"\0\0\0\0"
            and int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF
        ):
            return
    except OSError:
        pass
    try:
        import py_compile

        py_compile.compile(__file__, cfile=cached, doraise=True)
    except Exception:
        pass  # a read-only install: every process compiles, slower but the same


_install()
_chain()
_compile()
