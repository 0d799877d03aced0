"""Descriptions carry the measured numbers, formatted as a report would."""

from __future__ import annotations

from inference.contracts import Measurements
from inference.describe import (
    describe_detection,
    describe_localisation,
    describe_segment,
    describe_summary,
    format_hu,
    format_volume_ml,
    to_ascii,
)


def _m(volume_ml: float, mean: float, sd: float, extent: tuple[float, float, float]) -> Measurements:
    return Measurements(
        voxel_count=1,
        volume_ml=volume_ml,
        mean_hu=mean,
        std_hu=sd,
        bbox_voxels=(0, 0, 0, 1, 1, 1),
        extent_mm=extent,
    )


def test_segment_text() -> None:
    assert (
        describe_segment("liver", _m(1523.4, 58.2, 11.6, (180, 200, 160)))
        == "Liver: 1523 mL, mean 58 HU (SD 12)"
    )


def test_detection_text_with_location_image_and_negative_hu() -> None:
    text = describe_detection(
        "lung nodule", _m(0.2, -20.4, 30, (6.1, 8.2, 7.0)), location="right lung", image_number=87
    )
    assert text == "Lung nodule, right lung, 8 \u00d7 7 \u00d7 6 mm, mean \u221220 HU, at image 87"
    assert to_ascii(text) == "Lung nodule, right lung, 8 x 7 x 6 mm, mean -20 HU, at image 87"
    assert to_ascii(text).isascii()


def test_formats() -> None:
    assert format_hu(-0.4) == "0 HU"
    assert format_hu(-999.6) == "\u22121000 HU"
    assert format_volume_ml(4.24) == "4.2 mL"
    assert format_volume_ml(0.042) == "0.042 mL"


def test_localisation_and_summary() -> None:
    loc = describe_localisation("8 mm nodule", image_number=87, z_mm=-123.45, score=0.91)
    assert "image 87" in loc and "z = -123.5 mm" in loc and "91%" in loc
    summary = describe_summary(
        [("body", _m(38512, 0, 1, (1, 1, 1))), ("left lung", _m(2100, -850, 40, (1, 1, 1)))],
        [("lung nodule", _m(1, 0, 1, (12.2, 9, 8))), ("lung nodule", _m(1, 0, 1, (5, 4, 4)))],
    )
    assert (
        summary == "2 structures measured (body 38512 mL, left lung 2100 mL); 2 lung nodules (largest 12 mm)"
    )
    assert describe_summary([]) == "No structure measured and nothing detected."
