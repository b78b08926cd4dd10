"""One object registry per session (tracker.objects): the registry alone, then everything that reads it."""

from __future__ import annotations

import pytest

from tracker.objects import ObjectRegistry, TrackedObject
from tracker.types import (
    PromptError,
    PromptUpdate,
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
