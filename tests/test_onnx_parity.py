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
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("sam2")

from tests.conftest import davis_clip
from tests.test_sam2_parity import _schedule
from tracker.engines.sam2.parity import FrameOutputs, ParityStats, jpeg_paths, read_rgb, run_ours

N_FRAMES = 32
IMAGE_SIZE = 256
MAX_LOGIT_DIFF = 1e-3
MIN_IOU = 0.999

pytestmark = pytest.mark.slow


def _clip(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    masks = davis_clip(folder, "blackswan", N_FRAMES)
    return [read_rgb(p) for p in jpeg_paths(folder)], masks


def engine_parity(reference: Any, other: Any, folder: Path) -> tuple[ParityStats, dict[int, FrameOutputs]]:
    """Both engines on the clip (copied into a new ``folder``) and its schedule; ``other`` vs ``reference``.

    Returns the comparison and the reference's outputs by frame (copies, on the CPU).
    """
    folder.mkdir()
    frames, masks = _clip(folder)
    schedule = _schedule(masks)
    outs: list[dict[int, FrameOutputs]] = []
    for engine in (reference, other):
        store: dict[int, FrameOutputs] = {}

        def keep(f: int, o: FrameOutputs, store: dict[int, FrameOutputs] = store) -> None:
            store[f] = {k: (a.detach().cpu().clone(), b.detach().cpu().clone()) for k, (a, b) in o.items()}

        run_ours(engine, frames, schedule, keep)
        outs.append(store)
    stats = ParityStats()
    for f in sorted(outs[0]):
        stats.add(f, outs[1][f], outs[0][f])
    return stats, outs[0]


def test_onnx_engine_matches_torch_engine(tmp_path: Path) -> None:
    from tests.sam2_random import sharpened_random_engine
    from tracker.engines.export import export_main
    from tracker.engines.onnx.engine import OnnxEngine
    from tracker.engines.onnx.engine import parse_options as onnx_options

    export_dir = tmp_path / "export"
    argv = ["--model", "tiny", "--random-weights", "--seed", "0", "--image-size", str(IMAGE_SIZE)]
    assert export_main([*argv, "--out", str(export_dir), "--sharpen-logits", "40"]) == 0

    torch_engine = sharpened_random_engine(IMAGE_SIZE)
    onnx_engine = OnnxEngine(
        onnx_options({"export_dir": str(export_dir), "providers": "cpu", "image_size": str(IMAGE_SIZE)})
    )
    assert onnx_engine.info.name == "onnx"

    stats, torch_outs = engine_parity(torch_engine, onnx_engine, tmp_path / "clip")
    assert stats.frames == N_FRAMES
    assert stats.object_frames == 2 * 10 + 3 * 14 + 2 * 8
    assert not stats.missing, stats.missing
    assert stats.max_abs_logit_diff_low_res <= MAX_LOGIT_DIFF, stats
    assert stats.max_abs_logit_diff_video_res <= MAX_LOGIT_DIFF, stats
    assert stats.min_iou >= MIN_IOU, stats
    # The logits are sharp (the bound is meaningful, not satisfied by near-zero outputs).
    lo = torch_outs[N_FRAMES - 1][1][0]
    assert float(lo.abs().max()) > 5.0
