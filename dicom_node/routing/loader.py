"""Load and validate a rules file, reporting EVERY problem with its ``file:line`` at once.

The YAML is read twice from the same text: :func:`yaml.compose` gives the node tree with line
marks, :func:`yaml.safe_load` the plain data pydantic validates. Each pydantic error location
(``('rules', 2, 'when', 'attributes', 'ImageType', 'regex')``) is walked down the node tree to the
deepest node that exists, whose line is reported; a missing field therefore points at its rule.
Checks pydantic cannot see (duplicate rule names, duplicate mapping keys, which YAML silently
collapses) are made on the raw tree, so they are reported even when other errors exist.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dicom_node.errors import ConfigError
from dicom_node.routing.rules import (
    CONTEXT_DESTINATIONS,
    CONTEXT_PIPELINES,
    RulesDocument,
    RuleSet,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with a rules file."""

    source_name: str
    line: int | None  # 1-based
    path: str  # e.g. "rules[2].when.modality" ("" for the whole file)
    message: str

    @property
    def location(self) -> str:
        return f"{self.source_name}:{self.line}" if self.line is not None else self.source_name

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.location}:{where} {self.message}"


class RulesConfigError(ConfigError):
    """A rules file is invalid. ``problems`` lists every error found; ``location`` is the first's."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = "1 error in routing rules" if count == 1 else f"{count} errors in routing rules"
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{head}:\n{body}", location=self.problems[0].location if self.problems else None)


def load_rules(
    path: Path, *, known_pipelines: Collection[str], known_destinations: Collection[str]
) -> RuleSet:
    """Read and validate the rules file at ``path``; raise :class:`RulesConfigError` (a ConfigError)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RulesConfigError(
            [RuleProblem(str(path), None, "", f"cannot read rules file: {reason}")]
        ) from exc
    return parse_rules_text(
        text, source_name=str(path), known_pipelines=known_pipelines, known_destinations=known_destinations
    )


def parse_rules_text(
    text: str,
    *,
    source_name: str,
    known_pipelines: Collection[str],
    known_destinations: Collection[str],
) -> RuleSet:
    """Validate rules given as YAML text (a draft from the admin API, or a file's content)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise RulesConfigError([RuleProblem(source_name, line, "", f"YAML syntax error: {problem}")]) from exc
    except yaml.YAMLError as exc:
        raise RulesConfigError([RuleProblem(source_name, None, "", f"YAML error: {exc}")]) from exc

    if data is None:
        data = {}
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else None
        raise RulesConfigError(
            [RuleProblem(source_name, line, "", "the top level must be a mapping with a `rules:` list")]
        )

    problems: list[RuleProblem] = []
    if root is not None:
        problems.extend(_duplicate_keys(root, source_name))
        problems.extend(_duplicate_rule_names(root, data, source_name))

    document: RulesDocument | None = None
    try:
        document = RulesDocument.model_validate(
            data,
            context={
                CONTEXT_PIPELINES: frozenset(known_pipelines),
                CONTEXT_DESTINATIONS: frozenset(known_destinations),
            },
        )
    except ValidationError as exc:
        problems.extend(_from_validation(exc, root, data, source_name))

    if problems or document is None:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise RulesConfigError(problems)

    lines: dict[str, int] = {}
    for index, rule in enumerate(document.rules):
        node = _node_at(root, ("rules", index)) if root is not None else None
        if node is not None:
            lines[rule.name] = node.start_mark.line + 1
    ruleset = RuleSet(
        rules=tuple(document.rules),
        source_name=source_name,
        lines=lines,
        version=document.version,
        input=document.input,
    )
    logger.info(
        "routing rules loaded",
        extra={
            "rules_source": source_name,
            "rule_count": len(ruleset.rules),
            "ruleset_digest": ruleset.digest,
        },
    )
    return ruleset


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------


def _mapping_get(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _node_at(root: yaml.Node | None, loc: Sequence[int | str]) -> yaml.Node | None:
    """The deepest node of ``root`` along the pydantic location ``loc``.

    pydantic marks an invalid mapping *key* with a ``'[key]'`` part after it: then the key's node
    is returned, not its value's.
    """
    node = root
    for index, part in enumerate(loc):
        if node is None or part == "[key]":
            break
        if isinstance(node, yaml.MappingNode):
            found = _mapping_get(node, str(part))
            if found is None:
                break
            key_node, value_node = found
            is_key = index + 1 < len(loc) and loc[index + 1] == "[key]"
            node = key_node if is_key else value_node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
        else:
            break
    return node


def _deepest_line(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    node = _node_at(root, loc)
    if node is None:
        return None
    return node.start_mark.line + 1


def _path_text(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _rule_label(data: dict[str, Any], loc: Sequence[int | str]) -> str:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules")
        if isinstance(rules, list) and 0 <= loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
            if isinstance(name, str):
                return f"rule {name!r}: "
    return ""


def _from_validation(
    exc: ValidationError, root: yaml.Node | None, data: dict[str, Any], source_name: str
) -> list[RuleProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"]
        if message.startswith(("Value error, ", "Assertion failed, ")):
            message = message.split(", ", 1)[1]
        if error["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}" if loc else message
        elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping ({{key: value, ...}}), got {_yaml_kind(error.get('input'))}"
        elif error["type"] == "string_type" and isinstance(error.get("input"), bool | int | float):
            message += " (quote it in YAML: unquoted it reads as a number or a boolean)"
        problems.append(
            RuleProblem(
                source_name,
                _deepest_line(root, loc),
                _path_text(loc),
                _rule_label(data, loc) + message,
            )
        )
    return problems


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


def _duplicate_keys(root: yaml.Node, source_name: str) -> list[RuleProblem]:
    """YAML keeps the last of two equal keys without a word; an operator would not expect that."""
    problems = []
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen and key_node.value != "<<":
                        problems.append(
                            RuleProblem(
                                source_name,
                                key_node.start_mark.line + 1,
                                "",
                                f"duplicate key {key_node.value!r} (YAML would silently keep the last)",
                            )
                        )
                    seen.add(key_node.value)
                stack.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return problems


def _duplicate_rule_names(root: yaml.Node, data: dict[str, Any], source_name: str) -> list[RuleProblem]:
    rules = data.get("rules")
    if not isinstance(rules, list):
        return []
    first_line: dict[str, int | None] = {}
    problems = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("name"), str):
            continue
        name = rule["name"]
        line = _deepest_line(root, ("rules", index, "name"))
        if name in first_line:
            earlier = first_line[name]
            problems.append(
                RuleProblem(
                    source_name,
                    line,
                    f"rules[{index}].name",
                    f"duplicate rule name {name!r} (first at line {earlier})",
                )
            )
        else:
            first_line[name] = line
    return problems
