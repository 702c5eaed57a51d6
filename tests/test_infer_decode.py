"""How infer decodes: one cut with convert (`images.ImageSource.canvas`), so a person's canvas
equals the store's crop byte for byte with either decode; video frames reduced by exact area
averaging (`images.ArrayImage`); and by default the decode the model was trained with."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import blob_image, box_of_person, centroid, mpii_sample_stores, random_checkpoint

from pose_pipeline import cli
from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core import geometry
from pose_pipeline.core.joints import MPII
from pose_pipeline.data.images import ArrayImage, SourceImage, jpeg_reduction, load_image
from pose_pipeline.inference import engine as inference
from pose_pipeline.inference.engine import CanvasLayout
from pose_pipeline.inference.infer import frame_people
from pose_pipeline.inference.infer_inputs import Box, ImageInput
from pose_pipeline.models import read_checkpoint, training_canvas_of

CANVAS = 128  # the MPII sample's people are large against it: reductions 4 and 8


def mpii_stores(shared_data, tmp_path) -> dict:
    """The MPII sample converted at CANVAS with the reduced decode and with the full decode."""
    stores = mpii_sample_stores(shared_data, tmp_path, CANVAS)
    assert sorted(jpeg_reduction(a) for a in stores[True].affine) == [4, 8, 8, 8, 8]
    assert not np.array_equal(stores[True].images(), stores[False].images())  # the decodes do differ
    return stores


def person_boxes_of(store) -> list[list[float]]:
    center = geometry.annotated_to_array(store.center, store.pixel_origin)
    return [box_of_person(c, s) for c, s in zip(center, store.scale)]


def test_infer_cuts_the_stores_crops_byte_for_byte_with_either_decode(shared_data, tmp_path):
    stores = mpii_stores(shared_data, tmp_path)
    images = ImageInput(shared_data / "mpii_sample" / "images")
    for reduced, store in stores.items():
        boxes: dict[int, list[Box]] = {}
        for i, (name, bbox) in enumerate(zip(store.image_name, person_boxes_of(store))):
            boxes.setdefault(images.names.index(name), []).append(Box(tuple(bbox), 1.0, i, f"sample {i}"))
        layout = CanvasLayout(store.canvas_size, store.context, store.joint_set)
        skipped: list = []
        cut = 0
        for frame in images.frames():
            for canvas, affine, person in frame_people(frame, boxes, layout, reduced, skipped, keep_images=False):
                i = person.box.image_id  # the store's sample index
                np.testing.assert_allclose(affine, store.affine[i], atol=1e-9)
                assert np.array_equal(canvas, store.images(i, i + 1)[0]), (reduced, store.image_name[i])
                cut += 1
            assert frame.source is None and frame.image is None  # nothing kept once cut
        assert cut == len(store) and skipped == []


def test_infer_uses_the_decode_the_checkpoint_was_trained_with(shared_data, tmp_path, monkeypatch, capfd):
    stores = mpii_stores(shared_data, tmp_path)
    store = stores[True]
    with open(tmp_path / "boxes.csv", "w", newline="") as f:
        rows = csv.writer(f)
        for name, bbox in zip(store.image_name, person_boxes_of(store)):
            rows.writerow([name, *map(repr, bbox)])
    cut: list[np.ndarray] = []  # the canvases infer hands to the model, in input order
    real_canvas_batch = inference.canvas_batch

    def canvas_batch(canvases, *args):
        cut.extend(canvases)
        return real_canvas_batch(canvases, *args)

    monkeypatch.setattr(inference, "canvas_batch", canvas_batch)
    order = sorted(range(len(store)), key=lambda i: (store.image_name[i], i))  # infer's input order
    reduced_model = random_checkpoint(tmp_path / "reduced.pt", {"reduced_decode": True, "format": "mpii"})
    old_model = random_checkpoint(tmp_path / "old.pt", None)
    for model, option, expected in [
        (reduced_model, None, True),
        (reduced_model, "--no-reduced-decode", False),
        (old_model, None, False),  # recorded nothing: trained on full decodes
        (old_model, "--reduced-decode", True),
    ]:
        cut.clear()
        out = tmp_path / f"out_{model.stem}_{option}"
        args = ["--images", shared_data / "mpii_sample" / "images", "--boxes", tmp_path / "boxes.csv"]
        args += ["--checkpoint", model, "--out", out, "--canvas-size", CANVAS, "--context", store.context]
        code = cli.main(["infer", *map(str, args), *([option] if option else [])])
        assert code == 0, capfd.readouterr().err
        assert json.loads((out / "keypoints.json").read_text())["header"]["reduced_decode"] is expected
        assert len(cut) == len(store)
        for canvas, i in zip(cut, order):
            assert np.array_equal(canvas, stores[expected].images(i, i + 1)[0]), (model.name, option, i)


def test_the_recorded_canvas_of_a_checkpoint():
    recorded = {"converter": {"reduced_decode": True, "canvas_size": 96, "context": 1.5, "shard_size": 8}}
    assert training_canvas_of(recorded) == {"canvas_size": 96, "context": 1.5, "reduced_decode": True}
    dataset = schema_defaults("dataset")
    defaults = {"canvas_size": dataset["canvas_size"], "context": dataset["context"], "reduced_decode": False}
    full = {"converter": {"canvas_size": 96, "context": 1.5}}  # a full-decode store records no key
    assert training_canvas_of(full)["reduced_decode"] is False
    assert training_canvas_of({}) == defaults  # PyTorch-Pose's, and ours from before the record
    assert training_canvas_of({"converter": None}) == defaults


def test_a_checkpoint_recording_its_converter_loads_and_exports_saying_how_to_cut(tmp_path):
    """The record loads as before (weights_only: plain containers), and an export's description
    says how the training crops were cut."""
    path = random_checkpoint(tmp_path / "m.pt", {"reduced_decode": True, "canvas_size": 128, "context": 1.75})
    record = read_checkpoint(path)
    assert record["converter"]["reduced_decode"] is True
    from pose_pipeline.inference.export import crop_pose_model, description_path

    model, codec, joints, _ = crop_pose_model(str(path))
    assert codec.input_size == 64 and joints.name == MPII.name
    out = tmp_path / "m.torchscript"
    assert cli.main(["export", "--checkpoint", str(path), "--format", "torchscript", "--out", str(out)]) == 0
    crops = json.loads(description_path(out).read_text())["crops"]
    assert {k: crops[k] for k in ("canvas_size", "context", "reduced_decode")} == {
        "canvas_size": 128,
        "context": 1.75,
        "reduced_decode": True,
    }


# ------------------------------------------------------------------------ array sources (video)


@pytest.mark.parametrize("box", [800.0, 1600.0, 3200.0])  # reductions 2, 4, 8 at canvas 384
def test_the_array_source_keeps_the_geometry_exact(box):
    points = np.array([[400.3, 250.7], [780.8, 460.2], [612.5, 365.5], [450.1, 520.9]])
    image = blob_image(points, size=(717, 1277))  # not a multiple of 8: the edge is padded
    affine = geometry.crop_affine(np.array([583.0, 340.0]), box, 384, rotation_deg=17)
    reduce = jpeg_reduction(affine)
    assert reduce == {800.0: 2, 1600.0: 4, 3200.0: 8}[box]
    source = ArrayImage(image)
    crops = {reduced: source.canvas(affine, 384, reduced)[0] for reduced in (False, True)}
    assert source.decoded(reduce)[0].shape == (-(-717 // reduce), -(-1277 // reduce), 3)
    assert not np.array_equal(crops[False], crops[True])  # it did cut from the reduced image
    radius = int(3 * 20.0 * np.linalg.norm(affine[:, :2], 2)) + 1
    for at in geometry.apply(affine, points):
        full, reduced = centroid(crops[False], at, radius), centroid(crops[True], at, radius)
        assert np.abs(full - at).max() < 0.15 and np.abs(reduced - at).max() < 0.15
        assert np.abs(reduced - full).max() < 0.05, reduced - full


def test_the_array_source_reduces_as_the_jpeg_decoder_does(shared_data):
    """Area averaging by exactly the factor equals libjpeg's DCT-scaled decode of the same image
    within a grey level or two (MPII photographs, and small LSP ones of odd sizes)."""
    paths = sorted((shared_data / "mpii_sample" / "images").glob("*.jpg"))
    paths += sorted((shared_data / "lsp_sample" / "images").glob("*.jpg"))[:3]
    for path in paths:
        array, jpeg = ArrayImage(load_image(path)[0]), SourceImage(path)
        for reduce in (2, 4, 8):
            difference = np.abs(array.decoded(reduce)[0].astype(int) - jpeg.decoded(reduce)[0])
            assert difference.mean() < 1.5 and np.percentile(difference, 90) <= 3, (path.name, reduce)
