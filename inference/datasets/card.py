"""The dataset card: what a dataset holds, written beside it (or beside its converted copy) as
JSON, and referenced (with its sha256) from the card of every model trained on it.

Records cases (id, shape, spacing), the structures and how their names map into the vocabulary
(and onto the training labels), the names the vocabulary does not know, and the sources
(teacher name and version for distilled datasets). Case ids are the dataset's own or hashes:
nothing here identifies a patient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from inference.datasets.cases import DatasetIndex
from inference.datasets.names import training_label
from inference.datasets.nifti import nifti_header

CARD_NAME = "dataset_card.json"


def dataset_card(index: DatasetIndex, *, name: str | None = None) -> dict[str, Any]:
    cases = []
    for case in index.cases:
        shape, spacing = nifti_header(case.image)
        row: dict[str, Any] = {"id": case.case_id, "shape": list(shape), "spacing_mm": list(spacing)}
        for key in ("teacher", "teacher_version", "source"):
            if key in case.extra:
                row[key] = case.extra[key]
        cases.append(row)
    spacings = sorted({tuple(c["spacing_mm"]) for c in cases})
    teachers = sorted(
        {f"{c['teacher']} {c.get('teacher_version', '')}".strip() for c in cases if "teacher" in c}
    )
    return {
        "name": name or index.info.get("name") or index.root.name,
        "layout": index.layout,
        "root": str(index.root),
        "created": dt.date.today().isoformat(),
        "cases": cases,
        "n_cases": len(cases),
        "spacings_mm": [list(s) for s in spacings],
        "structures": {
            raw: {"vocabulary": canonical, "training_label": training_label(canonical)}
            for raw, canonical in index.mapping.mapped.items()
        },
        # names this index found unknown, and those a writer left out before (DICOM SEG import)
        "unknown_names": sorted({*index.unknown, *index.info.get("unknown_names", [])}),
        "sources": teachers
        or [index.info.get("reference") or index.info.get("description") or str(index.root)],
        **({"teacher": index.info["teacher"]} if "teacher" in index.info else {}),
    }


def write_dataset_card(index: DatasetIndex, dest_dir: Path, *, name: str | None = None) -> Path:
    """Write ``dataset_card.json`` into ``dest_dir``; returns its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / CARD_NAME
    path.write_text(json.dumps(dataset_card(index, name=name), indent=2) + "\n")
    return path


def card_reference(path: Path) -> dict[str, Any]:
    """How a model card names a dataset card: its name, path, sha256, cases and unknown names."""
    raw = Path(path).read_bytes()
    card = json.loads(raw)
    return {
        "name": card["name"],
        "card": str(path),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "n_cases": card["n_cases"],
        "layout": card["layout"],
        "unknown_names": card["unknown_names"],
    }
