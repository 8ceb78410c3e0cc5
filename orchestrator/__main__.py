"""``python -m orchestrator``: the same as the ``orch`` command."""

from .cli import entry_point

if __name__ == "__main__":
    entry_point()
