"""Orchestration sessions for a project's ``noxfile.py``.

::

    # noxfile.py
    from orchestrator.nox_sessions import orchestrate_sessions

    orchestrate_sessions("scripts")

registers one nox session per ``environments:`` group of the scripts' config,
``orchestrate(env='data')`` and so on, plus ``orchestrate(env='default')`` for
the scripts in no group. Each session's virtualenv gets its group's
requirements (or requirements file) and Python, and its scripts run with that
session's interpreter. ``nox -s orchestrate`` runs them all, and they write
into one run directory, so ``reports/latest`` holds one merged report.
Arguments after ``--`` go to ``orch run``: ``nox -s orchestrate -- -j 4``.
nox's own options keep working: ``-r`` reuses the virtualenvs, ``-db uv``
picks the backend, ``--no-install`` skips the installs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import DEFAULT_ENVIRONMENT, read_config
from .execution import new_run_id
from .project import Project

__all__ = ["orchestrate_sessions"]


def _session_python(session: Any) -> str:
    """The interpreter of a nox session's virtualenv (nox's own without one)."""
    try:
        bin_dir = session.bin
    except ValueError:  # -db none: no virtualenv, so nox's own interpreter
        return sys.executable
    if bin_dir:
        for name in ("python", "python.exe"):
            candidate = Path(bin_dir) / name
            if candidate.exists():
                return str(candidate)
    return sys.executable


def orchestrate_sessions(
    scripts_dir: str | os.PathLike[str] = "scripts",
    *,
    name: str = "orchestrate",
    run_args: Sequence[str] = (),
    reuse_venv: bool | None = None,
) -> None:
    """Register the ``orchestrate(env=...)`` sessions in the calling noxfile.

    Args:
        scripts_dir: the scripts directory, relative to the noxfile's folder.
        name: the sessions' name.
        run_args: arguments always passed to ``orch run`` (before ``posargs``).
        reuse_venv: passed to :func:`nox.session`.

    Raises:
        ConfigError: the scripts' config is invalid (nox shows it when loading).
    """
    import nox

    scripts = Path(scripts_dir)
    project = Project.locate(scripts)
    groups: dict[str, Any] = read_config(project.config_file)["environments"]
    run_id = new_run_id()  # one run directory for every session of this nox run
    params = [nox.param(g.get("python"), env, id=f"env={env!r}") for env, g in groups.items()]
    params.append(nox.param(None, DEFAULT_ENVIRONMENT, id=f"env={DEFAULT_ENVIRONMENT!r}"))

    def orchestrate(session: nox.Session, env: str) -> None:
        group = groups.get(env)
        if group is not None:
            if group["requirements"]:
                session.install(*group["requirements"])
            if group["requirements_file"]:
                session.install("-r", str(project.root / group["requirements_file"]))
        session.run(
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(scripts),
            "--environment",
            env,
            "--python",
            _session_python(session),
            "--run-id",
            run_id,
            *run_args,
            *session.posargs,
            external=True,
        )

    orchestrate.__doc__ = f"Run the scripts in {scripts} with orchestrator, one environment each."
    decorated = nox.parametrize("python,env", params)(orchestrate)
    nox.session(name=name, reuse_venv=reuse_venv)(decorated)
