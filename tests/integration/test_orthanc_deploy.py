"""deploy/orthanc: the shipped configuration parses, names files that exist, and really runs.

The running test uses the deploy folder as Orthanc's configuration *directory* (orthanc.json +
users.json from users.example.json, passwords from the environment), rewriting only what must
differ on a test machine: install prefix, storage, ports, the scanner's address, and the node's
settings file.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from plugins.orthanc.config import configuration_warnings
from tests.support.ct_series import make_ct_series
from tests.support.dcmtk import require
from tests.support.orthanc import orthanc_binary
from tests.support.processes import free_port, managed, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "orthanc"
INSTALL_PREFIX = "/opt/ct-ai-node"  # where deploy/orthanc/README.md installs the repository


def load(name: str) -> dict[str, Any]:
    data = json.loads((DEPLOY / name).read_text())  # strict JSON: no comments, no trailing commas
    assert isinstance(data, dict)
    return data


def test_deploy_files_parse_and_name_existing_files() -> None:
    config = load("orthanc.json")
    users = load("users.example.json")
    for plugin in config["Plugins"]:
        assert Path(plugin).is_file(), plugin  # Debian orthanc-dicomweb / orthanc-python
    script = Path(config["PythonScript"].replace(INSTALL_PREFIX, str(REPO)))
    assert script.is_file() and script == REPO / "plugins" / "orthanc" / "ctnode_orthanc.py"
    assert config["CtNode"]["Venv"] == f"{INSTALL_PREFIX}/.venv"
    # Security posture the brief asks for.
    assert config["RemoteAccessAllowed"] is False and config["AuthenticationEnabled"] is True
    assert config["DicomCheckCalledAet"] is True and config["DicomCheckModalityHost"] is True
    assert config["DicomAlwaysAllowEcho"] is True and config["DicomAlwaysAllowStore"] is False
    assert config["DicomModalities"] and config["DicomWeb"]["Enable"] is True
    # No secrets inline: users live in users.json and their passwords in the environment.
    assert "RegisteredUsers" not in config
    assert users["RegisteredUsers"] and all(
        re.fullmatch(r"\$\{[A-Z_]+\}", v) for v in users["RegisteredUsers"].values()
    )
    effective = {**config, "RegisteredUsers": {u: "set" for u in users["RegisteredUsers"]}}
    assert configuration_warnings(effective) == []
    drop_in = (DEPLOY / "systemd" / "ct-ai-node.conf").read_text()
    assert "/etc/ct-ai-node/orthanc/" in drop_in and "EnvironmentFile=/etc/ct-ai-node/orthanc.env" in drop_in
    readme = (DEPLOY / "README.md").read_text()
    for name in ("orthanc.json", "users.example.json", "orthanc.env.example", "systemd/ct-ai-node.conf"):
        assert name in readme, name
    for heading in ("## Debian", "## Containers", "## What viewers show"):
        assert heading in readme, heading


def storescu(calling_ae: str, called_ae: str, port: int, files: list[Path]) -> str:
    out = subprocess.run(
        [require("storescu"), "-R", "-aet", calling_ae, "-aec", called_ae, "127.0.0.1", str(port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout + out.stderr


@pytest.mark.integration
def test_deploy_configuration_runs(tmp_path: Path) -> None:
    http_port, dicom_port = free_port(), free_port()
    config = load("orthanc.json")
    storage = tmp_path / "storage"
    config.update(
        {
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "PythonScript": config["PythonScript"].replace(INSTALL_PREFIX, str(REPO)),
        }
    )
    node_yaml = tmp_path / "node.yaml"
    # A broker nobody listens on: submissions must be spooled, not lost (see test_orthanc_plugin).
    node_yaml.write_text(
        f"queue:\n  broker_url: redis://127.0.0.1:{free_port()}/0\nstorage:\n  root: {tmp_path}\n"
    )
    config["CtNode"].update(
        {"Venv": str(REPO / ".venv"), "Config": str(node_yaml), "OrthancUrl": f"http://127.0.0.1:{http_port}"}
    )
    config["DicomModalities"]["ct-scanner-1"]["Host"] = "127.0.0.1"
    conf_dir = tmp_path / "etc-ct-ai-node-orthanc"
    conf_dir.mkdir()
    (conf_dir / "orthanc.json").write_text(json.dumps(config, indent=2))
    (conf_dir / "users.json").write_text((DEPLOY / "users.example.json").read_text())
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin",
        "CTNODE_ORTHANC_PASSWORD": "worker-test-pw",
        "CTNODE_ORTHANC_VIEWER_PASSWORD": "viewer-test-pw",
    }
    with managed(
        [orthanc_binary(), "--verbose", str(conf_dir)],
        log_path=tmp_path / "orthanc.log",
        ready=lambda: port_open(http_port),
        env=env,
    ) as proc:
        wait_until(lambda: "ct-ai-node plugin ready" in proc.log_text(), timeout_s=30, what="plugin")
        import httpx

        base = f"http://127.0.0.1:{http_port}"
        assert httpx.get(f"{base}/system").status_code == 401
        assert httpx.get(f"{base}/system", auth=("ctnode-worker", "worker-test-pw")).status_code == 200
        assert httpx.get(f"{base}/system", auth=("ctnode-viewer", "wrong")).status_code == 401

        aet = config["DicomAet"]
        echo = subprocess.run(
            [require("echoscu"), "-aet", "ANYONE", "-aec", aet, "127.0.0.1", str(dicom_port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert echo.returncode == 0, echo.stdout + echo.stderr  # DicomAlwaysAllowEcho
        files = make_ct_series(tmp_path / "ct", n_slices=3, rows=32, cols=32, images_in_acquisition=True)
        refused = storescu("INTRUDER", aet, dicom_port, files)
        # Unknown calling AE: the association is accepted (echo is allowed to all) but the store
        # is refused (Orthanc aborts it): DicomAlwaysAllowStore false.
        assert "Store Failed" in refused, refused
        assert httpx.get(f"{base}/instances", auth=("ctnode-worker", "worker-test-pw")).json() == []
        wrong_called = storescu("CT_SCANNER_1", "NOT_ORTHANC", dicom_port, files)
        assert "Called AE Title Not Recognized" in wrong_called, wrong_called  # DicomCheckCalledAet
        accepted = storescu("CT_SCANNER_1", aet, dicom_port, files)
        assert "E:" not in accepted, accepted
        stored = httpx.get(f"{base}/instances", auth=("ctnode-worker", "worker-test-pw")).json()
        assert len(stored) == 3
        # The plugin saw the study complete (StableAge 10 s: announced series sizes cannot say a
        # study is complete, so ExpectedCounts is off) and spooled its submission while the
        # broker is unreachable.
        wait_until(lambda: "study queued for routing (orthanc-stable-study" in proc.log_text(), timeout_s=60)
        wait_until(lambda: "routing submission not sent" in proc.log_text(), timeout_s=60)
        log = proc.log_text()
        assert "configuration:" not in log  # no empty password, no open door
        assert "worker-test-pw" not in log and str(dcmread(files[0]).PatientName) not in log
    assert (storage / "ctnode-plugin-spool.sqlite").is_file()
