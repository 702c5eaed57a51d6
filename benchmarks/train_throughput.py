"""Training throughput: does the loop keep a device busy? Two modes, one JSON.

Stand-in device (runs anywhere):

    PYTHONPATH=. python benchmarks/train_throughput.py --stand-in-ms 4,10,40 --json F

The model is replaced by a stand-in whose step blocks the main thread for T ms without
holding the GIL (time.sleep, as waiting on a GPU does). The host does what it does on the
CUDA path (`train.run_batches(host_warp=False)`: store reads, batch assembly,
augmentation parameters, keypoint transforms); the device-side warp and targets count as
part of T. The store is MPII-like at canvas 384, converted from 1280x720 JPEGs made from
the real MPII sample images (`convert_speed.make_sources`). Per T: the ideal B/T, today's
serial loop (depth 0: read, then step) and the overlapped loop (prefetch thread), images/s.

Real device (where CUDA exists):

    PYTHONPATH=. python benchmarks/train_throughput.py --real --json F

hg2, hg8 and PyraNet-8 (PRM-B) at 256 px, bf16 and fp32, compile off and on, batch 16 and
the largest that fits (doubling from 16): images/s, MFU (FLOPs of forward + backward from
FlopCounterMode over the device's peak bf16 rate, `--peak-tflops` or a table), peak memory,
and the fraction of step time the loop waited for data. `--tiny` shrinks it all (64 px,
16 features, batch 2) for a CPU smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from convert_speed import SAMPLE, convert_sources, make_sources  # noqa: E402
from machine import cpu_model  # noqa: E402

from pose_pipeline.config.training import TrainingConfig  # noqa: E402
from pose_pipeline.core.codec import HeatmapCodec  # noqa: E402
from pose_pipeline.core.loss import heatmap_loss  # noqa: E402
from pose_pipeline.data.batches import Augmentation, ShardBatches, finish_batch, trained_joints  # noqa: E402
from pose_pipeline.data.store import IMAGE_CODECS, open_store  # noqa: E402
from pose_pipeline.models import build_model  # noqa: E402
from pose_pipeline.train import loop as train_module  # noqa: E402
from pose_pipeline.train.state import DeviceLoss  # noqa: E402
from pose_pipeline.util.devices import World, autocast  # noqa: E402

MODELS = {
    "hg2": {"arch": "hourglass", "stacks": 2, "blocks": 1, "features": 256},
    "hg8": {"arch": "hourglass", "stacks": 8, "blocks": 1, "features": 256},
    "pyranet8": {"arch": "pyranet", "stacks": 8, "blocks": 1, "features": 256, "prm": "B"},
}
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense


def build_run(store_path, batch_size: int, input_size: int, device: torch.device):
    """What `train.run_batches` reads of a Run: loader, store, codec, augmentation, world."""
    store = open_store(store_path)
    loader = ShardBatches(store, batch_size, seed=0)
    return SimpleNamespace(
        store=store,
        loader=loader,
        steps_per_epoch=loader.batches_per_epoch(),
        epochs=10**6,
        training=TrainingConfig.from_settings({"seed": 0, "batch_size": batch_size}),
        augmentation=Augmentation(),
        keypoints_canvas=store.keypoints_in_canvas(),
        trained=trained_joints(store),
        world=World(device=device),
        codec=HeatmapCodec(input_size, input_size // 4, sigma=1.0),
    )


def endless(run, depth: int, host_warp: bool, steps: int):
    """`steps` batches of the training loop's `run_batches` (epoch after epoch, as many as it
    takes); yields (batch, prefetcher) so the caller can read how long it waited."""
    with train_module.run_batches(run, 0, 0, depth=depth, host_warp=host_warp) as batches:
        for _, batch in zip(range(steps), batches):
            yield batch, batches


# --------------------------------------------------------------------------- stand-in


def stand_in(run, ms: float, depth: int, steps: int, warmup: int = 2) -> float:
    """Images/s of the loop with a stand-in step that blocks the main thread for `ms`."""
    started, done = None, 0
    for i, _ in enumerate(endless(run, depth, host_warp=False, steps=steps + warmup)):
        time.sleep(ms / 1000)  # the device's step: no GIL held, as waiting on a GPU
        if i + 1 == warmup:
            started = time.perf_counter()
        elif i + 1 > warmup:
            done += 1
    return done * run.loader.batch_size / (time.perf_counter() - started)


def stand_in_mode(args, store_path) -> dict:
    run = build_run(store_path, args.batch_size, 256, torch.device("cpu"))
    rows = []
    for ms in args.stand_in_ms:
        steps = max(48, int(args.seconds * 1000 / ms))
        row = {"ms": ms, "ideal": args.batch_size * 1000 / ms}
        for name, depth in (("serial", 0), ("overlapped", train_module.PREFETCH_DEPTH)):
            row[name] = stand_in(run, ms, depth, steps)
        row["overlapped_of_ideal"] = row["overlapped"] / row["ideal"]
        row["serial_of_ideal"] = row["serial"] / row["ideal"]
        print(
            f"T={ms:g} ms: ideal {row['ideal']:.0f}, serial {row['serial']:.0f} ({row['serial_of_ideal']:.0%}), "
            f"overlapped {row['overlapped']:.0f} ({row['overlapped_of_ideal']:.0%}) images/s",
            flush=True,
        )
        rows.append(row)
    return {"mode": "stand-in", "batch_size": args.batch_size, "canvas": args.canvas, "rows": rows}


# ------------------------------------------------------------------------ real device


def model_flops(model, x, targets, weights) -> float:
    """FLOPs of one forward + backward at this batch (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        heatmap_loss(model(x), targets, weights).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def real_config(run, model_config, bf16: bool, compiled: bool, steps: int, warmup: int) -> dict:
    """Train `steps` steps of one configuration through the real loop; its figures."""
    device = run.world.device
    torch.manual_seed(0)
    model = build_model(model_config, 16).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    net = torch.compile(model) if compiled else model
    losses, flops, waited0, started = DeviceLoss(device), None, 0.0, None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i, (batch, batches) in enumerate(
        endless(run, train_module.PREFETCH_DEPTH, device.type == "cpu", steps + warmup)
    ):
        x, targets, weights = batch if isinstance(batch, tuple) else finish_batch(batch, run.codec, device, "torch")
        if flops is None:
            flops = model_flops(model, x.contiguous(memory_format=torch.channels_last), targets, weights)
        with autocast(device, bf16=bf16):
            loss = heatmap_loss(net(x.contiguous(memory_format=torch.channels_last)), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.add(loss, i)
        if i + 1 == warmup:
            losses.read()  # waits for the device: timing starts with it idle
            started, waited0 = time.perf_counter(), batches.waited
    losses.read()
    seconds = time.perf_counter() - started
    result = {
        "images_per_s": steps * run.loader.batch_size / seconds,
        "flops_per_step": flops,
        "wait_fraction": (batches.waited - waited0) / seconds,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def largest_batch(store_path, model_config, input_size, device, bf16: bool, start: int, cap: int) -> int:
    """The largest batch (doubling from `start`, at most `cap`) whose step fits in memory."""
    best, size = start, start
    while size * 2 <= cap:
        size *= 2
        try:
            run = build_run(store_path, size, input_size, device)
            real_config(run, model_config, bf16, False, steps=1, warmup=1)
            best = size
        except torch.OutOfMemoryError:
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return best


def real_mode(args, store_path) -> dict:
    device = torch.device(args.device)
    tiny = {"features": 16} if args.tiny else {}
    input_size, batch, cap = (64, 2, 4) if args.tiny else (256, args.batch_size, args.max_batch)
    peak = args.peak_tflops or next(
        (v for k, v in PEAK_BF16_TFLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)),
        None,
    )
    rows = []
    for name in args.models:
        config = {**MODELS[name], **tiny}
        for bf16 in (True, False):
            for size in sorted({batch, largest_batch(store_path, config, input_size, device, bf16, batch, cap)}):
                run = build_run(store_path, size, input_size, device)
                for compiled in args.compile:
                    figures = real_config(run, config, bf16, compiled, args.steps, args.warmup)
                    figures["mfu"] = (
                        figures["flops_per_step"] * figures["images_per_s"] / size / peak / 1e12 if peak else None
                    )
                    rows.append(
                        {
                            "model": name,
                            "precision": "bf16" if bf16 else "fp32",
                            "compile": compiled,
                            "batch_size": size,
                            **figures,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return {
        "mode": "real",
        "device": str(device),
        "peak_bf16_tflops": peak,
        "input_size": input_size,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "rows": rows,
    }


# ------------------------------------------------------------------------------- main


def build_store(work: Path, images: int, canvas: int, shard_size: int, image_codec: str) -> Path:
    path = work / f"train-{canvas}-{image_codec}.zarr"
    if not path.exists():
        if not (work / "annotations.h5").exists():
            shutil.rmtree(work / "images", ignore_errors=True)
            make_sources(work, images)
        convert_sources(work, path, canvas, shard_size, image_codec=image_codec)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stand-in-ms", type=lambda s: [float(v) for v in s.split(",")], default=[4.0, 10.0, 40.0])
    p.add_argument("--real", action="store_true", help="the real-device mode (default: stand-in)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="real mode at a tiny size (CPU smoke test)")
    p.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    p.add_argument(
        "--compile",
        type=lambda s: [v == "on" for v in s.split(",")],
        default=[False, True],
        help="off,on (default both)",
    )
    p.add_argument("--images", type=int, default=384, help="source images = samples (one person each)")
    p.add_argument("--canvas", type=int, default=384)
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument("--image-codec", choices=IMAGE_CODECS, default=IMAGE_CODECS[0], help="the store's crops' codec")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30, help="timed steps per real configuration")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0, help="stand-in: timed seconds per loop and T (about)")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: a table by name)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--keep", help="build sources and store in this folder and keep them (reused if present)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not SAMPLE.exists():
        sys.exit(f"{SAMPLE} is absent: the benchmark needs the real MPII sample")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="train_throughput_"))
    started = time.perf_counter()
    try:
        store = build_store(work, args.images, args.canvas, args.shard_size, args.image_codec)
        report = real_mode(args, store) if args.real else stand_in_mode(args, store)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report.update(
        command=" ".join(["python", "benchmarks/train_throughput.py"] + (argv or sys.argv[1:])),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        image_codec=args.image_codec,
        torch=torch.__version__,
        load_after=os.getloadavg(),
        seconds=time.perf_counter() - started,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
