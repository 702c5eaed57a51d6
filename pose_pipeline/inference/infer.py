"""`pose-pipeline infer`: keypoints for the people in your own images or video, with a trained
checkpoint.

One path with `predict`: each person's canvas is cut from the raw image with the converters'
own affine (`geometry.person_canvas_affine`) by convert's own cut (`images.ImageSource.canvas`),
from a box by the COCO converter's rule (`infer_inputs`: [x, y, w, h] -> centre, scale), and then
goes through the very functions `predict` uses (`inference.canvas_batch` and
`inference.predict_batch`: canvas -> input, model, flip test, codec decoding, inverse affines back
to original pixels). On the same person the network input equals the store's crop byte for byte.

Canvases are cut as the model's training store cut its crops (`models.training_canvas_of`: the store's
canvas_size, context and `reduced_decode`, recorded in the checkpoint; the converters' defaults
and the full decode for a checkpoint without the record), unless --canvas-size, --context or
--reduced-decode/--no-reduced-decode say otherwise. Reduced, a JPEG is decoded at 1/2-1/8 of its
size where the canvas allows it (DCT scaling), a video frame area-averaged by exactly that factor
(`images.ArrayImage`). An image is read once and decoded as its canvases need; in full only for
--draw (the box checks take its size from the JPEG header).

Without --boxes each image is one person, its whole image the box. Images that cannot be
read, boxes outside their image, boxes naming no input image and boxes with numbers out of
bounds (a coordinate or score not finite, a coordinate beyond convert's MAX_COORDINATE) are
skipped, each reported by name and listed in skipped.csv (an image that no box names is not
decoded, so not checked); keypoints are clipped to their image (a joint the model places in the
black margin beyond the image is set on the edge). Batches of people are cut ahead in a
background thread while the model runs (on a GPU; the CPU runs serially, see
`prefetch.depth_for`).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core import geometry
from pose_pipeline.errors import UserError
from pose_pipeline.inference.infer_inputs import Box, Frame, ImageInput, box_problem, read_boxes
from pose_pipeline.inference.infer_nms import PersonSelection, add_person_score_options
from pose_pipeline.inference.infer_options import InferOptions
from pose_pipeline.inference.infer_outputs import Drawings, Person, write_results

log = logging.getLogger(__name__)

DATASET = schema_defaults("dataset")  # canvas_size, context: the converters' canvas


@dataclass
class _Cut:
    """A person cut from its image, waiting for the model."""

    frame: int
    name: str
    image_shape: tuple
    box: Box


@dataclass
class _Batch:
    people: list[_Cut] = field(default_factory=list)
    canvases: list[np.ndarray] = field(default_factory=list)
    affines: list[np.ndarray] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)  # the frames whose people are all cut by now
    prepared: object = None  # inference.canvas_batch of the canvases


@dataclass(frozen=True)
class CanvasCut:
    """How each person's canvas is cut (`layout`, `reduced_decode`) and made the model's input
    (`codec`, on `device`)."""

    layout: object  # engine.CanvasLayout
    reduced_decode: bool
    codec: object
    device: object


def person_batches(
    images: ImageInput, boxes: dict | None, batch_size: int, cut: CanvasCut, skipped: list, keep_images: bool
):
    """Batches of `batch_size` people in input order, each with its canvases cut and prepared,
    and the frames finished with it (kept whole only when `keep_images`, for drawing)."""
    from pose_pipeline.inference.engine import canvas_batch

    def finish(batch: _Batch) -> _Batch:
        if batch.people:
            batch.prepared = canvas_batch(np.stack(batch.canvases), cut.layout, cut.codec, cut.device)
            batch.canvases = []
        return batch

    batch = _Batch()
    for frame in images.frames():
        for canvas, affine, person in frame_people(frame, boxes, cut.layout, cut.reduced_decode, skipped, keep_images):
            batch.canvases.append(canvas)
            batch.affines.append(affine)
            batch.people.append(person)
            if len(batch.people) == batch_size:
                yield finish(batch)
                batch = _Batch()
        batch.frames.append(frame)
        if keep_images and len(batch.frames) >= batch_size:  # kept frames without people do not pile up
            yield finish(batch)
            batch = _Batch()
    if batch.people or batch.frames:
        yield finish(batch)


def frame_people(frame: Frame, boxes: dict | None, layout, reduced_decode: bool, skipped: list, keep_images: bool):
    """(canvas, affine, _Cut) of each person of `frame` (its boxes, else its whole image), cut as
    convert cuts a store's crop (`ImageSource.canvas`); what cannot be cut goes to `skipped`.
    The image is decoded in full only when kept for drawing (`keep_images`): the box checks need
    its shape only, which a JPEG's header gives."""
    from pose_pipeline.data.formats.coco import person_boxes

    source, frame.source = frame.source, None  # released once its people are cut
    if keep_images:
        frame.image = source.decoded(1)[0]
    shape = source.shape()
    if shape is None:
        _skip_frame(frame, source.decoded(1)[1], skipped)
        return
    height, width = shape
    whole = [Box((0.0, 0.0, float(width), float(height)), 1.0, None, "whole image")]
    for box in whole if boxes is None else boxes.get(frame.position, []):
        problem = box_problem(box.bbox, shape)
        if problem:
            log.warning("skipped a box of %s: %s: %s", frame.name, box.where, problem)
            skipped.append((frame.name, json.dumps(list(box.bbox)), f"{box.where}: {problem}"))
            continue
        center, scale = person_boxes(np.array(box.bbox))
        affine = geometry.person_canvas_affine(center, scale, layout.canvas_size, layout.context)[0]
        canvas, problem = source.canvas(affine, layout.canvas_size, reduced_decode)
        if canvas is None:  # the image itself is undecodable: none of its boxes can be cut
            _skip_frame(frame, problem, skipped)
            return
        yield canvas, affine, _Cut(frame.position, frame.name, shape, box)


def _skip_frame(frame: Frame, problem: str, skipped: list) -> None:
    log.warning("skipped %s", problem)
    skipped.append((frame.name, "", problem))
    frame.image = None


def check_output_folder(out: Path, images, boxes, checkpoint) -> None:
    """`out` holds no input, lies outside the images and is new or an earlier infer output."""
    from pose_pipeline.config.option_bounds import check_output_folder_place
    from pose_pipeline.util.atomic import check_no_overlap, check_replaceable

    check_output_folder_place(out, "infer")
    check_no_overlap(
        out, {"image input": Path(images), "boxes file": boxes and Path(boxes), "checkpoint": Path(checkpoint)}
    )
    if Path(images).is_dir() and Path(images).resolve() in out.resolve().parents:
        raise UserError(
            f"--out {out} lies inside --images {images}: its drawings would be taken for input "
            "images next time; choose an output folder outside the images"
        )
    check_replaceable(out, "infer")


def infer(options: InferOptions) -> dict:
    """Infer and write the outputs (`infer_outputs`) to the folder `options.out`; returns a
    summary {people, images, skipped, out}. With boxes the people are rescored and OKS-NMSed by
    the two thresholds (`infer_nms`)."""
    out = Path(options.out)
    check_output_folder(out, options.images, options.boxes, options.checkpoint)
    source = ImageInput(options.images)
    by_position, skipped = _boxes_of(options.boxes, source)
    loaded, cut = _load_model(options)
    people = _infer_and_write(options, out, source, by_position, skipped, loaded, cut)
    if skipped:
        log.warning("skipped %d images or boxes, listed in %s", len(skipped), out / "skipped.csv")
    return {"people": len(people), "images": len(source), "skipped": len(skipped), "out": str(out)}


def _load_model(options: InferOptions):
    """(LoadedModel, CanvasCut): the checkpoint's model on its device, and the canvas cut."""
    from pose_pipeline.inference.loaded_model import load_for_inference
    from pose_pipeline.util.devices import resolve_device

    device = resolve_device(options.device)
    loaded = load_for_inference(options.checkpoint, device, options.input_size, options.blur_sigma)
    codec, joints = loaded.codec, loaded.joints
    layout, reduced_decode = _canvas_cut(loaded, options.canvas_size, options.context, options.reduced_decode)
    message = "inferring %s on %s at %d px (flip test %s, %s joints; canvas %d, context %g, %s decode)"
    flip, decode = "on" if options.flip_test else "off", "reduced" if reduced_decode else "full"
    log.info(
        message, options.images, device, codec.input_size, flip, joints.name, layout.canvas_size, layout.context, decode
    )
    return loaded, CanvasCut(layout, reduced_decode, codec, device)


def _infer_and_write(
    options: InferOptions, out: Path, source: ImageInput, by_position, skipped: list, loaded, cut: CanvasCut
) -> list[Person]:
    """The people predicted batch by batch (cut ahead in a background thread), written with the
    drawings into `out` at once (`atomic_folder`)."""
    from tqdm import tqdm

    from pose_pipeline.inference.engine import predict_batch
    from pose_pipeline.util.atomic import atomic_folder
    from pose_pipeline.util.prefetch import Prefetcher, depth_for

    batches = Prefetcher(
        person_batches(source, by_position, options.batch_size, cut, skipped, options.draw),
        lambda batch: batch,
        depth=depth_for(cut.device, 2),
        name="infer-batches",
    )

    def predict(batch):
        affines = np.stack(batch.affines)
        return predict_batch(
            loaded.model, batch.prepared, affines, cut.layout, cut.codec, options.flip_test, cut.device
        )

    with (
        atomic_folder(out, "infer") as tmp,
        batches,
        tqdm(total=len(source), desc="infer", unit="img", disable=not options.progress, mininterval=2) as bar,
    ):
        # detector boxes: the top-down COCO protocol's rescoring and OKS-NMS, image by image
        selection = (
            PersonSelection(loaded.joints, options.keypoint_score_threshold, options.oks_nms_threshold)
            if options.boxes is not None
            else None
        )
        people, total = _drawn_people(tmp, source, loaded.joints, options.draw, batches, predict, bar, selection)
        if not people:
            raise UserError(
                f"--images {options.images}: no person to infer, every image or box was skipped "
                f"({len(skipped)}; first: {skipped[0][2] if skipped else 'none'})"
            )
        header = _header(options, cut)
        if selection is not None:
            header["person_scores"] = selection.record(total)
        write_results(tmp, people, skipped, loaded.joints, header)
    return people


def _canvas_cut(loaded, canvas_size: int | None, context: float | None, reduced_decode: bool | None):
    """(CanvasLayout, reduced_decode): the canvas cut given (not None), else as the model's
    training store cut its crops (`LoadedModel.canvas`)."""
    from pose_pipeline.inference.engine import CanvasLayout

    given = {"canvas_size": canvas_size, "context": context, "reduced_decode": reduced_decode}
    cut = {key: loaded.canvas[key] if given[key] is None else given[key] for key in loaded.canvas}
    return CanvasLayout(cut["canvas_size"], cut["context"], loaded.joints), cut["reduced_decode"]


def _header(options: InferOptions, cut: CanvasCut) -> dict:
    """What keypoints.json records of a run: its inputs and settings."""
    return {
        "checkpoint": str(options.checkpoint),
        "images": str(options.images),
        "input_size": cut.codec.input_size,
        "flip_test": options.flip_test,
        "blur_sigma": cut.codec.blur_sigma or 0.0,
        "canvas_size": cut.layout.canvas_size,
        "context": cut.layout.context,
        "reduced_decode": cut.reduced_decode,
        "boxes": str(options.boxes) if options.boxes else "whole image (no --boxes)",
    }


def _boxes_of(boxes, source: ImageInput) -> tuple[dict | None, list[tuple[str, str, str]]]:
    """The boxes by input position (None: whole images) and the boxes naming no input image."""
    if boxes is None:
        log.info("no --boxes: one person per image, the whole image as its box")
        return None, []
    by_position, skipped = read_boxes(boxes, source)
    for image, _, reason in skipped:
        log.warning("skipped a box of %s: %s", image, reason)
    if not by_position:
        raise UserError(
            f"--boxes {boxes}: no person box for any image of {source.path}"
            + (f" (first: {skipped[0][2]})" if skipped else "")
        )
    return by_position, skipped


def _drawn_people(
    tmp: Path, source: ImageInput, joints, draw: bool, batches, predict, bar, selection: PersonSelection | None
) -> tuple[list[Person], int]:
    """`_predict_people`, with the drawings (`--draw`) written under `tmp` meanwhile."""
    drawings = Drawings(tmp, joints, source.path.name if source.is_video else None, source.fps) if draw else None
    try:
        return _predict_people(batches, predict, drawings, bar, selection)
    finally:
        if drawings is not None:
            drawings.close()


def _predict_people(
    batches, predict, drawings: Drawings | None, bar, selection: PersonSelection | None
) -> tuple[list[Person], int]:
    """(the people of all batches kept by `selection` (all without one), in input order; how
    many were predicted). `predict`: a batch -> preds, scores, loss. Each frame is selected and
    drawn once its people are all predicted."""
    people: list[Person] = []
    total = 0
    waiting: dict[int, list[Person]] = {}  # a frame's people until the frame is finished
    for batch in batches:
        if batch.people:
            preds, scores, _ = predict(batch)
            for cut, points, confidence in zip(batch.people, preds, scores):
                waiting.setdefault(cut.frame, []).append(_person(cut, points, confidence))
        for frame in batch.frames:
            found = waiting.pop(frame.position, [])
            total += len(found)
            found = selection.image(found) if selection is not None else found
            people.extend(found)
            # every frame of a video; of images, those with people
            if drawings is not None and frame.image is not None and (found or drawings.video_name):
                drawings.add(frame.name, frame.image, found)
            bar.update(1)
    if waiting:  # person_batches finishes every frame it cut people from
        raise RuntimeError(f"frames {sorted(waiting)} were never finished")
    return people, total


def _person(cut: _Cut, points: np.ndarray, confidence: np.ndarray) -> Person:
    """The result of one person, its keypoints clipped to its image."""
    height, width = cut.image_shape[:2]
    clipped = np.stack([np.clip(points[:, 0], 0, width - 1), np.clip(points[:, 1], 0, height - 1)], axis=1)
    image_id = cut.box.image_id if cut.box.image_id is not None else cut.frame
    return Person(cut.frame, cut.name, image_id, cut.box.bbox, cut.box.score, clipped, confidence)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model checkpoint (this project's or PyTorch-Pose)")
    p.add_argument(
        "--images", required=True, help="an image file, a folder of images (searched recursively) or a video file"
    )
    p.add_argument(
        "--boxes",
        help="person boxes: a COCO detection-results .json or a CSV image,x,y,w,h[,score] "
        "(default: each image is one person, the whole image its box)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder (keypoints.json, keypoints.csv, skipped.csv, drawings/): new, empty, "
        "or an earlier infer output, marked by its pose-pipeline-infer.json (replaced)",
    )
    p.add_argument("--draw", action="store_true", help="draw the skeletons on the images (a video: an annotated video)")
    from pose_pipeline.inference.engine import add_evaluation_options

    add_evaluation_options(p, "people")
    p.add_argument(
        "--canvas-size",
        type=int,
        default=None,
        help="side of the canvas cut around each person, as the converters cut it (default: the "
        "training store's, recorded with the model, which reproduces its crops exactly; "
        f"{DATASET['canvas_size']} for a checkpoint that does not record it)",
    )
    p.add_argument(
        "--context",
        type=float,
        default=None,
        help="canvas = person box x context (default: the training store's; "
        f"{DATASET['context']} for a checkpoint that does not record it)",
    )
    p.add_argument(
        "--reduced-decode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cut each canvas from the image decoded at 1/2-1/8 of its size where the canvas shrinks "
        "the person that much (area-averaged, as convert does by default); --no-reduced-decode: "
        "from the full decode (default: as the checkpoint's training store was cut; full for a "
        "checkpoint that does not record it)",
    )
    add_person_score_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    summary = infer(InferOptions.from_args(args))
    print(f"{summary['out']}: {summary['people']} people in {summary['images']} images, {summary['skipped']} skipped")
    return 0
