from __future__ import annotations

import sys
from pathlib import Path

import pytest

from plugins.orthanc.venv import (
    VenvNotFound,
    activate_from,
    activate_venv,
    configured_venv,
    place_after_stdlib,
    site_packages_of,
)

DEBIAN_PATH = [
    "/usr/lib/python311.zip",
    "/usr/lib/python3.11",
    "/usr/lib/python3.11/lib-dynload",
    "/usr/local/lib/python3.11/dist-packages",
    "/usr/lib/python3/dist-packages",
]


def test_venv_goes_after_stdlib_before_debian_dist_packages() -> None:
    out = place_after_stdlib(DEBIAN_PATH, ["/opt/venv/lib/python3.11/site-packages", "/opt/repo"], "/usr")
    assert out == [*DEBIAN_PATH[:3], "/opt/venv/lib/python3.11/site-packages", "/opt/repo", *DEBIAN_PATH[3:]]


def test_existing_entries_are_moved_not_duplicated() -> None:
    path = ["/script/dir", *DEBIAN_PATH, "/opt/repo"]
    out = place_after_stdlib(path, ["/opt/venv/site", "/opt/repo"], "/usr")
    assert out.count("/opt/repo") == 1
    assert (
        out.index("/usr/lib/python3.11/lib-dynload")
        < out.index("/opt/venv/site")
        < out.index("/usr/lib/python3/dist-packages")
    )


def test_env_wins_over_orthanc_configuration() -> None:
    conf = {"CtNode": {"Venv": "/from/config"}}
    assert configured_venv(conf, {"CTNODE_VENV": "/from/env"}) == Path("/from/env")
    assert configured_venv(conf, {}) == Path("/from/config")
    assert configured_venv({}, {}) is None


def test_missing_venv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VenvNotFound, match=r"Python 3\.11"):
        site_packages_of(tmp_path, (3, 11))
    with pytest.raises(VenvNotFound, match="CTNODE_VENV"):
        activate_from({}, {})


def test_activate_honours_pth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    major, minor = sys.version_info[:2]
    site_dir = tmp_path / "venv" / "lib" / f"python{major}.{minor}" / "site-packages"
    site_dir.mkdir(parents=True)
    extra = tmp_path / "editable-src"
    extra.mkdir()
    (site_dir / "__editable__.ctnode.pth").write_text(f"{extra}\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # restored after the test
    target = activate_venv(tmp_path / "venv")
    assert target == site_dir
    assert str(site_dir) in sys.path and str(extra) in sys.path
    assert sys.path.index(str(site_dir)) < sys.path.index(str(extra))
