"""Words grounded in measurements: every number in a description comes from a
:class:`~inference.contracts.Measurements` (or an explicit argument), never from a model's text.

Typography follows radiology reports ("8 × 7 × 6 mm", "−20 HU"); :func:`to_ascii` turns a
description into plain ASCII for a destination whose character set is ASCII only (a DICOM text
attribute without Specific Character Set ISO_IR 192).
"""

from __future__ import annotations

from collections.abc import Sequence

from inference.contracts import Measurements

__all__ = [
    "describe_detection",
    "describe_localisation",
    "describe_segment",
    "describe_summary",
    "format_hu",
    "format_size_mm",
    "format_volume_ml",
    "to_ascii",
]

MINUS = "\u2212"
TIMES = "\u00d7"


def format_hu(value: float) -> str:
    """A HU value rounded to a whole number with a typographic minus: "−20 HU", "58 HU"."""
    n = round(value)
    return f"{MINUS}{-n} HU" if n < 0 else f"{n} HU"


def format_volume_ml(volume_ml: float) -> str:
    """ "1523 mL" from 10 mL up, "4.2 mL" from 0.1 mL, "0.05 mL" below."""
    if volume_ml >= 10:
        return f"{volume_ml:.0f} mL"
    if volume_ml >= 0.1:
        return f"{volume_ml:.1f} mL"
    return f"{volume_ml:.2g} mL"


def format_size_mm(extent_mm: Sequence[float]) -> str:
    """Sizes largest first, whole mm (one decimal under 10 mm is noise at CT resolution):
    "8 × 7 × 6 mm"."""
    sizes = sorted((float(v) for v in extent_mm), reverse=True)
    return f" {TIMES} ".join(f"{round(v):d}" for v in sizes) + " mm"


def _label(name: str) -> str:
    return name[:1].upper() + name[1:]


def describe_segment(name: str, measurements: Measurements) -> str:
    """ "Liver: 1523 mL, mean 58 HU (SD 12)"."""
    m = measurements
    sd = round(m.std_hu)
    return f"{_label(name)}: {format_volume_ml(m.volume_ml)}, mean {format_hu(m.mean_hu)} (SD {sd:d})"


def describe_detection(
    name: str,
    measurements: Measurements,
    *,
    location: str | None = None,
    image_number: int | None = None,
    score: float | None = None,
) -> str:
    """ "Lung nodule, right lung, 8 × 7 × 6 mm, mean −20 HU, at image 87".

    ``image_number`` is the 1-based InstanceNumber of the key slice (slice index + 1 in the
    sorted series); ``score`` is appended as a percentage when given.
    """
    parts = [_label(name)]
    if location:
        parts.append(location)
    parts.append(format_size_mm(measurements.extent_mm))
    parts.append(f"mean {format_hu(measurements.mean_hu)}")
    if image_number is not None:
        parts.append(f"at image {image_number}")
    if score is not None:
        parts.append(f"confidence {round(100 * score):d}%")
    return ", ".join(parts)


def describe_localisation(text: str, *, image_number: int, z_mm: float, score: float | None = None) -> str:
    """ "“8 mm nodule …” → image 87 (z = 123.5 mm)"."""
    out = f"\u201c{text}\u201d \u2192 image {image_number} (z = {z_mm:.1f} mm)"
    if score is not None:
        out += f", confidence {round(100 * score):d}%"
    return out


def describe_summary(
    segments: Sequence[tuple[str, Measurements]],
    detections: Sequence[tuple[str, Measurements]] = (),
) -> str:
    """One line for the whole result, e.g.
    "4 structures measured (body 38512 mL, …); 2 lung nodules (largest 12 mm)"."""
    pieces = []
    if segments:
        listed = ", ".join(f"{name} {format_volume_ml(m.volume_ml)}" for name, m in segments)
        pieces.append(f"{len(segments)} structure{'s' if len(segments) != 1 else ''} measured ({listed})")
    by_kind: dict[str, list[Measurements]] = {}
    for name, m in detections:
        by_kind.setdefault(name, []).append(m)
    for name, found in by_kind.items():
        largest = max(max(m.extent_mm) for m in found)
        plural = name if len(found) == 1 else name + "s"
        pieces.append(f"{len(found)} {plural} (largest {round(largest):d} mm)")
    if not pieces:
        return "No structure measured and nothing detected."
    return "; ".join(pieces)


_ASCII = {MINUS: "-", TIMES: "x", "\u2192": "->", "\u201c": '"', "\u201d": '"'}


def to_ascii(text: str) -> str:
    """Replace the typographic characters used here with ASCII ones."""
    for k, v in _ASCII.items():
        text = text.replace(k, v)
    return text
