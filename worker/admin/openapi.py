"""Print the admin API's OpenAPI document (published as docs/admin-api.openapi.json).

``python -m worker.admin.openapi > docs/admin-api.openapi.json``; a test keeps the file current.
The running node serves the same document at ``/api/openapi.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from dicom_node.settings import Settings
from worker.admin.app import create_app
from worker.context import WorkerContext
from worker.tasks.app import make_celery


def openapi_document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "routing.yaml"
        rules.write_text("version: 1\nrules: []\n")
        settings = Settings(storage={"root": Path(tmp)}, rules_file=rules)
        ctx = WorkerContext.open(settings)
        try:
            document: dict[str, Any] = create_app(ctx, make_celery(settings, include=[])).openapi()
        finally:
            ctx.close()
    return document


def render() -> str:
    return json.dumps(openapi_document(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
