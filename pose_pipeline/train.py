"""`pose-pipeline train`: train a model on a converted store, resumably.

Read `_train()` top to bottom: build the model and optimiser, resume from the newest
checkpoint when one with the same settings exists, then per epoch: batches of whole shards,
augmentation and Gaussian targets as tensor operations, the heatmap loss over every stack,
a checkpoint every `checkpoint_every` steps, validation PCKh, a CSV log row, and the last /
best checkpoints. The finished model goes to `<out>/model.pt`, written last, so its presence
means training completed.

Outputs in `--out DIR`:
  model.pt                 final weights + model config (what predict reads)
  log.csv                  epoch,step,train_loss,val_loss,val_pckh,lr,images_per_s,elapsed_s
  checkpoints/last.pt      newest resumable state (model, optimiser, scheduler, RNG, step)
  checkpoints/best.pt      weights of the epoch with the best validation score (metrics.validation_score)
  tensorboard/             the log.csv figures as TensorBoard events (when it is installed)

Several GPUs: `--nproc N` starts N ranks through torch's elastic launcher (torchrun), each
running this same command; they train one DistributedDataParallel model (NCCL on GPUs with
SyncBatchNorm, gloo on CPU), `batch_size` per rank, so one step sees batch_size x N samples,
the same global batches a single process with batch_size x N would see. Rank 0 validates
and writes every output; resuming works for any run with the same number of ranks.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from pose_pipeline import metrics
from pose_pipeline.atomic import atomic_output
from pose_pipeline.codec import HeatmapCodec
from pose_pipeline.config import settings_hash
from pose_pipeline.data import Augmentation, ShardBatches, make_batch
from pose_pipeline.devices import World, autocast, world_from_env
from pose_pipeline.errors import UserError
from pose_pipeline.loss import heatmap_loss
from pose_pipeline.models import build_model, load_model, read_checkpoint
from pose_pipeline.predict import predict_store
from pose_pipeline.store import PoseStore, open_store

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_pckh", "lr", "images_per_s", "elapsed_s"]
CHECKPOINT_FORMAT = "pose-pipeline-train-state-1"


class NonFiniteLoss(UserError):
    pass


# ------------------------------------------------------------------ optimiser, schedule


def make_optimizer(model: torch.nn.Module, training: dict) -> torch.optim.Optimizer:
    if training["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=training["lr"], weight_decay=training["weight_decay"])
    return torch.optim.RMSprop(model.parameters(), lr=training["lr"], weight_decay=training["weight_decay"])


def lr_factor(epoch: int, schedule: dict, epochs: int) -> float:
    """Learning-rate multiplier for an epoch (0-based), warm-up included."""
    if epoch < schedule["warmup_epochs"]:
        return (epoch + 1) / (schedule["warmup_epochs"] + 1)
    kind = schedule["type"]
    if kind == "step":
        return schedule["gamma"] ** (epoch // schedule["step_size"])
    if kind == "multistep":
        return schedule["gamma"] ** sum(epoch >= m for m in schedule["milestones"])
    if kind == "cosine":
        span = max(epochs - schedule["warmup_epochs"], 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - schedule["warmup_epochs"]) / span))
    return 1.0


# ------------------------------------------------------------------------ checkpoints


def store_fingerprint(store: PoseStore) -> dict:
    """What identifies the training data: a regenerated store must not resume old weights."""
    return {"sources": store.attrs.get("sources"), "num_samples": len(store),
            "converter": store.attrs.get("converter")}


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_resume_state(path: Path, run_hash: str) -> dict | None:
    """The resumable state at `path` if it belongs to this run, else None (with the reason)."""
    if not path.exists():
        return None
    state = read_checkpoint(path)  # refuses pickled code and foreign files
    if state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a pose-pipeline training checkpoint; move it away to start afresh")
    if state.get("run_hash") != run_hash:
        log.warning("%s was written with other settings, data or number of processes; starting afresh", path)
        return None
    return state


def resume_external(path, model, optimizer, scheduler, num_joints: int) -> int:
    """Load weights (and the optimiser state when it fits) from another run's checkpoint;
    returns the number of epochs it had completed."""
    checkpoint = read_checkpoint(path)
    model.load_state_dict(load_model(path, expect={"joints": num_joints}).state_dict())
    if isinstance(checkpoint.get("optimizer"), dict):
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as exc:
            log.warning("%s: optimiser state not used (%s)", path, exc)
    epoch = int(checkpoint.get("epoch", 0) or 0)
    for _ in range(epoch):
        scheduler.step()
    return epoch


# ------------------------------------------------------------------------------ train


def train(settings: dict, train_store: str, val_store: str | None, out: str, device: str = "auto",
          epochs: int | None = None, progress: bool = True, resume_from: str | None = None) -> dict:
    """Train as `settings` (model, training, dataset: see config.experiment_settings) say.

    `resume_from`: a checkpoint to continue from when `out` holds none of this run, e.g. a
    PyTorch-Pose `checkpoint.pth.tar` (weights, its `epoch`, and its optimiser state when
    the optimiser matches).

    Under torchrun (WORLD_SIZE > 1 in the environment) this is one rank of a
    DistributedDataParallel run: `batch_size` is per rank, so a step trains on a global
    batch of batch_size x world size; rank 0 validates and writes every output. Without
    WORLD_SIZE (or 1) no process group is created.

    Returns {"epochs", "steps", "best_pckh", "model"}.
    """
    world = world_from_env(device)
    try:
        summary = _train(world, settings, train_store, val_store, Path(out), epochs, progress, resume_from)
        if world.distributed:
            torch.distributed.barrier()  # nobody leaves before rank 0 has written model.pt
        return summary
    finally:
        if world.distributed:
            torch.distributed.destroy_process_group()


def _train(world: World, settings: dict, train_store: str, val_store: str | None, out: Path,
           epochs: int | None, progress: bool, resume_from: str | None) -> dict:
    from tqdm import tqdm

    model_cfg, training = settings["model"], settings["training"]
    epochs = epochs or training["epochs"]
    device = world.device
    info = log.info if world.main else log.debug  # one voice, not one per rank
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if training["num_threads"]:
        torch.set_num_threads(training["num_threads"])
    torch.manual_seed(training["seed"])

    store = open_store(train_store)
    val = open_store(val_store) if val_store and world.main else None
    joints = store.joint_set
    run_hash = settings_hash(run_identity(settings, epochs, store, world.size))

    model = build_model(model_cfg, joints.num_joints)
    if training["init_checkpoint"]:
        init = load_model(training["init_checkpoint"], expect={"joints": joints.num_joints})
        model.load_state_dict(init.state_dict())
        info("initialised from %s", training["init_checkpoint"])
    model.to(device).to(memory_format=torch.channels_last)
    if world.distributed and device.type == "cuda":
        # batch statistics over the global batch, as one process with that batch would have
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif world.distributed:
        info("CPU ranks: BatchNorm statistics per rank (SyncBatchNorm needs GPUs)")
    optimizer = make_optimizer(model, training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, training["schedule"], epochs))
    loader = ShardBatches(store, training["batch_size"], seed=training["seed"], rank=world.rank,
                          world_size=world.size)
    steps_per_epoch = loader.batches_per_epoch()
    if steps_per_epoch == 0:
        raise UserError(f"{train_store}: {len(store)} samples, fewer than one batch of {loader.global_batch_size}"
                        + (f" ({training['batch_size']} per rank x {world.size} ranks)" if world.distributed else ""))
    augmentation = Augmentation(**training["augmentation"])
    codec = HeatmapCodec.from_settings(training, {"blur_sigma": 1.0})
    input_size, heatmap_size = codec.input_size, codec.heatmap_size
    keypoints_canvas, visible = store.keypoints_in_canvas(), store.visible

    # Resume: the newest checkpoint of this very run (same settings, same data), into the
    # bare model on every rank before DDP wraps it (its state dict has no `module.` prefix).
    step, log_rows, best_pckh, elapsed_before = 0, [], -1.0, 0.0
    state = load_resume_state(out / "checkpoints" / "last.pt", run_hash)
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, log_rows, best_pckh = state["step"], state["log_rows"], state["best_pckh"]
        elapsed_before = state["elapsed_s"]
        info("resumed from %s at epoch %d, step %d", out / "checkpoints" / "last.pt",
             step // steps_per_epoch + 1, step)
    elif resume_from:
        step = resume_external(resume_from, model, optimizer, scheduler, joints.num_joints) * steps_per_epoch
        info("resumed from %s at epoch %d, step %d", resume_from, step // steps_per_epoch + 1, step)
    info("training %s (%s, %.2f M parameters) on %s: %d samples, %d epochs of %d steps, world size %d "
         "(batch %d = %d per rank x %d)", settings.get("name", "model"), model_cfg["arch"],
         sum(p.numel() for p in model.parameters()) / 1e6, device, len(store), epochs, steps_per_epoch,
         world.size, loader.global_batch_size, training["batch_size"], world.size)

    net = model  # what the steps run; `model` (unwrapped) is what gets saved and validated
    if world.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if training.get("compile"):
        net = torch.compile(net)
    tensorboard = open_tensorboard(out / "tensorboard") if world.main else None

    def checkpoint_state() -> dict:
        return {"format": CHECKPOINT_FORMAT, "run_hash": run_hash, "settings": settings,
                "model_config": {**model_cfg, "joints": joints.num_joints},
                "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "step": step, "log_rows": log_rows, "best_pckh": best_pckh, "world_size": world.size,
                "elapsed_s": elapsed_before + time.monotonic() - started}

    started = time.monotonic()
    mine = slice(world.rank * training["batch_size"], (world.rank + 1) * training["batch_size"])
    metric = "PCKh@0.5"  # the label of val_pckh in the log line; set per dataset by validation
    for epoch in range(step // steps_per_epoch, epochs):
        net.train()
        skip = step - epoch * steps_per_epoch  # batches of this epoch done before a resume
        epoch_start, loss_sum, seen = time.monotonic(), 0.0, 0
        bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{epochs}",
                   unit="step", disable=not (progress and world.main), mininterval=5)
        for i, (images, index) in enumerate(loader.epoch(epoch)):
            if i < skip:
                continue
            # Augmentation of the global batch drawn from (seed, step), this rank's part taken:
            # a resumed run, and any number of ranks, give each sample the same.
            rng = np.random.default_rng([training["seed"], step])
            params = augmentation.sample(rng, loader.global_batch_size)
            x, targets, weights = make_batch(
                images, keypoints_canvas[index], visible[index], store, codec, device,
                augmentation=augmentation, params={k: v[mine] for k, v in params.items()})
            with autocast(device):
                outputs = net(x.contiguous(memory_format=torch.channels_last))
            # The mean over this rank's part: DDP averages gradients over ranks of equal
            # batches, which is the gradient of the mean over the global batch.
            loss = heatmap_loss(outputs, targets, weights)
            reported = global_mean(loss.detach(), world)
            if not torch.isfinite(reported):  # the same verdict on every rank
                raise NonFiniteLoss(f"loss is {reported.item()} at epoch {epoch + 1}, step {step + 1}; "
                                    f"the last good checkpoint {out / 'checkpoints' / 'last.pt'} is kept "
                                    "(lower the learning rate?)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += reported.item() * len(images)
            seen += len(images)
            bar.update(1)
            bar.set_postfix(loss=f"{reported.item():.2e}", refresh=False)
            if world.main and step % training["checkpoint_every"] == 0:
                save_checkpoint(out / "checkpoints" / "last.pt", checkpoint_state())
        bar.close()
        train_seconds = time.monotonic() - epoch_start
        scheduler.step()

        row = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(seen, 1),
               "val_loss": "", "val_pckh": "", "lr": optimizer.param_groups[0]["lr"],
               "images_per_s": seen * world.size / max(train_seconds, 1e-9), "elapsed_s": 0.0}
        if not world.main:
            continue  # rank 0 validates and writes; the others wait in the next all-reduce
        if val is not None:
            preds, _, val_loss = predict_store(model, val, codec, flip_test=False, batch_size=64, device=device)
            # `val_pckh` holds the dataset's own metric: PCKh@0.5 (MPII), PCK@0.2 (LSP, COCO).
            metric, row["val_pckh"] = metrics.validation_score(preds, val.keypoints, val.visible,
                                                               val.head_size, joints)
            row["val_loss"] = val_loss
        row["elapsed_s"] = elapsed_before + time.monotonic() - started
        log_rows.append(row)
        log.info("epoch %d/%d: train loss %.3e, val loss %s, val %s %s, %.1f images/s",
                 epoch + 1, epochs, row["train_loss"], _fmt(row["val_loss"]), metric, _fmt(row["val_pckh"]),
                 row["images_per_s"])
        write_log(out / "log.csv", log_rows)
        write_tensorboard(tensorboard, row)
        pckh = row["val_pckh"] if row["val_pckh"] != "" else -epoch
        if pckh > best_pckh:
            best_pckh = pckh
            save_checkpoint(out / "checkpoints" / "best.pt", {
                "model_config": {**model_cfg, "joints": joints.num_joints},
                "state_dict": model.state_dict(), "epoch": epoch + 1, "val_pckh": row["val_pckh"]})
        save_checkpoint(out / "checkpoints" / "last.pt", checkpoint_state())

    if tensorboard is not None:
        tensorboard.close()
    if world.main:
        final = {"model_config": {**model_cfg, "joints": joints.num_joints}, "state_dict": model.state_dict(),
                 "input_size": input_size, "heatmap_size": heatmap_size, "settings": settings,
                 "settings_hash": run_hash, "epoch": epochs, "step": step}
        write_log(out / "log.csv", log_rows)
        save_checkpoint(out / "model.pt", final)
    return {"epochs": epochs, "steps": step, "best_pckh": best_pckh, "model": str(out / "model.pt")}


def run_identity(settings: dict, epochs: int, store: PoseStore, world_size: int) -> dict:
    """What a resumable checkpoint must match. `training.compile` changes speed, not what
    is learnt, so it is left out; the world size changes the global batch, so it is in
    (only when > 1, so single-process runs keep the identity they always had)."""
    training = {k: v for k, v in settings["training"].items() if k != "compile"}
    identity = {"settings": {**settings, "training": training}, "epochs": epochs, "data": store_fingerprint(store)}
    if world_size > 1:
        identity["world_size"] = world_size
    return identity


def global_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a scalar over the ranks (itself in a single process)."""
    if not world.distributed:
        return value
    value = value.clone()
    torch.distributed.all_reduce(value)
    return value / world.size


def open_tensorboard(path: Path):
    """A SummaryWriter for `path`, or None (saying so once) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: no event files (pip install 'pose-pipeline[tensorboard]')")
        return None
    return SummaryWriter(str(path))


def write_tensorboard(writer, row: dict) -> None:
    if writer is None:
        return
    epoch = row["epoch"]
    for tag, key in (("train/loss", "train_loss"), ("val/loss", "val_loss"), ("val/pckh", "val_pckh"),
                     ("lr", "lr"), ("images_per_s", "images_per_s")):
        if row[key] != "":
            writer.add_scalar(tag, row[key], epoch)
    writer.flush()


def _fmt(value) -> str:
    return "-" if value == "" else f"{value:.4g}"


def write_log(path: Path, rows: list[dict]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


# -------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="experiment name in the config")
    p.add_argument("--config", default="config/config.yaml", help="workflow config (with --experiment)")
    p.add_argument("--settings", help="the experiment's settings as JSON (what the Snakemake rule passes)")
    p.add_argument("--train-store", help="training store (default: results/stores/<dataset>/train.zarr)")
    p.add_argument("--val-store", help="validation store (default: results/stores/<dataset>/val.zarr)")
    p.add_argument("--out", help="output folder (default: results/train/<experiment>)")
    p.add_argument("--epochs", type=int, help="override the configured number of epochs")
    p.add_argument("--resume", help="continue from this checkpoint (this project's or PyTorch-Pose's) "
                                    "when --out holds no checkpoint of this run")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the config's device")
    p.add_argument("--nproc", default="1", type=_nproc,
                   help="data-parallel processes on this node (DDP through torch's elastic launcher: one per "
                        "GPU, NCCL; gloo on CPU); batch_size is per process. 'auto': one per GPU of the job "
                        "(SLURM_GPUS_ON_NODE / CUDA_VISIBLE_DEVICES). Default 1: a plain process")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _nproc(value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {value!r}")
    return int(value)


def launch(args: argparse.Namespace, nproc: int, device: str) -> int:
    """Run this command again without --nproc in `nproc` ranks under torch's elastic
    launcher (what `torchrun --standalone --nproc-per-node N -m pose_pipeline train ...` does)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if "WORLD_SIZE" in os.environ:
        raise UserError("--nproc inside a torchrun worker: leave --nproc out when torchrun starts the ranks")
    if device != "cpu" and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise UserError(f"--nproc {nproc} but {torch.cuda.device_count()} visible GPUs (one process per GPU)")
    argv = ["--standalone", f"--nproc-per-node={nproc}", "-m", "pose_pipeline"]
    argv += ["-v"] if getattr(args, "verbose", False) else []
    argv += ["train"] + worker_args(args)
    log.info("launching %d ranks: torchrun %s", nproc, " ".join(argv[:4] + ["..."]))
    try:
        torchrun(argv)
    except ChildFailedError as exc:
        ranks = ", ".join(f"rank {r} (exit {f.exitcode})" for r, f in sorted(exc.failures.items()))
        raise UserError(f"training failed in {ranks}; its message is above") from None
    return 0


def worker_args(args: argparse.Namespace) -> list[str]:
    """The command line of one rank: these arguments, less --nproc."""
    argv = []
    for flag, value in (("--experiment", args.experiment), ("--config", args.config),
                        ("--settings", args.settings), ("--train-store", args.train_store),
                        ("--val-store", args.val_store), ("--out", args.out), ("--epochs", args.epochs),
                        ("--resume", args.resume), ("--device", args.device)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ([] if args.progress else ["--no-progress"])


def run(args: argparse.Namespace) -> int:
    from pose_pipeline.config import experiment_settings, load_config
    from pose_pipeline.devices import auto_nproc

    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the run
    if args.settings:
        settings = json.loads(args.settings)
    elif args.experiment:
        config = load_config(args.config)
        if args.experiment not in config["experiments"]:
            raise UserError(f"{args.config}: no experiment {args.experiment!r}; "
                            f"defined: {', '.join(config['experiments'])}")
        settings = experiment_settings(config, args.experiment)
    else:
        raise UserError("name an experiment (--experiment NAME [--config FILE]) or pass --settings JSON")
    name, dataset = settings.get("name", args.experiment), settings["dataset"]
    train_store = args.train_store or f"results/stores/{dataset}/train.zarr"
    val_store = args.val_store or f"results/stores/{dataset}/val.zarr"
    if not os.path.exists(val_store):
        log.warning("no validation store at %s: training without validation", val_store)
        val_store = None
    device = args.device or settings.get("device", "auto")
    nproc = auto_nproc() if args.nproc == "auto" else args.nproc
    if nproc > 1:
        return launch(args, nproc, device)
    summary = train(settings, train_store, val_store, args.out or f"results/train/{name}",
                    device, args.epochs, args.progress, args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary['model']}: {summary['epochs']} epochs, {summary['steps']} steps, "
              f"best validation score {summary['best_pckh']:.2f} (PCKh@0.5 for MPII, PCK@0.2 for LSP and COCO)")
    return 0
