"""OverseenEngine around the flow engine: inline and async runs, events, client updates, guard."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import disk, shift, textured_image
from tracker.engines import create_engine
from tracker.overseer.engine import OverseenEngine
from tracker.overseer.policy import PolicyConfig
from tracker.overseer.types import Detection
from tracker.types import (
    Frame,
    MaskPrompt,
    ObjectPrompt,
    PromptError,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

H, W = 96, 128


class Scripted:
    """Detections per frame index, optionally slow (to force the worker thread)."""

    name = "scripted"

    def __init__(self, script: dict[int, list[Detection]], delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.calls: list[int] = []

    def detect(self, frame: Frame) -> list[Detection]:
        self.calls.append(frame.index)
        time.sleep(self.delay_s)
        return self.script.get(frame.index, [])

    def close(self) -> None:
        pass


def session(detector: Scripted, execution: str = "inline", m: int = 2, objects=(), budget_ms: float = 1000.0):
    engine = OverseenEngine(
        create_engine("flow"), lambda _c: detector, PolicyConfig(persist_runs=m), execution
    )
    config = SessionConfig(objects=tuple(objects), latency_budget_ms=budget_ms)
    return engine.open_session(config)


def test_inline_run_adds_entering_object_on_the_frame_after_m_runs() -> None:
    image = textured_image(H, W)
    mask = disk(H, W, 90, 50, 10)
    det = Detection("hook", 0.9, mask)
    sess = session(Scripted({i: [det] for i in range(2, 20)}), m=2)
    seen: dict[int, list] = {}
    for i in range(5):
        out = sess.step(Frame(i, image))
        seen[i] = [t.object_id for t in out.tracks]
        events = out.events
        if i == 3:
            (ev,) = events
            assert (ev.action, ev.reason, ev.label, ev.observed_frame) == ("add", "enter", "hook", 3)
        else:
            assert events == []
    assert seen[3] == [] and len(seen[4]) == 1  # decided on frame 3, tracked from frame 4
    new_id = seen[4][0]
    assert sess.label_of(new_id) == "hook"


class Gated(Scripted):
    """A detector that blocks until the test releases it: shows who waits, without timing."""

    def __init__(self, script: dict[int, list[Detection]]) -> None:
        super().__init__(script)
        self.gate = threading.Event()
        self.finished = 0

    def detect(self, frame: Frame) -> list[Detection]:
        self.calls.append(frame.index)
        assert self.gate.wait(60), "the test never released the detector"
        self.finished += 1
        return self.script.get(frame.index, [])


def test_slow_detector_runs_beside_the_frame_path() -> None:
    image = textured_image(H, W)
    det = Detection("hook", 0.9, disk(H, W, 90, 50, 10))
    detector = Gated({i: [det] for i in range(500)})
    sess = session(detector, execution="auto", m=1, budget_ms=100.0)
    for i in range(5):
        out = sess.step(Frame(i, image))
        assert out.tracks == [] and out.events == []
    # Five frames were answered while the detector's first run (on frame 0) was still
    # blocked: the frame path never waits for it.
    assert detector.calls[:1] == [0] and detector.finished == 0
    detector.gate.set()
    added_at = None
    for i in range(5, 500):  # until the worker's decision lands (bounded, not timed)
        events = sess.step(Frame(i, image)).events
        if events:
            added_at = i
            assert events[0].observed_frame < i  # the decision came from an earlier frame
            break
        time.sleep(0.01)
    assert added_at is not None and sess.async_runs >= 1
    assert len(sess.step(Frame(added_at + 1, image)).tracks) == 1  # tracked from the next frame
    sess.close()


def test_client_updates_pass_through_and_removed_objects_are_not_corrected() -> None:
    image = textured_image(H, W)
    m0 = disk(H, W, 40, 40, 10)
    far = disk(H, W, 44, 40, 10)  # same class, overlapping: below drift_iou, above match_iou
    detector = Scripted({i: [Detection("grasper", 0.9, far)] for i in range(10)})
    engine = OverseenEngine(
        create_engine("flow"), lambda _c: detector, PolicyConfig(persist_runs=3, drift_iou=0.95), "inline"
    )
    sess = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(m0), "grasper"),)))
    sess.step(Frame(0, image))
    sess.step(Frame(1, image))
    sess.apply(PromptUpdate(UpdateAction.REMOVE, 1))
    assert sess.object_ids == []
    events = []
    for i in range(2, 7):
        out = sess.step(Frame(i, image))
        assert all(t.object_id != 1 for t in out.tracks)  # may be empty until the re-find
        events += out.events
    assert all(e.object_id != 1 for e in events)
    assert [(e.action, e.reason) for e in events] == [("add", "enter")]  # the grasper is re-found
    with pytest.raises(PromptError):
        sess.apply(PromptUpdate(UpdateAction.CORRECT, 1, MaskPrompt(m0)))


def test_oracle_needs_in_process_paths() -> None:
    from tracker.overseer.build import wrap_engine

    remote = wrap_engine(create_engine("flow"), "oracle", allow_oracle_paths=False)
    with pytest.raises(PromptError, match="in-process"):
        remote.open_session(SessionConfig(engine_options={"overseer.oracle": "/etc"}))
    local = wrap_engine(create_engine("flow"), "oracle", allow_oracle_paths=True)
    with pytest.raises(PromptError, match=r"overseer\.oracle"):
        local.open_session(SessionConfig())
    with pytest.raises(PromptError, match="unknown overseer option"):
        local.open_session(SessionConfig(engine_options={"overseer.nope": "1"}))


def test_drift_guard_reanchors_a_jumping_engine() -> None:
    """Guard mode: the main engine is made to jump; the flow reference re-anchors it."""
    from tracker.overseer.build import wrap_engine

    class Jumpy:
        """A fake inner engine whose mask jumps away on frames >= 3."""

        info = create_engine("flow").info

        def open_session(self, config: SessionConfig):
            from tracker.engines.base import EngineSession
            from tracker.types import ObjectTrack

            class S(EngineSession):
                corrected = 0

                def _step(self, frame, updates):
                    self.corrected += sum(u.action is UpdateAction.CORRECT for u in updates)
                    if frame.index >= 3 and not self.corrected:
                        return [ObjectTrack(1, disk(H, W, 100, 70, 20), 0.9)]
                    return [ObjectTrack(1, disk(H, W, 40, 40, 10), 0.9)]

            return S(config)

    engine = wrap_engine(Jumpy(), "guard")  # type: ignore[arg-type]
    image = textured_image(H, W)
    sess = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(disk(H, W, 40, 40, 10))),)))
    reasons = []
    for i in range(8):
        out = sess.step(Frame(i, shift(image, 0.5 * i, 0)))
        reasons += [(i, e.reason) for e in out.events]
    assert reasons and reasons[0][1] == "guard" and reasons[0][0] in (4, 5)


def test_degrading_skips_the_overseer_first_then_the_inner_engine():
    import numpy as np

    from tracker.engines import create_engine
    from tracker.overseer.build import wrap_engine
    from tracker.types import Frame, MaskPrompt, ObjectPrompt, SessionConfig

    wrapped = wrap_engine(create_engine("flow"), "guard")
    mask = np.zeros((64, 80), bool)
    mask[20:40, 30:50] = True
    session = wrapped.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(mask)),)))
    assert session.degradations() == (
        "skip the overseer",
        "lower input resolution: optical flow at half the working size",
    )
    image = (np.random.default_rng(0).random((64, 80)) * 255).astype(np.uint8)
    session.step(Frame(0, image))
    session.step(Frame(1, image))
    assert "overseer" in session.timer.results()
    session.set_degradation(1)
    session.step(Frame(2, image))
    assert "overseer" not in session.timer.results() and session.inner.degradation_level == 0
    session.set_degradation(2)
    assert session.inner.degradation_level == 1
    session.close()
