"""The onnx engine (ONNX Runtime, CPU, fp32) against the PyTorch sam2 engine (GitHub #4).

Setup: SAM 2.1 tiny, random weights (seed 0), mask logits sharpened x40 by
:func:`tracker.engines.sam2.parity.sharpen_random_logits` in both (the torch engine's model in
place; the export via ``tracker export --sharpen-logits 40``, which rebuilds the same seed),
256 px. The graphs are exported by ``tracker.engines.export.export_main`` into a temporary
directory, so the CLI, the manifest and the engine's start-up checks are all exercised.

Clip and prompt schedule: those of tests/test_sam2_parity.py (32 frames of DAVIS-2016
``blackswan`` from the shared data, skipped only where the shared folder is absent; masks on
frame 0 for objects 1 and 2, a box ADD on 10, mask and click CORRECTs on 16 and 20, a
REMOVE on 24). Compared per frame and object: low-res and video-res logits (max abs
diff <= 1e-3) and masks (IoU >= 0.999). Measured here (blackswan): 2.9e-5 max abs diff,
min IoU 0.999996.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("sam2")

from tests.conftest import davis_clip
from tests.test_sam2_parity import _schedule
from tracker.engines.sam2.parity import ParityStats, jpeg_paths, read_rgb, run_ours

N_FRAMES = 32
IMAGE_SIZE = 256
MAX_LOGIT_DIFF = 1e-3
MIN_IOU = 0.999

pytestmark = pytest.mark.slow


def _clip(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    masks = davis_clip(folder, "blackswan", N_FRAMES)
    return [read_rgb(p) for p in jpeg_paths(folder)], masks


def test_onnx_engine_matches_torch_engine(tmp_path: Path) -> None:
    from tracker.engines.export import export_main
    from tracker.engines.onnx.engine import OnnxEngine
    from tracker.engines.onnx.engine import parse_options as onnx_options
    from tracker.engines.sam2.engine import Sam2Engine
    from tracker.engines.sam2.options import parse_options
    from tracker.engines.sam2.parity import sharpen_random_logits

    export_dir = tmp_path / "export"
    argv = ["--model", "tiny", "--random-weights", "--seed", "0", "--image-size", str(IMAGE_SIZE)]
    assert export_main([*argv, "--out", str(export_dir), "--sharpen-logits", "40"]) == 0

    torch_engine = Sam2Engine(
        parse_options({"random_weights": "true", "image_size": str(IMAGE_SIZE), "device": "cpu"})
    )
    sharpen_random_logits(torch_engine.model)
    onnx_engine = OnnxEngine(
        onnx_options({"export_dir": str(export_dir), "providers": "cpu", "image_size": str(IMAGE_SIZE)})
    )
    assert onnx_engine.info.name == "onnx"

    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    frames, masks = _clip(clip_dir)
    schedule = _schedule(masks)
    outs: dict[str, dict] = {"torch": {}, "onnx": {}}
    for name, engine in (("torch", torch_engine), ("onnx", onnx_engine)):
        store = outs[name]

        def keep(f: int, o: dict, store: dict = store) -> None:
            store[f] = {k: (a.detach().clone(), b.detach().clone()) for k, (a, b) in o.items()}

        run_ours(engine, frames, schedule, keep)

    stats = ParityStats()
    for f in range(N_FRAMES):
        stats.add(f, outs["onnx"][f], outs["torch"][f])
    assert stats.frames == N_FRAMES
    assert stats.object_frames == 2 * 10 + 3 * 14 + 2 * 8
    assert not stats.missing, stats.missing
    assert stats.max_abs_logit_diff_low_res <= MAX_LOGIT_DIFF, stats
    assert stats.max_abs_logit_diff_video_res <= MAX_LOGIT_DIFF, stats
    assert stats.min_iou >= MIN_IOU, stats
    # The logits are sharp (the bound is meaningful, not satisfied by near-zero outputs).
    lo = outs["torch"][N_FRAMES - 1][1][0]
    assert float(lo.abs().max()) > 5.0
