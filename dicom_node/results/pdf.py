"""Result kinds "pdf" (Encapsulated PDF, PS3.3 A.45.1) and "sc-summary" (the same page as a
Secondary Capture image): a summary every PACS can show (issue 14 item 4). The page itself is
drawn by :mod:`dicom_node.results.summary`.

The Encapsulated PDF object: Patient and General Study modules from the cleaned source header
(results.carried), Encapsulated Document Series (Modality DOC), General and SC Equipment
(ConversionType WSD), Encapsulated Document (DocumentTitle, MIME type, the PDF, its length, the CT
key images it was made from in Source Instance Sequence), SOP Common. BurnedInAnnotation is NO:
the page prints no patient identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from dicom_node.constants import ENCAPSULATED_PDF_STORAGE
from dicom_node.contracts import ResultFile
from dicom_node.errors import PermanentError
from dicom_node.result_kinds import ResultKind
from dicom_node.results.carried import TYPE2, TYPE3
from dicom_node.results.charset import initial_character_set
from dicom_node.results.inputs import EncodeInputs, save_dataset
from dicom_node.results.provenance import copy_body_part, stamp_datetime
from dicom_node.results.sources import SourceVolume
from dicom_node.results.summary import SummaryContent, summary_content, summary_page, summary_pdf

DOCUMENT_TITLE = "AI result summary"


def build_encapsulated_pdf(
    pdf: bytes,
    *,
    study: Dataset,
    references: Sequence[tuple[str, str]],
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    manufacturer: str,
    algorithm: str,
    version: str,
    series_description: str,
    document_title: str = DOCUMENT_TITLE,
    content_datetime: datetime,
    character_set: str | None,
) -> Dataset:
    """An Encapsulated PDF object (PS3.3 A.45.1) holding ``pdf`` for the study of ``study`` (a
    cleaned source header); ``references`` are (SOP Class UID, SOP Instance UID) of the images
    the document was made from."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if character_set:
        ds.SpecificCharacterSet = character_set
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    # Patient, General Study (cleaned: results.carried)
    ds.StudyInstanceUID = study.StudyInstanceUID
    for keyword in (*TYPE2, *TYPE3):
        if keyword in study:
            ds[keyword] = study[keyword]
    # Encapsulated Document Series (PS3.3 C.24.1)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:64]
    # General Equipment, SC Equipment (PS3.3 C.7.5.1, C.8.6.1)
    ds.Manufacturer = manufacturer[:64]
    ds.ManufacturerModelName = algorithm[:64]
    ds.SoftwareVersions = version[:64]
    ds.ConversionType = "WSD"  # workstation
    # Encapsulated Document (PS3.3 C.24.2)
    ds.InstanceNumber = 1
    ds.ContentDate = content_datetime.strftime("%Y%m%d")
    ds.ContentTime = content_datetime.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "NO"  # the page prints no patient identifier
    ds.DocumentTitle = document_title[:1024]
    ds.ConceptNameCodeSequence = []
    if references:
        items = []
        for sop_class_uid, sop_instance_uid_ in references:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class_uid
            item.ReferencedSOPInstanceUID = sop_instance_uid_
            items.append(item)
        ds.SourceInstanceSequence = items
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")  # even length (PS3.5 7.1.1)
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    return ds


def _content(inputs: EncodeInputs) -> SummaryContent:
    if inputs.hu is None:  # the encoder checks ResultKind.needs_hu first
        raise PermanentError("the summary needs the HU volume for its key images")
    return summary_content(
        hu=inputs.hu,
        stats=inputs.stats,
        analysis=inputs.analysis,
        volume=inputs.volume,
        manufacturer=inputs.manufacturer,
        content_datetime=inputs.content_datetime,
        job_id=inputs.job_id,
    )


def _key_references(content: SummaryContent, volume: SourceVolume) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k in content.key_slices:
        source = volume.slices[k]
        if (source.sop_class_uid, source.sop_instance_uid) not in out:
            out.append((source.sop_class_uid, source.sop_instance_uid))
    return out


def encode_pdf(inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]) -> list[ResultFile]:
    """Result kind "pdf": the summary as an Encapsulated PDF object."""
    content = _content(inputs)
    ds = build_encapsulated_pdf(
        summary_pdf(content, when=inputs.content_datetime),
        study=inputs.sources[0],
        references=_key_references(content, inputs.volume),
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        sop_instance_uid=inputs.uid(f"{kind.role}-instance"),
        series_number=kind.series_number,
        manufacturer=inputs.manufacturer,
        algorithm=inputs.analysis.algorithm_name,
        version=inputs.analysis.algorithm_version,
        series_description=inputs.series_description(kind),
        content_datetime=inputs.content_datetime,
        character_set=inputs.character_set,
    )
    return [
        save_dataset(
            kind, ds, inputs.out_dir / f"{kind.role}.dcm", source_character_set=inputs.source_character_set
        )
    ]


def encode_sc_summary(
    inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]
) -> list[ResultFile]:
    """Result kind "sc-summary": the same page as one RGB Secondary Capture image, for PACS that
    display images only."""
    content = _content(inputs)
    page = np.asarray(summary_page(content), dtype=np.uint8)
    first = inputs.volume.slices[0]
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=first.dataset,
        pixel_array=page,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=("L", "P"),  # replaced below: a page has no patient orientation
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        series_number=kind.series_number,
        sop_instance_uid=inputs.uid(f"{kind.role}-instance"),
        instance_number=1,
        manufacturer=inputs.manufacturer,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        specific_character_set=inputs.character_set or initial_character_set(first.dataset),
    )
    image.add_new(
        0x00200020, "CS", None
    )  # PatientOrientation, Type 2: empty (a report page): unknown (a report page, not a view of the patient)
    copy_body_part(image, first.dataset)
    image.ImageType = ["DERIVED", "SECONDARY", "AI_SUMMARY"]
    image.SeriesDescription = inputs.series_description(kind)[:64]
    image.ImageComments = f"{content.warning}. {content.title}: {content.algorithm}."[:10240]
    image.BurnedInAnnotation = "NO"
    image.ConversionType = "WSD"
    references = []
    for sop_class_uid, sop_instance_uid in _key_references(content, inputs.volume):
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = sop_instance_uid
        references.append(item)
    if references:
        image.SourceImageSequence = references
    image.DerivationDescription = "Summary page of AI results with key images"
    stamp_datetime(image, inputs.content_datetime)
    return [
        save_dataset(
            kind, image, inputs.out_dir / f"{kind.role}.dcm", source_character_set=inputs.source_character_set
        )
    ]
