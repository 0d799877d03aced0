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

from dicom_node.contracts import ResultBundle, ResultFile, ResultRole
from dicom_node.settings import DestinationSettings

logger = logging.getLogger(__name__)

# PS3.4 B.5: Segmentation Storage (binary/fractional) and Label Map Segmentation Storage (Sup 243).
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_CLASS_FOR_TYPE = {"binary": SEGMENTATION_STORAGE, "labelmap": LABEL_MAP_SEGMENTATION_STORAGE}

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def select_files(
    bundle: ResultBundle, dest: DestinationSettings, *, skip_sop_instance_uids: Collection[str] = ()
) -> list[ResultFile]:
    """The bundle's files this destination takes (``dest.objects``, ``dest.seg_type``).

    A SEG file is chosen by its SOP class: binary (…66.4) or labelmap (…66.7). A destination that
    asks for labelmap gets the binary SEG when the bundle has no labelmap (every SEG-capable PACS
    takes binary); a binary destination never gets a labelmap SEG (older PACS refuse it at
    association, dicom-notes.md). ``skip_sop_instance_uids`` drops instances delivered earlier.
    """
    wanted_roles = {ResultRole(obj) for obj in dest.objects}
    seg_files = [f for f in bundle.files if f.role == ResultRole.SEG]
    chosen_seg: list[ResultFile] = []
    if ResultRole.SEG in wanted_roles:
        want_class = SEG_CLASS_FOR_TYPE[dest.seg_type]
        chosen_seg = [f for f in seg_files if f.sop_class_uid == want_class]
        if not chosen_seg and dest.seg_type == "labelmap":
            chosen_seg = [f for f in seg_files if f.sop_class_uid == SEGMENTATION_STORAGE]
            if chosen_seg:
                logger.info(
                    "no labelmap SEG in bundle %s: sending the binary SEG instead",
                    bundle.job_id,
                    extra={"job_id": bundle.job_id, "stage": "delivery"},
                )
    chosen_ids = {id(f) for f in chosen_seg}
    skip = set(skip_sop_instance_uids)
    selected = []
    for f in bundle.files:
        keep = id(f) in chosen_ids if f.role == ResultRole.SEG else f.role in wanted_roles
        if keep and f.sop_instance_uid not in skip:
            selected.append(f)
    return selected


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
