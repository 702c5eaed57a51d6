"""Training-loader speed on MPII-size sources: the store loader against a per-sample loader.

    PYTHONPATH=. python benchmarks/loader_speed.py [--images 384] [--repeats 5] \
        [--json benchmarks/loader_speed.json] [--markdown benchmarks/loader_speed.md]

Builds 1280x720 JPEGs from the five real MPII sample images with hourglass .h5 annotations
(`convert_speed.make_sources`, in a temporary folder), converts them with `convert` (canvas
384, context 1.5, shard 64: the project defaults), then measures in one run:

(a) store read rate: `ShardBatches` alone, uint8 crops only;
(b) project loader: `ShardBatches` + `make_batch` with augmentation to 256 inputs and 64x64
    sigma-1 targets, CPU, with torch/OpenCV pinned to 1 thread (per core) and to 2 threads;
(c) baseline: the per-sample loader of the stacked-hourglass PyTorch ports (`baseline_sample`);
(d) CPU training images/s of a 2-stack hourglass fed by (b) and by (c): loader time + step
    time in sequence, one process, torch's default threads, as `pose-pipeline train` on CPU.

"Per core" is samples per CPU-second of this process (all its threads, user + sys), which a
busy shared machine distorts less than wall time; wall-clock rates are printed beside it.
Every figure is the median of --repeats runs; the load average is recorded around each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from convert_speed import SAMPLE, convert_sources, make_sources  # noqa: E402
from machine import cpu_model  # noqa: E402
from zarr.codecs import ZstdCodec  # noqa: E402

from pose_pipeline import __version__  # noqa: E402
from pose_pipeline.core import geometry  # noqa: E402
from pose_pipeline.core.codec import HeatmapCodec  # noqa: E402
from pose_pipeline.core.loss import heatmap_loss  # noqa: E402
from pose_pipeline.data.batches import INPUT_MEAN, Augmentation, Samples, ShardBatches, make_batch  # noqa: E402
from pose_pipeline.data.store import open_store  # noqa: E402
from pose_pipeline.data.store_writer import StoreWriter  # noqa: E402
from pose_pipeline.models import build_model  # noqa: E402
from pose_pipeline.util.atomic import write_text_atomic  # noqa: E402

INPUT, HEATMAP, SIGMA = 256, 64, 1.0
CPU = torch.device("cpu")


def set_threads(n: int) -> None:
    # zarr's threads too (zarrs decodes on its own pool): "1 thread" is one for everything.
    # A store binds them when it opens its image array: reopen_images() after this.
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    zarr.config.set({"threading.max_workers": n})


def reopen_images(*stores) -> None:
    for store in stores:
        store._images = None  # opened again, with the current zarr settings, on the next read


def load() -> float:
    return os.getloadavg()[0]


def measure(fns: dict, repeats: int) -> dict:
    """Median wall and process-CPU seconds of each `fn()` over `repeats` runs, after one
    warm-up each; the runs are interleaved so that a change in machine load hits all alike."""
    for fn in fns.values():
        fn()
    raw = {name: {"walls": [], "cpus": [], "loads": []} for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            raw[name]["loads"].append(load())
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            raw[name]["walls"].append(time.perf_counter() - t0)
            raw[name]["cpus"].append(time.process_time() - c0)
    return {
        name: {
            "wall_s": statistics.median(r["walls"]),
            "cpu_s": statistics.median(r["cpus"]),
            "load1": statistics.median(r["loads"]),
            **r,
        }
        for name, r in raw.items()
    }


# ------------------------------------------------------------------------- the loaders


class ProjectLoader:
    """What `train` does per step: the next uint8 batch from `ShardBatches`, then
    `make_batch` (augmentation warp, colour, Gaussian targets as batched tensor ops)."""

    def __init__(self, store, batch_size: int, warp: str = "auto"):
        self.store, self.warp = store, warp
        self.batches = ShardBatches(store, batch_size, seed=0)
        self.keypoints, self.visible = store.keypoints_in_canvas(), store.visible
        self.codec = HeatmapCodec(INPUT, HEATMAP, SIGMA)
        self.augmentation = Augmentation()

    def epoch(self, epoch: int):
        for step, (images, index) in enumerate(self.batches.epoch(epoch, read_ahead=False)):
            rng = np.random.default_rng([0, epoch, step])
            yield make_batch(
                Samples(images, self.keypoints[index], self.visible[index]),
                self.store,
                self.codec,
                CPU,
                augmentation=self.augmentation,
                rng=rng,
                warp=self.warp,
            )


def gaussian_patch(sigma: float) -> np.ndarray:
    size = int(6 * sigma + 1)
    x = np.arange(size, dtype=np.float32)
    c = size // 2
    return np.exp(-((x[None] - c) ** 2 + (x[:, None] - c) ** 2) / (2 * sigma**2))


def draw_gaussian(heatmap: np.ndarray, point, patch: np.ndarray) -> float:
    """Paste the Gaussian patch centred on the integer pixel of `point` (as the seeds'
    draw_labelmap: the peak snaps to a pixel); 0 if the patch misses the map."""
    r = patch.shape[0] // 2
    x, y = int(point[0] + 0.5), int(point[1] + 0.5)
    h, w = heatmap.shape
    x0, y0, x1, y1 = x - r, y - r, x + r + 1, y + r + 1
    if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
        return 0.0
    heatmap[max(0, y0) : min(y1, h), max(0, x0) : min(x1, w)] = patch[
        max(0, -y0) : patch.shape[0] - max(0, y1 - h), max(0, -x0) : patch.shape[1] - max(0, x1 - w)
    ]
    return 1.0


class BaselineLoader:
    """The per-sample loader of the stacked-hourglass PyTorch ports (bearpaw/pytorch-pose
    `Mpii.__getitem__`, princeton-vl/pytorch_stacked_hourglass `GenerateHeatmap` and its
    cv2 crop): per sample, decode the full JPEG, draw scale/rotation/flip/colour, crop with
    one warpAffine, draw 16 Gaussians at integer positions in numpy; the DataLoader's
    collate stacks the samples into tensors. Same people, boxes and augmentation ranges as
    the project loader; the flip mirrors the 256 crop rather than the whole 1280x720 frame
    (cheaper than pytorch-pose, so the ratio is if anything conservative).
    """

    def __init__(self, store, image_dir: Path, batch_size: int):
        self.batch_size = batch_size
        self.files = [str(image_dir / name) for name in store.image_name]
        self.points = geometry.annotated_to_array(store.keypoints, store.pixel_origin)
        self.center = geometry.annotated_to_array(store.center, store.pixel_origin)
        self.box = 200.0 * store.scale  # person box; the input shows it at scale 1
        self.visible = store.visible
        self.flip_perm = store.joint_set.flip_permutation()
        self.augmentation = Augmentation()
        self.patch = gaussian_patch(SIGMA)
        self.to_heatmap = geometry.resize_affine(INPUT, HEATMAP)
        self.mean = np.array(INPUT_MEAN, np.float32)

    def sample(self, i: int, rng: np.random.Generator):
        image = cv2.imread(self.files[i], cv2.IMREAD_COLOR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        p = self.augmentation.sample(rng, 1)
        affine = geometry.crop_affine(self.center[i], self.box[i] * p["scale"][0], INPUT, p["rotation"][0])
        crop = cv2.warpAffine(
            image, affine, (INPUT, INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        points = geometry.apply(affine, self.points[i])
        visible = self.visible[i].astype(np.float32)
        if p["flip"][0]:
            crop = crop[:, ::-1]
            points = points[self.flip_perm]
            points[:, 0] = INPUT - 1 - points[:, 0]
            visible = visible[self.flip_perm]
        x = crop.astype(np.float32) * (p["gain"][0].astype(np.float32) / 255.0)
        np.clip(x, 0, 1, out=x)
        x = (x - self.mean).transpose(2, 0, 1)
        heat_points = geometry.apply(self.to_heatmap, points)
        targets = np.zeros((len(points), HEATMAP, HEATMAP), np.float32)
        for j, point in enumerate(heat_points):
            if visible[j] > 0:
                visible[j] = draw_gaussian(targets[j], point, self.patch)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(targets), torch.from_numpy(visible)

    def epoch(self, epoch: int):
        rng = np.random.default_rng([1, epoch])
        order = rng.permutation(len(self.files))
        for b in range(0, len(order) - self.batch_size + 1, self.batch_size):
            samples = [self.sample(i, rng) for i in order[b : b + self.batch_size]]
            yield tuple(torch.stack(parts) for parts in zip(*samples))


def consume(iterable) -> int:
    n = 0
    for batch in iterable:
        n += len(batch[0])
    return n


# ----------------------------------------------------------------------- training steps


def train_steps(loaders: dict, batch_size: int, features: int, stacks: int, warmup: int, steps: int) -> dict:
    """Alternate one step per loader (so load changes hit both alike); per step the time to
    get the batch and the time of forward + backward + RMSprop step, as `train` runs them."""
    torch.manual_seed(0)
    model = build_model({"arch": "hourglass", "stacks": stacks, "blocks": 1, "features": features}, 16)
    model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    streams = {name: iter(_endless(loader)) for name, loader in loaders.items()}
    times = {name: {"loader_s": [], "step_s": []} for name in loaders}
    loads = []
    for k in range(warmup + steps):
        for name, stream in streams.items():
            t0 = time.perf_counter()
            x, targets, weights = next(stream)
            t1 = time.perf_counter()
            outputs = model(x.contiguous(memory_format=torch.channels_last))
            loss = heatmap_loss(outputs, targets, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()
            t2 = time.perf_counter()
            if k >= warmup:
                times[name]["loader_s"].append(t1 - t0)
                times[name]["step_s"].append(t2 - t1)
        loads.append(load())
    # The step is the same model on the same batch shape whichever loader fed it, so on a
    # busy machine the pooled median step time is the steadier estimate of what it costs.
    pooled_step = statistics.median([x for t in times.values() for x in t["step_s"]])
    result = {"pooled_step_s": pooled_step, "load1": statistics.median(loads)}
    for name, t in times.items():
        loader_s, step_s = statistics.median(t["loader_s"]), statistics.median(t["step_s"])
        total = [a + b for a, b in zip(t["loader_s"], t["step_s"])]
        result[name] = {
            "loader_s": loader_s,
            "step_s": step_s,
            "iteration_s": statistics.median(total),
            "images_per_s": batch_size / statistics.median(total),
            "images_per_s_pooled_step": batch_size / (loader_s + pooled_step),
            "raw": t,
        }
    return result


def _endless(loader):
    epoch = 0
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


# ---------------------------------------------------------------------------------- main


def machine() -> dict:
    import zarr

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "zarr": zarr.__version__,
        "numpy": np.__version__,
        "pose_pipeline": __version__,
        "torch_default_threads": torch.get_num_threads(),
        "opencv_default_threads": cv2.getNumThreads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384, help="source images = samples (one person each)")
    parser.add_argument("--canvas", type=int, default=384, help="stored crop side (project default 384)")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="runs per loader measurement (median)")
    parser.add_argument("--features", type=int, default=256, help="hourglass features (hg2 in config.yaml: 256)")
    parser.add_argument("--stacks", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps per loader")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--json", help="write all figures (and raw timings) here")
    parser.add_argument("--markdown", help="write the tables here")
    parser.add_argument("--keep", help="build sources and store in this folder and keep them (reused if present)")
    args = parser.parse_args()
    if not SAMPLE.exists():
        sys.exit(f"{SAMPLE} is absent: the benchmark needs the real MPII sample")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="loader_speed_"))
    try:
        report = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=1) + "\n")
    if args.markdown:
        write_text_atomic(args.markdown, report["markdown"])


def build_store(work: Path, name: str, canvas: int, shard_size: int, checksums: bool = True):
    path = work / name
    if not path.exists():
        original = StoreWriter._codecs
        if not checksums:  # the store as written before chunk checksums: its compressor alone
            StoreWriter._codecs = lambda self, compressor=None: {
                "compressors": [compressor or ZstdCodec(level=self.compression_level)]
            }
        try:
            convert_sources(work, path, canvas, shard_size)
        finally:
            StoreWriter._codecs = original
    return open_store(path)


def run(args, work: Path) -> dict:
    started = time.perf_counter()
    default_threads = torch.get_num_threads(), cv2.getNumThreads()
    info = machine()
    load_before = os.getloadavg()
    if not (work / "annotations.h5").exists():
        shutil.rmtree(work / "images", ignore_errors=True)
        make_sources(work, args.images)
    store = build_store(work, f"train-{args.canvas}.zarr", args.canvas, args.shard_size)
    small = build_store(work, "train-256.zarr", 256, args.shard_size) if args.canvas != 256 else None
    unchecked = build_store(
        work, f"train-{args.canvas}-no-checksums.zarr", args.canvas, args.shard_size, checksums=False
    )
    n = len(store)
    files = sorted((work / "images").glob("*.jpg"))
    jpeg_kb = sum(f.stat().st_size for f in files) / len(files) / 1e3
    for f in files:  # page cache warm for both loaders
        f.read_bytes()
    setup_s = time.perf_counter() - started
    b = args.batch_size
    project, project_torch = ProjectLoader(store, b), ProjectLoader(store, b, warp="torch")
    baseline = BaselineLoader(store, work / "images", b)
    per_epoch = ShardBatches(store, b).batches_per_epoch() * b
    # the same store decoded by zarr-python's own codec pipeline: the project without zarrs
    plain = open_store(store.path, fast_decode=False)

    rows = {}
    epoch = iter(range(1_000_000))  # a new shuffle every run, as in training
    for threads in (1, 2):
        set_threads(threads)
        reopen_images(*(s for s in (store, small, plain, unchecked) if s is not None))
        fns = {
            "read": lambda: consume(ShardBatches(store, b).epoch(next(epoch), read_ahead=False)),
            "read_zarr_pipeline": lambda: consume(ShardBatches(plain, b).epoch(next(epoch))),
            "read_no_checksums": lambda: consume(ShardBatches(unchecked, b).epoch(next(epoch))),
            "project": lambda: consume(project.epoch(next(epoch))),
            "project_torchwarp": lambda: consume(project_torch.epoch(next(epoch))),
            "baseline": lambda: consume(baseline.epoch(next(epoch))),
        }
        if small is not None and threads == 1:
            fns["read_256"] = lambda: consume(ShardBatches(small, b).epoch(next(epoch)))
        for name, row in measure(fns, args.repeats).items():
            rows[f"{name}_t{threads}"] = row
    for r in rows.values():
        r["samples"] = per_epoch
        r["samples_per_s"] = per_epoch / r["wall_s"]
        r["samples_per_cpu_s"] = per_epoch / r["cpu_s"]

    set_threads(default_threads[0])
    cv2.setNumThreads(default_threads[1])
    zarr.config.set({"threading.max_workers": None})
    reopen_images(store)
    training = train_steps(
        {"project": project, "baseline": baseline}, b, args.features, args.stacks, args.warmup_steps, args.train_steps
    )

    per_core = {
        k: rows[f"{k}_t1"]["samples_per_cpu_s"]
        for k in ("read", "read_zarr_pipeline", "read_no_checksums", "project", "baseline")
    }
    ratio = per_core["project"] / per_core["baseline"]
    ratio_wall = rows["project_t1"]["samples_per_s"] / rows["baseline_t1"]["samples_per_s"]
    report = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": info,
        "setup": {
            "samples": n,
            "samples_per_epoch": per_epoch,
            "jpeg_kb": jpeg_kb,
            "canvas": args.canvas,
            "context": store.context,
            "shard_size": args.shard_size,
            "batch_size": b,
            "input": INPUT,
            "heatmap": HEATMAP,
            "sigma": SIGMA,
            "repeats": args.repeats,
            "model": {"arch": "hourglass", "stacks": args.stacks, "blocks": 1, "features": args.features},
            "train_steps": args.train_steps,
            "warmup_steps": args.warmup_steps,
            "setup_s": setup_s,
        },
        "loaders": rows,
        "training": training,
        "per_core": per_core,
        "ratio_project_vs_baseline_per_cpu_s": ratio,
        "ratio_project_vs_baseline_wall_1thread": ratio_wall,
        "goals": {"ratio_ge_3": ratio >= 3, "read_ge_2000_per_core": per_core["read"] >= 2000},
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "runtime_s": time.perf_counter() - started,
    }
    report["markdown"] = markdown(report)
    print(report["markdown"])
    return report


def markdown(r: dict) -> str:
    s, m, L = r["setup"], r["machine"], r["loaders"]
    lines = [
        f"Command: `{r['command']}` ({r['date']}, {r['runtime_s']:.0f} s in all)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}, "
        f"OpenCV {m['opencv']}, zarr {m['zarr']}, numpy {m['numpy']}. Load average (1/5/15 min) before: "
        f"{', '.join(f'{x:.2f}' for x in r['load_before'])}; after: {', '.join(f'{x:.2f}' for x in r['load_after'])}.",
        "",
        f"{s['samples']} samples from {s['samples']} 1280x720 JPEGs (mean {s['jpeg_kb']:.0f} kB), canvas "
        f"{s['canvas']}, context {s['context']}, shard {s['shard_size']}; batch {s['batch_size']}, input "
        f"{s['input']}, heatmaps {s['heatmap']}x{s['heatmap']} sigma {s['sigma']:g}; median of {s['repeats']} "
        f"epochs of {s['samples_per_epoch']} samples each.",
        "",
        "| loader | threads | samples/s (wall) | samples per CPU-second | ms CPU/sample | load (1 min) |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "read": f"store read: `ShardBatches` alone (uint8, canvas {s['canvas']}; zarrs decoding)",
        "read_zarr_pipeline": "store read as above, decoded by zarr-python's own codec pipeline (no zarrs)",
        "read_no_checksums": "store read as the first row, from a store without chunk checksums (before crc32c)",
        "read_256": "store read, canvas 256 store (same sources)",
        "project": "**project**: `ShardBatches` + `make_batch` (augmented, 256 in / 64 targets; cv2 warp)",
        "project_torchwarp": 'project with `make_batch(warp="torch")` (grid_sample warp)',
        "baseline": "**baseline**: per-sample JPEG decode + warpAffine + numpy heatmaps",
    }
    for key in names:
        for t in (1, 2):
            if f"{key}_t{t}" not in L:
                continue
            row = L[f"{key}_t{t}"]
            lines.append(
                f"| {names[key]} | {t} | {row['samples_per_s']:,.0f} | {row['samples_per_cpu_s']:,.0f} "
                f"| {1000 / row['samples_per_cpu_s']:.2f} | {row['load1']:.2f} |"
            )
    g = r["goals"]
    lines += [
        "",
        f"Per core (samples per CPU-second, 1 thread): project / baseline = "
        f"**{r['ratio_project_vs_baseline_per_cpu_s']:.1f}x** (wall, 1 thread: "
        f"{r['ratio_project_vs_baseline_wall_1thread']:.1f}x); goal >= 3x: "
        f"{'met' if g['ratio_ge_3'] else 'NOT met'}. Store read rate {r['per_core']['read']:,.0f} samples "
        f"per CPU-second; goal >= 2,000: {'met' if g['read_ge_2000_per_core'] else 'NOT met'}. Chunk checksums "
        f"(crc32c) cost {1 - r['per_core']['read'] / r['per_core']['read_no_checksums']:.1%} of the read rate "
        f"({r['per_core']['read_no_checksums']:,.0f} without them).",
        "",
    ]
    t, model = r["training"], s["model"]
    lines += [
        f"Training: hourglass stacks {model['stacks']}, features {model['features']}, batch {s['batch_size']}, "
        f"RMSprop, torch default threads ({m['torch_default_threads']}); medians over the timed steps "
        f"(load {t['load1']:.2f}).",
        "",
        "| fed by | loader s/batch | step s (own median) | images/s (own) | images/s (pooled step "
        f"{t['pooled_step_s']:.2f} s) |",
        "|---|---|---|---|---|",
    ]
    for key in ("project", "baseline"):
        row = t[key]
        lines.append(
            f"| {key} | {row['loader_s']:.3f} | {row['step_s']:.2f} | {row['images_per_s']:.2f} "
            f"| {row['images_per_s_pooled_step']:.2f} |"
        )
    lines.append(
        f"\nTraining images/s, project / baseline: own medians "
        f"{t['project']['images_per_s'] / t['baseline']['images_per_s']:.2f}x, pooled step "
        f"{t['project']['images_per_s_pooled_step'] / t['baseline']['images_per_s_pooled_step']:.2f}x; "
        f"loader share of an iteration: project "
        f"{t['project']['loader_s'] / (t['project']['loader_s'] + t['pooled_step_s']):.1%}, baseline "
        f"{t['baseline']['loader_s'] / (t['baseline']['loader_s'] + t['pooled_step_s']):.1%}\n"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
