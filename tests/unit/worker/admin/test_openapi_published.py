"""The published OpenAPI document is the one the admin API serves."""

from __future__ import annotations

from pathlib import Path

from worker.admin.openapi import render

PUBLISHED = Path(__file__).resolve().parents[4] / "docs" / "admin-api.openapi.json"


def test_published_openapi_matches_the_app() -> None:
    assert PUBLISHED.read_text() == render(), (
        "docs/admin-api.openapi.json is stale: python -m worker.admin.openapi > docs/admin-api.openapi.json"
    )


def test_it_documents_the_operator_endpoints() -> None:
    text = PUBLISHED.read_text()
    paths = ("/api/jobs/{job_id}/requeue", "/api/rules/replay", "/api/destinations/{name}/echo", "/readyz")
    for path in paths:
        assert f'"{path}"' in text, path
