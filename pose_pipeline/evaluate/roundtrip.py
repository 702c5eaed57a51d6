"""`pose-pipeline roundtrip`: how much accuracy do the heatmap settings cost, before training?

Every annotated joint is encoded into the training target (a Gaussian at its sub-pixel
heatmap position) and decoded back to original image pixels with the same `HeatmapCodec` that training
(`encode`) and prediction (`decode`) use. The result is an "oracle" prediction file:
score it like any other to see the ceiling the target representation sets.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec

log = logging.getLogger(__name__)

TRAINING = schema_defaults("experiment", "training")  # input_size, heatmap_size, sigma: the one home
EVALUATION = schema_defaults("experiment", "evaluation")  # blur_sigma, named in --blur-sigma's help


def encode_decode(
    points: np.ndarray, weights: np.ndarray, to_heatmap: np.ndarray, codec: HeatmapCodec, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """points (N,J,2) image array coords -> (decoded (N,J,2) image array coords, encoded (N,J)
    bool: the joint had a target, i.e. was weighted and fell inside the heatmap)."""
    decoded = np.full(points.shape, np.nan)
    encoded = np.zeros(points.shape[:2], bool)
    for start in range(0, len(points), batch_size):
        stop = min(start + batch_size, len(points))
        in_heatmap = geometry.apply(to_heatmap[start:stop], points[start:stop])
        targets, w = codec.encode(in_heatmap, weights[start:stop])
        coords, _ = codec.decode(targets.numpy())
        back = geometry.apply(geometry.invert(to_heatmap[start:stop]), coords)
        ok = w.numpy() > 0
        decoded[start:stop][ok] = back[ok]
        encoded[start:stop] = ok
    return decoded, encoded


def _annotations(path: Path, codec: HeatmapCodec):
    """(keypoints, annotated, pixel origin, image -> heatmap affines, head sizes) of an
    hourglass .h5 (the person box fills the input) or a converted store (its canvases)."""
    if path.suffix in (".h5", ".hdf5"):
        from pose_pipeline.data.formats import mpii

        people = mpii.read_hourglass_h5(path, is_train=False)
        to_heatmap = codec.person_to_heatmap(geometry.annotated_to_array(people.center, 1.0), people.scale)
        return people.keypoints, people.annotated, 1.0, to_heatmap, people.head_size
    from pose_pipeline.data.store import open_store

    store = open_store(path)
    to_heatmap = codec.image_to_heatmap(store.affine, store.canvas_size, store.context)
    return store.keypoints, store.visible > 0, store.pixel_origin, to_heatmap, store.head_size


def roundtrip(annotations, out_mat, codec: HeatmapCodec | None = None) -> dict:
    """Oracle predictions for an annotation file (hourglass .h5) or a converted store,
    through `codec` (default: the schema's training input_size, heatmap_size and sigma; no blur).

    An annotated joint outside the crop has no target; the best a heatmap model can do is the
    nearest heatmap border point, which is what the oracle predicts for it. Returns a summary
    with the mean error in head units over the annotated joints.
    """
    from pose_pipeline.inference.prediction_files import write_predictions_mat

    codec = codec or HeatmapCodec(TRAINING["input_size"], TRAINING["heatmap_size"], TRAINING["sigma"])
    keypoints, annotated, origin, to_heatmap, head_size = _annotations(Path(annotations), codec)
    points = geometry.annotated_to_array(np.asarray(keypoints, np.float64), origin)
    decoded, encoded = encode_decode(points, annotated.astype(np.float32), to_heatmap, codec)
    border = np.clip(geometry.apply(to_heatmap, np.nan_to_num(points)), 0, codec.heatmap_size - 1)
    decoded = np.where(encoded[..., None], decoded, geometry.apply(geometry.invert(to_heatmap), border))
    error = np.linalg.norm(decoded - points, axis=-1) / np.asarray(head_size)[:, None]
    annotated = np.asarray(annotated, bool)
    write_predictions_mat(out_mat, geometry.array_to_annotated(decoded, origin))
    return {
        "people": len(points),
        "joints_encoded": int(encoded.sum()),
        "joints_annotated": int(annotated.sum()),
        "mean_error_head_units": float(error[annotated].mean()),
        "max_error_head_units": float(error[annotated].max()),
    }


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", required=True, help="hourglass valid.h5/train.h5 or a converted store")
    p.add_argument("--out", required=True, help="oracle prediction file (MATLAB `preds`)")
    p.add_argument("--input-size", type=int, default=TRAINING["input_size"], help="network input side in pixels")
    p.add_argument("--heatmap-size", type=int, default=None, help="heatmap side (default: input size / 4)")
    p.add_argument(
        "--sigma", type=float, default=TRAINING["sigma"], help="Gaussian sigma of the targets, in heatmap pixels"
    )
    # No blur by default: the oracle measures the targets' own ceiling; predict's blur is a choice on top.
    p.add_argument(
        "--blur-sigma",
        type=float,
        default=0.0,
        help="heatmap blur before decoding, in heatmap pixels; 0: none, the representation's own ceiling "
        f"(predict blurs by evaluation.blur_sigma, {EVALUATION['blur_sigma']:g} by default)",
    )


def run(args: argparse.Namespace) -> int:
    codec = HeatmapCodec(args.input_size, args.heatmap_size, args.sigma, args.blur_sigma)
    summary = roundtrip(args.annotations, args.out, codec)
    print(
        f"{args.out}: {summary['joints_encoded']} of {summary['joints_annotated']} annotated joints "
        f"encoded; mean error {summary['mean_error_head_units']:.4f} head units "
        f"(max {summary['max_error_head_units']:.4f})"
    )
    return 0
