"""orchestrator: find, configure and run a repository's scripts, and report on them.

Names are imported on first use, so ``orch --version`` loads none of PyYAML,
tabulate or the runner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .cli import run_orchestrator
    from .config import get_script_config, load_config
    from .discovery import discover_scripts
    from .errors import ConfigError, CycleError, DiscoveryError, OrchestratorError
    from .reports import generate_report, save_log
    from .results import ScriptResult, Status, StopReason
    from .runner import run_function, run_script
    from .workflow import RetryPolicy, Task, TaskResult, TaskStatus, Workflow

_EXPORTS = {
    "ConfigError": "errors",
    "CycleError": "errors",
    "DiscoveryError": "errors",
    "OrchestratorError": "errors",
    "RetryPolicy": "workflow",
    "Task": "workflow",
    "TaskResult": "workflow",
    "TaskStatus": "workflow",
    "Workflow": "workflow",
    "ScriptResult": "results",
    "Status": "results",
    "StopReason": "results",
    "discover_scripts": "discovery",
    "generate_report": "reports",
    "get_script_config": "config",
    "load_config": "config",
    "run_function": "runner",
    "run_orchestrator": "cli",
    "run_script": "runner",
    "save_log": "reports",
}

__all__ = [
    "ConfigError",
    "CycleError",
    "DiscoveryError",
    "OrchestratorError",
    "RetryPolicy",
    "ScriptResult",
    "Status",
    "StopReason",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "__version__",
    "discover_scripts",
    "generate_report",
    "get_script_config",
    "load_config",
    "run_function",
    "run_orchestrator",
    "run_script",
    "save_log",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
