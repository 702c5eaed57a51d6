"""What a training run carries from step to step and from session to session.

`RunState` holds the counters and records of a run (step, log rows, best score, elapsed
time) and writes itself into, and reads itself from, the resumable checkpoint `last.pt`.
`model_record` is the one layout of a saved model (`model.pt`, `best.pt`, and the weights
inside `last.pt`), so predict loads any of them alike.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.joints import JointSet
from pose_pipeline.data.store import PoseStore
from pose_pipeline.errors import UserError
from pose_pipeline.models import load_weights, read_checkpoint
from pose_pipeline.train.log import upgrade_row
from pose_pipeline.util.atomic import atomic_output

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "pose-pipeline-train-state-1"
# Settings that change how a run is run or validated, not what it learns: a run resumes
# across a change of them.
NOT_IN_RUN_IDENTITY = ("compile", "num_threads", "checkpoint_every")  # speed and bookkeeping, not what is learnt
EXPERIMENT_KEYS_NOT_IN_RUN_IDENTITY = ("evaluation",)
AUGMENTATION_KEYS_ADDED = (
    *("shift", "shift_prob", "half_body_prob"),
    *("erase_prob", "erase_area", "erase_ratio", "erase_fill", "blur_prob", "blur_sigma"),
)


@dataclass
class RunState:
    """The run's progress: everything of it that is not model, optimiser, scheduler or RNG.

    step: optimiser steps done; log_rows: one `train.log` row per finished epoch;
    best_score / best_epoch: the best validation score so far and its epoch (None until a
    validation has run, and in a run without validation); elapsed_before: training
    seconds of earlier sessions of this run; epoch_loss: (mean, steps) of the loss of the
    epoch under way over its steps so far, as a mid-epoch checkpoint takes it ((0.0, 0)
    between epochs), so that a resumed epoch's train_loss is the mean of all its steps.
    """

    step: int = 0
    log_rows: list[dict] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    elapsed_before: float = 0.0
    epoch_loss: tuple[float, int] = (0.0, 0)
    session_start: float = field(default_factory=time.monotonic, repr=False)  # not saved

    def elapsed(self) -> float:
        """Training seconds of the whole run, this session included."""
        return self.elapsed_before + time.monotonic() - self.session_start

    def epochs_done(self, steps_per_epoch: int) -> int:
        return self.step // steps_per_epoch

    def improves(self, score: float) -> bool:
        return self.best_score is None or score > self.best_score

    def loss_before(self, steps_done: int) -> tuple[float, int]:
        """(mean, steps) of the loss of the current epoch's `steps_done` steps trained before
        this session (`DeviceLoss` carries on from it); (0.0, 0) at an epoch's start, and where
        the checkpoint does not hold it (one written before it did)."""
        if steps_done and self.epoch_loss[1] != steps_done:
            log.warning(
                "the checkpoint holds no loss of this epoch's first %d steps: its train_loss is the mean "
                "of the steps after the resume",
                steps_done,
            )
        return self.epoch_loss if steps_done and self.epoch_loss[1] == steps_done else (0.0, 0)

    def to_checkpoint(self) -> dict:
        return {
            "step": self.step,
            "log_rows": self.log_rows,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "elapsed_s": self.elapsed(),
            "epoch_loss": list(self.epoch_loss),
        }

    @classmethod
    def from_checkpoint(cls, state: dict) -> RunState:
        rows = [upgrade_row(r) for r in state["log_rows"]]
        if "best_score" in state:
            best_score, best_epoch = state["best_score"], state.get("best_epoch")
        else:  # written before best_score: its best_pckh mixed scores and -epoch; the rows say
            scored = [r for r in rows if r["val_score"] != ""]
            best = max(scored, key=lambda r: r["val_score"], default=None)
            best_score, best_epoch = (best["val_score"], best["epoch"]) if best else (None, None)
        mean, steps = state.get("epoch_loss", (0.0, 0))
        return cls(state["step"], rows, best_score, best_epoch, state["elapsed_s"], (float(mean), int(steps)))


def seconds_left(elapsed_s: float, epochs_done: int, epochs: int) -> float:
    """Seconds the remaining epochs take at the mean pace of the `epochs_done` so far."""
    return elapsed_s / max(epochs_done, 1) * (epochs - epochs_done)


def hours_minutes_seconds(seconds: float) -> str:
    """ "1:02:03", "0:00:41": the epoch log line's durations."""
    minutes, second = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{second:02d}"


# ------------------------------------------------------------------ the loss, on the device


class DeviceLoss:
    """The training loss summed on the device and read only when logged, so that a step never
    waits for the device (a `.item()` per step would). It also remembers the first step whose
    loss was not finite; `read` (on every rank: in DDP it is a collective) returns the mean
    over ranks and steps, and that step (None if all were finite). `before`: (mean, steps) of
    the epoch's steps trained before a resume (`RunState.loss_before`), which the mean takes in."""

    NONE_BAD = 2**62

    def __init__(self, device: torch.device, before: tuple[float, int] = (0.0, 0)):
        mean, steps = before
        # every rank starts from the mean's sum: the all-reduced sum over ranks is then the
        # world's, as each rank's steps were averaged over ranks too
        self.total = torch.full((), mean * steps, dtype=torch.float64, device=device)
        self.first_bad = torch.full((), self.NONE_BAD, dtype=torch.int64, device=device)
        self.bad_value = torch.zeros((), dtype=torch.float64, device=device)
        self.steps = steps

    def add(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().to(torch.float64)
        finite = torch.isfinite(loss)
        first = ~finite & (self.first_bad == self.NONE_BAD)
        self.total += torch.where(finite, loss, 0.0)
        self.bad_value = torch.where(first, loss, self.bad_value)
        self.first_bad = torch.where(first, step, self.first_bad)
        self.steps += 1

    def read(self, distributed: bool = False, world_size: int = 1) -> tuple[float, int | None, float]:
        """(mean loss, first non-finite step or None, its loss): the one host sync."""
        total, first_bad = self.total.clone(), self.first_bad.clone()
        if distributed:
            torch.distributed.all_reduce(total)
            torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MIN)
        first_bad, value = int(first_bad), float(self.bad_value)
        mean = float(total) / max(self.steps * world_size, 1)
        return mean, (None if first_bad == self.NONE_BAD else first_bad), value


class EpochPace:
    """Images per second of the steps an epoch trains in this session. With `warm_up` (a
    compiled model's first step, during which torch.compile compiles it) the clock starts
    after the first step, which is left out; an epoch of that step alone has no figure ("")."""

    def __init__(self, images_per_step: int, warm_up: bool = False):
        self.images_per_step, self.warm_up = images_per_step, warm_up
        self.start, self.steps = time.monotonic(), 0

    def step(self) -> None:
        if self.warm_up:
            self.warm_up, self.start = False, time.monotonic()
        else:
            self.steps += 1

    def images_per_s(self) -> float | str:
        if not self.steps:
            return ""
        return self.steps * self.images_per_step / max(time.monotonic() - self.start, 1e-9)


# ------------------------------------------------------------------------- RNG state


def rng_state() -> dict:
    """The generators a resumed run must continue: the CPU's, and every CUDA device's when
    CUDA is present (without them a resumed run on a GPU would not be exact)."""
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(saved: dict) -> None:
    """Set the generators `rng_state` saved; CUDA's only where CUDA is present (a checkpoint
    moved to a CPU-only machine resumes with the CPU's), each saved device onto the same index."""
    torch.set_rng_state(saved["torch_rng"])
    cuda = saved.get("cuda_rng")
    if not cuda or not torch.cuda.is_available():
        return
    count = torch.cuda.device_count()
    if len(cuda) != count:
        log.warning(
            "checkpoint has the RNG state of %d CUDA devices, this machine %d: restoring the first %d",
            len(cuda),
            count,
            min(len(cuda), count),
        )
    torch.cuda.set_rng_state_all(cuda[:count])


# --------------------------------------------------------------------- checkpoint files


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` atomically: a crash leaves the previous file, never half of one."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def model_record(
    model: torch.nn.Module, settings: dict, store: PoseStore, codec: HeatmapCodec, epoch: int, step: int, **extra
) -> dict:
    """The saved model: weights, architecture, its training store's joint set (names, flip pairs,
    edges) and converter parameters (how its crops were cut, e.g. `reduced_decode`: infer cuts
    alike), the codec's sizes, the run's settings and where in the run it was taken (plus
    `extra` keys)."""
    joints = store.joint_set
    return {
        "model_config": {**settings["model"], "joints": joints.num_joints},
        "joint_set": joints.to_dict(),
        "converter": dict(store.attrs.get("converter") or {}),
        "state_dict": model.state_dict(),
        "input_size": codec.input_size,
        "heatmap_size": codec.heatmap_size,
        "sigma": codec.sigma,
        "settings": settings,
        "epoch": epoch,
        "step": step,
        **extra,
    }


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


def load_external(path, model, model_config: dict, optimizer, scheduler, joints: JointSet | None = None) -> int:
    """Load weights (and the optimiser state when it fits) from another run's checkpoint,
    e.g. PyTorch-Pose's `checkpoint.pth.tar`; returns the number of epochs it had completed.
    From another joint set (`models.load_weights`) the optimiser state is not taken: its
    per-joint moments have the other set's shape."""
    checkpoint = read_checkpoint(path)
    transfer = load_weights(model, model_config, path, joints)
    if transfer:
        log.info("%s: another joint set, %s; optimiser state not used", path, transfer)
    elif isinstance(checkpoint.get("optimizer"), dict):
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as exc:
            log.warning("%s: optimiser state not used (%s)", path, exc)
    epoch = int(checkpoint.get("epoch", 0) or 0)
    for _ in range(epoch):
        scheduler.step()
    return epoch


# ------------------------------------------------------------------------ run identity


def store_fingerprint(store: PoseStore) -> dict:
    """What identifies the training data: a regenerated store must not resume old weights. The
    sources by name and content, not by where they lay (a store of the same files elsewhere, or
    from before stores recorded the path, is the same data)."""
    sources = store.attrs.get("sources")
    if sources is not None:
        sources = [{k: v for k, v in source.items() if k != "path"} for source in sources]
    return {"sources": sources, "num_samples": len(store), "converter": store.attrs.get("converter")}


def _without_later_defaults(augmentation: dict) -> dict:
    """The augmentation settings less the keys added after runs existed (shift, half-body,
    erasing, blur) where they hold their defaults (off): those runs draw the same batches, so
    they keep their identity and resume."""
    defaults = schema_defaults("experiment", "training", "augmentation")
    return {k: v for k, v in augmentation.items() if k not in AUGMENTATION_KEYS_ADDED or v != defaults.get(k)}


def run_identity(settings: dict, epochs: int, store: PoseStore, world_size: int) -> dict:
    """What a resumable checkpoint must match. `training.compile` and `num_threads` change
    speed, `checkpoint_every` when state is saved and the `evaluation` settings what validation
    reports, not what is learnt, so they are left out;
    the world size changes the global batch, so it is in (only when > 1, so single-process
    runs keep the identity they always had); `train_occluded` only when false and
    `foreground_weight` only when not 1, for the same reason."""
    training = {k: v for k, v in settings["training"].items() if k not in NOT_IN_RUN_IDENTITY}
    if training.get("train_occluded", True):  # the default: runs from before the key keep their identity
        training.pop("train_occluded", None)
    if training.get("foreground_weight", 1.0) == 1.0:  # likewise
        training.pop("foreground_weight", None)
    if isinstance(training.get("augmentation"), dict):
        training["augmentation"] = _without_later_defaults(training["augmentation"])
    kept = {k: v for k, v in settings.items() if k not in EXPERIMENT_KEYS_NOT_IN_RUN_IDENTITY}
    identity = {"settings": {**kept, "training": training}, "epochs": epochs, "data": store_fingerprint(store)}
    if world_size > 1:
        identity["world_size"] = world_size
    return identity
