"""Isolated environments for scripts that bring their own dependencies.

Two sources:

* ``environments:`` groups in the config: ``requirements`` (or a
  ``requirements_file``), an optional ``python``, and the ``scripts`` globs a
  group owns;
* PEP 723 inline metadata in a script (``# /// script`` with ``dependencies``
  and ``requires-python``): that script gets an environment of its own, even
  when a group lists it.

Each environment is a virtualenv cached under ``.orchestrator/envs/<key>``,
where the key hashes the requirements (and a requirements file's content),
the requested Python and the interpreter orchestrator runs on. A complete
environment holds ``orchestrator-env.json``; finding it means no install step
at all. A new key builds a new environment: with ``uv`` when it is on PATH,
otherwise with ``venv`` and pip. Building holds a file lock, so parallel runs
build an environment once. A failed build raises :class:`EnvBuildError`
with the installer's message, and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._files import ensure_state_dir, locked
from .errors import OrchestratorError
from .processes import children
from .project import Project

__all__ = [
    "EnvBuildError",
    "EnvSpec",
    "Environments",
    "inline_metadata",
    "interpreter_identity",
    "satisfies",
]

_MARKER = "orchestrator-env.json"
_INSTALL_TIMEOUT = 900.0
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


class EnvBuildError(OrchestratorError):
    """An environment could not be built; the message carries the installer's output."""


def inline_metadata(source: str) -> dict[str, Any] | None:
    """The PEP 723 ``script`` block of a script, parsed, or None if it has none.

    Raises:
        EnvBuildError: the block is not valid TOML, or there are two.
    """
    blocks = [m for m in _PEP723.finditer(source) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise EnvBuildError("more than one '# /// script' block")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise EnvBuildError(f"invalid '# /// script' metadata: {exc}") from None
    return data


_CLAUSE = re.compile(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*([0-9][0-9.]*)(\.\*)?\s*\Z")


def satisfies(version: tuple[int, ...], spec: str) -> bool:
    """Whether a Python version meets a ``requires-python`` specifier such as ``>=3.10,<4``.

    Raises:
        EnvBuildError: the specifier cannot be read.
    """
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        match = _CLAUSE.match(clause)
        if match is None:
            raise EnvBuildError(f"cannot read requires-python {spec!r}")
        op, text, wildcard = match.groups()
        want = tuple(int(p) for p in text.split("."))
        have = version[: len(want)] if wildcard or op in ("==", "!=", "===") else version
        if op == "~=":
            ok = version >= want and version[: len(want) - 1] == want[:-1]
        else:
            ok = {
                "==": have == want,
                "===": have == want,
                "!=": have != want,
                "<=": have <= want,
                ">=": have >= want,
                "<": have < want,
                ">": have > want,
            }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class EnvSpec:
    """What an environment holds; equal specs share one environment."""

    name: str
    requirements: tuple[str, ...] = ()
    requirements_file: Path | None = None
    python: str | None = None
    requires_python: str | None = None

    @property
    def inline(self) -> bool:
        """Whether it comes from the script's own PEP 723 metadata, not a config group."""
        return self.name.startswith("script ")

    def key(self) -> str:
        """The cache key: requirements, requirements file content, Python, our interpreter."""
        digest = hashlib.sha256()
        digest.update(
            json.dumps([list(self.requirements), self.python, self.requires_python]).encode()
        )
        if self.requirements_file is not None:
            try:
                digest.update(self.requirements_file.read_bytes())
            except OSError:
                digest.update(b"<missing>")
        digest.update(sys.executable.encode())
        return digest.hexdigest()[:16]


_IDENTITIES: dict[tuple[Any, ...], dict[str, str]] = {}


def interpreter_identity(python: str | None = None) -> dict[str, str]:
    """The identity of the Python scripts run with: its path, version and build.

    Ours costs nothing; another one (``--python``) is asked once per run of
    orch and file version, so an interpreter recreated at the same path with
    another version is told apart.
    """
    if not python:
        version, _, build = sys.version.partition(" ")
        return {"path": sys.executable, "version": version, "build": build}
    try:
        real = os.path.realpath(python)
        st = os.stat(real)
        key: tuple[Any, ...] = (real, st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return {"path": python, "version": "unknown", "build": "not found"}
    if key not in _IDENTITIES:
        try:
            out = subprocess.run(
                [python, "-I", "-S", "-c", "import sys; print(sys.version)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = "unknown (it does not run)"
        version, _, build = " ".join(out.split()).partition(" ")
        _IDENTITIES[key] = {"path": python, "version": version, "build": build}
    return _IDENTITIES[key]


def _run_installer(command: Sequence[str], what: str) -> None:
    """Run an installer step in its own process group; raise with its output if it fails."""
    try:
        proc, child = children.start(
            command, what, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        raise EnvBuildError(f"{what}: cannot start {command[0]}: {exc.strerror}") from None
    # Registered, so an interrupt stops the install as it stops scripts; on a timeout
    # (or any error) nothing of it is left.
    with children.running(proc, child):
        output, _ = proc.communicate(timeout=_INSTALL_TIMEOUT)
    if proc.returncode != 0:
        text = output.decode("utf-8", errors="replace").strip().splitlines()
        tail = " | ".join(line.strip() for line in text[-6:] if line.strip())
        raise EnvBuildError(f"{what} failed (exit {proc.returncode}): {tail}")


def _own_pip() -> list[str]:
    """``[python, -m, pip]`` when orch's interpreter has a pip that takes ``--python`` (22.3+)."""
    try:
        from pip import __version__

        major, minor = (int(part) for part in __version__.split(".")[:2])
    except (ImportError, ValueError):
        return []
    return [sys.executable, "-m", "pip"] if (major, minor) >= (22, 3) else []


def _base_python(spec: str | None) -> str:
    """The interpreter a venv is made from: ours, a path, or ``pythonX.Y`` on PATH."""
    if spec is None:
        return sys.executable
    if os.sep in spec:
        return spec
    found = shutil.which(f"python{spec}") or shutil.which(spec)
    if found is None:
        raise EnvBuildError(f"Python {spec} is not on PATH; install it or drop 'python'")
    return found


class Environments:
    """The environment cache of one project, and which environment each script uses."""

    def __init__(self, project: Project, groups: Mapping[str, Mapping[str, Any]]) -> None:
        self.root = project.root
        self.state = project.state_dir
        self.dir = project.state_dir / "envs"
        self.groups = groups
        self._ready: dict[str, Path] = {}
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._specs: dict[tuple[Any, ...], EnvSpec | EnvBuildError | None] = {}

    def spec_for(self, script: Path, group: str | None) -> EnvSpec | None:
        """The environment a script runs in, or None for the current interpreter.

        ``group``: the ``environments:`` group the config puts it in (its
        ``environment`` setting); a script's own PEP 723 metadata comes first.

        Remembered per file version: a run asks once for the fingerprint and
        once to start the script, and the script is read only once.

        Raises:
            EnvBuildError: the script's inline metadata is invalid.
        """
        try:
            st = script.stat()
            key: tuple[Any, ...] = (script, st.st_size, st.st_mtime_ns, group)
        except OSError:
            return self._read_spec(script, group)
        if key not in self._specs:
            try:
                self._specs[key] = self._read_spec(script, group)
            except EnvBuildError as exc:
                self._specs[key] = exc
        found = self._specs[key]
        if isinstance(found, EnvBuildError):
            raise found
        return found

    def _read_spec(self, script: Path, group: str | None) -> EnvSpec | None:
        try:
            source = script.read_text(encoding="utf-8", errors="replace")
        except OSError:
            source = ""
        if "# /// script" in source:
            meta = inline_metadata(source)
            if meta is not None:
                deps = meta.get("dependencies", [])
                if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                    raise EnvBuildError("'dependencies' must be a list of strings")
                requires = meta.get("requires-python")
                if requires is not None and not isinstance(requires, str):
                    raise EnvBuildError("'requires-python' must be a string")
                return EnvSpec(
                    name=f"script {script.name}",
                    requirements=tuple(deps),
                    requires_python=requires,
                )
        if group is None:
            return None
        spec = self.groups[group]
        file = spec.get("requirements_file")
        return EnvSpec(
            name=group,
            requirements=tuple(spec.get("requirements", ())),
            requirements_file=(self.root / file) if file else None,
            python=spec.get("python"),
        )

    def used_by(self, jobs: Iterable[Any]) -> dict[str, list[str]]:
        """``{environment key: [script paths]}`` for the planned scripts that have one.

        A script with invalid inline metadata uses none (it fails when run).
        """
        used: dict[str, list[str]] = {}
        for job in jobs:
            try:
                spec = self.spec_for(job.path, job.settings.environment)
            except EnvBuildError:
                continue
            if spec is not None:
                used.setdefault(spec.key(), []).append(job.rel)
        return used

    def path(self, spec: EnvSpec) -> Path:
        """Where the environment of ``spec`` lives."""
        return self.dir / spec.key()

    def python(self, spec: EnvSpec) -> Path:
        """The interpreter of ``spec``'s environment, building it first if needed.

        Thread-safe; each environment is built once per run, and a failure is
        remembered, so a group's other scripts fail at once with the same message.

        Raises:
            EnvBuildError: the build failed.
        """
        key = spec.key()
        with self._lock:
            if key in self._ready:
                return self._ready[key]
            if key in self._failed:
                raise EnvBuildError(self._failed[key])
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key in self._ready:
                return self._ready[key]
            if key in self._failed:
                raise EnvBuildError(self._failed[key])
            try:
                python = self._ensure(spec, key)
            except EnvBuildError as exc:
                message = f"environment {spec.name!r}: {exc}"
                with self._lock:
                    self._failed[key] = message
                raise EnvBuildError(message) from None
            with self._lock:
                self._ready[key] = python
            return python

    def ready(self, spec: EnvSpec) -> bool:
        """Whether ``spec``'s environment is built (:meth:`python` would build nothing)."""
        return (self.dir / spec.key() / _MARKER).is_file()

    def _ensure(self, spec: EnvSpec, key: str) -> Path:
        env = self.dir / key
        python = env / "bin" / "python"
        if (env / _MARKER).is_file():
            return python  # reused: no install step at all
        ensure_state_dir(self.state)
        with locked(self.dir / f"{key}.lock"):
            if (env / _MARKER).is_file():
                return python  # another run built it while we waited
            shutil.rmtree(env, ignore_errors=True)
            began = time.monotonic()
            try:
                self._build(spec, env, python)
            except BaseException:
                shutil.rmtree(env, ignore_errors=True)
                raise
            marker = {
                "name": spec.name,
                "requirements": list(spec.requirements),
                "requirements_file": str(spec.requirements_file or "") or None,
                "python": spec.python,
                "created": datetime.now(timezone.utc).isoformat(),
                "build_seconds": round(time.monotonic() - began, 3),
            }
            (env / _MARKER).write_text(json.dumps(marker, indent=1))
        return python

    def _build(self, spec: EnvSpec, env: Path, python: Path) -> None:
        args = list(spec.requirements)
        if spec.requirements_file is not None:
            if not spec.requirements_file.is_file():
                raise EnvBuildError(f"requirements_file {spec.requirements_file} is missing")
            args += ["-r", str(spec.requirements_file)]
        uv = shutil.which("uv")
        base = _base_python(spec.python)
        needs = spec.requires_python
        if needs is not None and not spec.python and not satisfies(sys.version_info[:3], needs):
            if uv is None:
                raise EnvBuildError(
                    f"requires-python {needs!r} is not met by Python "
                    f"{sys.version.split()[0]}; install uv to fetch a matching one"
                )
            base = needs  # uv finds an interpreter that matches
        if uv is not None:
            _run_installer([uv, "venv", "--quiet", "--python", base, str(env)], "uv venv")
            if args:
                _run_installer(
                    [uv, "pip", "install", "--quiet", "--python", str(python), *args],
                    "uv pip install",
                )
            return
        # Our own pip installs into the new venv (``pip --python``): seeding each venv
        # with a pip of its own costs about 3 s a build, and the venv needs none.
        ours = _own_pip()
        seed = ["--without-pip"] if ours else []
        _run_installer([base, "-m", "venv", *seed, str(env)], "python -m venv")
        if args:
            pip = [*ours, "--python", str(python)] if ours else [str(python), "-m", "pip"]
            _run_installer(
                [*pip, "install", "--quiet", "--disable-pip-version-check", "--no-input", *args],
                "pip install",
            )

    def cached(self) -> list[dict[str, Any]]:
        """Every complete environment in the cache, with its marker and size."""
        found: list[dict[str, Any]] = []
        if not self.dir.is_dir():
            return found
        for env in sorted(self.dir.iterdir()):
            marker = env / _MARKER
            if not marker.is_file():
                continue
            try:
                data = json.loads(marker.read_text())
            except (OSError, ValueError):
                data = {}
            size = sum(f.stat().st_size for f in env.rglob("*") if f.is_file())
            found.append({"key": env.name, "path": str(env), "size": size, **data})
        return found

    def clean(self, keep: set[str] | None = None) -> list[str]:
        """Remove cached environments (all, or those whose key is not in ``keep``)."""
        removed: list[str] = []
        if not self.dir.is_dir():
            return removed
        for env in sorted(self.dir.iterdir()):
            if env.is_dir() and (keep is None or env.name not in keep):
                shutil.rmtree(env, ignore_errors=True)
                removed.append(env.name)
            elif env.suffix == ".lock" and (keep is None or env.stem not in keep):
                env.unlink(missing_ok=True)
        return removed
