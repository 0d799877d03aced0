"""Secondary-capture overlay fallback (PS3.3 A.8.1) for PACS that cannot show SEG or GSPS.

One RGB Secondary Capture image per key slice (each structure's and each detection's key slice),
in a new series: the windowed CT with the segments blended in their SEG colours, outlines, boxes and
captions burned in, and a red "AI OVERLAY - NOT FOR DIAGNOSIS" banner. The same warning is in
SeriesDescription and ImageComments, ImageType DERIVED\\SECONDARY, BurnedInAnnotation NO (PS3.3
C.7.6.1.1.4: it says whether the pixels identify the patient, and nothing burned in here does), and
each image references the CT slice it was made from (Source Image Sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_node.contracts import AnalysisResult, ResultFile
from dicom_node.errors import PermanentError
from dicom_node.result_kinds import ResultKind
from dicom_node.results.charset import initial_character_set
from dicom_node.results.figures import image_label, segment_figures
from dicom_node.results.inputs import EncodeInputs, save_dataset
from dicom_node.results.labels import LabelStats
from dicom_node.results.provenance import copy_body_part, stamp_datetime
from dicom_node.results.render import key_slice_pictures, render_slice
from dicom_node.results.sources import SourceVolume

WARNING_TEXT = "AI OVERLAY - NOT FOR DIAGNOSIS"
SC_WINDOW = (-160.0, 240.0)  # soft tissue, centre 40 width 400
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, +y, +z in LPS (PS3.3 C.7.6.1.1.1)


def orientation_letter(direction: Sequence[float]) -> str:
    """Patient Orientation letter of a direction's strongest axis (PS3.3 C.7.6.1.1.1; highdicom
    accepts one letter per direction, so an oblique plane is named by its nearest axis)."""
    vector = np.asarray(direction, dtype=np.float64)
    axis = int(np.argmax(np.abs(vector)))
    return _AXIS_LETTERS[axis][0 if vector[axis] > 0 else 1]


def key_slices_for(stats: LabelStats, analysis: AnalysisResult, n_slices: int) -> list[int]:
    """Key slices of the findings and of the compact structures (a whole-body structure's key
    slice is where it is largest, which says nothing; it shows on the others anyway)."""
    keys = {
        k for s in analysis.segments if not s.diffuse and (k := stats.key_slice(s.segment_number)) is not None
    }
    keys |= {min(max(f.key_slice_index, 0), n_slices - 1) for f in analysis.findings}
    if not keys:  # only whole-body structures: show where each is largest
        keys = {k for s in analysis.segments if (k := stats.key_slice(s.segment_number)) is not None}
    return sorted(keys)


def build_sc_images(
    hu: np.ndarray,
    stats: LabelStats,
    analysis: AnalysisResult,
    *,
    volume: SourceVolume,
    series_instance_uid: str,
    sop_instance_uid_for: Callable[[int], str],
    series_number: int,
    manufacturer: str,
    content_datetime: datetime | None = None,
    character_set: str | None = None,
) -> list[hd.sc.SCImage]:
    """One SC image per key slice; ``sop_instance_uid_for(slice_index)`` names each instance."""
    keys = key_slices_for(stats, analysis, hu.shape[0])
    captions = {f.number: f.line for f in segment_figures(stats, analysis, volume)}
    pictures = key_slice_pictures(
        stats.labelmap,
        segments=analysis.segments,
        findings=analysis.findings,
        key_slices=keys,
        captions=captions,
    )
    row_letter = orientation_letter(volume.orientation[:3])
    column_letter = orientation_letter(volume.orientation[3:])
    images = []
    for number, picture in enumerate(pictures, start=1):
        k = picture.slice_index
        source = volume.slices[k]
        rendered = render_slice(
            hu[k],
            stats.labelmap[k],
            picture,
            window=SC_WINDOW,
            banner=f"{WARNING_TEXT} - {image_label(volume, k)}",
        )
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source.dataset,
            pixel_array=np.asarray(rendered, dtype=np.uint8),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_instance_uid,
            series_number=series_number,
            sop_instance_uid=sop_instance_uid_for(k),
            instance_number=number,
            manufacturer=manufacturer,
            pixel_spacing=volume.pixel_spacing_mm,  # type: ignore[arg-type]
            patient_orientation=(row_letter, column_letter),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            specific_character_set=character_set or initial_character_set(source.dataset),
        )
        _describe(image, source.dataset, source.frame_numbers, image_name=image_label(volume, k))
        stamp_datetime(image, content_datetime or datetime.now())
        images.append(image)
    return images


def _describe(image: Dataset, source: Dataset, frame_numbers: list[int] | None, *, image_name: str) -> None:
    image.ImageType = ["DERIVED", "SECONDARY", "AI_OVERLAY"]
    image.SeriesDescription = WARNING_TEXT
    image.ImageComments = f"{WARNING_TEXT}. Burned-in AI overlay of CT {image_name}."
    image.BurnedInAnnotation = "NO"  # the overlay's text names structures and images, never the patient
    image.ConversionType = "WSD"  # workstation (PS3.3 C.8.6.1)
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_numbers:
        reference.ReferencedFrameNumber = frame_numbers
    image.SourceImageSequence = [reference]
    image.DerivationDescription = "Secondary capture of a CT slice with AI segmentation overlay burned in"
    copy_body_part(image, source)


# ---------------------------------------------------------------------------------------------
# Result kind "sc" (dicom_node.result_kinds)
# ---------------------------------------------------------------------------------------------


def encode_sc(inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]) -> list[ResultFile]:
    if inputs.hu is None:  # the encoder checks ResultKind.needs_hu first; this keeps mypy honest
        raise PermanentError("the secondary-capture overlay needs the HU volume")
    images = build_sc_images(
        inputs.hu,
        inputs.stats,
        inputs.analysis,
        volume=inputs.volume,
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        sop_instance_uid_for=lambda k: inputs.uid(f"{kind.role}-instance-{k}"),
        series_number=kind.series_number,
        manufacturer=inputs.manufacturer,
        content_datetime=inputs.content_datetime,
        character_set=inputs.character_set,
    )
    return [
        save_dataset(
            kind,
            image,
            inputs.out_dir / f"{kind.role}-{number:03d}.dcm",
            source_character_set=inputs.source_character_set,
        )
        for number, image in enumerate(images, start=1)
    ]
