"""Tiny MONAI bundles in the Model Zoo layout (configs/metadata.json, configs/inference.json,
models/model.pt), random weights made here: a UNet segmentation bundle and a RetinaNet detection
bundle laid out like MONAI's lung-nodule detection bundle (``network_def``, ``detector``,
``detector_ops``)."""

from __future__ import annotations

import json
from pathlib import Path

PREPROCESSING = [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [3.0, 3.0, 3.0], "mode": "bilinear"},
    {
        "_target_": "ScaleIntensityRanged",
        "keys": "image",
        "a_min": -200,
        "a_max": 300,
        "b_min": 0.0,
        "b_max": 1.0,
        "clip": True,
    },
    {"_target_": "EnsureTyped", "keys": "image"},
]


EXTRACTOR = """
from collections import OrderedDict

import torch
from torch import nn


class SmallFeatureExtractor(nn.Module):
    \"\"\"Three feature maps at strides 2, 4, 8 (what RetinaNet's anchors expect from an FPN).\"\"\"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels
        self.stem = nn.Sequential(nn.Conv3d(1, channels, 3, stride=2, padding=1), nn.ReLU())
        self.down1 = nn.Sequential(nn.Conv3d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv3d(channels, channels, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> OrderedDict:
        a = self.stem(x)
        b = self.down1(a)
        c = self.down2(b)
        return OrderedDict([("0", a), ("1", b), ("2", c)])
"""


def make_segmentation_bundle(
    root: Path, *, classes: dict[int, str], seed: int = 0, metadata: bool = True
) -> Path:
    import torch
    from monai.networks.nets import UNet

    bundle = root / "seg_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    n = len(classes) + 1
    network = {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": n,
        "channels": [4, 8, 16],
        "strides": [2, 2],
        "num_res_units": 1,
    }
    config = {
        "bundle_root": ".",
        "device": "cpu",
        "output_dir": "$@bundle_root + '/eval'",
        "network_def": network,
        "preprocessing": {"_target_": "Compose", "transforms": PREPROCESSING},
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": [32, 32, 32],
            "sw_batch_size": 1,
            "overlap": 0.25,
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            ],
        },
    }
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    if metadata:
        channel_def = {"0": "background", **{str(k): v for k, v in classes.items()}}
        meta = {
            "version": "0.1.0",
            "license": "Apache-2.0 (test bundle)",
            "description": "tiny test segmentation bundle",
            "network_data_format": {
                "inputs": {"image": {"type": "image", "num_channels": 1}},
                "outputs": {"pred": {"type": "image", "num_channels": n, "channel_def": channel_def}},
            },
        }
        (bundle / "configs" / "metadata.json").write_text(json.dumps(meta, indent=1))
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in network.items() if k != "_target_"}
    torch.save(UNet(**kwargs).state_dict(), bundle / "models" / "model.pt")  # type: ignore[arg-type]
    return bundle


def make_detection_bundle(root: Path, *, class_name: str = "lung nodule", seed: int = 0) -> Path:
    import torch
    from monai.bundle import ConfigParser

    bundle = root / "det_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    config = {
        "bundle_root": ".",
        "device": "cpu",
        # MONAI's resnet_fpn_feature_extractor needs torchvision (absent on CPU-torch machines): the
        # bundle ships its own small extractor in scripts/, as Model Zoo bundles may.
        "feature_extractor": {"_target_": "scripts.extractor.SmallFeatureExtractor", "channels": 16},
        "network_def": {
            "_target_": "RetinaNet",
            "spatial_dims": 3,
            "num_classes": 1,
            "num_anchors": 3,
            "feature_extractor": "@feature_extractor",
            "size_divisible": [16, 16, 8],
        },
        "network": "$@network_def.to(@device)",
        "anchor_generator": {
            "_target_": "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
            "feature_map_scales": [1, 2, 4],
            "base_anchor_shapes": [[6, 8, 4], [8, 6, 5], [10, 10, 6]],
        },
        "detector": {
            "_target_": "RetinaNetDetector",
            "network": "@network",
            "anchor_generator": "@anchor_generator",
            "debug": False,
        },
        "detector_ops": [
            "$@detector.set_target_keys(box_key='box', label_key='label')",
            "$@detector.set_box_selector_parameters(score_thresh=0.0,topk_candidates_per_level=50,"
            "nms_thresh=0.22,detections_per_img=5)",
            "$@detector.set_sliding_window_inferer(roi_size=[64,64,32],overlap=0.25,sw_batch_size=1,"
            "mode='constant',device='cpu')",
        ],
        "preprocessing": {"_target_": "Compose", "transforms": PREPROCESSING},
    }
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    (bundle / "scripts").mkdir()
    (bundle / "scripts" / "__init__.py").write_text("")
    (bundle / "scripts" / "extractor.py").write_text(EXTRACTOR)
    meta = {
        "version": "0.2.0",
        "license": "Apache-2.0 (test bundle)",
        "description": "tiny test detection bundle (RetinaNet)",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 1}},
            "outputs": {"pred": {"type": "object", "num_channels": 7, "channel_def": {"0": class_name}}},
        },
    }
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta, indent=1))
    torch.manual_seed(seed)
    import sys

    sys.path.insert(0, str(bundle))
    try:
        parser = ConfigParser(config)
        network = parser.get_parsed_content("network_def")
    finally:
        sys.path.remove(str(bundle))
        sys.modules.pop("scripts.extractor", None)
        sys.modules.pop("scripts", None)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    return bundle
