"""The glue against a stand-in ``orthanc`` module (the real one exists only inside Orthanc;
tests/integration/test_orthanc_plugin.py runs the glue in a real Orthanc)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dicom_node.phi import remember_identifiers
from plugins.orthanc.dispatcher import EventKind
from plugins.orthanc.glue import OrthancLogHandler, OrthancRestApi, install, make_on_change
from plugins.orthanc.snapshot import OrthancNotFound


class OrthancException(Exception):
    pass


class StandIn:
    """Just the attributes of the orthanc module the glue uses (values as in orthanc-python 4.0)."""

    ChangeType = SimpleNamespace(STABLE_STUDY=9, NEW_CHILD_INSTANCE=2, ORTHANC_STARTED=10, ORTHANC_STOPPED=11)
    ResourceType = SimpleNamespace(PATIENT=0, STUDY=1, SERIES=2, INSTANCE=3)
    OrthancException = OrthancException

    def __init__(self, configuration: dict[str, Any]) -> None:
        self.configuration = configuration
        self.logs: list[tuple[str, str]] = []
        self.callbacks: list[Any] = []

    def GetConfiguration(self) -> str:
        return json.dumps(self.configuration)

    def RestApiGet(self, uri: str) -> bytes:
        if uri == "/system":
            return b'{"Version": "1.10.1"}'
        if uri == "/busy":
            raise OrthancException(2038, "Plugin trying to call the database during its initialization")
        raise OrthancException(17, "Unknown resource")

    def RegisterOnChangeCallback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def LogInfo(self, m: str) -> None:
        self.logs.append(("info", m))

    def LogWarning(self, m: str) -> None:
        self.logs.append(("warning", m))

    def LogError(self, m: str) -> None:
        self.logs.append(("error", m))


def test_rest_api_maps_unknown_resource_to_not_found() -> None:
    api = OrthancRestApi(StandIn({}))
    assert api.get_json("/system") == {"Version": "1.10.1"}
    with pytest.raises(OrthancNotFound):
        api.get_json("/studies/x")
    with pytest.raises(OrthancException):
        api.get_json("/busy")


def test_on_change_only_enqueues_the_events_that_matter() -> None:
    seen: list[Any] = []
    stopped: list[bool] = []
    fake_dispatcher = SimpleNamespace(notify=seen.append, stop=lambda: stopped.append(True))
    on_change = make_on_change(StandIn({}), fake_dispatcher)  # type: ignore[arg-type]
    on_change(9, 1, "study-1")
    on_change(2, 2, "series-1")
    on_change(2, 1, "study-1")
    on_change(2, 0, "patient-1")  # patient level: ignored
    on_change(3, 3, "instance-1")  # NEW_INSTANCE: ignored (series-level child event counts it)
    on_change(10, 4, "")
    on_change(11, 4, "")
    assert [(e.kind, e.resource_id) for e in seen] == [
        (EventKind.STABLE_STUDY, "study-1"),
        (EventKind.INSTANCE_IN_SERIES, "series-1"),
        (EventKind.INSTANCE_IN_STUDY, "study-1"),
        (EventKind.STARTED, ""),
    ]
    assert stopped == [True]


def test_log_handler_levels_context_and_phi_mask() -> None:
    orthanc = StandIn({})
    logger = logging.getLogger("tests.glue.handler")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = OrthancLogHandler(orthanc)
    logger.addHandler(handler)
    try:
        remember_identifiers(["SMITH^ALICE"])
        logger.warning("sent %s", "x", extra={"orthanc_study_id": "abc", "task_id": "t"})
        logger.error("oops SMITH^ALICE")
        logger.info("fine")
    finally:
        logger.removeHandler(handler)
    assert orthanc.logs[0] == (
        "warning",
        "[ctnode] tests.glue.handler: sent x (orthanc_study_id=abc task_id=t)",
    )
    assert (
        orthanc.logs[1][0] == "error" and "SMITH" not in orthanc.logs[1][1] and "[PHI]" in orthanc.logs[1][1]
    )
    assert orthanc.logs[2][0] == "info"


def test_install_wires_config_spool_and_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node_yaml = tmp_path / "node.yaml"
    node_yaml.write_text("uid_root: '1.2.826.0.1.999999.'\nmanufacturer: test-node\n")
    orthanc = StandIn(
        {"HttpPort": 8123, "StorageDirectory": str(tmp_path / "db"), "CtNode": {"Config": str(node_yaml)}}
    )
    root_handlers = list(logging.getLogger().handlers)
    dispatcher = install(orthanc, {})
    try:
        assert len(orthanc.callbacks) == 1
        assert dispatcher.config.orthanc_url == "http://127.0.0.1:8123"
        assert dispatcher.spool.path == tmp_path / "db" / "ctnode-plugin-spool.sqlite"
        assert dispatcher.classifier.uid_root == "1.2.826.0.1.999999."
        assert dispatcher.classifier.manufacturer == "test-node"
        assert any("plugin ready" in m for _, m in orthanc.logs)
    finally:
        dispatcher.stop()
        dispatcher.spool.close()
        logging.getLogger().handlers[:] = root_handlers
