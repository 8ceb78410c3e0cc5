"""Load and validate ``config.yaml``, and work out each script's effective settings.

Schema (every section optional)::

    default:            settings for every script
    skip:               [paths or globs]            skipped scripts
    timeout_override:   {path or glob: seconds}
    scripts:            {path or glob: settings}

A script's effective settings are a :class:`Settings` value; each key a config
may set is one of its fields, with its default and validator (``SETTINGS`` and
:data:`DEFAULT_SETTINGS` are made from them).

Precedence, lowest first: built-in defaults, ``default:``, ``scripts:`` glob
entries in file order, ``skip:``, ``timeout_override:``, then the ``scripts:``
entry whose key is exactly the script's path. ``env`` merges key by key; every
other value replaces the one below it.

Paths are POSIX paths relative to the scripts directory. In a key, ``*`` and
``?`` never cross a ``/``, ``**`` spans any number of directories, and a plain
directory name covers everything below it: ``x.py`` is only the top-level
``x.py``; ``**/x.py`` is every ``x.py``; ``data`` is everything in ``data/``.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from ._files import relative_posix
from .errors import ConfigError
from .masking import Masker
from .patterns import Glob
from .project import Project
from .results import Status

__all__ = [
    "DEFAULT_SETTINGS",
    "SETTINGS",
    "Setting",
    "Settings",
    "get_script_config",
    "load_config",
    "match_path",
    "relative_script_path",
    "timeout_seconds",
]


#: Statuses a script may be retried on.
_RETRYABLE = tuple(s.value for s in Status if s.retryable)

_SECTIONS = (
    "default",
    "skip",
    "timeout_override",
    "scripts",
    "environments",
    "secrets",
    "cache",
)
_ENV_KEYS = ("requirements", "requirements_file", "python", "scripts")
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
#: The name of the scripts that belong to no environment (the nox default session).
DEFAULT_ENVIRONMENT = "default"


class _Invalid(Exception):
    """A value failed validation; the message says what was expected."""


# -- value validators: return the normalised value or raise _Invalid ------------------


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


#: The largest numbers a setting takes: beyond them a value is a typo, and some
#: (a timeout past ``time_t``) would fail every script at run time instead.
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_RETRY_DELAY = 24 * 3600.0
MAX_RETRIES = 100
MAX_MEMORY_MB = 1024 * 1024  # a tebibyte


def _memory_limit(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number of megabytes, got {_describe(value)}")
    if not 0 < value <= MAX_MEMORY_MB:
        raise _Invalid(
            f"expected a number of megabytes greater than 0 and at most {MAX_MEMORY_MB}, "
            f"got {_describe(value)}"
        )
    return float(value)


def _seconds_up_to(limit: float) -> Callable[[Any], float]:
    def seconds(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"expected a number of seconds, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or number <= 0 or number > limit:
            raise _Invalid(
                f"expected a number of seconds greater than 0 and at most {limit:g}, "
                f"got {_describe(value)}"
            )
        return number

    return seconds


_positive_seconds = _seconds_up_to(MAX_TIMEOUT)


def timeout_seconds(text: str) -> float:
    """A timeout typed as text (``--timeout``), held to the config's bounds.

    Raises:
        ValueError: not a number of seconds above 0 and at most a week (``nan``
            and ``inf`` included); the message says so.
    """
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    try:
        return _positive_seconds(number)
    except _Invalid as exc:
        raise ValueError(str(exc).replace(_describe(number), repr(text))) from None


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _optional_string(value: Any) -> str | None:
    return None if value is None else _string(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _scalar_text(value: Any, what: str) -> str:
    # YAML turns `3` into an int; accept numbers as text, but a bool is almost
    # always an unquoted `yes`/`on` the user meant as a string.
    if isinstance(value, str):
        if "\0" in value:  # no argument or variable can carry one: every start would fail
            raise _Invalid(f"expected {what} without a NUL character, got {_describe(value)}")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Invalid(f"expected {what}, got {_describe(value)} (quote it in YAML)")


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of strings, got {_describe(value)}")
    return [_scalar_text(item, "a string") for item in value]


def _env_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a mapping of names to strings, got {_describe(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise _Invalid(f"expected variable names as keys, got {_describe(key)}")
        out[key] = _scalar_text(item, f"a string for {key}")
    return out


def _retry_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise _Invalid(f"expected a whole number from 0 to {MAX_RETRIES}, got {_describe(value)}")
    return value


def _retry_delay(value: Any) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return _seconds_up_to(MAX_RETRY_DELAY)(value)


def _script_paths(value: Any) -> list[str]:
    paths = _string_list(value)
    for path in paths:
        if not path.strip("/ ") or path.startswith("/") or ".." in path.split("/"):
            raise _Invalid(f"expected paths relative to the scripts directory, got {path!r}")
    return [path.strip().removeprefix("./") for path in paths]


def _globs(value: Any) -> list[str]:
    patterns = _string_list(value)
    for pattern in patterns:
        if not pattern.strip("/ ") or pattern.startswith("/"):
            raise _Invalid(f"expected relative globs, got {pattern!r}")
        try:
            Glob.of(pattern)
        except re.error as exc:
            raise _Invalid(f"invalid glob {pattern!r}: {exc}") from None
    return patterns


def _retry_statuses(value: Any) -> list[str]:
    statuses = _string_list(value)
    for status in statuses:
        if status not in _RETRYABLE:
            raise _Invalid(f"expected a list of {' and '.join(_RETRYABLE)}, got {status!r}")
    return statuses


def _exit_codes(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(code, int) and not isinstance(code, bool) for code in value
    ):
        raise _Invalid(f"expected a list of integers such as [0, 3], got {_describe(value)}")
    return list(value)


class Setting(NamedTuple):
    """One key a script's settings may hold: its built-in default and its validator."""

    default: Any
    check: Callable[[Any], Any]


def _plain(value: Any) -> Any:
    """A setting as config and JSON write it: a fresh list or dict."""
    if isinstance(value, tuple):
        return list(value)
    return dict(value) if isinstance(value, Mapping) else value


def _key(default: Any, check: Callable[[Any], Any]) -> Any:
    """A :class:`Settings` field a config may set: its default and validator, declared once."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"check": check})
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class Settings:
    """A script's effective settings: one typed, frozen value, read by attribute.

    Each field but ``environment`` is a key a config may set, with its built-in
    default and its validator (:data:`SETTINGS` is made from them);
    ``environment`` is derived from the ``environments:`` groups. Lists are
    tuples; ``env`` is never changed (outputs get copies, see :meth:`to_dict`).
    """

    timeout: float | None = _key(60.0, _positive_seconds)
    args: tuple[str, ...] = _key((), _string_list)
    env: Mapping[str, str] = _key({}, _env_map)
    cwd: str | None = _key(None, _optional_string)
    allowed_exit_codes: tuple[int, ...] = _key((0,), _exit_codes)
    skip: bool = _key(False, _boolean)
    skip_reason: str = _key("", _string)
    depends_on: tuple[str, ...] = _key((), _script_paths)
    retries: int = _key(0, _retry_count)
    retry_delay: float = _key(1.0, _retry_delay)
    retry_on: tuple[str, ...] = _key(("failed", "timeout"), _retry_statuses)
    watch: tuple[str, ...] = _key((), _globs)
    trace: bool = _key(True, _boolean)
    memory_limit_mb: float | None = _key(None, _memory_limit)
    environment: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Settings:
        """The settings of validated ``values`` (lists become tuples)."""
        typed: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**typed)

    def __hash__(self) -> int:
        # By value, ``env`` as its items: scripts with equal settings share what is
        # worked out from them (their hashes in the record, once per run).
        return hash(
            tuple(
                tuple(sorted(v.items())) if isinstance(v := getattr(self, f.name), Mapping) else v
                for f in _SETTING_FIELDS
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """A fresh dict, lists as lists: :func:`get_script_config`'s and the logs' form."""
        return {f.name: _plain(getattr(self, f.name)) for f in _SETTING_FIELDS}


_SETTING_FIELDS = fields(Settings)

#: Every key a user may set for a script, declared once (in :class:`Settings`):
#: its default (as a config writes it) and its validator.
SETTINGS: dict[str, Setting] = {
    f.name: Setting(Settings().to_dict()[f.name], f.metadata["check"])
    for f in _SETTING_FIELDS
    if "check" in f.metadata
}

#: Built-in defaults: the lowest layer of every script's settings. ``environment``
#: is not a key users set: it is derived from the environments: groups' globs.
DEFAULT_SETTINGS: dict[str, Any] = Settings().to_dict()


# -- key paths and messages ----------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key_path(*parts: Any) -> str:
    return ".".join(
        p if isinstance(p, str) and _PLAIN_KEY.match(p) else json.dumps(str(p)) for p in parts
    )


def _unknown_key(source: str, parts: tuple[Any, ...], key: Any, known: list[str]) -> ConfigError:
    guess = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {guess[0]!r}?" if guess else f"known keys: {', '.join(known)}"
    return ConfigError(f"{source}: {_key_path(*parts, key)}: unknown key; {hint}")


def _validate_settings(source: str, parts: tuple[Any, ...], value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{source}: {_key_path(*parts)}: expected a mapping of settings, got {_describe(value)}"
        )
    out: dict[str, Any] = {}
    for key, item in value.items():
        setting = SETTINGS.get(key)
        if setting is None:
            raise _unknown_key(source, parts, key, list(SETTINGS))
        try:
            out[key] = setting.check(item)
        except _Invalid as exc:
            raise ConfigError(f"{source}: {_key_path(*parts, key)}: {exc}") from None
    return out


def _validate(source: str, data: Any) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping with keys {', '.join(_SECTIONS)}; "
            f"got {_describe(data)}"
        )
    for key in data:
        if key not in _SECTIONS:
            raise _unknown_key(source, (), key, list(_SECTIONS))

    def pattern(section: str, key: Any) -> str:
        if not isinstance(key, str) or not key.strip("/ "):
            raise ConfigError(
                f"{source}: {_key_path(section, key)}: expected a script path or glob as key"
            )
        try:
            Glob.of(key)
        except re.error as exc:
            raise ConfigError(
                f"{source}: {_key_path(section, key)}: invalid glob ({exc}); "
                "quote literal brackets as [[] and []]"
            ) from None
        return key

    def mapping(section: str) -> dict[str, Any]:
        value = data.get(section)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section}: expected a mapping, got {_describe(value)}")
        return {pattern(section, key): item for key, item in value.items()}

    skip = data.get("skip")
    try:
        skip = [] if skip is None else _string_list(skip)
    except _Invalid as exc:
        raise ConfigError(f"{source}: skip: {exc}") from None
    for item in skip:
        pattern("skip", item)

    try:
        secrets = _string_list(data.get("secrets") or [])
        for name in secrets:
            if not name or "=" in name:
                raise _Invalid(f"expected variable names, got {name!r}")
    except _Invalid as exc:
        raise ConfigError(
            f"{source}: secrets: {exc}; list the names of variables whose values are masked"
        ) from None

    cache = data.get("cache")
    if cache is not None and (not isinstance(cache, str) or not cache.strip()):
        raise ConfigError(
            f"{source}: cache: expected a folder or a URL such as s3://bucket/prefix, "
            f"got {_describe(cache)}"
        )

    overrides: dict[str, float] = {}
    for key, item in mapping("timeout_override").items():
        try:
            overrides[key] = _positive_seconds(item)
        except _Invalid as exc:
            raise ConfigError(f"{source}: {_key_path('timeout_override', key)}: {exc}") from None

    return {
        "default": _validate_settings(source, ("default",), data.get("default")),
        "skip": skip,
        "timeout_override": overrides,
        "scripts": {
            key: _validate_settings(source, ("scripts", key), item)
            for key, item in mapping("scripts").items()
        },
        "environments": _validate_environments(source, data.get("environments")),
        "secrets": secrets,
        "cache": cache,
    }


def _validate_environments(source: str, data: Any) -> dict[str, dict[str, Any]]:
    """``environments:``: named groups of scripts with their own requirements."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: environments: expected a mapping of names to groups")
    groups: dict[str, dict[str, Any]] = {}
    for name, group in data.items():
        where = ("environments", name)
        if not isinstance(name, str) or not _ENV_NAME.match(name) or name == DEFAULT_ENVIRONMENT:
            raise ConfigError(
                f"{source}: {_key_path(*where)}: expected a name of letters, digits, '_', '.', "
                f"'-' (and not {DEFAULT_ENVIRONMENT!r}, which is the scripts in no group)"
            )
        if not isinstance(group, dict):
            raise ConfigError(f"{source}: {_key_path(*where)}: expected a mapping")
        for key in group:
            if key not in _ENV_KEYS:
                raise _unknown_key(source, where, key, list(_ENV_KEYS))
        if ("requirements" in group) == ("requirements_file" in group):
            raise ConfigError(
                f"{source}: {_key_path(*where)}: give one of requirements (a list) "
                "or requirements_file (a path)"
            )
        try:
            python = group.get("python")
            if isinstance(python, int | float) and not isinstance(python, bool):
                python = str(python)
            groups[name] = {
                "requirements": _string_list(group.get("requirements", [])),
                "requirements_file": _optional_string(group.get("requirements_file")),
                "python": _optional_string(python),
                "scripts": _globs(group.get("scripts", [])),
            }
        except _Invalid as exc:
            raise ConfigError(f"{source}: {_key_path(*where)}: {exc}") from None
        if not groups[name]["scripts"]:
            raise ConfigError(f"{source}: {_key_path(*where, 'scripts')}: list the scripts' globs")
    return groups


# -- YAML ---------------------------------------------------------------------------


@functools.cache
def _loader() -> Any:
    """PyYAML's safe loader that refuses duplicate keys instead of silently keeping the last.

    Built on first use: a project without a config never imports PyYAML (about 9 ms).
    libyaml's parser is taken when PyYAML has it (its wheels do): about 10x faster
    on a big config, with the same safe constructors.
    """
    import yaml

    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys given explicitly may override merged ones
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # construct_mapping reports it, with its position
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
            seen[key] = None
        loader.flatten_mapping(node)
        mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
        return mapping

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


#: The largest config file read: parsing 50 MB of YAML takes minutes and gigabytes.
MAX_CONFIG_BYTES = 5 * 1024 * 1024


def _parse_yaml(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: the config file is over {MAX_CONFIG_BYTES // (1024 * 1024)} MB; "
                "use globs instead of listing every script"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and "constructor" in exc.problem:
            problem += " (only plain YAML is allowed; remove the tag)"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def load_config(scripts_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate the config that applies to ``scripts_dir``.

    Looks for ``config.yaml`` (or ``config.yml``) in ``scripts_dir``, then in
    each parent up to the project root (the nearest directory holding
    ``pyproject.toml`` or ``.git``). With no file, returns empty defaults.

    Returns:
        ``{"default", "skip", "timeout_override", "scripts"}`` validated and
        normalised, plus ``config_file`` (str or None) and ``project_root`` (str,
        or None when no root marker is above ``scripts_dir``).

    Raises:
        ConfigError: the file is not valid YAML or does not fit the schema; the
            one-line message names the file, the key path and what was expected.
    """
    project = Project.locate(scripts_dir)
    config = read_config(project.config_file)
    config["project_root"] = str(project.root) if project.marked else None
    return config


def read_config(path: Path | None) -> dict[str, Any]:
    """Validate the config file at ``path`` (None: built-in defaults); see :func:`load_config`.

    Raises:
        ConfigError: as :func:`load_config`.
    """
    config = _validate(str(path), _parse_yaml(path)) if path else _validate("", {})
    config["config_file"] = str(path) if path else None
    return config


def config_masker(config: Mapping[str, Any], environ: Mapping[str, str]) -> Masker:
    """A run's secrets: in ``environ`` and the config's ``env:``, by name or ``secrets:``."""
    variables = list(environ.items())
    for settings in (config["default"], *config["scripts"].values()):
        variables += settings.get("env", {}).items()
    return Masker.of(variables, config["secrets"])


# -- matching -------------------------------------------------------------------------


def match_path(pattern: str, rel_path: str) -> bool:
    """Whether a config key (path, folder or glob) matches a POSIX relative path.

    The dialect is :class:`~orchestrator.patterns.Glob`'s, shared with ``-k`` and ``watch:``.
    """
    return Glob.of(pattern).matches(rel_path)


def relative_script_path(
    script: str | os.PathLike[str], scripts_dir: str | os.PathLike[str]
) -> str:
    """The POSIX path of ``script`` relative to ``scripts_dir`` (the key used in config).

    A relative ``script`` is taken from the current directory when it names a
    file there inside ``scripts_dir`` (``scripts/sub/b.py``, as typed in a
    shell), and from ``scripts_dir`` otherwise (``sub/b.py``). A symlinked
    script keeps its own name: the key is the path discovery found.
    """
    typed = Path(os.path.abspath(script))
    if not Path(script).is_absolute() and typed.is_file():
        rel = relative_posix(typed, scripts_dir)
        if rel is not None:
            return rel
    script_path = Path(os.path.abspath(Path(scripts_dir, script)))
    return relative_posix(script_path, scripts_dir) or script_path.as_posix()


def sets_settings(settings: Settings) -> bool:
    """Whether a config set any of these effective settings (they are not the built-in ones)."""
    return settings != _BUILT_IN


_BUILT_IN = Settings()


def _fresh(value: Any) -> Any:
    # Validated values are flat (lists of scalars, dicts of strings): one level of copy
    # keeps every result independent, at a fraction of deepcopy's cost.
    return value.copy() if isinstance(value, (list, dict)) else value


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if key == "env":
            into["env"] = {**into["env"], **value}
        else:
            into[key] = _fresh(value)


def get_script_config(
    script: str | os.PathLike[str],
    scripts_dir: str | os.PathLike[str],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the effective settings of one script as a fresh dict.

    ``script`` may be absolute or relative to ``scripts_dir``; ``config`` is what
    :func:`load_config` returned. Mutating the result never changes ``config``.
    """
    return settings_for(relative_script_path(script, scripts_dir), config).to_dict()


def settings_for(rel: str, config: Mapping[str, Any]) -> Settings:
    """The effective settings of the script at ``rel`` (relative to the scripts directory)."""
    settings = {key: _fresh(value) for key, value in DEFAULT_SETTINGS.items()}
    _merge(settings, config.get("default", {}))
    exact: list[Mapping[str, Any]] = []
    for key, layer in config.get("scripts", {}).items():
        if key.strip("/").removeprefix("./") == rel:
            exact.append(layer)
        elif match_path(key, rel):
            _merge(settings, layer)
    if any(match_path(pattern, rel) for pattern in config.get("skip", [])):
        settings["skip"] = True
        source = Path(config.get("config_file") or "config.yaml").name
        settings["skip_reason"] = settings["skip_reason"] or f"listed under skip: in {source}"
    for key, seconds in config.get("timeout_override", {}).items():
        if match_path(key, rel):
            settings["timeout"] = seconds
    for layer in exact:
        _merge(settings, layer)
    owners = [
        name
        for name, group in config.get("environments", {}).items()
        if any(match_path(pattern, rel) for pattern in group["scripts"])
    ]
    if len(owners) > 1:
        source = config.get("config_file") or "config.yaml"
        raise ConfigError(
            f"{source}: environments: {rel} is in {' and '.join(owners)}; "
            "a script belongs to one environment"
        )
    settings["environment"] = owners[0] if owners else None
    return Settings.of(settings)
