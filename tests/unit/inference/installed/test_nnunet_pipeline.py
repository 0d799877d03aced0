"""nnU-Net v2 models through the registry: sha256 before unpickling, orientation, coded answers,
``pipeline: auto`` across two models, and a plugin pipeline from an entry point."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.contracts import Request, Task, VolumeInput, parse_prompt
from inference.installed.card import ModelError, installed_dir
from inference.installed.importer import import_model
from inference.nnunet.orientation import from_network, to_network
from inference.registry import PipelineUnavailable, available, get_pipeline, info, pipeline_version, registry
from inference.vocabulary import LEFT, STRUCTURES

pytestmark = pytest.mark.model

# (slice, row, column) -> LPS: columns to the patient's left, rows to posterior, slices upwards
AXIAL = np.array([[0, 0, 1.6, -40.0], [0, 1.5, 0, -30.0], [2.5, 0, 0, 10.0], [0, 0, 0, 1.0]])


def _volume(shape: tuple[int, int, int] = (22, 26, 30), seed: int = 5) -> VolumeInput:
    rng = np.random.default_rng(seed)
    hu = rng.normal(0.0, 40.0, size=shape).astype(np.float32)
    hu[4:12, 3:10, 5:14] += 300.0  # an asymmetric bright block
    return VolumeInput(hu, AXIAL.copy())


def _flipped(volume: VolumeInput) -> VolumeInput:
    """The same physical image stored with slices downwards and columns to the right."""
    hu = volume.hu[::-1, :, ::-1].copy()
    affine = volume.affine_lps.copy()
    n_s, _, n_c = volume.hu.shape
    affine[:3, 3] = (
        volume.affine_lps[:3, 3] + volume.affine_lps[:3, 0] * (n_s - 1) + volume.affine_lps[:3, 2] * (n_c - 1)
    )
    affine[:3, 0] *= -1
    affine[:3, 2] *= -1
    return VolumeInput(np.ascontiguousarray(hu), affine)


@pytest.mark.parametrize(
    "affine",
    [
        AXIAL,
        np.array([[0, 0, -1.6, 40.0], [0, 1.5, 0, -30.0], [-2.5, 0, 0, 10.0], [0, 0, 0, 1.0]]),  # flipped
        np.array([[0, 1.5, 0, 0.0], [0, 0, 1.6, 0.0], [2.5, 0, 0, 0.0], [0, 0, 0, 1.0]]),  # rows/cols swapped
    ],
)
def test_orientation_corner_round_trip(affine: np.ndarray) -> None:
    hu = np.zeros((5, 6, 7), dtype=np.float32)
    hu[0, 1, 2] = 1.0  # one voxel, off every axis' centre
    network, spacing, undo = to_network(hu, affine)
    lps = affine @ np.array([0, 1, 2, 1.0])
    # network axes increase to superior, anterior, right (canonical RAS read as SimpleITK [z, y, x])
    z, y, x = (int(v) for v in np.argwhere(network == 1.0)[0])
    corners = affine @ np.array([[k, r, c, 1.0] for k in (0, 4) for r in (0, 5) for c in (0, 6)]).T
    lo, hi = corners[:3].min(axis=1), corners[:3].max(axis=1)
    step = np.array([spacing[2], spacing[1], spacing[0]])  # R/L, A/P, S spacing
    assert z == round((lps[2] - lo[2]) / step[2])  # superior is +z in LPS
    assert y == round((hi[1] - lps[1]) / step[1])  # anterior is -y in LPS
    assert x == round((hi[0] - lps[0]) / step[0])  # right is -x in LPS
    back = from_network(network.astype(np.uint8), undo)
    assert back.shape == hu.shape
    assert [tuple(p) for p in np.argwhere(back == 1)] == [(0, 1, 2)]


def test_installed_nnunet_model_answers_with_coded_segments(organs_model: Path, model_dir: Path) -> None:
    card = import_model(organs_model, name="organs")
    assert "nnunet:organs" in available()
    assert pipeline_version("nnunet:organs") == card.version_tag
    assert set(info("nnunet:organs").answers()) == {"liver", "spleen", "kidney cyst"}
    pipeline = get_pipeline("nnunet:organs", device="cpu")
    assert get_pipeline("nnunet:organs", device="cpu") is pipeline  # kept warm
    volume = _volume()
    requests = [parse_prompt(p) for p in pipeline.default_prompts] + [Request(Task.SEG, "hepatic")]
    out = pipeline.run(volume, requests)
    assert out.model_name == "nnunet:organs" and out.model_version == card.version_tag
    assert out.labelmap.shape == volume.hu.shape
    assert out.segments, "random weights still paint some class"
    for seg in out.segments:
        structure = STRUCTURES[seg.name]
        assert (seg.type, seg.category, seg.type_modifier) == (
            structure.type,
            structure.category,
            structure.type_modifier,
        )
        assert (seg.algorithm_name, seg.algorithm_version) == ("organs", card.version_tag)
        assert np.count_nonzero(out.labelmap == seg.label_value) > 0
    # "hepatic" is the liver: one segment, the second prompt said so
    assert [s.name for s in out.segments].count("liver") <= 1
    for det in out.detections:
        assert det.name == "kidney cyst" and det.category.value == "49755003"


def test_storage_order_does_not_change_the_answer(organs_model: Path, model_dir: Path) -> None:
    import_model(organs_model, name="organs")
    pipeline = get_pipeline("nnunet:organs", device="cpu")
    requests = [Request(Task.SEG, "liver"), Request(Task.SEG, "spleen")]
    volume = _volume()
    a = pipeline.run(volume, requests)
    b = pipeline.run(_flipped(volume), requests)
    names_a = {s.label_value: s.name for s in a.segments}
    names_b = {s.label_value: s.name for s in b.segments}
    named_a = np.vectorize(lambda v: names_a.get(int(v), ""))(a.labelmap)
    named_b = np.vectorize(lambda v: names_b.get(int(v), ""))(b.labelmap)[::-1, :, ::-1]
    assert np.array_equal(named_a, named_b)  # the same voxel of the patient, the same answer
    assert (named_a != "").any()


class _Marker:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    path = ""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path(self.path),))  # type: ignore[return-value]


def test_wrong_sha256_refuses_the_checkpoint_before_unpickling(
    organs_model: Path, model_dir: Path, tmp_path: Path
) -> None:
    card = import_model(organs_model, name="organs")
    checkpoint = next(p for p in card.files if p.endswith("fold_0/checkpoint_final.pth"))
    marker = tmp_path / "unpickled"
    _Marker.path = str(marker)
    (installed_dir() / "organs" / checkpoint).write_bytes(pickle.dumps(_Marker()))
    with pytest.raises(ModelError, match=r"does not match its card: sha256 .* != .*it is not loaded"):
        get_pipeline("nnunet:organs", device="cpu")
    assert not marker.exists()


def test_unknown_and_not_installed_pipelines(model_dir: Path) -> None:
    with pytest.raises(KeyError, match=r"ctnode model import PATH --name nothere"):
        info("nnunet:nothere")
    assert "totalsegmentator" in available()
    missing = info("totalsegmentator").missing()
    assert missing is not None and "Dataset291" in missing and "ctnode model import" in missing
    assert info("totalsegmentator").fallback == "ct-anatomy-basic"
    with pytest.raises(PipelineUnavailable, match="TotalSegmentator weights not installed"):
        get_pipeline("totalsegmentator-fast", device="cpu")


def test_totalsegmentator_is_installed_when_its_datasets_are(
    organs_model: Path, model_dir: Path, tmp_path: Path
) -> None:
    # TotalSegmentator's 3 mm model is dataset 297: a folder named so stands in for its zip here.
    import shutil

    fake = tmp_path / "Dataset297_TotalSegmentator_total_3mm_1559subj" / organs_model.name
    shutil.copytree(organs_model, fake)
    import_model(fake.parent, name="totalseg-297")
    assert info("totalsegmentator-fast").missing() is None
    assert info("totalsegmentator").missing() is not None  # the five 1.5 mm parts are not there
    pipeline = get_pipeline("totalsegmentator-fast", device="cpu")
    out = pipeline.run(_volume(), [Request(Task.SEG, "spleen")])
    assert out.model_name == "totalsegmentator-fast"
    assert all(s.algorithm_name == "totalseg-297" for s in out.segments)


def test_auto_mixes_two_installed_models_in_one_answer(
    organs_model: Path, spine_model: Path, model_dir: Path
) -> None:
    organs = import_model(organs_model, name="organs")
    spine = import_model(spine_model, name="spine")
    assert spine.nnunet["trainer"] == "nnUNetTrainerNoMirroring"  # TotalSegmentator's: must load here
    pipeline = get_pipeline("auto", device="cpu")
    prompts = ["hepatic", "spleen", "left renal organ", "L3 vertebra", "lumbar spine", "banana"]
    out = pipeline.run(_volume(), [parse_prompt(p) for p in prompts])
    by_model = {s.algorithm_name for s in out.segments}
    assert by_model <= {"organs", "spine"}
    assert len(by_model) == 2, [(s.name, s.algorithm_name) for s in out.segments]
    versions = {s.algorithm_name: s.algorithm_version for s in out.segments}
    assert versions == {"organs": organs.version_tag, "spine": spine.version_tag}
    for seg in out.segments:
        assert np.count_nonzero(out.labelmap == seg.label_value) > 0
    left = [s for s in out.segments if s.name == "left kidney"]
    assert all(s.type_modifier == LEFT and s.algorithm_name == "spine" for s in left)
    assert any(u.prompt == "banana" and u.reason.startswith("no match") for u in out.unmatched)
    assert out.model_version == pipeline_version("auto")


def test_plugin_pipeline_from_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    site = tmp_path / "site"
    dist = site / "ctnode_test_plugin-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ctnode-test-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[ctnode.pipelines]\nthreshold-bone = ctnode_test_plugin:BonePipeline\n"
    )
    (site / "ctnode_test_plugin.py").write_text(
        '''
import numpy as np
from inference.answer import ClassMap, answer_requests


class BonePipeline:
    """Everything above 200 HU, as a plugin package would ship a pipeline."""

    name = "threshold-bone"
    version = "threshold-bone@0.3"
    answers = ("bone",)
    default_prompts = ("bone",)

    def run(self, volume, requests):
        labels = (volume.hu > 200).astype(np.uint8)
        maps = [ClassMap(labels, {1: "bone"}, self.name, self.version)]
        return answer_requests(volume, requests, maps, model_name=self.name, model_version=self.version)
'''
    )
    monkeypatch.syspath_prepend(str(site))
    assert registry()["threshold-bone"].source == "entry point"
    assert "threshold-bone" in available()
    assert pipeline_version("threshold-bone") == "threshold-bone@0.3"
    volume = _volume()
    out = get_pipeline("threshold-bone").run(volume, [parse_prompt("osseous")])
    assert [s.name for s in out.segments] == ["bone"]
    assert np.array_equal(out.labelmap > 0, volume.hu > 200)
    sys.modules.pop("ctnode_test_plugin", None)
