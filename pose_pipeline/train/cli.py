"""`pose-pipeline train`'s command line: the experiment's settings from the config (or the
rule's `--settings`), the stores, and one process or several ranks (`--nproc`); the training
itself is `train.train`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from pose_pipeline.config.option_bounds import add_device_option
from pose_pipeline.errors import UserError
from pose_pipeline.train.loop import train
from pose_pipeline.util.devices import launch_ranks

log = logging.getLogger("pose_pipeline.train.loop")  # the training's own logger: one voice in the log


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="experiment name in the config")
    p.add_argument("--config", default="config/config.yaml", help="workflow config (with --experiment)")
    p.add_argument("--settings", help="the experiment's settings as JSON (what the Snakemake rule passes)")
    p.add_argument("--train-store", help="training store (default: results/stores/<dataset>/train.zarr)")
    p.add_argument("--val-store", help="validation store (default: results/stores/<dataset>/val.zarr)")
    p.add_argument("--out", help="output folder (default: results/train/<experiment>)")
    p.add_argument("--epochs", type=int, help="override the configured number of epochs")
    p.add_argument(
        "--resume",
        help="continue from this checkpoint (this project's or PyTorch-Pose's) "
        "when --out holds no checkpoint of this run",
    )
    add_device_option(p, from_config=True)
    p.add_argument(
        "--nproc",
        default="1",
        type=count_or_auto,
        help="data-parallel processes on this node (DDP through torch's elastic launcher: one per "
        "GPU, NCCL; gloo on CPU); batch_size is per process. 'auto': one per GPU of the job "
        "(SLURM_GPUS_ON_NODE / CUDA_VISIBLE_DEVICES); 1: a plain process",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar per epoch")
    p.epilog = (
        "Writes in --out: model.pt, the weights after the last epoch (not the best-scoring epoch's); "
        "checkpoints/best.pt, the validated epoch with the best score (without validation, the last), "
        "which predict, infer and export take as --checkpoint alike; checkpoints/last.pt, the resumable "
        "state; log.csv, one row per epoch."
    )


def count_or_auto(value: str) -> int | str:
    """--nproc: 'auto' or a whole number (its bounds are `option_bounds`')."""
    return value if value == "auto" else int(value)


SETTINGS_KEYS = ("name", "dataset", "model", "training", "evaluation", "device")  # config.experiment_settings


def checked_settings(text: str) -> dict:
    """--settings (what the rule passes: `config.experiment_settings` as JSON) checked as the
    config's experiment would be, the schema's model and training defaults filled in where left
    out; the evaluation settings as given (validation fills in the rest where it uses them)."""
    from pose_pipeline.config.schema import validate_config

    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--settings: not JSON ({exc})") from None
    expected = f"expected a JSON object of {', '.join(SETTINGS_KEYS)} (dataset, model required)"
    if not isinstance(settings, dict):
        raise UserError(f"--settings: a JSON {type(settings).__name__}; {expected}")
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown or not isinstance(settings.get("dataset"), str) or not isinstance(settings.get("name", ""), str):
        problem = f"unknown keys {unknown}" if unknown else "dataset or name is not a string"
        raise UserError(f"--settings: {problem}; {expected}")
    name = settings.get("name") or "settings"
    experiment = {key: settings[key] for key in ("dataset", "model", "training", "evaluation") if key in settings}
    config = {
        "datasets": {settings["dataset"]: {"format": "mpii", "synthetic": {}}},  # a stand-in: the stores are given
        "experiments": {name: experiment},
        **({"device": settings["device"]} if "device" in settings else {}),
    }
    filled = validate_config(config, source="--settings")["experiments"][name]
    return {**settings, "model": filled["model"], "training": filled["training"]}


def worker_args(args: argparse.Namespace) -> list[str]:
    """The command line of one rank: these arguments, less --nproc."""
    argv = []
    for flag, value in (
        ("--experiment", args.experiment),
        ("--config", args.config),
        ("--settings", args.settings),
        ("--train-store", args.train_store),
        ("--val-store", args.val_store),
        ("--out", args.out),
        ("--epochs", args.epochs),
        ("--resume", args.resume),
        ("--device", args.device),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ([] if args.progress else ["--no-progress"])


def run(args: argparse.Namespace) -> int:
    from pose_pipeline.config.schema import experiment_settings, load_config
    from pose_pipeline.util.devices import auto_nproc

    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger("pose_pipeline").setLevel(logging.WARNING)  # rank 0 speaks for the run
    if args.settings:
        settings = checked_settings(args.settings)
    elif args.experiment:
        config = load_config(args.config)
        if args.experiment not in config["experiments"]:
            raise UserError(
                f"{args.config}: no experiment {args.experiment!r}; defined: {', '.join(config['experiments'])}"
            )
        settings = experiment_settings(config, args.experiment)
    else:
        raise UserError("name an experiment (--experiment NAME [--config FILE]) or pass --settings JSON")
    name, dataset = settings.get("name", args.experiment), settings["dataset"]
    train_store = args.train_store or f"results/stores/{dataset}/train.zarr"
    val_store = args.val_store or f"results/stores/{dataset}/val.zarr"
    if args.val_store and not os.path.exists(val_store):
        raise UserError(f"--val-store {val_store}: no such store (leave the option out to train without validation)")
    if not os.path.exists(val_store):
        log.warning("no validation store at %s: training without validation", val_store)
        val_store = None
    device = args.device or settings.get("device", "auto")
    nproc = auto_nproc() if args.nproc == "auto" else args.nproc
    if nproc > 1:
        return launch_ranks(nproc, device, ["train"] + worker_args(args), getattr(args, "verbose", False))
    summary = train(
        settings,
        train_store,
        val_store,
        args.out or f"results/train/{name}",
        device,
        args.epochs,
        args.progress,
        args.resume,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary['model']}: {summary['epochs']} epochs, {summary['steps']} steps, {_best(summary)}")
    return 0


def _best(summary: dict) -> str:
    if summary["best_score"] is None:
        return "no validation (best.pt holds the last epoch's weights)"
    metric = summary["best_metric"] or "score"
    return f"best validation {metric} {summary['best_score']:.2f} (epoch {summary['best_epoch']}, best.pt)"
