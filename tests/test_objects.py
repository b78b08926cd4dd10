"""One object registry per session (tracker.objects): the registry alone, then everything that reads it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import disk, textured_image
from tracker.engines import create_engine
from tracker.objects import ObjectRegistry, TrackedObject
from tracker.overseer.build import wrap_engine
from tracker.overseer.policy import PolicyConfig, RepromptPolicy
from tracker.overseer.types import Detection, TrackView
from tracker.types import (
    Frame,
    MaskPrompt,
    ObjectPrompt,
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
