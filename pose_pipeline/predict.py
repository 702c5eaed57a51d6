"""`pose-pipeline predict`: keypoints in original image coordinates, with flip test.

Each crop goes canvas -> input (no augmentation), through the model; with flip test the
mirrored input's heatmaps are mirrored back (joint channels swapped) and averaged. Peaks
are decoded to sub-pixel heatmap positions and mapped back through the inverse of
original -> canvas -> input -> heatmap, ending in the dataset's annotated pixel convention.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from pose_pipeline import geometry
from pose_pipeline.codec import HeatmapCodec
from pose_pipeline.data import make_batch
from pose_pipeline.devices import autocast, resolve_device
from pose_pipeline.loss import heatmap_loss
from pose_pipeline.store import PoseStore, open_store

log = logging.getLogger(__name__)


def predict_store(model: torch.nn.Module, store: PoseStore, codec: HeatmapCodec, flip_test: bool = True,
                  batch_size: int = 32, device: torch.device | None = None, progress: bool = False):
    """Predictions for every sample of a store, decoded by `codec` (its blur included).

    Returns (preds (N,J,2) in the store's annotated pixel convention, scores (N,J) peak
    heights, loss: the training loss (the codec's targets) on these samples without
    augmentation).
    """
    from tqdm import tqdm

    device = device or next(model.parameters()).device
    model.eval()
    flip_perm = store.joint_set.flip_permutation()
    n, num_joints = len(store), store.joint_set.num_joints
    keypoints, visible = store.keypoints_in_canvas(), store.visible
    preds = np.zeros((n, num_joints, 2))
    scores = np.zeros((n, num_joints))
    loss_sum = 0.0
    for start in tqdm(range(0, n, batch_size), desc="predict", unit="batch", disable=not progress,
                      mininterval=5):
        stop = min(start + batch_size, n)
        x, targets, weights = make_batch(store.images(start, stop), keypoints[start:stop],
                                         visible[start:stop], store, codec, device)
        with torch.no_grad(), autocast(device):
            outputs = model(x)
            loss_sum += float(heatmap_loss(outputs, targets, weights)) * (stop - start)
            heatmaps = outputs[-1].float()
            if flip_test:
                # the mirrored input's heatmaps, mirrored back with left/right channels swapped
                mirrored = model(torch.flip(x, dims=[3]))[-1].float()
                perm = torch.as_tensor(flip_perm, device=device)
                heatmaps = 0.5 * (heatmaps + torch.flip(mirrored, dims=[3])[:, perm])
        coords, scores[start:stop] = codec.decode(heatmaps.cpu().numpy())
        # heatmap -> canvas -> original image array coordinates
        to_heatmap = codec.image_to_heatmap(store.affine[start:stop], store.canvas_size, store.context)
        preds[start:stop] = geometry.apply(geometry.invert(to_heatmap), coords)
    return geometry.array_to_annotated(preds, store.pixel_origin), scores, loss_sum / max(n, 1)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model checkpoint (this project's or PyTorch-Pose)")
    p.add_argument("--store", required=True, help="converted store to predict")
    p.add_argument("--out-mat", required=True, help="reference prediction file (MATLAB `preds`, N x J x 2)")
    p.add_argument("--out-csv", required=True, help="the same as a table: sample,image,joint,x,y,score")
    p.add_argument("--input-size", type=int, default=None,
                   help="network input side, heatmaps 1/4 of it (codec.HEATMAP_STRIDE; default: the checkpoint's training size, else 256)")
    p.add_argument("--no-flip-test", dest="flip_test", action="store_false")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--blur-sigma", type=float, default=1.0, help="heatmap blur before decoding (0 = none)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def run(args: argparse.Namespace) -> int:
    from pose_pipeline.models import load_model, read_checkpoint
    from pose_pipeline.predictions import write_predictions_csv, write_predictions_mat

    device = resolve_device(args.device)
    store = open_store(args.store)
    model = load_model(args.checkpoint, expect={"joints": store.joint_set.num_joints}, device=device)
    input_size = args.input_size or int(read_checkpoint(args.checkpoint).get("input_size", 256))
    log.info("predicting %d samples of %s on %s at %d px (flip test %s)", len(store), args.store,
             device, input_size, "on" if args.flip_test else "off")
    codec = HeatmapCodec(input_size, blur_sigma=args.blur_sigma)
    preds, scores, _ = predict_store(model, store, codec, args.flip_test, args.batch_size, device, progress=True)
    write_predictions_mat(args.out_mat, preds)
    write_predictions_csv(args.out_csv, preds, list(store.image_name), list(store.joint_set.joints), scores)
    print(f"{args.out_mat}: {preds.shape[0]} x {preds.shape[1]} x 2 predictions")
    return 0
