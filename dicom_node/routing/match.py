"""Rule matching: a pure function of (manifest, rules) with a human-readable reason for everything.

:func:`evaluate` tries the rules in order. For a rule that fires, :class:`RouteMatch` lists the
series it selected and why each condition held ("modality CT ∈ [CT]", "slice thickness 1.0 mm
within [0.5, 5.0]"); for one that does not, :class:`RuleMiss` gives, per input series, the first
condition that failed with the actual value. Node results (``is_node_result``) and non-image
series (SR, PR, KO, RAW, ...) never count as input. No eval, no shell: conditions are data.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict
from pydicom.uid import UID

from dicom_node.contracts import RouteMatch, RuleMiss, SeriesManifest, StudyManifest
from dicom_node.routing.rules import Conditions, FloatRange, Rule, RuleSet, Selection, ValueMatch, compiled


class RoutingDecision(BaseModel):
    """What the rules decided for one study: the rules that fired, in order, and those that did not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    matches: tuple[RouteMatch, ...]
    misses: tuple[RuleMiss, ...]
    ruleset_digest: str = ""


# ---------------------------------------------------------------------------------------------
# Which series are input at all
# ---------------------------------------------------------------------------------------------


def is_image_series(series: SeriesManifest) -> bool:
    """True for series of images (CT, MR, ...); false for SR, PR, KO, RAW, registration, ...

    Every image storage SOP class is named "... Image Storage" in PS3.6 Table A-1 (pydicom's UID
    dictionary). For a SOP class pydicom does not know, the Image Pixel module decides: Rows is
    Type 1 there (PS3.3 C.7.6.3), so an image's manifest attributes have it.
    """
    uid = UID(series.sop_class_uid)
    name = uid.name
    if "Image Storage" in name:
        return True
    if series.sop_class_uid and name != series.sop_class_uid:
        return False  # a known SOP class that is not an image
    return "Rows" in series.attributes


def is_input_series(series: SeriesManifest) -> bool:
    return not series.is_node_result and is_image_series(series)


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


def value_matches(value: str | None, condition: ValueMatch) -> bool:
    """Whether a value satisfies a value match (see :mod:`dicom_node.routing.rules`)."""
    if condition.present is not None:
        return bool(value) == condition.present
    if value is None:
        return False
    whole = value.strip()
    candidates = [whole]
    if "\\" in whole:  # several values (VM > 1): the whole string or any one value may match
        candidates.extend(part.strip() for part in whole.split("\\"))
    if condition.ignore_case:
        candidates = [c.casefold() for c in candidates]
    if condition.exact is not None:
        wanted = {(e.strip().casefold() if condition.ignore_case else e.strip()) for e in condition.exact}
        return any(c in wanted for c in candidates)
    if condition.glob is not None:
        patterns = [g.casefold() if condition.ignore_case else g for g in condition.glob]
        return any(fnmatch.fnmatchcase(c, p) for c in candidates for p in patterns)
    if condition.regex is not None:
        pattern = compiled(condition.regex, ignore_case=condition.ignore_case)
        return any(pattern.fullmatch(c) is not None for c in candidates)
    return False


def _shown(value: str | None) -> str:
    if value is None:
        return "absent"
    return repr(value) if value else "(empty)"


def _value_check(label: str, value: str | None, condition: ValueMatch) -> tuple[bool, str]:
    ok = value_matches(value, condition)
    verb = "matches" if ok else "does not match"
    return ok, f"{label} {_shown(value)} {verb} {condition.describe()}"


def _codes_check(label: str, value: str, allowed: Sequence[str]) -> tuple[bool, str]:
    ok = value.strip().upper() in allowed
    shown = value.strip() or "(empty)"
    listed = ", ".join(a or '""' for a in allowed)
    return ok, f"{label} {shown} {'∈' if ok else '∉'} [{listed}]"


def _range_check(
    label: str, value: float | None, allowed: FloatRange, unit: str, note: str = ""
) -> tuple[bool, str]:
    if value is None:
        return False, f"{label} unknown, needed within {allowed.describe()}"
    ok = allowed.contains(value)
    return ok, f"{label} {value!r}{unit}{note} {'within' if ok else 'outside'} {allowed.describe()}"


def series_checks(series: SeriesManifest, conditions: Conditions) -> list[tuple[bool, str]]:
    """Each series condition in a fixed order, with its outcome and reason; stops at the first failure."""
    results: list[tuple[bool, str]] = []

    def add(outcome: tuple[bool, str]) -> bool:
        results.append(outcome)
        return outcome[0]

    if conditions.modality is not None and not add(
        _codes_check("modality", series.modality, conditions.modality)
    ):
        return results
    if conditions.body_part is not None and not add(
        _codes_check("body part", series.body_part_examined, conditions.body_part)
    ):
        return results
    description = series.series_description
    if conditions.series_description is not None:
        found = compiled(conditions.series_description, ignore_case=True).search(description) is not None
        verb = "matches" if found else "does not match"
        if not add(
            (found, f"series description {_shown(description)} {verb} /{conditions.series_description}/i")
        ):
            return results
    if conditions.exclude_series_description is not None:
        excluded = compiled(conditions.exclude_series_description, ignore_case=True).search(description)
        verb = "matches excluded" if excluded else "does not match excluded"
        text = f"series description {_shown(description)} {verb} /{conditions.exclude_series_description}/i"
        if not add((excluded is None, text)):
            return results
    if conditions.slice_thickness_mm is not None:
        # A thickness not read from SliceThickness was derived from the slice positions.
        note = "" if "SliceThickness" in series.attributes else " (derived: no SliceThickness)"
        if not add(
            _range_check(
                "slice thickness", series.slice_thickness_mm, conditions.slice_thickness_mm, " mm", note
            )
        ):
            return results
    if conditions.image_count is not None and not add(
        _range_check("image count", series.image_count, conditions.image_count, "")
    ):
        return results
    for keyword, condition in conditions.attributes.items():
        if not add(_value_check(keyword, series.attributes.get(keyword), condition)):
            return results
    return results


def _ae_checks(manifest: StudyManifest, conditions: Conditions) -> list[tuple[bool, str]]:
    results = []
    for label, value, condition in (
        ("calling AE", manifest.calling_ae_title, conditions.calling_ae),
        ("called AE", manifest.called_ae_title, conditions.called_ae),
    ):
        if condition is None:
            continue
        results.append(_value_check(label, value.strip(), condition))
        if not results[-1][0]:
            break
    return results


def ae_conditions_hold(rule: Rule, *, calling_ae_title: str, called_ae_title: str) -> bool:
    """The study-level (association) conditions only: known before any header is read."""
    for value, condition in (
        (calling_ae_title, rule.when.calling_ae),
        (called_ae_title, rule.when.called_ae),
    ):
        if condition is not None and not value_matches(value.strip(), condition):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------


def series_label(series: SeriesManifest) -> str:
    number = f"series {series.series_number}" if series.series_number is not None else "series"
    description = f" {series.series_description!r}" if series.series_description else ""
    return f"{number}{description} [{series.series_instance_uid}]"


def _thickness_key(series: SeriesManifest) -> float:
    return series.slice_thickness_mm if series.slice_thickness_mm is not None else float("inf")


def _number_key(series: SeriesManifest) -> float:
    return series.series_number if series.series_number is not None else float("inf")


def select_series(passing: Sequence[SeriesManifest], how: Selection) -> tuple[list[SeriesManifest], str]:
    """The series a rule processes among those passing its conditions, and a reason."""
    count = len(passing)
    if how is Selection.ALL:
        return list(passing), f"selected all {count} passing series"
    order = {id(s): i for i, s in enumerate(passing)}
    if how is Selection.THINNEST:
        chosen = min(passing, key=lambda s: (_thickness_key(s), -s.image_count, _number_key(s), order[id(s)]))
        thickness = (
            f"{chosen.slice_thickness_mm!r} mm" if chosen.slice_thickness_mm is not None else "unknown"
        )
        detail = f"thinnest ({thickness})"
    elif how is Selection.LARGEST:
        chosen = min(passing, key=lambda s: (-s.image_count, _thickness_key(s), _number_key(s), order[id(s)]))
        detail = f"largest ({chosen.image_count} images)"
    else:
        chosen = min(passing, key=lambda s: (_number_key(s), order[id(s)]))
        detail = "first by series number"
    return [chosen], f"selected {series_label(chosen)}: {detail} of {count} passing"


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def evaluate(manifest: StudyManifest, rules: RuleSet) -> RoutingDecision:
    """Try every rule on the study, in order; ``stop: true`` on a fired rule ends the search."""
    inputs = [s for s in manifest.series if is_input_series(s)]
    below_input: list[str] = []
    if rules.input is not None:
        kept = []
        for series in inputs:
            checks = series_checks(series, rules.input)
            if all(ok for ok, _ in checks):
                kept.append(series)
            else:
                below_input.append(f"{series_label(series)}: {checks[-1][1]} (input conditions)")
        inputs = kept
    matches: list[RouteMatch] = []
    misses: list[RuleMiss] = []
    stopped_by: str | None = None
    for rule in rules.rules:
        line = rules.line_of(rule.name)

        def miss(*reasons: str, rule: Rule = rule, line: int | None = line) -> None:
            misses.append(RuleMiss(rule_name=rule.name, rule_line=line, reasons=reasons))

        if stopped_by is not None:
            miss(f"not tried: rule {stopped_by!r} fired before it with stop: true")
            continue
        if not rule.enabled:
            miss("disabled (enabled: false)")
            continue
        ae_results = _ae_checks(manifest, rule.when)
        if ae_results and not ae_results[-1][0]:
            miss(ae_results[-1][1])
            continue
        if not inputs:
            miss(_no_input_reason(manifest, len(below_input)), *below_input)
            continue
        passing: list[SeriesManifest] = []
        why: dict[str, list[str]] = {}
        failures: list[str] = []
        for series in inputs:
            checks = series_checks(series, rule.when)
            if all(ok for ok, _ in checks):
                passing.append(series)
                why[series.series_instance_uid] = [text for _, text in checks]
            else:
                failures.append(f"{series_label(series)}: {checks[-1][1]}")
        if not passing:
            miss(*failures)
            continue
        chosen, selection_reason = select_series(passing, rule.select)
        reasons = [text for _, text in ae_results]
        for series in chosen:
            conditions = why[series.series_instance_uid] or ["no series conditions"]
            reasons.extend(f"{series_label(series)}: {text}" for text in conditions)
        reasons.append(selection_reason)
        matches.append(
            RouteMatch(
                rule_name=rule.name,
                rule_line=line,
                pipeline=rule.pipeline,
                prompts=tuple(rule.prompts),
                priority=rule.priority,
                destinations=tuple(rule.destinations),
                series_instance_uids=tuple(s.series_instance_uid for s in chosen),
                late_series=rule.late_series,
                shadow=rule.shadow,
                reasons=tuple(reasons),
            )
        )
        if rule.stop:
            stopped_by = rule.name
    return RoutingDecision(matches=tuple(matches), misses=tuple(misses), ruleset_digest=rules.digest)


def _no_input_reason(manifest: StudyManifest, below_input: int = 0) -> str:
    results = sum(1 for s in manifest.series if s.is_node_result)
    non_image = sum(1 for s in manifest.series if not s.is_node_result and not is_image_series(s))
    text = (
        f"no input series: {len(manifest.series)} series, of them {results} node results and "
        f"{non_image} not images"
    )
    if below_input:
        text += f"; {below_input} below the rules' input conditions"
    return text


def quiet_period_override(rules: RuleSet, *, calling_ae_title: str, called_ae_title: str) -> float | None:
    """The completion quiet period (s) the rules ask for a study arriving on this association.

    While a study arrives only its AE titles are known, so only rules whose AE conditions hold are
    considered; of their ``quiet_period_s`` the longest wins (waiting longer splits no study).
    None when no such rule sets one: the settings decide. The study tracker calls this.
    """
    periods = [
        rule.quiet_period_s
        for rule in rules.rules
        if rule.enabled
        and rule.quiet_period_s is not None
        and ae_conditions_hold(rule, calling_ae_title=calling_ae_title, called_ae_title=called_ae_title)
    ]
    return max(periods) if periods else None
