"""Destination kind "folder" (docs/extending.md's worked example of a destination kind)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dicom_node.delivery import DeliveryIncomplete, DeliveryRejected, deliver, open_destination
from dicom_node.delivery.folder import FolderDestination
from dicom_node.settings import FolderDestinationSettings, Settings
from tests.unit.dicom_node.delivery.objects import make_result_bundle


def _dest(root: Path, **kw: object) -> FolderDestinationSettings:
    return FolderDestinationSettings(kind="folder", path=root, **kw)  # type: ignore[arg-type]


def test_results_land_as_dicom_files_in_the_study_and_series_folders(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "results", kinds=("seg-binary", "seg-labelmap", "sr", "gsps"))
    root = tmp_path / "export"
    root.mkdir()
    report = deliver(bundle, "research-share", _dest(root), calling_ae_title="CTAINODE")
    sent = [f for f in bundle.files if f.role != "seg-labelmap"]  # default objects: seg, sr, gsps
    assert set(report.delivered_sop_instance_uids) == {f.sop_instance_uid for f in sent}
    assert report.confirmed and "read back identical" in report.confirmation_detail
    for f in sent:
        written = root / bundle.study_instance_uid / f.series_instance_uid / f"{f.sop_instance_uid}.dcm"
        assert pydicom.dcmread(written).SOPInstanceUID == f.sop_instance_uid
    assert not list(root.rglob(".*.tmp"))
    again = deliver(bundle, "research-share", _dest(root), calling_ae_title="CTAINODE", attempt=2)
    assert again.confirmed  # same names, same bytes: a re-delivery changes nothing


def test_a_missing_folder_is_transient_and_a_file_in_the_way_is_permanent(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "results", kinds=("sr",))
    with pytest.raises(DeliveryIncomplete, match="not there"):
        deliver(bundle, "share", _dest(tmp_path / "unmounted"), calling_ae_title="N")
    root = tmp_path / "export"
    root.mkdir()
    (root / bundle.study_instance_uid).write_text("a file where the study folder should be")
    with pytest.raises(DeliveryRejected):
        deliver(bundle, "share", _dest(root), calling_ae_title="N")


def test_a_uid_that_is_not_a_uid_never_becomes_a_path(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "results", kinds=("sr",))
    hostile = bundle.model_copy(update={"study_instance_uid": "../../etc"})
    root = tmp_path / "export"
    root.mkdir()
    with pytest.raises(DeliveryRejected, match="not a valid UID"):
        deliver(hostile, "share", _dest(root), calling_ae_title="N")
    assert list(tmp_path.rglob("etc")) == []


def test_health_and_settings(tmp_path: Path) -> None:
    healthy = open_destination("share", _dest(tmp_path), calling_ae_title="N").health()
    assert healthy.ok and "writable" in healthy.detail
    gone = open_destination("share", _dest(tmp_path / "nope"), calling_ae_title="N").health()
    assert not gone.ok
    settings = Settings(destinations={"share": {"kind": "folder", "path": str(tmp_path), "objects": ["sr"]}})
    assert isinstance(settings.destinations["share"], FolderDestinationSettings)
    assert isinstance(
        open_destination("share", settings.destinations["share"], calling_ae_title="N"), FolderDestination
    )
    with pytest.raises(ValueError, match="absolute path"):
        FolderDestinationSettings(kind="folder", path=Path("relative/out"))
