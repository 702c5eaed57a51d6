"""`pose-pipeline roundtrip`: how much accuracy do the heatmap settings cost, before training?

Every annotated joint is encoded into the training target (a Gaussian at its sub-pixel
heatmap position) and decoded back to original image pixels with exactly the functions that
training (`geometry.encode_heatmaps`) and prediction (`geometry.decode_heatmaps`) use. The
result is an "oracle" prediction file: score it like any other to see the ceiling the
target representation sets.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from pose_pipeline import geometry

log = logging.getLogger(__name__)

PERSON_BOX = 200.0  # pixels per unit of scale (MPII / hourglass convention)


def person_to_heatmap_affines(center, scale, input_size: int, heatmap_size: int) -> np.ndarray:
    """(N,2,3) original image array coordinates -> heatmap, for the person box
    (200 x scale, hourglass convention) shown at `input_size`, heatmaps 1/4 of it."""
    to_input = geometry.crop_affine(center, PERSON_BOX * np.asarray(scale, np.float64), input_size)
    return geometry.compose(geometry.input_to_heatmap_affine(input_size, heatmap_size), to_input)


def encode_decode(points: np.ndarray, weights: np.ndarray, to_heatmap: np.ndarray,
                  heatmap_size: int, sigma: float, blur_sigma: float | None = None,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """points (N,J,2) image array coords -> (decoded (N,J,2) image array coords, encoded (N,J)
    bool: the joint had a target, i.e. was weighted and fell inside the heatmap)."""
    decoded = np.full(points.shape, np.nan)
    encoded = np.zeros(points.shape[:2], bool)
    for start in range(0, len(points), batch_size):
        stop = min(start + batch_size, len(points))
        in_heatmap = geometry.apply(to_heatmap[start:stop], points[start:stop])
        targets, w = geometry.encode_heatmaps(in_heatmap, weights[start:stop], heatmap_size, sigma)
        coords, _ = geometry.decode_heatmaps(targets.numpy(), blur_sigma)
        back = geometry.apply(geometry.invert(to_heatmap[start:stop]), coords)
        ok = w.numpy() > 0
        decoded[start:stop][ok] = back[ok]
        encoded[start:stop] = ok
    return decoded, encoded


def roundtrip(annotations, out_mat, input_size: int = 256, heatmap_size: int = 64,
              sigma: float = 1.0, blur_sigma: float | None = None) -> dict:
    """Oracle predictions for an annotation file (hourglass .h5) or a converted store.

    An annotated joint outside the crop has no target; the best a heatmap model can do is the
    nearest heatmap border point, which is what the oracle predicts for it. Returns a summary
    with the mean error in head units over the annotated joints.
    """
    from pose_pipeline.predictions import write_predictions_mat

    annotations = Path(annotations)
    if annotations.suffix in (".h5", ".hdf5"):
        from pose_pipeline.formats import mpii

        people = mpii.read_hourglass_h5(annotations, is_train=False)
        keypoints, annotated, origin = people.keypoints, people.annotated, 1.0
        to_heatmap = person_to_heatmap_affines(geometry.annotated_to_array(people.center, origin),
                                               people.scale, input_size, heatmap_size)
        head_size = people.head_size
    else:
        from pose_pipeline.store import open_store

        store = open_store(annotations)
        keypoints, annotated, origin = store.keypoints, store.visible > 0, store.pixel_origin
        to_input = geometry.compose(
            geometry.canvas_to_input_affine(store.canvas_size, store.context, input_size), store.affine)
        to_heatmap = geometry.compose(geometry.input_to_heatmap_affine(input_size, heatmap_size), to_input)
        head_size = store.head_size
    points = geometry.annotated_to_array(np.asarray(keypoints, np.float64), origin)
    decoded, encoded = encode_decode(points, annotated.astype(np.float32), to_heatmap,
                                     heatmap_size, sigma, blur_sigma)
    border = np.clip(geometry.apply(to_heatmap, np.nan_to_num(points)), 0, heatmap_size - 1)
    decoded = np.where(encoded[..., None], decoded, geometry.apply(geometry.invert(to_heatmap), border))
    error = np.linalg.norm(decoded - points, axis=-1) / np.asarray(head_size)[:, None]
    annotated = np.asarray(annotated, bool)
    write_predictions_mat(out_mat, geometry.array_to_annotated(decoded, origin))
    return {"people": len(points), "joints_encoded": int(encoded.sum()),
            "joints_annotated": int(annotated.sum()),
            "mean_error_head_units": float(error[annotated].mean()),
            "max_error_head_units": float(error[annotated].max())}


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", required=True, help="hourglass valid.h5/train.h5 or a converted store")
    p.add_argument("--out", required=True, help="oracle prediction file (MATLAB `preds`)")
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--heatmap-size", type=int, default=64)
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--blur-sigma", type=float, default=0.0, help="blur before decoding, as predict does (0 = none)")


def run(args: argparse.Namespace) -> int:
    summary = roundtrip(args.annotations, args.out, args.input_size, args.heatmap_size, args.sigma,
                        args.blur_sigma or None)
    print(f"{args.out}: {summary['joints_encoded']} of {summary['joints_annotated']} annotated joints "
          f"encoded; mean error {summary['mean_error_head_units']:.4f} head units "
          f"(max {summary['max_error_head_units']:.4f})")
    return 0
