"""Learning on real photos: the `lsp_small` recipe on the 300 LSP sample photos, through the workflow.

The sample's joints.mat is split once and for all by `datasets.lsp.val_last`: images 1-240
train, 241-300 validate. A sweep over the shipped experiment `lsp_small` (config/config.yaml)
trains every model family and seed asked for with that recipe, through `snakemake` (convert,
train, predict with flip test, score), so what is measured is what a user runs:

    PYTHONPATH=. python benchmarks/lsp_small.py --seeds 0,1,2 --archs hourglass,pyranet

Prints, per validated epoch, each run's validation PCK@0.2 (labelled joints, by torso size,
without flip test: the training log's `val_score`) and each model's mean and spread over the
seeds; then each run's final score (flip test, results/pckh/<run>.csv) and training time; and
two baselines on the same 60 people: the mean pose (every person gets the average training pose
in crop coordinates: what the person box alone gives away) and chance (joints drawn uniformly
over the crop the network sees). `--set training.lr=0.001` (repeatable, YAML values) changes the
recipe for a trial; a trial's runs are named after what it changes, so trials never share outputs.
Runs whose outputs are up to date are read, not retrained (Snakemake), so the script can be
rerun to add seeds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo_baseline import mean_pose_predictions  # noqa: E402
from machine import cpu_model  # noqa: E402

from pose_pipeline.core import geometry  # noqa: E402
from pose_pipeline.data.store import open_store  # noqa: E402
from pose_pipeline.evaluate import metrics  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "lsp_sample"
VAL_LAST = 60  # images 241-300 validate


def sweep_config(sweep: str, archs: list[str], seeds: list[int], changes: dict) -> dict:
    """The config added to config/config.yaml: the sample as dataset `lsp`, and a sweep of
    `lsp_small` (with the trial's changes as single-value axes) over model family and seed."""
    grid = {key: [value] for key, value in changes.items()}
    grid.update({"model.arch": archs, "training.seed": seeds})
    return {
        "datasets": {
            "lsp": {
                "format": "lsp",
                "annotations": str(SAMPLE / "joints.mat"),
                "images": str(SAMPLE / "images"),
                "val_last": VAL_LAST,
            }
        },
        "sweeps": {sweep: {"base": "lsp_small", "grid": grid}},
    }


def read_curve(log_path: Path) -> list[tuple[int, float, float]]:
    """(epoch, val_score, elapsed_s) of each validated epoch of a log.csv."""
    if not log_path.is_file():
        return []
    with open(log_path, newline="") as f:
        return [
            (int(r["epoch"]), float(r["val_score"]), float(r["elapsed_s"])) for r in csv.DictReader(f) if r["val_score"]
        ]


def baselines(train_store: Path, val_store: Path, seed: int = 0) -> dict[str, float]:
    """PCK@0.2 of the mean training pose (`demo_baseline.mean_pose_predictions`), and of joints
    uniform over each validation crop."""
    train, val = open_store(train_store), open_store(val_store)
    # The network sees the middle canvas / context of the canvas: chance is uniform over that.
    side = val.canvas_size / val.context
    low = (val.canvas_size - side) / 2
    uniform = np.random.default_rng(seed).uniform(low, low + side, size=(len(val), val.joint_set.num_joints, 2))
    chance = np.stack([geometry.apply(geometry.invert(a), p) for a, p in zip(val.affine, uniform)])
    predictions = {
        "mean pose": mean_pose_predictions(train, val),
        "chance (uniform)": geometry.array_to_annotated(chance, val.pixel_origin),
    }
    return {
        name: metrics.validation_score(preds, val.keypoints, val.visible, val.head_size, val.joint_set)[1]
        for name, preds in predictions.items()
    }


def print_curves(curves: dict[str, dict[int, list]]) -> None:
    """Per validated epoch: every run's PCK@0.2, then each model's mean and spread (max - min)."""
    header = ["epoch"]
    for arch, runs in curves.items():
        header += [f"{arch} s{seed}" for seed in runs] + [f"{arch} mean", f"{arch} spread"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    epochs = sorted({e for runs in curves.values() for curve in runs.values() for e, _, _ in curve})
    for epoch in epochs:
        cells = [str(epoch)]
        for runs in curves.values():
            values = {seed: s for seed, curve in runs.items() for e, s, _ in curve if e == epoch}
            cells += [f"{values[seed]:.1f}" if seed in values else "" for seed in runs]
            v = list(values.values())
            cells += [f"{statistics.mean(v):.1f}", f"{max(v) - min(v):.1f}"] if v else ["", ""]
        print("| " + " | ".join(cells) + " |")


def parse_changes(items: list[str]) -> dict:
    changes = {}
    for item in items:
        key, _, value = item.partition("=")
        changes[key] = yaml.safe_load(value)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--archs", default="hourglass,pyranet")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE", help="e.g. training.lr=0.001")
    parser.add_argument("--cores", default="2")
    args = parser.parse_args()
    if not (SAMPLE / "joints.mat").is_file():
        sys.exit(f"{SAMPLE} is absent: this benchmark needs the shared LSP sample")
    changes = parse_changes(args.set)
    tag = hashlib.sha256(repr(sorted(changes.items())).encode()).hexdigest()[:6] if changes else "recipe"
    sweep = f"lsp_small_{tag}"
    archs, seeds = args.archs.split(","), [int(s) for s in args.seeds.split(",")]
    out = ROOT / "results" / "benchmarks" / "lsp_small"
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / f"{sweep}.yaml"
    config_file.write_text(yaml.safe_dump(sweep_config(sweep, archs, seeds, changes), sort_keys=False))
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); sweep {sweep}: lsp_small {changes or ''}", flush=True)
    start = time.perf_counter()
    target = f"results/sweeps/{sweep}.csv"
    cmd = ["snakemake", "--cores", args.cores, target, "--configfile", str(config_file)]
    with open(out / f"{sweep}.snakemake.log", "w") as log:
        if subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"snakemake failed: see {log.name}")
    print(f"workflow: {time.perf_counter() - start:.0f} s (its log: {log.name})", flush=True)

    with open(ROOT / target, newline="") as f:
        points = list(csv.DictReader(f))
    curves: dict[str, dict[int, list]] = {arch: {} for arch in archs}
    finals: list[str] = []
    for point in points:
        name = point["experiment"]
        arch, seed = point["model.arch"], int(point["training.seed"])
        curves[arch][seed] = read_curve(ROOT / "results" / "train" / name / "log.csv")
        seconds = curves[arch][seed][-1][2] if curves[arch][seed] else float("nan")
        finals.append(
            f"{arch} seed {seed}: {point['metric']} {float(point['score']):.1f}, trained {seconds / 60:.1f} min"
        )
    print_curves(curves)
    print("\n".join(finals))
    stores = [ROOT / "results" / "stores" / "lsp" / f"{s}.zarr" for s in ("train", "val")]
    print("; ".join(f"{name}: PCK@0.2 {score:.1f}" for name, score in baselines(*stores).items()))


if __name__ == "__main__":
    main()
