"""Applying a trained model to a store: the one inference path, shared by validation during
training and by the `predict` stage.

Each crop goes canvas -> input (no augmentation), through the model; with flip test the
mirrored input's heatmaps are mirrored back (joint channels swapped) and averaged. Peaks
are decoded to sub-pixel heatmap positions by the codec and mapped back through the inverse
of original -> canvas -> input -> heatmap, ending in the dataset's annotated pixel convention.
"""

from __future__ import annotations

import numpy as np
import torch

from pose_pipeline import geometry
from pose_pipeline.codec import HeatmapCodec
from pose_pipeline.data import make_batch
from pose_pipeline.devices import autocast
from pose_pipeline.loss import heatmap_loss
from pose_pipeline.store import PoseStore


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
