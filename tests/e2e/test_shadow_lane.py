"""Shadow work never holds back real work, and respects the same minimum input (issue 12 item 13),
on the real node: ``ctnode serve`` with its one worker (the embedded single machine), a DCMTK
``storescu`` sender and ``storescp`` "PACS".

The rules put a shadow rule FIRST (``stop: false``), as the shipped example does: before, its job
was queued first and the only worker ran it before the delivered one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from dicom_node.contracts import JobState
from tests.support.ct_series import make_ct_series
from tests.support.dcmtk import storescp
from tests.support.node import NodeHarness
from worker.demo.synth_study import SyntheticStudy, make_synthetic_study

pytestmark = pytest.mark.e2e

RULES = {
    "version": 1,
    "input": {"modality": "CT", "image_count": {"min": 10}},
    "rules": [
        {
            "name": "shadow-try",  # no image count of its own: the input conditions hold it
            "when": {"modality": "CT", "image_count": {"max": 50}},
            "pipeline": "ct-anatomy-basic",
            "prompts": ["body"],
            "shadow": True,
            "stop": False,
        },
        {
            "name": "real",
            "when": {"modality": "CT", "image_count": {"min": 100}},
            "pipeline": "ct-anatomy-basic",
            "prompts": ["body", "bone"],
            "destinations": ["pacs"],
        },
    ],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticStudy, list[Path]]:
    base = tmp_path_factory.mktemp("shadow")
    main = make_synthetic_study(base / "main", seed=9)
    small = make_ct_series(
        base / "small",
        n_slices=12,
        rows=128,
        cols=128,
        spacing_mm=(5.0, 1.5, 1.5),
        study_uid=main.study_instance_uid,
    )
    return main, small


def test_shadow_runs_after_the_real_job_and_never_on_a_one_image_study(
    tmp_path: Path, study: tuple[SyntheticStudy, list[Path]]
) -> None:
    main, small = study
    one_image = make_ct_series(tmp_path / "one", n_slices=1, rows=128, cols=128)
    with storescp(tmp_path / "pacs") as (_proc, pacs_port):
        node = NodeHarness(tmp_path / "node", pacs_port=pacs_port)
        (node.work / "routing.yaml").write_text(yaml.safe_dump(RULES, sort_keys=False))
        try:
            node.start_serve(with_worker=True)
            # both series in one association: one routing, a shadow job (small series) and a real one
            assert node.storescu([*small, *main.dicom_paths]).returncode == 0
            node.wait_for_job(
                main.study_instance_uid,
                timeout_s=300,
                done=lambda _: (
                    len(node.jobs(main.study_instance_uid)) == 2
                    and all(j.state in (JobState.DELIVERED,) for j in node.jobs(main.study_instance_uid))
                ),
            )
            jobs = {j.rule_name: j for j in node.jobs(main.study_instance_uid)}
            assert set(jobs) == {"shadow-try", "real"}
            assert jobs["shadow-try"].shadow and not jobs["real"].shadow

            def started(job_id: str) -> int:
                return next(e.id for e in node.store.events(job_id) if e.to_state == JobState.RUNNING)

            def finished(job_id: str) -> int:
                return next(e.id for e in node.store.events(job_id) if e.to_state == JobState.DELIVERED)

            # the one worker ran the real job, and delivered it, before it started the shadow one
            assert finished(jobs["real"].job_id) < started(jobs["shadow-try"].job_id)

            # a one-image study: the shadow rule has no minimum of its own, the input conditions do
            assert node.storescu(one_image).returncode == 0
            from pydicom import dcmread

            uid = str(dcmread(one_image[0], stop_before_pixels=True).StudyInstanceUID)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                record = node.store.get_study(uid)
                if record is not None and record.state in ("routed", "no-rule"):
                    break
                time.sleep(0.5)
            record = node.store.get_study(uid)
            assert record is not None and record.state == "no-rule", record
            assert node.jobs(uid) == []
        finally:
            node.stop()
