"""`ConvertOptions`: the settings of one `convert` run, built by keyword (the command line builds
it from its arguments, a caller from its own) and recorded as they are.

The defaults of canvas_size, context, shard_size, on_bad_sample, reduced_decode and image_codec
are the config schema's (`datasets.*`), read once into `DEFAULTS` for these options and the
command line alike, so each default is written once, in the schema.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pose_pipeline.config.schema import schema_defaults

DEFAULTS = schema_defaults("dataset")


@dataclass(frozen=True)
class ConvertOptions:
    """What `convert` reads, writes and how. `flip_pairs`: [[left, right], ...] joint names, for
    a COCO-format file declaring its own keypoints; `min_keypoints` and `workers` None: the
    format's and the machine's own choice; `dataset` None: the annotation file's stem."""

    format: str
    annotations: Path
    images: Path
    out: Path
    _: dataclasses.KW_ONLY  # past the four that name the work, each option by name
    split: str = "train"
    val_last: int | None = None  # LSP: the last N images validate, the others train
    val_split: Path | None = None
    canvas_size: int = DEFAULTS["canvas_size"]
    context: float = DEFAULTS["context"]
    shard_size: int = DEFAULTS["shard_size"]
    on_bad_sample: str = DEFAULTS["on_bad_sample"]
    workers: int | None = None
    dataset: str | None = None
    progress: bool = True
    min_keypoints: int | None = None
    flip_pairs: list | None = None
    reduced_decode: bool = DEFAULTS["reduced_decode"]
    image_codec: str = DEFAULTS["image_codec"]

    def __post_init__(self):
        # callers pass strings as often as paths; every check and message below takes paths
        for name in ("annotations", "images", "out"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        object.__setattr__(self, "val_split", Path(self.val_split) if self.val_split else None)

    @classmethod
    def from_args(cls, args) -> ConvertOptions:
        """From the command line's arguments, each by its name (the parser's dests are these
        fields' names)."""
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})

    def converter_parameters(self) -> dict:
        """The parameters the store records under `converter` (its provenance), in their order."""
        return {
            "canvas_size": self.canvas_size,
            "context": self.context,
            "shard_size": self.shard_size,
            "on_bad_sample": self.on_bad_sample,
            "image_codec": self.image_codec,
        }

    def bounded(self) -> dict:
        """The numbers the schema bounds (`option_bounds`), None where not given."""
        return {
            "canvas_size": self.canvas_size,
            "context": self.context,
            "shard_size": self.shard_size,
            "min_keypoints": self.min_keypoints,
            "val_last": self.val_last,
            "workers": self.workers,
        }
