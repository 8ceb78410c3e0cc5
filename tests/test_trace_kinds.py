"""The trace beyond files: variables read, packages imported, standard modules to shadow."""

from __future__ import annotations

import _imp
import os
import subprocess
import sys
from pathlib import Path

from conftest import Project

from orchestrator.distributions import installed
from orchestrator.inputs import InputGraph
from orchestrator.project import Project as Located
from orchestrator.tracing import Trace, read_trace, trace_env


def traced(project: Project, body: str, env: dict[str, str] | None = None) -> Trace:
    """Run ``body`` as ``scripts/s.py`` in a real traced Python and read its trace back."""
    script = project.script("s.py", body)
    trace_file = project.root / "trace.bin"
    trace_file.unlink(missing_ok=True)
    child = {**os.environ, **(env or {})}
    trace_env(child, str(trace_file), str(project.root), [])
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=project.root,
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return read_trace(trace_file, project.root)


# -- environment variables ------------------------------------------------------------------


def test_each_variable_read_is_recorded_by_name_never_by_value(project: Project) -> None:
    trace = traced(
        project,
        """
        import os
        os.environ.get("MODE")
        os.getenv("B")
        "C" in os.environ
        os.environ.setdefault("D", "set here")
        os.environ["WRITTEN"] = "a write is no read"
        assert isinstance(os.environ, os._Environ)
        """,
        env={"MODE": "secret-value-123", "B": "x"},
    )
    assert trace.environ == ("B", "C", "D", "MODE")
    assert b"secret-value-123" not in (project.root / "trace.bin").read_bytes()


def test_copying_the_whole_environment_reads_no_variable(project: Project) -> None:
    trace = traced(
        project,
        """
        import os, subprocess, sys
        dict(os.environ)
        os.environ.copy()
        {**os.environ}
        list(os.environ.values())
        for key, value in os.environ.items():
            pass
        for key in os.environ:
            pass
        subprocess.run([sys.executable, "-c", "pass"], env=os.environ, check=True)
        """,
        env={"MODE": "1"},
    )
    assert trace.environ == ()


def test_a_read_by_name_after_a_copy_is_still_a_read(project: Project) -> None:
    """An iteration arms its keys; a read of any other (the same name typed by the
    script, not the object the iteration handed out) disarms them and counts."""
    trace = traced(
        project,
        """
        import os
        first = next(iter(os.environ))
        dict(os.environ)
        list(os.environ)
        os.environ[first]
        os.environ.get("AFTER")
        """,
        env={"AFTER": "1"},
    )
    assert "AFTER" in trace.environ
    assert len(trace.environ) == 2  # the first variable, read by a name of the script's


def test_orchestrator_s_own_variables_are_never_recorded(project: Project) -> None:
    trace = traced(
        project,
        """
        import os
        os.environ.get("ORCHESTRATOR_TRACE")
        "ORCHESTRATOR_TRACE_ROOT" in os.environ
        os.getenv("ORCHESTRATOR_CHILD_0123")
        os.environ.get("MINE")
        """,
    )
    assert trace.environ == ("MINE",)


# -- third-party packages -------------------------------------------------------------------


def fake_site(folder: Path, name: str, version: str) -> Path:
    """A ``site-packages`` folder holding package ``name`` and its ``name-version.dist-info``."""
    site = folder / "lib" / "python3" / "site-packages"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("VALUE = 1\n")
    dist = site / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "RECORD").write_text(f"{name}/__init__.py,,\n{dist.name}/METADATA,,\n")
    return site


def test_a_package_imported_is_recorded_where_it_lives_and_named_with_its_version(
    project: Project, tmp_path: Path
) -> None:
    site = fake_site(tmp_path / "env", "mypkg", "1.2.0")
    (site / "plainmod.py").write_text("X = 1\n")
    (site / "plainmod-0.5.dist-info").mkdir()
    trace = traced(
        project,
        f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        import mypkg, plainmod
        """,
    )
    assert set(trace.packages) == {str(site / "mypkg"), str(site / "plainmod.py")}
    assert installed(trace.packages) == {"mypkg": "1.2.0", "plainmod": "0.5"}
    (site / "mypkg-1.2.0.dist-info").rename(site / "mypkg-1.3.0.dist-info")
    assert installed(trace.packages)["mypkg"] == "1.3.0"


def test_packages_loaded_at_start_up_and_local_modules_are_not_recorded(
    project: Project, tmp_path: Path
) -> None:
    """A ``.pth`` file's imports are the environment's, not the script's."""
    site = fake_site(tmp_path / "env", "early", "1.0")
    (site / "late.py").write_text("")
    (site / "early.pth").write_text("import early\n")
    (project.root / "src").mkdir()
    (project.root / "src" / "localmod.py").write_text("")
    # site.py runs .pth files only in the interpreter's own site folders: add this one
    # from a sitecustomize of the user's, which runs at start-up after the bootstrap's.
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({str(site)!r})\n")
    trace = traced(
        project,
        """
        import sys, localmod, late
        assert "early" in sys.modules
        """,
        env={"PYTHONPATH": os.pathsep.join([str(custom), str(project.root / "src")])},
    )
    assert trace.packages == (str(site / "late.py"),)


# -- the standard library a local file could shadow -----------------------------------------


def test_a_standard_module_imported_after_start_up_is_recorded_so_a_local_one_shadows_it(
    project: Project,
) -> None:
    assert "fractions" not in sys.builtin_module_names
    trace = traced(project, "import fractions, itertools, runpy\n")
    assert "fractions" in trace.modules
    assert "numbers" in trace.modules  # fractions imports it: a local numbers.py shadows it too
    if "itertools" in sys.builtin_module_names:
        assert "itertools" not in trace.modules  # built in: no file shadows it
    if _imp.is_frozen("runpy"):
        assert "runpy" not in trace.modules  # frozen: the same
    assert not {"sitecustomize", "usercustomize"} & set(trace.modules)
    graph = InputGraph(Located.locate(project.scripts))
    absent = graph.traced(project.scripts / "s.py", trace)
    assert project.scripts / "fractions.py" in absent  # creating it is a change


def test_only_top_level_standard_modules_are_recorded(project: Project) -> None:
    trace = traced(project, "import json.decoder, email.mime.text\n")
    assert {"json", "email"} <= set(trace.modules)
    assert not [name for name in trace.modules if name.startswith(("json.", "email."))]


def test_old_records_without_the_new_kinds_still_load() -> None:
    old = {"reads": ["a.py"], "writes": [], "modules": ["a"], "listed": [], "programs": []}
    trace = Trace.from_dict(old)
    assert trace.environ == () and trace.packages == ()
    both = Trace(reads=("a.py",), environ=("HOME",), packages=("/site-packages/six.py",))
    assert Trace.from_dict(both.to_dict()) == both
