"""The `imagesets` target: `snakemake results/infer/{experiment}/{imageset}/keypoints.json` trains the
experiment when needed, then runs `pose-pipeline infer` on the image set (tiny demo config). The
images lie in a folder with a space and an image set's name has a dot: both reach the commands whole."""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np
import pytest
from helpers import TINY, copy_run, planned_jobs, snakemake, write_config

TARGETS = ["results/infer/tiny/photos/keypoints.json", "results/infer/tiny/boxed.v2/keypoints.json"]


@pytest.mark.slow
def test_infer_target_trains_then_infers(tiny_run, tmp_path):
    from pose_pipeline.data.demo.generate import generate

    generate(tmp_path / "my images", seed=9, train=3, val=1, image_size=80, progress=False)
    (tmp_path / "my images" / "boxes.csv").write_text(
        "image,x,y,w,h\n000000.jpg,5,5,60,70\n000000.jpg,20,0,50,80\n000002.jpg,0,0,80,80\n"
    )
    config = copy.deepcopy(TINY)
    config["imagesets"] = {
        "photos": {"images": "my images/images"},
        "boxed.v2": {"images": "my images/images", "boxes": "my images/boxes.csv"},
    }
    write_config(tmp_path, config)
    assert "train" in planned_jobs(snakemake(tmp_path, "--dry-run", *TARGETS))  # trained on the way
    # the session's trained run, so that only infer runs here
    copy_run(tiny_run[0], tmp_path, ("results/data", "results/stores", "results/train"))
    write_config(tmp_path, config)
    assert set(planned_jobs(snakemake(tmp_path, "--dry-run", *TARGETS))) == {"infer"}  # nothing else is redone
    snakemake(tmp_path, *TARGETS)
    assert (tmp_path / "results/train/tiny/model.pt").exists()
    photos = json.loads((tmp_path / TARGETS[0]).read_text())
    assert [r["file_name"] for r in photos["results"]] == [f"{i:06d}.jpg" for i in range(4)]
    assert photos["header"]["canvas_size"] == TINY["datasets"]["demo"]["canvas_size"]  # the dataset's canvas
    assert sorted(p.name for p in (tmp_path / "results/infer/tiny/photos/drawings").glob("[!.]*")) == [
        f"{i:06d}.jpg" for i in range(4)
    ]
    boxed = json.loads((tmp_path / TARGETS[1]).read_text())
    assert [(r["file_name"], r["bbox"]) for r in boxed["results"]] == [
        ("000000.jpg", [5, 5, 60, 70]),
        ("000000.jpg", [20, 0, 50, 80]),
        ("000002.jpg", [0, 0, 80, 80]),
    ]
    assert (tmp_path / "results/infer/tiny/boxed.v2/keypoints.csv").exists()
    assert "Nothing to be done" in snakemake(tmp_path, "--dry-run", *TARGETS)
    # A rerun: Snakemake deletes the declared outputs, not the folder nor infer's marker in it,
    # and infer takes the folder as its own.
    snakemake(tmp_path, *TARGETS, "--forcerun", "infer")
    assert (tmp_path / "results/infer/tiny/photos/pose-pipeline-infer.json").is_file()
    assert json.loads((tmp_path / TARGETS[0]).read_text())["results"] == photos["results"]


@pytest.mark.slow
def test_misspelt_imageset_key_stops_the_run_naming_it(tmp_path):
    config = copy.deepcopy(TINY)
    config["imagesets"] = {"photos": {"image": "mine"}}
    write_config(tmp_path, config)
    with pytest.raises(AssertionError, match=r"imagesets.photos: unknown key 'image' \(did you mean 'images'\?\)"):
        snakemake(tmp_path, "--dry-run", TARGETS[0])


@pytest.mark.slow  # four Snakemake dry runs
def test_a_new_image_in_a_subfolder_makes_infer_outdated(tmp_path):
    """infer reads a folder's images at any depth: an image added to a subfolder (which leaves
    the top folder's time alone) reruns it; a file infer does not read does not. A dry run on
    stand-in files, train left out (`--allowed-rules infer`)."""
    import cv2

    images = tmp_path / "my images"
    (images / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png"):
        cv2.imwrite(str(images / name), np.zeros((8, 8, 3), np.uint8))
    config = copy.deepcopy(TINY)
    config["imagesets"] = {"photos": {"images": "my images"}}
    write_config(tmp_path, config)
    out = tmp_path / "results/infer/tiny/photos"
    (out / "drawings").mkdir(parents=True)
    (tmp_path / "results/train/tiny").mkdir(parents=True)
    model = tmp_path / "results/train/tiny/model.pt"
    outputs = [out / name for name in ("keypoints.json", "keypoints.csv", "skipped.csv")]
    for path in [model, *outputs]:
        path.write_text("")
    now = time.time()
    for path in [images, images / "sub", images / "a.jpg", images / "sub/b.png", model]:
        os.utime(path, (now - 1000, now - 1000))
    for path in [out / "drawings", *outputs]:
        os.utime(path, (now - 500, now - 500))

    def outdated() -> bool:
        os.utime(images, (now - 1000, now - 1000))  # the top folder as it was
        output = snakemake(tmp_path, "--dry-run", TARGETS[0], "--allowed-rules", "infer")
        return "Nothing to be done" not in output and "rule infer" in output

    assert not outdated()
    (images / "sub" / "notes.txt").write_text("not an image")
    assert not outdated()
    cv2.imwrite(str(images / "sub" / "c.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert outdated()
