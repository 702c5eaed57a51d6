"""Put the demo's PCKh in context: a mean-pose baseline on the same validation store.

The baseline predicts, for every validation person, the average training pose in crop
coordinates (the crop is centred and scaled on the annotated person box, so this is the best
guess that ignores the image). Whatever the trained model scores above it is learnt from pixels.

    python benchmarks/demo_baseline.py --train results/stores/demo/train.zarr \
        --val results/stores/demo/val.zarr [--preds results/predict/demo/preds.mat]
"""

from __future__ import annotations

import argparse

import numpy as np

from pose_pipeline.core import geometry
from pose_pipeline.data.store import open_store
from pose_pipeline.evaluate import metrics
from pose_pipeline.inference.prediction_files import read_predictions


def mean_pose_predictions(train, val) -> np.ndarray:
    """(N,J,2) original-image predictions: the mean visible training pose, per validation crop."""
    canvas = train.keypoints_in_canvas()
    visible = train.visible.astype(bool)
    mean = np.stack([canvas[visible[:, j], j].mean(axis=0) for j in range(canvas.shape[1])])
    # Crop sizes may differ between the stores: express the mean pose as a fraction of the crop.
    mean = mean / train.canvas_size * val.canvas_size
    preds = np.stack([geometry.apply(geometry.invert(a), mean) for a in val.affine])
    return geometry.array_to_annotated(preds, val.pixel_origin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--preds", help="the trained model's predictions (.mat or .csv) to compare")
    args = parser.parse_args()
    train, val = open_store(args.train), open_store(args.val)
    rows = {"mean pose (baseline)": mean_pose_predictions(train, val)}
    if args.preds:
        rows["trained model"] = read_predictions(args.preds, joints=val.joint_set)
    groups = None
    for name, preds in rows.items():
        table = metrics.mpii_pckh_table(preds, val.keypoints, val.visible, val.head_size, val.joint_set)
        if groups is None:
            groups = list(table["PCKh@0.5"])
            print("| predictor | metric | " + " | ".join(groups) + " |")
            print("|---|---|" + "---|" * len(groups))
        for metric in ("PCKh@0.5", "PCKh@0.1"):
            print(f"| {name} | {metric} | " + " | ".join(f"{table[metric][g]:.2f}" for g in groups) + " |")


if __name__ == "__main__":
    main()
