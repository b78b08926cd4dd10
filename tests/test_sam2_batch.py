"""Batching across streams in the SAM2 engines: batched equals one by one.

Setup: SAM 2.1 tiny, random weights (seed 0), mask logits sharpened x40 (as in the parity
tests, so masks are sharp and memory matters), 256 px, CPU, float32. Three sessions with
different prompts, frame sizes and start frames:

* A: mask prompt, 120x160 frames, from round 0;
* B: box prompt, 120x160 frames (another clip), from round 0;
* C: points prompt (one positive, one negative click), 96x128 frames, from round 2.

Each round steps one frame of every started session, once through ``Engine.step_batch``
(one image-encoder call per round, counted with a forward hook on the real model's
``image_encoder``) and once one by one with ``session.step`` on twin sessions. Compared on
every frame and object: the low-res mask logits (max abs diff <= 1e-4) and the masks
(IoU >= 0.999). The PyTorch engine and the ONNX Runtime engine (graphs exported by
``tracker export`` with a dynamic batch axis) are both checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sam2")

from tests.conftest import disk, textured_image
from tracker.engines.base import Engine, EngineSession, StepOutput
from tracker.types import (
    BoxPrompt,
    Frame,
    FrameError,
    MaskPrompt,
    ObjectPrompt,
    PointsPrompt,
    Prompt,
    PromptError,
    SessionConfig,
)

IMAGE_SIZE = 256
ROUNDS = 6
MAX_LOGIT_DIFF = 1e-4
MIN_IOU = 0.999

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Stream:
    """One session's clip: a textured background with a bright disc moving right."""

    name: str
    hw: tuple[int, int]
    seed: int
    start_round: int
    centre: tuple[float, float]  # (x, y) of the disc on its first frame
    radius: float

    def frame(self, k: int) -> np.ndarray:
        h, w = self.hw
        img = np.dstack([textured_image(h, w, self.seed + c) for c in range(3)])
        img[self.disc(k)] = (240, 200, 40)
        return img

    def disc(self, k: int = 0) -> np.ndarray:
        h, w = self.hw
        return disk(h, w, self.centre[0] + 2 * k, self.centre[1], self.radius)

    def prompt(self) -> Prompt:
        cx, cy = self.centre
        r = self.radius
        if self.name == "mask":
            return MaskPrompt(self.disc())
        if self.name == "box":
            return BoxPrompt(cx - r, cy - r, cx + r, cy + r)
        return PointsPrompt(np.array([(cx, cy), (3.0, 3.0)]), np.array([1, 0]))


STREAMS = (
    _Stream("mask", (120, 160), 0, 0, (50, 60), 14),
    _Stream("box", (120, 160), 10, 0, (90, 50), 18),
    _Stream("points", (96, 128), 20, 2, (40, 48), 12),
)


def _open(engine: Engine, stream: _Stream) -> EngineSession:
    return engine.open_session(SessionConfig(objects=(ObjectPrompt(1, stream.prompt()),)))


def _count_encoder_calls(model: Any) -> tuple[list[int], Any]:
    """Batch size of every call of the real model's image encoder (a forward hook)."""
    batches: list[int] = []

    def hook(_module: Any, args: tuple[Any, ...], _output: Any) -> None:
        batches.append(int(args[0].shape[0]))

    return batches, model.image_encoder.register_forward_hook(hook)


Record = dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]  # (stream, frame) -> (logits, mask)


def _record(session: Any, out: StepOutput, stream: _Stream, k: int, into: Record) -> None:
    assert [t.object_id for t in out.tracks] == [1]
    logits = session.last_logits(1).detach().float().numpy().copy()
    into[(stream.name, k)] = (logits, out.tracks[0].mask.copy())


def _run(engine: Engine, batched: bool) -> tuple[Record, list[int], list[int]]:
    """Step every stream for ROUNDS rounds; returns outputs, encoder batch sizes, step batch sizes."""
    sessions = {s.name: _open(engine, s) for s in STREAMS}
    record: Record = {}
    step_sizes: list[int] = []
    batches, handle = _count_encoder_calls(engine.model)
    try:
        for r in range(ROUNDS):
            live = [(s, r - s.start_round) for s in STREAMS if r >= s.start_round]
            if batched:
                work = [(sessions[s.name], Frame(k, s.frame(k))) for s, k in live]
                outcomes = engine.step_batch(work)
                assert len(outcomes) == len(work)
                for (s, k), out in zip(live, outcomes, strict=True):
                    assert isinstance(out, StepOutput), f"{s.name} frame {k}: {out!r}"
                    assert out.batch_size == len(work)
                    assert out.stages_ms["encoder"] > 0
                    step_sizes.append(out.batch_size)
                    _record(sessions[s.name], out, s, k, record)
            else:
                for s, k in live:
                    out = sessions[s.name].step(Frame(k, s.frame(k)))
                    assert out.batch_size == 1
                    _record(sessions[s.name], out, s, k, record)
    finally:
        handle.remove()
        for session in sessions.values():
            session.close()
    return record, batches, step_sizes


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _check_batched_equals_one_by_one(engine: Engine) -> None:
    one, one_calls, _ = _run(engine, batched=False)
    batched, calls, step_sizes = _run(engine, batched=True)
    # One encoder call per round: 2 sessions for the first two rounds, then 3.
    expected = [sum(r >= s.start_round for s in STREAMS) for r in range(ROUNDS)]
    assert calls == expected
    assert one_calls == [1] * sum(expected)
    assert sorted(step_sizes) == sorted(b for b in expected for _ in range(b))
    assert set(one) == set(batched)
    assert len(one) == sum(expected) == 3 * ROUNDS - 2
    worst_diff, worst_iou = 0.0, 1.0
    for key, (logits, mask) in one.items():
        b_logits, b_mask = batched[key]
        assert b_mask.shape == mask.shape
        worst_diff = max(worst_diff, float(np.abs(logits - b_logits).max()))
        worst_iou = min(worst_iou, _iou(mask, b_mask))
    logger.info("batched vs one by one: max abs logit diff %.3g, min IoU %.6f", worst_diff, worst_iou)
    assert worst_diff <= MAX_LOGIT_DIFF, f"max abs logit diff {worst_diff:.3g}"
    assert worst_iou >= MIN_IOU, f"min IoU {worst_iou:.6f}"
    # The comparison means something only if the masks are neither empty nor everything.
    fractions = [m.mean() for _, m in one.values()]
    assert 0.0 < float(np.median(fractions)) < 0.9, fractions


@pytest.fixture(scope="module")
def torch_engine() -> Any:
    from tests.sam2_random import sharpened_random_engine

    return sharpened_random_engine(IMAGE_SIZE)


def test_torch_batched_equals_one_by_one(torch_engine: Any) -> None:
    _check_batched_equals_one_by_one(torch_engine)


def test_onnx_batched_equals_one_by_one(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from tracker.engines.export import export_main
    from tracker.engines.onnx.engine import OnnxEngine
    from tracker.engines.onnx.engine import parse_options as onnx_options

    export_dir = tmp_path / "export"
    argv = ["--model", "tiny", "--random-weights", "--seed", "0", "--image-size", str(IMAGE_SIZE)]
    assert export_main([*argv, "--out", str(export_dir), "--sharpen-logits", "40"]) == 0
    engine = OnnxEngine(
        onnx_options({"export_dir": str(export_dir), "providers": "cpu", "image_size": str(IMAGE_SIZE)})
    )
    assert engine.encoder_batches
    assert engine.manifest.graphs["image_encoder"].inputs[0]["shape"] == ["batch", 3, IMAGE_SIZE, IMAGE_SIZE]
    frame = Frame(0, STREAMS[0].frame(0))
    assert engine.batch_key(_open(engine, STREAMS[0]), frame) is not None
    _check_batched_equals_one_by_one(engine)


def test_batch_key_ignores_frame_size(torch_engine: Any) -> None:
    a, c = _open(torch_engine, STREAMS[0]), _open(torch_engine, STREAMS[2])
    key_a = torch_engine.batch_key(a, Frame(0, STREAMS[0].frame(0)))
    key_c = torch_engine.batch_key(c, Frame(0, STREAMS[2].frame(0)))
    assert key_a is not None and key_a == key_c


def test_one_bad_item_costs_only_its_frame(torch_engine: Any) -> None:
    good_stream, other = STREAMS[0], STREAMS[1]
    good = _open(torch_engine, good_stream)
    twin = _open(torch_engine, good_stream)  # stepped alone, for the reference answer
    # Wrong frame size: a session that has seen 120x160 frames is sent a 100x100 one.
    wrong_size = _open(torch_engine, other)
    assert isinstance(wrong_size.step(Frame(0, other.frame(0))), StepOutput)
    # Bad prompt: a one-pixel mask on a 600x800 frame vanishes at the model's 256 px; the
    # engine finds out only when it prepares the frame (after its frame check).
    dot = np.zeros((600, 800), dtype=bool)
    dot[300, 400] = True
    bad_prompt = torch_engine.open_session(SessionConfig(objects=(ObjectPrompt(7, MaskPrompt(dot)),)))
    big = np.dstack([textured_image(600, 800, c) for c in range(3)])

    batches, handle = _count_encoder_calls(torch_engine.model)
    try:
        outcomes = torch_engine.step_batch(
            [
                (wrong_size, Frame(1, np.zeros((100, 100, 3), dtype=np.uint8))),
                (good, Frame(0, good_stream.frame(0))),
                (bad_prompt, Frame(0, big)),
            ]
        )
    finally:
        handle.remove()
    assert isinstance(outcomes[0], FrameError) and "100x100" in str(outcomes[0])
    assert isinstance(outcomes[2], PromptError) and "vanishes" in str(outcomes[2])
    assert isinstance(outcomes[1], StepOutput) and outcomes[1].batch_size == 1
    assert batches == [1]  # the good frame alone went through the encoder

    alone = twin.step(Frame(0, good_stream.frame(0)))
    assert np.array_equal(outcomes[1].tracks[0].mask, alone.tracks[0].mask)
    # The failed items left their sessions as they were: the next good frames step.
    assert bad_prompt.object_ids == []  # the failed ADD left no half-made object
    assert wrong_size.frame_idx == 0
    again = torch_engine.step_batch(
        [(wrong_size, Frame(1, other.frame(1))), (good, Frame(1, good_stream.frame(1)))]
    )
    assert all(isinstance(o, StepOutput) and o.batch_size == 2 for o in again), again
    assert wrong_size.frame_idx == 1


def test_same_session_twice_in_a_batch_is_refused(torch_engine: Any) -> None:
    s = _open(torch_engine, STREAMS[0])
    outcomes = torch_engine.step_batch(
        [(s, Frame(0, STREAMS[0].frame(0))), (s, Frame(1, STREAMS[0].frame(1)))]
    )
    assert isinstance(outcomes[0], StepOutput)
    assert isinstance(outcomes[1], ValueError) and "twice" in str(outcomes[1])
