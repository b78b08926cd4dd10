"""``tracker bench reference``: the JSON it documents, from a real short run.

Four real subprocesses (ours, sam2's predictor, the ONNX engine on a fresh export, and the
interleaved A/B) at 256 px over 4 frames: slow-ish, but the only way to know the workers,
the export and the parity bookkeeping fit together. Timings are not asserted (shared
machines); exactness is, since these are the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sam2")
pytest.importorskip("onnxruntime")

FRAMES = 4


@pytest.mark.slow
def test_reference_bench_with_onnx_and_interleaved(tmp_path: Path) -> None:
    from tracker.lab.bench.reference import main

    out = tmp_path / "bench.json"
    argv = ["--frames", str(FRAMES), "--image-size", "256", "--random-weights", "--objects", "2"]
    argv += ["--engine", "onnx", "--interleaved", str(FRAMES), "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())

    keys = {"ms_per_frame_p50", "ms_per_frame_p95", "rss_mb_at", "peak_rss_mb"}
    for run in ("ours", "reference", "onnx"):
        assert keys <= set(result[run]), run
        assert result[run]["frames"] == FRAMES
        assert result[run]["rss_mb_at"][str(FRAMES)] > 0
    assert "onnxruntime" in result["onnx"]["engine"] and "torch" in result["ours"]["engine"]
    for run in ("ours", "onnx"):
        stages = result[run]["stage_ms_p50"]
        assert {"encoder", "memory_attention", "decoder", "memory_encoder"} <= set(stages), run
        assert all(v >= 0 for v in stages.values())
    # Short clips differ from the reference by up to ~1e-3 (num_frames, documented); the
    # ONNX graphs agree with the PyTorch engine to float32 rounding.
    assert result["parity"]["max_abs_logit_diff"] <= 2e-3
    assert result["parity"]["min_iou"] >= 0.999
    onnx = result["onnx"]["parity"]
    assert onnx["max_abs_logit_diff"] <= 1e-3 and onnx["min_iou"] >= 0.999
    assert onnx["objects"] == 2 and onnx["frames"] == FRAMES
    ab = result["interleaved"]
    assert ab["frames"] == FRAMES and ab["frames_compared"] == FRAMES - 1
    assert ab["ours_ms_p50"] > 0 and ab["reference_ms_p50"] > 0 and ab["ratio_reference_over_ours_p50"] > 0
    assert result["settings"]["dtype"] == "float32"


def test_onnx_run_refuses_bf16(tmp_path: Path) -> None:
    from tracker.lab.bench.reference import main

    with pytest.raises(SystemExit):
        main(
            [
                "--frames",
                "2",
                "--random-weights",
                "--engine",
                "onnx",
                "--dtype",
                "bfloat16",
                "--keep",
                str(tmp_path),
            ]
        )
    assert not (tmp_path / "frames").exists()  # refused before anything was written
