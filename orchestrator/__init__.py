"""orchestrator: find, configure and run a repository's scripts, and report on them."""

from .config import get_script_config, load_config
from .discovery import discover_scripts
from .errors import ConfigError, CycleError, DiscoveryError, OrchestratorError
from .runner import Status, run_function, run_script

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CycleError",
    "DiscoveryError",
    "OrchestratorError",
    "Status",
    "__version__",
    "discover_scripts",
    "get_script_config",
    "load_config",
    "run_function",
    "run_script",
]
