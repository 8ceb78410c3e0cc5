"""``orch watch`` on what a path stands for: a folder a script lists, a symlink's target."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import Project
from test_inputs import graph_of, write
from test_watch import Sample, Watch, after_edit, edit, sample, watch, watched_dirs

from orchestrator.tracing import Trace

__all__ = ["sample", "watch"]  # the fixtures, shared with test_watch

# -- affected: a path in a listed folder, a symlink's target ---------------------------------


def test_a_path_in_a_listed_folder_affects_the_script_that_listed_it(project: Project) -> None:
    root = project.root
    lister = project.script("lister.py")
    walker = project.script("walker.py")
    reader = project.script("reader.py")
    write(root, "data/sub/a.csv", "1\n")
    scripts: dict[Path, Mapping[str, Any]] = {lister: {}, walker: {}, reader: {}}
    traces = {
        lister: Trace(listed=("data",)),
        walker: Trace(listed=("data", "data/sub")),
        reader: Trace(reads=("data/sub/a.csv",)),
    }
    graph = graph_of(project)
    new, deep = root / "data/new.csv", root / "data/sub/b.csv"
    assert graph.affected([new], scripts, traces) == {lister: [new], walker: [new]}
    assert graph.affected([deep], scripts, traces) == {walker: [deep]}
    # A listing says nothing of a folder beside it, nor of one it did not list.
    assert graph.affected([root / "other/new.csv"], scripts, traces) == {}
    assert graph.affected([root / "data/sub/deeper/c.csv"], scripts, traces) == {}
    assert graph.affected([root / "datum.csv"], scripts, traces) == {}


def test_an_edit_of_a_symlink_s_target_affects_who_reads_the_symlink(
    project: Project, tmp_path: Path
) -> None:
    root = project.root
    inside = write(root, "shared/real.csv", "1\n")
    outside = write(tmp_path, "outside/real.csv", "1\n")
    (root / "data").mkdir()
    (root / "data/link.csv").symlink_to(inside)
    (root / "data/far.csv").symlink_to(outside)
    write(root, "vendor/util_impl.py", "VALUE = 1\n")
    (root / "src").mkdir()
    (root / "src/util.py").symlink_to("../vendor/util_impl.py")  # relative, resolved all the same
    near = project.script("near.py")
    far = project.script("far.py")
    importer = project.script("importer.py", "import util\n")
    plain = project.script("plain.py")
    scripts: dict[Path, Mapping[str, Any]] = {near: {}, far: {}, importer: {}, plain: {}}
    traces = {
        near: Trace(reads=("data/link.csv",)),
        far: Trace(reads=("data/far.csv",)),
        plain: Trace(reads=("shared/real.csv",)),
    }
    graph = graph_of(project)
    # Named as the input it read: data/link.csv is what changed for near.py.
    assert graph.affected([inside], scripts, traces) == {
        near: [root / "data/link.csv"],
        plain: [inside],
    }
    assert graph.affected([outside], scripts, traces) == {far: [root / "data/far.csv"]}
    assert graph.affected([root / "vendor/util_impl.py"], scripts, traces) == {
        importer: [root / "src/util.py"]
    }
    # The symlink itself (replaced, deleted) is an input as before.
    assert graph.affected([root / "data/far.csv"], scripts, traces) == {
        far: [root / "data/far.csv"]
    }


def test_a_listed_folder_that_is_a_symlink_is_listed_by_its_target_too(
    project: Project, tmp_path: Path
) -> None:
    root = project.root
    (tmp_path / "elsewhere").mkdir()
    (root / "data").symlink_to(tmp_path / "elsewhere")
    lister = project.script("lister.py")
    scripts: dict[Path, Mapping[str, Any]] = {lister: {}}
    traces = {lister: Trace(listed=("data",))}
    graph = graph_of(project)
    added = tmp_path / "elsewhere/new.csv"
    assert graph.affected([added], scripts, traces) == {lister: [root / "data/new.csv"]}
    assert graph.affected([root / "data/new.csv"], scripts, traces) == {
        lister: [root / "data/new.csv"]
    }


def test_affected_resolves_only_the_inputs_that_are_symlinks(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch asks about every script: a plain file costs no resolution."""
    root = project.root
    write(root, "shared/real.csv", "1\n")
    write(root, "data/plain.csv", "1\n")
    (root / "data/link.csv").symlink_to(root / "shared/real.csv")
    write(root, "src/util.py", "VALUE = 1\n")
    scripts: dict[Path, Mapping[str, Any]] = {}
    traces: dict[Path, Trace] = {}
    for n in range(20):
        script = project.script(f"s{n}.py", "import util\n")
        scripts[script] = {}
        traces[script] = Trace(reads=("data/plain.csv", "data/link.csv"), listed=("data",))
    graph = graph_of(project)
    resolved: list[str] = []
    real = os.path.realpath

    def counting(path: Any, *args: Any, **kwargs: Any) -> str:
        resolved.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counting)
    hits = graph.affected([root / "shared/real.csv"], scripts, traces)
    assert set(hits) == set(scripts)
    assert resolved == [str(root / "data/link.csv")]


def test_watch_registers_listed_folders_and_symlink_targets(
    project: Project, tmp_path: Path
) -> None:
    root = project.root
    write(root, "data/sub/a.csv", "1\n")
    write(root, "node_modules/pkg/index.js", "\n")
    write(root, "shared/real.csv", "1\n")
    write(tmp_path, "outside/real.csv", "1\n")
    (root / "links").mkdir()
    (root / "links/near.csv").symlink_to(root / "shared/real.csv")
    (root / "links/far.csv").symlink_to(tmp_path / "outside/real.csv")
    project.script(
        "walker.py", "import os\nprint(list(os.walk('data')), os.listdir('node_modules/pkg'))\n"
    )
    project.script("reader.py", "open('links/near.csv').read()\nopen('links/far.csv').read()\n")
    result = project.orch("run", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr
    dirs = watched_dirs(project)
    assert {root / "data", root / "data/sub", root / "shared", tmp_path / "outside"} <= dirs
    assert root / "node_modules/pkg" not in dirs  # listed, but below a folder never watched


# -- the real command ----------------------------------------------------------------------

_COUNTERS = {
    "by_glob.py": "import glob\nprint(len(glob.glob('data/*.csv')))",
    "by_listdir.py": "import os\nprint(len([n for n in os.listdir('data') if n.endswith('.csv')]))",
    "by_iterdir.py": "from pathlib import Path\nprint(len(list(Path('data').iterdir())))",
    "reader.py": "print(open('data/input.csv').read())",  # in data/, listing nothing
    "plain.py": "",
}


def test_a_file_added_to_a_listed_folder_reruns_each_script_listing_it(
    sample: Sample, watch: type[Watch]
) -> None:
    data = sample.write("data/input.csv", "a,b\n")
    for rel, head in _COUNTERS.items():
        sample.add(rel, head)
    once = dict.fromkeys(_COUNTERS, 1)
    w = watch(sample.root)
    sample.settled(once)
    listers = dict.fromkeys(["by_glob.py", "by_listdir.py", "by_iterdir.py"], 2)
    pos = w.mark()
    new = sample.write("data/new.csv", "c,d\n")
    after_edit(w, sample, pos, {**once, **listers})
    pos = w.mark()
    new.unlink()  # a deletion changes the listing as much
    after_edit(w, sample, pos, {**once, **dict.fromkeys(listers, 3)})
    pos = w.mark()
    edit(data)  # an edit in the folder leaves its listing as it was: its reader alone
    after_edit(w, sample, pos, {**once, **dict.fromkeys(listers, 3), "reader.py": 2})


def test_a_file_added_below_a_walked_folder_reruns_the_scripts_walking_it(
    sample: Sample, watch: type[Watch]
) -> None:
    sample.write("data/sub/a.csv", "1\n")
    sample.add("walker.py", "import os\nprint(sum(len(files) for _, _, files in os.walk('data')))")
    sample.add("globber.py", "import glob\nprint(len(glob.glob('data/**/*.csv', recursive=True)))")
    sample.add("plain.py")
    w = watch(sample.root)
    sample.settled({"walker.py": 1, "globber.py": 1, "plain.py": 1})
    pos = w.mark()
    sample.write("data/sub/b.csv", "2\n")  # data/sub/ holds no file they read
    after_edit(w, sample, pos, {"walker.py": 2, "globber.py": 2, "plain.py": 1})
    pos = w.mark()
    (sample.root / "data/sub/deeper").mkdir()  # a new folder: listed by the walks it causes
    after_edit(w, sample, pos, {"walker.py": 3, "globber.py": 3, "plain.py": 1})
    pos = w.mark()
    sample.write("data/sub/deeper/c.csv", "3\n")
    after_edit(w, sample, pos, {"walker.py": 4, "globber.py": 4, "plain.py": 1})


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_an_edit_of_a_symlink_s_target_reruns_its_reader(
    sample: Sample, watch: type[Watch], tmp_path: Path, where: str
) -> None:
    base = sample.root if where == "inside" else tmp_path
    target = write(base, "shared/real.csv", "a,b\n")
    (sample.root / "data").mkdir()
    (sample.root / "data/link.csv").symlink_to(target)
    sample.add("reader.py", "print(open('data/link.csv').read())")
    sample.add("plain.py")
    w = watch(sample.root)
    sample.settled({"reader.py": 1, "plain.py": 1})
    pos = w.mark()
    edit(target)
    after_edit(w, sample, pos, {"reader.py": 2, "plain.py": 1})
