"""Hot reload of the rules file: new rules take effect, a bad file keeps the old ones, and every
change (or rejection) is audited in the job store with who, when and a diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicom_node.errors import ConfigError
from dicom_node.settings import Settings
from worker.context import WorkerContext

RULES = """version: 1
rules:
  - name: chest
    when: {modality: CT}
    pipeline: ct-anatomy-basic
    prompts: [lungs]
    shadow: true
"""


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    stat = path.stat()
    # mtime granularity can hide a rewrite within the same tick: move it forward explicitly
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


@pytest.fixture
def ctx(tmp_path: Path) -> WorkerContext:
    rules = tmp_path / "routing.yaml"
    _write(rules, RULES, 0)
    settings = Settings(storage={"root": tmp_path / "var"}, rules_file=rules)  # type: ignore[arg-type]
    (tmp_path / "var").mkdir()
    context = WorkerContext.open(settings)
    yield context
    context.close()


def test_changes_are_loaded_and_audited_with_a_diff(ctx: WorkerContext) -> None:
    first = ctx.rules()
    _write(ctx.settings.rules_file, RULES.replace("[lungs]", "[lungs, bone]"), 1)
    second = ctx.rules()
    assert second.digest != first.digest
    assert second.rules[0].prompts == ["lungs", "bone"]
    changes = ctx.store.config_changes()
    by_what = [c.what for c in changes]
    assert by_what.count("rules") == 2  # the first load and the change
    latest = next(c for c in changes if c.diff.get("to_digest") == second.digest)
    assert latest.diff["from_digest"] == first.digest
    assert latest.diff["changed"] == ["chest"]
    assert any(line.startswith("+") and "bone" in line for line in latest.diff["text_diff"])
    assert "routing.yaml" in latest.who


def test_a_bad_file_keeps_the_rules_in_force_and_is_audited(ctx: WorkerContext) -> None:
    good = ctx.rules()
    _write(ctx.settings.rules_file, RULES.replace("pipeline: ct-anatomy-basic", "pipeline: no-such"), 1)
    assert ctx.rules().digest == good.digest
    rejected = [c for c in ctx.store.config_changes() if c.what == "rules rejected"]
    assert len(rejected) == 1
    assert "no-such" in str(rejected[0].diff["error"])
    assert "routing.yaml:5:" in str(rejected[0].diff["error"])  # the pipeline line


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("version: 1\nrules:\n  - name: x\n    pipelin: ct-anatomy-basic\n")
    (tmp_path / "var").mkdir()
    settings = Settings(storage={"root": tmp_path / "var"}, rules_file=rules)  # type: ignore[arg-type]
    context = WorkerContext.open(settings)
    try:
        with pytest.raises(ConfigError):
            context.rules()
    finally:
        context.close()
