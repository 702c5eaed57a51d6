"""Plots: each writes a valid PNG atomically; skeleton points land where geometry says."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest

from pose_pipeline import cli, geometry
from pose_pipeline.errors import UserError
from pose_pipeline.joints import MPII
from pose_pipeline.plots import (
    pick_samples,
    plot_joint_bars,
    plot_pckh_curves,
    plot_skeletons,
    plot_training_curves,
    predictions_in_crop,
)
from pose_pipeline.score import score, write_predictions_mat
from pose_pipeline.training_log import read_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOG_HEADER = "epoch,step,train_loss,val_loss,val_pckh,lr,images_per_s,elapsed_s\n"
J = MPII.num_joints


def assert_png(path, dpi=100, min_size=100):
    assert path.exists() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_size and image.shape[1] >= min_size
    assert not [p for p in path.parent.iterdir() if ".partial" in p.name]
    return image


def make_store(path, n=6, size=64, rng_seed=0):
    """A tiny MPII store: crop = original image (array coords) scaled by 0.5, shifted."""
    from pose_pipeline.store import StoreWriter

    rng = np.random.default_rng(rng_seed)
    kp = rng.uniform(20, 110, (n, J, 2))
    affine = np.tile(np.array([[0.5, 0.0, 2.0], [0.0, 0.5, 3.0]]), (n, 1, 1))
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    visible = np.ones((n, J), np.uint8)
    visible[0, :3] = 0
    writer = StoreWriter(path, n, MPII, size, shard_size=4,
                         attrs={"pixel_origin": 1.0, "context": 1.5, "dataset": "mpii", "split": "val"})
    writer.write_block(images)
    writer.set_metadata(keypoints=kp.astype(np.float32), visible=visible, affine=affine,
                        center=np.full((n, 2), 64.0), scale=np.ones(n), head_size=np.full(n, 10.0),
                        image_name=np.array([f"img{i}.jpg" for i in range(n)], dtype=str),
                        source_index=np.stack([np.arange(n), np.zeros(n, int)], axis=1))
    writer.commit()
    return kp.astype(np.float32).astype(np.float64)


def synthetic_score_json(tmp_path, name="s", shift=3.0):
    """A score JSON from the score stage itself, on a synthetic store."""
    store = tmp_path / "val.zarr"
    if not store.exists():
        make_store(store)
    from pose_pipeline.store import open_store

    gt = np.asarray(open_store(store).keypoints, dtype=np.float64)
    preds = gt + shift
    write_predictions_mat(tmp_path / f"{name}.mat", preds)
    score(tmp_path / f"{name}.mat", store, tmp_path / f"{name}.csv", tmp_path / f"{name}.json")
    return tmp_path / f"{name}.json"


# ------------------------------------------------------------------------------ curves


def write_log(path, rows):
    path.write_text(LOG_HEADER + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_training_curves(tmp_path):
    a = write_log(tmp_path / "a.csv", [(0, 10, 1.0, "", "", 1e-3, 50, 1), (0, 20, 0.8, 0.9, 40.0, 1e-3, 50, 2),
                                       (1, 30, 0.6, "", "", 1e-3, 50, 3), (1, 40, 0.5, 0.55, 60.0, 1e-3, 50, 4)])
    b = write_log(tmp_path / "b.csv", [(0, 10, 1.2, 1.1, 30.0, 1e-3, 50, 1), (1, 20, 0.7, 0.8, 50.0, 1e-3, 50, 2)])
    log = read_log(a).per_epoch()
    np.testing.assert_array_equal(log["epoch"], [0, 1])
    np.testing.assert_allclose(log["train_loss"], [0.9, 0.55])
    np.testing.assert_allclose(log["val_score"], [40.0, 60.0])
    plot_training_curves({"a": a, "b": b}, tmp_path / "out" / "curves.png", dpi=50)
    assert_png(tmp_path / "out" / "curves.png", min_size=50)


def test_training_curves_without_validation(tmp_path):
    log = write_log(tmp_path / "a.csv", [(0, 10, 1.0, "", "", 1e-3, "", ""), (1, 20, 0.5, "", "", 1e-3, "", "")])
    assert np.isnan(read_log(log).per_epoch()["val_loss"]).all()
    plot_training_curves({"a": log}, tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")
    # one epoch only (a single point) also plots
    single = write_log(tmp_path / "s.csv", [(0, 10, 1.0, "", "", 1e-3, "", "")])
    plot_training_curves({"s": single}, tmp_path / "single.png")
    assert_png(tmp_path / "single.png")


def test_bad_log_refused_without_output(tmp_path):
    (tmp_path / "bad.csv").write_text("epoch,loss\n0,1\n")
    with pytest.raises(UserError, match="lacks the columns"):
        plot_training_curves({"a": tmp_path / "bad.csv"}, tmp_path / "c.png")
    with pytest.raises(UserError, match="no such training log"):
        plot_training_curves({"a": tmp_path / "absent.csv"}, tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_no_partial_file_when_saving_fails(tmp_path, monkeypatch):
    import matplotlib.figure

    log = write_log(tmp_path / "a.csv", [(0, 10, 1.0, 1.0, 20.0, 1e-3, 50, 1)])

    def failing_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_MAGIC)  # half written
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_training_curves({"a": log}, tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


# -------------------------------------------------------------------------- PCKh plots


def test_pckh_curves_and_joint_bars(tmp_path):
    ours = synthetic_score_json(tmp_path, "ours", shift=3.0)
    ref = synthetic_score_json(tmp_path, "ref", shift=1.0)
    plot_pckh_curves({"ours": ours}, tmp_path / "pckh.png", reference={"ref": ref})
    assert_png(tmp_path / "pckh.png")
    plot_joint_bars(ours, tmp_path / "joints.png", dpi=80)
    assert_png(tmp_path / "joints.png")


def test_joint_bars_with_unannotated_joint(tmp_path):
    data = json.loads(synthetic_score_json(tmp_path).read_text())
    data["per_joint"]["pelvis"]["PCKh@0.5"] = None  # no counted joint: NaN in the metric
    data["curves"]["Head"] = [None] * len(data["thresholds"])
    (tmp_path / "n.json").write_text(json.dumps(data))
    plot_joint_bars(tmp_path / "n.json", tmp_path / "joints.png")
    plot_pckh_curves({"n": tmp_path / "n.json"}, tmp_path / "pckh.png")
    assert_png(tmp_path / "joints.png")
    assert_png(tmp_path / "pckh.png")


def test_bad_score_json_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"table": {}}')
    with pytest.raises(UserError, match="not a score JSON"):
        plot_joint_bars(tmp_path / "x.json", tmp_path / "j.png")
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(UserError, match="not a score JSON"):
        plot_pckh_curves({"y": tmp_path / "y.json"}, tmp_path / "p.png")
    assert not (tmp_path / "j.png").exists() and not (tmp_path / "p.png").exists()


# ---------------------------------------------------------------------------- skeletons


def test_predictions_in_crop_matches_geometry():
    affine = np.array([[[2.0, 0.0, 5.0], [0.0, 2.0, -3.0]],
                       [[0.0, -1.0, 10.0], [1.0, 0.0, 0.0]]])  # a zoom and a rotation
    preds = np.array([[[1.0, 1.0], [11.0, 6.0]],
                      [[3.0, 4.0], [1.0, 1.0]]])  # annotated, 1-based
    got = predictions_in_crop(preds, affine, pixel_origin=1.0)
    # by hand: array = annotated - 1; crop = A @ array + t
    expected = np.array([[[5.0, -3.0], [25.0, 7.0]],
                         [[10.0 - 3.0, 2.0], [10.0, 0.0]]])
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, geometry.apply(affine, geometry.annotated_to_array(preds, 1.0)))
    # 0-based datasets: no shift
    np.testing.assert_allclose(predictions_in_crop(preds, affine, 0.0), geometry.apply(affine, preds))


def test_store_keypoints_in_canvas_agrees(tmp_path):
    kp = make_store(tmp_path / "val.zarr")
    from pose_pipeline.store import open_store

    store = open_store(tmp_path / "val.zarr")
    np.testing.assert_allclose(predictions_in_crop(kp, store.affine, store.pixel_origin),
                               store.keypoints_in_canvas())
    np.testing.assert_allclose(predictions_in_crop(kp, store.affine, 1.0)[0, 0],
                               0.5 * (kp[0, 0] - 1.0) + [2.0, 3.0])


def test_pick_samples_spreads_best_to_worst():
    errors = np.array([0.5, np.nan, 0.1, 0.9, 0.3, 0.7])
    np.testing.assert_array_equal(pick_samples(errors, 3), [2, 0, 3])  # best, median, worst
    np.testing.assert_array_equal(pick_samples(errors, 10), [2, 4, 0, 5, 3, 1])  # all, NaN last


def test_skeleton_plot(tmp_path):
    kp = make_store(tmp_path / "val.zarr")
    rng = np.random.default_rng(3)
    write_predictions_mat(tmp_path / "p.mat", kp + rng.normal(0, 3, kp.shape))
    plot_skeletons(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "sk.png", count=4, dpi=60)
    assert_png(tmp_path / "sk.png")
    plot_skeletons(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "all.png", count=100)
    assert_png(tmp_path / "all.png")
    write_predictions_mat(tmp_path / "short.mat", kp[:2])
    with pytest.raises(UserError, match="2 predicted samples"):
        plot_skeletons(tmp_path / "short.mat", tmp_path / "val.zarr", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------- CLI


def test_cli(tmp_path, capsys):
    kp = make_store(tmp_path / "val.zarr")
    write_predictions_mat(tmp_path / "p.mat", kp + 2.0)
    assert cli.main(["score", "--preds", str(tmp_path / "p.mat"), "--gt", str(tmp_path / "val.zarr"),
                     "--out", str(tmp_path / "s.csv"), "--per-joint", str(tmp_path / "s.json")]) == 0
    log = write_log(tmp_path / "a.csv", [(0, 10, 1.0, "", "", 1e-3, 50, 1)])
    runs = [
        ["curves", "--log", f"a={log}", "--log", f"b={log}", "--out", str(tmp_path / "c.png")],
        ["pckh", "--scores", f"x={tmp_path / 's.json'}", "--reference", f"ref={tmp_path / 's.json'}",
         "--out", str(tmp_path / "p.png"), "--dpi", "50"],
        ["skeletons", "--preds", str(tmp_path / "p.mat"), "--store", str(tmp_path / "val.zarr"),
         "--out", str(tmp_path / "k.png"), "--count", "3"],
        ["joints", "--scores", str(tmp_path / "s.json"), "--out", str(tmp_path / "j.png")],
    ]
    for argv in runs:
        assert cli.main(["plot", *argv]) == 0, argv
    for name in ("c", "p", "k", "j"):
        assert_png(tmp_path / f"{name}.png", min_size=50)
    assert cli.main(["plot", "curves", "--log", f"a={log}", "--log", f"a={log}", "--out", str(tmp_path / "d.png")]) == 1
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["plot", "curves", "--log", "no-equals-sign", "--out", str(tmp_path / "d.png")])
    with pytest.raises(SystemExit):
        cli.main(["plot"])


# ------------------------------------------------------- examples on the original images


def test_pick_examples_best_median_worst():
    from pose_pipeline.plots import pick_examples

    assert pick_examples([0.5, np.nan, 0.1, 0.9, 0.3, 0.7]) == {"best": 2, "median": 0, "worst": 3}
    assert pick_examples([np.nan, np.nan]) == {"best": 0, "median": 0, "worst": 1}
    assert pick_examples([0.2]) == {"best": 0, "median": 0, "worst": 0}


def write_originals(folder, n=6, size=128, missing=()):
    """Original images for make_store's samples (whose crop = 0.5 x original + shift)."""
    import cv2

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(4)
    for i in range(n):
        if i not in missing:
            cv2.imwrite(str(folder / f"img{i}.jpg"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return folder


def test_examples_on_original_images(tmp_path, capsys):
    from pose_pipeline.plots import plot_examples

    kp = make_store(tmp_path / "val.zarr")
    errors = np.array([4.0, 1.0, 2.0, 8.0, 3.0, 6.0])  # px; head size 10
    preds = kp.copy()
    preds[:, :, 0] += errors[:, None]
    write_predictions_mat(tmp_path / "p.mat", preds)
    images = write_originals(tmp_path / "images")
    info = plot_examples(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "ex.png", images, dpi=50)
    assert_png(tmp_path / "ex.png", min_size=50)
    assert {k: v["index"] for k, v in info.items()} == {"best": 1, "median": 4, "worst": 3}
    assert [v["error"] for v in info.values()] == pytest.approx([0.1, 0.3, 0.8])
    assert all(v["background"] == "original" for v in info.values())
    # a missing original falls back to the crop, and says so
    (images / "img3.jpg").unlink()
    info = plot_examples(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "ex2.png", images)
    assert info["worst"]["background"] == "crop" and info["best"]["background"] == "original"
    assert cli.main(["plot", "examples", "--preds", str(tmp_path / "p.mat"), "--store", str(tmp_path / "val.zarr"),
                     "--out", str(tmp_path / "ex3.png")]) == 0
    out = capsys.readouterr().out
    assert out.count("on the crop") == 3
    assert_png(tmp_path / "ex3.png")


def test_example_units_fall_back_to_torso():
    from pose_pipeline.joints import LSP
    from pose_pipeline.plots import example_units

    gt = np.zeros((2, LSP.num_joints, 2))
    gt[:, LSP.index("r_hip")] = (30.0, 40.0)
    visible = np.ones((2, LSP.num_joints), np.uint8)
    visible[1, LSP.index("r_hip")] = 0
    unit, names = example_units(gt, visible, np.array([np.nan, np.nan]), LSP)
    assert unit[0] == 50.0 and names[0] == "torso sizes"
    assert np.isnan(unit[1]) and names[1] == ""
    unit, names = example_units(gt, visible, np.array([12.0, np.nan]), LSP)
    assert unit[0] == 12.0 and names[0] == "head sizes"


def test_curves_and_bars_for_lsp_and_coco_scores(tmp_path):
    """LSP's PCK curve is drawn in torso units; an OKS score (no threshold curve, no
    per-joint rate) is named instead of drawn and its bar chart says so."""
    pckh = synthetic_score_json(tmp_path, "pckh")
    lsp = json.loads(pckh.read_text())
    lsp.update(metric="PCK", rows=["PCK@0.2", "PCK@0.1", "AUC@0.2"], thresholds=lsp["thresholds"][:21],
               curves={k: v[:21] for k, v in lsp["curves"].items()},
               per_joint={k: {"PCK@0.2": v["PCKh@0.5"], "count": v["count"]} for k, v in lsp["per_joint"].items()})
    (tmp_path / "lsp.json").write_text(json.dumps(lsp))
    oks = {"metric": "OKS", "rows": ["AP"], "thresholds": [0.5, 0.55], "table": {"AP": {"value": 50.0}},
           "curves": {"AP": [60.0, 40.0]}, "per_joint": {}}
    (tmp_path / "oks.json").write_text(json.dumps(oks))
    plot_pckh_curves({"lsp": tmp_path / "lsp.json"}, tmp_path / "lsp.png")
    plot_pckh_curves({"a": pckh, "b": tmp_path / "oks.json"}, tmp_path / "mixed.png")
    plot_pckh_curves({"b": tmp_path / "oks.json"}, tmp_path / "oks.png")
    plot_joint_bars(tmp_path / "lsp.json", tmp_path / "lsp_bars.png")
    plot_joint_bars(tmp_path / "oks.json", tmp_path / "oks_bars.png")
    for name in ("lsp", "mixed", "oks", "lsp_bars", "oks_bars"):
        assert_png(tmp_path / f"{name}.png", min_size=50)
