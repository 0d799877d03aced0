"""What a destination is to the node: something that takes result files, confirms them and answers
a health check. One protocol, one implementation per ``kind`` of destination settings.

==============  ==========================================  ===================================
kind            implementation                              send / confirm / health / withdraw
==============  ==========================================  ===================================
``dicom``       :class:`dicom_node.delivery.dicom_peer.      C-STORE / C-FIND query-back /
                DicomPeer`                                  C-ECHO / KOS rejection note
``dicomweb``    :class:`dicom_node.delivery.dicomweb.        STOW-RS / QIDO-RS query-back /
                DicomwebServer`                             QIDO-RS study search / KOS note
``orthanc``     :class:`dicom_node.delivery.orthanc.         REST upload / REST lookup /
                OrthancServer`                              ``/system`` / REST DELETE
==============  ==========================================  ===================================

The settings class of a kind (``dicom_node.settings``) names its implementation as
``"module:class"``; :func:`open_destination` imports it on first use, so adding a kind touches
its own module and its settings class only (docs/extending.md).

**Withdrawing** superseded results is an optional part of the protocol (:class:`Withdraws`): a
kind that can take results back implements ``withdraw``. Either it takes a rejection note (a
KOS "Rejected for Quality Reasons", IHE IOCM, built by the caller: ``needs_rejection_note``) and
sends it, or it removes the objects itself (Orthanc's REST DELETE). A kind without it keeps
what it has; the node records that it could not withdraw.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from dicom_node.contracts import ResultFile
from dicom_node.delivery.outcome import SendResult, WithdrawResult
from dicom_node.settings import DestinationBase


@dataclass(frozen=True)
class HealthResult:
    """The answer to "can we reach this destination?" (admin API, dashboard, delivery resumption)."""

    ok: bool
    detail: str
    elapsed_s: float
    status: int | None = None  # the C-ECHO DIMSE status, or the HTTP status for DICOMweb


class Destination(Protocol):
    """A place results go. Implementations never raise for a peer's problem: they report it."""

    name: str

    def send(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> SendResult:
        """Send ``files``; one outcome per file (delivered, warning, transient, permanent)."""
        ...

    def confirm(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> tuple[bool, str]:
        """Does the destination now hold every one of ``files``? → (confirmed, detail)."""
        ...

    def health(self) -> HealthResult:
        """A cheap "are you there and willing to talk to us?" check."""
        ...


@runtime_checkable
class Withdraws(Protocol):
    """A destination that can take back results a re-run superseded (optional)."""

    # True: the caller builds a KOS rejection note and passes it to ``withdraw``; False: the
    # destination removes the objects itself (and ``rejection_note`` is None).
    needs_rejection_note: bool

    def withdraw(
        self,
        files: Sequence[ResultFile],
        *,
        study_instance_uid: str,
        rejection_note: ResultFile | None,
    ) -> WithdrawResult:
        """Withdraw ``files`` (which this destination holds); never raises for a peer's problem."""
        ...


class DestinationFactory(Protocol):
    def __call__(
        self,
        name: str,
        settings: DestinationBase,
        *,
        calling_ae_title: str,
        environ: Mapping[str, str] | None = None,
    ) -> Destination: ...


def open_destination(
    name: str,
    settings: DestinationBase,
    *,
    calling_ae_title: str,
    environ: Mapping[str, str] | None = None,
) -> Destination:
    """The implementation of ``settings``' kind, for the destination called ``name``.

    ``environ`` holds the secrets a kind reads by variable name (a DICOMweb token): the worker
    passes the environment its entry point captured, so no task reads the process environment.
    """
    module_name, _, attribute = type(settings).implementation.partition(":")
    factory = cast(DestinationFactory, getattr(importlib.import_module(module_name), attribute))
    return factory(name, settings, calling_ae_title=calling_ae_title, environ=environ)
