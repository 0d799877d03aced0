"""``ctnode``: the node's command line. Each subcommand lives in its own module and is imported
only when called, so ``ctnode serve`` never pays for (or needs) torch."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

# name -> "module:attribute" of a click command or group
_COMMANDS: dict[str, str] = {
    "serve": "worker.cli.serve:serve",
    "worker": "worker.cli.worker_cmd:worker",
    "demo": "worker.cli.demo:demo",
    "synth-study": "worker.cli.synth:synth_study",
    "infer": "worker.cli.infer:infer",
    "rules": "worker.cli.rules:rules",
    "jobs": "worker.cli.jobs:jobs",
    "studies": "worker.cli.studies:studies",
    # worker.cli.model's group, with `model import` (model_import), `model distill` and
    # `model import-seg` (model_distill) added
    "model": "worker.cli.model_distill:model",
    "pipelines": "worker.cli.pipelines:pipelines",
    "viewer": "worker.cli.viewer:viewer",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in _COMMANDS.items() if _module_exists(target))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return None
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        return command


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ct-ai-node")
def main() -> None:
    """ct-ai-node: a CT AI node beside the PACS (research use; not validated for diagnosis)."""


if __name__ == "__main__":
    main()
