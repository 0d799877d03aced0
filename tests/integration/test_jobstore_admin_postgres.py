"""tests/unit/dicom_node/jobs/test_store_admin.py on a real PostgreSQL (fresh schema per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.jobs import JobStore
from tests.support.postgres import postgres_url
from tests.unit.dicom_node.jobs.test_store_admin import *  # noqa: F403 (the shared suite, re-collected here)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with postgres_url(tmp_path) as url, JobStore.open(url) as opened:
        assert opened.engine.dialect.name == "postgresql"
        yield opened
