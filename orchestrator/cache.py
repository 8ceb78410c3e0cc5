"""The shared result cache: a pass on one machine is a pass on every machine with the same inputs.

A store is a folder (a path or ``file://``, for a shared mount) or an object
store (``s3://bucket/prefix``, and what else ``obstore`` reaches, through the
``orchestrator[cache]`` extra). It holds one object per published pass::

    orch-cache/v1/<bucket>/<key>.json

``bucket`` is what is known before any input is hashed: the key schema, the
platform, the interpreter, the script's path and content and the settings that
change what it does (args, env, cwd, allowed exit codes; never timeouts or
retries). ``key`` adds every input the script used, read from the entry's own
:class:`Recipe`: the files (paths relative to the project root, and those it
looked for and did not find), the environment variables it read and the
installed distributions it imported. A reader lists a bucket, recomputes each
entry's key from its own files, environment and interpreter, and takes the
first that matches: two checkouts at different paths share entries, and a
fresh clone with no ``.orchestrator/`` hits.

Trust: an entry is created, never overwritten (``O_EXCL`` through a hard link
in a folder, a create-only put in an object store), carries a SHA-256 of its
own content that the reader checks, and is written only with ``--cache-write``
(meant for trusted CI on protected branches: whoever can write the store can
make every reader skip a script). A damaged, unreadable or refused entry is a
miss with one warning line; an unreachable store is one warning line and the
run goes on locally. Only reproducible passes are published (see
:meth:`Cache.unpublishable`); environment values enter keys as hashes only,
and logs are masked as every other output.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from .config import Settings
from .distributions import installed, site_folders
from .environments import EnvBuildError, Environments, interpreter_identity
from .errors import ConfigError
from .inputs import InputGraph
from .masking import Masker, looks_secret
from .plan import ScriptJob
from .tracing import Trace

__all__ = [
    "SCHEMA",
    "Cache",
    "CacheUnavailable",
    "Entry",
    "FolderStore",
    "ObjectStore",
    "Recipe",
    "Store",
    "cache_url",
    "open_store",
]

logger = logging.getLogger("orchestrator")

#: The key schema: an entry of another schema is never read (its folder differs).
SCHEMA = 1
_ROOT = f"orch-cache/v{SCHEMA}"
#: Entries of a bucket read per script, newest first: a script whose inputs keep
#: changing has many, and only the recent ones can still match.
MAX_CANDIDATES = 8
#: Each captured stream an entry keeps, in characters (the tail beyond is cut).
MAX_LOG = 1 << 20
#: Lookups fetched at once (they wait on the network, not on the CPU).
FETCHERS = 16
#: The interpreter of an isolated environment not built yet, which ``orch why`` does not build.
_UNBUILT = "<not built>"


class CacheUnavailable(Exception):
    """The store cannot be reached or refuses us: the run goes on without it."""


class Store(Protocol):
    """Where entries live: names are ``/``-separated paths below the store's root."""

    url: str

    def list(self, prefix: str) -> list[str]:
        """The names below ``prefix``, newest first."""

    def get(self, name: str) -> bytes | None:
        """The object's bytes; None: there is no such object."""

    def create(self, name: str, data: bytes) -> bool:
        """Create the object unless it exists; False: it existed (left as it was)."""


class FolderStore:
    """A store in a folder: a local one, or a shared mount."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def list(self, prefix: str) -> list[str]:
        """The names below ``prefix``, newest first (by modification time)."""
        folder = self.root / prefix
        try:
            with os.scandir(folder) as entries:
                found = [
                    (entry.stat().st_mtime_ns, entry.name)
                    for entry in entries
                    if entry.name.endswith(".json") and entry.is_file()
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CacheUnavailable(f"cannot list {folder}: {exc.strerror}") from None
        return [f"{prefix}/{name}" for _, name in sorted(found, reverse=True)]

    def get(self, name: str) -> bytes | None:
        """The file's bytes; None: no such file."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnavailable(f"cannot read {self.root / name}: {exc.strerror}") from None

    def create(self, name: str, data: bytes) -> bool:
        """Write a temporary file, then link it to its name: whole, and never over another."""
        target = self.root / name
        try:
            if not self.root.is_dir():
                raise FileNotFoundError(f"no folder {self.root}")
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            temp.write_bytes(data)
            try:
                os.link(temp, target)  # fails if it exists: create-only, like O_EXCL
                return True
            except FileExistsError:
                return False
            finally:
                temp.unlink()
        except OSError as exc:
            raise CacheUnavailable(f"cannot write {target}: {exc}") from None


class ObjectStore:
    """A store in an object store, through ``obstore`` (the ``orchestrator[cache]`` extra).

    Credentials, region and endpoint come from the standard variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ...; an
    ``http://`` endpoint also needs ``AWS_ALLOW_HTTP=true``). Few retries and
    short timeouts: a store that is down must not hold the run up.
    """

    def __init__(self, url: str) -> None:
        try:
            import obstore
            from obstore.store import from_url
        except ImportError:
            raise ConfigError(
                f"cache {url}: an object store needs the cache extra; "
                "install it with pip install 'orchestrator[cache]'"
            ) from None
        self.url = url
        self._obstore = obstore
        # Client options given replace those read from the environment: say its one again.
        allow_http = os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true")
        try:
            self._store = from_url(
                url,
                client_options={
                    "timeout": timedelta(seconds=20),
                    "connect_timeout": timedelta(seconds=3),
                    "allow_http": allow_http,
                },
                retry_config={"max_retries": 1, "retry_timeout": timedelta(seconds=5)},
            )
        except Exception as exc:  # obstore's errors have no common base we can name here
            raise ConfigError(f"cache {url}: {_first_line(exc)}") from None

    def list(self, prefix: str) -> list[str]:
        """The names below ``prefix``, newest first."""
        try:
            metas = [meta for chunk in self._obstore.list(self._store, prefix) for meta in chunk]
        except Exception as exc:
            raise CacheUnavailable(_first_line(exc)) from None
        metas.sort(key=lambda meta: meta["last_modified"], reverse=True)
        return [meta["path"] for meta in metas]

    def get(self, name: str) -> bytes | None:
        """The object's bytes; None: no such object."""
        try:
            return bytes(self._obstore.get(self._store, name).bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise CacheUnavailable(_first_line(exc)) from None

    def create(self, name: str, data: bytes) -> bool:
        """A create-only put; False: the object existed."""
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            self._obstore.put(self._store, name, data, mode="create")
            return True
        except (AlreadyExistsError, PreconditionError):
            return False
        except Exception as exc:
            raise CacheUnavailable(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    # obstore's messages carry the server's whole XML answer and a debug dump.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def open_store(url: str, base: Path) -> Store:
    """The store a cache URL names; a relative folder is taken from ``base``.

    Raises:
        ConfigError: the URL cannot name a store (or its extra is missing).
    """
    if url.startswith("file://"):
        return FolderStore(Path(url[len("file://") :]))
    scheme, sep, _ = url.partition("://")
    if not sep:
        return FolderStore(base / url)
    if scheme not in ("s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "http", "https"):
        raise ConfigError(
            f"cache {url}: unknown scheme {scheme!r}; use a folder, file://, s3://, gs:// or az://"
        )
    return ObjectStore(url)


def cache_url(given: str | None, configured: str | None, root: Path) -> str | None:
    """The run's cache: ``given`` (the command line's or ``ORCH_CACHE``; ``""``: none),
    else the config's ``cache:``, a folder there taken from the project ``root``."""
    if given is not None:
        return given or None
    if configured is None or "://" in configured:
        return configured
    return str(root / configured)


def _sha(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _platform() -> str:
    return f"{sys.platform}-{os.uname().machine}" if hasattr(os, "uname") else sys.platform


@dataclass(frozen=True)
class Recipe:
    """The names a key is computed from, published with the entry: never a value."""

    #: Every input file, relative to the project root (missing ones too: a module
    #: looked for and not found must still be missing for the pass to hold).
    inputs: tuple[str, ...]
    #: The environment variables it read.
    environ: tuple[str, ...] = ()
    #: Where the distributions it imported live: a module's file or a package's
    #: folder name in a site folder (``six.py``, ``yaml``).
    packages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        """The JSON-ready lists."""
        return {
            "inputs": list(self.inputs),
            "environ": list(self.environ),
            "packages": list(self.packages),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        """Read :meth:`to_dict` back; ValueError if it is not such lists of names."""
        if not isinstance(data, Mapping):
            raise ValueError("no recipe")
        parts: dict[str, tuple[str, ...]] = {}
        for name in ("inputs", "environ", "packages"):
            value = data.get(name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"recipe {name} is not a list of names")
            parts[name] = tuple(value)
        if any(rel.startswith("/") or ".." in rel.split("/") for rel in parts["inputs"]):
            raise ValueError("recipe input outside the project")
        return cls(**parts)


@dataclass(frozen=True)
class Entry:
    """A published pass, read back and checked."""

    key: str
    script: str
    recipe: Recipe
    #: The trace's reads, writes, modules and listed folders (relative paths), for the
    #: local record: the next ``--changed`` knows the script as if it ran here.
    trace: Mapping[str, list[str]]
    host: str
    commit: str | None
    time: str
    execution_time: float
    stdout: str = ""
    stderr: str = ""
    peak_memory_mb: float | None = None

    def to_json(self) -> bytes:
        """The object's bytes, with the digest the reader checks."""
        body = self._body()
        return json.dumps({**body, "digest": _sha(body)}, ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )

    def _body(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "key": self.key,
            "script": self.script,
            "recipe": self.recipe.to_dict(),
            "trace": dict(self.trace),
            "host": self.host,
            "commit": self.commit,
            "time": self.time,
            "execution_time": self.execution_time,
            "peak_memory_mb": self.peak_memory_mb,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }

    @classmethod
    def from_json(cls, data: bytes, key: str, script: str) -> Entry:
        """Read an object back; ValueError says why it cannot be trusted."""
        try:
            raw = json.loads(data.decode("utf-8", "surrogatepass"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("not an entry")
        digest = raw.pop("digest", None)
        if digest != _sha(raw):
            raise ValueError("its digest does not match its content")
        if raw.get("schema") != SCHEMA or raw.get("key") != key or raw.get("script") != script:
            raise ValueError("it is filed under another key or script")
        trace = raw.get("trace")
        texts = ("host", "time", "stdout", "stderr")
        if (
            not isinstance(trace, dict)
            or not all(isinstance(raw.get(name), str) for name in texts)
            or not isinstance(raw.get("commit"), (str, type(None)))
            or not isinstance(raw.get("execution_time"), (int, float))
        ):
            raise ValueError("a field has the wrong type")
        try:
            parsed = Trace.from_dict(trace)
        except ValueError as exc:
            raise ValueError(f"its trace: {exc}") from None
        return cls(
            key=key,
            script=script,
            recipe=Recipe.from_dict(raw.get("recipe")),
            trace={k: list(getattr(parsed, k)) for k in ("reads", "writes", "modules", "listed")},
            host=raw["host"],
            commit=raw["commit"],
            time=raw["time"],
            execution_time=float(raw["execution_time"]),
            stdout=raw["stdout"],
            stderr=raw["stderr"],
            peak_memory_mb=raw.get("peak_memory_mb")
            if isinstance(raw.get("peak_memory_mb"), (int, float))
            else None,
        )

    @property
    def origin(self) -> str:
        """Where and when it passed: ``passed on HOST at COMMIT, TIME``."""
        commit = f" at {self.commit[:12]}" if self.commit else ""
        return f"passed on {self.host}{commit}, {self.time}"

    @property
    def reason(self) -> str:
        """The ``skip_reason`` of a script restored from it."""
        return f"cached: {self.origin}"


#: What a script's bucket held: ``(bucket, entry)`` read and checked, newest first.
_Found = list[tuple[str, "Entry"]]


class Cache:
    """One run's use of a store: lookups before scripts run, publishing after they pass.

    Thread-safe: lookups are fetched by a pool, scripts ask from worker threads.
    """

    def __init__(
        self,
        store: Store,
        graph: InputGraph,
        envs: Environments,
        python: str | None,
        masker: Masker,
        secret_names: Iterable[str] = (),
        *,
        write: bool = False,
        build: bool = True,
        commit: str | None = None,
    ) -> None:
        self.store = store
        self.url = masker.mask(store.url)
        self.graph = graph
        self.envs = envs
        self.python = python
        self.masker = masker
        self.secret_names = frozenset(secret_names)
        self.write = write
        #: The commit checked out here, named in what this run publishes.
        self.commit = commit
        #: Build a missing isolated environment to key a script in it (``orch why``,
        #: which runs nothing, does not: such a script is then a miss).
        self.build = build
        self.restored = 0
        self.saved = 0.0
        self.published = 0
        self._down: str | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(FETCHERS, "orch-cache")
        self._lookups: dict[Path, concurrent.futures.Future[_Found]] = {}
        self._publishing: list[concurrent.futures.Future[None]] = []

    # -- keys -----------------------------------------------------------------------

    def _python(self, job: ScriptJob) -> dict[str, str]:
        identity = interpreter_identity(self.python)
        try:
            spec = self.envs.spec_for(job.path, job.settings.environment)
        except EnvBuildError:
            spec = None
        env = None
        if spec is not None:  # what it installs, not where: paths differ between machines
            required = None
            if spec.requirements_file is not None:
                with contextlib.suppress(OSError):
                    required = hashlib.sha256(spec.requirements_file.read_bytes()).hexdigest()
            env = [list(spec.requirements), spec.python, spec.requires_python, required]
        return {"version": identity["version"], "build": identity["build"], "env": _sha(env)}

    def bucket(self, job: ScriptJob) -> str | None:
        """The folder of a script's entries; None: the script cannot be read."""
        script = self.graph.file_hash(job.path)
        if script is None:
            return None
        return _sha(
            {
                "schema": SCHEMA,
                "platform": _platform(),
                "python": self._python(job),
                "script": self._rel(job.path),
                "content": script,
                "settings": _behaviour(job.settings),
            }
        )[:32]

    def key(self, job: ScriptJob, bucket: str, recipe: Recipe) -> str:
        """The key of a pass with ``recipe``'s inputs as they are here, now."""
        root = self.graph.root
        inputs = {rel: self.graph.file_hash(root / rel) for rel in recipe.inputs}
        environ = {
            name: None if (v := _value(job.settings, name)) is None else _sha(v)
            for name in recipe.environ
        }
        located = self._located(job, recipe.packages)
        packages = {
            "installed": installed(p for p in located if p.startswith("/")),
            "missing": sorted(p for p in located if not p.startswith("/")),
        }
        return _sha({"bucket": bucket, "inputs": inputs, "environ": environ, "packages": packages})

    def _located(self, job: ScriptJob, bases: Iterable[str]) -> list[str]:
        """Where each module's file or package folder is in the script's site folders
        (the name alone where it is in none)."""
        python = self._interpreter(job)
        if python is _UNBUILT:
            return list(bases)  # found nowhere: a key no published pass has
        sites = site_folders(python)
        return [
            next((f"{site}/{base}" for site in sites if os.path.lexists(f"{site}/{base}")), base)
            for base in bases
        ]

    def trace_of(self, job: ScriptJob, entry: Entry) -> Trace:
        """The trace a restored script is recorded with: the entry's, its packages found here."""
        located = self._located(job, entry.recipe.packages)
        return Trace(
            reads=tuple(entry.trace["reads"]),
            writes=tuple(entry.trace["writes"]),
            modules=tuple(entry.trace["modules"]),
            listed=tuple(entry.trace["listed"]),
            environ=entry.recipe.environ,
            packages=tuple(p for p in located if p.startswith("/")),
        )

    def _interpreter(self, job: ScriptJob) -> str | None:
        # The environment the script runs in: built now if it is not yet, as the
        # script's run would (a failure leaves the key without its distributions).
        try:
            spec = self.envs.spec_for(job.path, job.settings.environment)
            if spec is None:
                return self.python
            if not self.build and not self.envs.ready(spec):
                return _UNBUILT
            return str(self.envs.python(spec))
        except EnvBuildError:
            return self.python

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.graph.root)).as_posix()

    # -- reading --------------------------------------------------------------------

    def prefetch(self, jobs: Iterable[ScriptJob]) -> None:
        """Start fetching the entries of these scripts' buckets, to be looked up later."""
        for job in jobs:
            self._future(job)

    def _future(self, job: ScriptJob) -> concurrent.futures.Future[_Found]:
        with self._lock:
            if job.path not in self._lookups:
                bucket = self.bucket(job)
                self._lookups[job.path] = self._pool.submit(self._fetch, job, bucket)
            return self._lookups[job.path]

    def _fetch(self, job: ScriptJob, bucket: str | None) -> _Found:
        found: _Found = []
        if bucket is None or self._down is not None:
            return found
        try:
            names = self.store.list(f"{_ROOT}/{bucket}")[:MAX_CANDIDATES]
            for name in names:
                key = name.rsplit("/", 1)[-1].removesuffix(".json")
                data = self.store.get(name)
                if data is None:
                    continue
                try:
                    entry = Entry.from_json(data, key, self._rel(job.path))
                except ValueError as exc:
                    self._warn(name, f"cache: entry {name} ignored: {exc}")
                    continue
                found.append((bucket, entry))
        except CacheUnavailable as exc:
            self._unavailable(str(exc))
        return found

    def lookup(self, job: ScriptJob) -> Entry | None:
        """The published pass whose inputs are this script's as they are now, if any.

        Called just before the script would run: after whatever it is ordered
        after has run, so the files it reads are as it would read them.
        """
        if self._down is not None:
            return None
        try:
            found = self._future(job).result()
        except Exception as exc:  # our own bug in a fetch: a miss, said once
            self._warn("lookup", f"cache: lookup failed: {exc!r}")
            return None
        for bucket, entry in found:
            if self.key(job, bucket, entry.recipe) == entry.key:
                with self._lock:
                    self.restored += 1
                    self.saved += entry.execution_time
                return entry
        return None

    # -- writing --------------------------------------------------------------------

    def unpublishable(
        self, job: ScriptJob, trace: Trace | None, inputs_incomplete: Sequence[str]
    ) -> str | None:
        """Why a pass of ``job`` must not be shared; None: it may be.

        Only what is known whole and reproducible: a traced script that ran no
        untraced program, read nothing outside the project, wrote no file in it
        (its outputs are not cached, so a restored script would leave them
        missing) and read no secret variable (its key would hold the value's
        hash, guessable when the value is short).
        """
        if not job.settings.trace:
            return "not traced (trace: false)"
        if trace is None:
            return "no trace"
        if inputs_incomplete:
            return f"inputs incomplete: {inputs_incomplete[0]}"
        if trace.writes:
            return f"it wrote {trace.writes[0]}"
        for name in trace.environ:
            value = _value(job.settings, name)
            if (
                looks_secret(name)
                or name in self.secret_names
                or (value is not None and self.masker.mask(value) != value)
            ):
                return f"it read the secret variable {name}"
        return None

    def publish(
        self,
        job: ScriptJob,
        trace: Trace,
        inputs: Mapping[str, str | None],
        execution_time: float,
        stdout: str,
        stderr: str,
        peak_memory_mb: float | None,
    ) -> None:
        """Share a pass (in the background).

        ``inputs``: its inputs (relative paths) with the hashes the record keeps of
        what it ran with (a prefix of the SHA-256; None: missing). A pass whose
        inputs changed while it ran, or since, is not shared.
        """
        if not self.write or self._down is not None:
            return
        bucket = self.bucket(job)
        if bucket is None:
            return
        root = self.graph.root
        recipe = Recipe(
            inputs=tuple(sorted(inputs)),
            environ=tuple(sorted(trace.environ)),
            packages=tuple(sorted({os.path.basename(p.rstrip("/")) for p in trace.packages})),
        )
        for rel, recorded in inputs.items():
            now = self.graph.file_hash(root / rel)
            changed = now is not None if recorded is None else not (now or "").startswith(recorded)
            if changed:
                return  # changed while it ran, or since: not the pass of what is here now
        key = self.key(job, bucket, recipe)
        entry = Entry(
            key=key,
            script=self._rel(job.path),
            recipe=recipe,
            trace={k: list(getattr(trace, k)) for k in ("reads", "writes", "modules", "listed")},
            host=os.uname().nodename if hasattr(os, "uname") else "unknown",
            commit=self.commit,
            time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            execution_time=round(execution_time, 6),
            stdout=self.masker.mask(stdout)[-MAX_LOG:],
            stderr=self.masker.mask(stderr)[-MAX_LOG:],
            peak_memory_mb=peak_memory_mb,
        )
        name = f"{_ROOT}/{bucket}/{key}.json"
        with self._lock:
            self._publishing.append(self._pool.submit(self._create, name, entry.to_json()))

    def _create(self, name: str, data: bytes) -> None:
        if self._down is not None:
            return
        try:
            if self.store.create(name, data):
                with self._lock:
                    self.published += 1
        except CacheUnavailable as exc:
            self._unavailable(str(exc))

    # -- the run's end, and warnings ------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """What the run got from the cache and gave it: ``url``, ``restored`` (scripts),
        ``saved`` (their recorded seconds), ``published``, and ``unavailable`` (why, or None)."""
        return {
            "url": self.url,
            "restored": self.restored,
            "saved": round(self.saved, 3),
            "published": self.published,
            "unavailable": self.masker.mask(self._down) if self._down else None,
        }

    def close(self) -> None:
        """Wait for what is being published; stop fetching what nobody asked for."""
        for future in list(self._publishing):
            future.result()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _unavailable(self, why: str) -> None:
        with self._lock:
            if self._down is not None:
                return
            self._down = why
        logger.warning(
            "cache %s unavailable, running without it: %s", self.url, self.masker.mask(why)
        )

    def _warn(self, what: str, line: str) -> None:
        with self._lock:
            if what in self._warned:
                return
            self._warned.add(what)
        logger.warning("%s", self.masker.mask(line))


def _value(settings: Settings, name: str) -> str | None:
    """The value a script sees for variable ``name``: the config's ``env:`` over ours."""
    return settings.env.get(name, os.environ.get(name))


def _behaviour(settings: Settings) -> dict[str, Any]:
    """The settings that change what a script does (not how long it may take)."""
    return {
        "args": list(settings.args),
        "env": {name: _sha(value) for name, value in settings.env.items()},
        "cwd": settings.cwd,
        "allowed_exit_codes": sorted(settings.allowed_exit_codes),
    }
