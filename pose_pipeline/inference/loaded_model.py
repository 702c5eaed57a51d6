"""The one way a checkpoint is loaded to run it (predict, infer, export): `load_for_inference`.

The checkpoint is read once; the model, its joint set, the codec and the canvas its training
crops were cut on all come from that one record, so the stages cannot disagree on them. The
codec takes the input size, heatmap size and sigma the model was trained with (`model_record`
in train/state.py writes them beside the weights, and the run's settings hold them again); a
checkpoint without them (PyTorch-Pose's, or this project's before they were kept) gets the
schema's training defaults, said in one log line. The decoding blur is the run's evaluation
setting, else the schema's. Options given on the command line (`--input-size`, `--blur-sigma`)
apply on top; an input size other than the trained one is allowed (the networks are fully
convolutional) but logged, as its accuracy is not the trained model's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core.codec import HEATMAP_STRIDE, HeatmapCodec
from pose_pipeline.core.joints import JointSet

log = logging.getLogger(__name__)

CODEC_KEYS = ("input_size", "heatmap_size", "sigma")


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to run: the eval-mode model on its device, the joint set it predicts
    (`joints_recorded`: named in the checkpoint, not inferred from the joint count), the codec
    to prepare and decode with, and how its training store cut canvases
    (`models.training_canvas_of`: canvas_size, context, reduced_decode)."""

    model: torch.nn.Module
    joints: JointSet
    codec: HeatmapCodec
    canvas: dict
    joints_recorded: bool

    @property
    def model_config(self) -> dict:
        return self.model.model_config


def load_for_inference(
    path,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
    blur_sigma: float | None = None,
    expect: dict | None = None,
) -> LoadedModel:
    """The checkpoint at `path`, read once (`models.read_checkpoint`), as a `LoadedModel`.

    `input_size`, `blur_sigma`: the command line's, None for the checkpoint's own; `expect`:
    model-config keys the caller needs (e.g. joints), as `models.model_from_checkpoint`."""
    from pose_pipeline.models import joint_set_of, model_from_checkpoint, read_checkpoint, training_canvas_of

    record = read_checkpoint(path)
    joints = joint_set_of(record, path)
    model = model_from_checkpoint(record, path, expect, device)
    codec = codec_of(record, path, input_size, blur_sigma)
    recorded = isinstance(record.get("joint_set"), dict)
    return LoadedModel(model, joints, codec, training_canvas_of(record), recorded)


def trained_codec_settings(record: dict, path="checkpoint") -> dict:
    """{input_size, heatmap_size, sigma} the checkpoint was trained with: its own keys, else its
    run's training settings; what neither holds is the schema's training default (a heatmap
    size missing beside a recorded input size: 1/HEATMAP_STRIDE of it, as training requires)."""
    training = ((record.get("settings") or {}).get("training")) or {}
    found = {key: record.get(key, training.get(key)) for key in CODEC_KEYS}
    found = {key: value for key, value in found.items() if value is not None}
    defaults = schema_defaults("experiment", "training")
    if "heatmap_size" not in found and "input_size" in found:
        found["heatmap_size"] = int(found["input_size"]) // HEATMAP_STRIDE
    missing = [key for key in CODEC_KEYS if key not in found]
    if missing:
        # PyTorch-Pose's files and the earliest of ours: trained at the defaults of their time
        log.info(
            "%s records no %s: the schema's training defaults (%s)",
            path,
            ", ".join(missing),
            ", ".join(f"{key} {defaults[key]}" for key in missing),
        )
    settings = {**{key: defaults[key] for key in missing}, **found}
    return {
        "input_size": int(settings["input_size"]),
        "heatmap_size": int(settings["heatmap_size"]),
        "sigma": float(settings["sigma"]),
    }


def codec_of(record: dict, path="checkpoint", input_size: int | None = None, blur_sigma: float | None = None):
    """The codec to run the checkpoint with: trained sizes and sigma (`trained_codec_settings`),
    `input_size` over them (its heatmap 1/HEATMAP_STRIDE of it, logged where it differs from the
    trained size), decoding with `blur_sigma`, else the run's evaluation blur, else the schema's."""
    trained = trained_codec_settings(record, path)
    if input_size is not None and input_size != trained["input_size"]:
        log.warning(
            "%s was trained at %d px input; running it at --input-size %d (heatmaps %d), which it was not trained for",
            path,
            trained["input_size"],
            input_size,
            input_size // HEATMAP_STRIDE,
        )
        trained = {**trained, "input_size": input_size, "heatmap_size": input_size // HEATMAP_STRIDE}
    if blur_sigma is None:
        evaluation = ((record.get("settings") or {}).get("evaluation")) or {}
        blur_sigma = evaluation.get("blur_sigma", schema_defaults("experiment", "evaluation")["blur_sigma"])
    return HeatmapCodec(trained["input_size"], trained["heatmap_size"], trained["sigma"], blur_sigma)
