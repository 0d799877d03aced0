"""Data sets stream to disk on the real SCP (issue 12 item 8): large instances arrive through
pynetdicom's temporary file, the maximum instance size is enforced with 0xA701 (and an abort
far past it), and a transfer that stops half-way leaves no file anywhere.

pynetdicom writes its temporary files in ``tempfile.gettempdir()``; each test points that at its
own folder (the SCP runs in this process), so "no file left" is checked there and in staging.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config

from dicom_node.ingest.receive import split_part10
from tests.integration import test_ingest_scp
from tests.integration.test_ingest_scp import NODE_AE, Node, pyscu_responses, store_successes, storescu
from tests.support.ct_series import make_ct_series
from tests.support.dimse_raw import raw_association
from tests.support.multiframe import ENHANCED_CT_IMAGE_STORAGE, write_multiframe_ct
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

start_node = test_ingest_scp.start_node  # the SCP fixture, shared

MIB = 2**20


@pytest.fixture
def pynetdicom_tmp(tmp_path: Path) -> Iterator[Path]:
    """Where pynetdicom's temporary data set files go during the test."""
    folder = tmp_path / "pynetdicom-tmp"
    folder.mkdir()
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous


def leftovers(node: Node, pynetdicom_tmp: Path) -> list[Path]:
    return sorted(pynetdicom_tmp.iterdir()) + sorted((node.staging / ".incoming").iterdir())


@pytest.fixture
def small_ct(tmp_path: Path) -> Path:
    return make_ct_series(tmp_path / "small", n_slices=1, rows=64, cols=64)[0]


def test_a_large_multiframe_streams_through_a_file_and_is_stored_as_sent(
    start_node: Any, tmp_path: Path, pynetdicom_tmp: Path
) -> None:
    node: Node = start_node()
    source = write_multiframe_ct(tmp_path / "mf.dcm", frames=80, rows=512, columns=512)  # 40 MiB
    result = storescu(node.port, [source])
    assert store_successes(result) == 1, (result.stdout + result.stderr)[-2000:]
    assert _config.STORE_RECV_CHUNKED_DATASET is True  # the SCP turned streaming on
    [staged] = node.staged_files()
    original, copy = source.read_bytes(), staged.read_bytes()
    assert copy[split_part10(copy)[1] :] == original[split_part10(original)[1] :]  # byte for byte
    assert dcmread(staged, stop_before_pixels=True).file_meta.SendingApplicationEntityTitle == "STORESCU"
    node.wait_for_associations(1)
    assert leftovers(node, pynetdicom_tmp) == []


def test_max_instance_bytes_refuses_with_a701_and_aborts_far_past_it(
    start_node: Any, tmp_path: Path, pynetdicom_tmp: Path, small_ct: Path
) -> None:
    node: Node = start_node(dicom={"max_instance_bytes": 1 * MIB})
    over = write_multiframe_ct(tmp_path / "over.dcm", frames=3, rows=512, columns=512)  # 1.5 MiB
    [(status, comment)] = pyscu_responses(node.port, [over])
    assert status == 0xA701
    assert "exceeds max_instance_bytes (1 MiB)" in comment
    # past twice the limit the node stops listening: the association is aborted mid-transfer
    far = write_multiframe_ct(tmp_path / "far.dcm", frames=12, rows=512, columns=512)  # 6 MiB
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(ENHANCED_CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE)
    assert assoc.is_established
    answer = assoc.send_c_store(far)
    assert "Status" not in answer  # no response: aborted
    wait_until(lambda: assoc.is_aborted or not assoc.is_alive(), timeout_s=30, what="abort")
    node.wait_for_associations(2)
    assert node.summaries[-1].released is False
    # nothing left behind, and the node still serves
    wait_until(lambda: leftovers(node, pynetdicom_tmp) == [], timeout_s=30, what="temporary files removed")
    assert pyscu_responses(node.port, [small_ct]) == [(0x0000, "")]
    assert [p.stem for p in node.staged_files()] == [str(dcmread(small_ct).SOPInstanceUID)]


@pytest.mark.parametrize("ending", ["drop the connection", "A-ABORT"])
def test_a_data_set_cut_off_half_way_leaves_no_file(
    start_node: Any, tmp_path: Path, pynetdicom_tmp: Path, small_ct: Path, ending: str
) -> None:
    node: Node = start_node()
    source = write_multiframe_ct(tmp_path / "mf.dcm", frames=16, rows=512, columns=512)  # 8 MiB
    data = source.read_bytes()
    meta, offset = split_part10(data)
    with raw_association(
        node.port, sop_class_uid=ENHANCED_CT_IMAGE_STORAGE, transfer_syntax_uid=ExplicitVRLittleEndian
    ) as raw:
        pdus = raw.p_data_pdus(
            data[offset:],
            sop_class_uid=ENHANCED_CT_IMAGE_STORAGE,
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        )
        for pdu in pdus[: len(pdus) // 2]:
            raw.send(pdu)
        # the half that arrived is on disk, in pynetdicom's temporary file, not in memory
        wait_until(lambda: any(pynetdicom_tmp.iterdir()), timeout_s=30, what="the streamed file")
        if ending == "A-ABORT":
            raw.abort()
    node.wait_for_associations(1)
    assert node.summaries[0].released is False and node.summaries[0].stored == 0
    wait_until(lambda: leftovers(node, pynetdicom_tmp) == [], timeout_s=30, what="temporary files removed")
    assert node.staged_files() == []
    assert pyscu_responses(node.port, [small_ct]) == [(0x0000, "")]


def test_a_data_set_sent_whole_over_raw_pdus_is_answered(
    start_node: Any, tmp_path: Path, pynetdicom_tmp: Path
) -> None:
    """The raw sender of these tests against a data set that is fine: Success (its control)."""
    node: Node = start_node()
    source = write_multiframe_ct(tmp_path / "mf.dcm", frames=2, rows=64, columns=64)
    data = source.read_bytes()
    meta, offset = split_part10(data)
    with raw_association(
        node.port, sop_class_uid=ENHANCED_CT_IMAGE_STORAGE, transfer_syntax_uid=ExplicitVRLittleEndian
    ) as raw:
        for pdu in raw.p_data_pdus(
            data[offset:],
            sop_class_uid=ENHANCED_CT_IMAGE_STORAGE,
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        ):
            raw.send(pdu)
        assert raw.read_store_status() == 0x0000
        assert raw.release()
    assert len(node.staged_files()) == 1
    assert leftovers(node, pynetdicom_tmp) == []
