"""``python -m orchestrator``: the same as the ``orch`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
