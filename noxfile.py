"""The project's own sessions: ``nox -l`` lists them.

* ``orchestrate``: ``orch run`` on the shipped examples (``nox -s orchestrate -- -j 4 --changed``);
* ``tests``: the test suite on every supported Python this machine has;
* ``lint`` (ruff) and ``typecheck`` (mypy);
* ``bench``: the benchmarks, writing their output into ``benchmarks/README.md``;
* ``release_check``: build, check and install the sdist and wheel, then test the install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
# A Python this machine lacks is skipped with a message, on CI too.
nox.options.error_on_missing_interpreters = False

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
SCRIPTS = "examples/scripts"


def _runs(version: str) -> bool:
    """Whether ``pythonX.Y`` is here and starts (a pyenv shim may exist and refuse)."""
    exe = shutil.which(f"python{version}")
    if exe is None:
        return False
    return subprocess.run([exe, "-c", ""], capture_output=True, check=False).returncode == 0


AVAILABLE = [v for v in PYTHONS if _runs(v)]


@nox.session
def orchestrate(session: nox.Session) -> None:
    """Run the example scripts with the project installed; arguments go to ``orch run``."""
    session.install("-e", ".")
    session.run("orch", "run", SCRIPTS, *session.posargs)


@nox.session(python=AVAILABLE or False)
def tests(session: nox.Session) -> None:
    """The test suite, on each supported Python that is installed."""
    missing = [v for v in PYTHONS if v not in AVAILABLE]
    if missing:
        session.log(f"skipping Python {', '.join(missing)}: not installed on this machine")
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict, on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark and put their output into benchmarks/README.md."""
    session.install("-e", ".[dask]", "uv")
    outputs = []
    for script in (
        "discovery.py",
        "overhead.py",
        "tracing.py",
        "dag.py",
        "watch.py",
        "environments.py",
        "dask.py",
    ):
        output = session.run("python", f"benchmarks/{script}", silent=True)
        outputs.append(f"$ python benchmarks/{script}\n{output}")
        session.log(output)
    readme = ROOT / "benchmarks" / "README.md"
    block = "<!-- bench:start -->\n```text\n" + "\n".join(outputs) + "```\n<!-- bench:end -->"
    text = readme.read_text()
    text = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _: block, text, flags=re.S)
    readme.write_text(text)


@nox.session
def release_check(session: nox.Session) -> None:
    """Build the sdist and wheel, check them, install the wheel fresh and test that install."""
    session.install("build", "twine")
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    artifacts = sorted(str(p) for p in dist.iterdir())
    session.run("twine", "check", "--strict", *artifacts)

    wheel = next(dist.glob("*.whl"))
    packed = set(zipfile.ZipFile(wheel).namelist())
    sources = [*(ROOT / "orchestrator").glob("*.py"), *(ROOT / "orchestrator").glob("_boot/*.py")]
    missing = [
        name
        for name in sorted(p.relative_to(ROOT).as_posix() for p in sources)
        if name not in packed
    ]
    if missing:
        session.error(f"missing from {wheel.name}: {', '.join(missing)}")

    venv = tmp / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    python, orch = str(venv / "bin" / "python"), str(venv / "bin" / "orch")
    session.run(python, "-m", "pip", "install", "--quiet", f"{wheel}[test]", external=True)

    # From outside the source tree, so that `import orchestrator` is the installed one.
    work = tmp / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ROOT / "tests", work / "tests")
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    shutil.copy(ROOT / "README.md", work / "README.md")  # tests/test_layout.py reads its table
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("reports"))
    session.chdir(work)
    where = session.run(
        python,
        "-c",
        "import orchestrator; print(orchestrator.__file__)",
        external=True,
        silent=True,
    )
    if not str(where).strip().startswith(str(venv)):
        session.error(f"tests would import orchestrator from {where.strip()}, not the wheel")
    session.run(orch, "--version", external=True)
    session.run(orch, "run", SCRIPTS, external=True)
    session.run(python, "-m", "pytest", "-p", "no:cacheprovider", "tests", external=True)
