"""`pose-pipeline export`: a trained model as one self-contained file (ONNX or TorchScript)
that takes RGB crops and returns heatmaps and decoded keypoints, runnable without this package.

The exported graph is `CropPoseModel`: uint8 crops (N, H, W, 3), H = W = the input size,
scaled to [0, 1] and mean-subtracted exactly as training and `predict` prepare their inputs
(`data.normalize_input`), through the network, optionally averaged with the mirrored crop's
heatmaps (`inference.mirror_average`, the flip test of `predict`), decoded by the codec's own
decode (`codec.decode_heatmaps_torch`, blur included) and mapped from heatmap to crop pixels
(the inverse of `HeatmapCodec.input_to_heatmap`). A JSON beside the file names the inputs,
outputs, joints, flip pairs and edges.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec, decode_heatmaps_torch
from pose_pipeline.core.joints import JointSet
from pose_pipeline.data.batches import INPUT_MEAN, normalize_input
from pose_pipeline.errors import UserError
from pose_pipeline.inference.engine import add_evaluation_options, mirror_average
from pose_pipeline.util.atomic import atomic_output, write_text_atomic

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
INPUT_NAMES = ("crops",)
OUTPUT_NAMES = ("heatmaps", "keypoints", "scores")
ONNX_OPSET = 18


class CropPoseModel(torch.nn.Module):
    """crops (N,H,W,3) uint8 RGB -> heatmaps (N,J,h,w) float32 (the last stack's, flip-averaged
    with `flip_permutation`), keypoints (N,J,2) float32 crop pixels (array coordinates: the
    top-left pixel's centre is (0, 0)), scores (N,J) float32 (the heatmaps' values at the
    decoded peak pixels).

    The decode runs in float64, as `codec.decode` does for `predict`."""

    def __init__(self, model: torch.nn.Module, codec: HeatmapCodec, flip_permutation=None):
        super().__init__()
        # an inference graph: frozen weights, so that the exported file's outputs need no
        # grad (a user's `.numpy()` works without `torch.no_grad()` or `.detach()`)
        self.model = model.eval().requires_grad_(False)
        self.blur_sigma = codec.blur_sigma
        self.flip = flip_permutation is not None
        self.register_buffer(
            "flip_permutation", torch.as_tensor(flip_permutation if self.flip else [], dtype=torch.long)
        )
        to_input = geometry.invert(codec.input_to_heatmap())  # heatmap -> input (crop) pixels
        self.register_buffer("to_input", torch.as_tensor(to_input, dtype=torch.float64))

    def forward(self, crops: torch.Tensor):
        # as data.finish_batch: channels first (contiguous: a channels-last view can take other
        # convolution kernels, whose float sums differ), [0, 1], minus the training mean
        x = normalize_input(crops.permute(0, 3, 1, 2).contiguous().float() / 255.0)
        heatmaps = self.model(x)[-1]
        if self.flip:
            heatmaps = mirror_average(heatmaps, self.model(torch.flip(x, dims=[3]))[-1], self.flip_permutation)
        coords, scores = decode_heatmaps_torch(heatmaps.double(), self.blur_sigma)
        keypoints = coords @ self.to_input[:, :2].T + self.to_input[:, 2]
        return heatmaps, keypoints.float(), scores.float()


def crop_pose_model(
    checkpoint: str, input_size: int | None = None, blur_sigma: float | None = None, flip_test: bool = False
) -> tuple[CropPoseModel, HeatmapCodec, JointSet, dict]:
    """The exportable model of a checkpoint, its codec (`load_for_inference`: as trained, unless
    `input_size` or `blur_sigma` are given), joint set, and what the description says of its
    training: {"model": its config, "canvas": how its crops were cut}."""
    from pose_pipeline.inference.loaded_model import load_for_inference

    loaded = load_for_inference(checkpoint, "cpu", input_size, blur_sigma)
    codec, joints = loaded.codec, loaded.joints
    wrapped = CropPoseModel(loaded.model, codec, joints.flip_permutation() if flip_test else None)
    return wrapped.eval(), codec, joints, {"model": loaded.model_config, "canvas": loaded.canvas}


def export_onnx(model: CropPoseModel, example: torch.Tensor, path: Path) -> None:
    """The model as one ONNX file (weights inside), the batch dimension dynamic."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=ONNX_OPSET,
        dynamic_shapes={"crops": {0: batch}},
        external_data=False,
        verbose=False,
    )
    program.save(str(path), external_data=False)


def export_torchscript(model: CropPoseModel, example: torch.Tensor, path: Path) -> None:
    """The model traced to TorchScript (`torch.jit.load` runs it without this package)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still the plain loader
        # sizes become constants: the exported model takes crops of its one input size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(traced, str(path))


def metadata(fmt: str, codec: HeatmapCodec, joints: JointSet, trained: dict, flip_test: bool, checkpoint: str) -> dict:
    """What the JSON beside an exported file says: enough to cut its crops as in training, feed
    it and read its outputs (`trained`: crop_pose_model's)."""
    return {
        "format": fmt,
        "checkpoint": str(checkpoint),
        "model": trained["model"],
        "crops": {
            **trained["canvas"],
            "cut": "the input shows the person box (200 x scale px, centred; a box [x, y, w, h]: side "
            "max(w, h) x 1.25) at input_size. Training cut it in two steps: the box x context warped to "
            "a canvas_size square (bilinear, black outside; with reduced_decode from the image decoded "
            "at 1/2, 1/4 or 1/8 of its size where the canvas shrinks the person that much), then the "
            "canvas's central box to input_size (pose-pipeline infer cuts so)",
        },
        "input": {
            "name": INPUT_NAMES[0],
            "shape": ["N", codec.input_size, codec.input_size, 3],
            "dtype": "uint8",
            "channels": "RGB",
            "normalisation": f"x / 255 - mean per channel inside the model, mean {list(INPUT_MEAN)}",
        },
        "outputs": {
            "heatmaps": ["N", joints.num_joints, codec.heatmap_size, codec.heatmap_size],
            "keypoints": ["N", joints.num_joints, 2],
            "scores": ["N", joints.num_joints],
        },
        "keypoints": "x, y in crop pixels, array coordinates (the top-left pixel's centre is 0, 0)",
        "input_size": codec.input_size,
        "heatmap_size": codec.heatmap_size,
        "blur_sigma": codec.blur_sigma or 0.0,
        "flip_test": flip_test,
        **joints.to_dict(),
    }


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model checkpoint (this project's or PyTorch-Pose)")
    p.add_argument(
        "--format", required=True, choices=FORMATS, help="onnx (ONNX Runtime) or torchscript (torch.jit.load)"
    )
    p.add_argument("--out", required=True, help="the exported file; its description goes beside it as OUT.json")
    # the options predict and infer take, less those of running batches (--batch-size, --device)
    add_evaluation_options(p, None, flip_test=False)


def run(args: argparse.Namespace) -> int:
    model, codec, joints, trained = crop_pose_model(args.checkpoint, args.input_size, args.blur_sigma, args.flip_test)
    if args.format == "onnx":
        _require_onnx()
    example = torch.zeros((2, codec.input_size, codec.input_size, 3), dtype=torch.uint8)
    out = Path(args.out)
    log.info(
        "exporting %s (%d joints, %d px, flip test %s) to %s",
        args.checkpoint,
        joints.num_joints,
        codec.input_size,
        "on" if args.flip_test else "off",
        out,
    )
    with atomic_output(out) as tmp:
        if args.format == "onnx":
            export_onnx(model, example, tmp)
        else:
            export_torchscript(model, example, tmp)
    write_text_atomic(
        description_path(out),
        json.dumps(metadata(args.format, codec, joints, trained, args.flip_test, args.checkpoint), indent=1) + "\n",
    )
    print(
        f"{out}: {args.format}, crops (N, {codec.input_size}, {codec.input_size}, 3) uint8 -> "
        f"heatmaps, keypoints, scores of {joints.num_joints} joints"
    )
    return 0


def description_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"ONNX export needs {exc.name}: pip install -e '.[export]' in the clone") from None
