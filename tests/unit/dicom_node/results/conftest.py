from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_node.contracts import AnalysisResult, ResultBundle, ResultRole
from dicom_node.results.bundle import encode_results
from tests.unit.dicom_node.results.cases import JOB_ID, UID_ROOT, WHEN, Case, analysis, make_case

ALL_ROLES = (ResultRole.SEG, ResultRole.SR, ResultRole.GSPS, ResultRole.SC)


@dataclass
class Encoded:
    case: Case
    analysis: AnalysisResult
    bundle: ResultBundle
    out_dir: Path

    def dataset(self, name: str) -> Dataset:
        return pydicom.dcmread(self.out_dir / name)


def encode(case: Case, out_dir: Path, **kwargs: object) -> Encoded:
    result = analysis(case)
    options: dict[str, object] = {
        "job_id": JOB_ID,
        "study_instance_uid": str(case.sources[0].StudyInstanceUID),
        "sources": case.sources,
        "labelmap": case.labelmap,
        "analysis": result,
        "out_dir": out_dir,
        "uid_root": UID_ROOT,
        "manufacturer": "ct-ai-node",
        "roles": ALL_ROLES,
        "hu": case.hu,
        "content_datetime": WHEN,
    }
    options.update(kwargs)
    bundle = encode_results(**options)  # type: ignore[arg-type]
    return Encoded(case=case, analysis=result, bundle=bundle, out_dir=out_dir)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    """All roles for a non-square oblique CT (24 rows × 32 columns)."""
    root = tmp_path_factory.mktemp("encoded")
    return encode(make_case(root, geometry="oblique", shape=(7, 24, 32)), root / "out")
