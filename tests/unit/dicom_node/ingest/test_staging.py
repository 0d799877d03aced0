"""Staging: atomic durable writes, first copy wins, no path traversal, disk watermark."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.constants import CT_IMAGE_STORAGE
from dicom_node.errors import CannotUnderstand, OutOfResources
from dicom_node.ingest.receive import Origin, file_meta_bytes
from dicom_node.ingest.staging import INCOMING_DIR, Staging, read_staged_instance
from tests.unit.dicom_node.ingest.conftest import dataset_bytes

STUDY, SERIES, SOP = "1.2.3.4", "1.2.3.4.5", "1.2.3.4.5.6"
UIDS = {"study_instance_uid": STUDY, "series_instance_uid": SERIES, "sop_instance_uid": SOP}


def test_store_bytes_writes_the_final_name_only_complete(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging", min_free_bytes=0)
    path, duplicate = staging.store_bytes([b"abc", b"def"], **UIDS)
    assert not duplicate
    assert path == tmp_path / "staging" / STUDY / SERIES / f"{SOP}.dcm"
    assert path.read_bytes() == b"abcdef"
    assert list((tmp_path / "staging" / INCOMING_DIR).iterdir()) == []  # temp file gone


def test_second_copy_is_a_duplicate_and_never_rewritten(tmp_path: Path) -> None:
    staging = Staging(tmp_path, min_free_bytes=0)
    path, _ = staging.store_bytes([b"first"], **UIDS)
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    again, duplicate = staging.store_bytes([b"second, different"], **UIDS)
    assert duplicate and again == path
    assert path.read_bytes() == b"first"
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)


def test_concurrent_stores_of_one_instance_make_one_file(tmp_path: Path) -> None:
    staging = Staging(tmp_path, min_free_bytes=0)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def store(i: int) -> None:
        barrier.wait()
        results.append(staging.store_bytes([f"copy {i}".encode()], **UIDS)[1])

    threads = [threading.Thread(target=store, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] + [True] * 7
    assert staging.instance_path(**UIDS).read_bytes().startswith(b"copy ")


@pytest.mark.parametrize(
    "uids",
    [
        {**UIDS, "study_instance_uid": "../../etc"},
        {**UIDS, "series_instance_uid": "/tmp"},
        {**UIDS, "sop_instance_uid": "1.2/../../x"},
        {**UIDS, "sop_instance_uid": ""},
        {**UIDS, "study_instance_uid": ".."},
    ],
)
def test_uids_that_would_escape_the_root_are_refused(tmp_path: Path, uids: dict[str, str]) -> None:
    staging = Staging(tmp_path / "staging", min_free_bytes=0)
    with pytest.raises(CannotUnderstand):
        staging.store_bytes([b"x"], **uids)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_below_watermark_is_out_of_resources(tmp_path: Path) -> None:
    staging = Staging(tmp_path, min_free_bytes=2**62)
    with pytest.raises(OutOfResources) as info:
        staging.store_bytes([b"x"], **UIDS)
    assert info.value.status == 0xA700
    assert not staging.instance_path(**UIDS).exists()


def test_watermark_counts_the_incoming_size(tmp_path: Path) -> None:
    free = Staging(tmp_path, min_free_bytes=0).free_bytes()
    staging = Staging(tmp_path, min_free_bytes=free - 10 * 2**20)  # ~10 MiB headroom
    staging.check_free_space(1024)
    with pytest.raises(OutOfResources):
        staging.check_free_space(100 * 2**20)


def test_leftover_temp_files_are_removed_on_start(tmp_path: Path) -> None:
    incoming = tmp_path / INCOMING_DIR
    incoming.mkdir(parents=True)
    (incoming / "crashed.part").write_bytes(b"half a file")
    Staging(tmp_path, min_free_bytes=0)
    assert list(incoming.iterdir()) == []


def test_store_file_moves_a_file_from_elsewhere(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging", min_free_bytes=0)
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(b"payload")
    path, duplicate = staging.store_file(outside, **UIDS)
    assert not duplicate and path.read_bytes() == b"payload" and not outside.exists()
    again = tmp_path / "again.dcm"
    again.write_bytes(b"other")
    path2, duplicate2 = staging.store_file(again, **UIDS)
    assert duplicate2 and path2 == path and path.read_bytes() == b"payload" and not again.exists()


def test_staged_file_reads_back_with_its_origin(tmp_path: Path, ct_file: Callable[..., Path]) -> None:
    source = ct_file()
    ts, data = dataset_bytes(source)
    reference = dcmread(source)
    origin = Origin(
        calling_ae_title="MODALITY1", called_ae_title="CTAINODE", peer_address="10.1.2.3", association_id="a1"
    )
    head = file_meta_bytes(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=reference.SOPInstanceUID,
        transfer_syntax_uid=ts,
        origin=origin,
    )
    staging = Staging(tmp_path / "staging", min_free_bytes=0)
    path, _ = staging.store_bytes(
        [head, data],
        study_instance_uid=reference.StudyInstanceUID,
        series_instance_uid=reference.SeriesInstanceUID,
        sop_instance_uid=reference.SOPInstanceUID,
    )
    staged = dcmread(path)
    assert staged.PixelData == reference.PixelData
    assert staged.file_meta.SendingApplicationEntityTitle == "MODALITY1"
    os.utime(path, (1_800_000_000, 1_800_000_000))
    event = read_staged_instance(path, uid_root="1.2.826.0.1.3680043.8.498.")
    assert event is not None
    assert event.calling_ae_title == "MODALITY1"
    assert event.called_ae_title == "CTAINODE"
    assert event.peer_address == "10.1.2.3"
    assert event.sop_instance_uid == reference.SOPInstanceUID
    assert event.routable
    assert event.received_at.timestamp() == 1_800_000_000
    assert staging.studies() == [path.parent.parent]


def test_unreadable_staged_file_reads_back_as_none(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom")
    assert read_staged_instance(bad, uid_root="1.2.3.") is None


def test_store_copy_writes_head_then_the_range_of_the_source(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging", min_free_bytes=0)
    source = tmp_path / "source.bin"
    payload = bytes(range(256)) * 4096  # 1 MiB
    source.write_bytes(b"JUNK" * 10 + payload)
    uids = {"study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "sop_instance_uid": "1.2.3.4.5"}
    with open(source, "rb") as f:
        final, duplicate = staging.store_copy(b"HEAD", f, offset=40, length=len(payload), **uids)
    assert not duplicate and final.read_bytes() == b"HEAD" + payload
    with open(source, "rb") as f:
        again, duplicate = staging.store_copy(b"OTHER", f, offset=0, length=10, **uids)
    assert duplicate and again == final and final.read_bytes() == b"HEAD" + payload
    assert list(staging.incoming.iterdir()) == []


def test_store_copy_of_a_source_shorter_than_announced_is_refused(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging", min_free_bytes=0)
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 100)
    with open(source, "rb") as f, pytest.raises(OutOfResources):
        staging.store_copy(
            b"H",
            f,
            offset=0,
            length=200,
            study_instance_uid="1.2",
            series_instance_uid="1.2.3",
            sop_instance_uid="1.2.3.4",
        )
    assert list(staging.incoming.iterdir()) == [] and not (staging.root / "1.2").exists()
