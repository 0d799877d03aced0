"""What a destination is to the node: something that takes result files, confirms them and answers
a health check. One protocol, one implementation per ``kind`` of destination settings.

==============  ==========================================  ===================================
kind            implementation                              send / confirm / health
==============  ==========================================  ===================================
``dicom``       :class:`dicom_node.delivery.dicom_peer.      C-STORE / C-FIND query-back /
                DicomPeer`                                  C-ECHO
``dicomweb``    :class:`dicom_node.delivery.dicomweb.        STOW-RS / QIDO-RS query-back /
                DicomwebServer`                             QIDO-RS study search
==============  ==========================================  ===================================

The settings class of a kind (``dicom_node.settings``) names its implementation as
``"module:class"``; :func:`open_destination` imports it on first use, so adding a kind touches
its own module and its settings class only (docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from dicom_node.contracts import ResultFile
from dicom_node.delivery.outcome import SendResult
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
