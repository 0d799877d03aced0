"""Real labelled CT in training (inference/model/real_data.py): the left/right mirror, real cases
in the cache and their samples, a few steps on a mixed real + synthetic batch, the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.model

pytest.importorskip("nibabel")

SHAPE = (48, 48, 48)  # (x, y, z) voxels at 2 mm: 96 mm, 16 voxels at the tiny config's 6 mm


def make_real_dataset(root: Path) -> Path:
    """An nnU-Net raw dataset of one small labelled "patient" (plus a class nobody knows)."""
    from inference.datasets.nifti import save_nifti_lps

    x, y, _ = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    body = ((x - 24) / 20.0) ** 2 + ((y - 24) / 16.0) ** 2 < 1.0
    hu = np.where(body, 30, -1000).astype(np.int16) * np.ones(SHAPE, dtype=np.int16)
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[8:20, 14:30, 10:40] = 1  # liver: patient right = low x (LPS +x is patient left)
    lab[30:36, 28:34, 12:24] = 2  # left kidney: high x
    lab[12:18, 30:36, 12:24] = 3  # right kidney
    lab[22:26, 10:14, 30:34] = 4  # a class outside the vocabulary
    hu[lab == 1] = 60
    hu[(lab == 2) | (lab == 3)] = 150
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    save_nifti_lps(root / "imagesTr" / "p1_0000.nii.gz", hu, affine)
    save_nifti_lps(root / "labelsTr" / "p1.nii.gz", lab, affine)
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {
                    "background": 0,
                    "liver": 1,
                    "kidney_left": 2,
                    "kidney_right": 3,
                    "glorbic_node": 4,
                },
                "numTraining": 1,
                "file_ending": ".nii.gz",
            }
        )
    )
    return root


@pytest.fixture
def real_cfg(tiny_cfg, tmp_path: Path):  # type: ignore[no-untyped-def]
    from inference.model.config import RealDataset

    ds = make_real_dataset(tmp_path / "Dataset900_Tiny")
    data = tiny_cfg.data.model_copy(
        update={"cache_dir": tmp_path / "cache", "real_datasets": (RealDataset(path=ds, name="tiny-real"),)}
    )
    train = tiny_cfg.train.model_copy(update={"out_dir": tmp_path / "run"})
    return tiny_cfg.model_copy(update={"data": data, "train": train})


def test_flip_mirrors_the_image_and_swaps_left_right_labels() -> None:
    from inference.model.real_data import flip_left_right
    from inference.synth.labels import STRUCTURE_LABELS as L

    lab = np.zeros((2, 3, 4), dtype=np.uint8)
    lab[:, :, 0] = L["left kidney"]  # column 0 only: a symmetric map would hide a missing swap
    lab[0, 0, 1] = L["liver"]
    lab[1, 1, 2] = L["left lung"]
    hu = np.arange(lab.size, dtype=np.float32).reshape(lab.shape)
    hu2, lab2 = flip_left_right(hu, lab)
    np.testing.assert_array_equal(hu2, hu[..., ::-1])
    assert (lab2[:, :, 3] == L["right kidney"]).all() and not (lab2 == L["left kidney"]).any()
    assert lab2[0, 0, 2] == L["liver"]  # no side: moved, not renamed
    assert lab2[1, 1, 1] == L["right lung"]
    assert (lab2 == 0).sum() == (lab == 0).sum()


def test_real_case_is_cached_with_its_labelled_names_and_card(real_cfg) -> None:  # type: ignore[no-untyped-def]
    from inference.model.dataset import CachedCase
    from inference.model.real_data import build_real_cache

    dirs, cards = build_real_cache(real_cfg, progress=False)
    meta = CachedCase.open(dirs[0]).meta
    assert meta["real"] is True and meta["lesions"] == [] and meta["snippets"] == []
    # Only what the dataset labels may be asked: liver and kidneys, not spleen or lungs.
    assert {"body", "liver", "left kidney", "right kidney", "kidneys"} <= set(meta["labelled"])
    assert not {"spleen", "lungs", "aorta"} & set(meta["labelled"])
    assert {"liver", "left kidney", "right kidney"} <= set(meta["structures_present"])
    card = json.loads(cards[0].read_text())
    assert card["unknown_names"] == ["glorbic_node"] and card["n_cases"] == 1
    # Converting again reuses the cache (same directory, nothing rewritten).
    assert build_real_cache(real_cfg, progress=False)[0] == dirs


def test_real_samples_ask_only_labelled_names_and_leave_det_loc_to_synthetic(
    real_cfg, tiny_cfg, tiny_cache
) -> None:  # type: ignore[no-untyped-def]
    from inference.model.dataset import SampleMaker, load_text_table
    from inference.model.real_data import build_real_cache
    from inference.model.vocab import training_phrases

    dirs, _ = build_real_cache(real_cfg, progress=False)
    table = load_text_table(tiny_cfg.data.cache_dir)
    maker = SampleMaker(real_cfg, [], table, dirs)
    labelled = maker.case(0, real=True).meta["labelled"]
    allowed = {table[t].tobytes() for n in labelled for t in training_phrases(n) if t in table}
    n_seg = real_cfg.train.seg_queries
    rng = np.random.default_rng(3)
    for _ in range(4):
        s = maker.sample(rng, fine=False)
        assert not s.valid[n_seg] and not s.valid[n_seg + 1]  # DET and LOC off on real cases
        for i in np.flatnonzero(s.valid[:n_seg]):
            assert s.text[i].tobytes() in allowed
        assert s.seg_target[s.valid[:n_seg]].any()
        f = maker.sample(rng, fine=True)
        assert f.valid.sum() == 1 and f.text[0].tobytes() in allowed and f.seg_target[0].any()


def test_steps_on_a_mixed_real_and_synthetic_batch_lower_the_loss(real_cfg, tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    import torch

    from inference.model.dataset import SampleMaker, load_text_table
    from inference.model.network import UnifiedCTNet
    from inference.model.real_data import build_real_cache
    from inference.model.train import collate, compute_losses, seed_everything

    seed_everything(0)
    dirs, _ = build_real_cache(real_cfg, progress=False)
    maker = SampleMaker(real_cfg, tiny_cache, load_text_table(tiny_cfg.data.cache_dir), dirs)
    rng = np.random.default_rng(0)
    batch = collate(
        [maker.coarse_sample(maker.case(0, real=True), rng), maker.coarse_sample(maker.case(0), rng)]
    )
    n_seg = real_cfg.train.seg_queries
    assert batch["valid"][:, n_seg].tolist() == [False, True]  # DET from the synthetic sample only
    net = UnifiedCTNet(real_cfg.network)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    weights = real_cfg.train.loss_weights
    before, _ = compute_losses(net, batch, weights)
    for _ in range(6):
        total, _ = compute_losses(net, batch, weights)
        opt.zero_grad()
        total.backward()  # type: ignore[no-untyped-call]
        opt.step()
    after, parts = compute_losses(net, batch, weights)
    assert float(after.detach()) < float(before.detach())
    assert "seg" in parts and "det_heat" in parts


def test_training_run_names_the_dataset_cards_in_the_model_card(real_cfg, tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    from inference.model.train import train
    from worker.cli.model import _export

    # the tiny cache holds the text embeddings; the real case goes under its real/ folder
    data = real_cfg.data.model_copy(update={"cache_dir": tiny_cfg.data.cache_dir})
    cfg = real_cfg.model_copy(update={"data": data, "train": real_cfg.train.model_copy(update={"steps": 2})})
    result = train(cfg, progress=False, case_dirs=tiny_cache)
    assert result.steps_done == 2
    card = json.loads(_export(cfg, result.out_dir, result.out_dir).read_text())
    (ref,) = card["training"]["datasets"]
    assert (
        ref["name"] == "tiny-real" and ref["unknown_names"] == ["glorbic_node"] and len(ref["sha256"]) == 64
    )
    assert card["training"]["real_data"].startswith("real labelled CT: tiny-real (1 case(s)")
    assert "(1 real)" in card["training"]["batchnorm_statistics"]
