"""What the SCP accepts: storage SOP classes and transfer syntaxes (PS3.4 B.5, PS3.5 Annex A).

Two kinds of storage SOP classes are accepted:

* **input** classes (CT Image, Enhanced CT, Legacy Converted Enhanced CT): stored and routable;
* **derived** classes (SEG binary and labelmap, the SR classes and KOS, GSPS, Secondary Capture,
  encapsulated PDF, parametric map — ``dicom_node.constants.DERIVED_SOP_CLASSES``): stored
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

# The classes themselves live in dicom_node.constants (taken from pydicom).
from dicom_node.constants import (
    CT_IMAGE_STORAGE,
    DERIVED_SOP_CLASSES,
    ENHANCED_CT_IMAGE_STORAGE,
    INPUT_SOP_CLASSES,
    LABEL_MAP_SEGMENTATION_STORAGE,
    LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
    MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE,
    MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
    MULTIFRAME_SINGLE_BIT_SC_STORAGE,
    MULTIFRAME_TRUE_COLOR_SC_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
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

# Classes whose IOD has no pixels at all (PS3.3 A.35 SR documents and KOS, A.33 presentation
# states, A.45 encapsulated documents): Pixel Data in one of them is refused (0xA900, a CT image
# sent under an SR class). Other classes without an entry in PIXEL_SOP_CLASSES (a parametric map:
# Float Pixel Data) are not checked either way.
NO_PIXEL_SOP_CLASS_PREFIXES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, KOS
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated documents
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
