"""What masking secrets costs on a script's output: with secrets set against none, side by side.

Run: ``python benchmarks/masking.py [--megabytes 256] [--secrets 3] [--repeat 3]``

One script writes ``--megabytes`` MiB of log-like lines; ``run_script`` runs it
(with its stream logs on disk) once with no secret in its environment and
once with ``--secrets`` secret-looking variables set, the two taking turns
(the median of ``--repeat`` rounds). Reports the ratio and the masking
throughput in MB/s of output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import run_script

_SCRIPT = """
import sys
line = b"2026-12-03 12:00:00 INFO worker 17 processed batch 4242 in 0.031 s ok\\n"
block = line * (1024 * 1024 // len(line))
for _ in range({megabytes}):
    sys.stdout.buffer.write(block)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--secrets", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    secrets = {f"SERVICE_{i}_TOKEN": f"tok-{i}-9f8e7d6c5b4a3210" for i in range(args.secrets)}
    times: dict[str, list[float]] = {"no secret": [], f"{args.secrets} secrets": []}
    with tempfile.TemporaryDirectory(prefix="orch-mask-") as tmp:
        script = Path(tmp) / "flood.py"
        script.write_text(_SCRIPT.format(megabytes=args.megabytes))
        for _ in range(args.repeat):
            for name, env in (("no secret", {}), (f"{args.secrets} secrets", secrets)):
                began = time.perf_counter()
                result = run_script(script, env=env, timeout=None, log_dir=Path(tmp) / "logs")
                times[name].append(time.perf_counter() - began)
                assert result["status"] == "passed", result["error"]
    bare, masked = (statistics.median(values) for values in times.values())
    extra = masked - bare
    rate = args.megabytes * 1.048576 / extra if extra > 0 else float("inf")
    print(f"{args.megabytes} MiB of output: {bare:.2f} s without secrets, {masked:.2f} s with")
    print(f"with / without: {masked / bare:.2f}x; masking throughput {rate:.0f} MB/s")


if __name__ == "__main__":
    main()
