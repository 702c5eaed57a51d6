"""Test helpers shared by the test modules (imported as `helpers`; tests/ is on sys.path):
tiny stores and checkpoints, settings, Snakemake runs, custom COCO files, image probes."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


SHARED = REPO_ROOT.parent / "shared"


def expected_crop(image_path: Path, affine, canvas_size: int):
    """The crop `convert` should store, from OpenCV's own reading of the image: the JPEG decoded
    at 1/f of its size (f the largest the crop allows, `jpeg_reduction`), the affine composed
    with that scaling; f = 1 (a full decode) for other images."""
    import cv2

    from pose_pipeline.core import geometry
    from pose_pipeline.data.images import jpeg_reduction

    reduce = jpeg_reduction(affine) if image_path.suffix.lower() in (".jpg", ".jpeg") else 1
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    image = cv2.cvtColor(cv2.imread(str(image_path), flags.get(reduce, cv2.IMREAD_REDUCED_COLOR_8)), cv2.COLOR_BGR2RGB)
    return geometry.warp_image(image, geometry.compose(affine, geometry.resize_affine(1, reduce)), canvas_size)


def box_of_person(center_array, scale) -> list[float]:
    """The [x, y, w, h] box that the COCO rule (infer_inputs) turns back into this centre and
    scale: a square of side 200 x scale / 1.25 (the rule pads by 1.25)."""
    side = 200.0 * float(scale) / 1.25
    return [float(center_array[0]) + 0.5 - side / 2, float(center_array[1]) + 0.5 - side / 2, side, side]


def mpii_sample_stores(shared_data: Path, tmp_path: Path, canvas_size: int = 128) -> dict:
    """The real MPII sample's five people converted with the reduced decode (key True) and with
    the full decode (False); at canvas 128 they are large against the crop: reductions 4 and 8."""
    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions
    from pose_pipeline.data.store import open_store

    mpii = shared_data / "mpii_sample"
    stores = {}
    for reduced in (True, False):
        out = tmp_path / f"reduced_{reduced}.zarr"
        convert(
            ConvertOptions(
                "mpii",
                mpii / "valid.h5",
                mpii / "images",
                out,
                split="val",
                canvas_size=canvas_size,
                on_bad_sample="skip",
                workers=1,
                progress=False,
                reduced_decode=reduced,
            )
        )
        stores[reduced] = open_store(out)
    return stores


def make_random_store(
    path, num_samples: int = 24, canvas_size: int = 64, shard_size: int = 8, seed: int = 0, occluded: bool = False
):
    """A small MPII-layout store of random crops and poses (for mechanics, not accuracy); with
    `occluded`, about a third of its labelled joints flagged occluded, else no `occluded` array
    (as a store converted before it existed)."""

    from pose_pipeline.core import geometry
    from pose_pipeline.core.joints import MPII
    from pose_pipeline.data.store_writer import StoreWriter

    rng = np.random.default_rng(seed)
    writer = StoreWriter(
        path,
        num_samples,
        MPII,
        canvas_size,
        shard_size,
        attrs={
            "dataset": "random",
            "split": "train",
            "format": "mpii",
            "pixel_origin": 1.0,
            "context": 1.5,
            "converter": {},
            "sources": [{"file": "random", "sha256": "0"}],
        },
    )
    images = rng.integers(0, 256, (num_samples, canvas_size, canvas_size, 3), dtype=np.uint8)
    for start in range(0, num_samples, shard_size):
        writer.write_block(images[start : start + shard_size])
    center = rng.uniform(100, 200, (num_samples, 2))
    scale = rng.uniform(0.8, 1.2, num_samples)
    affine = geometry.crop_affine(center - 1.0, 200 * scale * 1.5, canvas_size)
    keypoints = center[:, None] + rng.uniform(-80, 80, (num_samples, MPII.num_joints, 2)) * scale[:, None, None]
    visible = (rng.random((num_samples, MPII.num_joints)) > 0.1).astype(np.uint8)
    hidden = {"occluded": visible * (rng.random(visible.shape) < 0.3).astype(np.uint8)} if occluded else {}
    writer.set_metadata(
        keypoints=keypoints.astype(np.float32),
        visible=visible,
        **hidden,
        affine=affine,
        center=center,
        scale=scale,
        head_size=np.full(num_samples, 30.0),
        image_name=np.array([f"{i:04d}.jpg" for i in range(num_samples)], dtype=str),
        source_index=np.stack([np.arange(num_samples), np.zeros(num_samples, int)], 1),
    )
    return writer.commit()


def random_checkpoint(path, converter: dict | None, joints=None):
    """A small random hourglass saved as this project's checkpoint, recording `converter` (None:
    no record, as PyTorch-Pose's and older checkpoints), of `joints` (default MPII's). Seeded: the
    same canvas always gives the same keypoints."""
    import torch

    from pose_pipeline.core.joints import MPII
    from pose_pipeline.models import build_model

    joints = joints or MPII
    torch.manual_seed(0)
    config = {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16, "joints": joints.num_joints}
    record = {
        "model_config": config,
        "joint_set": joints.to_dict(),
        "state_dict": build_model(config, joints.num_joints).state_dict(),
        "input_size": 64,
    }
    torch.save(record if converter is None else {**record, "converter": converter}, path)
    return path


def settings(**training) -> dict:
    """The experiment settings of a tiny hourglass (1 stack, 16 features, 64 px input) with
    `training` overrides, for the training tests."""
    from pose_pipeline.config.schema import experiment_settings, validate_config

    config = validate_config(
        {
            "datasets": {"d": {"format": "mpii", "annotations": "a.mat", "images": "img"}},
            "experiments": {
                "e": {
                    "dataset": "d",
                    "model": {"arch": "hourglass", "stacks": 1, "features": 16},
                    "training": {
                        "epochs": 2,
                        "batch_size": 4,
                        "input_size": 64,
                        "heatmap_size": 16,
                        "checkpoint_every": 2,
                        "num_threads": 1,
                        **training,
                    },
                }
            },
        }
    )
    return experiment_settings(config, "e")


def write_training_log(path: Path, rows: list[tuple]) -> Path:
    """A training log written by train's own writer (`write_log`), so that readers see what
    train writes: each row (epoch, step, train_loss, val_loss, val_score, lr, images_per_s,
    elapsed_s), "" for a value not measured; val_metric PCKh@0.5 where a row has a val_score."""
    from pose_pipeline.train.log import write_log

    names = ("epoch", "step", "train_loss", "val_loss", "val_score", "lr", "images_per_s", "elapsed_s")
    rows = [dict(zip(names, row), val_metric="PCKh@0.5" if row[4] != "" else "") for row in rows]
    write_log(path, rows)
    return path


# A whole demo DAG in a minute: tens of images, a 1-stack model, one epoch.
TINY = {
    "default_experiments": ["tiny"],
    "device": "cpu",
    "plots": {"skeleton_count": 4, "dpi": 40},
    "datasets": {
        "demo": {
            "format": "mpii",
            "synthetic": {"seed": 3, "train": 24, "val": 8, "test": 4, "image_size": 96},
            "canvas_size": 96,
            "shard_size": 8,
        }
    },
    "experiments": {
        "tiny": {
            "dataset": "demo",
            "model": {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16},
            "training": {"epochs": 1, "batch_size": 8, "input_size": 64, "heatmap_size": 16, "num_threads": 1},
            "evaluation": {"batch_size": 8},
        }
    },
}


# The published predictions of the shared MPII sample draw the reference curve when present.
REFERENCE = SHARED / "data" / "mpii_sample" / "detections_our_format.mat"


if REFERENCE.exists():
    TINY["datasets"]["demo"]["reference_predictions"] = str(REFERENCE)


OUTPUTS = [
    "results/data/demo/mpii_release.mat",
    "results/stores/demo/train.zarr",
    "results/stores/demo/val.zarr",
    "results/train/tiny/model.pt",
    "results/train/tiny/log.csv",
    "results/predict/tiny/preds.mat",
    "results/predict/tiny/preds.csv",
    "results/pckh/tiny.csv",
    "results/pckh/tiny.json",
    "results/plots/tiny/curves.png",
    "results/plots/tiny/pckh.png",
    "results/plots/tiny/skeletons.png",
    "results/plots/tiny/joints.png",
    "results/plots/tiny/examples.png",
    "results/summary.csv",
    "results/plots/pckh_all.png",
] + (["results/pckh/reference/demo.json"] if REFERENCE.exists() else [])


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line of the real `snakemake` on this checkout's Snakefile in `workdir`."""
    import sys

    where = ["--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir)]
    return [sys.executable, "-m", "snakemake", *where, "--cores", "2", *args]


def snakemake(workdir: Path, *args: str) -> str:
    """Run the real `snakemake` on this checkout's Snakefile in `workdir`; its output, or an
    AssertionError with the output and the rules' logs."""
    import subprocess

    done = subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        logs = "".join(f"\n--- {p}\n{p.read_text()[-3000:]}" for p in sorted(workdir.glob("results/logs/*/*.log")))
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{output[-6000:]}{logs}")
    return output


def copy_run(source: Path, dest: Path, parts: tuple[str, ...] | None = None) -> Path:
    """A copy of the workflow folder `source` in `dest`, modification times kept so that Snakemake
    finds it up to date: all of it, or (with `parts`, folders under it) its config, Snakemake's
    records of what built each output and those parts only. For a test that mutates a shared run."""
    import shutil

    for part in ("",) if parts is None else ("config", ".snakemake/metadata", *parts):
        shutil.copytree(source / part, dest / part, symlinks=True, dirs_exist_ok=True)
    return dest


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table ({} when nothing is to be done)."""
    import re

    if "Nothing to be done" in dry_run_output:
        return {}
    table = dry_run_output.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match or match.group(1) == "total":
            break
        jobs[match.group(1)] = int(match.group(2))
    return jobs


def write_config(workdir: Path, config: dict) -> None:
    import yaml

    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def mean_cell(preds_mat, store_path, metric: str) -> str:
    """The Mean cell a score CSV must hold for the predictions in `preds_mat` against the
    store, worked out here from the metrics' definitions (not through pose_pipeline.evaluate.metrics):
    per joint, the percent of annotated joints whose distance to the ground truth is below
    0.5 head sizes ("pckh", strict; pelvis and thorax left out of the mean), Mean the
    unweighted mean of those rates, empty when a rate is undefined; or ("pck", eval_pck.m)
    the percent of all points of all samples at most 0.2 torso sizes (left shoulder to right
    hip) from the ground truth (FLIC: nose, the shoulders' midpoint and the 8 limb joints), where
    every point and torso joint is annotated; else of the annotated points of the samples whose
    torso joints are annotated (a missing joint's position is a placeholder). 2 decimals."""
    import scipy.io

    from pose_pipeline.data.store import open_store

    store = open_store(store_path)
    preds = scipy.io.loadmat(preds_mat)["preds"]
    gt, annotated = store.keypoints.astype(np.float64), store.visible == 1
    names = store.joint_set.joints
    distance = np.linalg.norm(preds - gt, axis=-1)
    if metric == "pckh":
        correct = distance / store.head_size[:, None] < 0.5
        joints = [j for j, name in enumerate(names) if name not in ("pelvis", "thorax")]
    else:
        torso = np.linalg.norm(gt[:, names.index("l_shoulder")] - gt[:, names.index("r_hip")], axis=-1)
        torso_annotated = annotated[:, [names.index("l_shoulder"), names.index("r_hip")]].all(axis=1)
        if store.joint_set.name == "flic":
            gt = np.where(annotated[..., None], gt, np.nan)

            def ten(points):  # nose, neck, the 8 limb joints (FLIC's first 8)
                return np.concatenate([points[:, [10]], (points[:, [0]] + points[:, [3]]) / 2, points[:, :8]], axis=1)

            distance = np.linalg.norm(ten(preds) - ten(gt), axis=-1)
            annotated = ten(annotated[..., None].astype(float))[..., 0] == 1  # the neck: both shoulders
        counted = annotated & torso_annotated[:, None]  # every point where none is missing
        with np.errstate(divide="ignore", invalid="ignore"):
            hits = (distance / torso[:, None] <= 0.2) & counted
        return f"{100.0 * hits.sum() / counted.sum():.2f}"
    counted = annotated.sum(axis=0)[joints]
    if (counted == 0).any():
        return ""
    rates = 100.0 * (correct & annotated).sum(axis=0)[joints] / counted
    return f"{rates.mean():.2f}"


def loss_exploding_at(real_loss, calls: tuple, factor: float):
    """`real_loss`, multiplied by `factor` (inf, nan) on the given 1-based calls."""
    count = []

    def loss(outputs, targets, weights, *more):  # more: the foreground weight, where the loss takes it
        count.append(1)
        value = real_loss(outputs, targets, weights, *more)
        return value * factor if len(count) in calls else value

    return loss


# A COCO-format file with its own skeleton, made from the real COCO sample: 9 of COCO's 17
# keypoints, nose renamed "head", in another order, with a skeleton of its own (1-based).
CUSTOM_KEYPOINTS = {
    "head": "nose",
    "right_shoulder": "right_shoulder",
    "left_shoulder": "left_shoulder",
    "left_elbow": "left_elbow",
    "right_elbow": "right_elbow",
    "left_wrist": "left_wrist",
    "right_wrist": "right_wrist",
    "left_hip": "left_hip",
    "right_hip": "right_hip",
}


CUSTOM_SKELETON = [[1, 2], [1, 3], [2, 3], [3, 4], [4, 6], [2, 5], [5, 7], [3, 8], [2, 9], [8, 9]]


# COCO's sigmas of the joints kept, in the custom order
CUSTOM_SIGMAS = [0.026, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107]


def write_custom_coco(shared_data: Path, path: Path, category_name: str = "upper_body") -> dict:
    """The COCO sample reduced to `CUSTOM_KEYPOINTS` (each annotation's keypoints and
    num_keypoints rewritten), written to `path`; returns the JSON written."""
    import json

    data = json.loads((shared_data / "coco_sample" / "person_keypoints_sample.json").read_text())
    category = data["categories"][0]
    source = [category["keypoints"].index(name) for name in CUSTOM_KEYPOINTS.values()]
    for ann in data["annotations"]:
        ann["keypoints"] = [v for k in source for v in ann["keypoints"][3 * k : 3 * k + 3]]
        ann["num_keypoints"] = sum(1 for v in ann["keypoints"][2::3] if v > 0)
    category.update(name=category_name, keypoints=list(CUSTOM_KEYPOINTS), skeleton=CUSTOM_SKELETON)
    path.write_text(json.dumps(data))
    return data


def blob_image(points: np.ndarray, size=(720, 1280), sigma=20.0) -> np.ndarray:
    """Grey Gaussian blobs on a dark ground: their centroids show where a crop put each point."""
    y, x = np.mgrid[: size[0], : size[1]]
    image = np.full(size, 20.0)
    for px, py in points:
        image += 220 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def centroid(crop: np.ndarray, at: np.ndarray, radius: int) -> np.ndarray:
    x0, y0 = np.round(at).astype(int) - radius
    patch = crop[y0 : y0 + 2 * radius + 1, x0 : x0 + 2 * radius + 1, 0].astype(float) - 20
    y, x = np.mgrid[: patch.shape[0], : patch.shape[1]]
    return np.array([(x * patch).sum(), (y * patch).sum()]) / patch.sum() + [x0, y0]


# ------------------------------------------------------------------ real samples

TINY_MODEL = {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16}


def real_samples_config(shared_data) -> dict:
    """A config training a tiny model on each real sample (LSP, COCO, FLIC) for one epoch."""
    lsp, coco, flic = shared_data / "lsp_sample", shared_data / "coco_sample", shared_data / "flic_sample"
    coco_json = str(coco / "person_keypoints_sample.json")
    experiment = {
        "model": TINY_MODEL,
        "evaluation": {"batch_size": 8},
        "training": {"epochs": 1, "batch_size": 4, "input_size": 64, "heatmap_size": 16, "num_threads": 1},
    }
    return {
        "default_experiments": ["lsp_tiny", "coco_tiny", "flic_tiny"],
        "device": "cpu",
        "plots": {"skeleton_count": 4, "dpi": 40},
        # A sample file is no standard split: LSP's last 60 images validate (val_last); with
        # val_annotations (COCO here) each file is taken whole.
        "datasets": {
            "lsp": {
                "format": "lsp",
                "annotations": str(lsp / "joints.mat"),
                "images": str(lsp / "images"),
                "val_last": 60,
                "canvas_size": 96,
                "shard_size": 32,
            },
            "coco": {
                "format": "coco",
                "annotations": coco_json,
                "images": str(coco / "images"),
                "val_annotations": coco_json,
                "canvas_size": 96,
                "shard_size": 8,
            },
            # FLIC's own split: istrain (15 stand-in examples) and istest (5)
            "flic": {
                "format": "flic",
                "annotations": str(flic / "examples.mat"),
                "images": str(flic / "images"),
                "canvas_size": 96,
                "shard_size": 8,
            },
        },
        "experiments": {
            "lsp_tiny": {"dataset": "lsp", **experiment},
            "coco_tiny": {"dataset": "coco", **experiment},
            "flic_tiny": {"dataset": "flic", **experiment},
        },
    }


# ------------------------------------------------------------------ COCO


def cocoeval_ap(annotations, results) -> float:
    """AP of `results` (a path or a list) by COCOeval as the papers' code runs it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        evaluator = COCOeval(truth, truth.loadRes(results if isinstance(results, list) else str(results)), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return 100.0 * evaluator.stats[0]


# ------------------------------------------------------------------ DDP

DDP_ENV = {  # training subprocesses: this checkout first, one OpenMP thread
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
}


def state_dict(path) -> dict:
    import torch

    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=atol, msg=key)


# One rank of the comparison: BatchNorm replaced by a per-sample norm. SyncBatchNorm refuses
# CPU tensors, so on gloo each rank normalises with its own half-batch statistics, which
# legitimately differ from the combined batch's; a per-sample norm has no batch statistics,
# so everything else (which samples, their augmentation, loss averaging, gradient
# all-reduce, optimiser) must match exactly for the weights to agree.
WITHOUT_BATCH_STATISTICS = """
import torch
from pose_pipeline.train import setup as training_setup

real_build = training_setup.build_model

def build_without_batch_statistics(config, joints):
    model = real_build(config, joints)
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], torch.nn.GroupNorm(1, module.num_features))
    return model

training_setup.build_model = build_without_batch_statistics
"""
RANK_SCRIPT = (
    WITHOUT_BATCH_STATISTICS
    + """
import sys
from pose_pipeline import cli

sys.exit(cli.main(sys.argv[1:]))
"""
)
