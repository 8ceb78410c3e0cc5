"""This checkout against an earlier revision, side by side: what a change cost or bought.

Run: ``python benchmarks/against.py REV [--scripts 200] [--modules 200] [--repeat 11]``

``REV`` (a commit, tag or branch) is checked out into a temporary git
worktree and imported from there (``PYTHONPATH``) by the same interpreter, so
both revisions run with the same installed dependencies. Measured, interleaved
in one run:

* ``orch run -j1`` of ``--scripts`` trivial scripts (each reads one
  environment variable), each revision in its own copy of the project, beside
  a shell loop: the difference per script;
* one script importing ``--modules`` local modules, traced by each revision's
  bootstrap, against the same script bare (``python main.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import interleaved, time_command

HERE = Path(__file__).resolve().parent.parent


def _project(root: Path, scripts: int) -> None:
    (root / "scripts").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    for i in range(scripts):
        (root / "scripts" / f"s{i:04d}.py").write_text("import os\nx = os.environ.get('HOME')\n")


def per_script(old: Path, root: Path, scripts: int, repeat: int) -> dict[str, float]:
    """Median seconds of ``orch run -j1`` by each revision, and of a shell loop."""
    py = sys.executable
    cases: dict[str, list[str]] = {}
    envs: dict[str, dict[str, str]] = {}
    for name, source in (("old", old), ("new", HERE)):
        _project(root / name, scripts)
        cases[name] = ["env", "-C", str(root / name), py, "-m", "orchestrator", "run", "-q", "-j1"]
        envs[name] = {**os.environ, "PYTHONPATH": str(source)}
        time_command(cases[name], root, envs[name])  # warm caches and bytecode
    cases["loop"] = ["bash", "-c", f'for f in old/scripts/*.py; do "{py}" "$f"; done']
    return interleaved(cases, root, repeat, envs)


def imports(old: Path, root: Path, modules: int, repeat: int) -> dict[str, float]:
    """Median seconds of a script importing ``modules`` local modules: traced by each, bare."""
    folder = root / "imports"
    folder.mkdir()
    for m in range(modules):
        (folder / f"m{m}.py").write_text(f"X = {m}\n")
    (folder / "main.py").write_text("".join(f"import m{m}\n" for m in range(modules)))
    bare = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    envs = {"bare": bare}
    for name, source in (("old", old), ("new", HERE)):
        envs[name] = {
            **bare,
            "PYTHONPATH": str(source / "orchestrator" / "_boot"),
            "ORCHESTRATOR_TRACE": str(root / f"trace-{name}"),
            "ORCHESTRATOR_TRACE_ROOT": str(folder),
        }
    cases = {name: [sys.executable, "main.py"] for name in envs}
    return interleaved(cases, folder, repeat, envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-against-") as tmp:
        root = Path(tmp)
        old = root / "old-checkout"
        subprocess.run(
            ["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(old), args.rev],
            check=True,
        )
        try:
            runs = per_script(old, root, args.scripts, args.repeat)
            times = imports(old, root, args.modules, max(args.repeat, 40))
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(old)])
            shutil.rmtree(old, ignore_errors=True)
    n = args.scripts
    for name, seconds in runs.items():
        print(f"{name:>5}: {seconds:.3f} s, {seconds / n * 1000:.2f} ms a script")
    print(
        f"orch run -j1, this checkout against {args.rev}: "
        f"{(runs['new'] - runs['old']) / n * 1000:+.2f} ms a script"
    )
    ratio = {name: times[name] / times["bare"] for name in ("old", "new")}
    print(
        f"{args.modules} imports traced / bare: {args.rev} {ratio['old']:.3f}x, "
        f"this checkout {ratio['new']:.3f}x; this / {args.rev} "
        f"{times['new'] / times['old']:.3f}x"
    )


if __name__ == "__main__":
    main()
