"""Isolated environments: groups, PEP 723 scripts, the cache, ``orch envs`` and nox sessions.

Environments are built for real (``python -m venv`` and pip; uv only where a
test says so) from wheels made in tmp_path, so nothing needs a package index.
Builds are slow, so one built project is shared by the tests that only read it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, make_wheel

from orchestrator.environments import EnvBuildError, EnvSpec, inline_metadata


def _path_without_uv() -> str:
    """PATH minus every directory holding a ``uv``, so builds take the venv + pip path."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not os.access(Path(d, "uv"), os.X_OK))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env.update(
        NO_COLOR="1",
        PATH=_path_without_uv(),
        # Requirements are local wheels: an index lookup would be a bug in the test.
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    env.update(extra)
    return env


def orch(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orchestrator ARGS`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        env=dict(env) if env is not None else _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def latest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "reports" / "latest" / "summary.json").read_text())
    return data


def statuses(summary: Mapping[str, Any]) -> dict[str, str]:
    return {r["path"]: r["status"] for r in summary["results"]}


def log_of(run_dir: Path, rel: str) -> dict[str, Any]:
    """The per-script log of a run (it keeps stdout and stderr)."""
    data: dict[str, Any] = json.loads((run_dir / "logs" / f"{rel}.json").read_text())
    return data


def envs_dir(root: Path) -> Path:
    return root / ".orchestrator" / "envs"


def markers(root: Path) -> dict[str, dict[str, Any]]:
    """Every complete cached environment: key -> its ``orchestrator-env.json``."""
    found: dict[str, dict[str, Any]] = {}
    if envs_dir(root).is_dir():
        for marker in envs_dir(root).glob("*/orchestrator-env.json"):
            found[marker.parent.name] = json.loads(marker.read_text())
    return found


def env_dirs(root: Path) -> set[str]:
    """Every directory in the cache, complete or not."""
    if not envs_dir(root).is_dir():
        return set()
    return {p.name for p in envs_dir(root).iterdir() if p.is_dir()}


def key_named(root: Path, name: str) -> str:
    keys = [key for key, marker in markers(root).items() if marker["name"] == name]
    assert len(keys) == 1, markers(root)
    return keys[0]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def requirement(wheel: Path) -> str:
    name = wheel.name.split("-")[0]
    return f"{name} @ {wheel.as_uri()}"


def group_config(name: str, requirements: list[str], scripts: list[str]) -> str:
    """An ``environments:`` section with one group (JSON is YAML, and quotes the URLs)."""
    group = {"requirements": requirements, "scripts": scripts}
    return json.dumps({"environments": {name: group}})


# -- inline metadata and keys (fast) ----------------------------------------------------


def test_inline_metadata_parses_dependencies_and_requires_python() -> None:
    source = textwrap.dedent(
        """\
        #!/usr/bin/env python
        # /// script
        # requires-python = ">=3.10"
        # dependencies = [
        #   "requests>=2",
        #   "rich",
        # ]
        # ///
        print("hi")
        """
    )
    assert inline_metadata(source) == {
        "requires-python": ">=3.10",
        "dependencies": ["requests>=2", "rich"],
    }


@pytest.mark.parametrize(
    "source",
    [
        "print('no metadata')\n",
        "# /// pyproject\n# name = 'x'\n# ///\n",
        "# /// script\n# dependencies = []\n",  # never closed
    ],
    ids=["none", "other-type", "unclosed"],
)
def test_inline_metadata_none_without_a_script_block(source: str) -> None:
    assert inline_metadata(source) is None


def test_inline_metadata_invalid_toml_raises() -> None:
    with pytest.raises(EnvBuildError, match="invalid"):
        inline_metadata("# /// script\n# dependencies = [\n# ///\n")


def test_inline_metadata_two_blocks_raise() -> None:
    block = "# /// script\n# dependencies = []\n# ///\n"
    with pytest.raises(EnvBuildError, match="more than one"):
        inline_metadata(block + "x = 1\n" + block)


def test_key_changes_with_requirements_and_python() -> None:
    base = EnvSpec("data", ("localpkg==1.0",))
    assert base.key() == EnvSpec("data", ("localpkg==1.0",)).key()
    assert base.key() != EnvSpec("data", ("localpkg==2.0",)).key()
    assert base.key() != EnvSpec("data", ("localpkg==1.0", "other")).key()
    assert base.key() != EnvSpec("data", ("localpkg==1.0",), python="3.12").key()


def test_key_changes_with_requirements_file_content(tmp_path: Path) -> None:
    file = tmp_path / "requirements.txt"
    file.write_text("localpkg==1.0\n")
    spec = EnvSpec("data", requirements_file=file)
    first = spec.key()
    assert spec.key() == first
    file.write_text("localpkg==2.0\n")
    assert spec.key() != first
    file.write_text("localpkg==1.0\n")
    assert spec.key() == first


# -- config validation (fast: nothing is built) ------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"data": {"requirements": ["x"], "scripts": ["data"], "pythn": "3.11"}},
            "environments.data.pythn: unknown key; did you mean 'python'?",
        ),
        (
            {"data": {"requirements": ["x"], "requirements_file": "r.txt", "scripts": ["data"]}},
            "environments.data: give one of requirements",
        ),
        ({"data": {"scripts": ["data"]}}, "environments.data: give one of requirements"),
        (
            {"default": {"requirements": ["x"], "scripts": ["data"]}},
            "environments.default: expected a name",
        ),
        (
            {
                "a": {"requirements": ["x"], "scripts": ["data"]},
                "b": {"requirements": ["y"], "scripts": ["data/*.py"]},
            },
            "data/job.py is in a and b",
        ),
    ],
    ids=["unknown-key", "both", "neither", "named-default", "two-groups"],
)
def test_invalid_environments_config(
    project: Project, config: dict[str, Any], expected: str
) -> None:
    project.script("data/job.py", "print('hi')\n")
    config_file = project.config(json.dumps({"environments": config}))
    line = one_error_line(orch("run", project.scripts))
    assert line.startswith("orch: error: "), line
    assert str(config_file) in line
    assert expected in line
    assert not env_dirs(project.root)


# -- one built project, shared ----------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A project whose first ``orch run`` built a group's and a PEP 723 script's environment."""

    project: Project
    first: subprocess.CompletedProcess[str]
    first_seconds: float
    run_dir: Path
    summary: dict[str, Any]
    markers: dict[str, dict[str, Any]]
    requirement: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("built")
    localpkg = make_wheel(base / "wheels", "localpkg", "VALUE = 'group'\n")
    inlinepkg = make_wheel(base / "wheels", "inlinepkg", "VALUE = 'inline'\n")
    project = Project(base / "proj")
    project.config(group_config("data", [requirement(localpkg)], ["data/**"]))
    project.script("data/use.py", "import localpkg\nprint('localpkg', localpkg.VALUE)\n")
    # Listed by the group, yet its inline metadata gives it an environment of its own.
    project.script(
        "data/inline.py",
        f"""
        # /// script
        # dependencies = [{json.dumps(requirement(inlinepkg))}]
        # ///
        import importlib.util
        import inlinepkg
        print("inlinepkg", inlinepkg.VALUE)
        assert importlib.util.find_spec("localpkg") is None, "saw the group's environment"
        """,
    )
    project.script("outside.py", "import localpkg\n")
    project.script("outside_inline.py", "import inlinepkg\n")
    project.script("plain.py", "print('plain')\n")
    began = time.monotonic()
    first = orch("run", project.scripts)
    seconds = time.monotonic() - began
    run_dir = (project.root / "reports" / "latest").resolve()
    summary = latest(project.root)
    return Built(
        project, first, seconds, run_dir, summary, markers(project.root), requirement(localpkg)
    )


@pytest.mark.slow
def test_group_script_sees_its_environment_and_others_do_not(built: Built) -> None:
    root = built.project.root
    assert built.first.returncode == 1, built.first.stdout + built.first.stderr
    assert statuses(built.summary) == {
        "data/inline.py": "passed",
        "data/use.py": "passed",
        "outside.py": "failed",
        "outside_inline.py": "failed",
        "plain.py": "passed",
    }
    use = log_of(built.run_dir, "data/use.py")
    assert "localpkg group" in use["stdout"]
    # Traced in its environment too, where the installed package is not an input.
    assert use["trace"]["reads"] == ["scripts/data/use.py"]
    assert "localpkg" in use["trace"]["modules"]
    assert "No module named 'localpkg'" in log_of(built.run_dir, "outside.py")["stderr"]
    group = built.markers[key_named(root, "data")]
    assert group["requirements"] == [built.requirement]


@pytest.mark.slow
def test_pep723_script_gets_its_own_environment(built: Built) -> None:
    root = built.project.root
    assert "inlinepkg inline" in log_of(built.run_dir, "data/inline.py")["stdout"]
    assert "No module named 'inlinepkg'" in log_of(built.run_dir, "outside_inline.py")["stderr"]
    assert sorted(m["name"] for m in built.markers.values()) == ["data", "script inline.py"]
    assert env_dirs(root) == set(built.markers)


@pytest.mark.slow
def test_second_run_reuses_environments(built: Built) -> None:
    root = built.project.root
    began = time.monotonic()
    again = orch("run", built.project.scripts)
    seconds = time.monotonic() - began
    assert again.returncode == 1, again.stdout + again.stderr
    assert statuses(latest(root)) == statuses(built.summary)
    # Same keys, same markers: nothing was rebuilt or reinstalled.
    assert markers(root) == built.markers
    assert seconds < built.first_seconds / 2, (seconds, built.first_seconds)


@pytest.mark.slow
def test_envs_list_shows_key_name_and_scripts(built: Built) -> None:
    root = built.project.root
    listing = orch("envs", "list", built.project.scripts)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    expected = {"data": "data/use.py", "script inline.py": "data/inline.py"}
    for name, script in expected.items():
        key = key_named(root, name)
        row = [line for line in lines if line.startswith(key)]
        assert len(row) == 1, listing.stdout
        assert name in row[0] and script in row[0]
    assert "2 environment(s)" in listing.stdout


@pytest.mark.slow
def test_environment_option_runs_one_group_with_the_given_python(
    built: Built, tmp_path: Path
) -> None:
    root = built.project.root
    calls = tmp_path / "calls.txt"
    wrapper = tmp_path / "python"
    group_python = envs_dir(root) / key_named(root, "data") / "bin" / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\nexec "{group_python}" "$@"\n')
    wrapper.chmod(0o755)

    data = orch(
        "run",
        built.project.scripts,
        "--environment",
        "data",
        "--python",
        wrapper,
        "--run-id",
        "merged",
    )
    assert data.returncode == 0, data.stdout + data.stderr
    assert statuses(latest(root)) == {"data/inline.py": "passed", "data/use.py": "passed"}
    # The group's script ran with --python; the PEP 723 one kept its own environment.
    # (Besides orch asking it its version once: ``-I -S -c ...``.)
    scripts = [c for c in calls.read_text().splitlines() if c != "-I"]
    assert scripts == [str(built.project.scripts / "data" / "use.py")]

    default = orch("run", built.project.scripts, "--environment", "default", "--run-id", "merged")
    assert default.returncode == 1, default.stdout + default.stderr
    summary = json.loads((root / "reports" / "merged" / "summary.json").read_text())
    assert statuses(summary) == statuses(built.summary)
    assert summary["run_id"] == "merged"
    assert markers(root) == built.markers


@pytest.mark.slow
def test_envs_clean_removes_unused_then_all(built: Built, tmp_path: Path) -> None:
    # A copy, so the shared project keeps its environments whatever the test order;
    # the virtualenvs' contents are left out, as listing and cleaning only need the markers.
    root = tmp_path / "copy"
    skipped = shutil.ignore_patterns("bin", "lib", "lib64", "include", "reports")
    shutil.copytree(built.project.root, root, symlinks=True, ignore=skipped)
    scripts = root / "scripts"
    (scripts / "data" / "inline.py").unlink()
    inline_key = key_named(root, "script inline.py")
    data_key = key_named(root, "data")

    listing = orch("envs", "list", scripts)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith(inline_key))
    assert "(unused)" in row

    cleaned = orch("envs", "clean", scripts)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 1 environment(s)" in cleaned.stdout
    assert env_dirs(root) == {data_key}

    everything = orch("envs", "clean", scripts, "--all")
    assert everything.returncode == 0, everything.stderr
    assert "removed 1 environment(s)" in everything.stdout
    assert env_dirs(root) == set()
    assert markers(built.project.root) == built.markers


# -- builds of their own ----------------------------------------------------------------


@pytest.mark.slow
def test_editing_the_requirements_file_rebuilds(project: Project, tmp_path: Path) -> None:
    v1 = make_wheel(tmp_path / "wheels", "localpkg", "VALUE = 1\n", version="1.0")
    v2 = make_wheel(tmp_path / "wheels", "localpkg", "VALUE = 2\n", version="2.0")
    reqs = project.root / "requirements" / "data.txt"
    reqs.parent.mkdir()
    reqs.write_text(requirement(v1) + "\n")
    seen = project.root / "seen.txt"
    project.config(
        json.dumps(
            {
                "environments": {
                    "data": {"requirements_file": "requirements/data.txt", "scripts": ["data"]}
                }
            }
        )
    )
    project.script(
        "data/show.py",
        f"import localpkg, pathlib\npathlib.Path({str(seen)!r}).write_text(str(localpkg.VALUE))\n",
    )

    # What a killed build leaves: a directory without its marker, to be replaced.
    old_key = EnvSpec("data", requirements_file=reqs).key()
    leftover = envs_dir(project.root) / old_key / "half-built.txt"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("")

    first = orch("run", project.scripts)
    assert first.returncode == 0, first.stdout + first.stderr
    assert seen.read_text() == "1"
    assert set(markers(project.root)) == {old_key}
    assert not leftover.exists()
    assert markers(project.root)[old_key]["requirements_file"] == str(reqs)

    reqs.write_text(requirement(v2) + "\n")
    second = orch("run", project.scripts)
    assert second.returncode == 0, second.stdout + second.stderr
    assert seen.read_text() == "2"
    (new_key,) = set(markers(project.root)) - {old_key}

    # Back to the first content: its environment is found again, not rebuilt.
    before = markers(project.root)
    reqs.write_text(requirement(v1) + "\n")
    third = orch("run", project.scripts)
    assert third.returncode == 0, third.stdout + third.stderr
    assert seen.read_text() == "1"
    assert markers(project.root) == before
    assert env_dirs(project.root) == {old_key, new_key}


@pytest.mark.slow
def test_failed_install_errors_the_group_only(project: Project, tmp_path: Path) -> None:
    missing = tmp_path / "wheels" / "ghost-1.0-py3-none-any.whl"
    project.config(group_config("broken", [requirement(missing)], ["broken"]))
    project.script("broken/a.py", "print('a')\n")
    project.script("broken/b.py", "print('b')\n")
    project.script("ok.py", "print('ok')\n")

    result = orch("run", project.scripts, "-j", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = latest(project.root)
    assert statuses(summary) == {"broken/a.py": "error", "broken/b.py": "error", "ok.py": "passed"}
    errors = {r["path"]: r["error"] for r in summary["results"] if r["status"] == "error"}
    for error in errors.values():
        assert "environment 'broken'" in error
        assert "pip install failed" in error
        assert "No such file or directory" in error  # pip's own words
        assert str(missing) in error
    assert errors["broken/a.py"] == errors["broken/b.py"]  # built once, failure remembered
    assert env_dirs(project.root) == set()  # nothing half-built is left


@pytest.mark.slow
def test_builds_with_uv_when_it_is_on_path(project: Project, tmp_path: Path) -> None:
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed")
    only_uv = tmp_path / "uv-bin"
    only_uv.mkdir()
    (only_uv / "uv").symlink_to(uv)
    wheel = make_wheel(tmp_path / "wheels", "localpkg", "VALUE = 'uv'\n")
    project.config(group_config("data", [requirement(wheel)], ["data"]))
    project.script("data/use.py", "import localpkg\nassert localpkg.VALUE == 'uv'\n")
    env = _env(
        PATH=f"{only_uv}{os.pathsep}{_path_without_uv()}",
        UV_OFFLINE="1",
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
    )

    result = orch("run", project.scripts, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (key,) = markers(project.root)
    assert "uv" in (envs_dir(project.root) / key / "pyvenv.cfg").read_text()


# -- the nox sessions ---------------------------------------------------------------------


NOXFILE = """\
from orchestrator.nox_sessions import orchestrate_sessions
orchestrate_sessions("scripts")
"""


def nox(root: Path, *args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nox ARGS`` in ``root`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_nox_sessions_one_per_group_and_one_merged_report(project: Project, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "wheels", "localpkg", "VALUE = 'nox'\n")
    (project.root / "noxfile.py").write_text(NOXFILE)
    project.config(group_config("data", [requirement(wheel)], ["data"]))
    use = "import sys, localpkg\nassert localpkg.VALUE == 'nox'\nprint(sys.executable)\n"
    project.script("data/use.py", use)
    project.script("plain.py", "print('plain')\n")

    listed = nox(project.root, "-l")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "orchestrate(env='data')" in listed.stdout
    assert "orchestrate(env='default')" in listed.stdout

    ran = nox(project.root, "-s", "orchestrate", "-db", "virtualenv")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    summary = latest(project.root)
    assert statuses(summary) == {"data/use.py": "passed", "plain.py": "passed"}
    # The group ran in its session's virtualenv, not in orchestrator's cache.
    session_python = project.root / ".nox" / "orchestrate-env-data" / "bin" / "python"
    used = log_of(project.root / "reports" / "latest", "data/use.py")["stdout"].strip()
    assert used == str(session_python)
    assert env_dirs(project.root) == set()

    again = nox(project.root, "-r", "-s", "orchestrate", "-db", "virtualenv", "--", "-j", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    summary = latest(project.root)
    assert statuses(summary) == {"data/use.py": "passed", "plain.py": "passed"}
    command = summary["command"]
    assert command[command.index("-j") :][:2] == ["-j", "2"], command


def test_unknown_environment_name_is_a_usage_error(project: Project) -> None:
    project.script("x.py", "")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(project.scripts),
            "--environment",
            "typo",
        ],
        capture_output=True,
        text=True,
        cwd=project.root,
        check=False,
    )
    assert result.returncode == 2
    assert "typo" in result.stderr and "default" in result.stderr
    assert "Traceback" not in result.stderr


def test_unmet_requires_python_is_an_error_without_uv(project: Project) -> None:
    project.script(
        "future.py",
        """
        # /// script
        # dependencies = []
        # requires-python = ">=99"
        # ///
        print("never")
        """,
    )
    env = {**os.environ, "PATH": os.path.dirname(shutil.which("git") or "/usr/bin/git")}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(project.scripts), "--no-color"],
        capture_output=True,
        text=True,
        cwd=project.root,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    summary = json.loads((project.root / "reports" / "latest" / "summary.json").read_text())
    (entry,) = summary["results"]
    assert entry["status"] == "error"
    assert ">=99" in entry["error"]


def test_an_inline_environment_is_shown_and_its_missing_module_named(project: Project) -> None:
    project.script("inline.py", "# /// script\n# dependencies = []\n# ///\nimport yaml\n")
    project.script("plain.py", "print(1)\n")
    listed = project.orch("list", "scripts")
    assert "script inline.py (PEP 723)" in listed.stdout, listed.stdout
    data = json.loads(project.orch("list", "--json", "scripts").stdout)
    assert {d["path"]: d["runs_in"] for d in data} == {
        "inline.py": "script inline.py (PEP 723)",
        "plain.py": None,
    }
    run = project.orch("run", "scripts", timeout=180)
    assert "without module 'yaml': add its distribution to its PEP 723" in run.stdout, run.stdout
