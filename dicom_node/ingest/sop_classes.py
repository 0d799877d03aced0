"""What the SCP accepts: storage SOP classes and transfer syntaxes (PS3.4 B.5, PS3.5 Annex A).

Two kinds of storage SOP classes are accepted:

* **input** classes (CT Image, Enhanced CT, Legacy Converted Enhanced CT): stored and routable;
* **derived** classes (SEG binary and labelmap, the SR classes, GSPS, Secondary Capture): stored
  but never routed as input, because they are what this node (or another AI node) produces: a PACS
  that stores our results back into the study must not make us process our own output (the
  Orthanc feedback loop in dicom-notes.md).

Transfer syntaxes are accepted as sent; pixel data is decoded later where it is read
(``dicom_node.imaging``), so the SCP never transcodes.
"""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

VERIFICATION = UID("1.2.840.10008.1.1")

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.2")

SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.4")
LABEL_MAP_SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.7")  # Sup 243
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")
ENHANCED_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.22")
COMPREHENSIVE_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.33")
COMPREHENSIVE_3D_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.34")
GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.11.1")
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
MULTIFRAME_SINGLE_BIT_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.1")
MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.2")
MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.3")
MULTIFRAME_TRUE_COLOR_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.4")

# Routable input: the CT model's source images.
INPUT_SOP_CLASSES: frozenset[str] = frozenset(
    {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE}
)

# Stored, never routed: results (ours or another node's).
DERIVED_SOP_CLASSES: frozenset[str] = frozenset(
    {
        SEGMENTATION_STORAGE,
        LABEL_MAP_SEGMENTATION_STORAGE,
        BASIC_TEXT_SR_STORAGE,
        ENHANCED_SR_STORAGE,
        COMPREHENSIVE_SR_STORAGE,
        COMPREHENSIVE_3D_SR_STORAGE,
        GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
        SECONDARY_CAPTURE_IMAGE_STORAGE,
        MULTIFRAME_SINGLE_BIT_SC_STORAGE,
        MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE,
        MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
        MULTIFRAME_TRUE_COLOR_SC_STORAGE,
    }
)

STORAGE_SOP_CLASSES: frozenset[str] = INPUT_SOP_CLASSES | DERIVED_SOP_CLASSES

# Classes whose IOD has Pixel Data (Image Pixel module, PS3.3 C.7.6.3): a store without it is
# refused. SR and GSPS carry no pixels.
PIXEL_SOP_CLASSES: frozenset[str] = frozenset(
    {
        CT_IMAGE_STORAGE,
        ENHANCED_CT_IMAGE_STORAGE,
        LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
        SEGMENTATION_STORAGE,
        LABEL_MAP_SEGMENTATION_STORAGE,
        SECONDARY_CAPTURE_IMAGE_STORAGE,
        MULTIFRAME_SINGLE_BIT_SC_STORAGE,
        MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE,
        MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
        MULTIFRAME_TRUE_COLOR_SC_STORAGE,
    }
)

NATIVE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
)
# Encapsulated (compressed) pixel data, PS3.5 A.4.
ENCAPSULATED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
)
# Our order is the preference when a peer proposes several in one presentation context (pynetdicom
# takes the first of ours the peer offered): explicit VR first (keeps the VRs of private tags),
# then the compressed ones, accepted as sent.
ACCEPTED_TRANSFER_SYNTAXES: tuple[UID, ...] = NATIVE_TRANSFER_SYNTAXES + ENCAPSULATED_TRANSFER_SYNTAXES
