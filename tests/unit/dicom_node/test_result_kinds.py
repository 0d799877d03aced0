"""The one table of result kinds, and the destination settings that select from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dicom_node.constants import LABEL_MAP_SEGMENTATION_STORAGE, SEGMENTATION_STORAGE
from dicom_node.contracts import ResultFile, ResultRole
from dicom_node.delivery.destination import open_destination
from dicom_node.delivery.dicom_peer import DicomPeer
from dicom_node.delivery.dicomweb import DicomwebServer
from dicom_node.errors import ConfigError
from dicom_node.result_kinds import (
    DEFAULT_OBJECTS,
    ResultKind,
    in_build_order,
    known_roles,
    register_kind,
    result_kind,
    title_for_sop_class,
)
from dicom_node.results.bundle import builder_for
from dicom_node.settings import DicomDestinationSettings, DicomwebDestinationSettings, Settings


def test_every_row_names_an_importable_builder_and_a_known_fallback() -> None:
    roles = known_roles()
    assert {"seg", "seg-labelmap", "sr", "sr-planar", "gsps", "sc"} <= set(roles)
    for role in roles:
        kind = result_kind(role)
        assert callable(builder_for(kind)), kind.builder
        assert kind.fallback is None or kind.fallback in roles
        assert 900 < kind.series_number < 1000
    assert set(DEFAULT_OBJECTS) <= set(roles)


def test_build_order_is_the_table_order_so_the_sr_follows_the_seg() -> None:
    order = [k.role for k in in_build_order(["gsps", "sr", "seg-labelmap", "seg"])]
    assert order == ["seg", "seg-labelmap", "sr", "gsps"]
    with pytest.raises(KeyError, match="unknown result object 'nope'"):
        in_build_order(["seg", "nope"])


def test_a_role_is_registered_once() -> None:
    seg = result_kind("seg")
    assert register_kind(seg) is seg  # the same row again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_kind(ResultKind(**{**seg.__dict__, "series_number": 999}))


def test_titles_by_sop_class() -> None:
    assert title_for_sop_class(SEGMENTATION_STORAGE) == "SEG (binary)"
    assert title_for_sop_class(LABEL_MAP_SEGMENTATION_STORAGE) == "SEG (label map)"
    assert title_for_sop_class("1.2.3.4") == "1.2.3.4"


def test_a_stored_labelmap_seg_of_an_older_bundle_reads_as_its_own_role() -> None:
    """Bundles in the job store from before label-map SEG had its own role called it "seg"."""
    old = {
        "role": "seg",
        "path": "/r/seg-labelmap.dcm",
        "sop_class_uid": LABEL_MAP_SEGMENTATION_STORAGE,
        "sop_instance_uid": "1.2.3",
        "series_instance_uid": "1.2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    }
    assert ResultFile.model_validate(old).role == ResultRole.SEG_LABELMAP
    binary = {**old, "sop_class_uid": SEGMENTATION_STORAGE}
    assert ResultFile.model_validate(binary).role == ResultRole.SEG
    with pytest.raises(ValidationError, match="unknown result object"):
        ResultFile.model_validate({**old, "role": "pdf-report"})


def test_destination_objects_are_result_kinds_with_the_seg_type_shorthand() -> None:
    assert DicomDestinationSettings().roles == ("seg", "sr", "gsps")
    labelmap = DicomDestinationSettings(objects=["seg", "sr-planar", "sc"], seg_type="labelmap")
    assert labelmap.roles == ("seg-labelmap", "sr-planar", "sc")
    with pytest.raises(ValidationError, match="unknown result object 'kos'"):
        DicomDestinationSettings(objects=["seg", "kos"])


def test_destination_settings_are_a_union_on_kind() -> None:
    settings = Settings(
        destinations={
            "pacs": {"ae_title": "PACS", "port": 11113},  # no kind: a DICOM peer
            "web": {"kind": "dicomweb", "url": "http://127.0.0.1:8042/dicom-web", "objects": ["sr"]},
        }
    )
    assert isinstance(settings.destinations["pacs"], DicomDestinationSettings)
    assert isinstance(settings.destinations["web"], DicomwebDestinationSettings)
    with pytest.raises(ValidationError, match="'ftp'"):
        Settings(destinations={"x": {"kind": "ftp"}})
    with pytest.raises(ValidationError, match="url"):
        Settings(destinations={"x": {"kind": "dicomweb"}})
    with pytest.raises(ValidationError, match="ae_title"):
        Settings(destinations={"x": {"kind": "dicomweb", "url": "http://h/", "ae_title": "PACS"}})


def test_each_kind_opens_its_own_implementation() -> None:
    peer = open_destination("pacs", DicomDestinationSettings(), calling_ae_title="CTAINODE")
    web = open_destination(
        "web", DicomwebDestinationSettings(kind="dicomweb", url="http://h/dicom-web"), calling_ae_title="N"
    )
    assert isinstance(peer, DicomPeer) and peer.name == "pacs"
    assert isinstance(web, DicomwebServer) and web.name == "web"
    with pytest.raises(ConfigError, match="not a DICOM peer"):
        DicomPeer("x", DicomwebDestinationSettings(kind="dicomweb", url="http://h/"), calling_ae_title="N")
