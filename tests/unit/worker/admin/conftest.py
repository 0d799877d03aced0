"""A real admin app over a real SQLite job store, the embedded SQLite broker and a rules file."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from dicom_node.contracts import (
    CompletionReason,
    SeriesManifest,
    StudyManifest,
    StudySource,
    StudyStable,
)
from dicom_node.jobs import JobStore
from dicom_node.settings import Settings, load_settings
from worker.admin.app import create_app
from worker.admin.auth import TokenAuth
from worker.context import WorkerContext
from worker.tasks.app import make_celery

ADMIN_TOKEN = "admin-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

RULES = """\
version: 1
rules:
  - name: ct-thin
    when:
      modality: CT
      slice_thickness_mm: {max: 3.0}
    pipeline: ct-anatomy-basic
    destinations: [pacs]
"""


def settings_for(
    root: Path, *, broker_url: str = "", database_url: str = "", pacs_port: int = 11199
) -> Settings:
    rules = root / "routing.yaml"
    if not rules.exists():
        rules.write_text(RULES)
    node = root / "node.yaml"
    node.write_text(
        yaml.safe_dump(
            {
                "storage": {"root": str(root / "var"), "min_free_bytes": 0, "retention_days": 7},
                "rules_file": str(rules),
                "queue": {"broker_url": broker_url},
                "jobs": {"database_url": database_url},
                "destinations": {
                    "pacs": {"kind": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port}
                },
            }
        )
    )
    return load_settings(node)


def broker_messages(settings: Settings) -> list[dict[str, Any]]:
    """Messages waiting in the embedded broker: queue, task name, task id, args."""
    db = settings.storage.root / "broker.sqlite"
    if not db.exists():
        return []
    out = []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
            "WHERE m.visible = 1 ORDER BY m.id"
        ).fetchall()
    for queue, payload in rows:
        message = json.loads(payload)
        body = json.loads(base64.b64decode(message["body"]))
        out.append(
            {
                "queue": queue,
                "task": message["headers"]["task"],
                "id": message["headers"]["id"],
                "args": body[0],
            }
        )
    return out


def make_manifest(
    study_uid: str, *, thickness_mm: float = 1.0, description: str = "Abdomen 1.0 B30f"
) -> StudyManifest:
    series = SeriesManifest(
        series_instance_uid=study_uid + ".1",
        modality="CT",
        sop_class_uid=CT_IMAGE_STORAGE,
        series_number=2,
        series_description=description,
        slice_thickness_mm=thickness_mm,
        image_count=3,
        sop_instance_uids=tuple(f"{study_uid}.1.{i}" for i in range(1, 4)),
        attributes={"Rows": "512", "Columns": "512"},
    )
    return StudyManifest(
        study_instance_uid=study_uid,
        calling_ae_title="STORESCU",
        source=StudySource(kind="staging", staging_path=f"/nonexistent/{study_uid}"),
        completion_reason=CompletionReason.QUIET_PERIOD,
        series=(series,),
    )


def record_routed_study(store: JobStore, manifest: StudyManifest, *, received_s_ago: float = 30.0) -> None:
    now = datetime.now(UTC)
    stable = StudyStable(
        study_instance_uid=manifest.study_instance_uid,
        source=manifest.source,
        reason=CompletionReason.QUIET_PERIOD,
        calling_ae_title="STORESCU",
        instance_count=3,
        first_received_at=now - timedelta(seconds=received_s_ago),
        last_received_at=now - timedelta(seconds=received_s_ago - 2),
        stable_at=now - timedelta(seconds=received_s_ago - 10),
    )
    store.record_study(stable)
    store.record_manifest(manifest)


@dataclass
class Node:
    settings: Settings
    ctx: WorkerContext
    client: TestClient
    celery: Any

    @property
    def store(self) -> JobStore:
        return self.ctx.store

    def messages(self) -> list[dict[str, Any]]:
        return broker_messages(self.settings)


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


@contextlib.contextmanager
def running_node(settings: Settings) -> Iterator[Node]:
    ctx = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    celery = make_celery(settings, include=[])
    auth = TokenAuth(
        settings.api, environ={"CTNODE_ADMIN_TOKEN": ADMIN_TOKEN, "CTNODE_VIEWER_TOKEN": VIEWER_TOKEN}
    )
    app = create_app(ctx, celery, auth=auth, node_status=lambda: {"scp": "listening"})
    try:
        with TestClient(app) as client:
            yield Node(settings, ctx, client, celery)
    finally:
        ctx.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with running_node(settings_for(tmp_path)) as opened:
        yield opened
