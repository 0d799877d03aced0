"""Small valid contracts for job store tests (UIDs only: the store keeps no pixels and no PHI)."""

from __future__ import annotations

from datetime import UTC, datetime

from dicom_node.contracts import Job, ResultBundle, ResultFile, ResultRole, StudySource
from dicom_node.identity import job_id_for, sop_set_digest

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1001.1"


def make_job(
    *,
    study_instance_uid: str = STUDY_UID,
    rule_name: str = "ct-abdomen",
    sop_uids: tuple[str, ...] = ("1.2.3.1", "1.2.3.2"),
    destinations: tuple[str, ...] = ("PACS",),
    pipeline: str = "organs",
) -> Job:
    digest = sop_set_digest(sop_uids)
    job_id = job_id_for(
        study_instance_uid=study_instance_uid,
        series_instance_uids=[SERIES_UID],
        pipeline=pipeline,
        model_version="1.0",
        ruleset_digest="r" * 16,
        sop_digest=digest,
    )
    return Job(
        job_id=job_id,
        study_instance_uid=study_instance_uid,
        series_instance_uids=(SERIES_UID,),
        sop_set_digest=digest,
        pipeline=pipeline,
        model_version="1.0",
        ruleset_digest="r" * 16,
        rule_name=rule_name,
        destinations=destinations,
        source=StudySource(kind="staging", staging_path=f"/var/staging/{study_instance_uid}"),
        calling_ae_title="STORESCU",
        created_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    )


def make_bundle(job: Job, n_files: int = 3) -> ResultBundle:
    roles = [ResultRole.SEG, ResultRole.SR, ResultRole.GSPS]
    files = tuple(
        ResultFile(
            role=roles[i % 3],
            path=f"/var/results/{job.job_id}/{i}.dcm",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4",
            sop_instance_uid=f"1.2.826.0.1.3680043.8.498.77.{i}",
            series_instance_uid=f"1.2.826.0.1.3680043.8.498.77.{100 + i}",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
        for i in range(n_files)
    )
    return ResultBundle(job_id=job.job_id, study_instance_uid=job.study_instance_uid, files=files)
