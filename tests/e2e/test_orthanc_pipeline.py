"""The Orthanc path end to end: DCMTK storescu → Orthanc → our plugin (STABLE_STUDY) → Redis →
``ctnode worker`` (fetches the study from Orthanc by REST) → results back into Orthanc by STOW-RS,
found there by QIDO-RS, dciodvfy-clean; Orthanc re-firing STABLE_STUDY for the study our results
landed in makes no second job.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from dicom_node.contracts import JobState
from tests.support.dcmtk import dciodvfy_errors, require
from tests.support.node import NodeHarness
from tests.support.orthanc import orthanc_with_plugin
from tests.support.redis import redis_server
from worker.demo.synth_study import make_synthetic_study

pytestmark = pytest.mark.e2e

RESULT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",
    "1.2.840.10008.5.1.4.1.1.11.1": "GSPS",
}


def _qido_instances(dicomweb_url: str, study_uid: str) -> list[dict[str, str]]:
    """(SOP Class UID, SOP Instance UID, Series Instance UID) of every instance of the study."""
    url = f"{dicomweb_url}/studies/{study_uid}/instances?includefield=00080016"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (loopback test server)
        body = json.loads(response.read() or b"[]")
    return [
        {
            "sop_class": item["00080016"]["Value"][0],
            "sop_instance": item["00080018"]["Value"][0],
            "series": item["0020000E"]["Value"][0],
        }
        for item in body
    ]


def test_orthanc_plugin_to_worker_and_results_back(tmp_path: Path) -> None:
    study = make_synthetic_study(tmp_path / "study", seed=5, slices=60)
    with (
        redis_server(tmp_path / "redis") as redis,
        orthanc_with_plugin(tmp_path / "orthanc", redis.url, stable_age_s=2) as orthanc,
    ):
        node = NodeHarness(
            tmp_path / "node",
            pacs_port=1,
            broker_url=redis.url,
            prompts=("body", "bone"),
            extra_settings={"destinations": {"pacs": {"kind": "dicomweb", "url": orthanc.dicomweb_url}}},
        )
        try:
            node.start_worker()
            argv = [require("storescu"), "-aet", "STORESCU", "-aec", orthanc.aet, "127.0.0.1"]
            sent = subprocess.run(
                [*argv, str(orthanc.dicom_port), *map(str, study.dicom_paths)], capture_output=True, text=True
            )
            assert sent.returncode == 0, sent.stderr
            job = node.wait_for_job(study.study_instance_uid, timeout_s=240)
            assert job.state == JobState.DELIVERED, (job.reason, node.logs(), orthanc.log_text()[-4000:])
            assert job.job.source.kind == "orthanc"
            (delivery,) = node.store.deliveries_for(job.job_id)
            assert delivery.confirmed, delivery  # QIDO-RS query-back found every object

            instances = _qido_instances(orthanc.dicomweb_url, study.study_instance_uid)
            results = [i for i in instances if i["sop_class"] in RESULT_CLASSES]
            assert sorted(RESULT_CLASSES[i["sop_class"]] for i in results) == ["GSPS", "SEG", "SR"]
            assert {i["sop_instance"] for i in results} == set(delivery.delivered_sop_instance_uids)
            for item in results:
                url = (
                    f"{orthanc.dicomweb_url}/studies/{study.study_instance_uid}/series/{item['series']}"
                    f"/instances/{item['sop_instance']}"
                )
                # Orthanc's REST gives the stored file itself; find it by the instance UID.
                lookup = orthanc.post("/tools/lookup", item["sop_instance"].encode())
                orthanc_id = lookup[0]["ID"]
                path = tmp_path / f"{RESULT_CLASSES[item['sop_class']]}.dcm"
                with urllib.request.urlopen(f"{orthanc.url}/instances/{orthanc_id}/file", timeout=30) as r:  # noqa: S310
                    path.write_bytes(r.read())
                assert dciodvfy_errors(path) == [], url

            # Our results made the study change in Orthanc: STABLE_STUDY fires again after
            # StableAge. The plugin's guard (or routing, which skips node results) makes no new job.
            time.sleep(2 + 4)
            assert [j.job_id for j in node.jobs(study.study_instance_uid)] == [job.job_id]
        finally:
            node.stop()
