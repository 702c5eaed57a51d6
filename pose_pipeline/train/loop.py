"""`pose-pipeline train`: train a model on a converted store, resumably.

Read `_train()` top to bottom: open the stores, build the model and optimiser, resume from
the newest checkpoint when one with the same settings exists, then per epoch: train (batches
of whole shards prepared ahead in a background thread, augmentation and Gaussian targets as
tensor operations, the heatmap loss over every stack, summed on the device and read only when
logged, a checkpoint every `checkpoint_every` steps), validate, record the epoch in the log,
save the last / best checkpoints. The finished model goes to `<out>/model.pt`,
written last, so its presence means training completed.

Outputs in `--out DIR`:
  model.pt                 the last epoch's weights + model config (what the workflow predicts
                           with); not the best-scoring epoch's, which is best.pt
  log.csv                  one row per epoch (columns: `train/log.py`)
  checkpoints/last.pt      newest resumable state (model, optimiser, scheduler, RNG, `RunState`)
  checkpoints/best.pt      weights of the validated epoch with the best score
                           (metrics.validation_score); without validation, of the last epoch
  tensorboard/             the log.csv figures as TensorBoard events (when it is installed; a full disk
                           stops them with one warning, `log.TensorBoard`)

Validation (rank 0, after every `validate_every`-th epoch and the last; the others' val
columns stay empty) decodes with the experiment's `evaluation` batch size and blur, without
flip test (it ranks epochs; the flip test would double its cost).

Several GPUs: `--nproc N` starts N ranks through torch's elastic launcher (torchrun), each
running this same command; they train one DistributedDataParallel model (NCCL on GPUs with
SyncBatchNorm, gloo on CPU), `batch_size` per rank, so one step sees batch_size x N samples,
the same global batches a single process with batch_size x N would see. Rank 0 validates
and writes every output; resuming works for any run with the same number of ranks.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from pathlib import Path

import numpy as np
import torch

from pose_pipeline.core.loss import heatmap_loss
from pose_pipeline.data.batches import finish_batch, prepare_batch
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate import metrics
from pose_pipeline.inference.engine import predict_store
from pose_pipeline.train.log import open_tensorboard, write_log, write_tensorboard
from pose_pipeline.train.setup import Run, announce, resume, setup, wrap_for_training
from pose_pipeline.train.state import (
    CHECKPOINT_FORMAT,
    DeviceLoss,
    EpochPace,
    RunState,
    hours_minutes_seconds,
    model_record,
    rng_state,
    save_checkpoint,
    seconds_left,
)
from pose_pipeline.util.atomic import exclusive_lock
from pose_pipeline.util.devices import World, autocast, world_from_env
from pose_pipeline.util.prefetch import Prefetcher, depth_for

log = logging.getLogger(__name__)


class NonFiniteLoss(UserError):
    pass


LOG_EVERY = 100  # steps between reads of the loss (each waits for the device)
PREFETCH_DEPTH = 8  # batches prepared ahead of the step: enough to ride out a slow shard-buffer read


# ------------------------------------------------------------------------------ the run


def train(
    settings: dict,
    train_store: str,
    val_store: str | None,
    out: str,
    device: str = "auto",
    epochs: int | None = None,
    progress: bool = True,
    resume_from: str | None = None,
) -> dict:
    """Train as `settings` (model, training, evaluation, dataset: see
    config.experiment_settings) say.

    `resume_from`: a checkpoint to continue from when `out` holds none of this run, e.g. a
    PyTorch-Pose `checkpoint.pth.tar` (weights, its `epoch`, and its optimiser state when
    the optimiser matches).

    Under torchrun (WORLD_SIZE > 1 in the environment) this is one rank of a
    DistributedDataParallel run: `batch_size` is per rank, so a step trains on a global
    batch of batch_size x world size; rank 0 validates and writes every output. Without
    WORLD_SIZE (or 1) no process group is created.

    Returns {"epochs", "steps", "best_score" (None without validation), "best_epoch" (the
    epoch best.pt holds), "best_metric" (the validation metric's name), "model"}.
    """
    world = world_from_env(device)
    lock = exclusive_lock(Path(out), "pose-pipeline train") if world.main else contextlib.nullcontext()
    try:
        with lock:
            summary = _train(world, settings, train_store, val_store, Path(out), epochs, progress, resume_from)
        if world.distributed:
            torch.distributed.barrier()  # nobody leaves before rank 0 has written model.pt
        return summary
    finally:
        if world.distributed:
            torch.distributed.destroy_process_group()


def _train(
    world: World,
    settings: dict,
    train_store: str,
    val_store: str | None,
    out: Path,
    epochs: int | None,
    progress: bool,
    resume_from: str | None,
) -> dict:
    run = setup(world, settings, train_store, val_store, out, epochs)
    state = resume(run, resume_from)
    announce(run)
    run.net = wrap_for_training(run)
    run.tensorboard = open_tensorboard(out / "tensorboard") if world.main else None
    state.session_start = time.monotonic()
    first = state.epochs_done(run.steps_per_epoch)
    # one producer for all epochs: it prepares the next epoch's first batches during validation
    with run_batches(run, first, state.step - first * run.steps_per_epoch) as batches:
        for epoch in range(first, run.epochs):
            compiling = run.training.compile and epoch == first  # torch.compile runs in its first step
            row = train_one_epoch(run, state, epoch, batches, progress, compiling)
            run.scheduler.step()
            row["lr"] = run.optimizer.param_groups[0]["lr"]  # after the step: the next epoch's, as always
            if not world.main:
                continue  # rank 0 validates and writes; the others wait in the next all-reduce
            if run.val is not None and validation_due(epoch + 1, run):
                row.update(validate(run))
            record_epoch(run, state, row)
            save_epoch_checkpoints(run, state, row)
    return finish(run, state)


# ---------------------------------------------------------------------------- phases


def train_one_epoch(
    run: Run, state: RunState, epoch: int, batches: Prefetcher, progress: bool, compiling: bool = False
) -> dict:
    """Train the epoch's remaining steps (all of them unless resumed inside it); a
    resumable checkpoint every `checkpoint_every` steps. Returns its log row, not yet validated
    (`compiling`: its first step compiles the model, left out of images_per_s: `EpochPace`).

    The next batches are read and prepared in a background thread while the device runs this
    one (`run_batches`), and the loss stays on the device until it is logged (every
    LOG_EVERY steps, at checkpoints and at the epoch's end): no step waits for the host."""
    from tqdm import tqdm

    run.net.train()
    skip = state.step - epoch * run.steps_per_epoch  # batches of this epoch done before a resume
    before = state.loss_before(skip)
    pace, losses = EpochPace(run.loader.global_batch_size, compiling), DeviceLoss(run.world.device, before)
    with tqdm(
        total=run.steps_per_epoch,
        initial=skip,
        desc=f"epoch {epoch + 1}/{run.epochs}",
        unit="step",
        disable=not (progress and run.world.main),
        mininterval=5,
    ) as bar:
        for batch in itertools.islice(batches, run.steps_per_epoch - skip):
            losses.add(train_step(run, batch), state.step)
            pace.step()
            state.step += 1
            bar.update(1)
            # Not at the epoch's last step: last.pt is written after validation there
            # (save_epoch_checkpoints), so a kill during validation resumes into this epoch and
            # its log row is still written, not skipped.
            epoch_end = state.step == (epoch + 1) * run.steps_per_epoch
            checkpoint = state.step % run.training.checkpoint_every == 0 and not epoch_end
            if checkpoint or state.step % LOG_EVERY == 0:
                so_far = read_loss(run, losses)
                bar.set_postfix(loss=f"{so_far:.2e}", refresh=False)
            if checkpoint and run.world.main:  # read_loss has refused a non-finite step before it
                state.epoch_loss = (so_far, losses.steps)  # a resume carries the epoch's mean on
                save_checkpoint(run.last_path, checkpoint_state(run, state))
    mean = read_loss(run, losses)
    state.epoch_loss = (0.0, 0)  # the epoch's mean goes into its row, not into the next epoch
    return {
        "epoch": epoch + 1,
        "step": state.step,
        "train_loss": mean,
        "val_loss": "",
        "val_score": "",
        "val_metric": "",
        "images_per_s": pace.images_per_s(),
    }


def run_batches(
    run: Run, first_epoch: int, skip: int, depth: int | None = None, host_warp: bool | None = None
) -> Prefetcher:
    """The batches of epochs `first_epoch`.. of the run, from batch `skip` of the first, `depth`
    ahead in a background thread (0: the serial loop, in the caller's thread; default
    PREFETCH_DEPTH on an accelerator, 0 on the CPU: `prefetch.depth_for`).

    The thread reads the crops (into pinned memory on CUDA; the loader reads the next shard
    buffer in a thread of its own) and draws each batch's augmentation from (seed, step), in
    batch order: the batches are the same whatever the depth, and a resumed run's the same as
    an uninterrupted one's. On the CPU (`host_warp`) it also warps and draws the targets
    (`finish_batch`); on a GPU that is left to the step, on the device."""
    world, training = run.world, run.training
    depth = depth_for(world.device, PREFETCH_DEPTH) if depth is None else depth
    host_warp = world.device.type == "cpu" if host_warp is None else host_warp
    mine = slice(world.rank * training.batch_size, (world.rank + 1) * training.batch_size)

    def prepare(item):
        step, (images, index) = item
        # Augmentation of the global batch drawn from (seed, step), this rank's part taken:
        # a resumed run, and any number of ranks, give each sample the same.
        params = run.augmentation.sample(np.random.default_rng([training.seed, step]), run.loader.global_batch_size)
        batch = prepare_batch(
            images,
            run.keypoints_canvas[index],
            run.trained[index],
            run.store,
            run.codec,
            augmentation=run.augmentation,
            params={k: v[mine] for k, v in params.items()},
        )
        return finish_batch(batch, run.codec, world.device, "cv2") if host_warp else batch

    pinned = world.device.type == "cuda"
    allocate = (lambda shape: torch.empty(shape, dtype=torch.uint8, pin_memory=True)) if pinned else None
    loader = run.loader.epochs(first_epoch, run.epochs, allocate, read_ahead=depth > 0)
    return Prefetcher(
        _skipping(loader, skip, first_epoch * run.steps_per_epoch), prepare, depth, name=f"batches-rank{world.rank}"
    )


def _skipping(batches, skip: int, first_step: int):
    """(step, batch) from batch `skip` on; closing it closes `batches` (and so the loader's
    read-ahead thread) at once, not when the garbage collector gets to it."""
    with contextlib.closing(batches):
        yield from enumerate(itertools.islice(batches, skip, None), first_step + skip)


def train_step(run: Run, batch) -> torch.Tensor:
    """One optimiser step on this rank's part of the global batch; returns its loss, on the
    device (the mean over the rank's samples)."""
    x, targets, weights = (
        batch if isinstance(batch, tuple) else finish_batch(batch, run.codec, run.world.device, "torch")
    )
    with autocast(run.world.device):
        outputs = run.net(x.contiguous(memory_format=run.memory_format))
    # The mean over this rank's part: DDP averages gradients over ranks of equal
    # batches, which is the gradient of the mean over the global batch.
    loss = heatmap_loss(outputs, targets, weights, run.training.foreground_weight)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss


def read_loss(run: Run, losses: DeviceLoss) -> float:
    """The mean loss of the epoch so far over all ranks (a collective: every rank calls it at
    the same steps), refusing a non-finite one naming its first step: raised before any
    checkpoint of a later step is written, so the last good one is kept."""
    mean, bad, value = losses.read(run.world.distributed, run.world.size)
    if bad is not None:
        kept = (
            f"the last good checkpoint {run.last_path} is kept"
            if run.last_path.exists()
            else "no checkpoint was written before it"
        )
        raise NonFiniteLoss(
            f"loss is {value if not run.world.distributed else 'not finite'} at epoch "
            f"{bad // run.steps_per_epoch + 1}, step {bad + 1}; {kept} (lower the learning rate?)"
        )
    return mean


def validation_due(epoch: int, run: Run) -> bool:
    """Whether 1-based `epoch` is validated: every `validate_every`-th, and always the last."""
    return epoch % run.evaluation["validate_every"] == 0 or epoch == run.epochs


def validate(run: Run) -> dict:
    """Validation loss and the dataset's own metric (metrics.validation_score: PCKh@0.5 for
    MPII, PCK@0.2 for LSP and COCO) with the experiment's evaluation batch size and blur."""
    val = run.val
    preds, _, loss = predict_store(
        run.model, val, run.codec, flip_test=False, batch_size=run.evaluation["batch_size"], device=run.world.device
    )
    metric, score = metrics.validation_score(preds, val.keypoints, val.visible, val.head_size, run.store.joint_set)
    return {"val_loss": loss, "val_score": score, "val_metric": metric}


def record_epoch(run: Run, state: RunState, row: dict) -> None:
    """Add the epoch's row to the run's log: the log line, log.csv and TensorBoard."""
    row["elapsed_s"] = state.elapsed()
    state.log_rows.append(row)
    left = seconds_left(row["elapsed_s"], row["epoch"], run.epochs)
    validation = (
        f"val loss {_fmt(row['val_loss'])}, val {row['val_metric'] or 'score'} {_fmt(row['val_score'])}"
        if row["val_score"] != "" or run.val is None
        else "not validated this epoch"
    )
    log.info(
        "epoch %d/%d: train loss %.3e, %s, %s, %s elapsed, %s left",
        row["epoch"],
        run.epochs,
        row["train_loss"],
        validation,
        "compiling, images/s not measured" if row["images_per_s"] == "" else f"{row['images_per_s']:.1f} images/s",
        hours_minutes_seconds(row["elapsed_s"]),
        hours_minutes_seconds(left),
    )
    write_log(run.out / "log.csv", state.log_rows)
    write_tensorboard(run.tensorboard, row)


def save_epoch_checkpoints(run: Run, state: RunState, row: dict) -> None:
    """best.pt (the best-scoring validated epoch so far; without a validation store, this
    epoch), then last.pt."""
    validated = row["val_score"] != ""
    if (run.val is None and not validated) or (validated and state.improves(row["val_score"])):
        state.best_score = row["val_score"] if validated else None
        state.best_epoch = row["epoch"]
        save_checkpoint(
            run.best_path,
            model_record(
                run.model,
                run.settings,
                run.store,
                run.codec,
                row["epoch"],
                state.step,
                val_score=row["val_score"],
                val_metric=row["val_metric"],
            ),
        )
    save_checkpoint(run.last_path, checkpoint_state(run, state))


def checkpoint_state(run: Run, state: RunState) -> dict:
    """last.pt: the model record plus all a resume needs (optimiser, scheduler, RNG, RunState)."""
    record = model_record(
        run.model, run.settings, run.store, run.codec, state.epochs_done(run.steps_per_epoch), state.step
    )
    return {
        **record,
        "format": CHECKPOINT_FORMAT,
        "run_hash": run.run_hash,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        **rng_state(),
        "world_size": run.world.size,
        **state.to_checkpoint(),
    }


def finish(run: Run, state: RunState) -> dict:
    """model.pt (written last: its presence means training completed) and the run's summary."""
    if run.tensorboard is not None:
        run.tensorboard.close()
    if run.world.main:
        write_log(run.out / "log.csv", state.log_rows)
        save_checkpoint(
            run.out / "model.pt",
            model_record(
                run.model, run.settings, run.store, run.codec, run.epochs, state.step, settings_hash=run.run_hash
            ),
        )
    metrics_named = [r["val_metric"] for r in state.log_rows if r.get("val_metric")]
    return {
        "epochs": run.epochs,
        "steps": state.step,
        "best_score": state.best_score,
        "best_epoch": state.best_epoch,
        "best_metric": metrics_named[-1] if metrics_named else None,
        "model": str(run.out / "model.pt"),
    }


def _fmt(value) -> str:
    return "-" if value == "" else f"{value:.4g}"
