"""STOW-RS ingest (PS3.18 10.5): ``POST /dicom-web/studies[/{study}]`` into the same staging.

::

    router = make_stow_router(
        receiver=InstanceReceiver(staging, limits=ImageLimits.from_settings(s.dicom), uid_root=s.uid_root),
        on_instance=tracker.instance_stored,
        on_request_complete=lambda req: tracker.association_released(req.request_id),
        auth=admin_api.require_token,        # any FastAPI dependency; 401/403 are its business
    )
    app.include_router(router)

Each part of the ``multipart/related; type="application/dicom"`` body is a Part 10 file; it goes
through exactly what a C-STORE goes through (:class:`~dicom_node.ingest.receive.InstanceReceiver`:
the structural validation, the PHI registry, the atomic durable staging, the routable flag), and
each failure carries the same code a C-STORE would be answered with, here as FailureReason
(0008,1197). The body is parsed as it streams in (:class:`MultipartRelatedParser`): a part up to
8 MiB is held in memory, a larger one is spooled to a file in staging's ``.incoming`` and staged
from there (:meth:`~dicom_node.ingest.receive.InstanceReceiver.receive_part10_file`), so memory
does not grow with the instance size; a part larger than ``dicom.max_instance_bytes`` is read to
its end without being kept and fails with 0xA701.

Response (PS3.18 10.5.3, ``application/dicom+json``): ReferencedSOPSequence (0008,1199) for the
stored instances (a duplicate of an instance already staged counts as stored, as on the SCP path),
FailedSOPSequence (0008,1198) with FailureReason for the others, and per failed instance a
``Warning: 299 ctnode "<SOP Instance UID>: 0x<FailureReason> <reason>"`` header with the reason in
words (the table in :mod:`dicom_node.ingest.validation`). HTTP status: 200 all stored,
202 some stored and some failed, 409 none stored, 400 a body that is not a well-formed multipart
message or has no part, 415 a request that is not ``multipart/related; type="application/dicom"``.
On ``/studies/{study}``, an instance of another study
fails with 0xA900 ("does not match", PS3.4 Table B.2-1) and is not staged.

Completion (decided here, documented for the assembly side): the end of a STOW request is treated
like the release of a C-STORE association. ``on_request_complete`` receives a
:class:`StowRequestSummary` whose ``request_id`` is the ``association_id`` of every
``InstanceStored`` of that request, so the tracker's association-release rule applies unchanged:
the studies the request carried complete after ``completion.association_release_grace_s`` if
nothing else arrives for them. A request is not a completion signal on its own because clients
commonly send one request per series; the quiet period, expected counts and the late-series
policy cover studies spread over several requests.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydicom.dataset import Dataset

from dicom_node.contracts import InstanceStored
from dicom_node.errors import IngestError
from dicom_node.ingest.receive import InstanceReceiver, Origin, split_part10
from dicom_node.ingest.validation import STATUS_TOO_LARGE

logger = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
# PS3.18 Table 10.5.3-2 failure reasons beyond the C-STORE statuses IngestError carries.
FAILURE_PROCESSING = 0x0110  # Processing failure (an unexpected error on our side)
FAILURE_NOT_MATCHING = 0xA900  # instance of another study than the one in the URL
FAILURE_CANNOT_UNDERSTAND = 0xC000
DEFAULT_MAX_PART_BYTES = 4 * 1024**3


# ---------------------------------------------------------------------------------------------
# multipart/related (RFC 2387 over RFC 2046 5.1), streaming
# ---------------------------------------------------------------------------------------------


class MultipartError(ValueError):
    """The body is not a well-formed multipart message."""


HEAD_BYTES = 64 * 1024  # kept of every part, spilled or not: its File Meta, for the response
DEFAULT_SPILL_BYTES = 8 * 1024**2


@dataclass(frozen=True)
class Part:
    """One body part. Small ones are in ``body``; past ``spill_bytes`` the body is in the file
    ``path`` instead (``body`` empty); past ``max_part_bytes`` it is dropped (``oversized``)."""

    headers: dict[str, str]  # lower-case names
    body: bytes
    path: Path | None = None
    size: int = 0
    oversized: bool = False
    head: bytes = b""  # the first HEAD_BYTES of the body in every case

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def discard(self) -> None:
        """Remove the spill file, if any (the part has been stored or refused)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


class MultipartRelatedParser:
    """Incremental parser: :meth:`feed` chunks, get complete parts; :meth:`close` at the end.

    The boundary delimiter is CRLF "--" boundary (RFC 2046 5.1.1); the body may start with the
    delimiter line without the CRLF, so parsing starts as if a CRLF had been seen. Preamble and
    epilogue are ignored; so is transport padding (whitespace) after a boundary.
    """

    _PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)

    def __init__(
        self,
        boundary: str,
        *,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        spool: Callable[[], Path] | None = None,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
    ) -> None:
        """``spool`` names a new file for a part that grows past ``spill_bytes`` (None: keep
        every part in memory); a part past ``max_part_bytes`` is read to its end and dropped."""
        if not boundary or len(boundary) > 200:
            raise MultipartError("missing or overlong boundary")
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        self._buffer = bytearray(b"\r\n")
        self._state = self._PREAMBLE
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._max_part_bytes = max_part_bytes
        self._spool = spool
        self._spill_bytes = spill_bytes
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self._head = b""
        self._oversized = False
        self._search_from = 0
        self.parts_seen = 0

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, chunk: bytes) -> Iterator[Part]:
        if self._state == self._DONE:
            return  # epilogue
        self._buffer += chunk
        while True:
            if self._state in (self._PREAMBLE, self._BODY):
                index = self._buffer.find(self._delimiter, self._search_from)
                if index < 0:
                    keep = len(self._delimiter) - 1
                    if self._state == self._BODY and len(self._buffer) > keep:
                        self._take_body(len(self._buffer) - keep)
                    elif self._state == self._PREAMBLE and len(self._buffer) > keep:
                        del self._buffer[: len(self._buffer) - keep]
                    self._search_from = max(0, len(self._buffer) - keep)
                    return
                finished: Part | None = None
                if self._state == self._BODY:
                    self._take_body(index)
                    index = 0
                    finished = self._finish_part()
                del self._buffer[: index + len(self._delimiter)]
                self._search_from = 0
                self._state = self._AFTER_DELIMITER
                if finished is not None:
                    yield finished
            if self._state == self._AFTER_DELIMITER:
                if len(self._buffer) < 2:
                    return
                if self._buffer[:2] == b"--":
                    self._state = self._DONE
                    self._buffer.clear()
                    return
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > 1024:
                        raise MultipartError("no line end after a boundary")
                    return
                if self._buffer[:end].strip(b" \t"):
                    raise MultipartError("unexpected text after a boundary")
                del self._buffer[: end + 2]
                self._state = self._HEADERS
            if self._state == self._HEADERS:
                if self._buffer[:2] == b"\r\n":  # a part without headers
                    header_block, consumed = b"", 2
                else:
                    end = self._buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(self._buffer) > 64 * 1024:
                            raise MultipartError("part headers longer than 64 KiB")
                        return
                    header_block, consumed = bytes(self._buffer[:end]), end + 4
                self._headers = _parse_headers(header_block)
                del self._buffer[:consumed]
                self._state = self._BODY
                self.parts_seen += 1
                self._start_part()

    def _start_part(self) -> None:
        self._body = bytearray()
        self._size = 0
        self._head = b""
        self._oversized = False

    def _take_body(self, end: int) -> None:
        """Move ``buffer[:end]`` into the current part's body (memory, spill file or nowhere)."""
        if end <= 0:
            return
        chunk = memoryview(self._buffer)[:end]
        try:
            if len(self._head) < HEAD_BYTES:
                self._head += bytes(chunk[: HEAD_BYTES - len(self._head)])
            self._size += end
            if self._oversized:
                pass
            elif self._size > self._max_part_bytes:
                self._oversized = True  # read on to the next boundary, keep nothing
                self._body = bytearray()
                self._close_file(remove=True)
            elif self._file is not None:
                self._file.write(chunk)
            elif self._spool is not None and self._size > self._spill_bytes:
                self._path = self._spool()
                self._file = open(self._path, "wb")  # noqa: SIM115 (closed in _finish_part/abandon)
                self._file.write(self._body)
                self._file.write(chunk)
                self._body = bytearray()
            else:
                self._body += chunk
        finally:
            chunk.release()
        del self._buffer[:end]

    def _finish_part(self) -> Part:
        path = self._path if self._file is not None else None
        self._close_file(remove=False)
        part = Part(
            self._headers,
            bytes(self._body),
            path=path,
            size=self._size,
            oversized=self._oversized,
            head=self._head,
        )
        self._start_part()
        return part

    def _close_file(self, *, remove: bool) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            if remove and self._path is not None:
                with contextlib.suppress(OSError):
                    self._path.unlink()
        self._file = None
        self._path = None if remove else self._path

    def abandon(self) -> None:
        """The request ended early (error, disconnect): remove the part being spilled."""
        self._close_file(remove=True)

    def close(self) -> None:
        if self._state != self._DONE:
            self.abandon()
            raise MultipartError("body ended before the closing boundary")


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.split(b"\r\n"):
        if not raw.strip():
            continue
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise MultipartError("malformed part header line")
        headers[name.strip().lower()] = value.strip()
    return headers


def media_type_and_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``multipart/related; type="application/dicom"; boundary=x`` → (media type, params)."""
    message = Message()
    message["content-type"] = content_type
    params = {k.lower(): str(v) for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


# ---------------------------------------------------------------------------------------------
# the endpoint
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StowOutcome:
    """One part's result."""

    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None  # None: stored
    stored: InstanceStored | None = None
    reason: str = ""  # why it failed, in words (the C-STORE ErrorComment; no patient data)


@dataclass
class StowRequestSummary:
    """What one STOW request carried (no patient data); ``request_id`` = the association id."""

    request_id: str
    client: str
    peer_address: str
    study_instance_uids: set[str] = field(default_factory=set)
    stored: int = 0
    duplicates: int = 0
    failed: int = 0


def stow_response_dataset(outcomes: Collection[StowOutcome]) -> Dataset:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-3) for these outcomes."""
    response = Dataset()
    referenced, failed = [], []
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class_uid
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
        if outcome.failure_reason is None:
            referenced.append(item)
        else:
            item.FailureReason = outcome.failure_reason
            failed.append(item)
    if failed:
        response.FailedSOPSequence = failed
    if referenced:
        response.ReferencedSOPSequence = referenced
    return response


MAX_WARNINGS = 50


def failure_warnings(outcomes: Collection[StowOutcome]) -> list[str]:
    """One HTTP ``Warning`` header value per failed instance (PS3.18 8.7.2 uses Warning for
    status detail; RFC 9111 5.5 syntax: code, agent, quoted text): the SOP Instance UID, the
    FailureReason and the reason in words, which FailedSOPSequence has no attribute for."""
    warnings = []
    for outcome in outcomes:
        if outcome.failure_reason is None:
            continue
        text = (
            f"{outcome.sop_instance_uid or '(unreadable)'}: 0x{outcome.failure_reason:04X} {outcome.reason}"
        )
        text = text.strip().encode("ascii", "replace").decode().replace("\\", "/").replace('"', "'")
        warnings.append(f'299 ctnode "{text[:200]}"')
        if len(warnings) == MAX_WARNINGS:
            break
    return warnings


def stow_http_status(outcomes: Collection[StowOutcome]) -> int:
    """200 all stored, 202 some, 409 none (PS3.18 10.5.3.1)."""
    stored = sum(1 for o in outcomes if o.failure_reason is None)
    if stored == len(outcomes):
        return status.HTTP_200_OK
    return status.HTTP_202_ACCEPTED if stored else status.HTTP_409_CONFLICT


def _best_effort_uids(head: bytes) -> tuple[str, str]:
    """SOP class / instance UIDs from a part's File Meta, for the failure item; "" if unreadable."""
    try:
        meta, _ = split_part10(head)
    except Exception:  # the part is garbage: nothing to reference
        return "", ""
    return (
        str(meta.MediaStorageSOPClassUID).rstrip("\x00 "),
        str(meta.MediaStorageSOPInstanceUID).rstrip("\x00 "),
    )


def store_part(
    receiver: InstanceReceiver, part: Part, *, origin: Origin, study_instance_uid: str | None
) -> StowOutcome:
    """Validate and stage one part (blocking: runs in a worker thread); its spill file is
    removed afterwards either way."""
    try:
        media_type, _ = media_type_and_params(part.content_type or "application/dicom")
        if media_type != "application/dicom":
            return StowOutcome("", "", FAILURE_CANNOT_UNDERSTAND, reason=f"part of type {media_type[:64]}")
        sop_class, sop_instance = _best_effort_uids(part.head)
        if part.oversized:
            limit = receiver.limits.max_instance_bytes
            return StowOutcome(
                sop_class,
                sop_instance,
                STATUS_TOO_LARGE,
                reason=f"part of {part.size // 2**20} MiB exceeds max_instance_bytes ({limit // 2**20} MiB)",
            )
        try:
            if part.path is not None:
                stored = receiver.receive_part10_file(
                    part.path, origin=origin, require_study=study_instance_uid
                )
            else:
                stored = receiver.receive_part10(part.body, origin=origin, require_study=study_instance_uid)
        except IngestError as exc:
            return StowOutcome(sop_class, sop_instance, exc.status, reason=str(exc))
        except Exception:  # the HTTP edge: one bad part must not fail the others
            logger.exception("stow: unexpected failure storing a part", extra={"stage": "ingest"})
            return StowOutcome(
                sop_class, sop_instance, FAILURE_PROCESSING, reason="internal error while storing"
            )
        return StowOutcome(stored.sop_class_uid, stored.sop_instance_uid, None, stored)
    finally:
        part.discard()


def make_bearer_auth(tokens: Callable[[], Collection[str]]) -> Callable[[Request], Awaitable[str]]:
    """A minimal bearer-token dependency (constant-time compare); the admin API has the real one.

    ``tokens`` is called per request (e.g. reading an environment variable), so a rotated token
    takes effect without a restart. Answers 401 with ``WWW-Authenticate: Bearer`` (RFC 6750).
    """

    async def require_bearer(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and presented:
            for token in tokens():
                if token and hmac.compare_digest(presented.strip().encode(), token.encode()):
                    return "bearer"
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="bearer token required",
            headers={"WWW-Authenticate": 'Bearer realm="ct-ai-node"'},
        )

    return require_bearer


def make_stow_router(
    *,
    receiver: InstanceReceiver,
    on_instance: Callable[[InstanceStored], None],
    on_request_complete: Callable[[StowRequestSummary], None],
    auth: Callable[..., Any],
    called_ae_title: str = "",
    max_part_bytes: int | None = None,
    spill_bytes: int = DEFAULT_SPILL_BYTES,
    prefix: str = "/dicom-web",
) -> APIRouter:
    """STOW-RS routes under ``prefix``; ``auth`` is a FastAPI dependency (required on every call).

    ``max_part_bytes`` defaults to the receiver's ``max_instance_bytes`` plus room for a File
    Meta; a larger part is read to its end, not kept, and fails with 0xA701. Parts past
    ``spill_bytes`` are spooled to the staging folder's ``.incoming``, not held in memory.

    When ``auth`` returns a non-empty ``str`` it names the client; it is recorded as the
    ``calling_ae_title`` of the instances (at most 16 characters), the field routing rules match
    on for C-STORE senders.
    """
    router = APIRouter(prefix=prefix, tags=["dicomweb"])
    part_limit = (
        max_part_bytes if max_part_bytes is not None else receiver.limits.max_instance_bytes + HEAD_BYTES
    )

    async def handle(request: Request, client: Any, study_instance_uid: str | None) -> Response:
        media_type, params = media_type_and_params(request.headers.get("content-type", ""))
        part_type = params.get("type", "").lower()
        if media_type != "multipart/related" or part_type != "application/dicom":
            raise HTTPException(
                status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail='expected multipart/related; type="application/dicom"',
            )
        try:
            parser = MultipartRelatedParser(
                params.get("boundary", ""),
                max_part_bytes=part_limit,
                spool=receiver.staging.new_temp_path,
                spill_bytes=spill_bytes,
            )
        except MultipartError as exc:
            raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
        summary = StowRequestSummary(
            request_id=f"stow-{uuid.uuid4()}",
            client=client if isinstance(client, str) else "",
            peer_address=request.client.host if request.client else "",
        )
        origin = Origin(
            calling_ae_title=summary.client[:16],
            called_ae_title=called_ae_title,
            peer_address=summary.peer_address,
            association_id=summary.request_id,
        )
        outcomes: list[StowOutcome] = []
        try:
            async for chunk in request.stream():
                for part in parser.feed(chunk):
                    outcome = await run_in_threadpool(
                        store_part, receiver, part, origin=origin, study_instance_uid=study_instance_uid
                    )
                    outcomes.append(outcome)
                    _account(summary, outcome, on_instance)
            parser.close()
        except MultipartError as exc:
            if not outcomes:
                raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
            # Parts before the damage are staged already: report them, flag the rest as a failure.
            logger.warning(
                "stow: body damaged after %d parts: %s", len(outcomes), exc, extra={"stage": "ingest"}
            )
            outcomes.append(StowOutcome("", "", FAILURE_CANNOT_UNDERSTAND, reason=f"body damaged: {exc}"))
            summary.failed += 1
        finally:
            parser.abandon()  # a part spilling when the body broke off (or the client left)
            if summary.study_instance_uids:
                try:
                    on_request_complete(summary)
                except Exception:  # edge: the staged files are safe; recovery finds them
                    logger.exception("stow: on_request_complete failed", extra={"stage": "ingest"})
        if not outcomes:
            raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="no part in the request")
        logger.info(
            "stow request %s: %d stored, %d duplicates, %d failed",
            summary.request_id,
            summary.stored,
            summary.duplicates,
            summary.failed,
            extra={"stage": "ingest"},
        )
        body = stow_response_dataset(outcomes).to_json()
        response = Response(content=body, status_code=stow_http_status(outcomes), media_type=DICOM_JSON)
        for warning in failure_warnings(outcomes):
            response.headers.append("Warning", warning)
        return response

    @router.post("/studies", response_class=Response)
    # Defaults, not Annotated[...]: with postponed annotations FastAPI cannot see the local ``auth``.
    async def store_instances(request: Request, client: Any = Depends(auth)) -> Response:  # noqa: B008
        return await handle(request, client, None)

    @router.post("/studies/{study_instance_uid}", response_class=Response)
    async def store_study_instances(
        study_instance_uid: str,
        request: Request,
        client: Any = Depends(auth),  # noqa: B008
    ) -> Response:
        return await handle(request, client, study_instance_uid)

    return router


def _account(
    summary: StowRequestSummary, outcome: StowOutcome, on_instance: Callable[[InstanceStored], None]
) -> None:
    if outcome.stored is None:
        summary.failed += 1
        return
    summary.study_instance_uids.add(outcome.stored.study_instance_uid)
    if outcome.stored.duplicate:
        summary.duplicates += 1
    else:
        summary.stored += 1
    try:
        on_instance(outcome.stored)
    except Exception:  # edge: the instance is staged; the tracker's recovery will see it
        logger.exception("stow: on_instance failed", extra={"stage": "ingest"})
