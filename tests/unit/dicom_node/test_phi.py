"""Patient identifiers never reach the logs, also when pydicom complains about a malformed value."""

from __future__ import annotations

import logging
import warnings

import pydicom
import pytest
from pydicom.valuerep import validate_value

from dicom_node.phi import PHIFilter, configure_logging, remember_identifiers


def test_remembered_identifiers_are_masked() -> None:
    remember_identifiers(["PHI-TEST-ID-4711"])
    record = logging.LogRecord(
        "worker", logging.INFO, __file__, 1, "job for %s done", ("PHI-TEST-ID-4711",), None
    )
    assert PHIFilter().filter(record)
    assert record.getMessage() == "job for [PHI] done"


@pytest.mark.parametrize("name", ["^^^", "^^^^", "A^B", "  ^ "])
def test_a_name_of_separators_or_short_parts_leaves_ordinary_text_alone(name: str) -> None:
    """An anonymous patient sent as "^^^" once made the filter mask between every two characters
    (its "Given Family" form was the empty string) for the rest of the process."""
    remember_identifiers([name])
    record = logging.LogRecord("worker", logging.INFO, __file__, 1, "sent %s", ("series 3",), None)
    assert PHIFilter().filter(record)
    assert record.getMessage() == "sent series 3"


def test_a_pydicom_warning_about_a_malformed_value_does_not_show_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A malformed PatientBirthDate makes pydicom warn with the value itself ("Invalid value for VR
    DA: '19x01231'"), possibly before ingest could register it as an identifier."""
    configure_logging("INFO")
    root = logging.getLogger()
    try:
        with caplog.at_level(logging.WARNING), warnings.catch_warnings():
            warnings.simplefilter("always")
            caplog.handler.addFilter(PHIFilter())
            validate_value("DA", "19x01231", pydicom.config.WARN)
        messages = [r.getMessage() for r in caplog.records]
        assert any("Invalid value for VR DA: [value withheld]" in m for m in messages), messages
        assert not any("19x01231" in m for m in messages)
    finally:
        logging.captureWarnings(False)
        for handler in list(root.handlers):
            if any(isinstance(f, PHIFilter) for f in handler.filters):
                root.removeHandler(handler)
