"""Applying a trained model to a store: the one inference path, shared by validation during
training and by the `predict` stage.

Each crop goes canvas -> input (no augmentation), through the model; with flip test the
mirrored input's heatmaps are mirrored back (joint channels swapped) and averaged. Peaks
are decoded to sub-pixel heatmap positions by the codec and mapped back through the inverse
of original -> canvas -> input -> heatmap, ending in the dataset's annotated pixel convention.
The next batches are read in a background thread (`prefetch`) while the model runs.
"""

from __future__ import annotations

import numpy as np
import torch

from pose_pipeline import geometry
from pose_pipeline.codec import HeatmapCodec
from pose_pipeline.data import finish_batch, prepare_batch
from pose_pipeline.devices import autocast
from pose_pipeline.loss import heatmap_loss
from pose_pipeline.prefetch import Prefetcher, depth_for
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
    flip_perm = torch.as_tensor(store.joint_set.flip_permutation(), device=device)
    n, num_joints = len(store), store.joint_set.num_joints
    preds = np.zeros((n, num_joints, 2))
    scores = np.zeros((n, num_joints))
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # read once, at the end
    batches = Prefetcher(range(0, n, batch_size), _batch_reader(store, codec, batch_size, device),
                         depth=depth_for(device, 2),
                         name="predict-batches")
    with batches, tqdm(total=-(-n // batch_size), desc="predict", unit="batch", disable=not progress,
                       mininterval=5) as bar:
        for start, stop, batch in batches:
            x, targets, weights = batch if isinstance(batch, tuple) else finish_batch(batch, codec, device, "torch")
            with torch.no_grad(), autocast(device):
                outputs = model(x)
                loss_sum += heatmap_loss(outputs, targets, weights).double() * (stop - start)
                heatmaps = outputs[-1].float()
                if flip_test:
                    # the mirrored input's heatmaps, mirrored back with left/right channels swapped
                    mirrored = model(torch.flip(x, dims=[3]))[-1].float()
                    heatmaps = 0.5 * (heatmaps + torch.flip(mirrored, dims=[3])[:, flip_perm])
            coords, scores[start:stop] = codec.decode(heatmaps.cpu().numpy())
            # heatmap -> canvas -> original image array coordinates
            to_heatmap = codec.image_to_heatmap(store.affine[start:stop], store.canvas_size, store.context)
            preds[start:stop] = geometry.apply(geometry.invert(to_heatmap), coords)
            bar.update(1)
    return geometry.array_to_annotated(preds, store.pixel_origin), scores, float(loss_sum) / max(n, 1)


def _batch_reader(store: PoseStore, codec: HeatmapCodec, batch_size: int, device: torch.device):
    """What the prefetch thread does for the batch starting at `start`: read its crops and
    prepare them (on the CPU the whole batch; on a GPU the warp is left to the device)."""
    keypoints, visible = store.keypoints_in_canvas(), store.visible
    on_host = torch.device(device).type == "cpu"

    def read(start: int):
        stop = min(start + batch_size, len(store))
        batch = prepare_batch(store.images(start, stop), keypoints[start:stop], visible[start:stop], store, codec)
        return start, stop, (finish_batch(batch, codec, device, "cv2") if on_host else batch)

    return read
