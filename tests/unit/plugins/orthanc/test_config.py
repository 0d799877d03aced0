from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.errors import ConfigError
from plugins.orthanc.config import SPOOL_FILE_NAME, configuration_warnings, plugin_config_from


def test_defaults_follow_orthanc_configuration(tmp_path: Path) -> None:
    conf = {"HttpPort": 8999, "StorageDirectory": "db", "StableAge": 5}
    cfg = plugin_config_from(conf, {}, cwd=tmp_path)
    assert cfg.orthanc_url == "http://127.0.0.1:8999"
    assert cfg.spool_path == tmp_path / "db" / SPOOL_FILE_NAME
    assert cfg.stable_age_s == 5.0 and cfg.expected_counts and cfg.node_config is None


def test_section_and_env(tmp_path: Path) -> None:
    conf = {
        "SslEnabled": True,
        "CtNode": {"Config": "/etc/node.yaml", "SpoolPath": "/var/spool/x.sqlite", "ExpectedCounts": False},
    }
    cfg = plugin_config_from(conf, {}, cwd=tmp_path)
    assert cfg.orthanc_url == "https://127.0.0.1:8042"
    assert cfg.node_config == Path("/etc/node.yaml") and cfg.spool_path == Path("/var/spool/x.sqlite")
    assert not cfg.expected_counts and cfg.stable_age_s == 60.0
    assert plugin_config_from(conf, {"CTNODE_CONFIG": "/env/node.yaml"}).node_config == Path("/env/node.yaml")
    url = plugin_config_from({"CtNode": {"OrthancUrl": "http://orthanc.lan:8042/"}}, {}).orthanc_url
    assert url == "http://orthanc.lan:8042"


@pytest.mark.parametrize(
    "section",
    [
        {"ExpectedCounts": "yes"},
        {"RetryBaseSeconds": "soon"},
        {"RetryBaseSeconds": -1},
        {"RetryBaseSeconds": 10, "RetryMaxSeconds": 5},
        "not-an-object",
    ],
)
def test_bad_values_are_config_errors(section: object) -> None:
    with pytest.raises(ConfigError):
        plugin_config_from({"CtNode": section}, {})


def test_configuration_warnings() -> None:
    safe = {
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"ctnode-worker": "s3cret"},
        "DicomAlwaysAllowStore": False,
    }
    assert configuration_warnings(safe) == []
    empty = configuration_warnings({**safe, "RegisteredUsers": {"ctnode-worker": ""}})
    assert len(empty) == 1 and "ctnode-worker" in empty[0] and "empty password" in empty[0]
    assert any("users.json" in w for w in configuration_warnings({**safe, "RegisteredUsers": {}}))
    open_door = configuration_warnings({**safe, "RemoteAccessAllowed": True, "AuthenticationEnabled": False})
    assert any("anyone on the network" in w for w in open_door)
    # Orthanc's own default for DicomAlwaysAllowStore is true
    assert any(
        "DicomAlwaysAllowStore" in w
        for w in configuration_warnings({k: v for k, v in safe.items() if k != "DicomAlwaysAllowStore"})
    )
    assert all("s3cret" not in w for w in configuration_warnings({**safe, "RemoteAccessAllowed": True}))
