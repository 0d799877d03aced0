"""Key Object Selection documents (PS3.3 A.35.4, TID 2010), built with highdicom.

:func:`build_kos` is generic: a document title (CID 7010 for key images, e.g. 113000 "Of Interest";
CID 7011 for a rejection note, e.g. 113001 "Rejected for Quality Reasons" or 113039 "Data Retention
Policy Expired"), the instances it selects (:class:`SelectedInstance`: UIDs only, no dataset
needed), and a header that carries the patient and study (any source CT header, or one of the
node's own result objects read back). The result kind "kos-key-images" uses it for the key images
of a job (:func:`encode_key_images`); superseding earlier results (issue 12 item 1) can use it for
an IHE IOCM rejection note:

    build_kos(
        title=REJECTED_FOR_QUALITY_REASONS,
        selected=[SelectedInstance.from_result(f) for f in earlier_bundle.files],
        study=pydicom.dcmread(earlier_bundle.files[0].path, stop_before_pixels=True),
        series_instance_uid=..., sop_instance_uid=..., series_number=..., manufacturer=...,
        description="Superseded by the results of job ...",
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.contracts import CodedConcept, ResultFile
from dicom_node.result_kinds import ResultKind
from dicom_node.results.carried import TYPE2, TYPE3
from dicom_node.results.charset import initial_character_set
from dicom_node.results.coding import coded, long_string
from dicom_node.results.figures import clamp_slice, image_label
from dicom_node.results.inputs import EncodeInputs, SkipKind, save_dataset
from dicom_node.results.provenance import stamp_datetime

# CID 7010 Key Object Selection Document Title
OF_INTEREST = CodedConcept(value="113000", scheme_designator="DCM", meaning="Of Interest")
# CID 7011 Rejected for Quality Reasons and its siblings (IHE IOCM rejection notes)
REJECTED_FOR_QUALITY_REASONS = CodedConcept(
    value="113001", scheme_designator="DCM", meaning="Rejected for Quality Reasons"
)
REJECTED_FOR_PATIENT_SAFETY_REASONS = CodedConcept(
    value="113037", scheme_designator="DCM", meaning="Rejected for Patient Safety Reasons"
)
DATA_RETENTION_POLICY_EXPIRED = CodedConcept(
    value="113039", scheme_designator="DCM", meaning="Data Retention Policy Expired"
)


@dataclass(frozen=True)
class SelectedInstance:
    """One instance a KOS selects: UIDs, and whether it is an image (IMAGE vs COMPOSITE item)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    is_image: bool = True

    @classmethod
    def from_result(
        cls, record: ResultFile, study_instance_uid: str, *, is_image: bool = False
    ) -> SelectedInstance:
        """An object the node wrote (a bundle's ResultFile): SEG/SR/PR are not images to TID 2010."""
        return cls(
            study_instance_uid=study_instance_uid,
            series_instance_uid=record.series_instance_uid,
            sop_class_uid=record.sop_class_uid,
            sop_instance_uid=record.sop_instance_uid,
            is_image=is_image,
        )

    def stub(self, patient_study: Dataset) -> Dataset:
        """What highdicom reads of a referenced object: its identifiers (and, for the first, the
        patient and study it copies into the document)."""
        ds = Dataset()
        for elem in patient_study:
            ds.add(elem)
        ds.StudyInstanceUID = self.study_instance_uid
        ds.SeriesInstanceUID = self.series_instance_uid
        ds.SOPClassUID = self.sop_class_uid
        ds.SOPInstanceUID = self.sop_instance_uid
        if self.is_image:  # highdicom writes an IMAGE item for datasets with Rows and Columns
            ds.Rows, ds.Columns = 1, 1
        return ds


def _patient_study(study: Dataset) -> Dataset:
    out = Dataset()
    for keyword in (*TYPE2, *TYPE3):
        if keyword in study:
            out[keyword] = study[keyword]
    return out


def build_kos(
    *,
    title: CodedConcept,
    selected: Sequence[SelectedInstance],
    study: Dataset,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    manufacturer: str,
    description: str | None = None,
    series_description: str = "",
    content_datetime: datetime | None = None,
    character_set: str | None = None,
) -> hd.ko.KeyObjectSelectionDocument:
    """A KOS titled ``title`` selecting ``selected`` in the study of ``study`` (PS3.3 C.17.6)."""
    if not selected:
        raise ValueError("a Key Object Selection must select at least one instance")
    patient_study = _patient_study(study)
    evidence = [s.stub(patient_study) for s in selected]
    content = hd.ko.KeyObjectSelection(
        document_title=coded(title),
        referenced_objects=evidence,
        description=long_string(description, max_length=1024) if description else None,
    )
    document = hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=manufacturer,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        specific_character_set=character_set or initial_character_set(study),
    )
    if series_description:
        document.SeriesDescription = series_description[:64]
    stamp_datetime(document, content_datetime or datetime.now())
    return document


# ---------------------------------------------------------------------------------------------
# Result kind "kos-key-images" (dicom_node.result_kinds)
# ---------------------------------------------------------------------------------------------


def key_slices(inputs: EncodeInputs) -> dict[int, list[str]]:
    """Slice index -> what it is the key image of: each finding and each compact structure."""
    out: dict[int, list[str]] = {}
    for finding in inputs.analysis.findings:
        out.setdefault(clamp_slice(finding.key_slice_index, inputs.volume), []).append(finding.label)
    for segment in inputs.analysis.segments:
        key = inputs.stats.key_slice(segment.segment_number)
        if key is not None and not segment.diffuse:
            out.setdefault(key, []).append(segment.label)
    return out


def encode_key_images(
    inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]
) -> list[ResultFile]:
    """The key images of the findings and compact structures, as a KOS titled "Of Interest"."""
    keys = key_slices(inputs)
    if not keys:
        raise SkipKind("no finding and no compact structure: no key image")
    selected = []
    seen = set()
    for k in sorted(keys):
        source = inputs.volume.slices[k]
        if source.sop_instance_uid in seen:
            continue  # frames of one multi-frame instance: the instance once
        seen.add(source.sop_instance_uid)
        selected.append(
            SelectedInstance(
                study_instance_uid=inputs.study_instance_uid,
                series_instance_uid=inputs.volume.series_instance_uid,
                sop_class_uid=source.sop_class_uid,
                sop_instance_uid=source.sop_instance_uid,
            )
        )
    description = "AI key images ({}): {}".format(
        inputs.title,
        "; ".join(
            f"{image_label(inputs.volume, k)}: {', '.join(names)}" for k, names in sorted(keys.items())
        ),
    )
    document = build_kos(
        title=OF_INTEREST,
        selected=selected,
        study=inputs.sources[0],
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        sop_instance_uid=inputs.uid(f"{kind.role}-instance"),
        series_number=kind.series_number,
        manufacturer=inputs.manufacturer,
        description=description,
        series_description=inputs.series_description(kind),
        content_datetime=inputs.content_datetime,
        character_set=inputs.character_set,
    )
    return [
        save_dataset(
            kind,
            document,
            inputs.out_dir / f"{kind.role}.dcm",
            source_character_set=inputs.source_character_set,
        )
    ]
