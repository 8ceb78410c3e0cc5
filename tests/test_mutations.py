"""Mutation test of change awareness: break every kind of input and see each script rerun.

One generated tree holds a script per input kind, and a twin per script that
uses an input of the same kind that no mutation touches. Every script passes
at first. Each mutation then breaks its script alone, so:

- a mutated script that does not run again (``skipped``, ``up-to-date``, or
  no new run in ``orch watch``) is a **stale pass**: the promise broken;
- a twin that runs again is a **false rerun**: wasted work, counted.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, wait_for
from test_watch import SENTINEL, TIMEOUT, Sample, Watch


@dataclass
class Kind:
    """One input kind: the script it breaks, the twin it spares, the edit that breaks it."""

    name: str
    script: str
    twins: tuple[str, ...]
    mutate: Callable[[], None]
    #: Scripts that rerun and pass because of the mutation (a writer edited), as they should.
    also_passes: tuple[str, ...] = ()


@dataclass
class Tree:
    sample: Sample
    kinds: list[Kind] = field(default_factory=list)
    #: Laid over orch's environment: the inherited variables a script reads.
    env: dict[str, str] = field(default_factory=lambda: {"MODE": "good", "MODE_TWIN": "good"})

    @property
    def root(self) -> Path:
        return self.sample.root

    def file(self, rel: str, text: str) -> Path:
        return self.sample.write(rel, text)

    def script(self, rel: str, body: str) -> None:
        # The marker first: a run that fails is counted as much as one that passes.
        self.sample.add(rel, "", body)

    def kind(
        self, name: str, script: str, twin: str, mutate: Callable[[], None], **kw: Any
    ) -> None:
        twins = (twin, *kw.pop("more_twins", ()))
        self.kinds.append(Kind(name, script, twins, mutate, **kw))

    def scripts(self) -> list[str]:
        """Every script of the tree that runs (the shadowing module is skipped by config)."""
        return sorted({s for k in self.kinds for s in (k.script, *k.twins, *k.also_passes)})

    def expected(self) -> set[str]:
        """The scripts the mutations should rerun: the broken ones and the writer edited."""
        return {s for k in self.kinds for s in (k.script, *k.also_passes)}


#: The kinds, in the order the tree makes them: the ids of the tests.
KINDS = (
    "static import",
    "computed import",
    "module by computed name appears (__import__)",
    "module by computed name appears (import_module)",
    "csv file",
    "json file",
    "optional file appears",
    "file deleted",
    *(
        f"listed folder ({how})"
        for how in ("listdir", "scandir", "glob", "iterdir", "walk", "rglob", "path_rglob")
    ),
    "symlink target (near)",
    "symlink target (far)",
    "inherited variable",
    "config env",
    "config args",
    "sqlite3 database",
    "file another script writes",
    "state file edited by hand",
    "standard module shadowed",
    "standard module shadowed indirectly",
    "local module shadowed",
    "importlib.resources",
    "mmap",
    "package upgraded",
)
#: The modules the mutations add to script folders: skipped by config, never run as scripts.
SHADOWS = ("shadow/fractions.py", "shadow_deep/numbers.py", "shadow_local/shadowed.py")
#: What ``orch watch`` cannot see by design: its own environment, folders outside its watch.
NOT_WATCHED = frozenset({"inherited variable", "package upgraded"})


def _sqlite(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("create table if not exists t (v text)")
        db.execute("delete from t")
        db.execute("insert into t values (?)", (value,))
    db.close()


def _site(base: Path, name: str, version: str, value: int) -> None:
    """An installed package ``name`` at ``version`` in the site folder ``base``."""
    for old in base.glob(f"{name}-*.dist-info"):
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
    (base / name).mkdir(parents=True, exist_ok=True)
    (base / name / "__init__.py").write_text(f"VALUE = {value}\n")
    info = base / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def build(sample: Sample, outside: Path, watching: bool = False) -> Tree:
    """The tree: a script and a twin per kind, each passing; ``Kind.mutate`` breaks one.

    ``watching`` leaves out the kinds ``orch watch`` cannot see by design: a
    variable of its own environment, a package outside the folders it watches.
    """
    tree = Tree(sample)
    root = tree.root
    write = tree.file

    # A local module imported by name (ast sees it).
    for mod in ("mut_static", "twin_static"):
        write(f"src/{mod}.py", "OK = True\n")
        tree.script(f"static_{mod}.py", f"import {mod}\nassert {mod}.OK, 'module says no'\n")
    tree.kind(
        "static import",
        "static_mut_static.py",
        "static_twin_static.py",
        lambda: write("src/mut_static.py", "OK = False\n"),
    )

    # A module imported by a computed name (only the trace sees it).
    write("src/plugins/__init__.py", "")
    for n in (1, 2):
        write(f"src/plugins/p{n}.py", "OK = True\n")
        tree.script(
            f"computed_{n}.py",
            f"import importlib\nn = {n}\n"
            "assert importlib.import_module(f'plugins.p{n}').OK, 'plugin says no'\n",
        )
    tree.kind(
        "computed import",
        "computed_1.py",
        "computed_2.py",
        lambda: write("src/plugins/p1.py", "OK = False\n"),
    )

    # A module looked for by a computed name, absent at first, that appears (and breaks it).
    for how, call in (("__import__", "__import__(name)"), ("import_module", "import_module(name)")):
        stem = how.strip("_")
        for suffix in ("", "_twin"):
            tree.script(
                f"late_{stem}{suffix}.py",
                "from importlib import import_module\n"
                f"name = 'plugin_{stem}' + {suffix!r}\n"
                "try:\n"
                f"    module = {call}\n"
                "except ModuleNotFoundError:\n"
                "    module = None\n"
                "assert module is None or module.OK, 'the plugin says no'\n",
            )
        tree.kind(
            f"module by computed name appears ({how})",
            f"late_{stem}.py",
            f"late_{stem}_twin.py",
            lambda m=f"src/plugin_{stem}.py": write(m, "OK = False\n"),
        )

    # Data files opened: CSV and JSON.
    for stem in ("values", "values_twin"):
        write(f"data/{stem}.csv", "1,2\n")
        tree.script(
            f"csv_{stem}.py",
            f"import csv\nrows = list(csv.reader(open('data/{stem}.csv')))\n"
            "assert rows == [['1', '2']], rows\n",
        )
        write(f"data/{stem}.json", '{"ok": true}\n')
        tree.script(
            f"json_{stem}.py",
            f"import json\nassert json.load(open('data/{stem}.json'))['ok'], 'json says no'\n",
        )
    tree.kind(
        "csv file",
        "csv_values.py",
        "csv_values_twin.py",
        lambda: write("data/values.csv", "1,3\n"),
    )
    tree.kind(
        "json file",
        "json_values.py",
        "json_values_twin.py",
        lambda: write("data/values.json", '{"ok": false}\n'),
    )

    # An optional file, absent at first, that appears; a required file that goes.
    for stem in ("optional", "optional_twin"):
        tree.script(
            f"{stem}.py",
            "try:\n"
            f"    text = open('data/{stem}.txt').read()\n"
            "except FileNotFoundError:\n"
            "    text = ''\n"
            "assert 'broken' not in text, text\n",
        )
    tree.kind(
        "optional file appears",
        "optional.py",
        "optional_twin.py",
        lambda: write("data/optional.txt", "broken\n"),
    )
    for stem in ("required", "required_twin"):
        write(f"data/{stem}.txt", "here\n")
        tree.script(f"{stem}.py", f"open('data/{stem}.txt').read()\n")
    tree.kind(
        "file deleted",
        "required.py",
        "required_twin.py",
        lambda: (root / "data/required.txt").unlink(),
    )

    # A listed folder gains a file: each way of listing one, each its own folder.
    listings = {
        "listdir": ("", "import os\nfound = os.listdir({d!r})\n"),
        "scandir": ("", "import os\nwith os.scandir({d!r}) as it:\n    found = list(it)\n"),
        "glob": ("", "import glob\nfound = glob.glob({d!r} + '/*')\n"),
        "iterdir": ("", "from pathlib import Path\nfound = list(Path({d!r}).iterdir())\n"),
        "walk": (
            "sub/",
            "import os\nfound = [f for _, _, files in os.walk({d!r}) for f in files]\n",
        ),
        "rglob": (
            "sub/",
            "import glob\nfound = glob.glob({d!r} + '/**/*.txt', recursive=True)\n",
        ),
        "path_rglob": (
            "sub/",
            "from pathlib import Path\nfound = list(Path({d!r}).rglob('*.txt'))\n",
        ),
    }
    for how, (below, code) in listings.items():
        for suffix in ("", "_twin"):
            folder = f"listing/{how}{suffix}"
            write(f"{folder}/{below}one.txt", "1\n")
            tree.script(
                f"list_{how}{suffix}.py", code.format(d=folder) + "assert len(found) == 1, found\n"
            )
        tree.kind(
            f"listed folder ({how})",
            f"list_{how}.py",
            f"list_{how}_twin.py",
            lambda f=f"listing/{how}/{below}two.txt": write(f, "2\n"),
        )

    # A symlink whose target is edited: the target inside the root, and outside it.
    for where, base in (("near", root / "shared"), ("far", outside)):
        for suffix in ("", "_twin"):
            target = base / f"{where}{suffix}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("ok")
            link = root / f"links/{where}{suffix}.txt"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
            tree.script(
                f"link_{where}{suffix}.py",
                f"text = open('links/{where}{suffix}.txt').read()\nassert text == 'ok', text\n",
            )
        tree.kind(
            f"symlink target ({where})",
            f"link_{where}.py",
            f"link_{where}_twin.py",
            lambda t=base / f"{where}.txt": t.write_text("broken"),
        )

    # An inherited variable read through os.environ: changed in orch's environment.
    for var in tree.env if not watching else ():
        tree.script(
            f"env_{var.lower()}.py",
            f"import os\nassert os.environ.get({var!r}) == 'good', 'bad mode'\n",
        )
    if not watching:
        tree.kind(
            "inherited variable",
            "env_mode.py",
            "env_mode_twin.py",
            lambda: tree.env.update(MODE="bad"),
        )

    # Config: a script's env: and args: entries, each with a twin set alike.
    for suffix in ("", "_twin"):
        tree.script(
            f"cfg_env{suffix}.py",
            "import os\nassert os.environ['LEVEL'] == 'ok', os.environ['LEVEL']\n",
        )
        tree.script(f"cfg_args{suffix}.py", "import sys\nassert sys.argv[1:] == ['ok'], sys.argv\n")

    values = {"env": "ok", "args": "ok"}  # what the two mutations change, each its own

    def config(**change: str) -> None:
        values.update(change)
        sample.project.config(
            f"""
            skip: [{", ".join(SHADOWS)}]   # the shadowing modules, once they are there
            scripts:
              cfg_env.py: {{env: {{LEVEL: {values["env"]}}}}}
              cfg_env_twin.py: {{env: {{LEVEL: ok}}}}
              cfg_args.py: {{args: [{values["args"]}]}}
              cfg_args_twin.py: {{args: [ok]}}
            """
        )

    config()
    tree.kind("config env", "cfg_env.py", "cfg_env_twin.py", lambda: config(env="broken"))
    tree.kind("config args", "cfg_args.py", "cfg_args_twin.py", lambda: config(args="broken"))

    # A sqlite3 database.
    for stem in ("db", "db_twin"):
        _sqlite(root / f"data/{stem}.sqlite", "ok")
        tree.script(
            f"sqlite_{stem}.py",
            "import sqlite3\n"
            f"db = sqlite3.connect('data/{stem}.sqlite')\n"
            "[(value,)] = db.execute('select v from t').fetchall()\n"
            "db.close()\n"
            "assert value == 'ok', value\n",
        )
    tree.kind(
        "sqlite3 database",
        "sqlite_db.py",
        "sqlite_db_twin.py",
        lambda: _sqlite(root / "data/db.sqlite", "broken"),
    )

    # A file another script writes: named so that, by name, the reader comes first.
    for suffix in ("", "_twin"):
        write(f"data/produced{suffix}.txt", "ok")
        tree.script(
            f"pipe/a_reader{suffix}.py",
            f"text = open('data/produced{suffix}.txt').read()\nassert text == 'ok', text\n",
        )
        tree.script(
            f"pipe/b_writer{suffix}.py", f"open('data/produced{suffix}.txt', 'w').write('ok')\n"
        )
    tree.kind(
        "file another script writes",
        "pipe/a_reader.py",
        "pipe/a_reader_twin.py",
        lambda: tree.script("pipe/b_writer.py", "open('data/produced.txt', 'w').write('broken')\n"),
        more_twins=("pipe/b_writer_twin.py",),
        also_passes=("pipe/b_writer.py",),
    )

    # A state file the script reads and writes, then edited by hand.
    for stem in ("state", "state_twin"):
        write(f"data/{stem}.json", '{"ok": true, "runs": 0}\n')
        tree.script(
            f"{stem}.py",
            "import json\n"
            f"state = json.load(open('data/{stem}.json'))\n"
            "assert state['ok'], state\n"
            "state['runs'] += 1\n"
            f"json.dump(state, open('data/{stem}.json', 'w'))\n",
        )
    tree.kind(
        "state file edited by hand",
        "state.py",
        "state_twin.py",
        lambda: write("data/state.json", '{"ok": false, "runs": 1}\n'),
    )

    # A module beside the script that shadows a standard one it imports.
    tree.script(
        "shadow/uses_fractions.py",
        "import fractions\nassert fractions.Fraction(1, 2) == 0.5\n",
    )
    tree.script("shadow/uses_colorsys.py", "import colorsys\nassert colorsys.rgb_to_hsv(0, 0, 0)\n")
    tree.kind(
        "standard module shadowed",
        "shadow/uses_fractions.py",
        "shadow/uses_colorsys.py",
        lambda: tree.file("scripts/shadow/fractions.py", "Fraction = None\n"),
    )

    # ... or one that a standard module imports (fractions imports numbers).
    tree.script("shadow_deep/uses_fractions.py", "import fractions\nfractions.Fraction(1, 2)\n")
    tree.script("shadow_deep/uses_colorsys.py", "import colorsys\ncolorsys.rgb_to_hsv(0, 0, 0)\n")
    tree.kind(
        "standard module shadowed indirectly",
        "shadow_deep/uses_fractions.py",
        "shadow_deep/uses_colorsys.py",
        lambda: tree.file("scripts/shadow_deep/numbers.py", "raise ImportError('shadowed')\n"),
    )

    # A module beside the script that shadows the src/ module it imported.
    for mod in ("shadowed", "shadowed_twin"):
        write(f"src/{mod}.py", "OK = True\n")
        tree.script(f"shadow_local/uses_{mod}.py", f"import {mod}\nassert {mod}.OK\n")
    tree.kind(
        "local module shadowed",
        "shadow_local/uses_shadowed.py",
        "shadow_local/uses_shadowed_twin.py",
        lambda: tree.file("scripts/shadow_local/shadowed.py", "OK = False\n"),
    )

    # importlib.resources and mmap: reads that are no plain open() in the script.
    write("src/resdata/__init__.py", "")
    for stem in ("value", "value_twin"):
        write(f"src/resdata/{stem}.txt", "ok")
        tree.script(
            f"resource_{stem}.py",
            "from importlib.resources import files\n"
            f"text = files('resdata').joinpath('{stem}.txt').read_text()\n"
            "assert text == 'ok', text\n",
        )
        write(f"data/{stem}.bin", "ok")
        tree.script(
            f"mmap_{stem}.py",
            "import mmap\n"
            f"with open('data/{stem}.bin', 'rb') as f:\n"
            "    view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
            "    assert view[:] == b'ok', view[:]\n",
        )
    tree.kind(
        "importlib.resources",
        "resource_value.py",
        "resource_value_twin.py",
        lambda: write("src/resdata/value.txt", "broken"),
    )
    tree.kind("mmap", "mmap_value.py", "mmap_value_twin.py", lambda: write("data/value.bin", "no"))

    # An installed package upgraded (outside the root: its version is the input).
    site = outside / "lib/python3/site-packages"
    for pkg in ("mutpkg", "twinpkg") if not watching else ():
        _site(site, pkg, "1.0", 1)
        tree.script(
            f"pkg_{pkg}.py",
            f"import sys\nsys.path.insert(0, {str(site)!r})\n"
            f"import {pkg}\nassert {pkg}.VALUE == 1, {pkg}.VALUE\n",
        )
    if not watching:
        tree.kind(
            "package upgraded",
            "pkg_mutpkg.py",
            "pkg_twinpkg.py",
            lambda: _site(site, "mutpkg", "2.0", 2),
        )
    names = [k.name for k in tree.kinds]
    assert names == [n for n in KINDS if not watching or n not in NOT_WATCHED], names
    return tree


@dataclass
class Outcome:
    """What the runs after the mutations did to each script of a tree."""

    tree: Tree
    #: Each script's runs after the mutations (0: it was not run again).
    runs: dict[str, int]
    #: Each script's last status after the mutations (``skipped`` where it did not run).
    status: dict[str, str]
    #: Each script's reasons to run, where the command gives them.
    why: dict[str, list[str]] = field(default_factory=dict)

    def kind(self, name: str) -> Kind:
        return next(k for k in self.tree.kinds if k.name == name)

    def stale(self, kind: Kind) -> str | None:
        """How the mutated script passed stale, or None when it ran again and failed."""
        script = kind.script
        if self.runs[script] and self.status[script] == "failed":
            return None
        return f"{script}: {self.runs[script]} new run(s), {self.status[script]}"

    def false_reruns(self) -> dict[str, int]:
        """Scripts that ran though nothing they use changed, or more often than once."""
        expected = self.tree.expected()
        return {
            script: n for script, n in self.runs.items() if n > (1 if script in expected else 0)
        }


def _results(tree: Tree, *args: str) -> dict[str, dict[str, Any]]:
    """``orch run ARGS scripts``: each script's result (``path``, ``status``, ``why``, ...)."""
    done = tree.sample.project.orch("run", *args, "scripts", "--no-color", "-j2", env=tree.env)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    match = re.search(r"^reports: (.+)$", done.stdout, re.MULTILINE)
    assert match, done.stdout + done.stderr
    summary = json.loads((Path(match[1]) / "summary.json").read_text())
    return {r["path"]: r for r in summary["results"]}


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """A full run, an idle ``--changed`` run, every mutation, one ``--changed`` run."""
    base = tmp_path_factory.mktemp("changed")
    sample = Sample(Project(base / "proj"), base / "runs")
    tree = build(sample, base / "outside")
    first = _results(tree)
    assert {p: r["status"] for p, r in first.items()} == dict.fromkeys(tree.scripts(), "passed")
    idle = _results(tree, "--changed")
    assert sample.counts() == dict.fromkeys(tree.scripts(), 1), "false reruns, nothing changed"
    assert {r["skip_reason"] for r in idle.values()} == {"up-to-date"}
    for kind in tree.kinds:
        kind.mutate()
    after = _results(tree, "--changed")
    for shadow in SHADOWS:
        assert after.pop(shadow)["status"] == "skipped"  # by config
    return Outcome(
        tree,
        runs={script: n - 1 for script, n in sample.counts().items() if script in after},
        status={p: r["status"] for p, r in after.items()},
        why={p: r["why"] for p, r in after.items()},
    )


@pytest.mark.parametrize("name", KINDS)
def test_changed_reruns_the_script_each_mutation_breaks(changed: Outcome, name: str) -> None:
    kind = changed.kind(name)
    assert changed.stale(kind) is None
    assert changed.why[kind.script], "it ran: it says why"
    for script in kind.also_passes:
        assert changed.status[script] == "passed"


def test_changed_reruns_nothing_else(changed: Outcome) -> None:
    false_reruns = changed.false_reruns()
    print(f"orch run --changed: {len(changed.tree.kinds)} kinds, false reruns {false_reruns}")
    assert false_reruns == {}, {s: changed.why[s] for s in false_reruns}


def _statuses(output: str) -> dict[str, str]:
    """Each script's last status in ``orch watch`` output (its progress lines)."""
    lines = re.findall(r"^\[\d+/\d+\] (\w+) (\S+)", output, re.MULTILINE)
    return {script: status.lower() for status, script in lines}


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """``orch watch``: its initial run, then every mutation at once, then a sentinel's run.

    The mutated scripts are awaited with a deadline, then
    :meth:`Sample.settled`'s sentinel shows that nothing more is coming.
    """
    base = tmp_path_factory.mktemp("watched")
    sample = Sample(Project(base / "proj"), base / "runs")
    tree = build(sample, base / "outside", watching=True)
    once = dict.fromkeys(tree.scripts(), 1)
    session = sample.session = Watch(sample.root)
    try:
        sample.settle()
        assert sample.counts() == once, "the initial run runs each script once"
        assert set(_statuses(session.output).values()) == {"passed"}, session.output
        pos = session.mark()
        for kind in tree.kinds:
            kind.mutate()
        # A stale pass fails the test later, by name: the deadline here only bounds the wait.
        expected = tree.expected()
        wait_for(lambda: all(sample.count(s) > 1 for s in expected), TIMEOUT)
        sample.settle()
        output = session.since(pos)
    finally:
        session.close()
    status = {**dict.fromkeys(once, "skipped"), **_statuses(output)}
    status.pop(SENTINEL)
    for shadow in SHADOWS:
        assert status.pop(shadow, "skipped") == "skipped"  # by config
    runs = {script: n - 1 for script, n in sample.counts().items() if script in once}
    return Outcome(tree, runs, status)


@pytest.mark.parametrize("name", [n for n in KINDS if n not in NOT_WATCHED])
def test_watch_reruns_the_script_each_mutation_breaks(watched: Outcome, name: str) -> None:
    kind = watched.kind(name)
    assert watched.stale(kind) is None
    for script in kind.also_passes:
        assert watched.status[script] == "passed"


def test_watch_reruns_nothing_else(watched: Outcome) -> None:
    false_reruns = watched.false_reruns()
    print(f"orch watch: {len(watched.tree.kinds)} kinds, false reruns {false_reruns}")
    assert false_reruns == {}
