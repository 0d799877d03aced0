"""Codes, colours and names shared by the result encoders."""

from __future__ import annotations

import re

import highdicom as hd

from dicom_node.contracts import CodedConcept, SegmentDescription

# Distinct, readable colours for segments that bring none (tab20-like, alternating light/dark).
DEFAULT_COLORS_RGB: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)
FINDING_COLOR_RGB = (255, 255, 0)  # boxes and text of detections: yellow, like a caliper

# Units (UCUM) and concept names used in the SR and GSPS text.
UCUM_ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
UCUM_MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
UCUM_HU = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
UCUM_NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
# TID 1500 Procedure Reported must come from CID 100 (Quantitative Diagnostic Imaging Procedures).
CT_PROCEDURE = hd.sr.CodedConcept("25045-6", "LN", "CT unspecified body region")


def coded(concept: CodedConcept) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(concept.value, concept.scheme_designator, concept.meaning)


def segment_color(segment: SegmentDescription) -> tuple[int, int, int]:
    if segment.color_rgb is not None:
        return segment.color_rgb
    return DEFAULT_COLORS_RGB[(segment.segment_number - 1) % len(DEFAULT_COLORS_RGB)]


def cielab(rgb: tuple[int, int, int]) -> hd.color.CIELabColor:
    """Recommended Display CIELab Value from sRGB 0..255 (PS3.3 C.10.7.1.1)."""
    return hd.color.CIELabColor.from_rgb(rgb[0], rgb[1], rgb[2])


def code_string(text: str, *, max_length: int = 16) -> str:
    """A CS value: upper case, digits, space and underscore only (PS3.5 Table 6.2-1)."""
    cleaned = re.sub(r"[^A-Z0-9 _]", "_", text.upper())
    return cleaned[:max_length].rstrip() or "AI"


def long_string(text: str, *, max_length: int = 64) -> str:
    """A LO value: no backslash or control characters, at most 64 characters."""
    cleaned = re.sub(r"[\\\x00-\x1f]", " ", text)
    return cleaned[:max_length]
