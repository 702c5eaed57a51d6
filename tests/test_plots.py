"""Plots: each writes a valid PNG atomically and returns what it drew, which the tests check
against facts worked out by hand (curves from known logs and shifts, skeleton points
through the store's known affine, colours by side)."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
from helpers import write_training_log

from pose_pipeline import cli
from pose_pipeline.core import geometry
from pose_pipeline.core.joints import MPII
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import TABLE_COLUMNS
from pose_pipeline.evaluate.score import score
from pose_pipeline.inference.prediction_files import write_predictions_mat
from pose_pipeline.report.charts import plot_joint_bars, plot_pckh_curves, plot_training_curves
from pose_pipeline.report.skeleton_drawings import pick_samples, plot_skeletons, predictions_in_crop
from pose_pipeline.train.log import read_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
J = MPII.num_joints
# the skeleton palette as matplotlib writes it
BLUE, RED, GOLD = "#1f77b4", "#d62728", "#ffd700"


def by_label(panel):
    return {line["label"]: line for line in panel["lines"]}


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
    from pose_pipeline.data.store_writer import StoreWriter

    rng = np.random.default_rng(rng_seed)
    kp = rng.uniform(20, 110, (n, J, 2))
    affine = np.tile(np.array([[0.5, 0.0, 2.0], [0.0, 0.5, 3.0]]), (n, 1, 1))
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    visible = np.ones((n, J), np.uint8)
    visible[0, :3] = 0
    writer = StoreWriter(
        path,
        n,
        MPII,
        size,
        shard_size=4,
        attrs={"pixel_origin": 1.0, "context": 1.5, "dataset": "mpii", "split": "val"},
    )
    writer.write_block(images)
    writer.set_metadata(
        keypoints=kp.astype(np.float32),
        visible=visible,
        affine=affine,
        center=np.full((n, 2), 64.0),
        scale=np.ones(n),
        head_size=np.full(n, 10.0),
        image_name=np.array([f"img{i}.jpg" for i in range(n)], dtype=str),
        source_index=np.stack([np.arange(n), np.zeros(n, int)], axis=1),
    )
    writer.commit()
    return kp.astype(np.float32).astype(np.float64)


def synthetic_score_json(tmp_path, name="s", shift=3.0):
    """A score JSON from the score stage itself, on a synthetic store."""
    store = tmp_path / "val.zarr"
    if not store.exists():
        make_store(store)
    from pose_pipeline.data.store import open_store

    gt = np.asarray(open_store(store).keypoints, dtype=np.float64)
    preds = gt + shift
    write_predictions_mat(tmp_path / f"{name}.mat", preds)
    score(tmp_path / f"{name}.mat", store, tmp_path / f"{name}.csv", tmp_path / f"{name}.json")
    return tmp_path / f"{name}.json"


# ------------------------------------------------------------------------------ curves


def test_training_curves(tmp_path):
    a = write_training_log(
        tmp_path / "a.csv",
        [
            (0, 10, 1.0, "", "", 1e-3, 50, 1),
            (0, 20, 0.8, 0.9, 40.0, 1e-3, 50, 2),
            (1, 30, 0.6, "", "", 1e-3, 50, 3),
            (1, 40, 0.5, 0.55, 60.0, 1e-3, 50, 4),
        ],
    )
    b = write_training_log(
        tmp_path / "b.csv", [(0, 10, 1.2, 1.1, 30.0, 1e-3, 50, 1), (1, 20, 0.7, 0.8, 50.0, 1e-3, 50, 2)]
    )
    log = read_log(a).per_epoch()
    np.testing.assert_array_equal(log["epoch"], [0, 1])
    np.testing.assert_allclose(log["train_loss"], [0.9, 0.55])
    np.testing.assert_allclose(log["val_score"], [40.0, 60.0])
    loss, pckh = plot_training_curves({"a": a, "b": b}, tmp_path / "out" / "curves.png", dpi=50)
    assert_png(tmp_path / "out" / "curves.png", min_size=50)
    lines = by_label(loss)
    # train: the epoch's mean; val: the epoch's last given value
    np.testing.assert_allclose(lines["a train"]["y"], [0.9, 0.55])
    np.testing.assert_allclose(lines["a val"]["y"], [0.9, 0.55])
    np.testing.assert_allclose(lines["b train"]["y"], [1.2, 0.7])
    np.testing.assert_allclose(lines["b val"]["y"], [1.1, 0.8])
    np.testing.assert_array_equal(lines["b val"]["x"], [0, 1])
    assert lines["a train"]["linestyle"] == "-" and lines["a val"]["linestyle"] == "--"
    assert lines["a train"]["colour"] == lines["a val"]["colour"] != lines["b train"]["colour"]
    assert loss["yscale"] == "log"  # all losses positive
    accuracy = by_label(pckh)
    np.testing.assert_allclose(accuracy["a"]["y"], [40.0, 60.0])
    np.testing.assert_allclose(accuracy["b"]["y"], [30.0, 50.0])
    assert accuracy["a"]["colour"] == lines["a train"]["colour"]


def test_training_curves_without_validation(tmp_path):
    log = write_training_log(
        tmp_path / "a.csv", [(0, 10, 1.0, "", "", 1e-3, "", ""), (1, 20, 0.5, "", "", 1e-3, "", "")]
    )
    assert np.isnan(read_log(log).per_epoch()["val_loss"]).all()
    loss, pckh = plot_training_curves({"a": log}, tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")
    assert [line["label"] for line in loss["lines"]] == ["a train"]  # no val line
    assert pckh["lines"] == [] and pckh["texts"] == ["no validation yet"]
    # one epoch only: a single point, drawn with a marker (a one-point line shows nothing)
    single = write_training_log(tmp_path / "s.csv", [(0, 10, 1.0, "", "", 1e-3, "", "")])
    loss, _ = plot_training_curves({"s": single}, tmp_path / "single.png")
    assert_png(tmp_path / "single.png")
    assert loss["lines"][0]["marker"] == "o" and list(loss["lines"][0]["y"]) == [1.0]


def test_bad_log_refused_without_output(tmp_path):
    (tmp_path / "bad.csv").write_text("epoch,loss\n0,1\n")
    with pytest.raises(UserError, match="lacks the columns"):
        plot_training_curves({"a": tmp_path / "bad.csv"}, tmp_path / "c.png")
    with pytest.raises(UserError, match="no such training log"):
        plot_training_curves({"a": tmp_path / "absent.csv"}, tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_no_partial_file_when_saving_fails(tmp_path, monkeypatch):
    import matplotlib.figure

    log = write_training_log(tmp_path / "a.csv", [(0, 10, 1.0, 1.0, 20.0, 1e-3, 50, 1)])

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
    """Every prediction is off by (3, 3) px ("ours") or (1, 1) px ("ref") with head size
    10: normalised distance 0.424 or 0.141, so each curve steps from 0 to 100 % at the
    first threshold above it (strict <): 0.43 and 0.15."""
    ours = synthetic_score_json(tmp_path, "ours", shift=3.0)
    ref = synthetic_score_json(tmp_path, "ref", shift=1.0)
    panels = plot_pckh_curves({"ours": ours}, tmp_path / "pckh.png", reference={"ref": ref})
    assert_png(tmp_path / "pckh.png")
    assert [p["title"] for p in panels] == list(TABLE_COLUMNS)
    for panel in panels:
        lines = by_label(panel)
        assert lines["ours"]["linestyle"] == "-" and lines["ref"]["linestyle"] == "--"
        for name, step in (("ours", 0.43), ("ref", 0.15)):
            x, y = lines[name]["x"], lines[name]["y"]
            assert x[0] == 0.0 and x[-1] == 0.5 and len(x) == 51
            assert (y[x < step - 0.005] == 0).all() and (y[x > step - 0.005] == 100).all(), (panel["title"], name)
    assert panels[0]["ylabel"] == "PCKh (%)" and "head sizes" in panels[-1]["xlabel"]
    # the bars: every joint right at 0.5 (0.424 < 0.5)
    bars = plot_joint_bars(ours, tmp_path / "joints.png", dpi=80)
    assert_png(tmp_path / "joints.png")
    assert bars["xticklabels"] == list(MPII.joints)
    assert [b["height"] for b in bars["bars"]] == [100.0] * J and bars["texts"] == ["100.0"] * J


def test_joint_bars_with_unannotated_joint(tmp_path):
    """Each joint's bar is its own rate, in joint order; a joint without a rate gets an
    empty grey bar marked n/a, a column without a curve an empty line."""
    data = json.loads(synthetic_score_json(tmp_path).read_text())
    for k, name in enumerate(MPII.joints):
        data["per_joint"][name]["PCKh@0.5"] = 5.0 * k
    data["per_joint"]["pelvis"]["PCKh@0.5"] = None  # no counted joint: NaN in the metric
    data["curves"]["Head"] = [None] * len(data["thresholds"])
    (tmp_path / "n.json").write_text(json.dumps(data))
    bars = plot_joint_bars(tmp_path / "n.json", tmp_path / "joints.png")
    panels = plot_pckh_curves({"n": tmp_path / "n.json"}, tmp_path / "pckh.png")
    assert_png(tmp_path / "joints.png")
    assert_png(tmp_path / "pckh.png")
    pelvis = MPII.index("pelvis")
    heights = [b["height"] for b in bars["bars"]]
    assert heights == [0.0 if k == pelvis else 5.0 * k for k in range(J)]
    assert bars["texts"][pelvis] == "n/a" and bars["texts"][1] == "5.0"
    assert bars["bars"][pelvis]["colour"] == "#cccccc" != bars["bars"][1]["colour"]
    assert np.isnan(by_label(panels[0])["n"]["y"]).all()  # Head
    assert np.isfinite(by_label(panels[1])["n"]["y"]).all()  # Shoulder


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
    affine = np.array(
        [[[2.0, 0.0, 5.0], [0.0, 2.0, -3.0]], [[0.0, -1.0, 10.0], [1.0, 0.0, 0.0]]]
    )  # a zoom and a rotation
    preds = np.array([[[1.0, 1.0], [11.0, 6.0]], [[3.0, 4.0], [1.0, 1.0]]])  # annotated, 1-based
    got = predictions_in_crop(preds, affine, pixel_origin=1.0)
    # by hand: array = annotated - 1; crop = A @ array + t
    expected = np.array([[[5.0, -3.0], [25.0, 7.0]], [[10.0 - 3.0, 2.0], [10.0, 0.0]]])
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, geometry.apply(affine, geometry.annotated_to_array(preds, 1.0)))
    # 0-based datasets: no shift
    np.testing.assert_allclose(predictions_in_crop(preds, affine, 0.0), geometry.apply(affine, preds))


def test_store_keypoints_in_canvas_agrees(tmp_path):
    kp = make_store(tmp_path / "val.zarr")
    from pose_pipeline.data.store import open_store

    store = open_store(tmp_path / "val.zarr")
    np.testing.assert_allclose(predictions_in_crop(kp, store.affine, store.pixel_origin), store.keypoints_in_canvas())
    np.testing.assert_allclose(predictions_in_crop(kp, store.affine, 1.0)[0, 0], 0.5 * (kp[0, 0] - 1.0) + [2.0, 3.0])


def test_pick_samples_spreads_best_to_worst():
    errors = np.array([0.5, np.nan, 0.1, 0.9, 0.3, 0.7])
    np.testing.assert_array_equal(pick_samples(errors, 3), [2, 0, 3])  # best, median, worst
    np.testing.assert_array_equal(pick_samples(errors, 10), [2, 4, 0, 5, 3, 1])  # all, NaN last


def test_skeleton_plot(tmp_path):
    """Crops best to worst by error; the predicted skeleton drawn in crop pixels (the
    store's affine: crop = 0.5 x (annotated - 1) + (2, 3)), limbs coloured by side, the
    visible ground truth as points."""
    kp = make_store(tmp_path / "val.zarr")
    errors = np.array([4.0, 1.0, 2.0, 8.0, 3.0, 6.0])  # px along x; head size 10
    preds = kp.copy()
    preds[:, :, 0] += errors[:, None]
    write_predictions_mat(tmp_path / "p.mat", preds)
    panels = plot_skeletons(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "sk.png", count=3, dpi=60)
    assert_png(tmp_path / "sk.png")
    # sorted by error: samples 1, 2, 4, 0, 5, 3; three spread over them: positions 0, 2, 5
    assert [p["title"].split()[0] for p in panels] == ["#1", "#4", "#3"]
    assert panels[0]["title"].endswith("error 0.10 head sizes")
    crop = lambda points: 0.5 * (points - 1.0) + [2.0, 3.0]  # noqa: E731
    for panel, i in zip(panels, (1, 4, 3)):
        assert panel["images"] == [(64, 64, 3)]
        assert len(panel["lines"]) == len(MPII.edges)
        for line, (a, b) in zip(panel["lines"], MPII.edges):
            np.testing.assert_allclose(np.stack([line["x"], line["y"]], 1), crop(preds[i, [a, b]]))
        np.testing.assert_allclose(panel["points"], crop(kp[i]), rtol=1e-6)  # all visible
    colours = {edge: line["colour"] for edge, line in zip(MPII.edges, panels[0]["lines"])}
    assert colours[(0, 1)] == colours[(2, 6)] == RED  # right shin; right hip to pelvis
    assert colours[(13, 14)] == colours[(7, 13)] == BLUE  # left upper arm; thorax to left shoulder
    assert colours[(8, 9)] == GOLD  # neck to head top
    # sample 0 has r_ankle, r_knee, r_hip unannotated: no ground-truth points for them
    panels = plot_skeletons(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "all.png", count=100)
    assert_png(tmp_path / "all.png")
    assert len(panels) == 6
    np.testing.assert_allclose(panels[3]["points"], crop(kp[0, 3:]), rtol=1e-6)  # error 4: fourth
    write_predictions_mat(tmp_path / "short.mat", kp[:2])
    with pytest.raises(UserError, match="2 predicted samples"):
        plot_skeletons(tmp_path / "short.mat", tmp_path / "val.zarr", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------- CLI


def test_cli(tmp_path, capsys):
    kp = make_store(tmp_path / "val.zarr")
    write_predictions_mat(tmp_path / "p.mat", kp + 2.0)
    assert (
        cli.main(
            [
                "score",
                "--preds",
                str(tmp_path / "p.mat"),
                "--gt",
                str(tmp_path / "val.zarr"),
                "--out",
                str(tmp_path / "s.csv"),
                "--per-joint",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    log = write_training_log(tmp_path / "a.csv", [(0, 10, 1.0, "", "", 1e-3, 50, 1)])
    runs = [
        ["curves", "--log", f"a={log}", "--log", f"b={log}", "--out", str(tmp_path / "c.png")],
        [
            "pckh",
            "--scores",
            f"x={tmp_path / 's.json'}",
            "--reference",
            f"ref={tmp_path / 's.json'}",
            "--out",
            str(tmp_path / "p.png"),
            "--dpi",
            "50",
        ],
        [
            "skeletons",
            "--preds",
            str(tmp_path / "p.mat"),
            "--store",
            str(tmp_path / "val.zarr"),
            "--out",
            str(tmp_path / "k.png"),
            "--count",
            "3",
        ],
        ["joints", "--scores", f"x={tmp_path / 's.json'}", "--out", str(tmp_path / "j.png")],
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
    from pose_pipeline.report.skeleton_drawings import pick_examples

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
    from pose_pipeline.report.skeleton_drawings import plot_examples

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
    # on the original: array pixels (annotated - 1), the 128 px image drawn
    best = info["best"]["panel"]
    assert best["images"] == [(128, 128, 3)]
    for line, (a, b) in zip(best["lines"], MPII.edges):
        np.testing.assert_allclose(np.stack([line["x"], line["y"]], 1), preds[1, [a, b]] - 1.0)
    np.testing.assert_allclose(best["points"], kp[1] - 1.0, rtol=1e-6)
    # a missing original falls back to the crop, and says so
    (images / "img3.jpg").unlink()
    info = plot_examples(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "ex2.png", images)
    assert info["worst"]["background"] == "crop" and info["best"]["background"] == "original"
    worst = info["worst"]["panel"]
    assert "stored crop" in worst["title"] and worst["images"] == [(64, 64, 3)]
    np.testing.assert_allclose(worst["points"], 0.5 * (kp[3] - 1.0) + [2.0, 3.0], rtol=1e-6)
    assert (
        cli.main(
            [
                "plot",
                "examples",
                "--preds",
                str(tmp_path / "p.mat"),
                "--store",
                str(tmp_path / "val.zarr"),
                "--out",
                str(tmp_path / "ex3.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("on the crop") == 3
    assert_png(tmp_path / "ex3.png")


def test_example_units_fall_back_to_torso():
    from pose_pipeline.core.joints import LSP
    from pose_pipeline.report.skeleton_drawings import example_units

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
    lsp.update(
        metric="PCK",
        rows=["PCK@0.2", "PCK@0.1", "AUC@0.2"],
        thresholds=lsp["thresholds"][:21],
        curves={k: v[:21] for k, v in lsp["curves"].items()},
        per_joint={k: {"PCK@0.2": v["PCKh@0.5"], "count": v["count"]} for k, v in lsp["per_joint"].items()},
    )
    (tmp_path / "lsp.json").write_text(json.dumps(lsp))
    oks = {
        "metric": "OKS",
        "rows": ["AP"],
        "thresholds": [0.5, 0.55],
        "table": {"AP": {"value": 50.0}},
        "curves": {"AP": [60.0, 40.0]},
        "per_joint": {},
    }
    (tmp_path / "oks.json").write_text(json.dumps(oks))
    lsp_panels = plot_pckh_curves({"lsp": tmp_path / "lsp.json"}, tmp_path / "lsp.png")
    mixed = plot_pckh_curves({"a": pckh, "b": tmp_path / "oks.json"}, tmp_path / "mixed.png")
    oks_panels = plot_pckh_curves({"b": tmp_path / "oks.json"}, tmp_path / "oks.png")
    lsp_bars = plot_joint_bars(tmp_path / "lsp.json", tmp_path / "lsp_bars.png")
    oks_bars = plot_joint_bars(tmp_path / "oks.json", tmp_path / "oks_bars.png")
    for name in ("lsp", "mixed", "oks", "lsp_bars", "oks_bars"):
        assert_png(tmp_path / f"{name}.png", min_size=50)
    assert lsp_panels[0]["ylabel"] == "PCK (%)" and "torso sizes" in lsp_panels[-1]["xlabel"]
    assert by_label(lsp_panels[0])["lsp"]["x"][-1] == 0.2
    assert all(list(by_label(p)) == ["a"] for p in mixed)  # the OKS run is not drawn ...
    assert "b" in mixed[-1]["texts"][0].split("\n")  # ... but named
    assert all(p["lines"] == [] for p in oks_panels) and "no threshold curves" in oks_panels[0]["texts"][0]
    assert lsp_bars["title"].startswith("PCK@0.2 per joint")
    assert [b["height"] for b in lsp_bars["bars"]] == [lsp["per_joint"][n]["PCK@0.2"] for n in MPII.joints]
    assert oks_bars["bars"] == [] and oks_bars["texts"] == ["OKS: no per-joint rate (see the score table)"]
