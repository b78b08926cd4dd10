"""Tests of the ``sam2`` engine (tracker/engines/sam2/) with random weights at 256 px.

What random weights can and cannot show: masks are meaningless, so these tests check
plumbing that does not depend on what the model has learnt: memory bounds (on the
engine's own dataclasses and on tensor bytes), independence of objects under
ADD/REMOVE/CORRECT, prompt frames answered from the prompt, presence scores,
preprocessing (sam2's exact video path, the cine-MRI window), crop mapping and option
validation. Exactness against sam2's reference predictor is tests/test_sam2_parity.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, disk, textured_image
from tracker.engines.base import PROMPT_CAPABILITIES
from tracker.engines.sam2.memory import MemoryFrame, MemoryPolicy, ObjectMemory
from tracker.engines.sam2.options import cpu_has_native_bf16, parse_options
from tracker.engines.sam2.preprocess import CropWindow, frame_to_tensor, square_window_around, window_gray
from tracker.types import (
    Frame,
    MaskPrompt,
    ObjectPrompt,
    PointsPrompt,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)

IMAGE_SIZE = 256
H, W = 120, 160


def _rgb_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Textured RGB frames with a bright disc moving right by 2 px per frame."""
    base = np.dstack([textured_image(H, W, seed + c) for c in range(3)])
    out = []
    for i in range(n):
        img = base.copy()
        img[disk(H, W, 50 + 2 * i, 60, 14)] = (240, 200, 40)
        out.append(img)
    return out


def _disc(i: int = 0) -> np.ndarray:
    return disk(H, W, 50 + 2 * i, 60, 14)


@pytest.fixture(scope="module")
def engine():
    from tracker.engines.sam2.engine import Sam2Engine

    return Sam2Engine.from_options({"random_weights": "true", "image_size": str(IMAGE_SIZE), "device": "cpu"})


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"random_weights": "true", "model": "huge"}, "model='huge'"),
        ({"random_weights": "true", "image_size": "500"}, "image_size='500'"),
        ({"random_weights": "true", "image_size": "big"}, "image_size='big' is not an integer"),
        ({"random_weights": "true", "device": "tpu"}, "device='tpu'"),
        ({"random_weights": "true", "dtype": "float16"}, "dtype='float16'"),
        ({"random_weights": "true", "crop_margin_px": "-3"}, "crop_margin_px='-3'"),
        ({"random_weights": "maybe"}, "random_weights='maybe' is not a boolean"),
        ({}, "checkpoint=PATH"),
        ({"random_weights": "true", "checkpoint": "/x.pt"}, "exclude each other"),
        ({"random_weights": "true", "colour": "red"}, "unknown sam2 engine option(s) colour"),
    ],
)
def test_option_errors_name_the_option_and_allowed_values(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="sam2 engine") as err:
        parse_options(options, cuda_available=False)
    assert message in str(err.value)


def test_option_defaults_and_aliases() -> None:
    s = parse_options({"random_weights": "true", "model": "b+"}, cuda_available=False)
    assert (s.model, s.device, s.image_size, s.dtype, s.crop_margin_px) == (
        "sam2.1_hiera_base_plus",
        "cpu",
        512,
        "float32",
        None,
    )
    assert s.config == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    s = parse_options({"checkpoint": "/w/t.pt", "model": "L", "crop_margin_px": "24"}, cuda_available=True)
    assert (s.model, s.device, s.image_size, s.crop_margin_px) == ("sam2.1_hiera_large", "cuda", 1024, 24)
    with pytest.raises(ValueError, match="no CUDA device"):
        parse_options({"random_weights": "true", "device": "cuda"}, cuda_available=False)


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys, tracker.engines, tracker.engines.sam2, tracker.engines.sam2.engine,"
        " tracker.engines.sam2.options;"
        "print('torch' in sys.modules, 'sam2' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_missing_checkpoint_fails_clearly() -> None:
    from tracker.engines.sam2.engine import Sam2Engine

    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Sam2Engine.from_options({"checkpoint": "/nonexistent/sam2.1_hiera_tiny.pt", "image_size": "256"})


# -- info -----------------------------------------------------------------------------------


def test_random_weights_are_announced(caplog: pytest.LogCaptureFixture) -> None:
    from tracker.engines.sam2.engine import Sam2Engine

    with caplog.at_level(logging.WARNING):
        eng = Sam2Engine.from_options({"random_weights": "true", "image_size": "256", "seed": "3"})
    assert any("RANDOM WEIGHTS" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert eng.info.random_weights is True
    assert len(eng.info.warnings) == 1
    assert eng.info.warnings[0].startswith("RANDOM WEIGHTS")
    assert "not for clinical use" in eng.info.warnings[0]
    assert eng.info.name == "sam2"
    assert set(PROMPT_CAPABILITIES) <= set(eng.info.capabilities)


def test_same_seed_same_weights() -> None:
    import torch

    from tracker.engines.sam2.model import build_model

    a = build_model(parse_options({"random_weights": "true", "image_size": "256", "seed": "5"}))
    b = build_model(parse_options({"random_weights": "true", "image_size": "256", "seed": "5"}))
    c = build_model(parse_options({"random_weights": "true", "image_size": "256", "seed": "6"}))
    key = "sam_mask_decoder.iou_token.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])


# -- memory selection (pure Python) ------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("max_cond", [-1, 2])
def test_pruning_keeps_exactly_what_sam2_reads(stride: int, max_cond: int) -> None:
    """After each frame the bank holds what some later frame reads, and nothing else."""
    import torch

    policy = MemoryPolicy(
        num_maskmem=7, stride=stride, max_cond_frames=max_cond, use_obj_ptrs=True, max_obj_ptrs=16
    )
    cond_frames = {0, 20, 35, 37}
    mem = ObjectMemory()
    horizon = 80
    for f in range(horizon):
        e = MemoryFrame(f, torch.zeros(1, 4), torch.zeros(1, 2, dtype=torch.bfloat16))
        (mem.add_cond if f in cond_frames else mem.add_non_cond)(e)
        mem.prune(f, policy)
        # What frames f+1 .. f+40 read, given the conditioning frames up to f (causal).
        cond_sorted = sorted(t for t in cond_frames if t <= f)
        selected = set(cond_sorted if max_cond == -1 else cond_sorted[-max_cond:])
        need_feat, need_ptr = set(selected), set(selected)
        for g in range(f + 1, f + 41):
            need_feat.update(t for t in policy.mask_frames_read_at(g) if 0 <= t <= f)
            need_ptr.update(g - d for d in range(1, 16) if 0 <= g - d <= f)
        held_feat = {t for t, e in {**mem.cond, **mem.non_cond}.items() if e.maskmem_features is not None}
        held = set(mem.cond) | set(mem.non_cond)
        assert held_feat == need_feat, (f, sorted(held_feat ^ need_feat))
        assert held == need_feat | need_ptr, (f, sorted(held ^ (need_feat | need_ptr)))
        assert mem.feature_frames() <= policy.num_maskmem - 1
        if stride == 1:  # with r > 1 the mask-memory window reaches further back than the pointers
            assert len(mem.non_cond) <= policy.max_obj_ptrs - 1


# -- sessions -------------------------------------------------------------------------------


def test_bfloat16_on_cpu_needs_native_bf16_instructions() -> None:
    opts = {"random_weights": "true", "device": "cpu", "dtype": "bf16"}
    with pytest.raises(ValueError, match="dtype='bf16' needs device=cuda or a CPU with native bfloat16"):
        parse_options(opts, cpu_bf16=False)
    assert parse_options(opts, cpu_bf16=True).dtype == "bfloat16"
    zen4 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
    skylake = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"
    sapphire = "flags\t\t: avx512f amx_bf16 amx_tile\n"
    assert cpu_has_native_bf16(zen4) and cpu_has_native_bf16(sapphire)
    assert not cpu_has_native_bf16(skylake) and not cpu_has_native_bf16("")


def _logits(session, oid: int):
    return session.last_logits(oid).clone()


@pytest.mark.slow
@pytest.mark.skipif(
    not cpu_has_native_bf16(),
    reason="this CPU has no native bfloat16 (avx512_bf16/amx_bf16), so the engine refuses bf16 on it",
)
def test_bfloat16_autocast_on_cpu_tracks_like_float32() -> None:
    """bf16 on CPU is a speed option: it must run the whole stream (memory bank included)
    in bf16 and give masks close to float32's, not identical (sharpened random weights)."""
    import torch

    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.parity import mask_iou, sharpen_random_logits

    base = {"random_weights": "true", "image_size": str(IMAGE_SIZE), "device": "cpu"}
    engines = {d: Sam2Engine.from_options({**base, "dtype": d}) for d in ("float32", "bfloat16")}
    frames = _rgb_frames(6)
    worst, largest_diff = 1.0, 0.0
    sessions = {}
    for d, e in engines.items():
        sharpen_random_logits(e.model)
        sessions[d] = e.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())),)))
    assert "bfloat16" in engines["bfloat16"].info.version
    for i, frame in enumerate(frames):
        out = {d: s.step(Frame(i, frame)).tracks for d, s in sessions.items()}
        a, b = (_logits(sessions[d], 1).float() for d in ("float32", "bfloat16"))
        assert bool(torch.isfinite(b).all())
        largest_diff = max(largest_diff, float((a - b).abs().max()))
        worst = min(worst, mask_iou(a.numpy()[0, 0] > 0, b.numpy()[0, 0] > 0))
        assert [t.object_id for t in out["bfloat16"]] == [1]
    assert worst >= 0.95, worst
    assert largest_diff > 0.0  # bf16 really ran: float32 would agree bit for bit
    for s in sessions.values():
        s.close()


@pytest.mark.slow
def test_memory_is_bounded_over_a_long_stream(engine) -> None:
    frames = _rgb_frames(4)
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())),)))
    nm, max_ptrs = engine.model.num_maskmem, engine.model.max_obj_ptrs_in_encoder
    sizes = []
    for i in range(40):
        session.step(Frame(i, frames[i % 4]))
        mem = session.memory_of(1)
        sizes.append(session.storage_bytes())
        assert mem.feature_frames() <= nm - 1
        assert len(mem.non_cond) <= max_ptrs - 1
        assert set(mem.cond) == {0}
    mem = session.memory_of(1)
    last = session.frame_idx
    assert {t for t, e in mem.non_cond.items() if e.maskmem_features is not None} == set(
        range(last - (nm - 2), last + 1)
    )
    assert set(mem.non_cond) == set(range(last - (max_ptrs - 2), last + 1))
    assert mem.cond[0].maskmem_features is not None  # the prompt frame keeps its features
    assert len(set(sizes[16:])) == 1, sizes  # tensor storage flat once the pointer window is full
    assert sizes[16] < 2 * sizes[5]
    session.close()


@pytest.mark.slow
def test_add_remove_correct_leave_other_objects_alone(engine) -> None:
    """Object 1 gets bit-identical logits whether or not others are added/removed around it."""
    import torch

    frames = _rgb_frames(8)
    other = np.zeros((H, W), bool)
    other[10:40, 100:150] = True
    solo = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())),)))
    busy = engine.open_session(
        SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())), ObjectPrompt(2, MaskPrompt(other))))
    )
    corrected = _disc(4)
    for i, img in enumerate(frames):
        if i == 2:
            busy.apply(
                PromptUpdate(UpdateAction.ADD, 3, PointsPrompt(np.array([[120.0, 90.0]]), np.array([1])))
            )
        if i == 4:
            for s in (solo, busy):
                s.apply(PromptUpdate(UpdateAction.CORRECT, 1, MaskPrompt(corrected)))
        if i == 5:
            busy.apply(PromptUpdate(UpdateAction.REMOVE, 2))
        a, b = solo.step(Frame(i, img)).tracks, busy.step(Frame(i, img)).tracks
        assert torch.equal(_logits(solo, 1), _logits(busy, 1)), f"frame {i}"
        assert [t.object_id for t in b] == ([1, 2] if i < 2 else [1, 2, 3] if i < 5 else [1, 3])
        assert np.array_equal(a[0].mask, b[0].mask)
        if i == 4:  # a mask prompt is its own answer on its frame (use_mask_input_as_output)
            iou = (a[0].mask & corrected).sum() / (a[0].mask | corrected).sum()
            assert iou > 0.9
            assert a[0].score > 0.99
    assert set(busy.memory_of(1).cond) == {0, 4}  # the correction is a conditioning frame
    assert set(busy.memory_of(3).cond) == {2}
    assert busy.slot_of(3) == 2 and busy.slot_of(1) == 0  # slots are the engine's, ids the client's
    with pytest.raises(KeyError):
        busy.memory_of(2)  # removed objects take their memory with them


@pytest.mark.slow
def test_presence_score_is_reported(engine) -> None:
    frames = _rgb_frames(3)
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(7, MaskPrompt(_disc())),)))
    first = session.step(Frame(0, frames[0])).tracks[0]
    assert first.object_id == 7 and first.mask.shape == (H, W) and first.mask.dtype == bool
    assert first.score == pytest.approx(1 / (1 + np.exp(-10.0)), abs=1e-6)  # sigmoid of the +10 mask logit
    for i in (1, 2):
        t = session.step(Frame(i, frames[i])).tracks[0]
        assert 0.0 <= t.score <= 1.0
        assert t.present == (t.score >= 0.5 and bool(t.mask.any()))
        assert session.memory_of(7).non_cond[i].obj_ptr.shape[-1] == engine.model.hidden_dim


@pytest.mark.slow
def test_confidence_is_predicted_iou_times_object_score(engine) -> None:
    frames = _rgb_frames(3)
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(7, MaskPrompt(_disc())),)))
    first = session.step(Frame(0, frames[0])).tracks[0]
    assert first.confidence == pytest.approx(first.score, abs=1e-6)  # a mask prompt's IoU is 1
    for i in (1, 2):
        t = session.step(Frame(i, frames[i])).tracks[0]
        assert t.confidence is not None and 0.0 <= t.confidence <= t.score + 1e-9


# -- preprocessing ----------------------------------------------------------------------------


def test_video_preprocessing_is_sam2s_loader(tmp_path: Path) -> None:
    import torch
    from PIL import Image
    from sam2.utils.misc import load_video_frames

    from tracker.engines.sam2.parity import read_rgb

    img = _rgb_frames(1)[0]
    Image.fromarray(img).save(tmp_path / "0.jpg", quality=90)
    ref, h, w = load_video_frames(str(tmp_path), IMAGE_SIZE, offload_video_to_cpu=True, compute_device="cpu")
    ours = frame_to_tensor(read_rgb(tmp_path / "0.jpg"), IMAGE_SIZE)
    assert (h, w) == (H, W)
    assert torch.equal(ours, ref[0])


def test_cine_mri_window_is_robust_and_scale_free() -> None:
    rng = np.random.default_rng(1)
    anat = textured_image(H, W).astype(np.float32)
    raw = (anat * 12 + 300).astype(np.uint16)
    raw[0, 0] = 65535  # a hot pixel must not squash the anatomy
    g = window_gray(raw)
    assert g.dtype == np.float32 and g.min() == 0.0 and g.max() == 1.0
    assert np.percentile(g, 95) - np.percentile(g, 5) > 0.5
    t16 = frame_to_tensor(raw, IMAGE_SIZE)
    rescaled = frame_to_tensor((raw.astype(np.float32) * 3.5 - 800).astype(np.float32), IMAGE_SIZE)
    assert tuple(t16.shape) == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert float((t16 - rescaled).abs().max()) < 1e-4  # windowing removes the scanner's scale
    assert (
        float((t16[0] * 0.229 + 0.485 - (t16[1] * 0.224 + 0.456)).abs().max()) < 1e-5
    )  # grey: equal channels
    i16 = (anat * 5 - 400 + rng.normal(0, 1, anat.shape)).astype(np.int16)
    assert tuple(frame_to_tensor(i16, IMAGE_SIZE).shape) == (3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.slow
def test_cine_mri_uint16_session(engine) -> None:
    target = _disc()
    frames = [(textured_image(H, W, seed=i % 2).astype(np.uint16) * 40 + 1000) for i in range(3)]
    for f in frames:
        f[target] += 3000
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(target)),)))
    for i, f in enumerate(frames):
        (track,) = session.step(Frame(i, f)).tracks
        assert track.mask.shape == (H, W)
    assert session.frame_idx == 2


def test_square_window_stays_inside_the_frame() -> None:
    w = square_window_around((5, 10, 25, 20), 8, (100, 200))
    assert (w.width, w.height) == (36, 36) and w.x0 == 0 and w.contains((5, 10, 25, 20))
    w = square_window_around((190, 90, 200, 100), 30, (100, 200))
    assert w == CropWindow(130, 30, 200, 100)
    w = square_window_around((0, 0, 10, 10), 500, (100, 200))
    assert w == CropWindow(0, 0, 200, 100)


@pytest.mark.slow
def test_crop_mode_maps_masks_back_to_the_full_frame() -> None:
    from tracker.engines.sam2.engine import Sam2Engine

    eng = Sam2Engine.from_options(
        {"random_weights": "true", "image_size": str(IMAGE_SIZE), "crop_margin_px": "10"}
    )
    big_h, big_w = 300, 400
    base = np.dstack([textured_image(big_h, big_w, c) for c in range(3)])
    target = disk(big_h, big_w, 310, 220, 12)  # a small target far from the centre
    base[target] = (250, 250, 250)
    session = eng.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(target)),)))
    (first,) = session.step(Frame(0, base)).tracks
    win = session.window
    assert win is not None and win.contains((298, 208, 323, 233))
    assert (win.width, win.height) == (45, 45)  # 25 px target + 2 x 10 px margin
    assert first.mask.shape == (big_h, big_w)
    iou = (first.mask & target).sum() / (first.mask | target).sum()
    assert iou > 0.9  # the prompt frame answers with the prompt, in full-frame coordinates
    (second,) = session.step(Frame(1, base)).tracks
    outside = np.ones((big_h, big_w), bool)
    outside[win.y0 : win.y1, win.x0 : win.x1] = False
    assert not (second.mask & outside).any()
    assert session.last_logits(1, full_res=True).shape[-2:] == (win.height, win.width)


@pytest.mark.slow
def test_a_prompt_that_vanishes_at_model_resolution_changes_nothing(engine) -> None:
    from tracker.types import PromptError

    big_h, big_w = 600, 800  # downscaled ~3x to 256 px
    frame = np.dstack([textured_image(big_h, big_w, c) for c in range(3)])
    target = disk(big_h, big_w, 300, 300, 40)
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(target)),)))
    session.step(Frame(0, frame))
    speck = np.zeros((big_h, big_w), bool)
    speck[5, 5] = True  # one pixel: ~1/10 after antialiased downscaling, below sam2's 0.5 threshold
    session.apply(PromptUpdate(UpdateAction.ADD, 2, MaskPrompt(speck)))
    with pytest.raises(PromptError, match="vanishes"):
        session.step(Frame(1, frame))
    assert session.object_ids == [1]
    assert session.frame_idx == 0  # the frame was not consumed
    (track,) = session.step(Frame(1, frame)).tracks
    assert track.object_id == 1 and set(session.memory_of(1).non_cond) == {1}


def test_stages_are_timed_separately(engine) -> None:
    session = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())),)))
    frames = _rgb_frames(3)
    session.step(Frame(0, frames[0]))
    prompted = session.timer.results()
    session.step(Frame(1, frames[1]))
    tracked = session.timer.results()
    session.close()
    assert {"preprocess", "encoder", "decoder", "memory_encoder", "mask_upsample"} <= set(prompted)
    assert {"preprocess", "encoder", "memory_attention", "decoder", "memory_encoder"} <= set(tracked)
    assert all(ms > 0 for ms in tracked.values())
    # The encoder dominates a CPU frame; memory attention is the next biggest stage.
    assert tracked["encoder"] > tracked["decoder"]


def test_degradation_skips_the_memory_update_on_alternate_frames(engine) -> None:
    full = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())),)))
    degraded = engine.open_session(SessionConfig(objects=(ObjectPrompt(1, MaskPrompt(_disc())),)))
    assert degraded.degradations() == ("skip the memory-encoder update on alternate frames",)
    degraded.set_degradation(1)
    frames = _rgb_frames(5)
    for i, frame in enumerate(frames):
        full.step(Frame(i, frame))
        answer = degraded.step(Frame(i, frame)).tracks
        assert answer[0].mask.shape == frame.shape[:2]  # every frame still answered
    # Frames 1 and 3 (odd) kept no memory in the degraded session.
    assert sorted(full.memory_of(1).non_cond) == [1, 2, 3, 4]
    assert sorted(degraded.memory_of(1).non_cond) == [2, 4]
    full.close()
    degraded.close()
