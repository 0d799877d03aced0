"""The C-STORE SCP against real DCMTK peers (storescu, echoscu), and a pynetdicom SCU where a test
must read each DIMSE status or send bytes storescu would refuse to read.

Each test starts its own ``StoreSCP`` on a free port with its own staging folder; DCMTK tools run
as subprocesses with argv lists and talk only to 127.0.0.1.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, _config

from dicom_node.constants import (
    COMPREHENSIVE_3D_SR_STORAGE,
    CT_IMAGE_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
)
from dicom_node.contracts import InstanceStored
from dicom_node.ingest.receive import Origin, file_meta_bytes, split_part10
from dicom_node.ingest.scp import AssociationSummary, StoreSCP
from dicom_node.settings import Settings, load_settings
from tests.support.ct_series import TEST_UID_ROOT, make_ct_series
from tests.support.dcmtk import require
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

NODE_AE = "CTAINODE"


# -- the node under test -----------------------------------------------------------------------


@dataclass
class Node:
    scp: StoreSCP
    settings: Settings
    events: list[InstanceStored] = field(default_factory=list)
    summaries: list[AssociationSummary] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.scp.port is not None
        return self.scp.port

    @property
    def staging(self) -> Path:
        return self.settings.storage.staging_dir

    def staged_files(self) -> list[Path]:
        return sorted(p for p in self.staging.rglob("*.dcm") if ".incoming" not in p.parts)

    def wait_for_associations(self, count: int) -> None:
        wait_until(lambda: len(self.summaries) >= count, timeout_s=20, what="association summaries")


def node_settings(root: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "storage": {"root": str(root), "min_free_bytes": 0},
        "dicom": {
            "ae_title": NODE_AE,
            "allowed_peers": [
                {"ae_title": "STORESCU", "networks": ["127.0.0.1/32"]},
                {"ae_title": "ECHOSCU", "networks": ["127.0.0.1/32"]},
                {"ae_title": "PYSCU", "networks": ["127.0.0.1/32"]},
            ],
        },
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value}
    return load_settings(overrides=data)


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Any]:
    started: list[StoreSCP] = []

    def start(**overrides: Any) -> Node:
        settings = node_settings(tmp_path / f"var{len(started)}", **overrides)
        node = Node(scp=None, settings=settings)  # type: ignore[arg-type]
        node.scp = StoreSCP(
            settings, on_instance=node.events.append, on_association_released=node.summaries.append, port=0
        )
        node.scp.start()
        started.append(node.scp)
        return node

    yield start
    for scp in started:
        scp.stop()


@pytest.fixture
def node(start_node: Any) -> Node:
    return start_node()  # type: ignore[no-any-return]


# -- peers -------------------------------------------------------------------------------------


def storescu(
    port: int,
    files: Sequence[Path],
    *,
    calling: str = "STORESCU",
    called: str = NODE_AE,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu, verbose so each response is in its log (it exits 0 on failed stores)."""
    argv = [require("storescu"), "-v", "-nh", "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port)]
    return subprocess.run([*argv, *map(str, files)], capture_output=True, text=True, timeout=180)


def pyscu_responses(
    port: int, files: Sequence[Path], *, calling: str = "PYSCU", **assoc_kwargs: Any
) -> list[tuple[int, str]]:
    """Like :func:`pyscu_statuses`, with each response's ErrorComment (0000,0902)."""
    ae = AE(ae_title=calling)
    for path in files:
        meta = dcmread(path, stop_before_pixels=True, force=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE, **assoc_kwargs)
        assert assoc.is_established, "association not established"
        try:
            answers = []
            for path in files:
                response = assoc.send_c_store(path)
                answers.append((int(response.Status), str(response.get("ErrorComment", ""))))
            return answers
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def store_successes(result: subprocess.CompletedProcess[str]) -> int:
    return (result.stdout + result.stderr).count("Received Store Response (Success)")


def pyscu_statuses(
    port: int, files: Sequence[Path], *, calling: str = "PYSCU", **assoc_kwargs: Any
) -> list[int]:
    """Send files byte for byte (pynetdicom's chunked send: no decode/re-encode) on one
    association and return each C-STORE status."""
    ae = AE(ae_title=calling)
    metas = [dcmread(f, stop_before_pixels=True, force=True).file_meta for f in files]
    for meta in metas:
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE, **assoc_kwargs)
        assert assoc.is_established, "association not established"
        try:
            return [int(assoc.send_c_store(f).Status) for f in files]
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


# -- data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct20(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The brief's series: 20 slices 512×512 int16, explicit VR little endian."""
    return make_ct_series(tmp_path_factory.mktemp("ct20"), n_slices=20)


def _transcode(tool: str, flag: str | None, source: Path, target: Path) -> Path:
    argv = [require(tool)] + ([flag] if flag else []) + [str(source), str(target)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return target


def _secondary_capture_8bit(path: Path) -> Path:
    """An 8-bit MONOCHROME2 Secondary Capture (JPEG baseline needs 8-bit samples)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=TEST_UID_ROOT)
    ds.StudyInstanceUID = generate_uid(prefix=TEST_UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=TEST_UID_ROOT)
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.PatientName = "TESTPATIENT^SC"
    ds.PatientID = "SYN-SC-1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 128
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(128 * 128) % 251).astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def compressed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small file per accepted transfer syntax family, made by pydicom and DCMTK encoders."""
    out = tmp_path_factory.mktemp("compressed")
    files: dict[str, Path] = {}
    study = generate_uid(prefix=TEST_UID_ROOT)
    for i, ts in enumerate(
        [
            ImplicitVRLittleEndian,
            DeflatedExplicitVRLittleEndian,
            RLELossless,
            JPEGLSLossless,
            JPEG2000Lossless,
        ]
    ):
        [path] = make_ct_series(
            out / ts.name.replace(" ", "_"),
            n_slices=1,
            rows=256,
            cols=256,
            study_uid=study,
            series_number=10 + i,
            transfer_syntax_uid=ts,
        )
        files[ts.name] = path
    [plain] = make_ct_series(out / "plain", n_slices=1, rows=256, cols=256, study_uid=study, series_number=20)
    [twelve] = make_ct_series(
        out / "twelve",
        n_slices=1,
        rows=256,
        cols=256,
        study_uid=study,
        series_number=21,
        extra={"BitsStored": 12, "HighBit": 11, "PixelRepresentation": 0},
    )
    files["JPEG Lossless SV1"] = _transcode("dcmcjpeg", "+e1", plain, out / "sv1.dcm")
    files["JPEG Extended 12-bit"] = _transcode("dcmcjpeg", "+ee", twelve, out / "ext.dcm")
    files["JPEG Baseline"] = _transcode(
        "dcmcjpeg", "+eb", _secondary_capture_8bit(out / "sc.dcm"), out / "base.dcm"
    )
    return files


# -- tests -------------------------------------------------------------------------------------


def test_storescu_series_is_staged_byte_for_byte(node: Node, ct20: list[Path]) -> None:
    result = storescu(node.port, ct20)
    assert store_successes(result) == 20, result.stderr[-2000:]
    node.wait_for_associations(1)
    staged = node.staged_files()
    assert len(staged) == 20
    reference = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in ct20}
    for path in staged:
        ds = dcmread(path)
        source = reference[path.stem]
        assert path.parent.name == source.SeriesInstanceUID
        assert path.parent.parent.name == source.StudyInstanceUID
        assert ds.PixelData == source.PixelData
        assert ds.file_meta.SendingApplicationEntityTitle == "STORESCU"
    assert len(node.events) == 20 and all(e.routable and not e.duplicate for e in node.events)
    assert {e.path for e in node.events} == {str(p) for p in staged}
    [summary] = node.summaries
    assert summary.released and summary.stored == 20 and summary.failed == 0
    assert summary.calling_ae_title == "STORESCU"
    assert summary.study_instance_uids == {str(dcmread(ct20[0], stop_before_pixels=True).StudyInstanceUID)}
    assert {e.association_id for e in node.events} == {summary.association_id}


def test_echoscu(node: Node) -> None:
    ok = subprocess.run(
        [require("echoscu"), "-aet", "ECHOSCU", "-aec", NODE_AE, "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr


# storescu proposes a compressed transfer syntax only when told to (its --propose-* options).
STORESCU_PROPOSE = {
    ImplicitVRLittleEndian.name: "-xi",
    DeflatedExplicitVRLittleEndian.name: "-xd",
    RLELossless.name: "-xr",
    JPEGLSLossless.name: "-xt",
    JPEG2000Lossless.name: "-xv",
    "JPEG Lossless SV1": "-xs",
    "JPEG Extended 12-bit": "-xx",
    "JPEG Baseline": "-xy",
}


def test_every_accepted_transfer_syntax_is_stored_as_sent(
    node: Node, compressed_files: dict[str, Path]
) -> None:
    for name, source in compressed_files.items():
        result = storescu(node.port, [source], extra=[STORESCU_PROPOSE[name]])
        log = result.stdout + result.stderr
        assert store_successes(result) == 1, f"{name}: {log[-3000:]}"
    staged = {p.stem: p for p in node.staged_files()}
    for name, source in compressed_files.items():
        original = dcmread(source)
        stored = dcmread(staged[str(original.SOPInstanceUID)])
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID, name
        assert stored.PixelData == original.PixelData, name  # not transcoded
    routable = {e.sop_instance_uid: e.routable for e in node.events}
    sc = dcmread(compressed_files["JPEG Baseline"], stop_before_pixels=True)
    assert routable.pop(str(sc.SOPInstanceUID)) is False  # Secondary Capture: stored, not routed
    assert all(routable.values())


def test_unknown_calling_ae_is_rejected(node: Node, ct20: list[Path]) -> None:
    result = storescu(node.port, ct20[:1], calling="INTRUDER")
    log = result.stdout + result.stderr
    assert "Association Rejected" in log
    assert "Calling AE Title Not Recognized" in log
    assert result.returncode != 0
    assert node.staged_files() == [] and node.events == []


def test_wrong_called_ae_is_rejected(node: Node, ct20: list[Path]) -> None:
    result = storescu(node.port, ct20[:1], called="NOTTHENODE")
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr
    assert node.staged_files() == []


def test_known_ae_from_a_disallowed_address_is_rejected(node: Node, ct20: list[Path]) -> None:
    """PYSCU is allowed from 127.0.0.1/32 only; connect from 127.0.0.2 (storescu cannot choose its
    source address, so a pynetdicom requestor does)."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE, bind_address=("127.0.0.2", 0))
    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 3)
    # the same AE from its allowed address is accepted
    assert pyscu_statuses(node.port, ct20[:1]) == [0x0000]


def _garbage(path: Path, ct: Path) -> Path:
    """Valid File Meta (CT, explicit VR LE) followed by bytes that are not DICOM."""
    data = ct.read_bytes()
    ds = dcmread(ct, stop_before_pixels=True)
    meta_end = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    path.write_bytes(data[:meta_end] + np.random.default_rng(7).bytes(4000))
    return path


def _modified(path: Path, ct: Path, **changes: Any) -> Path:
    """``ct`` with header changes; the File Meta keeps the CT class and instance, so the C-STORE
    goes out under the CT presentation context whatever the data set now says."""
    ds = dcmread(ct)
    meta = ds.file_meta
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    _, offset = split_part10(buffer.getvalue())
    head = file_meta_bytes(
        sop_class_uid=meta.MediaStorageSOPClassUID,
        sop_instance_uid=meta.MediaStorageSOPInstanceUID,
        transfer_syntax_uid=meta.TransferSyntaxUID,
        origin=Origin(calling_ae_title="", called_ae_title="", peer_address="", association_id=""),
    )
    path.write_bytes(head + buffer.getvalue()[offset:])
    return path


@pytest.mark.filterwarnings("ignore:Expected explicit VR")  # the test reading its own garbage file
def test_malformed_inputs_get_failure_statuses_and_the_node_keeps_serving(
    node: Node, ct20: list[Path], tmp_path: Path
) -> None:
    good, spare = ct20[0], ct20[1]
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-50_000])
    cases = {
        "truncated": (truncated, 0xC001),
        "garbage": (_garbage(tmp_path / "garbage.dcm", good), 0xC000),
        "no pixel data": (_modified(tmp_path / "nopix.dcm", good, PixelData=None), 0xC003),
        "wrong SOP class": (
            _modified(tmp_path / "wrongclass.dcm", good, SOPClassUID=SEGMENTATION_STORAGE),
            0xA900,
        ),
        "absurd rows": (_modified(tmp_path / "rows.dcm", good, Rows=60000), 0xC004),
        "absurd frames": (_modified(tmp_path / "frames.dcm", good, NumberOfFrames=999_999), 0xC004),
    }
    files = [path for path, _ in cases.values()]
    # all bad ones, then a good one, on the same association
    statuses = pyscu_statuses(node.port, [*files, good])
    assert statuses == [status for _, status in cases.values()] + [0x0000]
    # and the node still serves a DCMTK sender afterwards
    assert store_successes(storescu(node.port, [spare])) == 1
    staged = {p.stem for p in node.staged_files()}
    assert staged == {str(dcmread(good).SOPInstanceUID), str(dcmread(spare).SOPInstanceUID)}
    assert list((node.staging / ".incoming").iterdir()) == []
    node.wait_for_associations(2)
    assert node.summaries[0].failed == len(cases) and node.summaries[0].stored == 1


def test_refusals_of_issue_12_item_10_carry_status_and_reason(
    node: Node, ct20: list[Path], tmp_path: Path
) -> None:
    good = ct20[2]
    cases = {
        "BitsStored > BitsAllocated": (
            _modified(tmp_path / "bits.dcm", good, BitsStored=20),
            0xC005,
            "BitsStored 20 with BitsAllocated 16",
        ),
        "PixelRepresentation 7": (
            _modified(tmp_path / "pr.dcm", good, PixelRepresentation=7),
            0xC005,
            "PixelRepresentation 7",
        ),
        "SamplesPerPixel 1 with RGB": (
            _modified(tmp_path / "rgb.dcm", good, PhotometricInterpretation="RGB"),
            0xC005,
            "RGB needs SamplesPerPixel 3",
        ),
        "native pixel data of the wrong length": (
            _modified(tmp_path / "len.dcm", good, PixelData=dcmread(good).PixelData + b"\0\0"),
            0xC004,
            "pixel data longer than the image",
        ),
    }
    # CT pixels under an SR SOP class (negotiated as SR, File Meta says SR)
    ct_as_sr = dcmread(good)
    ct_as_sr.SOPClassUID = ct_as_sr.file_meta.MediaStorageSOPClassUID = COMPREHENSIVE_3D_SR_STORAGE
    ct_as_sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    cases["CT pixels under an SR SOP class"] = (
        tmp_path / "sr.dcm",
        0xA900,
        "Pixel Data in a SOP class without pixels",
    )
    answers = pyscu_responses(node.port, [path for path, _, _ in cases.values()] + [good])
    for (name, (_, status, reason)), (got_status, comment) in zip(cases.items(), answers, strict=False):
        assert (got_status, reason in comment) == (status, True), f"{name}: 0x{got_status:04X} {comment!r}"
    assert answers[-1] == (0x0000, "")
    assert {p.stem for p in node.staged_files()} == {str(dcmread(good).SOPInstanceUID)}


def test_duplicate_resend_makes_no_new_work(node: Node, ct20: list[Path]) -> None:
    first = storescu(node.port, ct20[:5])
    assert store_successes(first) == 5
    node.wait_for_associations(1)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in node.staged_files()}
    again = storescu(node.port, ct20[:5])
    assert store_successes(again) == 5  # Success status for a duplicate
    node.wait_for_associations(2)
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in node.staged_files()}
    assert after == before  # not rewritten
    assert [e.duplicate for e in node.events] == [False] * 5 + [True] * 5
    assert (node.summaries[1].stored, node.summaries[1].duplicates) == (0, 5)


def test_disk_watermark_refuses_with_a700(start_node: Any, ct20: list[Path]) -> None:
    node = start_node(storage={"min_free_bytes": 2**62})
    assert pyscu_statuses(node.port, ct20[:2]) == [0xA700, 0xA700]
    result = storescu(node.port, ct20[:1])
    assert "Refused: OutOfResources" in result.stdout + result.stderr
    assert node.staged_files() == [] and node.events == []


def test_no_patient_identifier_reaches_the_logs(
    node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = make_ct_series(
        tmp_path / "phi",
        n_slices=3,
        rows=64,
        cols=64,
        patient_name="QUOKKA^WILHELMINA",
        patient_id="PID-8675309",
        accession_number="ACC-5550199",
    )
    truncated = tmp_path / "phi-truncated.dcm"
    truncated.write_bytes(files[0].read_bytes()[:-3000])
    caplog.set_level(logging.DEBUG)
    assert store_successes(storescu(node.port, files)) == 3
    assert pyscu_statuses(node.port, [truncated]) == [0xC001]
    node.wait_for_associations(2)
    assert caplog.records, "the SCP logs what it does"
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values())
        for value in ("QUOKKA", "WILHELMINA", "PID-8675309", "ACC-5550199"):
            assert value not in text, f"{value!r} logged by {record.name}"
