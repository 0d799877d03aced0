"""`ctnode model import` core: cards with every file's sha256, and one clear error per bad input.

Real nnU-Net v2 trained-model folders (made by tests/support/nnunet_models.py with nnU-Net's
planner and network code); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from inference.installed.card import ModelError, installed_dir, installed_models, load_model_card
from inference.installed.importer import import_model

pytestmark = pytest.mark.model


def _zip(folder: Path, dest: Path) -> Path:
    """Zip ``folder``'s parent dataset folder as nnUNetv2_export_model_to_zip nests it."""
    return Path(
        shutil.make_archive(str(dest), "zip", root_dir=folder.parents[1], base_dir=folder.parent.name)
    )


def test_import_folder_writes_a_card_with_every_files_sha256(organs_model: Path, model_dir: Path) -> None:
    card = import_model(organs_model, name="organs")
    folder = installed_dir() / "organs"
    assert load_model_card(folder) == card
    on_disk = {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "model-card.json"
    }
    assert set(card.files) == on_disk
    for rel, digest in card.files.items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
    assert card.kind == "nnunet"
    assert card.classes == {"1": "liver", "2": "spleen", "3": "kidney_cyst_left"}
    assert card.licence == "CC0-1.0 (test model)"
    assert card.version == "0.1"
    assert card.nnunet["dataset_id"] == 901
    assert card.nnunet["folds"] == ["0", "1"]
    assert card.nnunet["trainer"] == "nnUNetTrainer"
    assert card.version_tag.startswith("organs@") and len(card.version_tag) == len("organs@") + 12
    assert set(installed_models()) == {"organs"}


def test_import_zip_as_exported(organs_model: Path, model_dir: Path, tmp_path: Path) -> None:
    archive = _zip(organs_model, tmp_path / "export")
    card = import_model(archive, name="organs-zip", licence="test licence", version="7")
    assert card.source == str(archive)
    assert (card.licence, card.version) == ("test licence", "7")
    assert card.nnunet["model_folder"] == f"Dataset901_Organs/{organs_model.name}"
    assert any(name.endswith("fold_1/checkpoint_final.pth") for name in card.files)


def test_same_name_twice_needs_replace(organs_model: Path, model_dir: Path) -> None:
    first = import_model(organs_model, name="organs")
    with pytest.raises(ModelError, match="already installed"):
        import_model(organs_model, name="organs")
    assert import_model(organs_model, name="organs", replace=True).digest == first.digest


def test_truncated_zip_is_refused_and_nothing_installed(
    organs_model: Path, model_dir: Path, tmp_path: Path
) -> None:
    archive = _zip(organs_model, tmp_path / "export")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"not a readable zip|reading the zip failed"):
        import_model(broken, name="broken")
    assert not (installed_dir() / "broken").exists()
    assert installed_models() == {}


def test_zip_with_a_corrupt_member_is_refused(organs_model: Path, model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("Dataset901_Organs/m/dataset.json", json.dumps({"labels": {"background": 0, "liver": 1}}))
    data = bytearray(archive.read_bytes())
    start = data.index(b'{"labels"')
    data[start + 3] ^= 0xFF  # flip one byte of the stored member: its CRC no longer matches
    archive.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        import_model(archive, name="crc")
    assert installed_models() == {}


def test_zip_slip_is_refused(model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../outside.txt", "x")
    with pytest.raises(ModelError, match="outside the archive"):
        import_model(archive, name="slip")
    assert not (tmp_path / "outside.txt").exists()


def test_model_folder_without_a_trained_fold(organs_model: Path, model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "Dataset901_Organs" / organs_model.name
    shutil.copytree(organs_model, copy)
    for checkpoint in copy.glob("fold_*/checkpoint_final.pth"):
        checkpoint.unlink()
    with pytest.raises(ModelError, match=r"no trained fold \(fold_0, fold_1 without checkpoint_final.pth\)"):
        import_model(copy, name="nofold")
    assert installed_models() == {}


def test_bundle_without_metadata(model_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text("{}")
    (bundle / "models" / "model.pt").write_bytes(b"weights")
    with pytest.raises(ModelError, match=r"MONAI bundle without metadata \(configs/metadata.json missing\)"):
        import_model(bundle, name="nometa")


def test_neither_kind(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("hello")
    with pytest.raises(
        ModelError, match=r"neither an nnU-Net v2 trained-model folder \(.*\) nor a MONAI bundle"
    ):
        import_model(tmp_path / "x", name="x")


@pytest.mark.parametrize("name", ["Upper", "../up", "", "a b", "x" * 65])
def test_bad_names(name: str, model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model name"):
        import_model(tmp_path, name=name)
