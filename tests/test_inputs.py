"""InputGraph: a script's inputs, their hashes, the parse cache, and who a file affects."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import Project

from orchestrator.inputs import STATE_DIR, InputGraph
from orchestrator.project import Project as Located


def write(root: Path, rel: str, body: str | bytes = "") -> Path:
    """Write ``root/rel`` (dedented text or raw bytes), creating its folders."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(textwrap.dedent(body).lstrip("\n"))
    return path


def graph_of(project: Project) -> InputGraph:
    """A fresh graph, as a new ``orch`` process would build it."""
    return InputGraph(Located.locate(project.scripts))


def rels(project: Project, paths: list[Path]) -> set[str]:
    return {p.relative_to(project.root).as_posix() for p in paths}


def input_hashes(
    project: Project, script: Path, watch: Sequence[str] = ()
) -> dict[Path, str | None]:
    """The content hash of each of the script's inputs, from a new graph."""
    graph = graph_of(project)
    return graph.hashes(graph.inputs(script, watch))


# -- which files are inputs -------------------------------------------------------------


def test_a_script_without_local_imports_depends_only_on_itself(project: Project) -> None:
    script = project.script(
        "job.py",
        """
        import json
        import os.path
        import yaml
        import watchfiles
        from collections import abc
        from json import decoder
        from os.path import join as _join
        """,
    )
    (project.root / "src").mkdir()
    graph = graph_of(project)
    assert graph.modules(script) == []
    assert graph.inputs(script) == [script]


def test_modules_resolve_against_own_folder_src_and_root(project: Project) -> None:
    """The script's folder, then the search path it runs with: not the scripts directory."""
    root = project.root
    script = project.script(
        "tools/job.py",
        """
        import sibling
        import shared
        import util
        import toplevel
        import missing_everywhere
        """,
    )
    project.script("tools/sibling.py")
    project.script("shared.py")
    write(root, "src/util.py")
    write(root, "toplevel.py")
    graph = graph_of(project)
    inputs = graph.inputs(script)
    assert inputs[0] == script
    assert rels(project, inputs[1:]) == {
        "scripts/tools/sibling.py",
        "src/util.py",
        "toplevel.py",
    }
    assert len(inputs) == 4  # scripts/shared.py is not importable from tools/, nor an input


def test_the_first_folder_holding_a_name_wins(project: Project) -> None:
    root = project.root
    # Each name exists in two roots; only the earlier root's file is an input.
    project.script("tools/common.py")
    write(root, "src/common.py")
    project.script("helper.py")
    write(root, "src/helper.py")
    write(root, "src/lib.py")
    write(root, "lib.py")
    in_tools = project.script("tools/a.py", "import common, helper, lib\n")
    at_top = project.script("b.py", "import common\n")
    graph = graph_of(project)
    assert rels(project, graph.modules(in_tools)) == {
        "scripts/tools/common.py",
        "src/helper.py",  # scripts/helper.py is not on tools/a.py's path
        "src/lib.py",
    }
    assert rels(project, graph.modules(at_top)) == {"src/common.py"}


def test_modules_are_followed_transitively(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import util\n")
    write(root, "src/util.py", "import deep\nimport json\n")
    write(root, "src/deep.py", "from leaf import VALUE\n")
    write(root, "leaf.py", "VALUE = 1\n")
    write(root, "src/unused.py")
    assert rels(project, graph_of(project).modules(script)) == {
        "src/util.py",
        "src/deep.py",
        "leaf.py",
    }


def test_dotted_import_adds_every_package_init_on_the_way(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import a.b.c\n")
    write(root, "src/a/__init__.py")
    write(root, "src/a/b/__init__.py")
    write(root, "src/a/b/c.py")
    write(root, "src/a/b/other.py")
    write(root, "src/a/unrelated.py")
    assert rels(project, graph_of(project).modules(script)) == {
        "src/a/__init__.py",
        "src/a/b/__init__.py",
        "src/a/b/c.py",
    }


def test_from_package_import_module_adds_the_submodule(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "from pkg import mod, CONSTANT\n")
    write(root, "src/pkg/__init__.py", "CONSTANT = 1\n")
    write(root, "src/pkg/mod.py")
    write(root, "src/pkg/unused.py")
    assert rels(project, graph_of(project).modules(script)) == {
        "src/pkg/__init__.py",
        "src/pkg/mod.py",
    }


def test_relative_imports_resolve_inside_their_package(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "from pkg.core import run\n")
    write(root, "src/pkg/__init__.py")
    write(
        root,
        "src/pkg/core.py",
        """
        from . import helpers
        from .sub import leaf
        def run(): ...
        """,
    )
    write(root, "src/pkg/helpers.py")
    write(root, "src/pkg/sub/__init__.py")
    write(root, "src/pkg/sub/leaf.py", "from ..extra import thing\n")
    write(root, "src/pkg/extra.py", "thing = 1\n")
    write(root, "src/pkg/sub/unused.py")
    # Top-level modules of the same names must not be picked for relative imports.
    write(root, "src/helpers.py")
    write(root, "src/extra.py")
    assert rels(project, graph_of(project).modules(script)) == {
        "src/pkg/__init__.py",
        "src/pkg/core.py",
        "src/pkg/helpers.py",
        "src/pkg/sub/__init__.py",
        "src/pkg/sub/leaf.py",
        "src/pkg/extra.py",
    }


def test_imports_inside_functions_and_try_blocks_count(project: Project) -> None:
    root = project.root
    script = project.script(
        "job.py",
        """
        from typing import TYPE_CHECKING

        try:
            import optional
        except ImportError:
            optional = None

        if TYPE_CHECKING:
            from typed import Thing

        def main():
            import lazy
            class Inner:
                from nested import value
        """,
    )
    for name in ("optional", "typed", "lazy", "nested"):
        write(root, f"src/{name}.py")
    assert rels(project, graph_of(project).modules(script)) == {
        "src/optional.py",
        "src/typed.py",
        "src/lazy.py",
        "src/nested.py",
    }


@pytest.mark.parametrize(
    "broken",
    [
        "import hidden\ndef broken(:\n",
        "import hidden\nx = 'unterminated\n",
        b"import hidden\n\x00\n",
        b"import hidden\n\xff\xfe = 1\n",
    ],
    ids=["syntax", "unterminated", "null-byte", "not-utf8"],
)
def test_a_module_with_a_syntax_error_is_still_an_input(
    project: Project, broken: str | bytes
) -> None:
    root = project.root
    script = project.script("job.py", "import broken\nimport util\n")
    bad = write(root, "src/broken.py", broken)
    write(root, "src/util.py")
    write(root, "src/hidden.py")  # imported only by the unparsable file: unknown, not an input
    graph = graph_of(project)
    assert rels(project, graph.modules(script)) == {"src/broken.py", "src/util.py"}
    error = graph.syntax_error(bad)
    assert error is not None and error.split(":", 1)[0] in ("SyntaxError", "ValueError")
    assert graph.syntax_error(script) is None
    hashes = graph.hashes(graph.inputs(script))
    assert len(hashes) == 3 and all(hashes.values()), "each is hashed, the broken one too"


def test_a_script_with_a_syntax_error_depends_on_itself(project: Project) -> None:
    script = project.script("job.py", "import util\nprint(\n")
    write(project.root, "src/util.py")
    graph = graph_of(project)
    assert graph.inputs(script) == [script]
    assert graph.syntax_error(script) is not None


@pytest.mark.timeout(10)
def test_import_cycles_end(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import a\nimport selfish\n")
    write(root, "src/a.py", "import b\n")
    write(root, "src/b.py", "import a\nimport job\n")  # back to a, and back to the script
    write(root, "src/selfish.py", "import selfish\n")
    project.script("other.py")
    graph = graph_of(project)
    modules = graph.modules(script)
    assert rels(project, modules) == {"src/a.py", "src/b.py", "src/selfish.py"}
    assert len(modules) == 3
    scripts: dict[Path, Sequence[str]] = {script: (), project.scripts / "other.py": ()}
    assert graph.affected([root / "src/b.py"], scripts) == {script: [root / "src/b.py"]}


# -- watch: globs -----------------------------------------------------------------------


def _data(project: Project) -> dict[str, Path]:
    root = project.root
    names = ["data/a.csv", "data/b.csv", "data/notes.txt", "data/sub/c.csv", "other/d.csv"]
    files = {name: write(root, name, "1\n") for name in names}
    write(root, f"{STATE_DIR}/cache.csv", "1\n")
    return files


def test_watched_lists_the_files_matching_the_globs(project: Project) -> None:
    _data(project)
    graph = graph_of(project)
    assert rels(project, graph.watched(["data/*.csv"])) == {
        "data/a.csv",
        "data/b.csv",
    }
    assert rels(project, graph.watched(["data/**/*.csv"])) == {
        "data/a.csv",
        "data/b.csv",
        "data/sub/c.csv",
    }
    # Never the orchestrator's own state, even when a glob would reach it.
    assert rels(project, graph.watched(["**/*.csv"])) == {
        "data/a.csv",
        "data/b.csv",
        "data/sub/c.csv",
        "other/d.csv",
    }
    assert rels(project, graph.watched(["data/*.txt", "other/*"])) == {
        "data/notes.txt",
        "other/d.csv",
    }
    assert graph.watched([]) == []
    assert graph.watched(()) == []


def test_watched_files_are_inputs_after_the_script_and_its_modules(project: Project) -> None:
    _data(project)
    script = project.script("job.py", "import util\n")
    util = write(project.root, "src/util.py")
    inputs = graph_of(project).inputs(script, ["data/*.csv"])
    assert inputs == [script, util, project.root / "data/a.csv", project.root / "data/b.csv"]


def test_watches_matches_a_path_against_the_globs(project: Project) -> None:
    files = _data(project)
    graph = graph_of(project)
    watch = ["data/*.csv"]
    assert graph.watches(watch, files["data/a.csv"])
    assert not graph.watches(watch, files["data/notes.txt"])
    assert not graph.watches(watch, files["data/sub/c.csv"])
    assert not graph.watches(watch, files["other/d.csv"])
    assert not graph.watches(watch, project.root.parent / "data/a.csv")
    assert graph.watches(["data/**/*.csv"], files["data/sub/c.csv"])
    assert not graph.watches((), files["data/a.csv"])


@pytest.mark.parametrize("pattern", ["data/**", "data", "data/"])
def test_watched_and_watches_agree_on_a_folder_and_a_recursive_glob(
    project: Project, pattern: str
) -> None:
    files = _data(project)
    graph = graph_of(project)
    watch = [pattern]
    everything = {"data/a.csv", "data/b.csv", "data/notes.txt", "data/sub/c.csv"}
    assert rels(project, graph.watched(watch)) == everything
    for name, path in files.items():
        assert graph.watches(watch, path) == (name in everything), name


# -- input hashes -----------------------------------------------------------------------


def test_input_hashes_follow_content_not_mtime(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import util\n")
    util = write(root, "src/util.py", "VALUE = 1\n")
    data = write(root, "data/in.csv", "a,b\n")
    watch = ["data/*.csv"]
    base = input_hashes(project, script, watch)
    assert input_hashes(project, script, watch) == base

    stat = util.stat()
    os.utime(util, ns=(stat.st_atime_ns + 5_000_000_000, stat.st_mtime_ns + 5_000_000_000))
    os.utime(script, ns=(stat.st_atime_ns + 7_000_000_000, stat.st_mtime_ns + 7_000_000_000))
    assert input_hashes(project, script, watch) == base, "a touch is not a change"

    util.write_text("VALUE = 22\n")
    changed = input_hashes(project, script, watch)
    assert changed != base
    util.write_text("VALUE = 1\n")
    assert input_hashes(project, script, watch) == base, "content, not history"

    data.write_text("a,b\n1,2\n")
    assert input_hashes(project, script, watch) != base
    data.write_text("a,b\n")
    assert input_hashes(project, script, watch) == base


def test_input_hashes_of_one_graph_sees_later_edits(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import util\n")
    util = write(root, "src/util.py", "VALUE = 1\n")
    graph = graph_of(project)
    base = graph.hashes(graph.inputs(script))
    util.write_text("VALUE = 100\n")
    assert graph.hashes(graph.inputs(script)) != base
    # A new import is seen once the graph is told the file changed (as orch watch does).
    write(root, "src/extra.py", "X = 1\n")
    util.write_text("import extra\nVALUE = 1\n")
    graph.invalidate([util])
    assert root / "src/extra.py" in graph.modules(script)


def test_input_hashes_of_an_unrelated_file_does_not_matter(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import util\n")
    write(root, "src/util.py")
    unrelated = write(root, "src/unrelated.py", "A = 1\n")
    base = input_hashes(project, script)
    unrelated.write_text("A = 2222\n")
    project.script("other.py", "print('hi')\n")
    assert input_hashes(project, script) == base


def test_a_src_folder_created_later_is_searched_after_a_structural_invalidate(
    project: Project,
) -> None:
    script = project.script("job.py", "print('no imports yet')\n")
    graph = graph_of(project)
    assert graph.modules(script) == []
    helper = write(project.root, "src/helper.py", "X = 1\n")
    script.write_text("import helper\n")
    graph.invalidate([helper, script], structural=True)
    assert graph_of(project).modules(script) == [helper], "a new graph finds it"
    assert graph.modules(script) == [helper]


# -- the parse cache ----------------------------------------------------------------------


def test_save_writes_the_caches_and_a_new_graph_reuses_them(project: Project) -> None:
    root = project.root
    script = project.script("job.py", "import aa\n")
    past = time.time_ns() - 60_000_000_000  # files changed just now are never cached
    for path in (script, project.script("aa.py"), project.script("bb.py")):
        os.utime(path, ns=(past, past))
    graph = graph_of(project)
    assert rels(project, graph.modules(script)) == {"scripts/aa.py"}
    fp = graph.hashes(graph.inputs(script))
    imports_file = root / STATE_DIR / "imports.json"
    assert not imports_file.exists(), "nothing is written before save()"
    graph.save()
    imports = json.loads(imports_file.read_text())
    assert str(script) in imports
    hashes = json.loads((root / STATE_DIR / "hashes.json").read_text())
    assert str(script) in hashes

    again = graph_of(project)
    assert again.modules(script) == graph.modules(script)
    assert again.hashes(again.inputs(script, {})) == fp

    # Same size and modification time, as cp -p leaves them: the ctime tells, as in git.
    stat = script.stat()
    script.write_text("import bb\n")
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert rels(project, graph_of(project).modules(script)) == {"scripts/bb.py"}

    # A new modification time: re-parsed.
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert rels(project, graph_of(project).modules(script)) == {"scripts/bb.py"}

    # A new size: re-parsed.
    script.write_text("import aa  # back\n")
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert rels(project, graph_of(project).modules(script)) == {"scripts/aa.py"}


def test_save_without_changes_does_not_rewrite_the_cache(project: Project) -> None:
    script = project.script("job.py", "import aa\n")
    past = time.time_ns() - 60_000_000_000  # files changed just now are never cached
    for path in (script, project.script("aa.py")):
        os.utime(path, ns=(past, past))
    graph = graph_of(project)
    graph.hashes(graph.inputs(script))
    graph.save()
    imports_file = project.root / STATE_DIR / "imports.json"
    inode = imports_file.stat().st_ino
    again = graph_of(project)
    again.hashes(again.inputs(script, {}))
    again.save()
    assert imports_file.stat().st_ino == inode


def test_a_corrupt_cache_is_ignored(project: Project) -> None:
    script = project.script("job.py", "import aa\n")
    aa = project.script("aa.py")
    past = time.time_ns() - 60_000_000_000  # files changed just now are never cached
    for path in (script, aa):
        os.utime(path, ns=(past, past))
    state = project.root / STATE_DIR
    state.mkdir()
    (state / "imports.json").write_text("{not json")
    (state / "hashes.json").write_text("[1, 2]")
    graph = graph_of(project)
    assert graph.modules(script) == [aa]
    graph.hashes(graph.inputs(script))
    graph.save()
    assert str(script) in json.loads((state / "imports.json").read_text())


# -- affected ---------------------------------------------------------------------------


def _affected_project(project: Project) -> dict[str, Path]:
    root = project.root
    return {
        "x": project.script("a/x.py", "import util\n"),
        "y": project.script("b/y.py", "import helper\n"),
        "z": project.script("c/z.py", "print('z')\n"),
        "p": project.script("p.py", "from pkg import mod\n"),
        "w": project.script("w.py", "import json\n"),
        "util": write(root, "src/util.py", "import json\n"),
        "helper": project.script("b/helper.py", "from util import *\n"),
        "init": write(root, "src/pkg/__init__.py"),
        "mod": write(root, "src/pkg/mod.py"),
        "csv": write(root, "data/in.csv", "1\n"),
        "lonely": write(root, "src/lonely.py"),
    }


def test_affected_is_exactly_the_scripts_with_the_file_among_their_inputs(
    project: Project,
) -> None:
    f = _affected_project(project)
    scripts: dict[Path, Sequence[str]] = {
        f["x"]: (),
        f["y"]: (),
        f["z"]: ["data/*.csv"],
        f["p"]: (),
        f["w"]: (),
        f["helper"]: (),
    }
    graph = graph_of(project)
    assert graph.affected([f["util"]], scripts) == {
        f["x"]: [f["util"]],
        f["y"]: [f["util"]],
        f["helper"]: [f["util"]],
    }
    assert graph.affected([f["helper"]], scripts) == {
        f["y"]: [f["helper"]],
        f["helper"]: [f["helper"]],
    }
    assert graph.affected([f["csv"]], scripts) == {f["z"]: [f["csv"]]}
    assert graph.affected([f["init"]], scripts) == {f["p"]: [f["init"]]}
    assert graph.affected([f["mod"]], scripts) == {f["p"]: [f["mod"]]}
    assert graph.affected([f["w"]], scripts) == {f["w"]: [f["w"]]}
    assert graph.affected([f["lonely"]], scripts) == {}
    assert graph.affected([project.root / "nowhere.py"], scripts) == {}
    assert graph.affected([f["mod"], f["csv"], f["lonely"]], scripts) == {
        f["p"]: [f["mod"]],
        f["z"]: [f["csv"]],
    }
    assert graph.affected([f["util"], f["helper"]], scripts)[f["y"]] == [f["util"], f["helper"]]


def test_affected_only_considers_the_scripts_given(project: Project) -> None:
    f = _affected_project(project)
    graph = graph_of(project)
    assert graph.affected([f["util"]], {f["x"]: {}, f["z"]: {}}) == {f["x"]: [f["util"]]}
    assert graph.affected([f["csv"]], {f["z"]: {}}) == {}


def test_a_file_changed_just_now_is_not_cached(project: Project) -> None:
    """Racy-git: a same-size rewrite within the same mtime tick must not hit a stale hash."""
    script = project.script("job.py", "x = 1\n")
    graph = graph_of(project)
    first = graph.file_hash(script)
    stat = script.stat()
    script.write_text("x = 2\n")
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert graph.file_hash(script) != first


_PARALLEL_CHECK = """
import json, sys
from pathlib import Path
from orchestrator import inputs
from orchestrator.project import Project

project = Project.locate(sys.argv[1])
scripts = {p: () for p in sorted(project.scripts_dir.glob("*.py"))}
files = [str(p) for p in sorted(project.root.rglob("*.py"))]
parallel = inputs._parse_in_parallel(files)
graph = inputs.InputGraph(project)
hits = graph.affected([project.root / "src" / "lib" / "m0.py"], scripts)
print(json.dumps({
    "parallel": parallel is not None and [list(p[1:]) for p in parallel]
        == [list(inputs._parse_file(f)[1:]) for f in files],
    "hits": sorted(p.name for p in hits),
    "broken": graph.syntax_error(project.root / "src" / "lib" / "broken.py"),
}))
"""


def test_many_unparsed_files_are_parsed_on_every_core_with_the_same_graph(
    project: Project,
) -> None:
    """Cold, a big tree is parsed by worker processes; the graph is what one process finds."""
    import subprocess
    import sys

    n = 260  # above _PARALLEL_MIN, so a cold lookup forks workers
    write(project.root, "src/lib/__init__.py")
    write(project.root, "src/lib/broken.py", "def broken(:\n")
    for m in range(n):
        write(project.root, f"src/lib/m{m}.py", f"from lib import m{m - 1}\n" if m else "")
    project.script("first.py", "from lib import m0\n")
    project.script("last.py", f"from lib import m{n - 1}\nimport lib.broken\n")
    project.script("alone.py", "import json\n")
    out = subprocess.run(
        [sys.executable, "-c", _PARALLEL_CHECK, str(project.scripts)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(out.stdout)
    assert found["parallel"] is True
    assert found["hits"] == ["first.py", "last.py"]  # through the whole chain of 260
    assert found["broken"] is not None and "SyntaxError" in found["broken"]
