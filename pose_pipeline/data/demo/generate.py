"""`pose-pipeline demo-data`: a synthetic single-person dataset in the real MPII format.

Each image holds one synthetic figure with the 16 MPII joints, drawn by `synthetic_people` (left
and right told apart by cues that survive the flip augmentation; self-occluded and truncated
joints written with `is_visible = 0`); this module writes them out in the release's format.

Output (under `out_dir`, built in a temporary sibling folder and renamed into place):
  mpii_release.mat   a `RELEASE` struct as the MPII release has it (annolist, img_train,
                     single_person), read by the real MPII converter
  images/NNNNNN.jpg  the images
  val_split.mat      RELEASE_img_index / RELEASE_person_index of the validation people,
                     as MPII's detections.mat names Tompson et al.'s validation split
  test people        `test` images with `img_train` 0 whose person has only `objpos` and
                     `scale`, as MPII's test set (what `convert --split test` reads and
                     `mpii-submission` answers); their joints are drawn but not written
  pose-pipeline-demo-data.json   the generator's settings; marks the folder as demo data
                     (`atomic.write_marker`), the only kind of non-empty folder `demo-data
                     --out` replaces

The defaults (seed, train, val and test counts, image size) are the config schema's
(`datasets.*.synthetic`), read once into `DEFAULTS` for `generate()` and the command line.

Every image is drawn from its own seed, (seed, split, index), so the output is the same for
a given seed whatever the counts, and validation and test figures are separate random draws.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from pose_pipeline.config.option_bounds import check_output_folder_place, check_values
from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.data.demo.release_file import release_mat_bytes, split_mat_bytes
from pose_pipeline.data.demo.synthetic_people import make_person
from pose_pipeline.util.atomic import atomic_folder

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
DEFAULTS = schema_defaults("dataset", "synthetic")  # seed, train, val, test, image_size


def generate(
    out_dir,
    seed: int = DEFAULTS["seed"],
    train: int = DEFAULTS["train"],
    val: int = DEFAULTS["val"],
    image_size: int = DEFAULTS["image_size"],
    progress: bool = True,
    test: int = DEFAULTS["test"],
) -> dict:
    """Write the dataset to `out_dir` (replacing an earlier demo-data folder there, never anything
    else); returns a summary."""
    from tqdm import tqdm

    check_values({"--seed": seed, "--train": train, "--val": val, "--test": test, "--image-size": image_size})
    check_output_folder_place(out_dir, "demo")
    out = Path(out_dir)
    n = train + val + test
    settings = dict(seed=seed, train=train, val=val, test=test, image_size=image_size)
    with atomic_folder(out, "demo-data", settings) as tmp:
        (tmp / "images").mkdir()
        names, keypoints, visible, head_boxes, scales, objpos = [], [], [], [], [], []
        with tqdm(total=n, desc="demo data", unit="img", disable=not progress, mininterval=2) as bar:
            for i in range(n):
                split = 0 if i < train else 1 if i < train + val else 2  # train, val, test
                index = i - (0, train, train + val)[split]
                rng = np.random.default_rng([seed, split, index])
                image, kp, vis, box, scale, pos = make_person(rng, image_size)
                name = f"{i:06d}.jpg"
                _write_jpeg(tmp / "images" / name, image)
                names.append(name)
                keypoints.append(kp)
                visible.append(vis)
                head_boxes.append(box)
                scales.append(scale)
                objpos.append(pos)
                bar.update(1)
        release = release_mat_bytes(
            names,
            np.array(keypoints),
            np.array(visible),
            np.array(head_boxes),
            np.array(scales),
            np.array(objpos),
            np.arange(n) < train + val,
        )  # img_train: 0 for the test images
        (tmp / "mpii_release.mat").write_bytes(release)
        val_images = np.arange(train, train + val)
        (tmp / "val_split.mat").write_bytes(split_mat_bytes(val_images, np.zeros(val, np.int64)))
    return {"train": train, "val": val, "test": test, "images": n, "out": str(out)}


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    """An RGB image as a JPEG of quality JPEG_QUALITY."""
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"could not encode {path.name}")
    path.write_bytes(data.tobytes())


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder: new, empty, or an earlier demo-data folder (replaced)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed of the figures and backgrounds")
    p.add_argument("--train", type=int, default=DEFAULTS["train"], help="training images")
    p.add_argument("--val", type=int, default=DEFAULTS["val"], help="validation images")
    p.add_argument(
        "--test",
        type=int,
        default=DEFAULTS["test"],
        help="test images: people with objpos and scale only, as MPII's test set",
    )
    p.add_argument("--image-size", type=int, default=DEFAULTS["image_size"], help="image side in pixels")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    summary = generate(args.out, args.seed, args.train, args.val, args.image_size, args.progress, args.test)
    print(
        f"{summary['out']}: {summary['train']} training, {summary['val']} validation and {summary['test']} test images"
    )
    return 0
