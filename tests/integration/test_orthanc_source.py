"""Fetching an Orthanc study for the worker, against a real Orthanc with authentication on."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEGLSLossless

from dicom_node.contracts import StudySource
from dicom_node.errors import PermanentError, TransientError
from dicom_node.ingest.orthanc_source import OrthancSource, fetch_study
from tests.support.ct_series import make_ct_series
from tests.support.orthanc import orthanc
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

CREDENTIALS = ("worker", "test-only-password")


def test_fetch_by_rest_and_wado_rs(tmp_path: Path) -> None:
    first = make_ct_series(tmp_path / "s1", n_slices=4, rows=64, cols=64, transfer_syntax_uid=JPEGLSLossless)
    study_uid = str(dcmread(first[0]).StudyInstanceUID)
    second = make_ct_series(
        tmp_path / "s2", n_slices=3, rows=64, cols=64, study_uid=study_uid, series_number=2
    )
    series1 = str(dcmread(first[0]).SeriesInstanceUID)
    by_sop = {str(dcmread(f).SOPInstanceUID): f for f in first + second}
    with orthanc(tmp_path / "orthanc", credentials=CREDENTIALS) as server:
        for f in first + second:
            server.upload(f)
        [study_id] = server.get("/studies")
        source = StudySource(kind="orthanc", orthanc_url=server.url, orthanc_study_id=study_id)

        rest = fetch_study(source, tmp_path / "rest", auth=CREDENTIALS)
        assert rest.study_instance_uid == study_uid and rest.fetched == 7 and rest.already_present == 0
        assert {p.stem for p in rest.paths} == set(by_sop)
        for path in rest.paths:  # byte for byte what was stored, compressed syntax kept
            assert path.read_bytes() == by_sop[path.stem].read_bytes()
            assert path.parent.name == str(dcmread(path).SeriesInstanceUID)
            assert path.parent.parent == tmp_path / "rest" / study_uid

        again = fetch_study(source, tmp_path / "rest", auth=CREDENTIALS)
        assert again.fetched == 0 and again.already_present == 7

        with OrthancSource(server.url, auth=CREDENTIALS) as client:
            wado = client.fetch_study(
                study_id, tmp_path / "wado", method="wado-rs", series_instance_uids=[series1]
            )
            assert {p.stem for p in wado.paths} == {str(dcmread(f).SOPInstanceUID) for f in first}
            for path in wado.paths:
                got, sent = dcmread(path), dcmread(by_sop[path.stem])
                assert got.file_meta.TransferSyntaxUID == JPEGLSLossless  # transfer-syntax=*: as stored
                assert (got.pixel_array == sent.pixel_array).all()

            headers = client.fetch_headers(study_id)
            assert {str(h.SOPInstanceUID) for h in headers} == set(by_sop)
            assert all("PixelData" not in h and h.Modality == "CT" for h in headers)
            assert len(client.fetch_headers(study_id, series_instance_uids=[series1])) == 4

        with pytest.raises(PermanentError, match="refused access"):
            fetch_study(source, tmp_path / "x", auth=("worker", "wrong"))
        server.delete(f"/studies/{study_id}")
        with pytest.raises(PermanentError, match="not found"):
            fetch_study(source, tmp_path / "y", auth=CREDENTIALS)

    down = StudySource(kind="orthanc", orthanc_url=f"http://127.0.0.1:{free_port()}", orthanc_study_id="x")
    with pytest.raises(TransientError, match="unreachable"):
        fetch_study(down, tmp_path / "z", timeout_s=2)
