"""Text survives whatever character set the source declares (issue 12 items 2 and 3).

The source CT headers are rewritten with the Specific Character Set and patient name of each of
pydicom's bundled character-set files (Latin-1, Greek, Arabic, Hebrew, Cyrillic, Japanese and Korean
ISO 2022 combinations, UTF-8, GB18030) and with generated defects (an empty (0008,0005), none at
all, Latin-1 bytes under an empty set). Every result object is read back and its text decoded:
the patient name is the source's, and the node's own text ("−874 HU", "×") is intact.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.multival import MultiValue

from dicom_node.contracts import ResultRole
from dicom_node.results.charset import (
    UTF8,
    character_set_for,
    declare_character_set,
    initial_character_set,
    text_values,
)
from tests.unit.dicom_node.results.cases import analysis, make_case
from tests.unit.dicom_node.results.conftest import encode

NODE_TEXT = "Body: 3334 mL, mean \u2212874 HU (SD 12), 8 \u00d7 7 mm"
ROLES = (ResultRole.SEG, ResultRole.SR, ResultRole.GSPS, ResultRole.SC)


def _charset_cases() -> list[tuple[str, object, str]]:
    """(case id, Specific Character Set, patient name) from pydicom's charset files + variants."""
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_charset_files("chr*.dcm")):
            ds = pydicom.dcmread(path)
            name = ds.get("PatientName")
            if not name:
                continue
            charset = ds.SpecificCharacterSet
            cases.append(
                (Path(path).stem, list(charset) if not isinstance(charset, str) else charset, str(name))
            )
    cases += [
        ("empty-ascii", "", "Doe^John"),
        ("empty-latin1-bytes", "", "M\u00fcller^Hans"),  # real CTs: Latin-1 bytes under an empty set
        ("absent", None, "Doe^Jane"),
        ("multi-empty", ["", ""], "Roe^Richard"),
    ]
    return cases


CHARSET_CASES = _charset_cases()


def _rewrite_sources(paths: list[Path], charset: object, name: str) -> list[pydicom.Dataset]:
    out = []
    for path in paths:
        ds = pydicom.dcmread(path)
        if charset is None:
            if "SpecificCharacterSet" in ds:
                del ds.SpecificCharacterSet
        else:
            ds.SpecificCharacterSet = charset
        ds.PatientName = name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path)
        out.append(pydicom.dcmread(path, stop_before_pixels=True))
    return out


@pytest.mark.parametrize(("case_id", "charset", "name"), CHARSET_CASES, ids=[c[0] for c in CHARSET_CASES])
def test_every_source_character_set_reads_back_intact(
    tmp_path: Path, case_id: str, charset: object, name: str
) -> None:
    case = make_case(tmp_path, shape=(7, 24, 32))
    case.sources = _rewrite_sources(case.paths, charset, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_name = str(case.sources[0].PatientName)
    assert expected_name == name  # the source itself decodes as intended
    result = analysis(case).model_copy(update={"descriptions": (NODE_TEXT,), "summary": NODE_TEXT})
    encoded = encode(case, tmp_path / "out", analysis=result, roles=ROLES)
    assert {f.role for f in encoded.bundle.files} == set(ROLES)
    for record in encoded.bundle.files:
        raw = Path(record.path).read_bytes()
        ds = pydicom.dcmread(record.path)
        declared = ds.get("SpecificCharacterSet")
        source_values = tuple(charset) if isinstance(charset, list) else ((charset,) if charset else ())
        written = tuple(declared) if isinstance(declared, MultiValue) else (declared,)
        # the source's own set where it holds the text, else none (all ASCII) or UTF-8
        assert written in ((None,), (UTF8,), source_values), (written, source_values)
        assert str(ds.PatientName) == name, (record.role, case_id)
        texts = list(text_values(ds))
        assert not any("?" in t and "\u2212" not in t and "HU" in t for t in texts)
        if record.role == ResultRole.SR:
            assert NODE_TEXT in texts, texts
        # what the object declares encodes its bytes: decoding them with any other reading fails
        if declared is None:
            assert all(t.isascii() for t in texts)
        assert b"?874" not in raw


def test_empty_character_set_does_not_fail_the_job(tmp_path: Path) -> None:
    """A real CT from another site had (0008,0005) present and empty: every job failed."""
    case = make_case(tmp_path, shape=(7, 24, 32))
    case.sources = _rewrite_sources(case.paths, "", "Doe^John")
    encoded = encode(case, tmp_path / "out", roles=(*ROLES, ResultRole.SR_PLANAR, ResultRole.SEG_LABELMAP))
    assert len({f.role for f in encoded.bundle.files}) == 6


def test_choice_of_declared_set() -> None:
    assert character_set_for(["Doe^John", "mean 12 HU"], None) is None
    assert character_set_for(["Doe^John"], "ISO_IR 100") == "ISO_IR 100"
    assert character_set_for(["J\u00e9r\u00f4me"], "ISO_IR 100") == "ISO_IR 100"
    assert character_set_for(["mean \u2212874 HU"], "ISO_IR 100") == UTF8  # the '?874' bug
    assert character_set_for(["J\u00e9r\u00f4me"], None) == UTF8
    assert character_set_for(["\u5c71\u7530"], "GB18030") == "GB18030"
    japanese = ("", "ISO 2022 IR 87")
    assert character_set_for(["Yamada^Tarou", "\u5c71\u7530^\u592a\u90ce"], UTF8, japanese) == list(japanese)
    assert character_set_for(["\ud64d^\uae38\ub3d9"], UTF8, japanese) == UTF8  # Hangul: not in JIS
    assert (
        character_set_for(["J\u00e9r\u00f4me"], "ISO_IR 100", ("", "")) == "ISO_IR 100"
    )  # no valid source set
    source = pydicom.Dataset()
    source.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    assert initial_character_set(source) == UTF8
    source.SpecificCharacterSet = ""
    assert initial_character_set(source) is None
    source.SpecificCharacterSet = "ISO_IR 144"
    assert initial_character_set(source) == "ISO_IR 144"


def test_declare_character_set_sees_nested_text() -> None:
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    item = pydicom.Dataset()
    item.TextValue = "mean \u2212874 HU"
    ds.ContentSequence = [item]
    assert declare_character_set(ds) == UTF8 and ds.SpecificCharacterSet == UTF8
    item.TextValue = "mean -874 HU"
    assert declare_character_set(ds) == UTF8  # a declared set that fits stays
    del ds.SpecificCharacterSet
    assert declare_character_set(ds) is None and "SpecificCharacterSet" not in ds
