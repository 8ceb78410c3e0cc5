"""installed(): the distributions, and versions, behind the package locations a trace names."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestrator.distributions import installed


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An empty ``site-packages`` folder."""
    folder = tmp_path / "lib" / "python3" / "site-packages"
    folder.mkdir(parents=True)
    return folder


def put(site: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (``{relative path: text or bytes}``) under ``site``."""
    for rel, body in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body)


def settle(folder: Path) -> None:
    """Date ``folder`` an hour back: a listing of a folder that old is kept."""
    past = time.time_ns() - 3600 * 10**9
    os.utime(folder, ns=(past, past))


def test_a_module_is_matched_by_its_normalised_name(site: Path) -> None:
    put(
        site,
        {
            "six.py": "",
            "six-1.16.0.dist-info/METADATA": "",
            "typing_extensions.py": "",
            "Typing.Extensions-4.9.0.dist-info/METADATA": "",
        },
    )
    assert installed([str(site / "six.py"), str(site / "typing_extensions.py")]) == {
        "six": "1.16.0",
        "Typing.Extensions": "4.9.0",
    }


def test_a_name_that_differs_is_found_in_top_level_txt_then_in_record(site: Path) -> None:
    put(
        site,
        {
            "yaml/__init__.py": "",
            "PyYAML-6.0.1.dist-info/top_level.txt": "_yaml\nyaml\n",
            "_cffi_backend.cpython-312-x86_64-linux-gnu.so": "",
            "cffi-1.17.1.dist-info/RECORD": (
                "cffi/__init__.py,sha256=x,1\n"
                "_cffi_backend.cpython-312-x86_64-linux-gnu.so,sha256=y,2\n"
                "cffi-1.17.1.dist-info/RECORD,,\n"
            ),
        },
    )
    locations = [str(site / "yaml"), str(site / "_cffi_backend.cpython-312-x86_64-linux-gnu.so")]
    assert installed(locations) == {"PyYAML": "6.0.1", "cffi": "1.17.1"}


def test_an_egg_info_names_its_version_too(site: Path) -> None:
    put(
        site,
        {
            "attr/__init__.py": "",
            "attrs-23.1.0-py3.11.egg-info/top_level.txt": "attr\n",
            "devpkg/__init__.py": "",
            "devpkg.egg-info/PKG-INFO": "Metadata-Version: 2.1\nName: devpkg\nVersion: 0.3\n",
        },
    )
    assert installed([str(site / "attr"), str(site / "devpkg")]) == {
        "attrs": "23.1.0",
        "devpkg": "0.3",
    }


def test_what_no_distribution_claims_is_left_out_and_bad_metadata_never_raises(
    site: Path, tmp_path: Path
) -> None:
    put(
        site,
        {
            "orphan.py": "",
            "broken-1.0.dist-info/top_level.txt": b"\xff\xfe not utf-8",
            "broken-1.0.dist-info/RECORD/not-a-file": "",
            "quoted-2.0.dist-info/RECORD": '"unterminated,\n',
        },
    )
    gone = tmp_path / "nowhere" / "site-packages" / "pkg"
    assert installed([str(site / "orphan.py"), str(gone)]) == {}


def test_a_folder_is_listed_again_when_it_changes_and_only_then(site: Path) -> None:
    put(site, {"mypkg/__init__.py": "", "mypkg-1.2.0.dist-info/METADATA": ""})
    where = [str(site / "mypkg")]
    settle(site)
    assert installed(where) == {"mypkg": "1.2.0"}
    (site / "mypkg-1.2.0.dist-info").rename(site / "mypkg-1.3.0.dist-info")  # an upgrade
    assert installed(where) == {"mypkg": "1.3.0"}
    # The listing is kept by the folder's mtime: the same mtime, the same answer.
    settle(site)
    assert installed(where) == {"mypkg": "1.3.0"}
    stamp = site.stat().st_mtime_ns
    (site / "mypkg-1.3.0.dist-info").rename(site / "mypkg-1.4.0.dist-info")
    os.utime(site, ns=(stamp, stamp))
    assert installed(where) == {"mypkg": "1.3.0"}


def test_a_folder_changed_just_now_is_not_trusted_to_change_its_mtime(site: Path) -> None:
    """File times are coarse: two renames within one tick can leave the same mtime."""
    put(site, {"mypkg/__init__.py": "", "mypkg-1.2.0.dist-info/METADATA": ""})
    stamp = site.stat().st_mtime_ns
    assert installed([str(site / "mypkg")]) == {"mypkg": "1.2.0"}
    (site / "mypkg-1.2.0.dist-info").rename(site / "mypkg-1.3.0.dist-info")
    os.utime(site, ns=(stamp, stamp))  # as if in the same tick
    assert installed([str(site / "mypkg")]) == {"mypkg": "1.3.0"}
