"""MPII's test set: `convert --split test` crops the release's single persons of its test images,
and `mpii-submission` writes pred_keypoints_mpii.mat as the benchmark's toolkit reads it.

The toolkit's reading (evaluatePCKh.m: `pred` must be the test annolist in order; it is flattened
over the rects with an objpos, those named in single_person are kept, and their points are found
by their 0-based `id`) is re-done here from that description, independently of the writer.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from pose_pipeline import cli
from pose_pipeline.core.joints import MPII
from pose_pipeline.data.convert import convert
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.demo import generate as demo_data
from pose_pipeline.data.formats import mpii, mpii_test
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError
from pose_pipeline.inference.prediction_files import write_predictions_csv, write_predictions_mat


def _rects(*rects) -> np.ndarray:
    """A 1xR struct array of rects (dicts), fields the union of theirs; missing ones empty."""
    names = list(dict.fromkeys(name for rect in rects for name in rect))
    out = np.empty((1, len(rects)), dtype=[(name, object) for name in names])
    for r, rect in enumerate(rects):
        out[0, r] = tuple(rect.get(name, np.zeros((0, 0))) for name in names)
    return out


def _train_rect(seed: float) -> dict:
    points = np.empty((1, 16), dtype=[("x", object), ("y", object), ("id", object), ("is_visible", object)])
    for k in range(16):
        points[0, k] = (10.0 + k + seed, 20.0 + k, float(k), 1.0)
    return {
        "x1": 1.0,
        "y1": 1.0,
        "x2": 9.0,
        "y2": 9.0,
        "annopoints": {"point": points},
        "scale": 1.0,
        "objpos": {"x": 50.0, "y": 60.0},
    }


def _test_rect(x: float, y: float, scale: float = 1.2) -> dict:
    return {"scale": scale, "objpos": {"x": x, "y": y}}


@pytest.fixture
def release(tmp_path):
    """Five images as the release mixes them: train, test with a group and a single person,
    test without a single person, train, test with a single person lacking an objpos."""
    annorects = [
        _rects(_train_rect(0)),
        _rects(_test_rect(100, 110), _test_rect(200, 210)),  # rect 1 in a group, rect 2 single
        _rects(_test_rect(300, 310)),  # in a group only
        _rects(_train_rect(5)),
        _rects(_test_rect(400, 410), {"scale": 1.0}, _test_rect(500, 510, 2.0)),  # rect 2: no objpos
    ]
    annolist = np.empty(
        (1, 5), dtype=[("image", object), ("annorect", object), ("frame_sec", object), ("vididx", object)]
    )
    for i, rects in enumerate(annorects):
        annolist[0, i] = ({"name": f"im{i}.jpg"}, rects, np.zeros((0, 0)), np.zeros((0, 0)))
    single_person = np.empty((5, 1), dtype=object)
    for i, rects in enumerate([[1], [2], [], [1], [1, 2, 3]]):
        single_person[i, 0] = np.array(rects, dtype=np.float64).reshape(-1, 1) if rects else np.zeros((0, 0))
    path = tmp_path / "release.mat"
    scipy.io.savemat(
        path,
        {
            "RELEASE": {
                "annolist": annolist,
                "img_train": np.array([[1, 0, 0, 1, 0]], float),
                "single_person": single_person,
                "version": "12",
            }
        },
    )
    return path


def _list(value) -> list:
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def toolkit_points(submission, release_path) -> list[np.ndarray]:
    """What evaluatePCKh.m reads: per single person of the test images (flattened in image, then
    rect order over the rects with an objpos), the (16,2) points by joint id, NaN where absent."""
    pred = _list(scipy.io.loadmat(submission, squeeze_me=True, struct_as_record=False)["pred"])
    release = scipy.io.loadmat(release_path, squeeze_me=True, struct_as_record=False)["RELEASE"]
    single_person = [sp for sp, train in zip(_list(release.single_person), _list(release.img_train)) if not train]
    assert len(pred) == len(single_person)
    poses = []
    for entry, singles in zip(pred, single_person):
        for r, rect in enumerate(_list(entry.annorect), start=1):
            if getattr(rect, "objpos", None) is None or isinstance(rect.objpos, np.ndarray):
                continue  # no objpos: not flattened
            if r not in np.atleast_1d(singles):
                continue
            pose = np.full((16, 2), np.nan)
            for point in _list(getattr(rect.annopoints, "point", [])):
                pose[int(point.id)] = (point.x, point.y)
            poses.append(pose)
    return poses


def test_test_people_are_the_single_persons_with_an_objpos(release):
    people = mpii_test.read_test_people(release)
    assert list(zip(people.image_index, people.person_index)) == [(1, 1), (4, 0), (4, 2)]
    assert people.image_names == ["im1.jpg", "im4.jpg", "im4.jpg"]
    assert not people.annotated.any() and not any(people.problems)
    # the hourglass crop convention, as for the annotated people
    np.testing.assert_allclose(people.center, [[200, 210 + 15 * 1.2], [400, 410 + 15 * 1.2], [500, 510 + 30]])
    np.testing.assert_allclose(people.scale, [1.25 * 1.2, 1.25 * 1.2, 2.5])


def test_submission_is_the_test_annolist_with_the_predicted_points(release, tmp_path):
    test = mpii_test.load_test_release(release)
    preds = np.random.default_rng(0).uniform(1, 500, (3, 16, 2))
    order = [2, 0, 1]  # the store's order need not be the annolist's
    pred = mpii_test.submission_annolist(test, test.people[order], preds[order])
    out = tmp_path / "pred_keypoints_mpii.mat"
    mpii_test.write_submission(out, pred)
    loaded = scipy.io.loadmat(out, squeeze_me=True, struct_as_record=False)
    assert [k for k in loaded if not k.startswith("__")] == ["pred"]
    entries = _list(loaded["pred"])
    assert [e.image.name for e in entries] == ["im1.jpg", "im2.jpg", "im4.jpg"]
    points = toolkit_points(out, release)
    assert len(points) == 3
    np.testing.assert_array_equal(np.stack(points), preds)  # ids 0-15 in MPII order, pixels unchanged
    # every other rect keeps its fields and gets no points
    group = _list(entries[0].annorect)[0]
    assert (group.objpos.x, group.scale) == (100, 1.2) and np.size(group.annopoints) == 0
    assert np.size(_list(entries[2].annorect)[1].annopoints) == 0


def test_submission_round_trips_through_the_release_reader(release, tmp_path):
    test = mpii_test.load_test_release(release)
    preds = np.arange(3 * 16 * 2, dtype=float).reshape(3, 16, 2) + 0.25
    out = tmp_path / "pred.mat"
    mpii_test.write_submission(out, mpii_test.submission_annolist(test, test.people, preds))
    as_annolist = tmp_path / "as_annolist.mat"  # the reader takes a top-level annolist
    scipy.io.savemat(as_annolist, {"annolist": scipy.io.loadmat(out)["pred"]})
    people = mpii.read_release(as_annolist)
    # test annolist indices: image 1 -> 0, image 4 -> 2
    assert list(zip(people.image_index, people.person_index)) == [(0, 1), (2, 0), (2, 2)]
    assert people.annotated.all()
    np.testing.assert_array_equal(people.keypoints, preds)


@pytest.mark.parametrize(
    "rows, message", [([0, 1], "1 of the 3 test single persons"), ([0, 1, 2, 2], "predicted twice")]
)
def test_incomplete_or_duplicated_predictions_are_refused(release, rows, message):
    test = mpii_test.load_test_release(release)
    with pytest.raises(UserError, match=message):
        mpii_test.submission_annolist(test, test.people[rows], np.zeros((len(rows), 16, 2)))


def test_a_person_outside_the_test_single_persons_is_refused(release):
    test = mpii_test.load_test_release(release)
    people = np.concatenate([test.people, [[1, 0]]])  # rect 1 of image 2 is in a group
    with pytest.raises(UserError, match=r"annolist\(2\).annorect\(1\) is not a single person"):
        mpii_test.submission_annolist(test, people, np.zeros((4, 16, 2)))


def test_a_file_without_test_images_says_so(shared_data, tmp_path):
    # the real MPII sample holds the validation split (training images), no test people
    with pytest.raises(UserError, match="no RELEASE annolist, img_train, single_person"):
        mpii_test.load_test_release(shared_data / "mpii_sample" / "detections.mat")
    with pytest.raises(UserError, match="no RELEASE"):
        convert(
            ConvertOptions(
                "mpii",
                shared_data / "mpii_sample" / "detections.mat",
                shared_data / "mpii_sample" / "images",
                tmp_path / "test.zarr",
                split="test",
                progress=False,
            )
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The synthetic release with 5 test images, its test store and predictions on it."""
    root = tmp_path_factory.mktemp("submission")
    demo_data.generate(root / "data", seed=2, train=6, val=2, test=5, image_size=96, progress=False)
    convert(
        ConvertOptions(
            "mpii",
            root / "data/mpii_release.mat",
            root / "data/images",
            root / "test.zarr",
            split="test",
            canvas_size=64,
            workers=1,
            progress=False,
        )
    )
    store = open_store(root / "test.zarr")
    preds = np.random.default_rng(1).uniform(1, 96, (len(store), 16, 2))
    write_predictions_csv(root / "preds.csv", preds, list(store.image_name), MPII)
    return root, preds


def test_demo_test_people_convert_without_joints(demo):
    root, _ = demo
    store = open_store(root / "test.zarr")
    assert store.attrs["split"] == "test" and len(store) == 5
    assert list(store.image_name) == [f"{i:06d}.jpg" for i in range(8, 13)]
    assert not store.visible.any()
    # the training and validation stores leave the test people out
    people = mpii.read_release(root / "data/mpii_release.mat")
    assert len(people) == 8 and people.is_train.all()


def test_demo_submission_holds_the_predictions(demo, tmp_path, capsys):
    root, preds = demo
    out = tmp_path / "sub" / "pred_keypoints_mpii.mat"
    assert (
        cli.main(
            [
                "mpii-submission",
                "--release",
                str(root / "data/mpii_release.mat"),
                "--store",
                str(root / "test.zarr"),
                "--preds",
                str(root / "preds.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "5 single persons on 5 test images" in capsys.readouterr().out
    names = [e.image.name for e in _list(scipy.io.loadmat(out, squeeze_me=True, struct_as_record=False)["pred"])]
    assert names == [f"{i:06d}.jpg" for i in range(8, 13)]
    np.testing.assert_allclose(
        np.stack(toolkit_points(out, root / "data/mpii_release.mat")), preds, rtol=0, atol=1e-9
    )  # the CSV's decimal round trip
    assert [p.name for p in out.parent.iterdir()] == ["pred_keypoints_mpii.mat"]  # nothing half-written


def test_predictions_of_another_store_or_release_are_refused(demo, tmp_path, capsys):
    root, preds = demo
    release = root / "data/mpii_release.mat"
    write_predictions_mat(tmp_path / "short.mat", preds[:4])
    other = tmp_path / "other.mat"
    other.write_bytes(release.read_bytes() + b"\0")
    convert(
        ConvertOptions(
            "mpii",
            release,
            root / "data/images",
            tmp_path / "val.zarr",
            split="val",
            val_split=root / "data/val_split.mat",
            canvas_size=64,
            workers=1,
            progress=False,
        )
    )
    cases = [
        (release, root / "test.zarr", tmp_path / "short.mat", "4 predictions, but the store"),
        (other, root / "test.zarr", root / "preds.csv", "sha256 differs"),
        (release, tmp_path / "val.zarr", root / "preds.csv", "split 'val'; expected MPII's test people"),
    ]
    for release_path, store, preds_path, message in cases:
        out = tmp_path / "out.mat"
        assert (
            cli.main(
                [
                    "mpii-submission",
                    "--release",
                    str(release_path),
                    "--store",
                    str(store),
                    "--preds",
                    str(preds_path),
                    "--out",
                    str(out),
                ]
            )
            == 1
        )
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_split_test_is_mpii_release_only(shared_data, tmp_path):
    with pytest.raises(UserError, match="--split test is MPII's test set"):
        convert(
            ConvertOptions(
                "lsp",
                shared_data / "lsp_sample/joints.mat",
                shared_data / "lsp_sample/images",
                tmp_path / "t.zarr",
                split="test",
                progress=False,
            )
        )
    with pytest.raises(UserError, match="not an hourglass .h5"):
        convert(
            ConvertOptions(
                "mpii",
                shared_data / "mpii_sample/valid.h5",
                shared_data / "mpii_sample/images",
                tmp_path / "t.zarr",
                split="test",
                progress=False,
            )
        )


def test_workflow_converts_the_test_split_from_the_release_alone():
    from pose_pipeline.config.schema import validate_config
    from pose_pipeline.workflow_lookups import converter_split, dataset_sources

    config = validate_config(
        {
            "datasets": {
                "mpii": {"format": "mpii", "annotations": "r.mat", "images": "img", "val_split": "d.mat"},
                "demo": {"format": "mpii", "synthetic": {"test": 3}},
            },
            "experiments": {"e": {"dataset": "mpii", "model": {"arch": "hourglass"}}},
        }
    )
    assert dataset_sources(config, "mpii", "test") == {"annotations": "r.mat", "images": "img"}
    assert "val_split" in dataset_sources(config, "mpii", "val")
    assert set(dataset_sources(config, "demo", "test")) == {"annotations", "images"}
    assert converter_split(config, "mpii", "test") == "test"
