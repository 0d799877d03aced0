"""Loading rules: every error with its file:line, all at once; digest; schema; the shipped file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dicom_node.errors import ConfigError
from dicom_node.routing.loader import RulesConfigError, load_rules, parse_rules_text
from dicom_node.routing.rules import RuleSet, rules_json_schema

REPO = Path(__file__).resolve().parents[4]
PIPELINES = {"ct-anatomy-basic", "unified-ct"}
# what the shipped rules name (TotalSegmentator falls back to ct-anatomy-basic when not installed)
SHIPPED_PIPELINES = PIPELINES | {"totalsegmentator", "totalsegmentator-fast"}
DESTINATIONS = {"pacs", "research"}

GOOD = """\
# comment
version: 1
rules:
  - name: chest
    when:
      modality: CT
      body_part: [CHEST]
      series_description: "thorax|chest"
      slice_thickness_mm: {min: 0.5, max: 5.0}
      attributes:
        ImageType: AXIAL
    pipeline: unified-ct
    destinations: [pacs]
  - name: fallback
    when: {modality: CT}
    pipeline: ct-anatomy-basic
    destinations: [pacs]
"""


def parse(text: str) -> RuleSet:
    return parse_rules_text(
        textwrap.dedent(text),
        source_name="routing.yaml",
        known_pipelines=PIPELINES,
        known_destinations=DESTINATIONS,
    )


def line_of(text: str, fragment: str) -> int:
    """1-based line of the first line containing ``fragment`` (counted here, not by the loader)."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in text")


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(RulesConfigError) as info:
        parse(text)
    assert isinstance(info.value, ConfigError)
    return [(p.line, p.message) for p in info.value.problems]


def test_good_rules_load_with_lines() -> None:
    rules = parse(GOOD)
    assert [r.name for r in rules.rules] == ["chest", "fallback"]
    assert rules.line_of("chest") == line_of(GOOD, "name: chest")
    assert rules.line_of("fallback") == line_of(GOOD, "name: fallback")
    chest = rules.rule("chest")
    assert chest.when.modality == ["CT"]
    assert chest.when.attributes["ImageType"].exact == ["AXIAL"]


@pytest.mark.parametrize(
    ("bad_line", "fragment", "message"),
    [
        ('      series_description: "thorax|(chest"', "series_description", "invalid regular expression"),
        ("        NotAKeyword: x", "NotAKeyword", "not a DICOM keyword"),
        ("        PatientID: '123'", "PatientID", "patient identifier"),
        ("        AccessionNumber: {present: true}", "AccessionNumber", "patient identifier"),
        ("        PhysiciansOfRecord: x", "PhysiciansOfRecord", "person name"),
        ("        ReferencedImageSequence: x", "ReferencedImageSequence", "sequences and binary"),
        ("        ImageType: {regex: 'AX(IAL'}", "ImageType", "invalid regular expression"),
        ("        ImageType: {exact: AXIAL, glob: 'AX*'}", "ImageType", "exactly one of"),
        ("      slice_thickness_mm: {min: 5, max: 1}", "slice_thickness_mm", "min 5.0 is above max 1.0"),
        ("      modaltiy: CT", "modaltiy", "unknown field 'modaltiy'"),
    ],
)
def test_condition_errors_name_their_line(bad_line: str, fragment: str, message: str) -> None:
    text = f"""\
rules:
  - name: a
    when:
      modality: CT
{bad_line}
      attributes:
        KVP: "120"
    pipeline: unified-ct
    destinations: [pacs]
"""
    if bad_line.startswith("        "):  # an attributes entry: put it under `attributes:`
        text = text.replace(f"{bad_line}\n      attributes:\n", f"      attributes:\n{bad_line}\n")
    found = problems(text)
    assert len(found) == 1, found
    line, text_of_problem = found[0]
    assert message in text_of_problem
    assert "rule 'a'" in text_of_problem
    assert line == line_of(text, fragment)


def test_unknown_pipeline_and_destination_name_the_known_ones() -> None:
    text = """\
rules:
  - name: a
    pipeline: totalsegmentator
    destinations: [pacs, archive]
"""
    found = problems(text)
    assert found == [
        (
            line_of(text, "pipeline:"),
            "rule 'a': unknown pipeline 'totalsegmentator' (known: ct-anatomy-basic, unified-ct)",
        ),
        (
            line_of(text, "destinations:"),
            "rule 'a': unknown destination 'archive' (known: pacs, research;"
            " destinations are defined in the node settings)",
        ),
    ]


def test_extra_field_and_missing_field() -> None:
    text = """\
rules:
  - name: a
    pipeline: unified-ct
    destination: [pacs]
"""
    assert problems(text) == [(line_of(text, "destination:"), "rule 'a': unknown field 'destination'")]
    # no destination and not shadow: a rule-level problem, pointed at the rule itself
    text = text.replace("    destination: [pacs]\n", "")
    assert problems(text) == [
        (
            line_of(text, "name: a"),
            "rule 'a': a rule that is not shadow needs at least one destination (or set shadow: true)",
        )
    ]
    text = text.replace("name: a", "name: '-a'")
    ((line, message),) = problems(
        text.replace("    pipeline: unified-ct\n", "    pipeline: unified-ct\n    shadow: true\n")
    )
    assert line == line_of(text, "name:") and "should match pattern" in message


def test_yaml_syntax_error_has_its_line() -> None:
    text = """\
rules:
  - name: a
    pipeline: unified-ct
    destinations: [pacs
  - name: b
"""
    ((line, message),) = problems(text)
    assert message.startswith("YAML syntax error")
    assert line is not None and line_of(text, "destinations:") <= line <= line_of(text, "name: b")


def test_several_errors_reported_at_once_in_line_order() -> None:
    text = """\
rules:
  - name: one
    when:
      series_description: "("
    pipeline: nope
    destinations: [pacs]
  - name: two
    when:
      attributes:
        PatientName: x
    pipeline: unified-ct
    destinations: [pacs]
    priority: urgent
  - name: one
    pipeline: unified-ct
    destinations: [pacs]
    pipeline: ct-anatomy-basic
"""
    with pytest.raises(RulesConfigError) as info:
        parse(text)
    lines = [p.line for p in info.value.problems if p.line is not None]
    assert len(lines) == len(info.value.problems)
    assert lines == sorted(lines)
    expected_lines = [
        line_of(text, 'series_description: "("'),
        line_of(text, "pipeline: nope"),
        line_of(text, "PatientName"),
        line_of(text, "priority: urgent"),
    ]
    for expected in expected_lines:
        assert expected in lines
    text_all = str(info.value)
    assert "duplicate rule name 'one'" in text_all
    assert "duplicate key 'pipeline'" in text_all
    assert len(info.value.problems) == 6
    # the exception's location is the first problem's file:line
    assert info.value.location == f"routing.yaml:{lines[0]}"
    assert text_all.startswith(f"routing.yaml:{lines[0]}: 6 errors in routing rules:")


def test_unquoted_number_gets_a_hint_and_top_level_must_be_a_mapping() -> None:
    text = """\
rules:
  - name: a
    when:
      calling_ae: {exact: [123]}
    pipeline: unified-ct
    destinations: [pacs]
"""
    ((line, message),) = problems(text)
    assert line == line_of(text, "calling_ae")
    assert "quote it" in message
    ((_, message),) = problems("- just\n- a list\n")
    assert "top level must be a mapping" in message


def test_load_rules_reads_a_file_and_reports_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    assert load_rules(path, known_pipelines=PIPELINES, known_destinations=DESTINATIONS).source_name == str(
        path
    )
    with pytest.raises(ConfigError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml", known_pipelines=PIPELINES, known_destinations=DESTINATIONS)
    path.write_text(GOOD.replace("pipeline: ct-anatomy-basic", "pipeline: nope"))
    with pytest.raises(ConfigError) as info:
        load_rules(path, known_pipelines=PIPELINES, known_destinations=DESTINATIONS)
    assert info.value.location == f"{path}:{line_of(GOOD, 'pipeline: ct-anatomy-basic')}"


def test_digest_ignores_comments_whitespace_order_and_spelled_out_defaults() -> None:
    base = parse(GOOD).digest
    reformatted = """\
version: 1   # the format
rules:

  # the chest rule, now with its keys in another order and defaults spelled out
  - pipeline: unified-ct
    name: chest
    enabled: true
    stop: true
    when:
      attributes: {ImageType: {exact: [AXIAL]}}
      slice_thickness_mm:
        max: 5.0
        min: 0.5
      series_description: "thorax|chest"
      body_part: chest
      modality: [ct]
    destinations:
      - pacs
  - {name: fallback, when: {modality: CT}, pipeline: ct-anatomy-basic,
     destinations: [pacs], priority: routine}
"""
    assert parse(reformatted).digest == base
    assert len(base) == 64


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("max: 5.0", "max: 5.5"),
        ("body_part: [CHEST]", "body_part: [CHEST, ABDOMEN]"),
        ("destinations: [pacs]\n  - name: fallback", "destinations: [research]\n  - name: fallback"),
        ("name: fallback", "name: fallback2"),
        ("    pipeline: ct-anatomy-basic", "    pipeline: unified-ct"),
        ("ImageType: AXIAL", "ImageType: {exact: AXIAL, ignore_case: true}"),
    ],
)
def test_digest_changes_with_meaning(old: str, new: str) -> None:
    assert old in GOOD
    assert parse(GOOD.replace(old, new, 1)).digest != parse(GOOD).digest


def test_rule_order_is_meaning() -> None:
    swapped = GOOD.split("  - name: fallback")
    reordered = "rules:\n  - name: fallback" + swapped[1] + swapped[0].split("rules:\n", 1)[1]
    assert parse(reordered).digest != parse(GOOD).digest


def test_shipped_rules_load_with_the_demo_destination() -> None:
    rules = load_rules(
        REPO / "configs" / "routing.yaml", known_pipelines=SHIPPED_PIPELINES, known_destinations={"pacs"}
    )
    names = [r.name for r in rules.rules]
    assert {"ct-chest-abdomen", "ct-any-fallback"} <= set(names)
    assert any(r.shadow for r in rules.rules)
    assert any(r.priority.value == "stat" and r.when.calling_ae is not None for r in rules.rules)
    first_line = (REPO / "configs" / "routing.yaml").read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=routing.schema.json"


def test_shipped_rules_without_destinations_fail_clearly() -> None:
    with pytest.raises(RulesConfigError) as info:
        load_rules(
            REPO / "configs" / "routing.yaml", known_pipelines=SHIPPED_PIPELINES, known_destinations=()
        )
    assert all("unknown destination 'pacs'" in p.message for p in info.value.problems)


def test_committed_schema_is_current() -> None:
    committed = json.loads((REPO / "configs" / "routing.schema.json").read_text())
    assert committed == rules_json_schema(), "regenerate: ctnode rules schema > configs/routing.schema.json"


def test_schema_accepts_the_shorthands() -> None:
    schema = rules_json_schema()
    value_match = schema["$defs"]["ValueMatch"]
    assert {"type": "string", "description": "Exactly this value."} in value_match["anyOf"]
    modality = schema["$defs"]["Conditions"]["properties"]["modality"]["anyOf"]
    assert {"type": "string"} in modality
    assert schema["$defs"]["Rule"]["additionalProperties"] is False


def test_input_conditions_load_and_refuse_ae_conditions() -> None:
    from dicom_node.routing.loader import RulesConfigError, parse_rules_text

    text = (
        "version: 1\ninput:\n  image_count: {min: 10}\n"
        "rules:\n  - name: a\n    pipeline: p\n    shadow: true\n"
    )
    rules = parse_rules_text(text, source_name="r.yaml", known_pipelines=["p"], known_destinations=[])
    assert rules.input is not None and rules.input.image_count is not None
    assert rules.input.image_count.min == 10
    bad = text.replace("  image_count: {min: 10}", "  calling_ae: ER_CT")
    with pytest.raises(RulesConfigError) as info:
        parse_rules_text(bad, source_name="r.yaml", known_pipelines=["p"], known_destinations=[])
    assert "r.yaml:3" in str(info.value) and "input conditions concern series" in str(info.value)
