"""Keep patient identifiers out of logs.

:class:`PHIFilter` is installed on the root handlers by :func:`configure_logging`. It cannot know
every identifier by itself, so ingest registers the values it reads (PatientName, PatientID,
PatientBirthDate, AccessionNumber, ...) with :func:`remember_identifiers`; any log record whose
message or arguments contain one of them has it replaced by ``[PHI]``. Code should never pass
these values to a logger in the first place; the filter is the net under that rule.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

# Attributes never logged, never put into manifests or Celery messages.
PHI_KEYWORDS: frozenset[str] = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "PatientBirthName",
        "PatientMotherBirthName",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "AccessionNumber",
        "IssuerOfPatientID",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "RequestingPhysician",
        "InstitutionAddress",
        "MilitaryRank",
        "MedicalRecordLocator",
        "EthnicGroup",
        "PatientComments",
        "AdditionalPatientHistory",
        "StudyID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
    }
)

_MAX_REMEMBERED = 4096
_MIN_LENGTH = 3  # shorter values (e.g. "M") would blank out ordinary words


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, None] = OrderedDict()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            for value in values:
                for variant in _variants(value):
                    self._values[variant] = None
                    self._values.move_to_end(variant)
            while len(self._values) > _MAX_REMEMBERED:
                self._values.popitem(last=False)

    def snapshot(self) -> list[str]:
        with self._lock:
            # longest first, so "DOE^JOHN" is replaced before "DOE"
            return sorted(self._values, key=len, reverse=True)


def _variants(value: str) -> list[str]:
    value = str(value).strip()
    if len(value) < _MIN_LENGTH:
        return []
    out = {value}
    if "^" in value:  # Person Name: also the parts and the "Given Family" form
        parts = [p for p in value.split("^") if p]
        out.update(p for p in parts if len(p) >= _MIN_LENGTH)
        out.add(" ".join(reversed(parts[:2])))
    # a name made of separators only ("^^^", sent by some scanners for an anonymous patient) has no
    # parts: its "Given Family" form is "", which would match between every two characters
    return sorted(v for v in out if len(v) >= _MIN_LENGTH)


_REGISTRY = _Registry()


def remember_identifiers(values: Iterable[str]) -> None:
    """Register identifier values seen in received data so the log filter can mask them."""
    _REGISTRY.add(v for v in values if v)


def redact(text: str) -> str:
    for value in _REGISTRY.snapshot():
        if value in text:
            text = text.replace(value, "[PHI]")
    return text


# pydicom reports a malformed value with the value itself ("Invalid value for VR PN: 'DOE^J'"),
# often while a header is being read, before ingest has registered its identifiers: such values
# are withheld whatever they are.
_PYDICOM_VALUE = re.compile(r"(Invalid value for VR \w+: |Invalid value: |value )('.*?'|\".*?\"|b'.*?')")


class PHIFilter(logging.Filter):
    """Masks remembered identifiers, and values quoted in pydicom's complaints, in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.name.startswith(("pydicom", "py.warnings")):
            cleaned = _PYDICOM_VALUE.sub(r"\1[value withheld]", cleaned)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Root logging with the PHI filter on every handler; structured fields go in ``extra``."""
    root = logging.getLogger()
    if not any(isinstance(f, PHIFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
        handler.addFilter(PHIFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # Python warnings (pydicom warns about malformed values with the value) go through logging,
    # hence through the PHI filter, instead of straight to stderr.
    logging.captureWarnings(True)
    # Libraries that log every copied module / PDU / migration step at INFO: their warnings
    # still show; our own stage logs say what happened at INFO.
    for noisy in ("highdicom", "pynetdicom", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
