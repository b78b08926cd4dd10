"""One session's objects: which exist, their labels and slots, in one place.

Every part of a session that needs to know which objects it tracks reads one
:class:`ObjectRegistry`: the engine session (which objects to answer for, in which order),
an overseer's inner and reference sessions (they share the wrapper's registry), the
overseer's own decisions (which ids are taken), the answering loop (the per-session object
limit, each answer's label) and the gate (whose per-object motion state lives only as long
as its object). Objects are added, corrected and removed here and nowhere else; per-object
*engine state* (a SAM2 memory bank, a flow anchor, a gate's motion filter) stays with its
owner, keyed by the client's id.

The registry records the state *after* the prompt updates accepted so far: an object added
now is listed at once, though it is tracked from the next frame processed (see
:class:`~tracker.types.PromptUpdate`). :attr:`TrackedObject.first_frame` says when that was.

Slots, after Cutie's ``ObjectManager``, with one difference. An object's slot is the
session's own handle for it, given in order of addition from 0. Unlike Cutie's temporary
ids (positions in one stacked tensor, compacted when an object leaves), a slot is **never
reused** within a session: no engine here stacks objects into one tensor, and a stable
handle lets a reader tell an object from an earlier one under the same client id (removed,
then added again: a new slot). So ``(object_id, slot)`` names one object for the session's
whole life. Iteration is in slot order, which is the order of addition: a correction keeps
an object's place, an object added again goes to the end. Client ids are the client's own
and are never used as slots.

Thread safety: the answering loop, a scheduler worker (overseer decisions taken during a
step) and an overseer's detector thread may touch one registry; every method holds a
lock, and reads return copies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

from tracker.types import PromptError, PromptUpdate, UpdateAction


@dataclass(frozen=True)
class TrackedObject:
    """One object of a session, as every reader of the registry sees it."""

    object_id: int  # the client's id (or one the overseer gave a new object)
    label: str  # "" when none was given
    slot: int  # the session's own handle: given in order of addition, never reused
    first_frame: int | None = None  # client index of the first frame it was tracked on; None: not yet


class ObjectRegistry:
    """The objects of one session (see the module docstring for slots, order and threads)."""

    def __init__(self) -> None:
        self._objects: dict[int, TrackedObject] = {}  # client id -> record, in slot order
        self._next_slot = 0
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------

    def __contains__(self, object_id: object) -> bool:
        with self._lock:
            return object_id in self._objects

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def __iter__(self) -> Iterator[TrackedObject]:
        """The records, in slot order (a copy: the registry may change meanwhile)."""
        with self._lock:
            return iter(list(self._objects.values()))

    def ids(self) -> list[int]:
        """Client ids in slot order."""
        with self._lock:
            return list(self._objects)

    def get(self, object_id: int) -> TrackedObject:
        """The record of ``object_id``; KeyError naming the tracked ids if there is none."""
        with self._lock:
            record = self._objects.get(object_id)
            if record is None:
                raise KeyError(self._unknown(object_id))
            return record

    def label_of(self, object_id: int) -> str:
        return self.get(object_id).label

    def slot_of(self, object_id: int) -> int:
        return self.get(object_id).slot

    def slot_or_none(self, object_id: int) -> int | None:
        """The object's slot, or None when it is not tracked (one look-up: no race with a removal)."""
        with self._lock:
            record = self._objects.get(object_id)
            return None if record is None else record.slot

    # -- changing ---------------------------------------------------------------------

    def check(self, update: PromptUpdate) -> None:
        """Raise the PromptError :meth:`apply` would raise for ``update``; change nothing."""
        with self._lock:
            self._check(update.action, update.object_id)

    def apply(self, update: PromptUpdate) -> TrackedObject:
        """Record ``update`` (add, correct or remove its object); return the object's record."""
        if update.action is UpdateAction.ADD:
            return self.add(update.object_id, update.label)
        if update.action is UpdateAction.REMOVE:
            return self.remove(update.object_id)
        return self.correct(update.object_id, update.label)

    def add(self, object_id: int, label: str = "") -> TrackedObject:
        """A new object in the next slot; PromptError if ``object_id`` is already tracked."""
        with self._lock:
            self._check(UpdateAction.ADD, object_id)
            record = TrackedObject(object_id, label, self._next_slot)
            self._next_slot += 1
            self._objects[object_id] = record
            return record

    def correct(self, object_id: int, label: str = "") -> TrackedObject:
        """A correction: the object keeps its slot and place; a non-empty ``label`` replaces its label."""
        with self._lock:
            self._check(UpdateAction.CORRECT, object_id)
            record = self._objects[object_id]
            if label:
                record = self._objects[object_id] = replace(record, label=label)
            return record

    def remove(self, object_id: int) -> TrackedObject:
        """Drop the object (its slot is retired); PromptError if it is not tracked."""
        with self._lock:
            self._check(UpdateAction.REMOVE, object_id)
            return self._objects.pop(object_id)

    def mark_first_frame(self, object_id: int, frame_index: int) -> None:
        """Record the frame the object was first tracked on (once; later calls change nothing)."""
        with self._lock:
            record = self._objects.get(object_id)
            if record is not None and record.first_frame is None:
                self._objects[object_id] = replace(record, first_frame=frame_index)

    def clear(self) -> None:
        """Forget every object (the session closed); slots stay retired."""
        with self._lock:
            self._objects.clear()

    # -- internals --------------------------------------------------------------------

    def _check(self, action: UpdateAction, object_id: int) -> None:
        known = object_id in self._objects
        if action is UpdateAction.ADD and known:
            raise PromptError(f"object {object_id} is already tracked; use a correction instead")
        if action is not UpdateAction.ADD and not known:
            raise PromptError(self._unknown(object_id))

    def _unknown(self, object_id: int) -> str:
        return f"unknown object id {object_id} (tracked: {sorted(self._objects) or 'none'})"
