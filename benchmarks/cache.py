"""What the shared result cache saves: a fresh clone restoring every pass through a real S3 API.

Run: ``python benchmarks/cache.py [--scripts 500] [--repeat 3]``

Starts a moto S3 server on 127.0.0.1 (the test extras have it), publishes the
passes of ``--scripts`` trivial scripts from one checkout, then times, in
interleaved rounds (the median of ``--repeat``), a second checkout at another
path with no ``.orchestrator/`` (a fresh clone):

* ``orch run --changed -j2 --cache s3://...``: every script restored (target:
  at most 0.2x of running them);
* ``orch run --changed -j2``: every script run;
* ``orch run --changed -j2`` of an empty tree with the cache: the fixed cost,
  so that the lookup cost per script is (hit - empty) / scripts.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import interleaved, print_targets

import orchestrator


def _project(root: Path, scripts: int) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    for i in range(scripts):
        (root / "scripts" / f"s{i:05d}.py").write_text(f"x = {i}\n")
    return root


def _server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("moto server did not start") from None
            time.sleep(0.1)
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT")).close()
    return proc, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compileall.compile_dir(Path(orchestrator.__file__).parent, quiet=1)
    proc, endpoint = _server()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }
    url = "s3://bench/orch"
    orch = [sys.executable, "-m", "orchestrator", "run", "-q", "-j2", "--changed"]
    try:
        with tempfile.TemporaryDirectory(prefix="orch-bench-cache-") as tmp:
            root = Path(tmp)
            ci = _project(root / "ci", args.scripts)
            subprocess.run([*orch, "--cache", url, "--cache-write"], cwd=ci, env=env, check=True)
            clone = root / "elsewhere" / "clone"
            shutil.copytree(ci / "scripts", clone / "scripts")
            shutil.copy(ci / "pyproject.toml", clone / "pyproject.toml")
            empty = _project(root / "empty", 0)
            fresh = "rm -rf .orchestrator reports && "  # a fresh clone every round

            def shell(command: list[str]) -> list[str]:
                return ["bash", "-c", fresh + " ".join(command)]

            cases = {
                "restored from the cache": shell([*orch, "--cache", url]),
                "run": shell([*orch, "--no-cache"]),
            }
            med = interleaved(cases, clone, args.repeat, {name: env for name in cases})
            fixed = interleaved(
                {"empty tree, cache": shell([*orch, "--cache", url])},
                empty,
                args.repeat,
                {"empty tree, cache": env},
            )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    for name, seconds in {**med, **fixed}.items():
        print(f"  {name:<28} {seconds:7.3f} s")
    lookup = (med["restored from the cache"] - fixed["empty tree, cache"]) / args.scripts * 1000
    print(f"lookup and restore per script: {lookup:.2f} ms")
    print_targets([("restored / run, -j2", med["restored from the cache"] / med["run"], 0.2, "x")])


if __name__ == "__main__":
    main()
