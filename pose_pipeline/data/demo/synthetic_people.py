"""The demo data's synthetic figures: one articulated figure with the 16 MPII joints drawn on a
cluttered background, and its annotation in the MPII release's conventions (`make_person`).

Each figure is a kinematic tree from the pelvis with proportional limb lengths and joint-angle
limits (elbows and knees bend one way), limbs drawn as thick textured capsules, a torso and a
head. Left and right can be told apart by cues that stay true under the flip augmentation
(which mirrors the image and swaps the left/right labels; a cue that did not mirror with them
would contradict the labels on half the samples): figures face the camera, so their left side
is on the image right, and limb stripes run at +45 degrees to the limb on left limbs and -45 on
right limbs (a mirror turns one into the other). The two sides also get different colour
families (warm and cool, which side gets which drawn per figure) so that crossing limbs stay
apart. Backgrounds are gradients with random shapes, some limb-like, and noise. Figures vary
in position, size and rotation; some limbs pass behind the torso (self-occlusion) and some
leave the image (truncation); such joints are marked not visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose_pipeline.core.joints import MPII, PERSON_BOX
from pose_pipeline.data.formats.mpii import HOURGLASS_CENTER_SHIFT

J = {name: i for i, name in enumerate(MPII.joints)}

# Segment lengths as fractions of the figure's height (ankle to head top, standing).
SPINE, NECK, HEAD = 0.30, 0.05, 0.13
HIP_HALF_WIDTH, SHOULDER_HALF_WIDTH = 0.085, 0.115
UPPER_ARM, FOREARM, THIGH, SHIN = 0.17, 0.15, 0.245, 0.245
# Limb thickness as fractions of the height.
LIMB_WIDTH = {"upper_arm": 0.060, "forearm": 0.050, "thigh": 0.080, "shin": 0.065}

# (joint a, joint b, kind, side) for the limbs; side 'r' / 'l'.
LIMBS = [
    ("r_shoulder", "r_elbow", "upper_arm", "r"),
    ("r_elbow", "r_wrist", "forearm", "r"),
    ("l_shoulder", "l_elbow", "upper_arm", "l"),
    ("l_elbow", "l_wrist", "forearm", "l"),
    ("r_hip", "r_knee", "thigh", "r"),
    ("r_knee", "r_ankle", "shin", "r"),
    ("l_hip", "l_knee", "thigh", "l"),
    ("l_knee", "l_ankle", "shin", "l"),
]


def _unit(angle: float) -> np.ndarray:
    """Direction at `angle` radians from straight down, counter-clockwise on screen."""
    return np.array([np.sin(angle), np.cos(angle)])


def sample_pose(rng: np.random.Generator, height: float) -> np.ndarray:
    """(16,2) joint positions of one figure around the origin (image y points down)."""
    lengths = {
        k: v * height * rng.uniform(0.9, 1.1)
        for k, v in dict(
            spine=SPINE,
            neck=NECK,
            head=HEAD,
            hip=HIP_HALF_WIDTH,
            shoulder=SHOULDER_HALF_WIDTH,
            upper_arm=UPPER_ARM,
            forearm=FOREARM,
            thigh=THIGH,
            shin=SHIN,
        ).items()
    }
    p = np.zeros((16, 2))
    lean = rng.normal(0.0, np.deg2rad(10))  # torso lean; the global rotation comes later
    up = -_unit(lean)
    side = np.array([up[1], -up[0]])  # towards the figure's left = image right (facing us)
    p[J["pelvis"]] = 0.0
    p[J["thorax"]] = p[J["pelvis"]] + lengths["spine"] * up
    neck_dir = -_unit(lean + rng.normal(0.0, np.deg2rad(8)))
    p[J["upper_neck"]] = p[J["thorax"]] + lengths["neck"] * neck_dir
    head_dir = -_unit(lean + rng.normal(0.0, np.deg2rad(15)))
    p[J["head_top"]] = p[J["upper_neck"]] + lengths["head"] * head_dir
    # Facing the camera: the right side of the figure appears on the image left.
    p[J["r_hip"]] = p[J["pelvis"]] - lengths["hip"] * side
    p[J["l_hip"]] = p[J["pelvis"]] + lengths["hip"] * side
    p[J["r_shoulder"]] = p[J["thorax"]] - lengths["shoulder"] * side + 0.02 * height * up
    p[J["l_shoulder"]] = p[J["thorax"]] + lengths["shoulder"] * side + 0.02 * height * up
    for s, outward in (("r", -1.0), ("l", 1.0)):
        # Arm: abduction from hanging down (0) to raised overhead (~170 deg), outwards;
        # elbow flexes 0-150 deg, bending the forearm inwards or up.
        shoulder = rng.uniform(np.deg2rad(-25), np.deg2rad(170))
        elbow = rng.uniform(0.0, np.deg2rad(150)) * rng.choice([1.0, -1.0], p=[0.75, 0.25])
        upper = lean + outward * shoulder
        p[J[f"{s}_elbow"]] = p[J[f"{s}_shoulder"]] + lengths["upper_arm"] * _unit(upper)
        p[J[f"{s}_wrist"]] = p[J[f"{s}_elbow"]] + lengths["forearm"] * _unit(upper + outward * elbow)
        # Leg: hip from slightly crossed to spread or raised sideways; knee flexes 0-140 deg.
        hip = rng.uniform(np.deg2rad(-15), np.deg2rad(65)) if rng.random() < 0.8 else rng.uniform(0, np.deg2rad(100))
        knee = rng.uniform(0.0, np.deg2rad(110)) if rng.random() < 0.7 else 0.0
        thigh = lean + outward * hip
        p[J[f"{s}_knee"]] = p[J[f"{s}_hip"]] + lengths["thigh"] * _unit(thigh)
        p[J[f"{s}_ankle"]] = p[J[f"{s}_knee"]] + lengths["shin"] * _unit(thigh - outward * knee)
    return p


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, -s], [s, c]]).T


def _hsv_colour(rng, hue_range, sat=(120, 255), val=(110, 255)) -> tuple[int, int, int]:
    import cv2

    hsv = np.uint8([[[rng.uniform(*hue_range), rng.uniform(*sat), rng.uniform(*val)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    import cv2

    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    image = (a * (1 - t) + b * t).astype(np.float32)
    image = np.broadcast_to(image, (size, size, 3)).copy()
    if rng.random() < 0.5:
        image = image.transpose(1, 0, 2).copy()
    image = image.astype(np.uint8)
    for _ in range(rng.integers(5, 14)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.uniform(0.03, 0.18) * size)
        if kind == 0:
            cv2.circle(image, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1)
        else:  # elongated, limb-like distractors
            angle = rng.uniform(0, np.pi)
            dx, dy = int(r * np.cos(angle)), int(r * np.sin(angle))
            cv2.line(
                image,
                (x - dx, y - dy),
                (x + dx, y + dy),
                colour,
                max(2, int(rng.uniform(0.01, 0.05) * size)),
                cv2.LINE_AA,
            )
    return image


def _limb_polygon(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    d = b - a
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6) * width / 2
    return np.array([a + n, b + n, b - n, a - n])


SHIFT = 4  # sub-pixel drawing precision for cv2 (coordinates x 16)


def _pts(p) -> np.ndarray:
    """Coordinates in cv2's fixed point (`SHIFT` fractional bits)."""
    return np.round(np.asarray(p) * (1 << SHIFT)).astype(np.int32)


def draw_figure(image: np.ndarray, rng: np.random.Generator, pose: np.ndarray, height: float) -> np.ndarray:
    """Draw the figure; returns (16,) bool: joints hidden behind the torso."""
    import cv2

    warm = (rng.uniform(0, 8), rng.uniform(8, 25))
    cool = (rng.uniform(95, 105), rng.uniform(105, 125))
    families = [warm, cool] if rng.random() < 0.5 else [cool, warm]
    colours = {"r": _hsv_colour(rng, families[0]), "l": _hsv_colour(rng, families[1])}
    torso_colour = _hsv_colour(rng, (0, 180), sat=(0, 90), val=(60, 220))
    skin = _hsv_colour(rng, (5, 20), sat=(40, 150), val=(120, 240))
    stripe_gap = rng.uniform(0.8, 1.3)  # stripe spacing, in limb widths
    style = _LimbStyle(colours, skin, height, stripe_gap)

    torso = np.array([pose[J["r_shoulder"]], pose[J["l_shoulder"]], pose[J["l_hip"]], pose[J["r_hip"]]])
    # One side's limbs may pass behind the torso: drawn first, partly covered.
    behind = rng.choice(["r", "l", ""], p=[0.25, 0.25, 0.5])
    for limb in LIMBS:  # (joint, joint, kind, side)
        if limb[3] == behind:
            _draw_limb(image, pose, limb, style)
    cv2.fillConvexPoly(image, _pts(torso), torso_colour, cv2.LINE_AA, SHIFT)
    _draw_head(image, pose, skin, height)
    for limb in LIMBS:  # (joint, joint, kind, side)
        if limb[3] != behind:
            _draw_limb(image, pose, limb, style)

    hidden = np.zeros(16, bool)
    if behind:
        inside = [cv2.pointPolygonTest(torso.astype(np.float32), (float(x), float(y)), False) >= 0 for x, y in pose]
        for name in (f"{behind}_elbow", f"{behind}_wrist", f"{behind}_knee", f"{behind}_ankle"):
            hidden[J[name]] = inside[J[name]]
    return hidden


@dataclass(frozen=True)
class _LimbStyle:
    """How one figure's limbs look: a colour per side ("r", "l"), its skin, its height (limb
    widths are fractions of it) and its stripe spacing in limb widths."""

    colours: dict
    skin: tuple
    height: float
    stripe_gap: float


def _draw_limb(image, pose, limb: tuple[str, str, str, str], style: _LimbStyle) -> None:
    """A limb (joint, joint, kind, side) as a capsule with chiral stripes (+45 degrees to its
    axis on the left, -45 on the right); a forearm gets a hand beyond the wrist."""
    import cv2

    a, b, kind, side = limb
    colour, skin, stripe_gap = style.colours[side], style.skin, style.stripe_gap
    width = LIMB_WIDTH[kind] * style.height
    poly = _limb_polygon(pose[J[a]], pose[J[b]], width)
    if kind == "forearm":  # a hand beyond the wrist marks where the wrist is
        direction = (pose[J[b]] - pose[J[a]]) / max(np.hypot(*(pose[J[b]] - pose[J[a]])), 1e-6)
        hand = pose[J[b]] + direction * width * 0.75
        cv2.circle(image, tuple(_pts(hand)), int(width * 0.62 * (1 << SHIFT)), skin, -1, cv2.LINE_AA, SHIFT)
    cv2.fillConvexPoly(image, _pts(poly), colour, cv2.LINE_AA, SHIFT)
    for j in (a, b):
        cv2.circle(image, tuple(_pts(pose[J[j]])), int(width / 2 * (1 << SHIFT)), colour, -1, cv2.LINE_AA, SHIFT)
    dark = tuple(int(c * 0.5) for c in colour)
    pa, pb = pose[J[a]], pose[J[b]]
    length = np.hypot(*(pb - pa))
    axis = (pb - pa) / max(length, 1e-6)
    turn = np.deg2rad(45.0 if side == "l" else -45.0)
    across = np.array(
        [axis[0] * np.cos(turn) - axis[1] * np.sin(turn), axis[0] * np.sin(turn) + axis[1] * np.cos(turn)]
    )
    half = across * width / np.sin(np.deg2rad(45.0)) / 2 * 0.9
    for t in np.arange(width / 2, length - width / 4, stripe_gap * width):
        centre = pa + t * axis
        cv2.line(
            image,
            tuple(_pts(centre - half)),
            tuple(_pts(centre + half)),
            dark,
            max(1, int(round(width / 4))),
            cv2.LINE_AA,
            SHIFT,
        )


def _draw_head(image, pose, skin, height: float) -> None:
    """Neck, head and eyes; the eyes on the head's upper half mark which way is up."""
    import cv2

    neck_width = 0.05 * height
    cv2.fillConvexPoly(
        image, _pts(_limb_polygon(pose[J["thorax"]], pose[J["upper_neck"]], neck_width)), skin, cv2.LINE_AA, SHIFT
    )
    head_centre = 0.5 * (pose[J["upper_neck"]] + pose[J["head_top"]])
    head_len = np.hypot(*(pose[J["head_top"]] - pose[J["upper_neck"]]))
    angle = np.degrees(np.arctan2(*(pose[J["head_top"]] - pose[J["upper_neck"]])[::-1]))
    axes = (int(head_len / 2 * (1 << SHIFT)), int(head_len * 0.38 * (1 << SHIFT)))
    cv2.ellipse(image, tuple(_pts(head_centre)), axes, angle, 0, 360, skin, -1, cv2.LINE_AA, SHIFT)
    for k in (-1, 1):
        eye = (
            head_centre
            + 0.12 * (pose[J["head_top"]] - pose[J["upper_neck"]])
            + k * 0.15 * head_len * np.array([np.cos(np.radians(angle + 90)), np.sin(np.radians(angle + 90))])
        )
        cv2.circle(
            image, tuple(_pts(eye)), int(max(1.0, 0.06 * head_len) * (1 << SHIFT)), (20, 20, 20), -1, cv2.LINE_AA, SHIFT
        )


def make_person(rng: np.random.Generator, size: int):
    """One image and its annotation in the release's conventions (1-based pixels)."""
    import cv2

    height = rng.uniform(0.45, 0.75) * size
    pose = sample_pose(rng, height)
    rotation = rng.normal(0.0, np.deg2rad(15)) if rng.random() < 0.85 else rng.uniform(-np.pi / 3, np.pi / 3)
    pose = _rotate(pose, rotation)
    low, high = pose.min(axis=0), pose.max(axis=0)
    extent = high - low
    # Centre the figure's box somewhere in the image; large figures may be cut off.
    centre = rng.uniform(0.5 * size - 0.25 * size, 0.5 * size + 0.25 * size, 2)
    pose = pose - (low + high) / 2 + centre

    image = draw_background(rng, size)
    hidden = draw_figure(image, rng, pose, height)
    noise = rng.normal(0.0, rng.uniform(2, 8), image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0)

    in_image = ((pose >= 0) & (pose <= size - 1)).all(axis=1)
    is_visible = (in_image & ~hidden).astype(np.uint8)
    head = pose[[J["upper_neck"], J["head_top"]]]
    head_len = np.hypot(*(head[1] - head[0]))
    head_centre = head.mean(axis=0)
    head_box = np.concatenate([head_centre - head_len / 2, head_centre + head_len / 2]) + 1.0
    # MPII: scale = person height / PERSON_BOX. The hourglass crop (PERSON_BOX x 1.25 x scale
    # around objpos + (0, 15 scale)) then holds the whole figure.
    scale_raw = 1.05 * float(extent.max()) / PERSON_BOX
    objpos = centre - np.array([0.0, HOURGLASS_CENTER_SHIFT * scale_raw])
    return image, pose + 1.0, is_visible, head_box, scale_raw, objpos + 1.0
