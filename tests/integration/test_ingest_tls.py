"""DICOM TLS round trip: DCMTK storescu over TLS (BCP 195 profile) to the SCP, with a self-signed
certificate made by openssl in the test; mutual TLS; a plain-TCP sender gets nowhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from tests.integration import test_ingest_scp
from tests.integration.test_ingest_scp import Node, store_successes, storescu
from tests.support.ct_series import make_ct_series
from tests.unit.dicom_node.ingest.conftest import make_self_signed_certificate

pytestmark = pytest.mark.integration

start_node = test_ingest_scp.start_node  # the SCP fixture, shared


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def ct3(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_ct_series(tmp_path_factory.mktemp("ct3"), n_slices=3, rows=128, cols=128)


def tls_args(cert: Path, key: Path) -> list[str]:
    # +tls: our key and certificate (storescu always presents one); +cf: trust the SCP's certificate
    return ["+tls", str(key), str(cert), "+cf", str(cert)]


def test_tls_round_trip(start_node: Any, certificate: tuple[Path, Path], ct3: list[Path]) -> None:
    cert, key = certificate
    node: Node = start_node(
        dicom={"tls": {"enabled": True, "certificate": str(cert), "private_key": str(key)}}
    )
    result = storescu(node.port, ct3, extra=tls_args(cert, key))
    assert store_successes(result) == 3, (result.stdout + result.stderr)[-3000:]
    staged = {p.stem for p in node.staged_files()}
    assert staged == {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in ct3}


def test_mutual_tls_accepts_a_trusted_client_certificate(
    start_node: Any, certificate: tuple[Path, Path], ct3: list[Path]
) -> None:
    cert, key = certificate
    tls = {"enabled": True, "certificate": str(cert), "private_key": str(key), "ca_certificates": str(cert)}
    node: Node = start_node(dicom={"tls": tls})
    assert store_successes(storescu(node.port, ct3[:1], extra=tls_args(cert, key))) == 1


def test_plain_tcp_to_the_tls_port_stores_nothing(
    start_node: Any, certificate: tuple[Path, Path], ct3: list[Path]
) -> None:
    cert, key = certificate
    node: Node = start_node(
        dicom={"tls": {"enabled": True, "certificate": str(cert), "private_key": str(key)}}
    )
    result = storescu(node.port, ct3[:1])
    assert store_successes(result) == 0
    assert node.staged_files() == [] and node.events == []
    # and the listener still serves TLS peers afterwards
    assert store_successes(storescu(node.port, ct3[:1], extra=tls_args(cert, key))) == 1


def test_mutual_tls_refuses_an_unknown_client_certificate(
    start_node: Any, certificate: tuple[Path, Path], ct3: list[Path], tmp_path: Path
) -> None:
    cert, key = certificate
    stranger_cert, stranger_key = make_self_signed_certificate(tmp_path / "stranger", common_name="stranger")
    tls = {"enabled": True, "certificate": str(cert), "private_key": str(key), "ca_certificates": str(cert)}
    node: Node = start_node(dicom={"tls": tls})
    result = storescu(
        node.port, ct3[:1], extra=["+tls", str(stranger_key), str(stranger_cert), "+cf", str(cert)]
    )
    assert store_successes(result) == 0
    assert node.staged_files() == []
