"""Matching on hand-built manifests: every condition kind, selection, stop, input filtering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dicom_node.contracts import LateSeriesPolicy, Priority, SeriesManifest, StudyManifest, StudySource
from dicom_node.errors import ConfigError
from dicom_node.identity import job_id_for, sop_set_digest
from dicom_node.routing.match import RoutingDecision, evaluate, quiet_period_override
from dicom_node.routing.plan import plan_jobs
from dicom_node.routing.rules import Rule, RuleSet

CT = "1.2.840.10008.5.1.4.1.1.2"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
SOURCE = StudySource(kind="staging", staging_path="/staging/1.2.3")


def series(uid: str, **overrides: Any) -> SeriesManifest:
    fields: dict[str, Any] = {
        "series_instance_uid": uid,
        "modality": "CT",
        "sop_class_uid": CT,
        "series_number": 2,
        "series_description": "Thorax 1.0 B31f",
        "body_part_examined": "CHEST",
        "slice_thickness_mm": 1.0,
        "image_count": 300,
        "sop_instance_uids": tuple(f"{uid}.{i}" for i in range(3)),
        "attributes": {
            "ImageType": "ORIGINAL\\PRIMARY\\AXIAL",
            "Rows": "512",
            "SliceThickness": "1.0",
            "ConvolutionKernel": "B31f",
        },
    }
    fields.update(overrides)
    return SeriesManifest(**fields)


def study(*items: SeriesManifest, calling: str = "CT_SCANNER_1", called: str = "CTAINODE") -> StudyManifest:
    return StudyManifest(
        study_instance_uid="1.2.3",
        calling_ae_title=calling,
        called_ae_title=called,
        source=SOURCE,
        series=items,
    )


def rule(name: str = "r", **fields: Any) -> Rule:
    data: dict[str, Any] = {"name": name, "pipeline": "unified-ct", "destinations": ["pacs"]}
    data.update(fields)
    return Rule.model_validate(data)


def ruleset(*rules: Rule) -> RuleSet:
    return RuleSet(rules=rules, source_name="test.yaml", lines={r.name: 10 + i for i, r in enumerate(rules)})


def decide(manifest: StudyManifest, *rules: Rule) -> RoutingDecision:
    return evaluate(manifest, ruleset(*rules))


# ---------------------------------------------------------------------------------------------
# Each condition kind: one study it accepts, one it refuses, and the reasons say so.
# ---------------------------------------------------------------------------------------------

CASES: list[tuple[dict[str, Any], dict[str, Any], str, str]] = [
    # (when, series overrides that make it fail, reason fragment when it fires, when it misses)
    ({"modality": "ct"}, {"modality": "MR"}, "modality CT ∈ [CT]", "modality MR ∉ [CT]"),
    (
        {"body_part": ["chest", "ABDOMEN"]},
        {"body_part_examined": "HEAD"},
        "body part CHEST ∈ [CHEST, ABDOMEN]",
        "body part HEAD ∉ [CHEST, ABDOMEN]",
    ),
    (
        {"series_description": "thorax|chest"},
        {"series_description": "Abdomen 5.0"},
        "series description 'Thorax 1.0 B31f' matches /thorax|chest/i",
        "series description 'Abdomen 5.0' does not match /thorax|chest/i",
    ),
    (
        {"exclude_series_description": "scout|topogram"},
        {"series_description": "Topogram 0.6"},
        "does not match excluded /scout|topogram/i",
        "series description 'Topogram 0.6' matches excluded /scout|topogram/i",
    ),
    (
        {"slice_thickness_mm": {"min": 0.5, "max": 5.0}},
        {"slice_thickness_mm": 7.5},
        "slice thickness 1.0 mm within [0.5, 5.0]",
        "slice thickness 7.5 mm outside [0.5, 5.0]",
    ),
    (
        {"image_count": {"min": 50}},
        {"image_count": 12},
        "image count 300 within [50, ∞)",
        "image count 12 outside [50, ∞)",
    ),
    (
        {"attributes": {"ImageType": "AXIAL"}},
        {"attributes": {"ImageType": "DERIVED\\SECONDARY\\MPR", "Rows": "512"}},
        "ImageType 'ORIGINAL\\\\PRIMARY\\\\AXIAL' matches exact [AXIAL]",
        "ImageType 'DERIVED\\\\SECONDARY\\\\MPR' does not match exact [AXIAL]",
    ),
    (
        {"attributes": {"ConvolutionKernel": {"glob": "b3*", "ignore_case": True}}},
        {"attributes": {"ConvolutionKernel": "B70f", "Rows": "512"}},
        "ConvolutionKernel 'B31f' matches glob [b3*] (ignoring case)",
        "ConvolutionKernel 'B70f' does not match glob [b3*] (ignoring case)",
    ),
    (
        {"attributes": {"ConvolutionKernel": {"regex": "B[0-4][0-9]f"}}},
        {"attributes": {"ConvolutionKernel": "XB31fX", "Rows": "512"}},  # regex must match the whole value
        "ConvolutionKernel 'B31f' matches regex /B[0-4][0-9]f/",
        "ConvolutionKernel 'XB31fX' does not match regex /B[0-4][0-9]f/",
    ),
    (
        {"attributes": {"ContrastBolusAgent": {"present": False}}},
        {"attributes": {"ContrastBolusAgent": "IOMERON 400", "Rows": "512"}},
        "ContrastBolusAgent absent matches absent or empty",
        "ContrastBolusAgent 'IOMERON 400' does not match absent or empty",
    ),
]


@pytest.mark.parametrize(("when", "failing", "fired_reason", "missed_reason"), CASES)
def test_series_condition_kinds(
    when: dict[str, Any], failing: dict[str, Any], fired_reason: str, missed_reason: str
) -> None:
    fired = decide(study(series("1.2.3.1")), rule(when=when))
    assert [m.rule_name for m in fired.matches] == ["r"]
    assert any(fired_reason in reason for reason in fired.matches[0].reasons), fired.matches[0].reasons

    missed = decide(study(series("1.2.3.1", **failing)), rule(when=when))
    assert missed.matches == ()
    (miss,) = missed.misses
    assert miss.rule_line == 10
    assert len(miss.reasons) == 1
    assert missed_reason in miss.reasons[0], miss.reasons
    assert "series 2" in miss.reasons[0]


def test_calling_and_called_ae_conditions() -> None:
    stat = rule(when={"calling_ae": {"glob": "ER_*"}, "called_ae": "CTAINODE"}, priority="stat")
    fired = decide(study(series("1.2.3.1"), calling="ER_CT"), stat)
    assert fired.matches[0].priority is Priority.STAT
    assert fired.matches[0].reasons[0] == "calling AE 'ER_CT' matches glob [ER_*]"
    assert fired.matches[0].reasons[1] == "called AE 'CTAINODE' matches exact [CTAINODE]"

    missed = decide(study(series("1.2.3.1"), calling="OR_CT"), stat)
    assert missed.misses[0].reasons == ("calling AE 'OR_CT' does not match glob [ER_*]",)

    # AE titles are case-sensitive (PS3.5) unless ignore_case; regexes match the whole title
    assert not decide(study(series("1.2.3.1"), calling="er_ct"), stat).matches
    by_regex = rule(when={"calling_ae": {"regex": "ER_(CT|CT2)"}})
    assert decide(study(series("1.2.3.1"), calling="ER_CT2"), by_regex).matches
    assert not decide(study(series("1.2.3.1"), calling="ER_CT3"), by_regex).matches


def test_unknown_slice_thickness_fails_a_thickness_condition_and_derived_is_said() -> None:
    unknown = series("1.2.3.1", slice_thickness_mm=None, attributes={"Rows": "512"})
    missed = decide(study(unknown), rule(when={"slice_thickness_mm": {"max": 5}}))
    assert "slice thickness unknown" in missed.misses[0].reasons[0]
    derived = series("1.2.3.1", slice_thickness_mm=2.0, attributes={"Rows": "512"})
    fired = decide(study(derived), rule(when={"slice_thickness_mm": {"max": 5}}))
    assert any("2.0 mm (derived: no SliceThickness) within [0, 5.0]" in r for r in fired.matches[0].reasons)


def test_body_part_empty_string_accepts_series_without_body_part() -> None:
    no_body_part = series("1.2.3.1", body_part_examined="")
    assert not decide(study(no_body_part), rule(when={"body_part": ["CHEST"]})).matches
    assert decide(study(no_body_part), rule(when={"body_part": ["CHEST", ""]})).matches


def test_node_results_and_non_image_series_never_count_as_input() -> None:
    own_seg = series("1.2.3.7", sop_class_uid=SEG, modality="SEG", is_node_result=True)
    own_ct_like = series("1.2.3.8", is_node_result=True)  # e.g. made under the node's UID root
    dose_sr = series("1.2.3.9", sop_class_uid=ENHANCED_SR, modality="SR", attributes={})
    decision = decide(study(own_seg, own_ct_like, dose_sr), rule(when={}))
    assert decision.matches == ()
    assert decision.misses[0].reasons == (
        "no input series: 3 series, of them 2 node results and 1 not images",
    )
    # with one real CT beside them, only the CT is selected
    decision = decide(study(own_seg, own_ct_like, dose_sr, series("1.2.3.1")), rule(when={}, select="all"))
    assert decision.matches[0].series_instance_uids == ("1.2.3.1",)


def test_unknown_sop_class_counts_as_image_when_it_has_rows() -> None:
    private_class = "1.2.826.0.1.3680043.10.4444.1"
    with_rows = series("1.2.3.1", sop_class_uid=private_class)
    without = series("1.2.3.2", sop_class_uid=private_class, attributes={})
    decision = decide(study(with_rows, without), rule(select="all"))
    assert decision.matches[0].series_instance_uids == ("1.2.3.1",)


def test_miss_lists_first_failure_per_series() -> None:
    scout = series("1.2.3.1", series_number=1, series_description="Topogram", image_count=2)
    thick = series("1.2.3.2", series_number=3, slice_thickness_mm=8.0)
    when = {"modality": "CT", "exclude_series_description": "topogram", "slice_thickness_mm": {"max": 5}}
    (miss,) = decide(study(scout, thick), rule(when=when)).misses
    assert miss.reasons == (
        "series 1 'Topogram' [1.2.3.1]: series description 'Topogram' matches excluded /topogram/i",
        "series 3 'Thorax 1.0 B31f' [1.2.3.2]: slice thickness 8.0 mm outside [0, 5.0]",
    )


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("thinnest", ("1.2.3.thin",)),
        ("largest", ("1.2.3.big",)),
        ("first", ("1.2.3.first",)),
        ("all", ("1.2.3.first", "1.2.3.thin", "1.2.3.big")),
    ],
)
def test_series_selection(how: str, expected: tuple[str, ...]) -> None:
    first = series("1.2.3.first", series_number=1, slice_thickness_mm=3.0, image_count=100)
    thin = series("1.2.3.thin", series_number=2, slice_thickness_mm=0.6, image_count=400)
    big = series("1.2.3.big", series_number=3, slice_thickness_mm=1.0, image_count=900)
    scout = series("1.2.3.scout", series_number=0, series_description="Scout", slice_thickness_mm=0.1)
    decision = decide(
        study(first, thin, big, scout), rule(when={"exclude_series_description": "scout"}, select=how)
    )
    assert decision.matches[0].series_instance_uids == expected
    assert decision.matches[0].reasons[-1].startswith("selected")


def test_thinnest_ties_go_to_more_images() -> None:
    a = series("1.2.3.a", series_number=2, slice_thickness_mm=1.0, image_count=200)
    b = series("1.2.3.b", series_number=3, slice_thickness_mm=1.0, image_count=400)
    assert decide(study(a, b), rule()).matches[0].series_instance_uids == ("1.2.3.b",)


def test_stop_disabled_and_continue() -> None:
    shadow = rule("shadow-first", shadow=True, destinations=[], stop=False)
    disabled = rule("off", enabled=False)
    main = rule("main", late_series="ignore", prompts=["liver"])
    fallback = rule("fallback", pipeline="ct-anatomy-basic")
    decision = decide(study(series("1.2.3.1")), shadow, disabled, main, fallback)
    assert [m.rule_name for m in decision.matches] == ["shadow-first", "main"]
    assert decision.matches[0].shadow is True
    assert decision.matches[1].late_series is LateSeriesPolicy.IGNORE
    assert decision.matches[1].prompts == ("liver",)
    assert decision.matches[1].rule_line == 12
    misses = {m.rule_name: m.reasons for m in decision.misses}
    assert misses["off"] == ("disabled (enabled: false)",)
    assert misses["fallback"] == ("not tried: rule 'main' fired before it with stop: true",)
    assert decision.ruleset_digest == ruleset(shadow, disabled, main, fallback).digest


def test_quiet_period_override_considers_only_rules_whose_ae_conditions_hold() -> None:
    rules = ruleset(
        rule("er", when={"calling_ae": "ER_CT", "modality": "CT"}, quiet_period_s=3),
        rule("slow", when={"calling_ae": {"glob": "OUTSIDE_*"}}, quiet_period_s=120),
        rule("any", quiet_period_s=20),
        rule("off", enabled=False, quiet_period_s=999),
        rule("none"),
    )
    assert quiet_period_override(rules, calling_ae_title="ER_CT", called_ae_title="X") == 20
    assert quiet_period_override(rules, calling_ae_title="OUTSIDE_1", called_ae_title="X") == 120
    only_er = ruleset(rule("er", when={"calling_ae": "ER_CT"}, quiet_period_s=3), rule("none"))
    assert quiet_period_override(only_er, calling_ae_title="ER_CT", called_ae_title="X") == 3
    assert quiet_period_override(only_er, calling_ae_title="CT2", called_ae_title="X") is None


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_plan_jobs_one_per_selected_series_with_deterministic_ids() -> None:
    a = series("1.2.3.a", series_number=2)
    b = series("1.2.3.b", series_number=3, sop_instance_uids=("1.2.3.b.9", "1.2.3.b.8"))
    manifest = study(a, b)
    rules = ruleset(rule("all", select="all", priority="stat", prompts=["liver"]))
    decision = evaluate(manifest, rules)
    jobs = plan_jobs(
        manifest, decision, ruleset_digest=rules.digest, model_versions={"unified-ct": "v1"}, created_at=NOW
    )
    assert [j.series_instance_uids for j in jobs] == [("1.2.3.a",), ("1.2.3.b",)]
    expected_id = job_id_for(
        study_instance_uid="1.2.3",
        series_instance_uids=["1.2.3.b"],
        pipeline="unified-ct",
        model_version="v1",
        ruleset_digest=rules.digest,
        sop_digest=sop_set_digest(["1.2.3.b.8", "1.2.3.b.9"]),
    )
    assert jobs[1].job_id == expected_id
    assert jobs[1].priority is Priority.STAT
    assert jobs[1].destinations == ("pacs",)
    assert jobs[1].calling_ae_title == "CT_SCANNER_1"
    assert jobs[1].source == SOURCE
    again = plan_jobs(
        manifest,
        evaluate(manifest, rules),
        ruleset_digest=rules.digest,
        model_versions={"unified-ct": "v1"},
        created_at=NOW,
    )
    assert [j.job_id for j in again] == [j.job_id for j in jobs]
    # a late image changes the SOP set, hence the job
    late = study(a, b.model_copy(update={"sop_instance_uids": (*b.sop_instance_uids, "1.2.3.b.10")}))
    late_jobs = plan_jobs(
        late,
        evaluate(late, rules),
        ruleset_digest=rules.digest,
        model_versions={"unified-ct": "v1"},
        created_at=NOW,
    )
    assert late_jobs[0].job_id == jobs[0].job_id and late_jobs[1].job_id != jobs[1].job_id


def test_plan_jobs_merges_rules_that_select_the_same_series_for_the_same_pipeline() -> None:
    manifest = study(series("1.2.3.a"))
    rules = ruleset(
        rule("shadow", shadow=True, destinations=["research"], stop=False, prompts=["aorta"]),
        rule("live", prompts=["liver", "aorta"], priority="stat"),
    )
    decision = evaluate(manifest, rules)
    (job,) = plan_jobs(
        manifest, decision, ruleset_digest=rules.digest, model_versions={"unified-ct": "v1"}, created_at=NOW
    )
    assert job.rule_name == "shadow+live"
    assert job.shadow is False
    assert job.destinations == ("pacs",)  # a shadow rule delivers nothing
    assert job.prompts == ("aorta", "liver")
    assert job.priority is Priority.STAT


def test_plan_jobs_needs_a_model_version_for_each_pipeline() -> None:
    manifest = study(series("1.2.3.a"))
    rules = ruleset(rule())
    with pytest.raises(ConfigError, match="unified-ct"):
        plan_jobs(
            manifest,
            evaluate(manifest, rules),
            ruleset_digest=rules.digest,
            model_versions={},
            created_at=NOW,
        )


# ---------------------------------------------------------------------------------------------
# Input conditions: what every rule, shadow rules included, applies first (issue 12, item 13)
# ---------------------------------------------------------------------------------------------


def test_input_conditions_keep_a_shadow_rule_off_a_one_image_study() -> None:
    from dicom_node.routing.rules import Conditions

    one_image = study(series("1.2.3.1", image_count=1, sop_instance_uids=("1.2.3.1.1",)))
    shadow = rule("shadow-vessels", shadow=True, destinations=[], stop=False)
    real = rule("real", when={"image_count": {"min": 40}})
    without = evaluate(one_image, ruleset(shadow, real))
    assert [m.rule_name for m in without.matches] == ["shadow-vessels"]  # the defect, without input:
    rules = RuleSet(rules=(shadow, real), input=Conditions.model_validate({"image_count": {"min": 10}}))
    decision = evaluate(one_image, rules)
    assert decision.matches == ()
    (miss, _) = decision.misses
    assert miss.rule_name == "shadow-vessels"
    assert "1 below the rules' input conditions" in miss.reasons[0]
    assert "image count 1 outside [10, ∞) (input conditions)" in miss.reasons[1]
    # a study with enough images fires both, as before
    enough = evaluate(study(series("1.2.3.1", image_count=60)), rules)
    assert [m.rule_name for m in enough.matches] == ["shadow-vessels", "real"]


def test_input_conditions_change_the_digest_only_when_given() -> None:
    from dicom_node.routing.rules import Conditions

    plain = RuleSet(rules=(rule(),))
    assert RuleSet(rules=(rule(),), input=None).digest == plain.digest
    floor = RuleSet(rules=(rule(),), input=Conditions.model_validate({"image_count": {"min": 10}}))
    assert floor.digest != plain.digest
