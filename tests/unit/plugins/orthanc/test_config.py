from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.errors import ConfigError
from plugins.orthanc.config import SPOOL_FILE_NAME, plugin_config_from


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
