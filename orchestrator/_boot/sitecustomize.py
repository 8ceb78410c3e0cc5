"""orchestrator's trace bootstrap: records what a script imports, reads and writes.

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
* ``m`` a module name the import system loaded or looked for (to find local
  files that did not exist, or that would shadow it), a top-level
  standard-library one among them once start-up is over (a local ``json.py``
  would shadow it), but never a built-in or frozen module, which no file can
  shadow; ``importlib.import_module`` raises no ``import`` audit event, so a
  finder last on ``sys.meta_path`` names the modules it did not find (those
  it found are files read);
* ``l`` a folder listed (``os.listdir``, ``os.scandir``, globbing);
* ``o`` a file outside the project opened for reading (absolute), unless the
  process wrote it itself or it belongs to the interpreter, a package, or
  ``/dev``, ``/proc``, ``/sys``: what orchestrator does not follow, named
  (the first 64 of a process);
* ``x`` a program started whose own reads are not traced;
* ``v`` the name (never the value) of an environment variable the script read
  through ``os.environ`` (``[]``, ``get``, ``os.getenv``, ``in``,
  ``setdefault``, ``pop``), except orchestrator's own ``ORCHESTRATOR_*``;
* ``e`` at the process's exit, where each third-party top-level module it
  imported after start-up lives: the module's file, or its package's folder,
  directly in a ``site-packages`` or ``dist-packages`` folder (absolute,
  wherever it is);
* ``p`` at the process's exit, its peak resident memory in KiB (``VmHWM``).

Environment reads are seen by giving ``os.environ`` (the same object) a
subclass of its class. Copying it whole reads no variable in particular:
``dict(os.environ)``, ``.copy()``, ``{**os.environ}``, ``.items()``,
``.values()``, a loop over it and ``env=os.environ`` record nothing. They
all iterate, then read each key just handed out, in order; so an iteration
arms its keys, a read of the very next one (the same object) takes it
silently, and any other read disarms them all and is recorded (a loop over
``sorted(os.environ)`` that reads each one records every name). Not seen:
``getenv()`` in C (extensions, the interpreter's own ``PYTHON*``),
``os.environb``, and reads made while start-up was still running. Threads
iterating and reading at once can make a read look like part of a copy.
What a process killed before its exit imported is not recorded (``e``).

Afterwards the next ``sitecustomize`` on the path, if any, runs as usual.
"""

import os
import sys

MYPY = False
if MYPY:  # typing costs milliseconds at start-up, in every traced process
    from collections.abc import Callable
    from typing import Any

# What site.py itself tries to import at start-up.
_SITE_HOOKS = frozenset({"sitecustomize", "usercustomize"})


def _install() -> "Callable[[], None] | None":
    """Trace this process into ``$ORCHESTRATOR_TRACE``.

    Returns what to call once start-up is over (None: not traced): from then on
    environment reads, standard-library imports and packages are the script's.
    """
    trace = os.environ.get("ORCHESTRATOR_TRACE")
    root = os.environ.get("ORCHESTRATOR_TRACE_ROOT")
    here = os.path.dirname(os.path.abspath(__file__))
    # Leave sys.path as the script would have it without us.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if not trace or not root or not hasattr(sys, "addaudithook"):
        return None
    try:
        fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    inside = root.rstrip("/") + "/"
    # Our own folders, and the interpreter's (a .venv inside the project): never inputs.
    skipped = os.environ.get("ORCHESTRATOR_TRACE_SKIP", "").split(os.pathsep)
    skipped += [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    # Only those that can match a path under the root: one startswith() per open.
    skip = tuple(
        q
        for q in (p.rstrip("/") + "/" for p in skipped if p)
        if q.startswith(inside) or inside.startswith(q)
    )
    # Outside the root, what is no script's data: the interpreter's and our own
    # folders, devices and the kernel's files.
    system = (*(p.rstrip("/") + "/" for p in skipped if p), "/dev/", "/proc/", "/sys/")
    # Top-level names that are never local: the standard library, built-ins, site's hooks.
    # Of those, a local file can still shadow a standard-library module, unless it is
    # built in or frozen (their importers come first): only that top-level name is kept.
    unshadowed = _SITE_HOOKS.union(sys.builtin_module_names)
    foreign = unshadowed.union(getattr(sys, "stdlib_module_names", ()))
    from _imp import is_frozen  # built in and loaded already: free

    started = False  # what start-up imports and reads is not the script's
    seen = set()
    getcwd, fspath, fsdecode, write = os.getcwd, os.fspath, os.fsdecode, os.write
    modules = sys.modules
    normpath = os.path.normpath
    O_WRITES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    fds = [fd]
    # The hook runs on every open and import of the process, so its common path
    # is inlined: a path opened for reading maps to its record ("" when it is not
    # local) and a second look at it, the import system's habit, costs a lookup.
    reads: dict[str, str] = {}
    writers: dict[str, bool] = {}
    wrote = set()  # absolute paths outside the root this process opened for writing
    away_left = [64]  # how many more outside reads are named

    def emit(key: str) -> None:
        seen.add(key)
        record = key.encode("utf-8", "surrogateescape") + b"\0"  # os.fsencode, cheaper
        try:
            write(fds[0], record)
        except OSError:
            # The script closed our descriptor (os.closerange): open the file again.
            try:
                fds[0] = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                write(fds[0], record)
            except OSError:
                pass

    def judge(text: str) -> str:
        if "//" in text or "/." in text or text.endswith("/"):
            text = normpath(text)
        # A skipped folder itself too (os.walk lists reports/ and .orchestrator/).
        if not text.startswith(inside) or (skip and (text + "/").startswith(skip)):
            return ""
        if "-packages/" in text and ("/site-packages/" in text or "/dist-packages/" in text):
            return ""
        if "/__pycache__/" in text:
            # Bytecode stands for its source: cache/name.cpython-311.pyc -> name.py.
            folder, _, name = text.rpartition("/__pycache__/")
            text = folder + "/" + name.partition(".")[0] + ".py"
        return text

    def away(text: str) -> str:
        # The record of a read outside the root ("" for none): where knowledge ends.
        if "//" in text or "/." in text or text.endswith("/"):
            text = normpath(text)
        if (
            text.startswith(inside)  # a skipped folder of the project
            or text.startswith(system)
            or "-packages/" in text
            or "/__pycache__/" in text
            or text in wrote
        ):
            return ""
        key = "o" + text
        if key in seen or not away_left[0]:
            return key if key in seen else ""
        away_left[0] -= 1
        return key

    def absolute(path: "Any") -> str:
        # The uncommon paths: bytes, path-likes, descriptors and relative names.
        if type(path) is not str:
            if isinstance(path, int):
                return ""
            try:
                path = fsdecode(fspath(path))
            except TypeError:
                return ""
        text: str = path
        if text[:1] != "/":
            text = getcwd() + "/" + text  # depends on the cwd: not kept
        return text

    def local(path: "Any") -> str:
        text = absolute(path)
        return judge(text) if text else ""

    def untraced(event: str, args: "tuple[Any, ...]") -> "str | None":
        # The program a start runs, unless it is a Python that traces itself.
        if event == "subprocess.Popen":
            program, argv = args[0], args[1]
        elif event == "os.spawn":
            program, argv = args[1], args[2]
        else:  # os.exec, os.posix_spawn
            program, argv = args[0], args[1]
        argv = [argv] if isinstance(argv, (str, bytes)) else list(argv or ())
        if program is None:
            program = argv[0] if argv else None
        if program is None:
            return None
        name = fsdecode(fspath(program))
        if name.rpartition("/")[2].startswith("python") or name == sys.executable:
            for word in argv[1:]:
                word = fsdecode(fspath(word))
                if not word.startswith("-") or word == "-" or word.startswith("--"):
                    break  # the script or -c's code: options end here
                if word in ("-c", "-m"):
                    break
                if any(flag in word[1:] for flag in "IES"):
                    return name  # the bootstrap is off in it
            return None
        return name

    def imported(name: "Any") -> None:
        if type(name) is not str:
            return
        top = name.partition(".")[0]
        if top in foreign:
            if started and top == name and name not in unshadowed:
                key = "m" + name
                if key not in seen and not is_frozen(name):
                    emit(key)
            return
        if top != name:
            # Below a package loaded from elsewhere nothing can be local.
            where = getattr(modules.get(top), "__file__", None)
            if where and not where.startswith(inside):
                return
        key = "m" + name
        if key not in seen:
            emit(key)

    def hook(event: str, args: "tuple[Any, ...]") -> None:
        if event == "open":
            path, mode = args[0], args[1]
            writes: bool | None
            if mode is None:
                writes = bool(args[2] & O_WRITES)
            else:
                writes = writers.get(mode)
                if writes is None:
                    writes = writers[mode] = any(c in mode for c in "wax+")
            if not writes and type(path) is str and path[:1] == "/":
                key = reads.get(path)
                if key is None:
                    text = judge(path)
                    key = reads[path] = "r" + text if text else away(path)
                    if key and key not in seen:
                        emit(key)
                return
            whole = absolute(path)
            text = judge(whole) if whole else ""
            if text:
                key = ("w" if writes else "r") + text
            elif not whole:
                return
            elif writes:
                wrote.add(normpath(whole))
                return
            else:
                key = reads.get(whole) or away(whole)
            if key and key not in seen:
                emit(key)
        elif event == "import":
            imported(args[0])
        elif event in _STARTS:
            try:  # a hook that raised would fail the start itself
                program = untraced(event, args)
            except Exception:
                program = None
            if program and "x" + program not in seen:
                emit("x" + program)
        elif event == "sqlite3.connect":
            # A database is read and written in place: an input as the script left it.
            database = args[0] if args else None
            if isinstance(database, bytes):
                database = fsdecode(database)
            if isinstance(database, str) and database not in ("", ":memory:"):
                if database.startswith("file:"):  # a URI: its path, without the query
                    database = database[5:].partition("?")[0]
                text = local(database)
                for key in ("r" + text, "w" + text) if text else ():
                    if key not in seen:
                        emit(key)
        elif event == "os.listdir" or event == "os.scandir":
            if sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
                return  # the import system's own folder listings
            text = local(args[0] if args and args[0] is not None else ".")
            if text and "l" + text not in seen:
                emit("l" + text)

    _STARTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn")
    emit("#orchestrator-trace 1")
    sys.addaudithook(hook)

    def peak() -> None:
        # This process's own peak memory: VmHWM counts from its exec, while the
        # ru_maxrss its parent gets from wait4 carries the spawner's size across exec.
        try:
            with open("/proc/self/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmHWM:"):
                        emit("p" + line.split()[1].decode())
                        return
        except (OSError, IndexError, ValueError):
            pass

    # Module objects' own namespace: reading __file__ through it runs no lazy loader
    # or module __getattr__ at exit.
    namespace = type(sys).__dict__["__dict__"].__get__  # type: ignore[index]
    at_start: frozenset[str] = frozenset()

    def packages() -> None:
        # Where each third-party module it imported lives: orchestrator names its
        # distribution and version from there. Those start-up loaded (.pth files:
        # setuptools' hack, editable installs' finders) are the environment's, not the script's.
        for name, module in list(modules.items()):
            if "." in name or name in at_start:
                continue
            try:
                names = namespace(module)
                where = names.get("__file__")
                if type(where) is str:
                    if "-packages/" not in where:
                        continue  # most are: local modules, the standard library
                    if where.rpartition("/")[2].startswith("__init__."):
                        where = where.rpartition("/")[0]
                    places = [where]
                else:  # a namespace package: its folders
                    places = list(names.get("__path__") or ())
                for where in places:
                    if (
                        where[:1] == "/"
                        and where.rpartition("/")[0].endswith(("/site-packages", "/dist-packages"))
                        and "e" + where not in seen
                    ):
                        emit("e" + where)
            except Exception:
                pass  # not a module, or a strange one: an exit must not fail for it

    def start() -> None:
        nonlocal started, at_start
        started = True
        at_start = frozenset(modules)
        environ = os.environ
        base = type(environ)
        armed: list[str] = []  # the keys an iteration handed out, not read yet, next last

        class Environ(base):  # type: ignore[misc, valid-type]
            """``os.environ``, recording the name of each variable read (never its value)."""

            __slots__ = ()

            def __iter__(self) -> "Any":
                keys = list(base.__iter__(self))
                armed[:] = keys[::-1]
                return iter(keys)

            def __getitem__(self, key: "Any") -> "Any":
                if armed:
                    # The very object an iteration just handed out (a copy reading what
                    # it listed): no read of that variable in particular.
                    if armed[-1] is key:
                        armed.pop()
                        return base.__getitem__(self, key)
                    del armed[:]
                if (
                    type(key) is str
                    and "v" + key not in seen
                    and not key.startswith("ORCHESTRATOR_")
                ):
                    emit("v" + key)
                return base.__getitem__(self, key)

        try:  # noqa: SIM105 (contextlib is one more import at start-up)
            environ.__class__ = Environ
        except TypeError:
            pass  # replaced by something that is no os._Environ: its reads go unseen

        class Lookout:
            """Last on ``sys.meta_path``: asked only for what no finder found, even where
            no ``import`` audit event was raised (``importlib.import_module``)."""

            @staticmethod
            def find_spec(name: str, path: "Any" = None, target: "Any" = None) -> None:
                imported(name)

        # Last, so an import that succeeds never pays for it.
        sys.meta_path.append(Lookout)

    import atexit

    # First registered, so they run last (after the script's own handlers), peak the very last.
    atexit.register(peak)
    atexit.register(packages)
    return start


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


_start = _install()
_chain()
_compile()
if _start is not None:
    _start()
