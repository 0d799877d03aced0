"""Small real CT files for ingest unit tests (64×64 keeps them fast)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.ingest.receive import split_part10
from tests.support.ct_series import make_ct_series


def dataset_bytes(path: Path) -> tuple[str, bytes]:
    """(transfer syntax, encoded data set without File Meta) of a Part 10 file."""
    data = path.read_bytes()
    meta, offset = split_part10(data)
    return str(meta.TransferSyntaxUID), data[offset:]


@pytest.fixture
def ct_file(tmp_path: Path) -> Callable[..., Path]:
    def make(transfer_syntax_uid: str = ExplicitVRLittleEndian, **kwargs: object) -> Path:
        out = tmp_path / f"ct-{len(list(tmp_path.iterdir()))}"
        kwargs.setdefault("rows", 64)
        kwargs.setdefault("cols", 64)
        return make_ct_series(out, n_slices=1, transfer_syntax_uid=transfer_syntax_uid, **kwargs)[0]  # type: ignore[arg-type]

    return make


def make_self_signed_certificate(directory: Path, *, common_name: str = "localhost") -> tuple[Path, Path]:
    """(certificate, private key) PEM files made with the openssl CLI (no Python crypto package here)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found (Debian package openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    argv = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
    argv += ["-days", "2", "-subj", f"/CN={common_name}"]
    argv += ["-addext", f"subjectAltName=DNS:{common_name},IP:127.0.0.1"]
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
