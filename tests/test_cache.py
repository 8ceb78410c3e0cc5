"""The shared result cache: real folders shared by two checkouts, and a real S3 API (moto)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, wait_for

from orchestrator.cache import Entry, FolderStore, Recipe

TREE = {
    "one.py": """
        import os
        import helper
        print("one says", helper.VALUE)
        """,
    "two.py": """
        import json
        print("two says", json.dumps([2]))
        """,
}


def checkout(root: Path, scripts: dict[str, str] = TREE) -> Project:
    """A project as a clone would have it: sources and scripts, no .orchestrator/."""
    project = Project(root)
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "helper.py").write_text("VALUE = 3\n")
    for rel, body in scripts.items():
        project.script(rel, body)
    return project


def statuses(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """``{path: result}`` from the run's summary.json."""
    match = re.search(r"^reports: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    summary = json.loads((Path(match.group(1)) / "summary.json").read_text())
    return {r["path"]: r for r in summary["results"]}


def run(project: Project, *args: str | Path, env: dict[str, str] | None = None) -> Any:
    result = project.orch("run", "--no-color", *args, env=env)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


@pytest.fixture
def two(tmp_path: Path) -> tuple[Project, Project, Path]:
    """Two checkouts of one tree at different paths, and an empty shared cache folder."""
    shared = tmp_path / "shared"
    shared.mkdir()
    return checkout(tmp_path / "ci" / "repo"), checkout(tmp_path / "laptop" / "work"), shared


def test_a_pass_published_from_one_checkout_is_restored_in_a_fresh_other(
    two: tuple[Project, Project, Path],
) -> None:
    ci, laptop, shared = two
    published = run(ci, "--cache", shared, "--cache-write")
    assert "0 restored, 2 published" in published.stdout
    assert len(entries(shared)) == 2

    restored = run(laptop, "--changed", "--cache", shared)
    results = statuses(restored)
    for name in ("one.py", "two.py"):
        assert results[name]["status"] == "skipped"
        assert results[name]["skip_reason"].startswith("cached: passed on ")
        assert results[name]["cache"]["saved"] > 0
    assert "2 restored" in restored.stdout
    log = Path(results["one.py"]["stdout_path"])
    assert log.read_text() == "one says 3\n"
    assert str(laptop.root) in str(log)  # in this run's folder
    report = (log.parents[1] / "report.md").read_text()
    assert "2 restored" in report

    # The local record learned it: no cache now, and nothing runs.
    again = run(laptop, "--changed")
    assert {r["skip_reason"] for r in statuses(again).values()} == {"up-to-date"}


def test_a_changed_input_runs_and_the_others_are_restored(
    two: tuple[Project, Project, Path],
) -> None:
    ci, laptop, shared = two
    run(ci, "--cache", shared, "--cache-write")
    (laptop.root / "src" / "helper.py").write_text("VALUE = 4\n")
    results = statuses(run(laptop, "--changed", "--cache", shared))
    assert results["one.py"]["status"] == "passed"
    assert Path(results["one.py"]["stdout_path"]).read_text() == "one says 4\n"
    assert results["two.py"]["skip_reason"].startswith("cached")


def test_only_reproducible_passes_are_published(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    project = checkout(
        tmp_path / "repo",
        {
            "good.py": "print('fine')\n",
            "bad.py": "raise SystemExit(1)\n",
            "tool.py": "import subprocess\nsubprocess.run(['true'])\n",
            "writer.py": "open('made.txt', 'w').write('x')\n",
            "secret.py": "import os\nprint(len(os.environ.get('API_TOKEN', '')))\n",
            "untraced.py": "print('no trace')\n",
        },
    )
    project.config(
        """
        scripts:
          untraced.py:
            trace: false
        """
    )
    run(project, "--cache", shared, "--cache-write", env={"API_TOKEN": "hunter2-hunter2"})
    published = [json.loads(p.read_text())["script"] for p in entries(shared)]
    assert published == ["scripts/good.py"]


def test_without_cache_write_nothing_is_written(two: tuple[Project, Project, Path]) -> None:
    ci, _, shared = two
    result = run(ci, "--cache", shared)
    assert entries(shared) == []
    assert "0 published" in result.stdout


def test_an_entry_is_never_overwritten(two: tuple[Project, Project, Path]) -> None:
    ci, _, shared = two
    run(ci, "--cache", shared, "--cache-write")
    first = {p: p.read_bytes() for p in entries(shared)}
    again = run(ci, "--cache", shared, "--cache-write", "--changed", "--force")
    assert "0 published" in again.stdout
    assert {p: p.read_bytes() for p in entries(shared)} == first

    store = FolderStore(shared)
    name = str(next(iter(first)).relative_to(shared))
    assert store.create(name, b"forged") is False
    assert (shared / name).read_bytes() == first[shared / name]


def test_a_tampered_entry_is_a_miss_with_one_warning(
    two: tuple[Project, Project, Path],
) -> None:
    ci, laptop, shared = two
    run(ci, "--cache", shared, "--cache-write")
    for path in entries(shared):
        entry = json.loads(path.read_text())
        if entry["script"] == "scripts/one.py":
            entry["stdout"] = "forged\n"  # the digest no longer matches
            path.write_text(json.dumps(entry))
    result = run(laptop, "--changed", "--cache", shared)
    results = statuses(result)
    assert results["one.py"]["status"] == "passed"
    assert results["two.py"]["skip_reason"].startswith("cached")
    warnings = [line for line in result.stderr.splitlines() if "ignored" in line]
    assert len(warnings) == 1, result.stderr
    assert "digest does not match" in warnings[0]


def test_garbage_and_misfiled_entries_are_misses(two: tuple[Project, Project, Path]) -> None:
    ci, laptop, shared = two
    run(ci, "--cache", shared, "--cache-write")
    paths = entries(shared)
    paths[0].write_bytes(b"\xff\xfe not json")
    # A valid entry filed under another key: its name is what a reader trusts.
    paths[1].rename(paths[1].with_name("0" * 64 + ".json"))
    result = run(laptop, "--changed", "--cache", shared)
    assert {r["status"] for r in statuses(result).values()} == {"passed"}
    assert result.stderr.count("ignored") == 2, result.stderr


def test_the_values_of_variables_read_are_in_the_key_and_never_in_the_entry(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    scripts = {"mode.py": "import os\nprint(os.environ.get('DEPLOY_MODE') == 'blue-green-42')\n"}
    ci = checkout(tmp_path / "ci", scripts)
    laptop = checkout(tmp_path / "laptop", scripts)
    run(ci, "--cache", shared, "--cache-write", env={"DEPLOY_MODE": "blue-green-42"})
    (entry,) = entries(shared)
    assert b"blue-green-42" not in entry.read_bytes()
    assert json.loads(entry.read_text())["recipe"]["environ"] == ["DEPLOY_MODE"]

    other = run(laptop, "--changed", "--cache", shared, env={"DEPLOY_MODE": "canary"})
    assert statuses(other)["mode.py"]["status"] == "passed"
    same = run(laptop, "--changed", "--cache", shared, "--force", env={"DEPLOY_MODE": "x"})
    assert statuses(same)["mode.py"]["status"] == "passed"  # --force looks nothing up
    shutil.rmtree(laptop.root / ".orchestrator")
    hit = run(laptop, "--changed", "--cache", shared, env={"DEPLOY_MODE": "blue-green-42"})
    assert statuses(hit)["mode.py"]["skip_reason"].startswith("cached")


def test_args_are_in_the_key(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    scripts = {"args.py": "import sys\nprint(sys.argv[1:])\n"}
    ci, laptop = checkout(tmp_path / "ci", scripts), checkout(tmp_path / "laptop", scripts)
    ci.config("scripts:\n  args.py:\n    args: [one]\n")
    laptop.config("scripts:\n  args.py:\n    args: [two]\n")
    run(ci, "--cache", shared, "--cache-write")
    assert statuses(run(laptop, "--changed", "--cache", shared))["args.py"]["status"] == "passed"


def test_the_cache_comes_from_the_config_or_orch_cache(two: tuple[Project, Project, Path]) -> None:
    ci, laptop, shared = two
    run(ci, "--cache-write", env={"ORCH_CACHE": str(shared)})
    assert len(entries(shared)) == 2
    laptop.config(f"cache: {os.path.relpath(shared, laptop.root)}\n")
    results = statuses(run(laptop, "--changed"))
    assert results["one.py"]["skip_reason"].startswith("cached")
    fresh = run(laptop, "--changed", "--force", "--no-cache")
    assert "restored" not in fresh.stdout


def test_orch_why_says_what_the_cache_would_restore(two: tuple[Project, Project, Path]) -> None:
    ci, laptop, shared = two
    run(ci, "--cache", shared, "--cache-write")
    (laptop.root / "src" / "helper.py").write_text("VALUE = 5\n")
    result = laptop.orch("why", "--json", "--cache", shared)
    assert result.returncode == 0, result.stderr
    answers = {a["script"]: a for a in json.loads(result.stdout)}
    assert answers["two.py"]["cache"].startswith("passed on ")
    assert answers["one.py"]["cache"] is None
    assert entries(shared) and not (laptop.root / "reports").exists()


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("cli", "ftp://host/x", "unknown scheme 'ftp'"),
        ("config", "[1, 2]", "cache: expected a folder or a URL"),
    ],
)
def test_a_bad_cache_is_one_line_and_exit_2(
    project: Project, where: str, value: str, message: str
) -> None:
    project.script("a.py", "print(1)\n")
    args = ["--cache", value] if where == "cli" else []
    if where == "config":
        project.config(f"cache: {value}\n")
    result = project.orch("run", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_entries_read_back_and_refuse_what_does_not_match() -> None:
    entry = Entry(
        key="k" * 64,
        script="scripts/a.py",
        recipe=Recipe(inputs=("scripts/a.py",)),
        trace={"reads": ["scripts/a.py"], "writes": [], "modules": [], "listed": []},
        host="ci",
        commit="abc",
        time="2026-12-05T00:00:00+00:00",
        execution_time=1.5,
        stdout="out",
    )
    data = entry.to_json()
    assert Entry.from_json(data, "k" * 64, "scripts/a.py") == entry
    with pytest.raises(ValueError, match="another key"):
        Entry.from_json(data, "j" * 64, "scripts/a.py")
    with pytest.raises(ValueError, match="another key or script"):
        Entry.from_json(data, "k" * 64, "scripts/b.py")
    escaping = json.loads(data)
    escaping["recipe"]["inputs"] = ["../../etc/passwd"]
    del escaping["digest"]
    from orchestrator.cache import _sha

    forged = json.dumps({**escaping, "digest": _sha(escaping)}).encode()
    with pytest.raises(ValueError, match="outside the project"):
        Entry.from_json(forged, "k" * 64, "scripts/a.py")


# -- a real S3 API ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


class S3:
    """A moto S3 server on 127.0.0.1 in a process group of its own."""

    def __init__(self, tmp: Path) -> None:
        pytest.importorskip("moto.server", reason="moto[server] is in the test extras")
        pytest.importorskip("obstore", reason="obstore (orchestrator[cache]) is in the test extras")
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        with (tmp / "moto.log").open("w") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert wait_for(lambda: _answers(self.endpoint), timeout=30), "moto never answered"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }

    def bucket(self, name: str) -> str:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass
        return f"s3://{name}/orch"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3]:
    server = S3(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_s3_publish_restore_and_a_changed_input(s3: S3, tmp_path: Path) -> None:
    url = s3.bucket("team-cache")
    ci, laptop = checkout(tmp_path / "ci"), checkout(tmp_path / "elsewhere" / "laptop")
    ci.script("bad.py", "raise SystemExit(3)\n")
    laptop.script("bad.py", "raise SystemExit(3)\n")
    published = run(ci, "--cache", url, "--cache-write", env=s3.env)
    assert "2 published" in published.stdout, published.stdout + published.stderr

    (laptop.root / "src" / "helper.py").write_text("VALUE = 9\n")
    results = statuses(run(laptop, "--changed", "--cache", url, env=s3.env))
    assert results["two.py"]["skip_reason"].startswith("cached: passed on ")
    assert results["one.py"]["status"] == "passed"  # its input changed
    assert results["bad.py"]["status"] == "failed"  # a failure is never published


def test_s3_without_cache_write_writes_nothing(s3: S3, tmp_path: Path) -> None:
    url = s3.bucket("read-only")
    ci = checkout(tmp_path / "ci")
    run(ci, "--cache", url, env=s3.env)
    with urllib.request.urlopen(f"{s3.endpoint}/read-only?list-type=2", timeout=10) as page:
        assert b"<Key>" not in page.read()


def test_a_missing_bucket_is_one_warning_and_a_local_run(s3: S3, tmp_path: Path) -> None:
    project = checkout(tmp_path / "repo")
    result = run(project, "--cache", "s3://no-such-bucket/x", "--cache-write", env=s3.env)
    assert result.returncode == 0
    assert {r["status"] for r in statuses(result).values()} == {"passed"}
    lines = [line for line in result.stderr.splitlines() if "unavailable" in line]
    assert len(lines) == 1, result.stderr


def test_the_server_stopped_mid_run_is_a_warning_and_a_local_run(s3: S3, tmp_path: Path) -> None:
    url = s3.bucket("flaky-network")
    project = checkout(tmp_path / "repo")
    # Runs first (sorted): the store goes away after the lookups were fetched and
    # before any pass is published.
    project.script(
        "a_stop.py",
        f"""
        import os, select, signal
        server = os.pidfd_open({s3.proc.pid})
        os.killpg({s3.proc.pid}, signal.SIGKILL)
        assert select.select([server], [], [], 20)[0], "the S3 server outlived SIGKILL"
        """,
    )
    result = run(project, "--cache", url, "--cache-write", env=s3.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {r["status"] for r in statuses(result).values()} == {"passed"}
    lines = [line for line in result.stderr.splitlines() if "unavailable" in line]
    assert len(lines) == 1, result.stderr
    assert "0 published" in result.stdout
    report = Path(statuses(result)["one.py"]["stdout_path"]).parents[1] / "report.md"
    assert "unavailable" in report.read_text()


def test_an_unreachable_server_is_one_warning(tmp_path: Path) -> None:
    pytest.importorskip("obstore")
    project = checkout(tmp_path / "repo")
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",  # nothing listens
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
    }
    result = run(project, "--changed", "--cache", "s3://bucket/p", env=env)
    assert result.returncode == 0
    assert {r["status"] for r in statuses(result).values()} == {"passed"}
    assert len([line for line in result.stderr.splitlines() if "unavailable" in line]) == 1


def test_a_flaky_script_is_never_published(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm here: the flip needs state outside what orch traces")
    counter = shm / f"orch-test-{uuid.uuid4().hex}"
    shared = tmp_path / "shared"
    shared.mkdir()
    flip = (
        "import os\n"
        f"counter = {str(counter)!r} + os.path.basename(__file__)\n"
        "runs = int(open(counter).read()) if os.path.exists(counter) else 0\n"
        "open(counter, 'w').write(str(runs + 1))\n"
        "raise SystemExit(1 - runs % 2)\n"  # fails first, then passes, then fails...
    )
    project = checkout(tmp_path / "repo", {"flip.py": flip, "retried.py": flip})
    project.config("scripts:\n  retried.py: {retries: 1, retry_delay: 0}\n")
    try:
        run(project, "--cache", shared, "--cache-write")  # flip fails, retried passes on retry
        second = statuses(run(project, "--cache", shared, "--cache-write"))
    finally:
        for name in ("flip.py", "retried.py"):
            Path(f"{counter}{name}").unlink(missing_ok=True)
    # Both passed, each with the same inputs that also failed: neither pass is shared.
    assert second["flip.py"]["status"] == "passed" and second["flip.py"]["flaky"]
    assert second["retried.py"]["flaky"]
    assert entries(shared) == []
