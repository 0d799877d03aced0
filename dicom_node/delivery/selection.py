"""Which result files a destination gets, and the presentation contexts needed to send them."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_node.contracts import ResultBundle, ResultFile
from dicom_node.result_kinds import result_kind
from dicom_node.settings import DestinationBase

logger = logging.getLogger(__name__)

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def select_files(
    bundle: ResultBundle, dest: DestinationBase, *, skip_sop_instance_uids: Collection[str] = ()
) -> list[ResultFile]:
    """The bundle's files of the result kinds this destination takes (``dest.roles``).

    A kind the bundle lacks is replaced by its table ``fallback`` (dicom_node.result_kinds): a
    destination that asks for the LABELMAP SEG gets the BINARY one from a bundle without a label
    map (every SEG-capable PACS takes binary); nothing falls back the other way (older PACS refuse
    a LABELMAP SEG at association, dicom-notes.md). ``skip_sop_instance_uids`` drops instances
    delivered earlier. Files keep the bundle's order.
    """
    present = {f.role for f in bundle.files}
    chosen: set[str] = set()
    for role in dest.roles:
        if role in present:
            chosen.add(role)
            continue
        fallback = result_kind(role).fallback
        if fallback is not None and fallback in present:
            chosen.add(fallback)
            logger.info(
                "no %s in bundle %s: sending %s instead",
                role,
                bundle.job_id,
                fallback,
                extra={"job_id": bundle.job_id, "stage": "delivery"},
            )
    skip = set(skip_sop_instance_uids)
    return [f for f in bundle.files if f.role in chosen and f.sop_instance_uid not in skip]


def presentation_contexts(files: Sequence[ResultFile]) -> list[tuple[str, list[str]]]:
    """(SOP class, transfer syntaxes) to propose for exactly the objects being sent.

    Uncompressed objects are offered in Explicit and Implicit VR Little Endian (pynetdicom re-encodes
    between uncompressed syntaxes); an object in a compressed or deflated syntax (e.g. JPEG-LS
    labelmap SEG) must travel as it is: one context per such syntax. LABELMAP SEG is not among
    pynetdicom's default storage contexts, which is why contexts are built here, never taken from
    the defaults (dicom-notes.md).
    """
    contexts: dict[tuple[str, str], list[str]] = {}
    for f in files:
        ts = UID(f.transfer_syntax_uid)
        if ts in _UNCOMPRESSED or ts == ExplicitVRBigEndian:
            key = (f.sop_class_uid, "uncompressed")
            syntaxes = contexts.setdefault(key, [str(s) for s in _UNCOMPRESSED])
            if str(ts) not in syntaxes:
                syntaxes.append(str(ts))
        else:
            # compressed (JPEG-LS, RLE, ...) or deflated: exactly as stored
            contexts.setdefault((f.sop_class_uid, str(ts)), [str(ts)])
    return [(sop_class, syntaxes) for (sop_class, _key), syntaxes in contexts.items()]
