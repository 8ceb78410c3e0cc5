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
    skip = [p.rstrip("/") + "/" for p in skipped if p]
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    builtin = frozenset(sys.builtin_module_names)
    seen = set()
    getcwd, fspath, fsencode, write = os.getcwd, os.fspath, os.fsencode, os.write
    normpath = os.path.normpath
    O_WRITES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    state = {"fd": fd}

    def emit(kind: bytes, text: str) -> None:
        key = kind + fsencode(text)
        if key in seen:
            return
        seen.add(key)
        try:
            write(state["fd"], key + b"\0")
        except OSError:
            # The script closed our descriptor (os.closerange): open the file again.
            try:
                state["fd"] = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                write(state["fd"], key + b"\0")
            except OSError:
                pass

    def local(path: "Any") -> "str | None":
        if isinstance(path, int):
            return None
        try:
            text = os.fsdecode(fspath(path))
        except TypeError:
            return None
        if not text.startswith("/"):
            text = getcwd() + "/" + text
        text = normpath(text)
        if not text.startswith(inside):
            return None
        for prefix in skip:
            if text.startswith(prefix):
                return None
        if "/site-packages/" in text or "/dist-packages/" in text:
            return None
        if "/__pycache__/" in text:
            # Bytecode stands for its source: cache/name.cpython-311.pyc -> name.py.
            folder, _, name = text.rpartition("/__pycache__/")
            text = folder + "/" + name.partition(".")[0] + ".py"
        return text

    def hook(event: str, args: "tuple[Any, ...]") -> None:
        if event == "open":
            path = local(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2]
            writes = bool(flags & O_WRITES) if mode is None else any(c in mode for c in "wax+")
            emit(b"w" if writes else b"r", path)
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
            emit(b"m", name)
        elif event == "os.listdir" or event == "os.scandir":
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return  # the import system's own folder listings
            path = local(args[0] if args and args[0] is not None else ".")
            if path is not None:
                emit(b"l", path)

    emit(b"#", "orchestrator-trace 1")
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
    # is common): the first process of each Python version writes the bytecode.
    cached = globals().get("__cached__")
    if not cached or os.path.exists(cached):
        return
    try:
        import py_compile

        py_compile.compile(__file__, cfile=cached, doraise=True)
    except Exception:
        pass  # a read-only install: every process compiles, slower but the same


_install()
_chain()
_compile()
