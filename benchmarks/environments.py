"""Cost of isolated environments: reuse per group, and a first build with uv against venv + pip.

Run: ``python benchmarks/environments.py [--groups 4]``

In one run:

* ``orch run`` on ``--groups`` groups of 5 trivial scripts, each group in its own
  (already built) environment, next to the same scripts in the current
  interpreter: the difference per group is what a reused environment adds
  (target <= 50 ms per group);
* a first build of one environment with ``uv`` (if it is on PATH) next to one
  with ``venv`` + pip, both installing the same local wheel.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def _wheel(directory: Path, name: str) -> Path:
    version = "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rows = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        rows.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*rows, f"{dist}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _project(root: Path, groups: int, wheels: list[Path] | None) -> Path:
    """``groups`` folders of 5 trivial scripts; with ``wheels``, each folder its own env."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    scripts = root / "scripts"
    lines = ["environments:"]
    for g in range(groups):
        (scripts / f"g{g}").mkdir(parents=True, exist_ok=True)
        for s in range(5):
            (scripts / f"g{g}" / f"s{s}.py").write_text("x = 1\n")
        if wheels:
            lines += [
                f"  g{g}:",
                f'    requirements: ["benchpkg{g} @ {wheels[g].as_uri()}"]',
                f'    scripts: ["g{g}/**"]',
            ]
    if wheels:
        (scripts / "config.yaml").write_text("\n".join(lines) + "\n")
    return scripts


def _orch(scripts: Path) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "-q", "--no-color", str(scripts)],
        cwd=scripts.parent,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def _build(tool: str, wheel: Path, where: Path) -> float:
    env = where / tool
    began = time.perf_counter()
    if tool == "uv":
        uv = shutil.which("uv")
        assert uv is not None
        subprocess.run([uv, "venv", "--quiet", str(env)], check=True)
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(env / "bin" / "python"), str(wheel)],
            check=True,
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [
                str(env / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                str(wheel),
            ],
            check=True,
        )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-env-bench-") as tmp:
        base = Path(tmp)
        wheels = [_wheel(base, f"benchpkg{g}") for g in range(args.groups)]
        wheel = wheels[0]
        plain = _project(base / "plain", args.groups, None)
        isolated = _project(base / "isolated", args.groups, wheels)
        _orch(isolated)  # builds the environments once
        envs = list((isolated.parent / ".orchestrator" / "envs").glob("*/bin"))
        plain_t, isolated_t = [], []
        for _ in range(args.repeat):
            plain_t.append(_orch(plain))
            isolated_t.append(_orch(isolated))
        per_group = (statistics.median(isolated_t) - statistics.median(plain_t)) / args.groups
        print(
            f"{args.groups} groups x 5 scripts, {len(envs)} environments, median of {args.repeat}"
        )
        print(f"  current interpreter  {statistics.median(plain_t):.3f} s")
        print(f"  reused environments  {statistics.median(isolated_t):.3f} s")
        print(f"  added per group      {per_group * 1000:.1f} ms (target <= 50 ms)")
        pip = _build("pip", wheel, base)
        print(f"first build, venv + pip: {pip:.2f} s")
        if shutil.which("uv"):
            uv = _build("uv", wheel, base)
            print(f"first build, uv:         {uv:.2f} s ({uv / pip:.2f}x venv + pip)")
        else:
            print("first build, uv: uv is not on PATH (pip install uv to compare)")


if __name__ == "__main__":
    main()
