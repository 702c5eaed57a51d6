"""Building a training run before its first step: the `Run` (what stays fixed through it),
the model and optimiser, and resuming (this run's last.pt or another run's weights).

`train._train` calls these phases in order: `setup`, `resume`, `announce`, `wrap_for_training`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pose_pipeline.config.schema import settings_hash
from pose_pipeline.config.training import TrainingConfig
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.joints import JointSet
from pose_pipeline.data.batches import Augmentation, ShardBatches, trained_joints
from pose_pipeline.data.store import PoseStore, open_store
from pose_pipeline.errors import UserError
from pose_pipeline.models import build_model, load_weights
from pose_pipeline.train.state import RunState, load_external, load_resume_state, restore_rng, run_identity
from pose_pipeline.util.devices import World

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ optimiser, schedule


def make_optimizer(model: torch.nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    if training.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.RMSprop(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)


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


def evaluation_settings(settings: dict) -> dict:
    """The experiment's `evaluation` settings with the schema's defaults filled in (settings
    without them, e.g. from before train was given them, get the defaults)."""
    from pose_pipeline.config.schema import schema_defaults

    return {**schema_defaults("experiment", "evaluation"), **(settings.get("evaluation") or {})}


# ------------------------------------------------------------------------------ the run


@dataclass
class Run:
    """What stays fixed through a run: settings (as recorded: the dict the workflow passes, and
    its `training` typed), stores, codec, model and optimiser."""

    settings: dict
    training: TrainingConfig
    world: World
    out: Path
    epochs: int
    store: PoseStore
    val: PoseStore | None  # rank 0's validation store, if any
    loader: ShardBatches
    codec: HeatmapCodec
    evaluation: dict
    model: torch.nn.Module  # unwrapped: what is saved and validated
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    run_hash: str
    keypoints_canvas: np.ndarray  # the training store's joints in its canvases
    augmentation: Augmentation
    trained: np.ndarray  # (N,J) 1 where a joint of the training store gets loss (`trained_joints`)
    net: torch.nn.Module | None = None  # what the steps run (DDP and/or compiled `model`)
    memory_format: torch.memory_format = torch.channels_last  # of the model and each step's input
    tensorboard: object = None

    @property
    def num_joints(self) -> int:
        return self.store.joint_set.num_joints

    @property
    def steps_per_epoch(self) -> int:
        return self.loader.batches_per_epoch()

    @property
    def last_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "checkpoints" / "best.pt"

    def info(self, *args) -> None:
        _voice(self.world)(*args)


def setup(world: World, settings: dict, train_store: str, val_store: str | None, out: Path, epochs: int | None) -> Run:
    """This process's threads and seed, the stores, loader, codec, model and optimiser."""
    training = TrainingConfig.from_settings(settings["training"])
    if epochs is not None and epochs < 1:
        raise UserError(f"epochs {epochs}: train for at least one epoch")
    epochs = epochs or training.epochs
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if training.num_threads:
        torch.set_num_threads(training.num_threads)
    torch.manual_seed(training.seed)
    store = open_store(train_store)
    trained = training_joints(store, training.train_occluded, world)
    loader = ShardBatches(store, training.batch_size, seed=training.seed, rank=world.rank, world_size=world.size)
    if loader.batches_per_epoch() == 0:
        raise UserError(
            f"{train_store}: {len(store)} samples, fewer than one batch of {loader.global_batch_size}"
            + (f" ({training.batch_size} per rank x {world.size} ranks)" if world.distributed else "")
        )
    evaluation = evaluation_settings(settings)
    model = setup_model(settings["model"], training.init_checkpoint, store.joint_set, world)
    optimizer = make_optimizer(model, training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, training.schedule, epochs))
    return Run(
        settings=settings,
        training=training,
        world=world,
        out=out,
        epochs=epochs,
        store=store,
        val=open_validation_store(val_store, store) if val_store and world.main else None,
        loader=loader,
        codec=HeatmapCodec(training.input_size, training.heatmap_size, training.sigma, evaluation.get("blur_sigma")),
        evaluation=evaluation,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        run_hash=settings_hash(run_identity(settings, epochs, store, world.size)),
        keypoints_canvas=store.keypoints_in_canvas(),
        augmentation=Augmentation(**training.augmentation),
        trained=trained,
    )


def training_joints(store: PoseStore, train_occluded: bool, world: World) -> np.ndarray:
    """The joints of the training store that get loss (`trained_joints`: labelled, occluded ones
    only with `train_occluded`), said in the log where that leaves labelled joints out, and a
    warning for an original-LSP store converted when its occluded joints were stored missing."""
    from pose_pipeline.data.formats.lsp import occluded_stored_missing

    trained = trained_joints(store, train_occluded)
    if occluded_stored_missing(store.attrs, store.has_occluded):
        log.warning(
            "%s: an original-LSP store converted before occluded joints were kept labelled: they are "
            "stored as missing and get no loss; convert it again to train on them",
            store.path,
        )
    if not train_occluded:
        left_out = int((np.asarray(store.visible) == 1).sum() - trained.sum())
        _voice(world)("train_occluded false: %d occluded joints get no loss", left_out)
    return trained


def open_validation_store(path: str, train: PoseStore) -> PoseStore:
    """The validation store, checked before any epoch is spent: its arrays read (damage shows
    now, not after an epoch), its joint set the training store's, and at least one sample."""
    val = open_store(path)
    if val.joint_set != train.joint_set:
        raise UserError(
            f"{path}: joint set {val.joint_set.name}, but the training store {train.path} has {train.joint_set.name}"
        )
    if len(val) == 0:
        raise UserError(f"{path}: no samples to validate on")
    for name in ("keypoints", "visible", "affine", "head_size"):
        getattr(val, name)
    return val


def setup_model(model_settings: dict, init: str | None, joints: JointSet, world: World) -> torch.nn.Module:
    """The model on its device, from the checkpoint `init` when given (of this joint set or
    another: `models.load_weights`), SyncBatchNorm across GPU ranks."""
    model = build_model(model_settings, joints.num_joints)
    if init:
        transfer = load_weights(model, {**model_settings, "joints": joints.num_joints}, init, joints)
        _voice(world)("initialised from %s%s", init, f", another joint set: {transfer}" if transfer else "")
    model.to(world.device).to(memory_format=torch.channels_last)  # `Run.memory_format`'s default
    if world.distributed and world.device.type == "cuda":
        # batch statistics over the global batch, as one process with that batch would have
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif world.distributed:
        _voice(world)("CPU ranks: BatchNorm statistics per rank (SyncBatchNorm needs GPUs)")
    return model


def resume(run: Run, resume_from: str | None) -> RunState:
    """The newest checkpoint of this very run (same settings, same data), else `resume_from`
    (another run's weights and epoch count), else a fresh state. Loaded into the bare model
    on every rank before DDP wraps it (its state dict has no `module.` prefix)."""
    saved = load_resume_state(run.last_path, run.run_hash)
    if saved is not None:
        run.model.load_state_dict(saved["state_dict"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved)
        state, source = RunState.from_checkpoint(saved), run.last_path
    elif resume_from:
        epochs_done = load_external(
            resume_from,
            run.model,
            {**run.settings["model"], "joints": run.num_joints},
            run.optimizer,
            run.scheduler,
            run.store.joint_set,
        )
        state, source = RunState(step=epochs_done * run.steps_per_epoch), resume_from
    else:
        return RunState()
    run.info("resumed from %s at epoch %d, step %d", source, state.epochs_done(run.steps_per_epoch) + 1, state.step)
    return state


def announce(run: Run) -> None:
    """One line saying what is trained, on what, for how long, with which batches."""
    training, world = run.training, run.world
    run.info(
        "training %s (%s, %.2f M parameters) on %s: %d samples, %d epochs of %d steps, world size %d "
        "(batch %d = %d per rank x %d)",
        run.settings.get("name", "model"),
        run.settings["model"]["arch"],
        sum(p.numel() for p in run.model.parameters()) / 1e6,
        world.device,
        len(run.store),
        run.epochs,
        run.steps_per_epoch,
        world.size,
        run.loader.global_batch_size,
        training.batch_size,
        world.size,
    )


def wrap_for_training(run: Run) -> torch.nn.Module:
    """What the steps run: the model under DDP across ranks, compiled when asked."""
    net = run.model
    if run.world.distributed:
        device = run.world.device
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if not run.training.compile:
        return net
    run.info("compiling the model with torch.compile (the first steps take minutes on a CPU)")
    return torch.compile(net)


def _voice(world: World):
    """log.info on rank 0, log.debug elsewhere: one voice, not one per rank."""
    return log.info if world.main else log.debug
