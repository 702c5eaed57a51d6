"""Joint sets: names, left/right flip pairs, skeleton edges; the PCKh and PCK groups.

The one place that knows joint orders and counts (`JointSet.num_joints`), and the home of
the geometry constants every dataset shares (`PERSON_BOX`, `PCKH_HEAD_FACTOR`, `head_size_from_boxes`). Datasets keep
their native set (MPII 16, LSP 14, FLIC 11, COCO 17); nothing maps one set onto another, except
the points an evaluation derives from a set (FLIC's neck, `FLIC_PCK_POINTS`) and the joints two
sets share (`shared_joints`, by `canonical_joint` name), which fine-tuning carries across.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Geometry conventions shared by every dataset, recorded once.
PERSON_BOX = 200.0  # pixels per unit of `scale`: the person box is PERSON_BOX x scale (MPII / hourglass)
PCKH_HEAD_FACTOR = 0.6  # PCKh unit = 0.6 x the head-box diagonal (`SC_BIAS` of the reference evaluation)
# Skeleton colours by `JointSet.side` / `edge_side`, RGB 0-255 (matplotlib's tab:blue,
# tab:red and gold), shared by the plots and the store's contact sheet.
SIDE_COLOURS = {"left": (31, 119, 180), "right": (214, 39, 40), "centre": (255, 215, 0)}


def head_size_from_boxes(headboxes) -> np.ndarray:
    """PCKh unit per sample: `PCKH_HEAD_FACTOR` x the head-box diagonal, computed here alone
    (the converters store it, the scoring of a reference ground-truth file derives it).

    Accepts the reference layout `headboxes_src` (2,2,N) = (corner [top-left,
    bottom-right], coordinate [x, y], sample) or (N,4) rows x1, y1, x2, y2.
    """
    boxes = np.asarray(headboxes, dtype=np.float64)
    if boxes.ndim == 3 and boxes.shape[:2] == (2, 2):
        diagonal = boxes[1] - boxes[0]  # (2, N)
        return PCKH_HEAD_FACTOR * np.hypot(diagonal[0], diagonal[1])
    if boxes.ndim == 2 and boxes.shape[1] == 4:
        return PCKH_HEAD_FACTOR * np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    raise ValueError(f"head boxes: expected shape (2, 2, N) or (N, 4), got {boxes.shape}")


# The lower body's joints by name, side prefix removed (`name_side`); every other joint is upper
# body. Names, not indices, so custom COCO-format skeletons get the split too.
LOWER_BODY = frozenset({"pelvis", "hip", "knee", "ankle", "heel", "foot", "big_toe", "small_toe", "toe"})

# Name prefixes that place a joint on a side (lower case); a left joint's mirror is the right
# joint with the same rest of the name and the matching prefix (left_ <-> right_, l_ <-> r_).
SIDE_PREFIXES = {"left": ("l_", "left_"), "right": ("r_", "right_")}


def name_side(name: str) -> tuple[str, str]:
    """(side, the rest of the name, lower case) of a joint name: ('left', 'shoulder') for
    `l_shoulder` or `Left_Shoulder`, ('centre', 'nose') for `nose`."""
    lowered = name.lower()
    for side, prefixes in SIDE_PREFIXES.items():
        for prefix in prefixes:
            if lowered.startswith(prefix) and len(lowered) > len(prefix):
                return side, lowered[len(prefix) :]
    return "centre", lowered


def mirror_pairs(joints) -> tuple[tuple[int, int], ...]:
    """Flip pairs (left, right) of joint names by their prefixes: `left_x` with `right_x`,
    `l_x` with `r_x` (case ignored); a joint without its mirror stays unpaired."""
    by_spelling = {name.lower(): k for k, name in enumerate(joints)}
    pairs = []
    for k, name in enumerate(joints):
        lowered = name.lower()
        for left, right in zip(SIDE_PREFIXES["left"], SIDE_PREFIXES["right"]):
            if lowered.startswith(left) and right + lowered[len(left) :] in by_spelling:
                pairs.append((k, by_spelling[right + lowered[len(left) :]]))
    return tuple(pairs)


@dataclass(frozen=True)
class JointSet:
    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int], ...]

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    def flip_permutation(self) -> np.ndarray:
        """Index array p such that joints[p] is the mirror image's joint order."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def side(self, joint: int) -> str:
        """'left', 'right' or 'centre' (used to colour skeletons) by the name's prefix: `l_` /
        `left_`, `r_` / `right_` (any case; custom COCO-format sets use the long ones)."""
        return name_side(self.joints[joint])[0]

    def find(self, joint: str) -> int | None:
        """Index of `joint` (a short name, `l_shoulder`) or of its long spelling
        (`left_shoulder`, as COCO-format files name it); None when the set has neither."""
        side, rest = name_side(joint)
        lowered = [name.lower() for name in self.joints]
        for spelling in (joint.lower(), *(f"{prefix}{rest}" for prefix in SIDE_PREFIXES.get(side, ()))):
            if spelling in lowered:
                return lowered.index(spelling)
        return None

    def to_dict(self) -> dict:
        """The set as plain JSON values (what stores and checkpoints record)."""
        return {
            "joint_set": self.name,
            "joints": list(self.joints),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "edges": [list(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, record: dict) -> JointSet:
        """The set a store or checkpoint recorded: the built-in one of that name when it holds
        the same joints, else the recorded set itself (a custom skeleton)."""
        name, joints = record["joint_set"], tuple(record.get("joints") or ())
        builtin = JOINT_SETS.get(name)
        if builtin is not None and (not joints or joints == builtin.joints):
            return builtin
        if not joints:
            raise ValueError(f"unknown joint set {name!r} and no joint names recorded")
        return cls(
            name=name,
            joints=joints,
            flip_pairs=tuple(tuple(int(i) for i in p) for p in record.get("flip_pairs", ())),
            edges=tuple(tuple(int(i) for i in e) for e in record.get("edges", ())),
        )

    def body_halves(self) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower) joint indices, by name (`LOWER_BODY`): the half-body augmentation's
        split. MPII: thorax, neck, head, arms above; pelvis, hips, legs below (MMPose's
        `upper_body_ids` of MPII and COCO)."""
        lower = np.array([name_side(n)[1] in LOWER_BODY for n in self.joints])
        return np.flatnonzero(~lower), np.flatnonzero(lower)

    def edge_side(self, a: int, b: int) -> str:
        """The side of the edge between joints a and b: theirs when they agree, else the
        limb's side (a centre joint does not make a left limb centre); left wins a tie."""
        sides = {self.side(a), self.side(b)}
        if len(sides) == 1:
            return sides.pop()
        return "left" if "left" in sides else "right" if "right" in sides else "centre"


# fmt: off
# (one line per limb chain: the order is the dataset's, worth reading at a glance)
MPII = JointSet(
    name="mpii",
    joints=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    edges=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5),
        (6, 7), (7, 8), (8, 9),
        (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15),
    ),
)

LSP = JointSet(
    name="lsp",
    joints=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
        "neck", "head_top",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    edges=(
        (0, 1), (1, 2), (3, 4), (4, 5), (2, 3),
        (6, 7), (7, 8), (9, 10), (10, 11), (8, 12), (9, 12), (12, 13),
        (2, 8), (3, 9),
    ),
)

COCO = JointSet(
    name="coco",
    joints=(
        "nose", "l_eye", "r_eye", "l_ear", "r_ear",
        "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
        "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    edges=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12),
        (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
        (3, 5), (4, 6),
    ),
)

# FLIC's 11 annotated slots of the release's 29 (`coords`), in slot order (see formats/flic.py).
FLIC = JointSet(
    name="flic",
    joints=(
        "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
        "l_hip", "r_hip", "l_eye", "r_eye", "nose",
    ),
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 7), (8, 9)),
    edges=(
        (0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (0, 6), (3, 7), (6, 7),
        (8, 9), (8, 10), (9, 10),
    ),
)
# fmt: on

JOINT_SETS = {s.name: s for s in (MPII, LSP, FLIC, COCO)}

# PCKh groups of the reference MPII evaluation: (column, joint names averaged).
# Mean is the unweighted mean over the 14 joints other than pelvis and thorax.
MPII_PCKH_GROUPS = (
    ("Head", ("head_top",)),
    ("Shoulder", ("l_shoulder", "r_shoulder")),
    ("Elbow", ("l_elbow", "r_elbow")),
    ("Wrist", ("l_wrist", "r_wrist")),
    ("Hip", ("l_hip", "r_hip")),
    ("Knee", ("l_knee", "r_knee")),
    ("Ankle", ("l_ankle", "r_ankle")),
)
MPII_PCKH_MEAN_EXCLUDES = ("pelvis", "thorax")

# PCK of Sapp & Taskar as bearpaw/eval_pose's eval_pck.m computes it for LSP and FLIC: the
# unit is ||gt[a] - gt[b]|| of this pair, every point of every image counts.
PCK_TORSO_PAIR = ("l_shoulder", "r_hip")
# the MPII columns, but Head: eval_pck.m pairs neck with head top as "symmetric"
LSP_PCK_GROUPS = (("Head", ("neck", "head_top")),) + MPII_PCKH_GROUPS[1:]
# FLIC's ten scored points: (name, the FLIC joints averaged into it). The neck is not
# annotated; the reference ground truth interpolates it between the shoulders.
FLIC_PCK_POINTS = (
    ("nose", ("nose",)),
    ("neck", ("l_shoulder", "r_shoulder")),
    ("l_shoulder", ("l_shoulder",)),
    ("r_shoulder", ("r_shoulder",)),
    ("l_elbow", ("l_elbow",)),
    ("r_elbow", ("r_elbow",)),
    ("l_wrist", ("l_wrist",)),
    ("r_wrist", ("r_wrist",)),
    ("l_hip", ("l_hip",)),
    ("r_hip", ("r_hip",)),
)
FLIC_PCK_GROUPS = (
    ("Head", ("nose", "neck")),
    ("Shoulder", ("l_shoulder", "r_shoulder")),
    ("Elbow", ("l_elbow", "r_elbow")),
    ("Wrist", ("l_wrist", "r_wrist")),
    ("Hip", ("l_hip", "r_hip")),
)


def torso_pair(joints: JointSet) -> tuple[int, int] | None:
    """Indices of `PCK_TORSO_PAIR` (left shoulder, right hip) in a set, short or long names
    (`left_shoulder` in a custom COCO-format set); None when the set lacks either."""
    a, b = (joints.find(name) for name in PCK_TORSO_PAIR)
    return None if a is None or b is None else (a, b)


# The one correspondence table of joint names: a joint that two sets (or a custom skeleton) name
# differently -> the name it is matched by. MPII's upper neck is the point LSP annotates as its
# neck (pose papers fine-tune MPII -> LSP with this pairing); MPII's thorax is not a neck.
SAME_JOINT = {"upper_neck": "neck"}
SHORT_PREFIX = {"left": "l_", "right": "r_", "centre": ""}


def canonical_joint(name: str) -> str:
    """The name a joint is matched by across sets: lower case, the short side prefix
    (`name_side`: left_shoulder -> l_shoulder), `SAME_JOINT` applied (upper_neck -> neck)."""
    side, rest = name_side(name.strip().replace(" ", "_"))
    name = SHORT_PREFIX[side] + rest
    return SAME_JOINT.get(name, name)


def shared_joints(source: JointSet, target: JointSet) -> list[tuple[int, int]]:
    """(target index, source index) of each joint of `target` that `source` has too, matched by
    `canonical_joint`, in the target's order (MPII -> LSP: all 14; MPII -> COCO: the 12 limb
    joints)."""
    in_source = {canonical_joint(name): i for i, name in enumerate(source.joints)}
    return [
        (t, in_source[canonical_joint(name)])
        for t, name in enumerate(target.joints)
        if canonical_joint(name) in in_source
    ]


def joint_set(name: str) -> JointSet:
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown joint set {name!r}; known: {sorted(JOINT_SETS)}") from None
