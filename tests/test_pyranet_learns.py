"""PyraNet learns from real pixels: PRM-B and the hourglass, trained alike on real LSP people,
both take their validation loss well below its first value and score above the mean pose.

A fitting test: the validation store holds the training people (16 of the LSP sample), so it asks
whether the model can learn to map pixels to joints at all, not how well it generalises (that
takes far more data and epochs than a test has). The mean-pose baseline (every person gets the
mean training pose in crop coordinates) scores what the crop alone gives away. PRM-B as it was
built before its initialisation was confined to the PRMs (issue 25) stayed below that baseline
here (PCK@0.2 2.0 against 6.7) while the hourglass reached 15.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.io
from helpers import settings

from pose_pipeline.core import geometry
from pose_pipeline.data.convert import convert
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.store import open_store
from pose_pipeline.evaluate import metrics
from pose_pipeline.train import loop as train_module

PEOPLE = 16
LOSS_RATIO = 0.75  # last / first validation loss; the hourglass reaches ~0.1, PRM-B ~0.55
PCK_OVER_BASELINE = 1.5  # PCK@0.2 at least this times the mean pose's; both models reach 2-3x


@pytest.fixture
def lsp_people(shared_data, tmp_path):
    """The sample's first PEOPLE people as a store (their rows of joints.mat; the images are
    read where they are)."""
    sample = shared_data / "lsp_sample"
    joints = scipy.io.loadmat(sample / "joints.mat")["joints"][:, :, :PEOPLE]
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    out = tmp_path / "lsp.zarr"
    convert(
        ConvertOptions(
            "lsp",
            tmp_path / "joints.mat",
            sample / "images",
            out,
            split="all",
            canvas_size=96,
            workers=1,
            progress=False,
        )
    )
    return out


def mean_pose_score(store) -> float:
    """PCK@0.2 of the mean visible pose in crop coordinates, mapped back through each crop."""
    canvas, visible = store.keypoints_in_canvas(), store.visible.astype(bool)
    mean = np.stack([canvas[visible[:, j], j].mean(axis=0) for j in range(canvas.shape[1])])
    preds = np.stack([geometry.apply(geometry.invert(a), mean) for a in store.affine])
    preds = geometry.array_to_annotated(preds, store.pixel_origin)
    metric, score = metrics.validation_score(preds, store.keypoints, store.visible, store.head_size, store.joint_set)
    assert metric == "PCK@0.2"
    return score


def train_curve(model: dict, store, out) -> list[tuple[float, float]]:
    """(val_loss, val_score) per epoch of a small model trained and validated on `store`."""
    run = settings(
        epochs=75,
        batch_size=4,
        optimizer="adam",
        lr=5e-3,
        schedule={"type": "cosine"},
        sigma=1.0,
        augmentation={"scale": 0.0, "rotation": 0.0, "flip": False, "color": 0.0},
        checkpoint_every=1000,
    )
    run["model"] = model
    train_module.train(run, store, store, out, device="cpu", progress=False)
    with open(out / "log.csv", newline="") as f:
        return [(float(r["val_loss"]), float(r["val_score"])) for r in csv.DictReader(f)]


@pytest.mark.slow  # two models, 300 steps each
def test_pyranet_learns_real_people_as_the_hourglass_does(lsp_people, tmp_path):
    baseline = mean_pose_score(open_store(lsp_people))
    shape = {"stacks": 1, "blocks": 1, "features": 32}
    for model in ({"arch": "hourglass", **shape}, {"arch": "pyranet", "prm": "B", **shape}):
        curve = train_curve(model, lsp_people, tmp_path / model["arch"])
        (first_loss, _), (last_loss, last_score) = curve[0], curve[-1]
        assert last_loss < LOSS_RATIO * first_loss, (model["arch"], curve)
        assert last_score > PCK_OVER_BASELINE * baseline, (model["arch"], baseline, curve)
