"""`pose-pipeline predict`: keypoints in original image coordinates, with flip test.

Each crop goes canvas -> input (no augmentation), through the model; with flip test the
mirrored input's heatmaps are mirrored back (joint channels swapped) and averaged. Peaks
are decoded to sub-pixel heatmap positions and mapped back through the inverse of
original -> canvas -> input -> heatmap, ending in the dataset's annotated pixel convention.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from pose_pipeline import geometry
from pose_pipeline.data import make_batch
from pose_pipeline.devices import autocast, resolve_device
from pose_pipeline.store import PoseStore, open_store

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_heatmaps(model: torch.nn.Module, x: torch.Tensor, flip_permutation: np.ndarray,
                     flip_test: bool) -> torch.Tensor:
    """Last stack's heatmaps (B,J,h,w), averaged with the mirrored input's when flip_test."""
    with autocast(x.device):
        heatmaps = model(x)[-1].float()
        if flip_test:
            mirrored = model(torch.flip(x, dims=[3]))[-1].float()
            perm = torch.as_tensor(flip_permutation, device=x.device)
            heatmaps = 0.5 * (heatmaps + torch.flip(mirrored, dims=[3])[:, perm])
    return heatmaps


def predict_store(model: torch.nn.Module, store: PoseStore, input_size: int, heatmap_size: int,
                  flip_test: bool = True, batch_size: int = 32, blur_sigma: float = 1.0,
                  device: torch.device | None = None, progress: bool = False):
    """Predictions for every sample of a store -> (preds (N,J,2) annotated convention,
    scores (N,J))."""
    from tqdm import tqdm

    device = device or next(model.parameters()).device
    model.eval()
    joints = store.joint_set
    flip_perm = joints.flip_permutation()
    n = len(store)
    canvas, context = store.canvas_size, store.context
    to_input = geometry.canvas_to_input_affine(canvas, context, input_size)[0]
    to_heatmap = geometry.compose(geometry.input_to_heatmap_affine(input_size, heatmap_size), to_input)
    preds = np.zeros((n, joints.num_joints, 2))
    scores = np.zeros((n, joints.num_joints))
    dummy_kp = np.zeros((batch_size, joints.num_joints, 2))
    dummy_vis = np.zeros((batch_size, joints.num_joints), np.uint8)
    for start in tqdm(range(0, n, batch_size), desc="predict", unit="batch", disable=not progress):
        stop = min(start + batch_size, n)
        images = store.images(start, stop)
        x, _, _ = make_batch(images, dummy_kp[: stop - start], dummy_vis[: stop - start], canvas,
                             context, input_size, heatmap_size, 1.0, flip_perm, device)
        heatmaps = predict_heatmaps(model, x, flip_perm, flip_test).cpu().numpy()
        coords, peak = geometry.decode_heatmaps(heatmaps, blur_sigma or None)
        # heatmap -> original image array coordinates, per sample
        back = geometry.invert(geometry.compose(to_heatmap, store.affine[start:stop]))
        preds[start:stop] = geometry.apply(back, coords)
        scores[start:stop] = peak
    return geometry.array_to_annotated(preds, store.pixel_origin), scores


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model checkpoint (this project's or PyTorch-Pose)")
    p.add_argument("--store", required=True, help="converted store to predict")
    p.add_argument("--out-mat", required=True, help="reference prediction file (MATLAB `preds`, N x J x 2)")
    p.add_argument("--out-csv", required=True, help="the same as a table: sample,image,joint,x,y,score")
    p.add_argument("--input-size", type=int, default=256, help="network input side (heatmaps are 1/4)")
    p.add_argument("--no-flip-test", dest="flip_test", action="store_false")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--blur-sigma", type=float, default=1.0, help="heatmap blur before decoding (0 = none)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def run(args: argparse.Namespace) -> int:
    from pose_pipeline.models import load_model
    from pose_pipeline.score import write_predictions_csv, write_predictions_mat

    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location="cpu").to(device)
    input_size = args.input_size
    store = open_store(args.store)
    log.info("predicting %d samples of %s on %s (flip test %s)", len(store), args.store, device,
             "on" if args.flip_test else "off")
    preds, scores = predict_store(model, store, input_size, input_size // 4, args.flip_test,
                                  args.batch_size, args.blur_sigma, device, progress=True)
    Path(args.out_mat).parent.mkdir(parents=True, exist_ok=True)
    write_predictions_mat(args.out_mat, preds)
    write_predictions_csv(args.out_csv, preds, scores, list(store.image_name), store.joint_set)
    print(f"{args.out_mat}: {preds.shape[0]} x {preds.shape[1]} x 2 predictions")
    return 0
