"""What a received instance is: its expected series size and the patient identifiers to register
with the PHI log filter.

Whether it may start work ("routable") is :func:`dicom_node.node_results.is_input`, the one check
the SCP, routing and the Orthanc plugin share.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from dicom_node.constants import CT_IMAGE_STORAGE
from dicom_node.phi import PHI_KEYWORDS


def _positive_int(value: object) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def expected_series_instances(header: Dataset) -> int | None:
    """The number of instances the sender says this series has, where it says so.

    Used, in this order:

    * NumberOfSeriesRelatedInstances (0020,1209): exactly the series' instance count (PS3.4 C.3.3),
      present when a PACS forwards what it knows;
    * ImagesInAcquisition (0020,1002) of a single-frame CT Image: images in this acquisition
      (PS3.3 C.7.6.1). It equals the series size only when the series holds one acquisition,
      the usual case for an axial CT series; a series of several acquisitions could look complete
      early, which the tracker's settle time and its late-instance re-open absorb.

    Enhanced (multi-frame) CT carries one instance for many images: no count is derived.
    """
    related = _positive_int(header.get("NumberOfSeriesRelatedInstances"))
    if related is not None:
        return related
    if str(header.get("SOPClassUID", "")) == CT_IMAGE_STORAGE:
        frames = _positive_int(header.get("NumberOfFrames")) or 1
        if frames == 1:
            return _positive_int(header.get("ImagesInAcquisition"))
    return None


def _text_values(value: object) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, Sequence):  # e.g. OtherPatientIDsSequence: identifiers inside items
        for item in value:
            yield from phi_values(item)
    elif isinstance(value, MultiValue):
        for item in value:
            yield from _text_values(item)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")
    else:
        text = str(value)  # str, PersonName, DA/TM values
        if text:
            yield text


def phi_values(header: Dataset) -> list[str]:
    """Values of the patient-identifying attributes (``dicom_node.phi.PHI_KEYWORDS``) present."""
    values: list[str] = []
    for keyword in PHI_KEYWORDS:
        if keyword not in header:
            continue
        try:
            values.extend(_text_values(header[keyword].value))
        except Exception:  # a value in an unknown character set: fall back to its raw bytes
            raw = header.get_item(keyword)
            raw_value = getattr(raw, "value", None)
            if isinstance(raw_value, bytes):
                values.append(raw_value.decode("latin-1"))
    return values
