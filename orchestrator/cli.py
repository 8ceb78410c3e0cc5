"""The ``orch`` command line (placeholder until the CLI lands)."""

from __future__ import annotations

import argparse

from . import __version__


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit code."""
    parser = argparse.ArgumentParser(prog="orch")
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


def entry_point() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
