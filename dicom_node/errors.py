"""One error hierarchy for the whole node.

::

    NodeError
    ├── ConfigError                 settings or rules file wrong; names the file:line where known
    ├── IngestError                 an incoming instance cannot be accepted; carries a DIMSE status
    │   ├── OutOfResources          0xA700  disk watermark, staging not writable
    │   ├── SOPClassMismatch        0xA900  dataset does not match the SOP class negotiated
    │   ├── SOPClassNotSupported    0x0122  not a storage class we accept
    │   └── CannotUnderstand        0xC000  truncated, garbage, missing pixel data, absurd sizes
    └── PipelineError               a job cannot go on
        ├── TransientError          source/destination unavailable, GPU busy: retried with backoff
        └── PermanentError          invalid study, out-of-range input, encoding failure,
                                    destination rejects: not retried; job FAILED with the reason

Catch-all ``except Exception`` belongs only at process edges (SCP handler, Celery task, Orthanc
callback), where it is mapped to one of these.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error the node raises on purpose."""


class ConfigError(NodeError):
    """Settings or rules are invalid. ``location`` is ``file:line`` where known."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class IngestError(NodeError):
    """An incoming instance is refused; ``status`` is the DIMSE C-STORE status to answer."""

    status: int = 0xC000

    def __init__(self, message: str, *, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(message)


class OutOfResources(IngestError):
    """PS3.4 Table B.2-1: 0xA700 Refused: Out of Resources."""

    status = 0xA700


class SOPClassMismatch(IngestError):
    """PS3.4 Table B.2-1: 0xA900 Error: Data Set does not match SOP Class."""

    status = 0xA900


class SOPClassNotSupported(IngestError):
    """PS3.7 C.4.2: 0x0122 Refused: SOP Class not supported."""

    status = 0x0122


class CannotUnderstand(IngestError):
    """PS3.4 Table B.2-1: 0xC000-0xCFFF Error: Cannot understand."""

    status = 0xC000


class PipelineError(NodeError):
    """A job step failed. Subclasses say whether trying again can help."""


class TransientError(PipelineError):
    """Worth retrying: a peer is down, busy or timed out."""


class PermanentError(PipelineError):
    """Retrying cannot help: bad input, encoding failure, a peer refused the object."""
