"""The re-prompt policy with scripted detections: enter, leave, cross, flicker, drift, duplicates."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tracker.overseer.policy import (
    REASON_DRIFT,
    REASON_DUPLICATE,
    REASON_ENTER,
    REASON_GUARD,
    REASON_LEAVE,
    DriftGuardPolicy,
    GuardConfig,
    PolicyConfig,
    RepromptPolicy,
    RunTrigger,
    mask_iou,
)
from tracker.overseer.types import Detection, TrackView
from tracker.types import UpdateAction

H, W = 64, 80


def box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def det(label: str, mask: np.ndarray, score: float = 0.9) -> Detection:
    return Detection(label, score, mask)


def track(oid: int, label: str, mask: np.ndarray, score: float = 0.9) -> TrackView:
    return TrackView(oid, label, mask, score)


def run(policy: RepromptPolicy, frames: list[tuple[list[TrackView], list[Detection]]]) -> list[list]:
    return [policy.decide(i, tracks, dets) for i, (tracks, dets) in enumerate(frames)]


def test_policy_module_does_not_import_torch() -> None:
    import importlib

    before = "torch" in sys.modules
    importlib.import_module("tracker.overseer.policy")
    assert before or "torch" not in sys.modules


def test_new_object_is_added_after_m_consecutive_runs_only() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=3))
    a = track(1, "grasper", box(5, 5, 20, 20))
    hook = box(40, 30, 60, 45)
    out = run(
        policy, [([a], [det("grasper", a.mask)])] + [([a], [det("grasper", a.mask), det("hook", hook)])] * 3
    )
    assert out[0] == [] and out[1] == [] and out[2] == []
    (add,) = out[3]
    assert add.action is UpdateAction.ADD and add.reason == REASON_ENTER and add.label == "hook"
    assert add.object_id >= 1000 and add.object_id != 1
    assert add.mask is not None and mask_iou(add.mask, hook) == 1.0


def test_two_untracked_instruments_of_one_class_persist_and_enter_separately() -> None:
    # The second candidate of the same class matches: the first must be passed over, not compared.
    policy = RepromptPolicy(PolicyConfig(persist_runs=3))
    left, right = box(2, 40, 18, 60), box(55, 5, 75, 25)
    one, other = ([], [det("hook", left), det("hook", right)]), ([], [det("hook", right), det("hook", left)])
    out = run(policy, [one, other, one])
    assert out[0] == [] and out[1] == []
    added = sorted((d.action, mask_iou(d.mask, right) == 1.0) for d in out[2])
    assert added == [(UpdateAction.ADD, False), (UpdateAction.ADD, True)]


def test_one_frame_flicker_never_reprompts() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=2))
    a = track(1, "grasper", box(5, 5, 20, 20))
    ghost = det("scissors", box(40, 30, 60, 45))
    frames = []
    for i in range(12):
        dets = [det("grasper", a.mask)] if i % 2 == 0 else []  # the tracked object flickers out
        if i % 3 == 1:
            dets.append(ghost)  # a spurious detection on single runs
        frames.append(([a], dets))
    assert all(d == [] for d in run(policy, frames))


def test_low_score_and_tiny_detections_are_ignored() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=1, min_score=0.5, min_area_px=30))
    out = run(policy, [([], [det("hook", box(0, 0, 20, 20), 0.3), det("hook", box(40, 40, 44, 44))])])
    assert out == [[]]


def test_object_that_leaves_is_removed_after_m_runs() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=3))
    a = track(1, "grasper", box(5, 5, 20, 20))
    b = track(2, "hook", box(40, 30, 60, 45))  # the tracker keeps a ghost of b (flow does)
    frames = [([a, b], [det("grasper", a.mask), det("hook", b.mask)])] + [
        ([a, b], [det("grasper", a.mask)])
    ] * 3
    out = run(policy, frames)
    assert out[1] == [] and out[2] == []
    (rm,) = out[3]
    assert (rm.action, rm.object_id, rm.reason) == (UpdateAction.REMOVE, 2, REASON_LEAVE)


def test_trusted_presence_keeps_an_occluded_object() -> None:
    cfg = PolicyConfig(persist_runs=2, trust_tracker_presence=True)
    a = track(1, "grasper", box(5, 5, 20, 20), score=0.9)
    out = run(RepromptPolicy(cfg), [([a], [])] * 4)
    assert all(d == [] for d in out)
    lost = track(1, "grasper", box(5, 5, 20, 20), score=0.1)
    out = run(RepromptPolicy(cfg), [([lost], [])] * 2)
    assert out[1][0].reason == REASON_LEAVE


def test_crossing_instruments_keep_their_identities() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=2))
    frames = []
    for i in range(10):
        ma = box(5 + 5 * i, 20, 20 + 5 * i, 30)  # moves right
        mb = box(55 - 5 * i, 22, 70 - 5 * i, 32)  # moves left, crosses a
        tracks = [track(1, "grasper", ma), track(2, "hook", mb)]
        frames.append((tracks, [det("grasper", ma), det("hook", mb & ~ma)]))  # b occluded by a
    assert all(d == [] for d in run(policy, frames))


def test_disagreement_corrects_with_overseer_mask() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=2, drift_iou=0.5))
    drifted = track(1, "grasper", box(10, 10, 30, 30))
    truth = box(22, 10, 42, 30)  # IoU 8/32 = 0.25 with the tracker's mask
    out = run(policy, [([drifted], [det("grasper", truth)])] * 2)
    assert out[0] == []
    (fix,) = out[1]
    assert (fix.action, fix.object_id, fix.reason) == (UpdateAction.CORRECT, 1, REASON_DRIFT)
    assert fix.mask is not None and mask_iou(fix.mask, truth) == 1.0
    assert 0.2 < fix.iou < 0.3


def test_agreement_does_not_correct() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=1, drift_iou=0.5))
    t = track(1, "grasper", box(10, 10, 30, 30))
    assert run(policy, [([t], [det("grasper", box(12, 10, 32, 30))])] * 3) == [[], [], []]


def test_duplicates_are_merged_by_the_overseer_vote() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=2))
    m = box(10, 10, 30, 30)
    a = track(1, "grasper", m)
    b = track(7, "grasper", box(11, 10, 31, 30))  # IoU 0.9 with a
    seen = det("grasper", box(11, 10, 31, 30))  # the overseer's mask matches b better
    out = run(policy, [([a, b], [seen])] * 2)
    assert out[0] == []
    (rm,) = out[1]
    assert (rm.action, rm.object_id, rm.reason) == (UpdateAction.REMOVE, 1, REASON_DUPLICATE)


def test_detection_on_a_tracked_object_of_another_class_is_not_added() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=1))
    a = track(1, "grasper", box(10, 10, 30, 30))
    out = run(policy, [([a], [det("grasper", a.mask), det("hook", box(10, 10, 30, 29))])])
    assert all(d.action is not UpdateAction.ADD for d in out[0])


def test_new_ids_never_collide_with_tracked_ids() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=1, first_auto_id=5))
    a = track(9, "grasper", box(0, 0, 10, 10))
    (add,) = policy.decide(0, [a], [det("grasper", a.mask), det("hook", box(40, 40, 60, 60))])
    assert add.object_id == 10


def test_trigger_every_k_and_on_abrupt_change() -> None:
    trig = RunTrigger(PolicyConfig(every_k=3))
    a = [track(1, "x", box(0, 0, 10, 10))]
    assert [trig.check(a) is not None for _ in range(7)] == [True, False, False, True, False, False, True]
    trig.check(a)
    assert trig.check([track(1, "x", box(0, 0, 30, 30))]) == "abrupt:1"  # area x9
    assert trig.check([track(1, "x", box(0, 0, 30, 30), score=0.3)]) == "abrupt:1"  # score drop


def test_config_from_options_validates() -> None:
    cfg = PolicyConfig.from_options({"persist_runs": "2", "trust_tracker_presence": "true"})
    assert cfg.persist_runs == 2 and cfg.trust_tracker_presence
    with pytest.raises(ValueError, match="unknown overseer option"):
        PolicyConfig.from_options({"bogus": "1"})
    with pytest.raises(ValueError, match="every_k"):
        PolicyConfig.from_options({"every_k": "0"})


def test_drift_guard_reanchors_after_implausible_jump() -> None:
    guard = DriftGuardPolicy(GuardConfig(persist_runs=2))
    ref = box(20, 20, 35, 35)
    steady = [track(1, "tumour", box(20, 20, 35, 35))]
    assert guard.decide(0, steady, {1: ref}) == []
    assert guard.decide(1, steady, {1: ref}) == []
    jumped = [track(1, "tumour", box(50, 40, 80, 64))]  # area x3 and far away
    assert guard.decide(2, jumped, {1: ref}) == []
    (fix,) = guard.decide(3, jumped, {1: ref})
    assert fix.action is UpdateAction.CORRECT and fix.reason == REASON_GUARD
    assert fix.mask is not None and mask_iou(fix.mask, ref) == 1.0


def test_drift_guard_leaves_plausible_motion_alone() -> None:
    guard = DriftGuardPolicy(GuardConfig(persist_runs=1))
    out = []
    for i in range(10):
        m = box(20 + i, 20, 35 + i, 35)  # 1 px per frame
        out += guard.decide(i, [track(1, "tumour", m)], {1: box(0, 50, 5, 55)})
    assert out == []
