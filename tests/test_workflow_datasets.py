"""The DAG on the real LSP, FLIC and COCO samples: conversion, training, the dataset's own
metric (LSP and FLIC PCK@0.2 by torso as eval_pck.m, COCO OKS AP), plots and the summary,
through the real `snakemake`."""

from __future__ import annotations

import csv

import pytest
from helpers import mean_cell, real_samples_config, snakemake, write_config

from pose_pipeline.data.store import open_store

pytestmark = pytest.mark.slow


def rows(path) -> list[dict]:
    """A CSV's rows, its leading comment lines (preds.csv's store fingerprint) skipped."""
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def test_lsp_coco_and_flic_experiments_run_end_to_end(shared_data, tmp_path):
    write_config(tmp_path, real_samples_config(shared_data))
    snakemake(tmp_path)
    check_flic(tmp_path)

    for split in ("train", "val"):  # the COCO file whole; the LSP sample split by val_last
        assert open_store(tmp_path / f"results/stores/coco/{split}.zarr").attrs["split"] == "all"
    lsp_stores = [open_store(tmp_path / f"results/stores/lsp/{split}.zarr") for split in ("train", "val")]
    assert [(len(s), s.attrs["split"]) for s in lsp_stores] == [(240, "train"), (60, "val")]
    lsp = rows(tmp_path / "results/pckh/lsp_tiny.csv")
    assert [r["metric"] for r in lsp][:3] == ["PCK@0.2", "PCK@0.1", "AUC@0.2"]
    # the LSP table is PCK@0.2 by torso size of this run's predictions against its val store
    assert lsp[0]["Mean"] != "" and lsp[0]["Mean"] == mean_cell(
        tmp_path / "results/predict/lsp_tiny/preds.mat", tmp_path / "results/stores/lsp/val.zarr", "pck"
    )
    coco = rows(tmp_path / "results/pckh/coco_tiny.csv")
    assert [r["metric"] for r in coco][:3] == ["AP", "AP50", "AP75"]
    assert "60 samples" in (tmp_path / "results/logs/convert/lsp_val.log").read_text()
    # training validated with the dataset's own metric (LSP and COCO have no head boxes)
    for name in ("lsp_tiny", "coco_tiny", "flic_tiny"):
        assert "val PCK@0.2" in (tmp_path / f"results/logs/train/{name}.log").read_text()
        log = rows(tmp_path / f"results/train/{name}/log.csv")
        assert log[-1]["val_score"] != "" and log[-1]["val_metric"] == "PCK@0.2"
        for plot in ("curves", "pckh", "joints", "skeletons", "examples"):
            assert (tmp_path / f"results/plots/{name}/{plot}.png").stat().st_size > 0
    summary = {r["experiment"]: r for r in rows(tmp_path / "results/summary.csv")}
    assert summary["lsp_tiny"]["format"] == "lsp" and summary["lsp_tiny"]["PCK@0.2 Mean"] == lsp[0]["Mean"]
    assert summary["coco_tiny"]["format"] == "coco" and summary["coco_tiny"]["AP"] == coco[0]["value"]
    assert summary["flic_tiny"]["format"] == "flic" and "PCK@0.2 Hip" in summary["flic_tiny"]
    assert (tmp_path / "results/plots/pckh_all.png").exists()


def check_flic(tmp_path) -> None:
    """FLIC's stores split by istrain / istest, its table the five FLIC columns."""
    assert [len(open_store(tmp_path / f"results/stores/flic/{split}.zarr")) for split in ("train", "val")] == [15, 5]
    flic = rows(tmp_path / "results/pckh/flic_tiny.csv")
    assert [r["metric"] for r in flic] == ["PCK@0.2", "PCK@0.1", "AUC@0.2"]
    assert list(flic[0]) == ["metric", "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Mean", "Mean(weighted)"]
    assert flic[0]["Mean"] == mean_cell(
        tmp_path / "results/predict/flic_tiny/preds.mat", tmp_path / "results/stores/flic/val.zarr", "pck"
    )


def test_custom_coco_skeleton_runs_end_to_end(shared_data, tmp_path):
    """A COCO-format file with its own 9 keypoints and skeleton (made from the real COCO
    sample): converted with that set, trained, predicted, scored with OKS AP at the config's
    sigmas, the skeleton drawn."""
    import json

    import numpy as np
    import torch
    from helpers import CUSTOM_KEYPOINTS, CUSTOM_SIGMAS, CUSTOM_SKELETON, write_custom_coco
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    custom = tmp_path / "upper_body.json"
    write_custom_coco(shared_data, custom)
    config = real_samples_config(shared_data)
    config["default_experiments"] = ["custom_tiny"]
    config["datasets"] = {
        "custom": {
            "format": "coco",
            "annotations": str(custom),
            "images": str(shared_data / "coco_sample" / "images"),
            "val_annotations": str(custom),
            "canvas_size": 96,
            "shard_size": 8,
            "oks_sigmas": CUSTOM_SIGMAS,
            "flip_pairs": [
                ["left_shoulder", "right_shoulder"],
                ["left_elbow", "right_elbow"],
                ["left_wrist", "right_wrist"],
                ["left_hip", "right_hip"],
            ],
        }
    }
    config["experiments"] = {"custom_tiny": {**config["experiments"]["coco_tiny"], "dataset": "custom"}}
    write_config(tmp_path, config)
    snakemake(tmp_path)

    names = list(CUSTOM_KEYPOINTS)
    store = open_store(tmp_path / "results/stores/custom/val.zarr")
    assert store.joint_set.name == "upper_body" and list(store.joint_set.joints) == names
    assert store.joint_set.edges == tuple((a - 1, b - 1) for a, b in CUSTOM_SKELETON)
    assert store.attrs["converter"]["coco"]["flip_pairs"] == "config"
    model = torch.load(tmp_path / "results/train/custom_tiny/model.pt", weights_only=False)
    assert model["joint_set"]["joints"] == names and model["model_config"]["joints"] == 9
    log = rows(tmp_path / "results/train/custom_tiny/log.csv")
    assert log[-1]["val_metric"] == "PCK@0.2" and log[-1]["val_score"] != ""

    # the AP of the table is COCOeval's with the config's sigmas on this run's predictions
    table = rows(tmp_path / "results/pckh/custom_tiny.csv")
    assert [r["metric"] for r in table][:3] == ["AP", "AP50", "AP75"]
    predicted = rows(tmp_path / "results/predict/custom_tiny/preds.csv")
    ids = np.asarray(store.source_index)
    results = []
    for sample, (image_id, _) in enumerate(ids):
        points = [r for r in predicted if int(r["index"]) == sample]
        points.sort(key=lambda r: names.index(r["joint"]))
        results.append(
            {
                "image_id": int(image_id),
                "category_id": 1,
                "score": float(np.mean([float(r["score"]) for r in points])),
                "keypoints": [v for r in points for v in (float(r["x"]), float(r["y"]), 2.0)],
            }
        )
    ground_truth = CocoApi(str(custom))
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="keypoints")
    evaluator.params.kpt_oks_sigmas = np.array(CUSTOM_SIGMAS)
    evaluator.params.imgIds = sorted(set(ids[:, 0].tolist()))
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    assert float(table[0]["value"]) == pytest.approx(100 * evaluator.stats[0], abs=0.005)
    assert json.loads((tmp_path / "results/pckh/custom_tiny.json").read_text())["oks_sigmas"] == CUSTOM_SIGMAS
    for plot in ("curves", "pckh", "joints", "skeletons", "examples"):
        assert (tmp_path / f"results/plots/custom_tiny/{plot}.png").stat().st_size > 0
