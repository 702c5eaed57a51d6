"""Device choice, mixed precision and the distributed world (and its launcher), in one place."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass

import torch

from pose_pipeline.errors import UserError

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' = CUDA when present, else CPU; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU. `bf16` forces it
    either way (the tests run the CUDA path's bf16 on the CPU, where autocast supports it)."""
    if bf16 if bf16 is not None else device.type == "cuda":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- distributed (DDP)


@dataclass(frozen=True)
class World:
    """This process's place in a training run: rank 0 of 1 without a process group."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs and the progress bar."""
        return self.rank == 0


def world_from_env(device: str = "auto") -> World:
    """The world torchrun describes in RANK / LOCAL_RANK / WORLD_SIZE, with the process
    group initialised (NCCL on GPUs, gloo on CPU) when it has more than one rank; a plain
    process (no WORLD_SIZE, or 1) gets no process group at all."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(device=resolve_device(device))
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"rank {rank}: local rank {local_rank} but only {torch.cuda.device_count()} "
                "visible GPUs (use at most one process per GPU)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # rank 0 validates while the others wait in the next step's all-reduce: a long timeout
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return World(rank, local_rank, size, device)


def auto_nproc() -> int:
    """Processes for `--nproc auto`: one per visible GPU (torch counts CUDA_VISIBLE_DEVICES,
    which SLURM sets to the job's GPUs), at most SLURM_GPUS_ON_NODE inside a SLURM job;
    1 (a plain process) without GPUs."""
    if not torch.cuda.is_available():
        return 1
    count = torch.cuda.device_count()
    slurm = os.environ.get("SLURM_GPUS_ON_NODE", "")
    if slurm.isdigit() and int(slurm) > 0:
        count = min(count, int(slurm))
    return max(count, 1)


def launch_ranks(nproc: int, device: str, command: list[str], verbose: bool = False, job: str = "training") -> int:
    """Run `python -m pose_pipeline COMMAND...` as `nproc` ranks under torch's elastic
    launcher (what `torchrun --standalone --nproc-per-node N -m pose_pipeline ...` does);
    each rank finds its place with `world_from_env`."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if "WORLD_SIZE" in os.environ:
        raise UserError("--nproc inside a torchrun worker: leave --nproc out when torchrun starts the ranks")
    if device != "cpu" and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise UserError(f"--nproc {nproc} but {torch.cuda.device_count()} visible GPUs (one process per GPU)")
    argv = ["--standalone", f"--nproc-per-node={nproc}", "-m", "pose_pipeline"]
    argv += ["-v"] if verbose else []
    argv += command
    log.info("launching %d ranks: torchrun %s", nproc, " ".join(argv[:4] + ["..."]))
    try:
        torchrun(argv)
    except ChildFailedError as exc:
        ranks = ", ".join(f"rank {r} (exit {f.exitcode})" for r, f in sorted(exc.failures.items()))
        raise UserError(f"{job} failed in {ranks}; its message is above") from None
    return 0
