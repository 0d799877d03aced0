"""Put work on the broker by task *name* (no task import: the SCP process never loads the model).

Task ids are deterministic (job id, delivery id), so the same work sent twice is recognisable in
Flower and in the logs; the job store decides whether it runs again.
"""

from __future__ import annotations

from celery import Celery

from dicom_node.constants import TASK_DELIVER, TASK_ROUTE_STUDY, TASK_RUN_PIPELINE
from dicom_node.contracts import Job, StudyStable
from dicom_node.identity import delivery_id_for


def enqueue_route(app: Celery, stable: StudyStable) -> None:
    app.send_task(TASK_ROUTE_STUDY, args=[stable.model_dump(mode="json")])


def enqueue_job(app: Celery, job: Job) -> None:
    # the router (worker.tasks.app.queue_for) sends priority "stat" to the STAT lane
    app.send_task(TASK_RUN_PIPELINE, args=[job.model_dump(mode="json")], task_id=job.job_id)


def enqueue_delivery(app: Celery, job_id: str, destination: str) -> None:
    app.send_task(TASK_DELIVER, args=[job_id, destination], task_id=delivery_id_for(job_id, destination))
