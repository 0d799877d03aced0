"""One home for the node's fixed names: SOP classes, Celery task and queue names.

Every package may import this module (the ``dicom_node`` stages, ``worker``, ``plugins``); it
imports nothing but pydicom, so the Orthanc plugin and the SCP process stay light. SOP Class UIDs
are pydicom's (PS3.6 Annex A) where pydicom 3.0 names them; the few it does not know yet are
spelled out with the part of the standard that defines them.
"""

from __future__ import annotations

from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    EnhancedCTImageStorage,
    EnhancedSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    LegacyConvertedEnhancedCTImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    ParametricMapStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

# ---------------------------------------------------------------------------------------------
# SOP classes (PS3.4 Annex B storage classes, PS3.4 A.4 verification)
# ---------------------------------------------------------------------------------------------

VERIFICATION = UID("1.2.840.10008.1.1")  # PS3.4 A.4; pydicom 3.0 has no name for it
# PS3.4 C.6.2: the query-back that confirms a C-STORE delivery (dicom_node.delivery.cfind)
STUDY_ROOT_QR_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")

CT_IMAGE_STORAGE = CTImageStorage
ENHANCED_CT_IMAGE_STORAGE = EnhancedCTImageStorage
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = LegacyConvertedEnhancedCTImageStorage

SEGMENTATION_STORAGE = SegmentationStorage  # BINARY (and FRACTIONAL) SEG
# Label Map Segmentation Storage (Supplement 243, 2024): not in pydicom 3.0.2.
LABEL_MAP_SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.7")
BASIC_TEXT_SR_STORAGE = BasicTextSRStorage
ENHANCED_SR_STORAGE = EnhancedSRStorage
COMPREHENSIVE_SR_STORAGE = ComprehensiveSRStorage
COMPREHENSIVE_3D_SR_STORAGE = Comprehensive3DSRStorage
KEY_OBJECT_SELECTION_DOCUMENT_STORAGE = KeyObjectSelectionDocumentStorage
GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE = GrayscaleSoftcopyPresentationStateStorage
SECONDARY_CAPTURE_IMAGE_STORAGE = SecondaryCaptureImageStorage
MULTIFRAME_SINGLE_BIT_SC_STORAGE = MultiFrameSingleBitSecondaryCaptureImageStorage
MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE = MultiFrameGrayscaleByteSecondaryCaptureImageStorage
MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
MULTIFRAME_TRUE_COLOR_SC_STORAGE = MultiFrameTrueColorSecondaryCaptureImageStorage
ENCAPSULATED_PDF_STORAGE = EncapsulatedPDFStorage
PARAMETRIC_MAP_STORAGE = ParametricMapStorage

# The CT model's source images: the only classes that may start work.
INPUT_SOP_CLASSES: frozenset[str] = frozenset(
    {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE}
)

# What a node like this one writes: stored when a PACS sends it, never routed as input (the
# Orthanc feedback loop, dicom-notes.md). Whole families by UID prefix, so a SR or presentation
# state class we do not list is still recognised: every SR (…88.x), every presentation state
# (…11.x), every multi-frame Secondary Capture (…7.x).
DERIVED_SOP_CLASSES: frozenset[str] = frozenset(
    {
        SEGMENTATION_STORAGE,
        LABEL_MAP_SEGMENTATION_STORAGE,
        BASIC_TEXT_SR_STORAGE,
        ENHANCED_SR_STORAGE,
        COMPREHENSIVE_SR_STORAGE,
        COMPREHENSIVE_3D_SR_STORAGE,
        KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
        GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
        SECONDARY_CAPTURE_IMAGE_STORAGE,
        MULTIFRAME_SINGLE_BIT_SC_STORAGE,
        MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE,
        MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
        MULTIFRAME_TRUE_COLOR_SC_STORAGE,
        ENCAPSULATED_PDF_STORAGE,
        PARAMETRIC_MAP_STORAGE,
    }
)
DERIVED_SOP_CLASS_PREFIXES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, KOS
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.7.",  # multi-frame secondary capture
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated documents
)


def is_derived_sop_class(sop_class_uid: str) -> bool:
    """True for a result-like object (SEG, SR, KOS, PR, SC, PDF, parametric map): never input."""
    return sop_class_uid in DERIVED_SOP_CLASSES or sop_class_uid.startswith(DERIVED_SOP_CLASS_PREFIXES)


# ---------------------------------------------------------------------------------------------
# Celery: task names and queues. Producers (the SCP process, the Orthanc plugin, the CLI) send by
# name and never import the tasks, so they never load the model.
# ---------------------------------------------------------------------------------------------

TASK_ROUTE_STUDY = "worker.tasks.route_study"
TASK_RUN_PIPELINE = "worker.tasks.run_pipeline"
TASK_DELIVER = "worker.tasks.deliver"

QUEUE_ROUTING = "routing"
QUEUE_INFERENCE = "inference"
QUEUE_INFERENCE_STAT = "inference-stat"
QUEUE_DELIVERY = "delivery"
QUEUES: tuple[str, ...] = (QUEUE_ROUTING, QUEUE_INFERENCE, QUEUE_INFERENCE_STAT, QUEUE_DELIVERY)
