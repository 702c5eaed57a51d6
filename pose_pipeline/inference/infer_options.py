"""`InferOptions`: the settings of one `infer` run, built by keyword (the command line builds it
from its arguments, a caller from its own) and recorded as they are.

The defaults of batch_size, flip_test, device and the two person-score thresholds are the config
schema's (`experiment.evaluation`, `device`, `imageset`), read once for these options and the
command line alike, so each default is written once, in the schema.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pose_pipeline.config.schema import load_schema, schema_defaults
from pose_pipeline.inference.infer_nms import IMAGESET

EVALUATION = schema_defaults("experiment", "evaluation")  # flip_test, batch_size
DEVICE = load_schema()["properties"]["device"]["default"]


@dataclass(frozen=True)
class InferOptions:
    """What `infer` reads, writes and how. The paths stay as given: keypoints.json records them
    so. `canvas_size`, `context`, `reduced_decode` None: as the model's training store cut its
    crops (`models.training_canvas_of`); `input_size`, `blur_sigma` None: as the checkpoint says
    (`load_for_inference`); `boxes` None: each image is one person, its whole image the box."""

    checkpoint: str | Path
    images: str | Path
    out: str | Path
    _: dataclasses.KW_ONLY  # past the three that name the work, each option by name
    boxes: str | Path | None = None
    draw: bool = False
    batch_size: int = EVALUATION["batch_size"]
    flip_test: bool = EVALUATION["flip_test"]
    blur_sigma: float | None = None
    input_size: int | None = None
    canvas_size: int | None = None
    context: float | None = None
    device: str = DEVICE
    progress: bool = True
    reduced_decode: bool | None = None
    keypoint_score_threshold: float = IMAGESET["keypoint_score_threshold"]
    oks_nms_threshold: float = IMAGESET["oks_nms_threshold"]

    @classmethod
    def from_args(cls, args) -> InferOptions:
        """From the command line's arguments, each by its name (the parser's dests are these
        fields' names)."""
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})
