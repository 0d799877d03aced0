"""The case cache and the training samples drawn from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.model


def test_cache_holds_canonical_grids_and_meta(tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    from inference.model.dataset import CachedCase

    assert len(tiny_cache) == 2
    case = CachedCase.open(tiny_cache[0])
    hu, labels, lesions = case.arrays("coarse")
    assert hu.dtype == np.int16 and labels.shape == hu.shape == lesions.shape
    assert case.coarse.spacing_mm == pytest.approx(tiny_cfg.inference.coarse_spacing_mm)
    assert case.fine.spacing_mm == pytest.approx(tiny_cfg.inference.fine_spacing_mm)
    meta = json.loads((tiny_cache[0] / "meta.json").read_text())
    assert meta["source"] == "phantom" and meta["seed"] == tiny_cfg.data.first_train_seed
    assert (labels > 0).any()


def test_samples_are_deterministic_and_shaped(tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    from inference.model.dataset import SampleMaker, load_text_table

    maker = SampleMaker(tiny_cfg, tiny_cache, load_text_table(tiny_cfg.data.cache_dir))
    q = tiny_cfg.train.seg_queries + 2
    for fine in (False, True):
        a = maker.sample(np.random.default_rng(5), fine=fine)
        b = maker.sample(np.random.default_rng(5), fine=fine)
        size = tiny_cfg.train.fine_crop_voxels if fine else tiny_cfg.train.crop_voxels
        assert a.image.shape == (3, *size)
        assert a.text.shape == (q, 384) and a.task.shape == (q,) and a.valid.shape == (q,)
        assert a.seg_target.shape == (tiny_cfg.train.seg_queries, *size)
        assert a.det_heat.shape == tuple(n // 2 for n in size)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.seg_target, b.seg_target)
        # The prior channel is empty in the whole-volume pass and used in the look-closer pass.
        if fine:
            assert a.image[2].max() > 0 and a.valid.sum() == 1
        else:
            assert a.image[2].max() == 0 and a.valid[: tiny_cfg.train.seg_queries].any()


def test_fine_sample_survives_a_structure_lost_on_the_coarse_grid(tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    """A structure present at full resolution can vanish from the 3 mm nearest-neighbour label
    map; a look-closer sample must then draw again, not stop the run (seen at step 2607)."""
    from inference.model.dataset import SampleMaker, load_text_table
    from inference.synth import structure_mask

    maker = SampleMaker(tiny_cfg, tiny_cache, load_text_table(tiny_cfg.data.cache_dir))
    lost = maker.case(0)
    _, labels, _ = lost.arrays("coarse")
    absent = next(
        n
        for n in ("gallbladder", "urinary bladder", "pancreas", "portal vein", "esophagus")
        if not structure_mask(np.asarray(labels), n).any()
    )
    lost.meta["structures_present"] = [absent]  # claims a structure the coarse map has lost
    lost.meta["lesions"] = []
    made = [maker.fine_sample(lost, np.random.default_rng(seed)) for seed in range(12)]
    assert all(s.valid.sum() == 1 and s.image.shape == (3, *tiny_cfg.train.fine_crop_voxels) for s in made)
