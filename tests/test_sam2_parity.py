"""The sam2 engine against sam2's own offline ``SAM2VideoPredictor``: same model, same pixels.

Setup: one SAM 2.1 tiny model with random weights (seed 0; mask logits sharpened by
:func:`tracker.engines.sam2.parity.sharpen_random_logits` so that memory visibly matters), at
256 px, shared by both runs. The reference runs ``init_state`` on a folder of JPEG frames;
the engine streams the same JPEGs decoded with PIL, one frame at a time.

Clip: 32 frames of DAVIS-2016 ``blackswan`` (854x480) from the shared data (skipped where
the shared folder is absent, failed where it is present but broken; never another clip).
Prompt schedule (stream order):

* frame 0: object 1 (mask: the swan's annotation), object 2 (mask: a rectangle of bank);
* frame 10: object 3 ADDed mid-clip with a box prompt;
* frame 16: object 1 CORRECTed with a mask (the frame's annotation): a new conditioning frame;
* frame 20: object 1 CORRECTed with two clicks (one positive, one negative);
* frame 24: object 2 REMOVEd.

Compared per frame and object: the low-res logits (S/4 = 64 px square, after sam2's
hole filling, which is skipped by both when ``sam2._C`` is absent) and the logits at
video resolution (bilinear, as the reference's ``_get_orig_video_res_output``), max abs
difference <= 1e-3; binary masks at video resolution, IoU >= 0.999 (empty vs empty = 1).
Measured here: both differences are exactly 0.0 and every IoU is 1.0.

Documented difference (tested below): the reference replays the schedule causally
(propagate to the frame before an update, apply it, propagate on). If instead object 3
is added on frame 10 *before* propagating from frame 0, the reference tracks it on frames
0-9 from its *future* conditioning memory and feeds those outputs into its later memory,
which no causal stream can reproduce (on CPU float32 it even fails: that memory is
bfloat16 and meets no float32 pointer token in the attention).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import davis_clip
from tests.sam2_random import sharpened_random_engine
from tracker.engines.sam2 import memory as sam2_memory
from tracker.engines.sam2.engine import Sam2Engine
from tracker.engines.sam2.parity import ParityStats, compare_in_process, run_reference
from tracker.types import BoxPrompt, MaskPrompt, PointsPrompt, PromptUpdate, UpdateAction

N_FRAMES = 32
IMAGE_SIZE = 256
MAX_LOGIT_DIFF = 1e-3
MIN_IOU = 0.999

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A folder of N_FRAMES blackswan JPEGs and per-frame masks of object 1 (the annotations)."""
    folder = tmp_path_factory.mktemp("sam2_parity_clip")
    return folder, davis_clip(folder, "blackswan", N_FRAMES)


def _schedule(masks: list[np.ndarray]) -> dict[int, list[PromptUpdate]]:
    h, w = masks[0].shape
    bank = np.zeros((h, w), dtype=bool)
    bank[h // 20 : h // 4, w // 20 : w // 4] = True
    ys, xs = np.nonzero(masks[20])
    inside = (float(np.median(xs)), float(np.median(ys)))
    return {
        0: [
            PromptUpdate(UpdateAction.ADD, 1, MaskPrompt(masks[0])),
            PromptUpdate(UpdateAction.ADD, 2, MaskPrompt(bank)),
        ],
        10: [PromptUpdate(UpdateAction.ADD, 3, BoxPrompt(0.6 * w, 0.6 * h, 0.9 * w, 0.95 * h))],
        16: [PromptUpdate(UpdateAction.CORRECT, 1, MaskPrompt(masks[16]))],
        20: [
            PromptUpdate(
                UpdateAction.CORRECT,
                1,
                PointsPrompt(np.array([inside, (5.0, 5.0)]), np.array([1, 0])),
            )
        ],
        24: [PromptUpdate(UpdateAction.REMOVE, 2)],
    }


@pytest.fixture(scope="module")
def engine() -> Sam2Engine:
    return sharpened_random_engine(IMAGE_SIZE)


def _assert_parity(stats: ParityStats) -> None:
    assert not stats.missing, stats.missing
    assert stats.max_abs_logit_diff_low_res <= MAX_LOGIT_DIFF, stats
    assert stats.max_abs_logit_diff_video_res <= MAX_LOGIT_DIFF, stats
    assert stats.min_iou >= MIN_IOU, stats


def test_stream_matches_reference(engine: Sam2Engine, clip: tuple[Path, list[np.ndarray]]) -> None:
    folder, masks = clip
    stats = compare_in_process(engine, folder, _schedule(masks))
    # 32 frames: 2 objects on 0-9, 3 on 10-23, 2 on 24-31.
    assert stats.frames == N_FRAMES
    assert stats.object_frames == 2 * 10 + 3 * 14 + 2 * 8
    _assert_parity(stats)


def test_parity_detects_a_memory_bank_one_frame_short(
    engine: Sam2Engine, clip: tuple[Path, list[np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison is sharp enough to catch a bank missing its oldest mask memory."""
    folder, masks = clip
    keep = sam2_memory.MemoryPolicy.features_needed_later

    def one_short(self: sam2_memory.MemoryPolicy, t: int, latest: int) -> bool:
        return keep(self, t, latest) and t > latest - (self.num_maskmem - 2)

    monkeypatch.setattr(sam2_memory.MemoryPolicy, "features_needed_later", one_short)
    monkeypatch.setattr(sam2_memory.MemoryPolicy, "pointer_needed_later", lambda self, t, latest: False)
    stats = compare_in_process(engine, folder, _schedule(masks), num_frames=20)
    assert stats.max_abs_logit_diff_low_res > 100 * MAX_LOGIT_DIFF, stats


def test_reference_adding_before_propagation_is_not_causal(
    engine: Sam2Engine, clip: tuple[Path, list[np.ndarray]]
) -> None:
    """The documented difference: object 3 prompted on frame 10 before propagating from 0.

    The reference then tracks object 3 on frames 0-9 with only its frame-10 conditioning
    memory (and, since ``only_obj_ptrs_in_the_past_for_eval``, no object pointer). That
    memory is stored in bfloat16, so on CPU in float32 the memory attention fails on
    frame 0 with a dtype error; on CUDA under bfloat16 autocast it runs and segments the
    object before it was prompted, from the future. Either way no causal stream can
    reproduce it; the causal replay (propagate to frame 9, add, propagate on) is what the
    engine matches (test_stream_matches_reference).
    """
    import torch

    folder, masks = clip
    sched = _schedule(masks)
    seen: dict[int, torch.Tensor] = {}

    def keep(f: int, outs: dict) -> None:
        if 3 in outs:
            seen[f] = outs[3][0]

    run_reference(engine.model, folder, {0: sched[0], 10: sched[10]}, keep, num_frames=12)
    assert sorted(seen) == [10, 11]  # causal replay: object 3 exists from its prompt on
    seen.clear()
    with pytest.raises(RuntimeError, match="dtype"):
        run_reference(engine.model, folder, {0: sched[0], 10: sched[10]}, keep, num_frames=12, causal=False)
    assert not seen  # it failed on frame 0, on object 3's memory from frame 10
