"""The figures of the SAM2 engines' blocks in docs/engines.md: precision, the reference, ONNX, every engine.

Split from figure_blocks.py (which assembles every block) to keep each module readable; the
same :class:`~figure_sources.Fig` rows, one function per block.
"""

from __future__ import annotations

from pathlib import Path

from figure_sources import MB, MS, PCT, Fig, Row, figs, load, lookup


def _stages(run: str, label: str) -> list[Row]:
    return [
        (f"{label}: ms/frame p50", f"{run}.ms_per_frame_p50", ",.0f", MS),
        (f"{label}: ms/frame p95", f"{run}.ms_per_frame_p95", ",.0f", MS),
        *(
            (f"{label}: {stage.replace('_', ' ')}", f"{run}.stage_ms_p50.{stage}", ".0f", MS)
            for stage in ("encoder", "memory_attention", "decoder", "memory_encoder")
        ),
    ]


def figs_precision() -> list[Fig]:
    return figs(
        "precision_cpu.json",
        *_stages("float32", "float32"),
        *_stages("bfloat16", "bfloat16"),
        ("bf16 speed-up per frame (p50 ratio)", "speedup_p50", ".2f", "×"),
        ("bf16 vs float32 masks: min IoU", "agreement.min_iou"),
        ("bf16 vs float32: max low-res logit difference", "agreement.max_abs_logit_diff", ".2f"),
    )


def figs_reference() -> list[Fig]:
    rows: list[Row] = []
    for run, name in (("ours", "this engine"), ("reference", "SAM2VideoPredictor")):
        rows += [
            (f"{name}: ms/frame p50", f"{run}.ms_per_frame_p50", ",.0f", MS),
            (f"{name}: ms/frame p95", f"{run}.ms_per_frame_p95", ",.0f", MS),
            *(
                (f"{name}: RSS at frame {n}", f"{run}.rss_mb_at.{n}", ",.0f", MB)
                for n in (1, 10, 100, 500, 1000)
            ),
            (f"{name}: peak RSS", f"{run}.peak_rss_mb", ",.0f", MB),
        ]
    return figs(
        "reference_1000.json",
        *rows,
        ("max abs logit difference over all frames", "parity.max_abs_logit_diff", ".1f"),
        ("min mask IoU over all frames", "parity.min_iou", ".1f"),
        ("frames compared", "parity.frames", ",d"),
    )


def figs_interleaved() -> list[Fig]:
    out: list[Fig] = []
    for file, name in (
        ("reference_ab_fp32.json", "float32"),
        ("reference_ab_bf16.json", "bfloat16"),
    ):
        out += figs(
            file,
            (f"{name}: this engine ms/frame p50", "interleaved.ours_ms_p50", ".1f", MS),
            (f"{name}: reference ms/frame p50", "interleaved.reference_ms_p50", ".1f", MS),
            (
                f"{name}: per-frame reference/ours, median",
                "interleaved.ratio_reference_over_ours_p50",
                ".3f",
                "×",
            ),
            (f"{name}: masks, max abs logit difference", "parity.max_abs_logit_diff", ".3g"),
            (f"{name}: masks, min IoU", "parity.min_iou"),
        )
    init = (
        "reference `init_state`, 120 frames",
        "reference.init_s",
        ".2f",
        " s",
    )
    return out + figs("reference_120.json", init)


def figs_onnx() -> list[Fig]:
    seq = "beside the reference, sequential"
    return [
        *figs(
            "reference_onnx.json",
            (f"{seq}: PyTorch engine ms/frame p50", "ours.ms_per_frame_p50", ",.0f", MS),
            (f"{seq}: reference ms/frame p50", "reference.ms_per_frame_p50", ",.0f", MS),
            (f"{seq}: ONNX Runtime ms/frame p50", "onnx.ms_per_frame_p50", ",.0f", MS),
            ("sequential: ONNX vs PyTorch max logit difference", "onnx.parity.max_abs_logit_diff", ".1e"),
        ),
        *figs(
            "onnx_cpu.json",
            *_stages("ours", "interleaved, PyTorch float32"),
            *_stages("onnx", "interleaved, ONNX Runtime float32"),
            ("interleaved: ONNX Runtime speed-up per frame (target ≥ 1.25×)", "speedup_p50", ".2f", "×"),
            ("interleaved: ONNX vs PyTorch, max abs logit difference", "parity.max_abs_logit_diff", ".1e"),
        ),
    ]


ENGINE_LABELS = ("sam2-float32", "sam2-bfloat16", "onnx-float32", "openvino-f32", "openvino-bf16")


def figs_engines() -> list[Fig]:
    rows: list[Row] = []
    for label in ENGINE_LABELS:
        run = f"engines.{label}"
        rows += [
            (f"{label}: ms/frame p50", f"{run}.ms_per_frame_p50", ",.0f", MS),
            (f"{label}: ms/frame p95", f"{run}.ms_per_frame_p95", ",.0f", MS),
            (f"{label}: ms/frame worst", f"{run}.ms_per_frame_max", ",.0f", MS),
            (f"{label}: encoder", f"{run}.stage_ms_p50.encoder", ".0f", MS),
            (f"{label}: memory attention", f"{run}.stage_ms_p50.memory_attention", ".0f", MS),
        ]
        if label != "sam2-float32":
            rows += [
                (f"{label}: min mask IoU vs sam2-float32", f"{run}.min_iou_vs_float32", ".4f"),
                (
                    f"{label}: max logit difference vs sam2-float32",
                    f"{run}.max_abs_logit_diff_vs_float32",
                    ".2g",
                ),
            ]
    rows += [
        (
            "openvino-bf16 speed-up over sam2-bfloat16 (p50; target ≥ 2.5×)",
            "speedup_p50.openvino-bf16_vs_sam2-bfloat16",
            ".2f",
            "×",
        ),
        (
            "openvino-bf16 speed-up over sam2-float32 (p50)",
            "speedup_p50.openvino-bf16_vs_sam2-float32",
            ".2f",
            "×",
        ),
        (
            "openvino-f32 speed-up over onnx-float32 (p50)",
            "speedup_p50.openvino-f32_vs_onnx-float32",
            ".2f",
            "×",
        ),
    ]
    for graph in ("image_encoder", "memory_attention", "memory_encoder", "sam_heads"):
        g = f"graphs.{graph}"
        rows += [
            (f"{graph} alone: ONNX Runtime", f"{g}.ms_median.onnxruntime", ".0f", MS),
            (f"{graph} alone: OpenVINO f32", f"{g}.ms_median.openvino-f32", ".0f", MS),
            (f"{graph} alone: OpenVINO bf16", f"{g}.ms_median.openvino-bf16", ".0f", MS),
            (
                f"{graph}: OpenVINO f32 vs ONNX Runtime, max abs difference",
                f"{g}.max_abs_diff_vs_onnxruntime.openvino-f32",
                ".1e",
            ),
        ]
    return figs("engines_cpu.json", *rows)


def figs_openvino_serving(root: Path) -> list[Fig]:
    out: list[Fig] = []
    for file, rate, p99 in (
        ("capacity_openvino_4hz.json", "4 Hz", "400 ms"),
        ("capacity_openvino_1hz.json", "1 Hz", "1 s"),
        ("capacity_openvino_8hz.json", "8 Hz", "250 ms"),
    ):
        out += figs(file, (f"openvino bf16 at {rate}, p99 ≤ {p99}: sessions held", "capacity_sessions", "d"))
    profile = "profile_openvino_1hz.json"
    stages = lookup(load(root, profile), "frame_profile.stages", profile)  # in pipeline order
    rows: list[Row] = [
        ("one session at 1 Hz: server time per frame, median", "frame_profile.server_ms_median", ".0f", MS),
        *(
            (f"… {stage.replace('_', ' ')}", f"frame_profile.stages.{stage}.ms", ".1f", MS)
            for stage in stages
        ),
        (
            "time between graphs, share of a frame: median (target ≤ 10 %)",
            "frame_profile.between_graphs_share_median",
            ".1f",
            PCT,
            100.0,
        ),
        (
            "time between graphs, share of a frame: worst frame",
            "frame_profile.between_graphs_share_max",
            ".1f",
            PCT,
            100.0,
        ),
        ("same run: end-to-end latency p99", "latency_ms.p99", ".0f", MS),
    ]
    return out + figs(profile, *rows)
