"""`infer` from raw JPEGs against `predict` on a converted store: the demo model, same people,
same run.

    PYTHONPATH=. python benchmarks/infer_speed.py [--images 96] [--repeats 3] [--threads 2]

Generates --images demo validation images (256 px, `demo-data`), converts them (canvas 192,
as the demo dataset), and builds the demo experiment's model (config/config.yaml `demo`; since
`37cbf3b` a 1-stack, 1-block hourglass, 64 features, 128 px input; untrained weights, which cost
the same time), saved as a checkpoint. Then, interleaved --repeats times (the order reversed every other repeat),
with flip test and batch 32 on the CPU:

(a) predict: `inference.predict_store` on the store (the `predict` stage's work);
(b) infer:   `infer.infer` on the raw JPEGs with each person's box (the store's people),
             outputs written (the `infer` stage's work less process start-up);
(c) decode:  what (b) does that (a) does not, alone: read + decode each JPEG and cut its canvas
             as infer cuts it (`images.SourceImage.canvas`, the store's reduced decode),
             against reading the same canvases from the store; and loading the checkpoint, which
             (b) does once per call.

Prints images/s (wall) and images per CPU-second of this process for each; the median of the
repeats. The load average is printed, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_model  # noqa: E402

from pose_pipeline.config.schema import experiment_settings, load_config  # noqa: E402
from pose_pipeline.core import geometry  # noqa: E402
from pose_pipeline.core.codec import HeatmapCodec  # noqa: E402
from pose_pipeline.data.convert import convert  # noqa: E402
from pose_pipeline.data.convert_options import ConvertOptions  # noqa: E402
from pose_pipeline.data.demo.generate import generate  # noqa: E402
from pose_pipeline.data.images import SourceImage  # noqa: E402
from pose_pipeline.data.store import open_store  # noqa: E402
from pose_pipeline.inference.engine import predict_store  # noqa: E402
from pose_pipeline.inference.infer import infer  # noqa: E402
from pose_pipeline.inference.infer_options import InferOptions  # noqa: E402
from pose_pipeline.models import build_model  # noqa: E402
from pose_pipeline.train.state import model_record, save_checkpoint  # noqa: E402

CANVAS, BATCH = 192, 32


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def prepare(folder: Path, images: int) -> tuple[Path, Path, Path, Path]:
    """Demo images, their store, a boxes CSV of the store's people and a demo-model checkpoint."""
    generate(folder / "demo", seed=0, train=1, val=images, image_size=256, progress=False)
    store_path = folder / "val.zarr"
    convert(
        ConvertOptions(
            "mpii",
            folder / "demo/mpii_release.mat",
            folder / "demo/images",
            store_path,
            split="val",
            val_split=folder / "demo/val_split.mat",
            canvas_size=CANVAS,
            workers=1,
            progress=False,
        )
    )
    store = open_store(store_path)
    center = geometry.annotated_to_array(store.center, store.pixel_origin)
    boxes = folder / "boxes.csv"
    with open(boxes, "w", newline="") as f:
        rows = csv.writer(f)
        for name, c, s in zip(store.image_name, center, store.scale):
            side = 200.0 * s / 1.25  # the COCO rule's inverse: the same centre and scale
            rows.writerow([name, c[0] + 0.5 - side / 2, c[1] + 0.5 - side / 2, side, side])
    settings = experiment_settings(load_config(ROOT / "config/config.yaml"), "demo")
    torch.manual_seed(0)
    model = build_model(settings["model"], store.joint_set.num_joints)
    codec = HeatmapCodec.from_settings(settings["training"])
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint, model_record(model, settings, store, codec, 0, 0))
    return store_path, boxes, checkpoint, folder / "demo/images"


def decode_only(store, images_dir: Path) -> None:
    """Each person's canvas cut from its JPEG as infer cuts it (`SourceImage.canvas`, with the
    decode the store was converted with)."""
    center = geometry.annotated_to_array(store.center, store.pixel_origin)
    reduced = bool((store.attrs.get("converter") or {}).get("reduced_decode", False))
    for i, name in enumerate(store.image_name):
        affine = geometry.person_canvas_affine(center[i], store.scale[i], CANVAS, store.context)
        canvas, problem = SourceImage(images_dir / name).canvas(affine, CANVAS, reduced)
        assert canvas is not None, problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store_path, boxes, checkpoint, images_dir = prepare(Path(tmp), args.images)
        store = open_store(store_path)
        settings = experiment_settings(load_config(ROOT / "config/config.yaml"), "demo")
        codec = HeatmapCodec(settings["training"]["input_size"], blur_sigma=1.0)
        from pose_pipeline.models import load_model

        model = load_model(checkpoint)
        runs = {
            "predict (store)": lambda: predict_store(model, store, codec, True, BATCH, torch.device("cpu")),
            "infer (raw JPEGs + boxes)": lambda: infer(
                InferOptions(
                    checkpoint,
                    images_dir,
                    Path(tmp) / "out",
                    boxes=boxes,
                    batch_size=BATCH,
                    canvas_size=CANVAS,
                    context=store.context,
                    device="cpu",
                    progress=False,
                )
            ),
            "checkpoint load only (infer's fixed cost)": lambda: load_model(checkpoint),
            "store read only": lambda: store.images(0, len(store)),
            "JPEG decode + canvas cut only": lambda: decode_only(store, images_dir),
        }
        times = {name: [] for name in runs}
        loads = [os.getloadavg()[0]]
        for repeat in range(args.repeats):
            order = list(runs.items())
            for name, fn in order if repeat % 2 == 0 else order[::-1]:  # ABBA: no run always goes first
                times[name].append(timed(fn))
            loads.append(os.getloadavg()[0])
    n = args.images
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, torch threads {args.threads}; {n} images, "
        f"median of {args.repeats}; load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print("| run | wall s | images/s | images per CPU-second | ms per image (wall) |")
    print("|---|---|---|---|---|")
    for name, samples in times.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        print(f"| {name} | {wall:.2f} | {n / wall:.1f} | {n / cpu:.1f} | {1000 * wall / n:.2f} |")
    # paired within each repeat: what infer costs beyond predict, against what decoding costs beyond a store read
    infer_runs, predict_runs = times["infer (raw JPEGs + boxes)"], times["predict (store)"]
    decode_runs, read_runs = times["JPEG decode + canvas cut only"], times["store read only"]
    for k, what in ((0, "wall"), (1, "CPU")):
        extra = statistics.median(1000 * (a[k] - b[k]) / n for a, b in zip(infer_runs, predict_runs))
        decode = statistics.median(1000 * (a[k] - b[k]) / n for a, b in zip(decode_runs, read_runs))
        ratio = statistics.median(a[k] / b[k] for a, b in zip(infer_runs, predict_runs))
        print(
            f"{what}: infer - predict = {extra:+.2f} ms/image (infer/predict {ratio:.3f}); "
            f"decode + cut - store read = {decode:+.2f} ms/image"
        )


if __name__ == "__main__":
    main()
