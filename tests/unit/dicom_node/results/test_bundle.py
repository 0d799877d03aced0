from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_node.contracts import ResultRole
from dicom_node.errors import PermanentError
from dicom_node.identity import derived_uid
from dicom_node.results.seg import BINARY_SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS
from tests.unit.dicom_node.results.cases import JOB_ID, UID_ROOT, analysis, make_case
from tests.unit.dicom_node.results.conftest import Encoded, encode

OTHER_JOB = "0a6b1e1f-3b7e-5a52-8c55-0a6c6f1d2e33"


def test_files_and_result_records(encoded: Encoded) -> None:
    names = sorted(Path(f.path).name for f in encoded.bundle.files)
    sc_names = [n for n in names if n.startswith("sc-")]
    assert sorted(set(names) - set(sc_names)) == ["gsps.dcm", "seg.dcm", "sr.dcm"]
    assert sc_names == [f"sc-{i:03d}.dcm" for i in range(1, len(sc_names) + 1)] and sc_names
    assert not list(encoded.out_dir.glob(".*"))  # no temporary files left
    for record in encoded.bundle.files:
        ds = pydicom.dcmread(record.path)
        assert record.sop_class_uid == ds.SOPClassUID
        assert record.sop_instance_uid == ds.SOPInstanceUID
        assert record.series_instance_uid == ds.SeriesInstanceUID
        assert record.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
        assert ds.StudyInstanceUID == encoded.bundle.study_instance_uid
    assert encoded.bundle.job_id == JOB_ID and encoded.bundle.summary == encoded.analysis.summary


def test_uids_derive_from_the_job(encoded: Encoded) -> None:
    by_name = {Path(f.path).name: f for f in encoded.bundle.files}
    assert by_name["seg.dcm"].sop_instance_uid == derived_uid(UID_ROOT, JOB_ID, "seg-instance")
    assert by_name["seg.dcm"].series_instance_uid == derived_uid(UID_ROOT, JOB_ID, "seg-series")
    assert by_name["sr.dcm"].sop_instance_uid == derived_uid(UID_ROOT, JOB_ID, "sr-instance")
    assert by_name["gsps.dcm"].sop_instance_uid == derived_uid(UID_ROOT, JOB_ID, "gsps-instance")
    seg = encoded.dataset("seg.dcm")
    assert seg.SegmentSequence[0].TrackingUID == derived_uid(UID_ROOT, JOB_ID, "segment-1-tracking")
    assert seg.SeriesNumber == 901 and seg.SeriesDescription == "AI SEG - ct-anatomy-basic 1.0.0"


def test_reencoding_is_byte_identical_and_another_job_is_not(encoded: Encoded, tmp_path: Path) -> None:
    again = encode(encoded.case, tmp_path / "again")
    for first, second in zip(encoded.bundle.files, again.bundle.files, strict=True):
        assert first.sop_instance_uid == second.sop_instance_uid
        assert Path(first.path).read_bytes() == Path(second.path).read_bytes(), first.path
    other = encode(encoded.case, tmp_path / "other", job_id=OTHER_JOB)
    assert not {f.sop_instance_uid for f in other.bundle.files} & {
        f.sop_instance_uid for f in encoded.bundle.files
    }
    assert not {f.series_instance_uid for f in other.bundle.files} & {
        f.series_instance_uid for f in encoded.bundle.files
    }


def test_without_a_fixed_time_only_the_uids_repeat(encoded: Encoded, tmp_path: Path) -> None:
    again = encode(
        encoded.case, tmp_path / "now", content_datetime=None, roles=(ResultRole.SEG, ResultRole.SR)
    )
    uids = {f.sop_instance_uid for f in again.bundle.files}
    assert uids <= {f.sop_instance_uid for f in encoded.bundle.files}
    assert len(uids) == 2


def test_both_seg_types_and_the_planar_sr_are_distinct_objects(encoded: Encoded, tmp_path: Path) -> None:
    result = encode(
        encoded.case,
        tmp_path / "both",
        roles=(ResultRole.SEG, ResultRole.SEG_LABELMAP, ResultRole.SR_PLANAR),
    )
    segs = [f for f in result.bundle.files if f.role in (ResultRole.SEG, ResultRole.SEG_LABELMAP)]
    assert sorted(f.sop_class_uid for f in segs) == sorted([BINARY_SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS])
    assert {f.role: f.sop_class_uid for f in segs} == {
        ResultRole.SEG: BINARY_SEG_SOP_CLASS,
        ResultRole.SEG_LABELMAP: LABELMAP_SEG_SOP_CLASS,
    }
    assert len({f.series_instance_uid for f in segs}) == 2
    (sr,) = [f for f in result.bundle.files if f.role == ResultRole.SR_PLANAR]
    assert sr.sop_instance_uid == derived_uid(UID_ROOT, JOB_ID, "sr-planar-instance")
    assert (
        sr.sop_instance_uid
        != next(f for f in encoded.bundle.files if f.role == ResultRole.SR).sop_instance_uid
    )
    binary = next(f for f in segs if f.sop_class_uid == BINARY_SEG_SOP_CLASS)
    assert binary.sop_instance_uid == derived_uid(UID_ROOT, JOB_ID, "seg-instance")
    labelmap = next(f for f in segs if f.sop_class_uid == LABELMAP_SEG_SOP_CLASS)
    np.testing.assert_array_equal(
        pydicom.dcmread(labelmap.path).pixel_array.max(), encoded.case.labelmap.max()
    )


def test_bad_inputs_are_permanent_errors(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(5, 8, 8))
    with pytest.raises(PermanentError, match="another study"):
        encode(case, tmp_path / "a", study_instance_uid=UID_ROOT + "999")
    with pytest.raises(PermanentError, match="HU volume"):
        encode(case, tmp_path / "b", hu=None)
    with pytest.raises(PermanentError, match="HU volume"):
        encode(case, tmp_path / "b2", hu=case.hu[:-1])
    bad = case.labelmap.copy()
    bad[0, 0, 0] = 9
    with pytest.raises(PermanentError, match="label map"):
        encode(case, tmp_path / "c", labelmap=bad)
    with pytest.raises(PermanentError, match="no result objects"):
        encode(case, tmp_path / "d", roles=())
    with pytest.raises(PermanentError, match="unknown result object 'kos'"):
        encode(case, tmp_path / "e", roles=("seg", "kos"))


def test_nothing_found(tmp_path: Path) -> None:
    """No structure, no finding: the full profile still reports it; nothing to draw otherwise."""
    case = make_case(tmp_path, shape=(5, 8, 8))
    case.labelmap[:] = 0
    empty = analysis(case).model_copy(
        update={"segments": (), "measurements": (), "findings": (), "snippets": (), "descriptions": ()}
    )
    full = encode(case, tmp_path / "full", analysis=empty)
    assert [Path(f.path).name for f in full.bundle.files] == ["sr.dcm"]
    sr = full.dataset("sr.dcm")
    container = next(i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    (group,) = container.ContentSequence
    texts = [i.TextValue for i in group.ContentSequence if i.ValueType == "TEXT" and "TextValue" in i]
    assert empty.summary in texts
    safe = encode(case, tmp_path / "safe", analysis=empty, roles=(ResultRole.SR_PLANAR, ResultRole.GSPS))
    assert safe.bundle.files == ()


def test_signed_64_bit_label_map_is_accepted(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(5, 8, 8))
    as_uint8 = encode(case, tmp_path / "u8", roles=(ResultRole.SEG,))
    as_int64 = encode(
        case, tmp_path / "i64", roles=(ResultRole.SEG,), labelmap=case.labelmap.astype(np.int64)
    )
    assert (
        Path(as_uint8.bundle.files[0].path).read_bytes() == Path(as_int64.bundle.files[0].path).read_bytes()
    )
