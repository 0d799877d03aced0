"""The summary every PACS can show (Encapsulated PDF, SC page) and Key Object Selections (issue 14
item 4). Rendering with poppler and dciodvfy: tests/integration/test_results_validators.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_node.constants import (
    ENCAPSULATED_PDF_STORAGE,
    KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
)
from dicom_node.contracts import ResultRole
from dicom_node.results.kos import (
    OF_INTEREST,
    REJECTED_FOR_QUALITY_REASONS,
    SelectedInstance,
    build_kos,
)
from dicom_node.results.summary import NOT_FOR_DIAGNOSIS
from tests.unit.dicom_node.results.cases import UID_ROOT, analysis, make_case
from tests.unit.dicom_node.results.conftest import Encoded, encode

SUMMARY_ROLES = (ResultRole.PDF, ResultRole.SC_SUMMARY, ResultRole.KOS_KEY_IMAGES)


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    root = tmp_path_factory.mktemp("summary")
    return encode(make_case(root, shape=(12, 64, 80)), root / "out", roles=SUMMARY_ROLES)


def _content_items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out.extend(_content_items(item))
    return out


def test_encapsulated_pdf(summary: Encoded) -> None:
    ds = summary.dataset("pdf.dcm")
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE and ds.Modality == "DOC"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    pdf = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert ds.BurnedInAnnotation == "NO" and ds.DocumentTitle == "AI result summary"
    assert ds.SeriesNumber == 906 and ds.SeriesDescription == "AI SUMMARY - ct-anatomy-basic 1.0.0"
    key_uids = {str(i.ReferencedSOPInstanceUID) for i in ds.SourceInstanceSequence}
    finding = summary.analysis.findings[0]
    assert str(summary.case.sources[finding.key_slice_index].SOPInstanceUID) in key_uids
    assert ds.PatientID == summary.case.sources[0].PatientID  # the study's patient, in the header
    assert str(ds.PatientName).encode() not in pdf  # ... and not printed on the page


def test_summary_page_as_secondary_capture(summary: Encoded) -> None:
    ds = summary.dataset("sc-summary.dcm")
    assert ds.SOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE and ds.SeriesNumber == 907
    page = ds.pixel_array
    assert page.ndim == 3 and page.shape[2] == 3 and page.shape[0] > page.shape[1]  # portrait RGB
    assert NOT_FOR_DIAGNOSIS in ds.ImageComments  # the default analysis is research-grade
    red = (page[:, :, 0] > 150) & (page[:, :, 1] < 60) & (page[:, :, 2] < 80)
    assert red.any()  # the warning is drawn in red
    colourful = np.ptp(page.astype(int), axis=2) > 40
    assert colourful.sum() > 500  # thumbnails with coloured segments


def test_classical_method_is_not_labelled_research_grade(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(8, 32, 40))
    result = analysis(case).model_copy(update={"research_grade": False})
    encoded = encode(case, tmp_path / "out", analysis=result, roles=(ResultRole.SC_SUMMARY,))
    assert NOT_FOR_DIAGNOSIS not in encoded.dataset("sc-summary.dcm").ImageComments


def test_pdf_is_byte_identical_on_reencoding(summary: Encoded, tmp_path: Path) -> None:
    again = encode(summary.case, tmp_path / "again", roles=SUMMARY_ROLES)
    for first, second in zip(summary.bundle.files, again.bundle.files, strict=True):
        assert Path(first.path).read_bytes() == Path(second.path).read_bytes(), first.role


def test_key_images_document(summary: Encoded) -> None:
    ds = summary.dataset("kos-key-images.dcm")
    assert ds.SOPClassUID == KEY_OBJECT_SELECTION_DOCUMENT_STORAGE and ds.SeriesNumber == 908
    title = ds.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == (OF_INTEREST.value, "DCM")
    selected = {
        str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for i in _content_items(ds)
        if i.ValueType == "IMAGE"
    }
    stats_keys = {int(np.argmax((summary.case.labelmap == n).sum(axis=(1, 2)))) for n in (1, 2)}
    expected = {summary.analysis.findings[0].key_slice_index, *stats_keys}
    assert selected == {str(summary.case.sources[k].SOPInstanceUID) for k in expected}
    description = next(i for i in _content_items(ds) if i.ValueType == "TEXT")
    assert "Liver lesion" in description.TextValue and "series 1, image" in description.TextValue


def test_no_key_image_no_kos(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(5, 8, 8))
    case.labelmap[:] = 0
    empty = analysis(case).model_copy(
        update={"segments": (), "measurements": (), "findings": (), "snippets": (), "descriptions": ()}
    )
    assert (
        encode(case, tmp_path / "out", analysis=empty, roles=(ResultRole.KOS_KEY_IMAGES,)).bundle.files == ()
    )


def test_build_kos_serves_a_rejection_note_for_superseded_results(summary: Encoded, tmp_path: Path) -> None:
    """The generic builder the supersede flow can use: select the node's earlier objects (not
    images) under a CID 7011 title, patient and study from one of those objects."""
    earlier = summary.bundle.files
    document = build_kos(
        title=REJECTED_FOR_QUALITY_REASONS,
        selected=[SelectedInstance.from_result(f, summary.bundle.study_instance_uid) for f in earlier],
        study=pydicom.dcmread(earlier[0].path, stop_before_pixels=True),
        series_instance_uid=UID_ROOT + "990",
        sop_instance_uid=UID_ROOT + "991",
        series_number=999,
        manufacturer="ct-ai-node",
        description="Superseded by the results of a later job",
    )
    title = document.ConceptNameCodeSequence[0]
    assert title.CodeValue == "113001"
    composite = [i for i in _content_items(document) if i.ValueType == "COMPOSITE"]
    assert {str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for i in composite} == {
        f.sop_instance_uid for f in earlier
    }
    assert document.PatientID == summary.case.sources[0].PatientID
    with pytest.raises(ValueError, match="at least one"):
        build_kos(
            title=OF_INTEREST,
            selected=[],
            study=summary.case.sources[0],
            series_instance_uid=UID_ROOT + "992",
            sop_instance_uid=UID_ROOT + "993",
            series_number=999,
            manufacturer="ct-ai-node",
        )
