"""deploy/ parses and names only things that exist: console scripts, subcommands and their options,
queues, files copied or mounted, settings that load, and the ports those settings use."""

from __future__ import annotations

import configparser
import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from dicom_node.constants import QUEUES
from dicom_node.settings import Settings, load_settings
from worker.cli.main import main as ctnode_main

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def console_scripts() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


def check_ctnode_command(argv: list[str]) -> None:
    """``argv`` runs an installed console script, an existing subcommand, with options it has."""
    program = Path(argv[0]).name
    assert program in console_scripts(), argv
    ctx = click.Context(ctnode_main)
    command = ctnode_main.get_command(ctx, argv[1])
    assert command is not None, f"no subcommand {argv[1]!r} in {argv}"
    known = {opt for p in command.params for opt in p.opts + p.secondary_opts}
    for word in argv[2:]:
        if word.startswith("-"):
            assert word.split("=")[0] in known, f"{argv[1]} has no option {word} (has {sorted(known)})"
    if "--queues" in argv:
        queues = argv[argv.index("--queues") + 1]
        if not queues.startswith("$"):
            assert set(queues.split(",")) <= set(QUEUES), queues


def compose_settings() -> Settings:
    return load_settings(DEPLOY / "compose" / "node.yaml")


def test_compose_services_and_commands() -> None:
    services = compose()["services"]
    assert {"redis", "postgres", "orthanc", "node", "worker-cpu", "worker-gpu"} <= set(services)
    assert services["postgres"]["profiles"] == ["postgres"]  # optional
    for name in ("node", "worker-cpu", "worker-gpu"):
        check_ctnode_command(services[name]["command"])
    assert services["node"]["command"][:2] == ["ctnode", "serve"]
    gpu = services["worker-gpu"]
    assert gpu["runtime"] == "nvidia"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "inference" in gpu["command"][gpu["command"].index("--queues") + 1].split(",")
    cpu = services["worker-cpu"]["command"]
    assert set(cpu[cpu.index("--queues") + 1].split(",")) == {"routing", "delivery"}
    assert gpu["build"]["dockerfile"] == "deploy/worker.Dockerfile"
    assert services["node"]["build"]["dockerfile"] == "deploy/node.Dockerfile"


def test_compose_mounts_and_builds_name_existing_files() -> None:
    services = compose()["services"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
        for env_file in service.get("env_file", []):
            assert (DEPLOY / (env_file + ".example")).is_file(), env_file


def test_compose_ports_match_the_settings() -> None:
    settings = compose_settings()
    services = compose()["services"]
    published = {int(p.split(":")[-1]) for p in services["node"]["ports"]}
    assert published == {settings.dicom.port, settings.api.port}
    orthanc = json.loads((DEPLOY / "compose" / "orthanc.json").read_text())
    assert {int(p.split(":")[-1]) for p in services["orthanc"]["ports"]} == {
        orthanc["DicomPort"],
        orthanc["HttpPort"],
    }
    assert settings.queue.broker_url == "redis://redis:6379/0"
    assert (
        settings.destinations["pacs"].host == "orthanc"
        and settings.destinations["pacs"].port == orthanc["DicomPort"]
    )
    assert settings.destinations["pacs"].ae_title == orthanc["DicomAet"]
    assert orthanc["CtNode"]["Config"] == "/etc/ct-ai-node/node.yaml"
    assert orthanc["DicomModalities"]["ct-ai-node"]["Port"] == settings.dicom.port
    # the rules mounted into the containers validate against the compose destinations
    from dicom_node.routing import load_rules

    rules = load_rules(
        REPO / "configs" / "routing.yaml",
        known_pipelines=["unified-ct", "ct-anatomy-basic", "totalsegmentator", "totalsegmentator-fast"],
        known_destinations=settings.destinations.keys(),
    )
    assert rules.rules


def test_compose_orthanc_differs_from_the_debian_one_only_where_documented() -> None:
    base = json.loads((DEPLOY / "orthanc" / "orthanc.json").read_text())
    variant = json.loads((DEPLOY / "compose" / "orthanc.json").read_text())
    documented = {"RemoteAccessAllowed", "CtNode", "DicomCheckModalityHost", "DicomModalities"}
    assert {k for k in base if base[k] != variant.get(k)} == documented and set(base) == set(variant)
    assert variant["CtNode"]["OrthancUrl"] == "http://orthanc:8042"


@pytest.mark.parametrize("name", ["node.Dockerfile", "worker.Dockerfile", "orthanc.Dockerfile"])
def test_dockerfiles_copy_existing_paths_and_run_ctnode(name: str) -> None:
    lines = [line.strip() for line in (DEPLOY / name).read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM ")
    for line in instructions:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"{name}: COPY {source}"
    cmd = json.loads(next(line for line in instructions if line.startswith("CMD "))[4:])
    if name != "orthanc.Dockerfile":
        check_ctnode_command(cmd)
    text = "\n".join(instructions)
    if name == "node.Dockerfile":
        assert "[model" not in text and "torch" not in text  # the node image has no torch
    if name == "worker.Dockerfile":
        assert '".[model,postgres]"' in text


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


@pytest.mark.parametrize("name", ["ctnode-serve.service", "ctnode-worker@.service"])
def test_systemd_units_parse_and_run_ctnode(name: str) -> None:
    unit = _unit(name)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0] == "/opt/ct-ai-node/.venv/bin/ctnode"
    check_ctnode_command(argv)
    assert (
        unit["Service"]["Environment"].startswith("CTNODE_CONFIG=")
        or "CTNODE_CONFIG" in (DEPLOY / "systemd" / name).read_text()
    )
    if name.startswith("ctnode-worker"):
        limit = Settings().queue.task_time_limit_s
        assert int(unit["Service"]["TimeoutStopSec"]) > limit  # warm shutdown lets a job finish
        for queues in ("routing,delivery", "inference-stat,inference,inference-shadow"):
            assert f"CTNODE_WORKER_QUEUES={queues}" in (DEPLOY / "systemd" / name).read_text()
            assert set(queues.split(",")) <= set(QUEUES)


def test_env_example_names_the_variables_the_settings_read() -> None:
    names = {
        line.split("=")[0]
        for line in (DEPLOY / "compose" / "ctnode.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    api = Settings().api
    assert {api.admin_token_env, api.viewer_token_env, api.stow_token_env} <= names
    assert all(
        line.endswith("=") or "USERNAME" in line
        for line in (DEPLOY / "compose" / "ctnode.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )  # no secret values in the example
