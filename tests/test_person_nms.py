"""OKS-NMS and rescoring of the top-down COCO protocol (`core.person_nms`), adversarially:
identical, disjoint, zero-area and single people, against a loop transcription of the
reference formula."""

import numpy as np
import pytest

from pose_pipeline.core.person_nms import COCO_OKS_SIGMAS, oks_nms, rescore


def _person(rng, offset=(0.0, 0.0), spread=100.0):
    return rng.uniform(0, spread, size=(17, 2)) + np.asarray(offset)


def _reference_oks(g, d, a_g, a_d, sigmas):
    """The reference `oks_iou` for one pair, joint by joint (every joint counts)."""
    total = 0.0
    for j in range(len(sigmas)):
        var = (2 * sigmas[j]) ** 2
        dist = (d[j, 0] - g[j, 0]) ** 2 + (d[j, 1] - g[j, 1]) ** 2
        total += np.exp(-dist / var / ((a_g + a_d) / 2 + np.spacing(1)) / 2)
    return total / len(sigmas)


def _reference_nms(kpts, scores, areas, thresh, sigmas):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if _reference_oks(kpts[i], kpts[j], areas[i], areas[j], sigmas) <= thresh]
    return keep


def test_identical_people_leave_the_highest_scored():
    person = _person(np.random.default_rng(0))
    keep = oks_nms(np.stack([person] * 4), [0.3, 0.9, 0.5, 0.9], [5000.0] * 4)
    assert keep.tolist() == [1]  # equal scores: the first in input order stays


def test_disjoint_people_all_stay_highest_first():
    rng = np.random.default_rng(1)
    people = np.stack([_person(rng, (1000.0 * i, 0.0)) for i in range(5)])
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    assert oks_nms(people, scores, [4000.0] * 5).tolist() == [3, 4, 1, 2, 0]


def test_zero_area_people_give_no_nan():
    person = _person(np.random.default_rng(2))
    # identical at zero area: OKS 1, suppressed; apart at zero area: OKS 0, both kept
    assert oks_nms(np.stack([person, person]), [0.8, 0.7], [0.0, 0.0]).tolist() == [0]
    apart = np.stack([person, person + 3.0])
    assert oks_nms(apart, [0.8, 0.7], [0.0, 0.0]).tolist() == [0, 1]


def test_single_and_no_person():
    person = _person(np.random.default_rng(3))[None]
    assert oks_nms(person, [0.0], [10.0]).tolist() == [0]
    assert oks_nms(np.zeros((0, 17, 2)), [], []).tolist() == []


def test_threshold_one_keeps_everyone():
    person = _person(np.random.default_rng(4))
    assert sorted(oks_nms(np.stack([person] * 3), [0.1, 0.2, 0.3], [100.0] * 3, threshold=1.0).tolist()) == [0, 1, 2]


def test_matches_the_reference_on_crowds():
    rng = np.random.default_rng(5)
    for _ in range(20):
        base = [_person(rng, rng.uniform(0, 300, 2), 60.0) for _ in range(4)]
        # jittered copies of each person: near-duplicates at several distances
        people = np.stack([b + rng.normal(0, s, b.shape) for b in base for s in (0.0, 2.0, 8.0)])
        scores, areas = rng.uniform(0, 1, len(people)), rng.uniform(0, 6000, len(people))
        for thresh in (0.5, 0.9):
            expected = _reference_nms(people, scores, areas, thresh, COCO_OKS_SIGMAS)
            assert oks_nms(people, scores, areas, thresh).tolist() == expected


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        oks_nms(np.zeros((2, 17, 2)), [0.5], [1.0, 1.0])
    with pytest.raises(ValueError):
        oks_nms(np.zeros((1, 17, 2)), [np.nan], [1.0])
    with pytest.raises(ValueError):
        oks_nms(np.zeros((1, 17, 2)), [0.5], [-1.0])
    with pytest.raises(ValueError):
        oks_nms(np.zeros((1, 16, 2)), [0.5], [1.0])


def test_rescore_is_box_score_times_mean_confident_joint_score():
    joint_scores = np.array([[0.1, 0.5, 0.9], [0.1, 0.2, 0.05], [0.3, 0.3, 0.3]])
    # 0.2 itself is not above the threshold (the reference's strict `t_s > in_vis_thre`)
    np.testing.assert_allclose(rescore([0.5, 1.0, 2.0], joint_scores, 0.2), [0.5 * 0.7, 0.0, 2.0 * 0.3])


def test_the_config_defaults_are_the_published_ones():
    from pose_pipeline.config.schema import schema_defaults
    from pose_pipeline.core.person_nms import KEYPOINT_SCORE_THRESHOLD, OKS_NMS_THRESHOLD

    defaults = schema_defaults("imageset")
    assert (defaults["keypoint_score_threshold"], defaults["oks_nms_threshold"]) == (0.2, 0.9)
    assert (KEYPOINT_SCORE_THRESHOLD, OKS_NMS_THRESHOLD) == (0.2, 0.9)
