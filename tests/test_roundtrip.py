"""`pose-pipeline roundtrip`: the ceiling the target representation sets, on real MPII poses."""

from __future__ import annotations

import numpy as np
import pytest

from pose_pipeline import cli
from pose_pipeline.evaluate import metrics
from pose_pipeline.evaluate.ground_truth import read_ground_truth
from pose_pipeline.inference.prediction_files import read_predictions


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_oracle_predictions_score_as_the_issue_requires(shared_data, tmp_path, capsys):
    sample = shared_data / "mpii_sample"
    oracle = tmp_path / "oracle.mat"
    assert cli.main(["roundtrip", "--annotations", str(sample / "valid.h5"), "--out", str(oracle)]) == 0
    assert "head units" in capsys.readouterr().out
    preds = read_predictions(oracle)
    gt, visible, head_size, joints = read_ground_truth(sample / "detections_our_format.mat")
    assert preds.shape == gt.shape == (2958, 16, 2)
    counted = visible == 1
    error = np.linalg.norm(preds - gt, axis=-1) / head_size[:, None]
    assert error[counted].mean() <= 0.01
    dist = metrics.normalized_distances(preds, gt, head_size)
    pckh_005 = metrics.pck_per_joint(dist, counted, 0.05)
    mean_005 = np.mean([pckh_005[j] for j in range(16) if joints.joints[j] not in ("pelvis", "thorax")])
    assert mean_005 >= 98.0


def test_integer_targets_would_fail_the_same_check(shared_data):
    """The check can fail: rounding targets to whole heatmap pixels (as the seeds did) is off."""
    from pose_pipeline.core import geometry
    from pose_pipeline.core.codec import HeatmapCodec
    from pose_pipeline.data.formats import mpii

    people = mpii.read_hourglass_h5(shared_data / "mpii_sample" / "valid.h5", is_train=False)
    points = geometry.annotated_to_array(people.keypoints, 1.0)
    to_heatmap = HeatmapCodec(256).person_to_heatmap(geometry.annotated_to_array(people.center, 1.0), people.scale)
    rounded = geometry.apply(geometry.invert(to_heatmap), np.round(geometry.apply(to_heatmap, points)))
    error = np.linalg.norm(rounded - points, axis=-1) / people.head_size[:, None]
    assert error[people.annotated].mean() > 0.01
