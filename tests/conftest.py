"""Shared fixtures: sample projects built in tmp_path, and process checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: The keys every result dict has: the public contract (the brief's list).
RESULT_KEYS = frozenset(
    {
        "script",
        "name",
        "subdirectory",
        "start_time",
        "end_time",
        "status",
        "exit_code",
        "execution_time",
        "stdout",
        "stderr",
        "error",
    }
)


#: The environment an ``orch`` child of the tests runs with: this checkout importable.
ORCH_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Project:
    """A project root (with pyproject.toml) and a ``scripts/`` tree in tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scripts = root / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)
        (root / "pyproject.toml").write_text("[project]\nname = 'sample'\n")

    def script(self, rel: str, body: str = "") -> Path:
        """Write ``scripts/<rel>`` with dedented ``body`` and return its path."""
        path = self.scripts / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip("\n"))
        return path

    def orch(
        self, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``python -m orchestrator ARGS`` in the project root, this checkout's package first."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *map(str, args)],
            cwd=self.root,
            env={**ORCH_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def config(self, text: str) -> Path:
        """Write ``scripts/config.yaml``."""
        path = self.scripts / "config.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty sample project."""
    return Project(tmp_path / "proj")


def make_wheel(directory: Path, name: str, body: str = "VALUE = 1\n", version: str = "1.0") -> Path:
    """Build a minimal pure-Python wheel of a one-module package, without any index or backend."""
    import base64
    import hashlib
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture
def unmarked(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder with no ``pyproject.toml`` or ``.git`` above it.

    ``tmp_path`` usually is one; under ``nox -s release_check`` it lies inside
    the checkout, so a folder in ``/tmp`` or ``/var/tmp`` is taken instead.
    """
    from orchestrator.project import find_project_root

    for base in (tmp_path, Path("/tmp"), Path("/var/tmp")):
        if base.is_dir() and find_project_root(base) is None:
            folder = Path(tempfile.mkdtemp(prefix="orch-unmarked-", dir=base))
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
    pytest.skip("no folder without a project marker above it on this machine")
