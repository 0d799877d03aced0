"""The whole job store suite (tests/unit/dicom_node/jobs/test_store.py) on a real PostgreSQL.

Each test gets a fresh schema on the local server (or a private server started for the run when
none answers): see tests/support/postgres.py. Imported test functions pick up the fixtures below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.jobs import JobStore
from tests.support.postgres import postgres_url
from tests.unit.dicom_node.jobs.test_store import *  # noqa: F403 (the shared suite, re-collected here)

pytestmark = pytest.mark.integration


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    with postgres_url(tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    with JobStore.open(store_url) as opened:
        assert opened.engine.dialect.name == "postgresql"
        yield opened
