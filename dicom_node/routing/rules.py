"""The routing rule model: what a rules file (``configs/routing.yaml``) may say, validated at load.

A rules file is a list of rules tried in order. Each rule has conditions (``when:``) and an action
(pipeline, prompts, priority, destinations, ...)::

    version: 1
    rules:
      - name: ct-chest-abdomen
        when:
          modality: CT
          body_part: [CHEST, ABDOMEN]
          slice_thickness_mm: {min: 0.5, max: 5.0}
        select: thinnest
        pipeline: unified-ct
        destinations: [pacs]

Conditions, and how strings are compared (the choice the brief leaves open):

* ``calling_ae`` / ``called_ae`` and each ``attributes`` entry take a *value match*: a string
  (exact), a list of strings (any of them, exact), or a mapping with exactly one of ``exact`` (a
  string or list), ``glob`` (shell-style ``*``/``?``/``[...]``, a string or list), ``regex``
  (Python ``re``, must match the WHOLE value, like dcm4chee-arc's attribute filters, so ``ER``
  never matches ``NOTER``) or ``present`` (true: present and not empty; false: absent or empty),
  plus ``ignore_case`` (default false: AE titles are case-sensitive, PS3.5 Table 6.2-1; leading and
  trailing spaces are not significant and are stripped). A multi-valued attribute (``A\\B\\C``,
  e.g. ImageType) matches when the whole string or any single value matches.
* ``modality``, ``body_part``: lists of code strings (a single string is a list of one), compared
  case-insensitively; put ``""`` in ``body_part`` to accept series without BodyPartExamined.
* ``series_description`` / ``exclude_series_description``: a regular expression SEARCHED in
  SeriesDescription, case-insensitively (descriptions are free text: ``chest`` finds
  ``Thorax/Chest 1.0 B31f``). Compiled at load; a bad pattern is an error with its line.
* ``slice_thickness_mm`` (float) and ``image_count`` (int): ``{min: .., max: ..}``, both inclusive,
  either optional. An unknown slice thickness fails a thickness condition.
* ``attributes``: DICOM keyword → value match, for any other top-level attribute of the series'
  first instance. Every keyword is checked against pydicom's data dictionary; sequences and binary
  attributes cannot be matched; patient identifiers (:data:`dicom_node.phi.PHI_KEYWORDS`) and person
  names are refused: rules must not route on patient identity.

AE conditions concern the study (the association that brought it); every other condition concerns
one series. A top-level ``input:`` holds series conditions that EVERY rule applies first, shadow
rules included (what counts as input at all: a minimum image count, scouts left out), so a rule
cannot forget them. A rule fires when the AE conditions hold and at least one *input* series (an image
series that is not a node result) passes all series conditions; ``select`` then picks among those:
``thinnest`` (smallest slice thickness, ties → most images), ``largest`` (most images, ties →
thinnest), ``first`` (lowest SeriesNumber) or ``all``.

Actions: ``pipeline`` (must be known), ``prompts`` (default prompts for the pipeline),
``priority`` (``stat`` → the STAT inference lane), ``destinations`` (names of
``Settings.destinations``; which objects each gets is the destination's setting), ``late_series``
(``rerun``: images arriving after the study was judged complete make a new job whose results
supersede; ``ignore``: they make no work), ``shadow`` (run and store, deliver nothing: for trying a
rule on live traffic), ``quiet_period_s`` (completion override for studies this rule's AE conditions
accept; see :func:`dicom_node.routing.match.quiet_period_override`) and ``stop`` (default true:
first match wins; false lets later rules fire too, e.g. for a shadow rule placed first).

Nothing here is ever evaluated as code: conditions are data, regexes are compiled with ``re``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema
from pydicom.datadict import dictionary_VR, tag_for_keyword

from dicom_node.contracts import LateSeriesPolicy, Priority
from dicom_node.phi import PHI_KEYWORDS

RULES_FORMAT_VERSION = 1

# Value representations whose values are not kept in a manifest (PS3.5 Table 6.2-1): sequences,
# binary data, unknown. A condition on them could never hold, so it is refused at load.
UNMATCHABLE_VRS: frozenset[str] = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})

# Validation context keys (pydantic ``context=``): the names a rule may refer to.
CONTEXT_PIPELINES = "known_pipelines"
CONTEXT_DESTINATIONS = "known_destinations"

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@lru_cache(maxsize=2048)
def compiled(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """The compiled form of a rule's regex (already checked at load, so this cannot fail there)."""
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regular expression {pattern!r}: {exc.msg}{where}") from None
    return pattern


Regex = Annotated[str, AfterValidator(_check_regex)]


def _one_or_many(value: Any) -> Any:
    """Accept a single string where a list of strings is expected."""
    return [value] if isinstance(value, str) else value


# A list of strings that may be written as one string (``modality: CT``).
StringList = Annotated[
    list[str],
    BeforeValidator(_one_or_many),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]


class ValueMatch(_Model):
    """How one string value (an AE title, a DICOM attribute) must look. See the module docstring."""

    exact: StringList | None = Field(default=None, description="Any of these values, exactly.")
    glob: StringList | None = Field(default=None, description="Any of these shell-style patterns (* ? [..]).")
    regex: Regex | None = Field(
        default=None, description="A Python regular expression matching the WHOLE value."
    )
    present: bool | None = Field(
        default=None, description="true: present and not empty; false: absent or empty."
    )
    ignore_case: bool = Field(default=False, description="Compare case-insensitively.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"exact": [value]}
        if isinstance(value, list):
            return {"exact": value}
        if isinstance(value, dict):
            return value
        raise ValueError(
            "expected a string, a list of strings, or a mapping with one of exact / glob / regex / present"
        )

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueMatch:
        given = [k for k in ("exact", "glob", "regex", "present") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of exact / glob / regex / present (got {', '.join(given) or 'none'})"
            )
        for key in ("exact", "glob"):
            values = getattr(self, key)
            if values is not None and not values:
                raise ValueError(f"{key} needs at least one value")
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # Editors should accept the shorthands the validator accepts.
        full = handler(schema)
        return {
            "anyOf": [
                {"type": "string", "description": "Exactly this value."},
                {"type": "array", "items": {"type": "string"}, "description": "Any of these values."},
                full,
            ]
        }

    def describe(self) -> str:
        """Human-readable form for match reasons, e.g. ``glob [ER_*]``."""
        suffix = " (ignoring case)" if self.ignore_case else ""
        if self.exact is not None:
            return f"exact [{', '.join(self.exact)}]{suffix}"
        if self.glob is not None:
            return f"glob [{', '.join(self.glob)}]{suffix}"
        if self.regex is not None:
            return f"regex /{self.regex}/{suffix}"
        return "present" if self.present else "absent or empty"


class FloatRange(_Model):
    """An inclusive range; either end may be left out."""

    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        low = "0" if self.min is None else _number(self.min)
        high = "∞)" if self.max is None else f"{_number(self.max)}]"
        return f"[{low}, {high}"


class IntRange(FloatRange):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


def _number(value: float) -> str:
    # repr keeps "1.0" as "1.0" (the reader sees a thickness, not an integer) and ints as ints.
    return repr(value)


def _check_keyword(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword!r} is not a DICOM keyword (pydicom data dictionary)")
    if keyword in PHI_KEYWORDS:
        raise ValueError(f"{keyword} is a patient identifier: rules must not route on patient identity")
    vr = dictionary_VR(tag)
    if vr == "PN":
        raise ValueError(f"{keyword} is a person name: names are never kept in manifests or routed on")
    if vr in UNMATCHABLE_VRS or any(part in UNMATCHABLE_VRS for part in vr.split(" or ")):
        raise ValueError(f"{keyword} has VR {vr}: sequences and binary attributes cannot be matched")
    return keyword


Keyword = Annotated[str, AfterValidator(_check_keyword)]


def _upper_codes(value: list[str] | None) -> list[str] | None:
    return None if value is None else [v.strip().upper() for v in value]


class Conditions(_Model):
    """Everything must hold for a rule to fire (an absent condition always holds)."""

    calling_ae: ValueMatch | None = Field(default=None, description="Calling AE title of the sender.")
    called_ae: ValueMatch | None = Field(default=None, description="Called AE title (this node's AE).")
    modality: StringList | None = Field(
        default=None, description="Modality codes, any of (case-insensitive)."
    )
    body_part: StringList | None = Field(
        default=None, description='BodyPartExamined, any of (case-insensitive; "" = not given).'
    )
    series_description: Regex | None = Field(
        default=None, description="Regex searched in SeriesDescription, case-insensitive."
    )
    exclude_series_description: Regex | None = Field(
        default=None, description="Series whose SeriesDescription this regex finds are left out."
    )
    slice_thickness_mm: FloatRange | None = Field(default=None, description="Slice thickness range (mm).")
    image_count: IntRange | None = Field(
        default=None, description="Number of images (frames) in the series, range."
    )
    attributes: dict[Keyword, ValueMatch] = Field(
        default_factory=dict, description="Other DICOM attributes by keyword (no patient identifiers)."
    )

    @field_validator("modality", "body_part")
    @classmethod
    def _codes(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        codes = _upper_codes(value)
        if codes is not None and not codes:
            raise ValueError("give at least one code")
        if info.field_name == "modality" and codes is not None and not all(codes):
            raise ValueError("a modality code cannot be empty")
        return codes


class Selection(StrEnum):
    THINNEST = "thinnest"
    LARGEST = "largest"
    FIRST = "first"
    ALL = "all"


def _context_names(info: ValidationInfo, key: str) -> frozenset[str] | None:
    context = info.context
    if not isinstance(context, Mapping) or context.get(key) is None:
        return None  # validating without a context (schema, hand-built rules in tests): no check
    return frozenset(context[key])


def _known_list(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


class Rule(_Model):
    """One routing rule: conditions and what to do when they hold."""

    name: str = Field(pattern=_NAME_PATTERN, description="Unique name (letters, digits, . _ -).")
    enabled: bool = True
    when: Conditions = Field(default_factory=Conditions)
    select: Selection = Field(
        default=Selection.THINNEST, description="Which of the series passing the conditions to process."
    )
    pipeline: str = Field(description="Inference pipeline name (see `ctnode model`/inference registry).")
    prompts: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, description="Default text prompts for the pipeline."
    )
    priority: Priority = Priority.ROUTINE
    destinations: list[str] = Field(
        default_factory=list, description="Names from the node settings' destinations."
    )
    late_series: LateSeriesPolicy = LateSeriesPolicy.RERUN
    shadow: bool = Field(default=False, description="Run and store results, deliver nothing.")
    quiet_period_s: float | None = Field(
        default=None, gt=0, le=3600, description="Completion quiet period override (seconds)."
    )
    stop: bool = Field(default=True, description="true: first match wins; false: later rules may fire too.")

    @field_validator("pipeline")
    @classmethod
    def _pipeline_known(cls, value: str, info: ValidationInfo) -> str:
        known = _context_names(info, CONTEXT_PIPELINES)
        if known is not None and value not in known:
            raise ValueError(f"unknown pipeline {value!r} (known: {_known_list(known)})")
        return value

    @field_validator("destinations")
    @classmethod
    def _destinations_known(cls, value: list[str], info: ValidationInfo) -> list[str]:
        known = _context_names(info, CONTEXT_DESTINATIONS)
        if known is not None:
            unknown = [d for d in value if d not in known]
            if unknown:
                raise ValueError(
                    f"unknown destination {', '.join(repr(d) for d in unknown)} (known: {_known_list(known)};"
                    " destinations are defined in the node settings)"
                )
        if len(set(value)) != len(value):
            raise ValueError("a destination is listed twice")
        return value

    @model_validator(mode="after")
    def _delivers_somewhere(self) -> Rule:
        if not self.shadow and not self.destinations:
            raise ValueError("a rule that is not shadow needs at least one destination (or set shadow: true)")
        return self


class RulesDocument(_Model):
    """The whole rules file."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="ct-ai-node routing rules",
        json_schema_extra={"description": "Routing rules for ct-ai-node (configs/routing.yaml)."},
    )

    version: Literal[1] = Field(default=1, description="Rules file format version.")
    input: Conditions | None = Field(
        default=None,
        description="What counts as input for EVERY rule, shadow or not: series conditions applied before "
        "each rule's own (e.g. a minimum image count, scouts left out). No AE conditions here.",
    )
    rules: list[Rule] = Field(default_factory=list, description="Tried in order.")

    @field_validator("input")
    @classmethod
    def _input_is_about_series(cls, value: Conditions | None) -> Conditions | None:
        if value is not None and (value.calling_ae is not None or value.called_ae is not None):
            raise ValueError("input conditions concern series: put calling_ae / called_ae on the rules")
        return value


@dataclass(frozen=True)
class RuleSet:
    """Validated rules, in file order, with where each came from and a digest of their meaning.

    ``digest`` is the sha256 of the canonical content: the parsed model dumped as sorted JSON, so
    comments, whitespace, key order and spelled-out defaults do not change it; any change of
    meaning does. It goes into every job id (``dicom_node.identity.job_id_for``).
    """

    rules: tuple[Rule, ...]
    source_name: str = "<rules>"
    # rule name -> 1-based line of the rule in the source (not part of the digest)
    lines: Mapping[str, int] = field(default_factory=dict)
    version: int = RULES_FORMAT_VERSION
    # series conditions every rule applies first (``input:`` in the file), or None
    input: Conditions | None = None

    @cached_property
    def digest(self) -> str:
        canonical: dict[str, Any] = {
            "version": self.version,
            "rules": [r.model_dump(mode="json") for r in self.rules],
        }
        if self.input is not None:  # absent: the digest of files written before ``input:`` existed
            canonical["input"] = self.input.model_dump(mode="json")
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def line_of(self, rule_name: str) -> int | None:
        return self.lines.get(rule_name)

    def rule(self, name: str) -> Rule:
        for candidate in self.rules:
            if candidate.name == name:
                return candidate
        raise KeyError(name)


def rules_json_schema() -> dict[str, Any]:
    """JSON Schema of the rules file (committed as ``configs/routing.schema.json`` for editors)."""
    schema = RulesDocument.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
