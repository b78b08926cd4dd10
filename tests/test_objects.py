"""One object registry per session (tracker.objects): the registry alone, then everything that reads it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import disk, textured_image
from tracker.client import TrackerClient
from tracker.engines import create_engine
from tracker.gating.gate import Gate
from tracker.gating.types import GatingConfig
from tracker.masks import describe
from tracker.objects import ObjectRegistry, TrackedObject
from tracker.overseer.build import wrap_engine
from tracker.overseer.engine import OverseenEngine
from tracker.overseer.policy import PolicyConfig, RepromptPolicy
from tracker.overseer.types import Detection, TrackView
from tracker.server.app import start_server
from tracker.types import (
    Frame,
    FrameResult,
    FrameStatus,
    Geometry,
    MaskPrompt,
    Modality,
    ObjectPrompt,
    ObjectTrack,
    PromptError,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

H, W = 96, 120

# -- the registry alone -------------------------------------------------------------------


def test_slots_follow_the_order_of_addition_and_iteration_keeps_it() -> None:
    reg = ObjectRegistry()
    reg.add(7, "grasper")
    reg.add(3)
    reg.add(12, "hook")
    assert reg.ids() == [7, 3, 12]  # order of addition, not of id
    assert [o.slot for o in reg] == [0, 1, 2]
    assert reg.get(12) == TrackedObject(12, "hook", 2, None)
    assert reg.label_of(3) == "" and reg.slot_of(7) == 0 and len(reg) == 3
    assert 3 in reg and 4 not in reg


def test_a_slot_is_never_reused_and_an_object_added_again_goes_last() -> None:
    reg = ObjectRegistry()
    for oid in (1, 2, 3):
        reg.add(oid)
    assert reg.remove(2).slot == 1
    reg.add(4)
    reg.add(2, "again")
    assert reg.ids() == [1, 3, 4, 2]
    assert [reg.slot_of(oid) for oid in (1, 3, 4, 2)] == [0, 2, 3, 4]  # slot 1 stays retired
    assert reg.slot_or_none(2) == 4 and reg.slot_or_none(99) is None
    reg.clear()
    assert reg.ids() == [] and reg.add(1).slot == 5  # slots stay retired across a clear


def test_a_correction_keeps_slot_and_place_and_relabels_only_when_given_a_label() -> None:
    reg = ObjectRegistry()
    reg.add(1, "tumour")
    reg.add(2)
    assert reg.correct(1) == TrackedObject(1, "tumour", 0)
    assert reg.correct(1, "node") == TrackedObject(1, "node", 0)
    assert reg.ids() == [1, 2] and reg.label_of(1) == "node"


def test_errors_name_the_object_and_what_is_tracked_and_change_nothing() -> None:
    reg = ObjectRegistry()
    with pytest.raises(PromptError, match=r"^unknown object id 9 \(tracked: none\)$"):
        reg.remove(9)
    reg.add(2)
    reg.add(1)
    with pytest.raises(PromptError, match=r"^object 1 is already tracked; use a correction instead$"):
        reg.add(1, "other")
    with pytest.raises(PromptError, match=r"^unknown object id 9 \(tracked: \[1, 2\]\)$"):
        reg.correct(9, "x")
    with pytest.raises(PromptError, match=r"^unknown object id 9 \(tracked: \[1, 2\]\)$"):
        reg.check(PromptUpdate(UpdateAction.REMOVE, 9))
    with pytest.raises(KeyError, match="unknown object id 9"):
        reg.get(9)
    assert reg.ids() == [2, 1] and reg.label_of(1) == "" and reg.add(5).slot == 2  # no slot was spent


def test_apply_records_an_update_and_the_first_frame_is_recorded_once() -> None:
    reg = ObjectRegistry()
    reg.check(PromptUpdate(UpdateAction.ADD, 4, label="tumour"))
    assert 4 not in reg  # check changes nothing
    assert reg.apply(PromptUpdate(UpdateAction.ADD, 4, label="tumour")).slot == 0
    assert reg.apply(PromptUpdate(UpdateAction.CORRECT, 4, label="node")).label == "node"
    reg.mark_first_frame(4, 10)
    reg.mark_first_frame(4, 11)
    reg.mark_first_frame(99, 11)  # not tracked: nothing to record
    assert reg.get(4).first_frame == 10
    reg.apply(PromptUpdate(UpdateAction.REMOVE, 4))
    assert 4 not in reg and 99 not in reg


# -- engine sessions, the overseer, the gate ------------------------------------------------


def _config(*objects: ObjectPrompt, **kw: object) -> SessionConfig:
    return SessionConfig(objects=tuple(objects), **kw)  # type: ignore[arg-type]


def test_an_engine_session_keeps_its_objects_in_its_registry() -> None:
    session = create_engine("flow").open_session(
        _config(ObjectPrompt(1, MaskPrompt(disk(H, W, 40, 40, 9)), "a"))
    )
    image = textured_image(H, W)
    assert session.objects.ids() == [1] and session.objects.get(1).first_frame is None
    session.step(Frame(5, image))
    assert session.objects.get(1) == TrackedObject(1, "a", 0, 5)
    with pytest.raises(PromptError, match="is 10x10 but frames are 96x120"):
        session.apply(PromptUpdate(UpdateAction.ADD, 2, MaskPrompt(np.ones((10, 10), bool))))
    assert session.object_ids == [1]  # a refused update leaves the registry as it was
    session.apply(PromptUpdate(UpdateAction.ADD, 2, MaskPrompt(disk(H, W, 80, 50, 9)), "b"))
    assert session.object_ids == [1, 2] and session.objects.get(2).first_frame is None  # queued
    out = session.step(Frame(6, image))
    assert [t.object_id for t in out.tracks] == [1, 2] and session.objects.get(2).first_frame == 6
    session.close()
    assert session.object_ids == []


def test_the_overseer_its_inner_session_and_its_guard_share_one_registry() -> None:
    wrapped = wrap_engine(create_engine("flow"), "guard")
    session = wrapped.open_session(_config(ObjectPrompt(1, MaskPrompt(disk(H, W, 40, 40, 9)), "tumour")))
    inner, guard = session.inner, session._guard_session
    assert guard is not None and session.objects is inner.objects is guard.objects
    image = textured_image(H, W)
    session.step(Frame(0, image))
    session.apply(PromptUpdate(UpdateAction.ADD, 2, MaskPrompt(disk(H, W, 80, 50, 9)), "node"))
    assert inner.object_ids == [1, 2] and guard.label_of(2) == "node"  # the wrapper's add, seen at once
    out = session.step(Frame(1, image))
    assert [t.object_id for t in out.tracks] == [1, 2]
    session.apply(PromptUpdate(UpdateAction.REMOVE, 1))
    assert inner.object_ids == [2] and guard.object_ids == [2]
    assert [t.object_id for t in session.step(Frame(2, image)).tracks] == [2]
    with pytest.raises(ValueError, match="only before it has any of its own"):
        inner.attach(session.objects)
    session.close()


def test_new_overseer_ids_avoid_the_objects_the_session_has_not_tracked_yet() -> None:
    policy = RepromptPolicy(PolicyConfig(persist_runs=1, first_auto_id=1000))
    mask = np.zeros((H, W), bool)
    mask[40:60, 40:60] = True
    tracked = TrackView(1, "grasper", disk(H, W, 20, 20, 8), 0.9)
    seen = [Detection("grasper", 0.9, tracked.mask), Detection("hook", 0.9, mask)]
    (add,) = policy.decide(0, [tracked], seen, reserved=[1, 1000, 1001])
    assert add.action is UpdateAction.ADD and add.object_id == 1002


def _result(index: int, x_px: float, *ids: int) -> FrameResult:
    objects = []
    for oid in ids:
        mask = np.zeros((40, 50), bool)
        mask[10:16, int(x_px) : int(x_px) + 6] = True
        objects.append(describe(ObjectTrack(oid, mask, 0.9, 0.9), "", Geometry()))
    return FrameResult(index, FrameStatus.OK, objects=objects)


def test_the_gate_keeps_motion_state_only_for_objects_in_the_registry() -> None:
    reg = ObjectRegistry()
    reg.add(1)
    config = GatingConfig(margin_mm=3.0, guard_mm=0.0, horizon_ms=250.0, predictor="hold", guard_sigmas=0.0)
    gate = Gate(config, Geometry(), reg)
    gate.observe(_result(0, 20, 1), 0.0, 10)  # the first position is the reference
    moved = _result(1, 22, 1)
    gate.observe(moved, 0.25, 10)
    assert moved.objects[0].displacement_mm == pytest.approx((2.0, 0.0, 0.0))
    # Removed and added again under the same id: a new object, with a new reference.
    reg.remove(1)
    reg.add(1)
    again = _result(2, 25, 1)
    gate.observe(again, 0.5, 10)
    assert again.objects[0].displacement_mm == pytest.approx((0.0, 0.0, 0.0))
    # Removed for good: its motion state goes at the next answer (no call to forget).
    reg.remove(1)
    gate.observe(_result(3, 25), 0.75, 10)
    assert gate._objects == {}
    # Without a registry (offline use) the gate keeps every object it was shown, as before.
    offline = Gate(config, Geometry())
    offline.observe(_result(0, 20, 1), 0.0, 10)
    offline.observe(_result(1, 20), 0.25, 10)
    later = _result(2, 23, 1)
    offline.observe(later, 0.5, 10)
    assert later.objects[0].displacement_mm == pytest.approx((3.0, 0.0, 0.0))


# -- through the real server ----------------------------------------------------------------


class _Scripted:
    """Detections per frame index (the overseer's detector)."""

    name = "scripted"

    def __init__(self, script: dict[int, list[Detection]]) -> None:
        self.script = script

    def detect(self, frame: Frame) -> list[Detection]:
        return self.script.get(frame.index, [])

    def close(self) -> None:
        pass


def test_server_updates_reach_the_engine_session_the_overseer_and_the_gate() -> None:
    tumour, grasper = disk(H, W, 40, 40, 9), disk(H, W, 85, 55, 9)
    # The detector sees the grasper on frames 1-2 and the tumour up to frame 2; from frame 3 on
    # nothing, so the overseer removes the tumour after three runs without it (frame 5).
    script = {
        i: [Detection("tumour", 0.9, tumour)] + ([Detection("grasper", 0.9, grasper)] if i else [])
        for i in range(3)
    }
    engine = OverseenEngine(
        create_engine("flow"), lambda _c: _Scripted(script), PolicyConfig(persist_runs=3), "inline"
    )
    running = start_server({"flow": engine}, port=0)
    assert running.ready.wait(60), "engine warm-up did not finish"
    gating = GatingConfig(
        margin_mm=3.0, guard_mm=0.0, horizon_ms=1.0, predictor="hold", guard_sigmas=0.0, min_confidence=0.0
    )
    config = SessionConfig(
        modality=Modality.CINE_MRI, objects=(ObjectPrompt(1, MaskPrompt(tumour), "tumour"),), gating=gating
    )
    image = textured_image(H, W, seed=4)
    try:
        with TrackerClient(running.address) as client:
            session = client.open_session(config)
            (hosted,) = running.host.open_sessions()
            overseen = hosted.engine_session
            gate = hosted.gate
            assert gate is not None
            registry = overseen.objects
            # One registry object, the same instance, wherever the session's objects are read.
            assert registry is hosted.objects is gate.objects is overseen.inner.objects

            session.send_frame(image, 0)
            assert [o.object_id for o in session.recv_frame().result.objects] == [1]
            session.add_object(7, MaskPrompt(grasper), "grasper")
            assert registry.ids() == [1, 7] and overseen.inner.label_of(7) == "grasper"  # before the frame
            session.send_frame(image, 1)
            first = session.recv_frame().result
            assert [(o.object_id, o.label) for o in first.objects] == [(1, "tumour"), (7, "grasper")]
            assert registry.get(7).first_frame == 1 and set(gate._objects) == {1, 7}
            session.send_frame(image, 2)
            session.recv_frame()

            session.remove_object(7)
            assert registry.ids() == [1] and overseen.inner.object_ids == [1]
            session.send_frame(image, 3)
            assert [o.object_id for o in session.recv_frame().result.objects] == [1]
            assert set(gate._objects) == {1}  # the client's removal reached the gate

            session.send_frame(image, 4)
            session.recv_frame()
            session.send_frame(image, 5)
            last = session.recv_frame().result
            assert [(e.action, e.object_id) for e in last.reprompts] == [("remove", 1)]
            assert last.objects == [] and registry.ids() == [] and overseen.inner.object_ids == []
            assert gate._objects == {}  # so did the overseer's
            session.close()
    finally:
        running.stop(grace_s=0.5)
