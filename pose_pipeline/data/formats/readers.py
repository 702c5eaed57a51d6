"""Annotation files -> `Samples`: one reader per format, each returning the people of a split
in the annotation file's own conventions, for `convert` to crop and store.

A reader: (annotations, split, val_split, options) -> Samples, where options holds `images`
(the image folder) and format options such as `min_keypoints`.

Every reader gives each joint one of three states, as its dataset means its flags (each
format module's docstring says how; README's datasets section has the table):
- labelled and visible: `visible` 1, `occluded` 0;
- labelled but occluded (hidden, its position placed by the annotator): `visible` 1,
  `occluded` 1. Trained on unless `training.train_occluded` is false; scored;
- missing (not annotated, or a placeholder position): `visible` 0. Never trained on, never
  a torso joint, never counted by a metric that can leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import COCO, FLIC, LSP, MPII, JointSet
from pose_pipeline.errors import UserError


@dataclass
class Samples:
    """What a converter hands to the writer: one row per person, annotated convention."""

    joints: JointSet
    pixel_origin: float
    image_names: list[str]
    keypoints: np.ndarray  # (N,J,2)
    visible: np.ndarray  # (N,J) uint8
    center: np.ndarray  # (N,2)
    scale: np.ndarray  # (N,)
    head_size: np.ndarray  # (N,)
    source_index: np.ndarray  # (N,2)
    problems: list[str]  # '' where fine
    parameters: dict = field(default_factory=dict)  # format choices, recorded in attrs `converter`
    occluded: np.ndarray | None = None  # (N,J) uint8, 1 = labelled but hidden; None: no such joints

    def __post_init__(self) -> None:
        if self.occluded is None:
            self.occluded = np.zeros(self.visible.shape, np.uint8)

    def __len__(self) -> int:
        return len(self.image_names)

    def take(self, index: np.ndarray) -> Samples:
        index = np.asarray(index)
        return Samples(
            self.joints,
            self.pixel_origin,
            [self.image_names[i] for i in index],
            self.keypoints[index],
            self.visible[index],
            self.center[index],
            self.scale[index],
            self.head_size[index],
            self.source_index[index],
            [self.problems[i] for i in index],
            self.parameters,
            self.occluded[index],
        )


def _split_hourglass_h5(people, annotations: Path, split: str, val_split: Path):
    """An hourglass .h5 split by a split file: val = its people found in the file (file order),
    train = the others. Never the same people for both."""
    from pose_pipeline.data.formats.mpii_split import person_keys, read_split

    img_index, person_index = read_split(val_split)
    in_split = np.isin(person_keys(people.image_index, people.person_index), person_keys(img_index, person_index))
    if split == "val" and not in_split.any():
        raise UserError(
            f"{annotations}: none of the {len(img_index)} people of the split file {val_split} is in "
            "this .h5 (the hourglass train.h5 holds no validation people): give the validation .h5 "
            "(valid.h5) as val_annotations instead"
        )
    return people.take(in_split if split == "val" else ~in_split)


def read_mpii(annotations: Path, split: str, val_split: Path | None, options: dict | None = None) -> Samples:
    """MPII release .mat (train/val through the split file; test: the single persons of the test
    images, without joints) or hourglass .h5 (taken whole, or split by the split file when one
    is given)."""
    from pose_pipeline.data.formats import mpii, mpii_split, mpii_test

    if split == "test":
        if annotations.suffix in (".h5", ".hdf5"):
            raise UserError(
                f"{annotations}: --split test reads the MPII release .mat (its img_train == 0 images "
                "and single_person), not an hourglass .h5"
            )
        people = mpii_test.read_test_people(annotations)  # the split file names validation people: unused
    elif annotations.suffix in (".h5", ".hdf5"):
        people = mpii.read_hourglass_h5(annotations, is_train=split == "train")
        if val_split is not None and split != "all":
            people = _split_hourglass_h5(people, annotations, split, val_split)
    else:
        people = mpii.read_release(annotations)  # split "all": every annotated person
        if val_split is not None and split != "all":
            train, val = mpii_split.split_train_val(people, val_split)
            people = train if split == "train" else val
        elif split == "train":
            people = people.take(people.is_train)
        elif split == "val":
            raise UserError(
                f"{annotations}: --split val needs --val-split, the file naming the "
                "validation people (e.g. MPII's detections.mat)"
            )
    return Samples(
        joints=MPII,
        pixel_origin=1.0,
        image_names=list(people.image_names),
        keypoints=people.keypoints,
        visible=people.annotated.astype(np.uint8),
        center=people.center,
        scale=people.scale,
        head_size=people.head_size,
        source_index=np.stack([people.image_index, people.person_index], axis=1),
        problems=list(people.problems),
        occluded=(people.annotated & (people.is_visible == 0)).astype(np.uint8),
    )


def read_lsp(annotations: Path, split: str, val_split: Path | None, options: dict | None = None) -> Samples:
    """LSP / LSP-extended joints.mat, either layout (see pose_pipeline.data.formats.lsp)."""
    from pose_pipeline.data.formats import lsp

    if val_split is not None:
        raise UserError(
            f"{val_split}: --val-split is for MPII; LSP's split follows from the number of "
            "images (2,000: first 1,000 train, last 1,000 val; 10,000: all train)"
        )
    options = options or {}
    joints = lsp.read_joints(annotations)
    width = lsp.image_name_width(joints, options.get("images"))
    rows = lsp.split_rows(len(joints), split, annotations, options.get("val_last"))
    center, scale = lsp.person_boxes(joints.keypoints, joints.visible)
    samples = Samples(
        joints=LSP,
        pixel_origin=lsp.PIXEL_ORIGIN,
        image_names=[f"im{i + 1:0{width}d}.jpg" for i in range(len(joints))],
        keypoints=joints.keypoints,
        visible=joints.visible,
        center=center,
        scale=scale,
        head_size=np.full(len(joints), np.nan),
        source_index=np.stack([np.arange(len(joints)), np.zeros(len(joints), np.int64)], axis=1),
        problems=lsp.row_problems(joints),
        parameters={
            "layout": joints.layout,
            "image_name_digits": width,
            "scale_margin": lsp.SCALE_MARGIN,
            "images_in_file": len(joints),
            "invisible_joints": lsp.INVISIBLE_JOINTS[joints.layout],
            # the split's rule, recorded only where given (earlier stores keep their attributes)
            **({"val_last": options["val_last"]} if options.get("val_last") is not None else {}),
        },
        occluded=joints.occluded,
    )
    return samples.take(rows)


def read_coco(annotations: Path, split: str, val_split: Path | None, options: dict | None = None) -> Samples:
    """COCO-format keypoint JSON: one sample per person, COCO's 17 joints or the file's own
    (options `flip_pairs` by name for the latter; see pose_pipeline.data.formats.coco)."""
    from pose_pipeline.data.formats import coco

    if val_split is not None:
        raise UserError(f"{val_split}: --val-split is for MPII; a COCO annotation file is one split")
    options = options or {}
    min_keypoints = options.get("min_keypoints")
    min_keypoints = coco.DEFAULT_MIN_KEYPOINTS if min_keypoints is None else int(min_keypoints)
    flip_pairs = options.get("flip_pairs")
    people = coco.read_annotations(annotations, min_keypoints, flip_pairs)
    center, scale = coco.person_boxes(people.bbox)
    own = {} if people.joints is COCO else {"flip_pairs": "config" if flip_pairs is not None else "names"}
    return Samples(
        joints=people.joints,
        pixel_origin=coco.PIXEL_ORIGIN,
        image_names=list(people.image_names),
        keypoints=people.keypoints,
        visible=people.visible,
        center=center,
        scale=scale,
        head_size=np.full(len(people), np.nan),
        source_index=np.stack([people.image_id, people.annotation_id], axis=1),
        problems=list(people.problems),
        parameters={
            "min_keypoints": min_keypoints,
            "bbox_padding": coco.BBOX_PADDING,
            "skipped_crowd": people.skipped["crowd"],
            "skipped_few_keypoints": people.skipped["few_keypoints"],
            "skipped_other_category": people.skipped["other_category"],
            **own,
        },
        occluded=people.occluded,
    )


def read_flic(annotations: Path, split: str, val_split: Path | None, options: dict | None = None) -> Samples:
    """FLIC examples.mat (or the same struct renamed): istrain / istest as train / val, isbad
    dropped (see pose_pipeline.data.formats.flic)."""
    from pose_pipeline.data.formats import flic

    if val_split is not None:
        raise UserError(f"{val_split}: --val-split is for MPII; FLIC's split is its istrain / istest flags")
    examples = flic.read_examples(annotations)
    rows = flic.split_rows(examples, split, annotations)
    center, scale = flic.person_boxes(examples)
    visible = examples.visible
    dropped = 0 if examples.isbad is None else int(examples.isbad.sum())
    samples = Samples(
        joints=FLIC,
        pixel_origin=flic.PIXEL_ORIGIN,
        image_names=examples.image_names,
        # unannotated slots at (0, 0), not NaN: training masks them by `visible` alone
        keypoints=np.where(visible[..., None] > 0, examples.keypoints, 0.0),
        visible=visible,
        center=center,
        scale=scale,
        head_size=np.full(len(examples), np.nan),
        source_index=np.stack([np.arange(len(examples)), np.zeros(len(examples), np.int64)], axis=1),
        problems=["" if v.any() else "no annotated joints" for v in visible],
        parameters={
            "variable": examples.variable,
            "slots": list(flic.SLOTS),
            "dropped_isbad": dropped,
            "scale_margin": flic.SCALE_MARGIN,
        },
    )
    return samples.take(rows)


READERS = {"mpii": read_mpii, "lsp": read_lsp, "flic": read_flic, "coco": read_coco}
