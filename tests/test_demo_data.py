"""The built-in demo dataset: deterministic, in the real MPII release format."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pose_pipeline import cli
from pose_pipeline.core.joints import MPII
from pose_pipeline.data.demo import generate as demo_data
from pose_pipeline.data.formats import mpii, mpii_split


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    demo_data.generate(out, seed=5, train=12, val=4, image_size=128, progress=False)
    return out


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(small_demo, tmp_path):
    demo_data.generate(tmp_path / "again", seed=5, train=12, val=4, image_size=128, progress=False)
    assert _files(tmp_path / "again") == _files(small_demo)
    demo_data.generate(tmp_path / "other", seed=6, train=12, val=4, image_size=128, progress=False)
    assert _files(tmp_path / "other")["images/000000.jpg"] != _files(small_demo)["images/000000.jpg"]


def test_validation_figures_do_not_depend_on_the_training_count(small_demo, tmp_path):
    demo_data.generate(tmp_path / "more", seed=5, train=20, val=4, image_size=128, progress=False)
    # the first validation image is image 12 in one set and 20 in the other: same figure
    assert (tmp_path / "more/images/000020.jpg").read_bytes() == (small_demo / "images/000012.jpg").read_bytes()


def test_the_real_mpii_reader_parses_it(small_demo):
    people = mpii.read_release(small_demo / "mpii_release.mat")
    assert len(people) == 16
    assert not any(people.problems), people.problems
    assert people.annotated.all()
    assert (people.head_size > 3).all()
    assert people.image_names[0] == "000000.jpg" and (small_demo / "images" / people.image_names[-1]).exists()
    train, val = mpii_split.split_train_val(people, small_demo / "val_split.mat")
    assert len(train) == 12 and len(val) == 4
    assert not set(train.image_names) & set(val.image_names)
    # joints lie in or near the image; those outside it are marked not visible
    kp = people.keypoints - 1.0
    inside = ((kp >= 0) & (kp <= 127)).all(axis=2)
    assert ((people.is_visible == 1) <= inside).all()
    assert inside.mean() > 0.8


def test_the_hourglass_crop_holds_the_whole_figure(small_demo):
    people = mpii.read_release(small_demo / "mpii_release.mat")
    half = 100.0 * people.scale[:, None]
    offset = np.abs(people.keypoints - people.center[:, None, :])
    assert (offset <= half[..., None]).all()


def test_left_and_right_limbs_differ_in_colour(small_demo):
    """One side warm, the other cool: the median hue along the forearms and shins differs."""
    people = mpii.read_release(small_demo / "mpii_release.mat")
    told_apart = 0
    for i, name in enumerate(people.image_names):
        hsv = cv2.cvtColor(cv2.imread(str(small_demo / "images" / name)), cv2.COLOR_BGR2HSV).astype(float)
        hue = {}
        for side in ("r", "l"):
            samples = []
            for a, b in ((f"{side}_elbow", f"{side}_wrist"), (f"{side}_knee", f"{side}_ankle")):
                pa, pb = people.keypoints[i, MPII.index(a)] - 1, people.keypoints[i, MPII.index(b)] - 1
                for t in np.linspace(0.2, 0.8, 13):
                    x, y = np.round(pa + t * (pb - pa)).astype(int)
                    if 0 <= x < 128 and 0 <= y < 128 and hsv[y, x, 1] > 80 and hsv[y, x, 2] > 80:
                        samples.append(hsv[y, x, 0])  # saturated, bright: limb colour, not stripe
            hue[side] = np.median(samples) if samples else np.nan
        # OpenCV hue 0-180: warm < 35 or > 160, cool 80-140
        warm = {s: hue[s] < 35 or hue[s] > 160 for s in hue}
        cool = {s: 80 < hue[s] < 140 for s in hue}
        told_apart += bool((warm["r"] and cool["l"]) or (cool["r"] and warm["l"]))
    assert told_apart >= 0.6 * len(people)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = demo_data.make_person

    def fail_on_third(rng, size):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return real(rng, size)

    monkeypatch.setattr(demo_data, "make_person", fail_on_third)
    with pytest.raises(RuntimeError):
        demo_data.generate(tmp_path / "d", train=4, val=2, image_size=96, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    assert (
        cli.main(
            [
                "demo-data",
                "--out",
                str(tmp_path / "d"),
                "--train",
                "3",
                "--val",
                "2",
                "--image-size",
                "96",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "d" / "mpii_release.mat").exists() and len(list((tmp_path / "d" / "images").iterdir())) == 5
    assert cli.main(["demo-data", "--out", str(tmp_path / "e"), "--train", "0"]) == 1
    assert "--train: must be a whole number at least 1, got 0" in capsys.readouterr().err
