"""`pose-pipeline infer`: one path with `predict`, whole-image and box modes on real photos, video,
and bad inputs skipped by name.

The model is real but tiny: a 1-stack hourglass trained for two epochs on a small demo set
(about half a minute on two cores), shared by the module's tests.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from helpers import box_of_person, random_checkpoint

from pose_pipeline import cli
from pose_pipeline.core import geometry
from pose_pipeline.core.joints import MPII
from pose_pipeline.data.store import open_store

CANVAS = 96  # the demo stores' canvas (the tiny model trains at 64 px)


@pytest.fixture(scope="module")
def demo(tiny_run):
    """The session's tiny demo run (conftest.tiny_run): its images, stores and trained model.
    Read only: the tests write in their own tmp_path."""
    results = tiny_run[0] / "results"
    return {
        "root": results / "stores/demo",
        "images": results / "data/demo/images",
        "val": results / "stores/demo/val.zarr",
        "model": results / "train/tiny/model.pt",
    }


def infer(capfd, *args: str) -> tuple[int, str]:
    """The real command line in this process: (exit code, stderr)."""
    code = cli.main(["infer", *map(str, args)])
    return code, capfd.readouterr().err


def results(out) -> dict:
    return json.loads((out / "keypoints.json").read_text())


def check_valid(found: dict, images_dir, joints=MPII) -> None:
    """Every result: J keypoint triples inside its image, finite confidences; the header names
    the checkpoint's joints and skeleton."""
    import cv2

    header = found["header"]
    assert header["joints"] == list(joints.joints)
    assert header["edges"] == [list(e) for e in joints.edges]
    for result in found["results"]:
        triples = np.array(result["keypoints"]).reshape(-1, 3)
        assert triples.shape == (joints.num_joints, 3)
        name = result["file_name"].split("#")[0]
        height, width = cv2.imread(str(images_dir / name)).shape[:2] if "#" not in result["file_name"] else (96, 96)
        assert (triples[:, 0] >= 0).all() and (triples[:, 0] <= width - 1).all(), result
        assert (triples[:, 1] >= 0).all() and (triples[:, 1] <= height - 1).all(), result
        assert np.isfinite(triples[:, 2]).all() and np.isfinite(result["score"])


# ------------------------------------------------------------------------------ one path


def test_raw_image_canvases_equal_the_stores(demo):
    """The canvas infer cuts from a raw image around a person's box is the store's crop, byte for
    byte: same affine rule, same warp, same JPEG decoder."""
    from pose_pipeline.data.formats.coco import person_boxes
    from pose_pipeline.data.images import load_image

    store = open_store(demo["val"])
    center = geometry.annotated_to_array(store.center, store.pixel_origin)
    for i in range(len(store)):
        box = box_of_person(center[i], store.scale[i])
        c, s = person_boxes(np.array(box))
        affine = geometry.person_canvas_affine(c, s, store.canvas_size, store.context)[0]
        np.testing.assert_allclose(affine, store.affine[i], atol=1e-9)
        image, _ = load_image(demo["images"] / store.image_name[i])
        assert np.array_equal(geometry.warp_image(image, affine, CANVAS), store.images(i, i + 1)[0])


def test_the_model_records_its_stores_decode_and_infer_follows_it(demo, tmp_path, capfd):
    """model.pt, best.pt and last.pt record the training store's converter parameters; infer
    cuts with the decode they name (the demo stores are converted with the default, reduced)."""
    from pose_pipeline.models import read_checkpoint

    converter = open_store(demo["root"] / "train.zarr").attrs["converter"]
    assert converter["reduced_decode"] is True
    saved = sorted(demo["model"].parent.rglob("*.pt"))
    assert [p.name for p in saved] == ["best.pt", "last.pt", "model.pt"]
    for path in saved:
        assert read_checkpoint(path)["converter"] == converter, path.name
    code, err = infer(capfd, "--checkpoint", demo["model"], "--images", demo["images"], "--out", tmp_path / "out")
    assert code == 0, err
    assert results(tmp_path / "out")["header"]["reduced_decode"] is True


def test_infer_equals_predict_on_the_converted_store(demo, tmp_path, capfd):
    store = open_store(demo["val"])
    center = geometry.annotated_to_array(store.center, store.pixel_origin)
    with open(tmp_path / "boxes.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["image", "x", "y", "w", "h"])
        for name, c, s in zip(store.image_name, center, store.scale):
            rows.writerow([name, *map(repr, box_of_person(c, s))])
    assert (
        cli.main(
            [
                "predict",
                "--checkpoint",
                str(demo["model"]),
                "--store",
                str(demo["val"]),
                "--out-mat",
                str(tmp_path / "p.mat"),
                "--out-csv",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    code, err = infer(
        capfd,
        "--checkpoint",
        demo["model"],
        "--images",
        demo["images"],
        "--boxes",
        tmp_path / "boxes.csv",
        "--out",
        tmp_path / "out",
    )  # the canvas size and context: the training store's, recorded with the model
    assert code == 0, err
    found = results(tmp_path / "out")["results"]
    assert [r["file_name"] for r in found] == list(store.image_name)
    inferred = np.array([np.reshape(r["keypoints"], (-1, 3))[:, :2] for r in found])
    from pose_pipeline.inference.prediction_files import read_predictions

    predicted = geometry.annotated_to_array(read_predictions(tmp_path / "p.mat"), store.pixel_origin)
    # infer clips to the image (predict does not): compare with predict's points clipped alike
    inside = (predicted >= 0).all(-1) & (predicted <= CANVAS - 1).all(-1)  # demo images are 96 x 96
    assert inside.mean() > 0.8, "most joints compare unclipped"
    difference = np.abs(inferred - np.clip(predicted, 0, CANVAS - 1))
    assert difference.max() < 0.5
    assert difference[inside].max() < 1e-3  # in fact the same numbers: same inputs, same code


# --------------------------------------------------------------------- real images, video


def test_whole_image_mode_on_the_lsp_photos(demo, shared_data, tmp_path, capfd, caplog):
    photos = tmp_path / "photos" / "nested"
    photos.mkdir(parents=True)
    for i in range(1, 7):  # links, not copies: the real data stays where it is
        os.symlink(shared_data / f"lsp_sample/images/im{i:05d}.jpg", photos / f"im{i:05d}.jpg")
    code, err = infer(
        capfd,
        "--checkpoint",
        demo["model"],
        "--images",
        tmp_path / "photos",
        "--out",
        tmp_path / "out",
        "--draw",
        "--batch-size",
        4,
    )
    assert code == 0, err
    assert sum("whole image as its box" in m for m in caplog.messages) == 1  # said once
    found = results(tmp_path / "out")
    assert [r["file_name"] for r in found["results"]] == [f"nested/im{i:05d}.jpg" for i in range(1, 7)]
    check_valid(found, tmp_path / "photos")
    import cv2

    for r in found["results"]:
        original = cv2.imread(str(tmp_path / "photos" / r["file_name"]))
        h, w = original.shape[:2]
        assert r["bbox"] == [0.0, 0.0, float(w), float(h)]
        drawn = cv2.imread(str(tmp_path / "out/drawings" / r["file_name"]))
        assert drawn.shape == original.shape and (np.abs(drawn.astype(int) - original).max(-1) > 60).sum() > 20
    rows = list(csv.DictReader(open(tmp_path / "out/keypoints.csv")))
    assert len(rows) == 6 * MPII.num_joints and rows[0]["joint"] == MPII.joints[0]
    assert list(csv.reader(open(tmp_path / "out/skipped.csv"))) == [["image", "box", "reason"]]


def test_box_mode_on_the_coco_sample_with_its_boxes(demo, shared_data, tmp_path, capfd):
    annotations = json.loads((shared_data / "coco_sample/person_keypoints_sample.json").read_text())
    detections = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
        for a in annotations["annotations"]
        if not a.get("iscrowd")
    ]
    detections.append({"image_id": detections[0]["image_id"], "category_id": 18, "bbox": [1, 1, 9, 9], "score": 1})
    (tmp_path / "detections.json").write_text(json.dumps(detections))
    code, err = infer(
        capfd,
        "--checkpoint",
        demo["model"],
        "--images",
        shared_data / "coco_sample/images",
        "--boxes",
        tmp_path / "detections.json",
        "--out",
        tmp_path / "out",
    )
    assert code == 0, err
    found = results(tmp_path / "out")
    people = found["results"]
    assert len(people) == len(detections) - 1  # every person, the other category left out
    names = {i["id"]: i["file_name"] for i in annotations["images"]}
    for person, detection in zip(
        sorted(people, key=lambda p: (p["image_id"], p["bbox"])),
        sorted(detections[:-1], key=lambda d: (d["image_id"], d["bbox"])),
    ):
        assert person["image_id"] == detection["image_id"] and person["bbox"] == detection["bbox"]
        assert person["file_name"] == names[detection["image_id"]] and person["category_id"] == 1
    check_valid(found, shared_data / "coco_sample/images")
    # the results list is what pycocotools takes as keypoint results (the `test` extra has it)
    from pycocotools.coco import COCO

    ground_truth = COCO(str(shared_data / "coco_sample/person_keypoints_sample.json"))
    loaded = ground_truth.loadRes(people)
    assert len(loaded.getAnnIds()) == len(people)


def test_video_gives_per_frame_results_and_an_annotated_video(demo, tmp_path, capfd):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 96))
    for i in range(6):
        writer.write(cv2.imread(str(demo["images"] / f"{24 + i:06d}.jpg")))
    writer.release()
    code, err = infer(capfd, "--checkpoint", demo["model"], "--images", video, "--out", tmp_path / "out", "--draw")
    assert code == 0, err
    found = results(tmp_path / "out")
    assert [r["file_name"] for r in found["results"]] == [f"clip.mp4#{i}" for i in range(6)]
    assert [r["image_id"] for r in found["results"]] == list(range(6))
    check_valid(found, tmp_path)
    annotated = cv2.VideoCapture(str(tmp_path / "out/drawings/clip.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(annotated.get(cv2.CAP_PROP_FRAME_WIDTH)), int(annotated.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (96, 96)
    # boxes name frames by number; frames without people stay in the annotated video
    (tmp_path / "boxes.json").write_text(
        json.dumps(
            [
                {"image_id": 4, "bbox": [10, 5, 60, 80], "score": 0.7},
                {"image_id": 1, "bbox": [0, 0, 96, 96]},
                {"image_id": 9, "bbox": [0, 0, 96, 96]},
            ]
        )
    )
    code, err = infer(
        capfd,
        "--checkpoint",
        demo["model"],
        "--images",
        video,
        "--boxes",
        tmp_path / "boxes.json",
        "--out",
        tmp_path / "boxed",
        "--draw",
        "--batch-size",
        2,
    )
    assert code == 0, err
    assert [r["file_name"] for r in results(tmp_path / "boxed")["results"]] == ["clip.mp4#1", "clip.mp4#4"]
    assert int(cv2.VideoCapture(str(tmp_path / "boxed/drawings/clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert "no frame 9" in (tmp_path / "boxed/skipped.csv").read_text()


def test_reading_ahead_in_a_thread_gives_the_serial_results(demo, tmp_path, capfd, monkeypatch):
    """On an accelerator the next people are cut in a prefetch thread; the CPU runs serially
    (`prefetch.depth_for`). Both give the same results, in the same order."""
    from pose_pipeline.util import prefetch

    args = ["--checkpoint", demo["model"], "--images", demo["images"], "--batch-size", 5]
    assert infer(capfd, *args, "--out", tmp_path / "serial")[0] == 0
    monkeypatch.setattr(prefetch, "depth_for", lambda device, depth: 2)
    assert infer(capfd, *args, "--out", tmp_path / "threaded")[0] == 0
    assert results(tmp_path / "threaded")["results"] == results(tmp_path / "serial")["results"]
    assert len(results(tmp_path / "serial")["results"]) == 36  # 24 train, 8 val, 4 test images


# ----------------------------------------------------------------------------- bad inputs


def test_bad_images_and_boxes_are_skipped_by_name(demo, tmp_path, capfd, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    good = (demo["images"] / "000024.jpg").read_bytes()
    (folder / "good.jpg").write_bytes(good)
    (folder / "other.jpg").write_bytes(good)
    damaged = bytearray(good)
    damaged[len(good) // 2 : len(good) // 2 + 200] = b"\xff\x00" * 100  # a damaged middle, end marker kept
    (folder / "corrupt.jpg").write_bytes(bytes(damaged))
    (tmp_path / "boxes.csv").write_text(
        "image,x,y,w,h,score\n"
        "good.jpg,10,10,60,70,0.8\n"
        "good.jpg,200,10,30,30,0.5\n"  # outside the 96 x 96 image
        "corrupt.jpg,10,10,60,70\n"
        "missing.jpg,10,10,60,70\n"
        "other.jpg,0,0,96,96\n"
    )
    code, err = infer(
        capfd,
        "--checkpoint",
        demo["model"],
        "--images",
        folder,
        "--boxes",
        tmp_path / "boxes.csv",
        "--out",
        tmp_path / "out",
    )
    assert code == 0, err
    found = results(tmp_path / "out")["results"]
    assert [(r["file_name"], r["box_score"]) for r in found] == [("good.jpg", 0.8), ("other.jpg", 1.0)]
    skipped = list(csv.DictReader(open(tmp_path / "out/skipped.csv")))
    assert sorted(r["image"] for r in skipped) == ["corrupt.jpg", "good.jpg", "missing.jpg"]
    reasons = {r["image"]: r["reason"] for r in skipped}
    assert "corrupt JPEG" in reasons["corrupt.jpg"] and "outside the 96x96 image" in reasons["good.jpg"]
    assert "no image 'missing.jpg'" in reasons["missing.jpg"] and "line 5" in reasons["missing.jpg"]
    for name in ("corrupt.jpg", "missing.jpg", "good.jpg"):
        assert any(name in m for m in caplog.messages)  # reported as it happens, by name


def test_empty_or_missing_input_is_one_clear_error(demo, tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    code, err = infer(capfd, "--checkpoint", demo["model"], "--images", tmp_path / "empty", "--out", tmp_path / "o")
    assert code == 1 and "no images in this folder" in err and len(err.strip().splitlines()) == 1
    code, err = infer(capfd, "--checkpoint", demo["model"], "--images", tmp_path / "nothing", "--out", tmp_path / "o")
    assert code == 1 and "no such file or folder" in err
    (tmp_path / "boxes.csv").write_text("elsewhere.jpg,1,1,5,5\n")
    code, err = infer(
        capfd,
        "--checkpoint",
        demo["model"],
        "--images",
        demo["images"],
        "--boxes",
        tmp_path / "boxes.csv",
        "--out",
        tmp_path / "o",
    )
    assert code == 1 and "no person box for any image" in err
    assert not (tmp_path / "o").exists()


def test_an_earlier_output_is_replaced_but_nothing_else(demo, tmp_path, capfd):
    image = demo["images"] / "000024.jpg"
    assert infer(capfd, "--checkpoint", demo["model"], "--images", image, "--out", tmp_path / "out")[0] == 0
    assert infer(capfd, "--checkpoint", demo["model"], "--images", image, "--out", tmp_path / "out")[0] == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, err = infer(capfd, "--checkpoint", demo["model"], "--images", image, "--out", tmp_path / "mine")
    assert code == 1 and "refusing to replace" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial folder left
    code, err = infer(
        capfd, "--checkpoint", demo["model"], "--images", tmp_path / "mine", "--out", tmp_path / "mine" / "keypoints"
    )
    assert code == 1 and "lies inside --images" in err


def test_no_progress_leaves_out_the_bar(tmp_path, capfd):
    """--no-progress, as the other stages take it: no progress bar on stderr, the same results."""
    import cv2

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((64, 48, 3), 128, np.uint8))
    model = random_checkpoint(tmp_path / "model.pt", None)
    argv = ["--checkpoint", model, "--images", tmp_path / "images", "--device", "cpu"]
    code, err = infer(capfd, *argv, "--out", tmp_path / "with_bar")
    assert code == 0 and "infer: 100%" in err, err
    code, err = infer(capfd, *argv, "--out", tmp_path / "quiet", "--no-progress")
    assert code == 0 and "infer:" not in err and "img/s" not in err, err
    assert results(tmp_path / "quiet")["results"] == results(tmp_path / "with_bar")["results"]


def test_imagesets_are_validated_with_did_you_mean():
    from pose_pipeline.config.schema import validate_config
    from pose_pipeline.errors import UserError

    base = {
        "datasets": {"d": {"format": "mpii", "synthetic": {}}},
        "experiments": {"e": {"dataset": "d", "model": {"arch": "hourglass"}}},
    }
    # the rescoring and OKS-NMS thresholds take their published defaults
    assert validate_config({**base, "imagesets": {"mine": {"images": "photos"}}})["imagesets"] == {
        "mine": {"images": "photos", "keypoint_score_threshold": 0.2, "oks_nms_threshold": 0.9}
    }
    with pytest.raises(UserError, match=r"imagesets.mine: unknown key 'boxs' \(did you mean 'boxes'\?\)"):
        validate_config({**base, "imagesets": {"mine": {"images": "photos", "boxs": "b.json"}}})
    with pytest.raises(UserError, match="imagesets.mine: 'images' is a required property"):
        validate_config({**base, "imagesets": {"mine": {"boxes": "b.json"}}})
