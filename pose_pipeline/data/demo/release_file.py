"""Writing the MPII release format: the demo generator's output (`demo_data`).

`release_mat_bytes` writes a `RELEASE` struct in the layout of the MPII release
(`mpii_human_pose_v1_u12_1.mat`) that `formats.mpii.read_release` reads, and `split_mat_bytes` a
split file like detections.mat. Files are returned as bytes, byte-identical for equal content,
so the caller writes them where and how it wants (atomically, into a folder being built).
"""

from __future__ import annotations

import io

import numpy as np

from pose_pipeline.core.joints import MPII

_POINT_DTYPE = [("x", "O"), ("y", "O"), ("id", "O"), ("is_visible", "O")]
_RECT_DTYPE = [("x1", "O"), ("y1", "O"), ("x2", "O"), ("y2", "O"), ("annopoints", "O"), ("scale", "O"), ("objpos", "O")]
# a test person of the release: its rough position and scale, no joints and no head box
_TEST_RECT_DTYPE = [("scale", "O"), ("objpos", "O")]
_ANNOLIST_DTYPE = [("image", "O"), ("annorect", "O"), ("frame_sec", "O"), ("vididx", "O")]
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by pose-pipeline"


def _mat_bytes(variables: dict) -> bytes:
    """savemat into bytes with a fixed header text (scipy stamps the time there), so equal
    content gives byte-identical files."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, format="5", long_field_names=True, oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    return bytes(data)


def release_mat_bytes(
    image_names: list[str],
    keypoints: np.ndarray,
    is_visible: np.ndarray,
    head_box: np.ndarray,
    scale_raw: np.ndarray,
    objpos: np.ndarray,
    img_train: np.ndarray,
) -> bytes:
    """A `RELEASE` struct in the MPII layout, one person per image.

    Inputs are in the release's own conventions (1-based pixels, scale = height / 200,
    raw objpos). A training image (`img_train` 1) gets every joint of `keypoints` (N,16,2)
    as annotated and its head box; a test image (`img_train` 0) only `objpos` and `scale`, as
    the release's test people have them.
    """
    n = len(image_names)
    annolist = np.zeros((1, n), dtype=_ANNOLIST_DTYPE)
    for i in range(n):
        position = {"x": float(objpos[i, 0]), "y": float(objpos[i, 1])}
        if img_train[i]:
            points = np.zeros((1, MPII.num_joints), dtype=_POINT_DTYPE)
            for k in range(MPII.num_joints):
                points[0, k] = (float(keypoints[i, k, 0]), float(keypoints[i, k, 1]), float(k), float(is_visible[i, k]))
            rect = np.zeros((1, 1), dtype=_RECT_DTYPE)
            x1, y1, x2, y2 = (float(v) for v in head_box[i])
            rect[0, 0] = (x1, y1, x2, y2, {"point": points}, float(scale_raw[i]), position)
        else:
            rect = np.zeros((1, 1), dtype=_TEST_RECT_DTYPE)
            rect[0, 0] = (float(scale_raw[i]), position)
        annolist[0, i] = ({"name": image_names[i]}, rect, np.zeros((0, 0)), np.zeros((0, 0)))
    # single_person{i}: 1-based rect indices of the sufficiently separated people (all here).
    single_person = np.empty((n, 1), dtype=object)
    for i in range(n):
        single_person[i, 0] = np.ones((1, 1))
    release = {
        "annolist": annolist,
        "img_train": np.asarray(img_train, dtype=np.float64).reshape(1, n),
        "version": "pose-pipeline demo",
        "single_person": single_person,
    }
    return _mat_bytes({"RELEASE": release})


def split_mat_bytes(img_index: np.ndarray, person_index: np.ndarray) -> bytes:
    """A split file like detections.mat: RELEASE_img_index / RELEASE_person_index from 0-based input."""
    return _mat_bytes(
        {
            "RELEASE_img_index": (np.asarray(img_index, np.float64) + 1).reshape(-1, 1),
            "RELEASE_person_index": (np.asarray(person_index, np.float64) + 1).reshape(-1, 1),
        }
    )
