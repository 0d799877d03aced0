"""The plugin's own settings, read from Orthanc's configuration (``"CtNode"`` section) and env.

Everything the node as a whole needs (broker URL, UID root, Manufacturer) comes from the node's
settings file (``dicom_node.settings``), named by ``CtNode.Config`` or ``$CTNODE_CONFIG``; this
section holds only what is specific to running inside Orthanc::

    "CtNode": {
      "Venv": "/opt/ct-ai-node/.venv",          // or $CTNODE_VENV
      "Config": "/etc/ct-ai-node/node.yaml",    // or $CTNODE_CONFIG; defaults when neither
      "OrthancUrl": "http://127.0.0.1:8042",    // how workers reach this Orthanc's REST API
      "SpoolPath": "/var/lib/orthanc/db-v6/ctnode-spool.sqlite",
      "ExpectedCounts": true,                   // submit before StableAge when counts say complete
      "RetryBaseSeconds": 1.0,                  // broker down: first retry delay, doubled each time
      "RetryMaxSeconds": 60.0                   //   ... up to this
    }
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicom_node.errors import ConfigError

SPOOL_FILE_NAME = "ctnode-plugin-spool.sqlite"
ORTHANC_DEFAULT_HTTP_PORT = 8042
ORTHANC_DEFAULT_STABLE_AGE_S = 60.0  # Orthanc's own default for "StableAge"


@dataclass(frozen=True)
class PluginConfig:
    node_config: Path | None
    orthanc_url: str
    spool_path: Path
    stable_age_s: float
    expected_counts: bool = True
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    # A change-log watermark is only committed this long after it was read, so that every
    # OnChange callback for changes up to it has been delivered (they follow within milliseconds).
    watermark_grace_s: float = 5.0
    watermark_interval_s: float = 10.0


def _section(configuration: Mapping[str, Any]) -> Mapping[str, Any]:
    section = configuration.get("CtNode") or {}
    if not isinstance(section, Mapping):
        raise ConfigError('"CtNode" must be a JSON object', location="orthanc configuration")
    return section


def _number(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"CtNode.{key} must be a number", location="orthanc configuration") from exc
    if number <= 0:
        raise ConfigError(f"CtNode.{key} must be positive", location="orthanc configuration")
    return number


def default_orthanc_url(configuration: Mapping[str, Any]) -> str:
    """Loopback URL of this Orthanc's REST API from ``HttpPort`` / ``SslEnabled``."""
    port = int(configuration.get("HttpPort", ORTHANC_DEFAULT_HTTP_PORT))
    scheme = "https" if configuration.get("SslEnabled") else "http"
    return f"{scheme}://127.0.0.1:{port}"


def plugin_config_from(
    configuration: Mapping[str, Any], environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
) -> PluginConfig:
    """Build :class:`PluginConfig` from Orthanc's parsed configuration; raise ConfigError."""
    env = os.environ if environ is None else environ
    section = _section(configuration)
    node_config_text = env.get("CTNODE_CONFIG", "").strip() or str(section.get("Config") or "").strip()
    storage = Path(str(configuration.get("StorageDirectory", "OrthancStorage")))
    if not storage.is_absolute():
        storage = (cwd or Path.cwd()) / storage
    spool_text = str(section.get("SpoolPath") or "").strip()
    expected = section.get("ExpectedCounts", True)
    if not isinstance(expected, bool):
        raise ConfigError("CtNode.ExpectedCounts must be true or false", location="orthanc configuration")
    retry_base = _number(section, "RetryBaseSeconds", 1.0)
    retry_max = _number(section, "RetryMaxSeconds", 60.0)
    if retry_max < retry_base:
        raise ConfigError(
            "CtNode.RetryMaxSeconds must be >= RetryBaseSeconds", location="orthanc configuration"
        )
    return PluginConfig(
        node_config=Path(node_config_text) if node_config_text else None,
        orthanc_url=str(section.get("OrthancUrl") or default_orthanc_url(configuration)).rstrip("/"),
        spool_path=Path(spool_text) if spool_text else storage / SPOOL_FILE_NAME,
        stable_age_s=float(configuration.get("StableAge", ORTHANC_DEFAULT_STABLE_AGE_S)),
        expected_counts=expected,
        retry_base_s=retry_base,
        retry_max_s=retry_max,
    )


def configuration_warnings(configuration: Mapping[str, Any]) -> list[str]:
    """Security problems in Orthanc's effective configuration, one sentence each (no secrets).

    Orthanc substitutes ``${VAR}`` in its JSON files and an unset variable becomes an empty
    string, so ``users.json`` with an unset password variable silently makes a password-less user.
    """
    warnings = []
    users = configuration.get("RegisteredUsers") or {}
    if isinstance(users, Mapping):
        for name, password in users.items():
            if not str(password).strip():
                warnings.append(
                    f"Orthanc user {name!r} has an empty password (unset environment variable in users.json?)"
                )
    if configuration.get("RemoteAccessAllowed") and not configuration.get("AuthenticationEnabled"):
        warnings.append(
            "RemoteAccessAllowed is true while AuthenticationEnabled is false: anyone on the network"
        )
    if configuration.get("AuthenticationEnabled") and not users:
        warnings.append(
            "AuthenticationEnabled is true but RegisteredUsers is empty: is users.json installed?"
        )
    if configuration.get("DicomAlwaysAllowStore", True):
        warnings.append(
            "DicomAlwaysAllowStore is true: any calling AE may store (list senders in DicomModalities)"
        )
    return warnings
