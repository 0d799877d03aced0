"""The one table of result kinds: every object the node can write, one row each.

A row says what a kind is called (its ``role``: the name destinations list in ``objects`` and every
``ResultFile`` carries), its SOP class, its fixed series number (so a radiologist recognises the
series), the function that builds it, and how a destination that asks for it is served when a
bundle lacks it (``fallback``). The encoder (:func:`dicom_node.results.bundle.encode_results`)
builds the requested kinds in table order, so a kind may use what an earlier row wrote (the SR
references the SEG); delivery (:func:`dicom_node.delivery.selection.select_files`) selects by role.

This module is plain data (no stage imports): settings, contracts, results and delivery all read
it. A new output object is one builder module plus one row here (docs/extending.md).

=============  ============================================  ======  ==========================
role           object                                        series  builder
=============  ============================================  ======  ==========================
seg            SEG, BINARY (PS3.3 A.51)                      901     results.seg
seg-labelmap   SEG, LABELMAP (Sup 243)                       902     results.seg
sr             TID 1500 SR, Comprehensive 3D (PS3.16 A)      903     results.sr
sr-planar      the same without volumetric groups            903     results.sr
gsps           Grayscale Softcopy Presentation State         904     results.gsps
sc             Secondary Capture overlay (burned in)         905     results.sc
pdf            Encapsulated PDF summary (PS3.3 A.45.1)       906     results.pdf
sc-summary     the summary page as Secondary Capture         907     results.pdf
kos-key-images Key Object Selection, "Of Interest" (TID 2010) 908    results.kos
=============  ============================================  ======  ==========================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dicom_node.constants import (
    COMPREHENSIVE_3D_SR_STORAGE,
    ENCAPSULATED_PDF_STORAGE,
    GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    LABEL_MAP_SEGMENTATION_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
)


class ResultRole:
    """Names of the built-in kinds. Deliberately not an enum: a new kind is a row, not an edit here."""

    SEG = "seg"
    SEG_LABELMAP = "seg-labelmap"
    SR = "sr"
    SR_PLANAR = "sr-planar"
    GSPS = "gsps"
    SC = "sc"
    PDF = "pdf"
    SC_SUMMARY = "sc-summary"
    KOS_KEY_IMAGES = "kos-key-images"


@dataclass(frozen=True)
class ResultKind:
    role: str
    title: str  # what a person calls it: demo output, dashboard, docs
    sop_class_uid: str
    series_number: int
    builder: str  # "module:function" building it (dicom_node.results.inputs.KindBuilder), loaded lazily
    series_label: str  # series description prefix: "<label> - <algorithm> <version>"
    fallback: str | None = None  # role a destination gets instead when a bundle lacks this one
    needs_hu: bool = False  # builds from the CT pixels (EncodeInputs.hu), not only the label map
    description: str = ""


_KINDS: dict[str, ResultKind] = {}


def register_kind(kind: ResultKind) -> ResultKind:
    """Add a row (a plugin's own object kind, or a test's toy); a role is registered once."""
    existing = _KINDS.get(kind.role)
    if existing is not None and existing != kind:
        raise ValueError(f"result kind {kind.role!r} is already registered differently")
    _KINDS[kind.role] = kind
    return kind


for _kind in (
    ResultKind(
        role=ResultRole.SEG,
        title="SEG (binary)",
        sop_class_uid=SEGMENTATION_STORAGE,
        series_number=901,
        builder="dicom_node.results.seg:encode_binary_seg",
        series_label="AI SEG",
        description="DICOM Segmentation, BINARY: every PACS and viewer that shows SEG takes it",
    ),
    ResultKind(
        role=ResultRole.SEG_LABELMAP,
        title="SEG (label map)",
        sop_class_uid=LABEL_MAP_SEGMENTATION_STORAGE,
        series_number=902,
        builder="dicom_node.results.seg:encode_labelmap_seg",
        series_label="AI SEG LABELMAP",
        fallback=ResultRole.SEG,
        description="DICOM Segmentation, LABELMAP (Sup 243): compact, but older PACS refuse it",
    ),
    ResultKind(
        role=ResultRole.SR,
        title="SR (TID 1500, Comprehensive 3D)",
        sop_class_uid=COMPREHENSIVE_3D_SR_STORAGE,
        series_number=903,
        builder="dicom_node.results.sr:encode_sr",
        series_label="AI SR",
        description="TID 1500 measurement report: planar key-slice groups plus volumetric groups "
        "that reference the SEG segments",
    ),
    ResultKind(
        role=ResultRole.SR_PLANAR,
        title="SR (TID 1500, planar groups only)",
        sop_class_uid=COMPREHENSIVE_3D_SR_STORAGE,
        series_number=903,
        builder="dicom_node.results.sr:encode_planar_sr",
        series_label="AI SR",
        description="TID 1500 report with key-slice groups only: viewers that crash on volumetric "
        "groups without image coordinates (OHIF 3.13, issue 3390) show it",
    ),
    ResultKind(
        role=ResultRole.GSPS,
        title="GSPS",
        sop_class_uid=GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
        series_number=904,
        builder="dicom_node.results.gsps:encode_gsps",
        series_label="AI GSPS",
        description="Presentation state: outlines, boxes and captions on key slices",
    ),
    ResultKind(
        role=ResultRole.SC,
        title="Secondary Capture overlay",
        sop_class_uid=SECONDARY_CAPTURE_IMAGE_STORAGE,
        series_number=905,
        builder="dicom_node.results.sc:encode_sc",
        series_label="AI OVERLAY - NOT FOR DIAGNOSIS",
        needs_hu=True,
        description="Burned-in overlay images of the key slices, for PACS that show neither SEG nor SR",
    ),
    ResultKind(
        role=ResultRole.PDF,
        title="PDF summary (Encapsulated PDF)",
        sop_class_uid=ENCAPSULATED_PDF_STORAGE,
        series_number=906,
        builder="dicom_node.results.pdf:encode_pdf",
        series_label="AI SUMMARY",
        needs_hu=True,
        description="One page every PACS can show: findings table, each structure's figures, key images "
        "with outlines, algorithm and version, 'not for diagnosis' for research-grade models",
    ),
    ResultKind(
        role=ResultRole.SC_SUMMARY,
        title="Summary page (Secondary Capture)",
        sop_class_uid=SECONDARY_CAPTURE_IMAGE_STORAGE,
        series_number=907,
        builder="dicom_node.results.pdf:encode_sc_summary",
        series_label="AI SUMMARY PAGE",
        needs_hu=True,
        description="The PDF summary's page as an image, for PACS that display images only",
    ),
    ResultKind(
        role=ResultRole.KOS_KEY_IMAGES,
        title="Key images (Key Object Selection)",
        sop_class_uid=KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
        series_number=908,
        builder="dicom_node.results.kos:encode_key_images",
        series_label="AI KEY IMAGES",
        description="The key images of the findings and compact structures, flagged 'Of Interest' "
        "(TID 2010), for PACS that show key-image notes",
    ),
):
    register_kind(_kind)

# What a destination receives when its settings do not say, and what a shadow job keeps.
DEFAULT_OBJECTS: tuple[str, ...] = (ResultRole.SEG, ResultRole.SR, ResultRole.GSPS)


def result_kind(role: str) -> ResultKind:
    try:
        return _KINDS[role]
    except KeyError:
        raise KeyError(f"unknown result object {role!r}; known: {', '.join(_KINDS)}") from None


def known_roles() -> tuple[str, ...]:
    """Every registered role, in build order."""
    return tuple(_KINDS)


def check_role(role: str) -> str:
    """``role`` when it is a registered kind (a pydantic validator for settings and contracts)."""
    if role not in _KINDS:
        raise ValueError(f"unknown result object {role!r}; known: {', '.join(_KINDS)}")
    return role


def in_build_order(roles: Iterable[str]) -> list[ResultKind]:
    """The kinds named by ``roles`` in table order (a kind may use what earlier rows wrote)."""
    wanted = set(roles)
    for role in wanted:
        result_kind(role)
    return [kind for kind in _KINDS.values() if kind.role in wanted]


def title_for_sop_class(sop_class_uid: str) -> str:
    """A person's name for an object of this SOP class (the first row that writes it)."""
    for kind in _KINDS.values():
        if kind.sop_class_uid == sop_class_uid:
            return kind.title
    return sop_class_uid
