"""Applying a trained model to person crops: the one inference path, shared by validation
during training, the `predict` stage (a store's canvases) and the `infer` stage (canvases cut
from raw images with the converters' own affine, `geometry.person_canvas_affine`).

Each crop goes canvas -> input (no augmentation), through the model; with flip test the
mirrored input's heatmaps are mirrored back (joint channels swapped) and averaged. Peaks
are decoded to sub-pixel heatmap positions by the codec and mapped back through the inverse
of original -> canvas -> input -> heatmap, ending in original image array coordinates.
The next batches are read in a background thread (`prefetch`) while the model runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.joints import JointSet
from pose_pipeline.core.loss import heatmap_loss
from pose_pipeline.data.batches import finish_batch, prepare_batch
from pose_pipeline.data.store import PoseStore
from pose_pipeline.util.devices import autocast
from pose_pipeline.util.prefetch import Prefetcher, depth_for


@dataclass(frozen=True)
class CanvasLayout:
    """How canvases were cut, all that inference needs of a store (a `PoseStore` is one too)."""

    canvas_size: int
    context: float
    joint_set: JointSet


def canvas_batch(
    canvases: np.ndarray,
    layout: CanvasLayout,
    codec: HeatmapCodec,
    device: torch.device,
    keypoints_canvas: np.ndarray | None = None,
    visible: np.ndarray | None = None,
):
    """Canvases (B,S,S,3) uint8 prepared for `predict_batch`: on the CPU finished here (the
    warp to the input, in the reading thread), on a GPU left to the device. Without
    keypoints (raw images) the targets are empty and the loss is 0."""
    n, joints = len(canvases), layout.joint_set.num_joints
    if keypoints_canvas is None:
        keypoints_canvas, visible = np.zeros((n, joints, 2)), np.zeros((n, joints), np.uint8)
    batch = prepare_batch(canvases, keypoints_canvas, visible, layout, codec)
    return finish_batch(batch, codec, device, "cv2") if torch.device(device).type == "cpu" else batch


def predict_batch(
    model: torch.nn.Module,
    batch,
    image_to_canvas: np.ndarray,
    layout: CanvasLayout,
    codec: HeatmapCodec,
    flip_test: bool,
    device: torch.device,
):
    """One batch of `canvas_batch` through the model, flip test and decoding.

    image_to_canvas: (B,2,3) each canvas's affine from its original image. Returns (preds
    (B,J,2) in original image array coordinates, scores (B,J) peak heights, loss: the batch's
    training loss as a device tensor, not yet read)."""
    coords, scores, loss = predict_batch_on_device(model, batch, layout, codec, flip_test, device)
    preds = heatmap_to_image(coords.cpu().numpy(), image_to_canvas, layout, codec)
    return preds, scores.cpu().numpy(), loss


def predict_batch_on_device(
    model: torch.nn.Module, batch, layout: CanvasLayout, codec: HeatmapCodec, flip_test: bool, device: torch.device
):
    """`predict_batch` up to the decoded peaks, left on the device (nothing waits for it):
    (coords (B,J,2) in heatmap array coordinates, scores (B,J), loss), float64 tensors."""
    x, targets, weights = batch if isinstance(batch, tuple) else finish_batch(batch, codec, device, "torch")
    flip_perm = torch.as_tensor(layout.joint_set.flip_permutation(), device=device)
    with torch.no_grad(), autocast(device):
        outputs = model(x)
        loss = heatmap_loss(outputs, targets, weights).double()
        heatmaps = outputs[-1].float()
        if flip_test:
            heatmaps = mirror_average(heatmaps, model(torch.flip(x, dims=[3]))[-1].float(), flip_perm)
    coords, scores = codec.decode_tensor(heatmaps)
    return coords, scores, loss


def heatmap_to_image(
    coords: np.ndarray, image_to_canvas: np.ndarray, layout: CanvasLayout, codec: HeatmapCodec
) -> np.ndarray:
    """Heatmap array coordinates (B,J,2) -> original image array coordinates, through the
    inverse of original -> canvas -> input -> heatmap."""
    to_heatmap = codec.image_to_heatmap(image_to_canvas, layout.canvas_size, layout.context)
    return geometry.apply(geometry.invert(to_heatmap), coords)


def predict_store(
    model: torch.nn.Module,
    store: PoseStore,
    codec: HeatmapCodec,
    flip_test: bool = True,
    batch_size: int = 32,
    device: torch.device | None = None,
    progress: bool = False,
):
    """Predictions for every sample of a store, decoded by `codec` (its blur included).

    Returns (preds (N,J,2) in the store's annotated pixel convention, scores (N,J) peak
    heights, loss: the training loss (the codec's targets) on these samples without
    augmentation). The decoded peaks stay on the device until the last batch: on a GPU no
    batch waits for the one before (validation runs this after every epoch).
    """
    from tqdm import tqdm

    device = device or next(model.parameters()).device
    model.eval()
    n = len(store)
    coords, scores = [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    batches = Prefetcher(
        range(0, n, batch_size),
        _batch_reader(store, codec, batch_size, device),
        depth=depth_for(device, 2),
        name="predict-batches",
    )
    with (
        batches,
        tqdm(total=-(-n // batch_size), desc="predict", unit="batch", disable=not progress, mininterval=5) as bar,
    ):
        for start, stop, batch in batches:
            batch_coords, batch_scores, loss = predict_batch_on_device(model, batch, store, codec, flip_test, device)
            coords.append(batch_coords)
            scores.append(batch_scores)
            loss_sum += loss * (stop - start)
            bar.update(1)
    if n == 0:
        joints = store.joint_set.num_joints
        return np.zeros((0, joints, 2)), np.zeros((0, joints)), 0.0
    preds = heatmap_to_image(torch.cat(coords).cpu().numpy(), store.affine[:n], store, codec)
    scores = torch.cat(scores).cpu().numpy()
    return geometry.array_to_annotated(preds, store.pixel_origin), scores, float(loss_sum) / n


def mirror_average(heatmaps: torch.Tensor, mirrored: torch.Tensor, flip_permutation: torch.Tensor) -> torch.Tensor:
    """The flip test: `heatmaps` of the inputs averaged with `mirrored`, those of the mirrored
    inputs, mirrored back with left and right channels swapped (predict, exported models)."""
    return 0.5 * (heatmaps + torch.flip(mirrored, dims=[3])[:, flip_permutation])


def _batch_reader(store: PoseStore, codec: HeatmapCodec, batch_size: int, device: torch.device):
    """What the prefetch thread does for the batch starting at `start`: read its crops and
    prepare them (`canvas_batch`)."""
    keypoints, visible = store.keypoints_in_canvas(), store.visible

    def read(start: int):
        stop = min(start + batch_size, len(store))
        batch = canvas_batch(
            store.images(start, stop), store, codec, device, keypoints[start:stop], visible[start:stop]
        )
        return start, stop, batch

    return read


def add_evaluation_options(p, batch_items: str | None, flip_test: bool | None = None) -> None:
    """The options every stage that runs a trained model shares, defined once: predict and infer
    take them all; export (`batch_items` None: it runs no batches, on no device of its own) takes
    --input-size, --blur-sigma and --flip-test/--no-flip-test. `flip_test`: the default where
    not the schema's evaluation one (export's is off, as it doubles the exported graph's cost).
    None for --input-size and --blur-sigma means the checkpoint's (`load_for_inference`)."""
    from pose_pipeline.config.option_bounds import add_device_option
    from pose_pipeline.config.schema import schema_defaults

    evaluation = schema_defaults("experiment", "evaluation")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="network input side, heatmaps 1/4 of it (codec.HEATMAP_STRIDE; default: the checkpoint's "
        "training size, else the schema's)",
    )
    flip_test = evaluation["flip_test"] if flip_test is None else flip_test
    p.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=flip_test,
        help="average each crop's heatmaps with its mirror image's (twice the cost); --no-flip-test: "
        f"the crop alone (default: {'on' if flip_test else 'off'})",
    )
    p.add_argument(
        "--blur-sigma",
        type=float,
        default=None,
        help="heatmap blur before decoding, 0 = none (default: the checkpoint's evaluation setting, "
        f"else {evaluation['blur_sigma']})",
    )
    if batch_items is not None:
        p.add_argument(
            "--batch-size", type=int, default=evaluation["batch_size"], help=f"{batch_items} per forward pass"
        )
        add_device_option(p)
