"""`TrainingConfig`: an experiment's `training` settings as one typed object, so the train
stages read `training.checkpoint_every`, not `training["checkpoint_every"]`.

Its defaults are the config schema's (`experiment.training`), read here once; `from_settings`
checks a settings dict against the schema (an unknown key named with its did-you-mean) and fills
in what it leaves out. What is recorded (checkpoints, the run identity, `--settings`) stays the
dict the workflow passes: this object is built from it at that boundary, and `asdict` turns it
back into one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pose_pipeline.config.schema import checked_section, schema_defaults

DEFAULTS = schema_defaults("experiment", "training")


def _nested(key: str):
    """A fresh dict of the schema's defaults of `training.{key}` (whose own default is {})."""
    return field(default_factory=lambda: schema_defaults("experiment", "training", key))


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]  # per rank
    optimizer: str = DEFAULTS["optimizer"]
    lr: float = DEFAULTS["lr"]
    weight_decay: float = DEFAULTS["weight_decay"]
    schedule: dict = _nested("schedule")  # `setup.lr_factor` reads it
    input_size: int = DEFAULTS["input_size"]
    heatmap_size: int = DEFAULTS["heatmap_size"]
    sigma: float = DEFAULTS["sigma"]
    foreground_weight: float = DEFAULTS["foreground_weight"]  # `heatmap_loss`'s
    augmentation: dict = _nested("augmentation")  # `Augmentation`'s keyword arguments
    seed: int = DEFAULTS["seed"]
    checkpoint_every: int = DEFAULTS["checkpoint_every"]
    num_threads: int = DEFAULTS["num_threads"]
    init_checkpoint: str | None = DEFAULTS["init_checkpoint"]
    compile: bool = DEFAULTS["compile"]
    train_occluded: bool = DEFAULTS["train_occluded"]

    @classmethod
    def from_settings(cls, training: dict | None) -> TrainingConfig:
        """From an experiment's `training` settings as written or recorded: checked against the
        schema, the schema's defaults filled in where keys are left out."""
        return cls(**checked_section(training or {}, "experiment", "training", where="training"))

    def asdict(self) -> dict:
        return dataclasses.asdict(self)
