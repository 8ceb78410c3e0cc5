"""Reported peak memory against what a script allocates, in itself and in a child it starts.

Run: ``python benchmarks/memory.py [--sizes 50 300 1000]``

Each script touches every page of a ``bytearray`` of N MB, once in its own
process and once in a Python child it starts; ``run_script`` (traced, as
``orch run`` runs it) reports ``peak_memory_mb``. Printed: each figure, its
ratio to the allocation, and the same for a script that allocates nothing
(the interpreter's own size). Target: within 10 % of the allocation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import print_targets

from orchestrator import run_script

_ALLOCATE = (
    "block = bytearray({mb} * 1024 * 1024)\n"
    "for i in range(0, len(block), 4096):\n"
    "    block[i] = 1\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 300, 1000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="orch-mem-") as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text("[project]\nname = 'mem'\n")
        empty = root / "empty.py"
        empty.write_text("x = 1\n")
        base = run_script(empty, root=root, trace=True)["peak_memory_mb"]
        print(f"a script that allocates nothing: {base} MB")
        for mb in args.sizes:
            body = _ALLOCATE.format(mb=mb)
            own = root / f"own{mb}.py"
            own.write_text(body)
            child = root / f"child{mb}.py"
            run = f"subprocess.run([sys.executable, '-c', {body!r}], check=True)"
            child.write_text(f"import subprocess, sys\n{run}\n")
            for where, script in (("in the script", own), ("in a child", child)):
                result = run_script(script, root=root, trace=True, timeout=120)
                peak = result["peak_memory_mb"]
                print(
                    f"{mb} MB {where}: reported {peak} MB ({peak / mb:.3f}x; "
                    f"{peak - base:.1f} MB above a bare interpreter)"
                )
                rows.append(
                    (f"{mb} MB {where}: |reported / allocated - 1|", abs(peak / mb - 1), 0.1, "")
                )
    print_targets(rows)


if __name__ == "__main__":
    main()
