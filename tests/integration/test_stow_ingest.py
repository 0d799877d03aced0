"""STOW-RS into the node over real HTTP: uvicorn on a free port, real clients.

* ``dicomweb-client`` (the library the delivery side uses too) stores a CT series, then a
  partly broken request, and reads the PS3.18 response;
* Orthanc's DICOMweb plugin as the *sender* (``/dicom-web/servers/{name}/stow``), with the bearer
  token in its ``HttpHeaders``: the way a PACS-side Orthanc would push to the node.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import uvicorn
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from pydicom import dcmread

from dicom_node.contracts import InstanceStored
from dicom_node.ingest.receive import InstanceReceiver
from dicom_node.ingest.staging import Staging
from dicom_node.ingest.stow import StowRequestSummary, make_bearer_auth, make_stow_router
from dicom_node.ingest.validation import ImageLimits
from tests.support.ct_series import make_ct_series
from tests.support.orthanc import orthanc
from tests.support.processes import free_port, port_open, wait_until

pytestmark = pytest.mark.integration

TOKEN = "stow-test-token"


class StowNode:
    """The STOW router over real staging, served by uvicorn in a thread on a free port."""

    def __init__(self, root: Path) -> None:
        self.staging = Staging(root / "staging", min_free_bytes=0)
        self.instances: list[InstanceStored] = []
        self.requests: list[StowRequestSummary] = []
        app = FastAPI()
        app.include_router(
            make_stow_router(
                receiver=InstanceReceiver(self.staging, limits=ImageLimits(), uid_root="1.2.826.0.1.999999."),
                on_instance=self.instances.append,
                on_request_complete=self.requests.append,
                auth=make_bearer_auth(lambda: [TOKEN]),
                called_ae_title="CTAINODE",
            )
        )
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    @contextlib.contextmanager
    def running(self) -> Iterator[StowNode]:
        thread = threading.Thread(target=self.server.run, name="uvicorn-stow", daemon=True)
        thread.start()
        try:
            wait_until(lambda: port_open(self.port), timeout_s=10, what="uvicorn")
            yield self
        finally:
            self.server.should_exit = True
            thread.join(10)


def staged_sops(root: Path) -> set[str]:
    return {p.stem for p in (root / "staging").rglob("*.dcm")}


def test_dicomweb_client_stores_a_series_and_reads_failures(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", n_slices=12, rows=128, cols=128)
    datasets = [dcmread(f) for f in files]
    with StowNode(tmp_path / "node").running() as node:
        client = DICOMwebClient(node.url, headers={"Authorization": f"Bearer {TOKEN}"})
        response = client.store_instances(datasets=datasets)
        referenced = {str(i.ReferencedSOPInstanceUID) for i in response.ReferencedSOPSequence}
        sops = {str(d.SOPInstanceUID) for d in datasets}
        assert referenced == sops and "FailedSOPSequence" not in response
        assert staged_sops(tmp_path / "node") == sops
        [summary] = node.requests
        assert summary.stored == 12 and summary.study_instance_uids == {str(datasets[0].StudyInstanceUID)}
        assert {i.association_id for i in node.instances} == {summary.request_id}

        # A second request for another study, with one image whose pixel data is cut short.
        other = make_ct_series(tmp_path / "other", n_slices=2, rows=64, cols=64)
        good, broken = dcmread(other[0]), dcmread(other[1])
        broken.PixelData = broken.PixelData[:100]
        partial = client.store_instances(datasets=[good, broken])
        assert [str(i.ReferencedSOPInstanceUID) for i in partial.ReferencedSOPSequence] == [
            str(good.SOPInstanceUID)
        ]
        [failed] = partial.FailedSOPSequence
        assert str(failed.ReferencedSOPInstanceUID) == str(broken.SOPInstanceUID)
        assert 0xC000 <= int(failed.FailureReason) <= 0xCFFF

        # Without the token: 401, nothing stored.
        anonymous = DICOMwebClient(node.url)
        with pytest.raises(requests.exceptions.HTTPError) as refused:
            anonymous.store_instances(
                datasets=[dcmread(f) for f in make_ct_series(tmp_path / "x", n_slices=1, rows=32, cols=32)]
            )
        assert refused.value.response.status_code == 401
        assert len(staged_sops(tmp_path / "node")) == 13


def test_orthanc_dicomweb_plugin_as_sender(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", n_slices=6, rows=64, cols=64)
    with StowNode(tmp_path / "node").running() as node:
        servers = {"ctnode": {"Url": node.url + "/", "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"}}}
        with orthanc(tmp_path / "orthanc", overrides={"DicomWeb": {"Servers": servers}}) as server:
            for f in files:
                server.upload(f)
            study_id = server.get("/studies")[0]
            result = server.post(
                "/dicom-web/servers/ctnode/stow", f'{{"Resources": ["{study_id}"]}}'.encode()
            )
            assert result is None or isinstance(result, dict)
        assert staged_sops(tmp_path / "node") == {str(dcmread(f).SOPInstanceUID) for f in files}
        assert sum(r.stored for r in node.requests) == 6
        # Orthanc sends the files it holds: the staged copies carry the same pixel data.
        staged = {p.stem: p for p in (tmp_path / "node" / "staging").rglob("*.dcm")}
        original = dcmread(files[3])
        assert dcmread(staged[str(original.SOPInstanceUID)]).PixelData == original.PixelData
