"""Deterministic identities: job ids and the UIDs of everything the node writes.

Same input → same job → same output UIDs, so a retry or a resend re-delivers identical objects
and a PACS never shows a duplicate series. A late image changes the SOP set digest, hence the job.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from pydicom.uid import generate_uid

# Fixed namespace for this product's uuid5 ids (itself uuid5 of the URL namespace and our name).
NODE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ct-ai-node")


def sop_set_digest(sop_instance_uids: Iterable[str]) -> str:
    """sha256 of the sorted set of SOP Instance UIDs (order of arrival must not matter)."""
    h = hashlib.sha256()
    for uid in sorted(set(sop_instance_uids)):
        h.update(uid.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def job_id_for(
    *,
    study_instance_uid: str,
    series_instance_uids: Iterable[str],
    pipeline: str,
    model_version: str,
    ruleset_digest: str,
    sop_digest: str,
) -> str:
    """uuid5 of everything that decides what a job computes (architecture guide, "Identity")."""
    key = "|".join(
        [
            study_instance_uid,
            ",".join(sorted(series_instance_uids)),
            pipeline,
            model_version,
            ruleset_digest,
            sop_digest,
        ]
    )
    return str(uuid.uuid5(NODE_NAMESPACE, key))


def derived_uid(uid_root: str, job_id: str, role: str) -> str:
    """A UID under ``uid_root`` that depends only on (job_id, role), e.g. role "seg-series".

    pydicom's generate_uid hashes the entropy sources with SHA-512 into the suffix, so the result
    is deterministic and at most 64 characters.
    """
    return str(generate_uid(prefix=uid_root, entropy_srcs=[str(uuid.UUID(job_id)), role]))


def delivery_id_for(job_id: str, destination: str) -> str:
    """Task id of the delivery of one job to one destination: retries reuse it."""
    return str(uuid.uuid5(NODE_NAMESPACE, f"deliver|{job_id}|{destination}"))


def withdrawal_id_for(job_id: str, destination: str) -> str:
    """Id (and task id) of withdrawing one superseded job's results at one destination."""
    return str(uuid.uuid5(NODE_NAMESPACE, f"withdraw|{job_id}|{destination}"))
