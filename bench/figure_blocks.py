"""The figures of every block in README.md and docs/*.md, and how a block is rendered.

Each ``_figs_*`` lists one block's figures (label, result file, key, format); :func:`blocks`
maps the block names used in the pages' ``<!-- figures:NAME -->`` markers to their renderers,
and :func:`render` regenerates every block of a page. The streaming block is
bench/stream_suite.py's own table, each row matched to the stream_*.json it was formatted from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from figure_sources import (
    BLOCK_RE,
    MB,
    MS,
    PCT,
    RESULTS_DIR,
    Fig,
    FigureError,
    Row,
    cells,
    fig_table,
    figs,
    load,
    lookup,
    run_tag,
    stream_suite,
)

# ---- the figures, block by block -------------------------------------------------------------


def _figs_readme() -> list[Fig]:
    """This round's headline figures; each file records the machine and commit it ran on."""
    return [
        *figs(
            "capacity_flow_8hz.json",
            ("flow at 8 Hz, p99 ≤ 50 ms: sessions held, scheduler", "capacity_sessions", "d"),
            ("same run: sessions held, per-session design", "baseline_capacity_sessions", "d"),
        ),
        *figs(
            "capacity_sam2_tiny_1hz.json",
            ("sam2 tiny 512 px bf16 at 1 Hz, p99 ≤ 1 s: sessions held, scheduler", "capacity_sessions", "d"),
            ("same run: sessions held, per-session design", "baseline_capacity_sessions", "d"),
        ),
        *figs(
            "engines_cpu.json",
            (
                "sam2 tiny 512 px, openvino bf16: ms per frame, p50",
                "engines.openvino-bf16.ms_per_frame_p50",
                ",.0f",
                MS,
            ),
            ("same run: worst frame", "engines.openvino-bf16.ms_per_frame_max", ",.0f", MS),
            (
                "same run: sam2 engine in bf16, ms per frame, p50",
                "engines.sam2-bfloat16.ms_per_frame_p50",
                ",.0f",
                MS,
            ),
            (
                "same run: openvino bf16 masks against sam2 float32, min IoU",
                "engines.openvino-bf16.min_iou_vs_float32",
            ),
        ),
        *figs(
            "capacity_openvino_1hz.json",
            ("openvino bf16 at 1 Hz, p99 ≤ 1 s: sessions held", "capacity_sessions", "d"),
        ),
        *figs(
            "sam2_batch_cpu.json",
            (
                "sam2 tiny bf16 encoder, ms per frame at batch 1",
                "results.bfloat16.encoder.1.ms_per_frame_p50",
                ".0f",
                MS,
            ),
            ("… at batch 2", "results.bfloat16.encoder.2.ms_per_frame_p50", ".0f", MS),
            ("… at batch 4", "results.bfloat16.encoder.4.ms_per_frame_p50", ".0f", MS),
        ),
        *figs(
            "demo.json",
            ("`make demo`, 5 runs: most LATE answers on the DAVIS clip in one run", "video_late_worst", "d"),
            ("same runs: DAVIS frames answered degraded, all runs", "cases.blackswan.degraded_total", "d"),
        ),
        *figs(
            "cluster.json",
            ("3 replicas behind Envoy, SIGKILL + SIGTERM: frames unanswered", "unaccounted", "d"),
            ("same run: frames answered twice", "duplicates", "d"),
            ("same run: fault to first OK answer, p50", "resume_ms.p50", ".0f", MS),
            ("same run: fault to first OK answer, worst", "resume_ms.max", ".0f", MS),
            ("same run: frames LOST per failover, worst", "lost_per_failover_max", "d"),
            ("same run: BEAM_ON while no session was open", "beam_on_during_gap", "d"),
            ("same run: mean Dice with faults", "dice_mean"),
            ("same sessions without faults: mean Dice", "dice_mean_no_fault"),
        ),
        *figs(
            "validation.json",
            ("hard cine-MRI, validation set (8 cases): flow mean Dice", "validation.targets.flow_dice_mean"),
            ("validation set: worst case Dice", "validation.targets.flow_dice_worst"),
            (
                "validation set: beam on, target outside 3 mm, worst case",
                "validation.targets.beam_on_outside_worst",
                ".1f",
                PCT,
                100.0,
            ),
            ("validation set: duty cycle ÷ oracle's, mean", "validation.targets.duty_vs_oracle_mean", ".2f"),
            (
                "validation set: duty cycle ÷ oracle's, worst case",
                "validation.targets.duty_vs_oracle_worst",
                ".2f",
            ),
            ("tuning set (6 cases): flow mean Dice", "tuning.targets.flow_dice_mean"),
            ("tuning set: worst case Dice", "tuning.targets.flow_dice_worst"),
        ),
        *figs(
            "davis_flow.json",
            (
                "DAVIS-2016 (3 clips), flow: J&F as davis2017-evaluation computes it",
                "summary.davis.j_and_f_mean",
            ),
            ("same: J", "summary.davis.j_mean"),
            ("same: F", "summary.davis.f_mean"),
        ),
        *figs(
            "flow.json",
            (
                "easy cine-MRI (10 cases, the regression set): flow mean of per-case Dice",
                "accuracy.dice_mean_of_cases",
            ),
            ("same: worst case's mean Dice", "accuracy.dice_mean_worst_case.dice_mean"),
            ("same: server latency per 270×270 frame, median", "latency.server_ms_median", ".1f", MS),
        ),
        *figs(
            "soak.json",
            ("soak, 3 min: frames unaccounted for", "unaccounted", "d"),
        ),
    ]


def _figs_scheduler() -> list[Fig]:
    return [
        *figs(
            "capacity_flow_8hz.json",
            ("flow 8 Hz, p99 ≤ 50 ms: sessions held, scheduler", "capacity_sessions", "d"),
            ("per-session design, same run", "baseline_capacity_sessions", "d"),
            ("scheduler: workers", "scheduler.scheduler.workers", "d"),
        ),
        *figs(
            "capacity_sam2_tiny_1hz.json",
            ("sam2 tiny bf16 1 Hz, p99 ≤ 1 s: sessions held, scheduler", "capacity_sessions", "d"),
            ("per-session design, same run", "baseline_capacity_sessions", "d"),
            ("scheduler: workers", "scheduler.scheduler.workers", "d"),
            ("scheduler at capacity: end-to-end p99", "p99_ms_at_capacity", ".0f", MS),
            ("scheduler, 1 session: server ms/frame, median", "scheduler.probes.0.server_ms.p50", ".0f", MS),
            ("per-session design at capacity: end-to-end p99", "baseline.p99_ms_at_capacity", ".0f", MS),
        ),
        *figs(
            "capacity_sam2_tiny_1hz_workers2.json",
            ("sam2, `--workers 2` (one torch thread each): sessions held", "capacity_sessions", "d"),
            ("… 1 session: server ms/frame, median", "scheduler.probes.0.server_ms.p50", ".0f", MS),
            ("… at capacity: end-to-end p99", "p99_ms_at_capacity", ".0f", MS),
        ),
        *figs(
            "sam2_batch_cpu.json",
            ("float32 encoder ms/frame, batch 1", "results.float32.encoder.1.ms_per_frame_p50", ".0f", MS),
            ("float32 encoder ms/frame, batch 2", "results.float32.encoder.2.ms_per_frame_p50", ".0f", MS),
            ("float32 encoder ms/frame, batch 4", "results.float32.encoder.4.ms_per_frame_p50", ".0f", MS),
            ("bf16 encoder ms/frame, batch 1", "results.bfloat16.encoder.1.ms_per_frame_p50", ".0f", MS),
            ("bf16 encoder ms/frame, batch 2", "results.bfloat16.encoder.2.ms_per_frame_p50", ".0f", MS),
            ("bf16 encoder ms/frame, batch 4", "results.bfloat16.encoder.4.ms_per_frame_p50", ".0f", MS),
            ("bf16 whole step ms/frame, batch 1", "results.bfloat16.step.1.ms_per_frame_p50", ".0f", MS),
            ("bf16 whole step ms/frame, batch 4", "results.bfloat16.step.4.ms_per_frame_p50", ".0f", MS),
        ),
    ]


def _figs_validation() -> list[Fig]:
    rows: list[Fig] = []
    for name in ("tuning", "validation"):
        rows += figs(
            "validation.json",
            (f"{name}: flow mean Dice", f"{name}.targets.flow_dice_mean"),
            (f"{name}: worst case Dice", f"{name}.targets.flow_dice_worst"),
            (
                f"{name}: worst beam-on-outside (3 mm)",
                f"{name}.targets.beam_on_outside_worst",
                ".1f",
                PCT,
                100.0,
            ),
            (f"{name}: duty cycle ÷ oracle's, mean", f"{name}.targets.duty_vs_oracle_mean", ".2f"),
            (f"{name}: duty cycle ÷ oracle's, worst case", f"{name}.targets.duty_vs_oracle_worst", ".2f"),
            (f"{name}: relative D98 (official), worst case", f"{name}.worst.relative_d98.worst", ".3f"),
        )
    return rows


def _figs_cluster() -> list[Fig]:
    return figs(
        "cluster.json",
        ("frames sent", "frames", "d"),
        ("frames with no answer", "unaccounted", "d"),
        ("frames answered twice", "duplicates", "d"),
        ("failovers", "failovers", "d"),
        ("fault to first OK answer, p50", "resume_ms.p50", ".0f", MS),
        ("fault to first OK answer, worst", "resume_ms.max", ".0f", MS),
        ("frames LOST per failover, worst", "lost_per_failover_max", "d"),
        ("BEAM_ON while no session was open", "beam_on_during_gap", "d"),
        ("mean Dice with faults", "dice_mean"),
        ("mean Dice, same sessions without faults", "dice_mean_no_fault"),
    )


def _figs_davis() -> list[Fig]:
    rows: list[Fig] = []
    for i, name in enumerate(("blackswan", "car-shadow", "dog")):
        rows += figs(
            "davis_flow.json",
            (f"{name}: J&F", f"cases.{i}.davis.j_and_f_mean"),
        )
    return rows + figs(
        "davis_flow.json",
        ("all three: J", "summary.davis.j_mean"),
        ("all three: F", "summary.davis.f_mean"),
        ("all three: J&F", "summary.davis.j_and_f_mean"),
    )


def _figs_flow() -> list[Fig]:
    return figs(
        "flow.json",
        ("median Dice, pooled frames (target ≥ 0.90)", "accuracy.dice_median_all_frames"),
        ("mean of per-case mean Dice", "accuracy.dice_mean_of_cases"),
        ("scored frames", "accuracy.frames_scored", "d"),
        ("mean centroid error (target ≤ 1.0 mm)", "accuracy.centroid_mm_mean_of_cases", ".2f", " mm"),
        ("server ms/frame, 270×270, median (target ≤ 15 ms)", "latency.server_ms_median", ".1f", MS),
        ("server latency, p95", "latency.server_ms_p95", ".1f", MS),
        ("frames timed", "latency.frames", "d"),
        ("gRPC overhead, median (target ≤ 3 ms)", "latency.grpc_overhead_ms_median", ".2f", MS),
        ("gRPC overhead, p95", "latency.grpc_overhead_ms_p95", ".2f", MS),
    )


def _per_case(root: Path, file: str, list_key: str, fields: list[tuple[str, str, str, str]]) -> list[Fig]:
    cases = lookup(load(root, file), list_key, file)
    return [
        Fig(f"{case['case']}: {label}", file, f"{list_key}.{i}.{key}", fmt, unit)
        for i, case in enumerate(cases)
        for label, key, fmt, unit in fields
    ]


def _figs_flow_cases(root: Path) -> list[Fig]:
    return _per_case(root, "flow.json", "accuracy.cases", [("mean Dice", "dice_mean", ".3f", "")])


def _figs_gating(root: Path) -> list[Fig]:
    per_case = [
        ("Kalman error", "error_mm_mean", ".2f", " mm"),
        ("no-prediction error", "no_prediction_error_mm_mean", ".2f", " mm"),
    ]
    return [
        *figs(
            "gating.json",
            ("error at the horizon, Kalman", "prediction_at_horizon.error_mm_mean", ".2f", " mm"),
            (
                "error at the horizon, no prediction",
                "prediction_at_horizon.no_prediction_error_mm_mean",
                ".2f",
                " mm",
            ),
            ("horizon, median", "prediction_at_horizon.horizon_ms_median", ".0f", MS),
            (
                "beam on, target outside 3 mm (target ≤ 1 %)",
                "gating.beam_on_outside_fraction",
                ".1f",
                PCT,
                100.0,
            ),
            ("duty cycle (beam-on fraction)", "gating.beam_on_fraction", ".0f", PCT, 100.0),
            ("beam held while the target was inside", "gating.beam_hold_inside_fraction", ".1f", PCT, 100.0),
            ("beam-off latency", "gating.beam_off_latency_ms", ".0f", MS),
            ("relative D98 (flow engine)", "relative_d98_mean"),
        ),
        *_per_case(root, "gating.json", "prediction_per_case", per_case),
    ]


def _figs_overseer() -> list[Fig]:
    rows: list[Row] = []
    for run, name in (("without", "without overseer"), ("with", "with oracle overseer")):
        rows += [
            (f"{name}: J, mean over cases", f"{run}.j_mean"),
            *(
                (f"{name}: J {c}", f"{run}.per_class_j.{c}")
                for c in ("clipper", "grasper", "hook", "scissors")
            ),
            (f"{name}: entry delay, mean", f"{run}.entry_delay.mean", ".1f", " frames"),
            (f"{name}: entry delay, max", f"{run}.entry_delay.max", "d", " frames"),
            (f"{name}: entries missed (of 6)", f"{run}.entry_delay.missed", "d"),
            (f"{name}: exit delay, mean", f"{run}.exit_delay.mean", ".1f", " frames"),
            (f"{name}: exit delay, max", f"{run}.exit_delay.max", "d", " frames"),
            (f"{name}: exits missed (of 7)", f"{run}.exit_delay.missed", "d"),
        ]
    return figs("overseer.json", *rows)


def _figs_soak() -> list[Fig]:
    return figs(
        "soak.json",
        ("duration", "duration_s", ".0f", " s"),
        ("concurrent workers", "workers", "d"),
        ("sessions", "sessions", ",d"),
        ("frames sent", "frames_sent", ",d"),
        *((f"answered {s}", f"answered.{s}", ",d") for s in ("OK", "DROPPED", "ERROR")),
        ("cut by the client's own disconnect", "cut_by_own_disconnect", ",d"),
        ("cut by the client's own malformed request", "cut_by_own_malformed_request", ",d"),
        ("**unaccounted frames**", "unaccounted", "d"),
        ("server RSS 10 s after start", "rss_mb_at_10s", ".1f", MB),
        ("server RSS at the end", "rss_mb_end", ".1f", MB),
        ("RSS growth after 10 s", "rss_growth_after_10s_pct", ".1f", PCT),
    )


def _figs_stream_5min() -> list[Fig]:
    return figs(
        "stream_sam2_tiny_1hz_bf16_5min.json",
        ("frames", "frames", "d"),
        ("answered OK", "ok", "d"),
        ("answered LATE", "late", "d"),
        ("end-to-end p50", "latency_ms.p50", ".0f", MS),
        ("end-to-end p99 (target ≤ 1000 ms)", "latency_ms.p99", ".0f", MS),
        ("end-to-end max", "latency_ms.max", ".0f", MS),
        ("encoder, median", "stages_ms_median.encoder", ".0f", MS),
        ("memory attention, median", "stages_ms_median.memory_attention", ".0f", MS),
        ("server RSS 10 s after start", "rss_mb_at_10s", ",.0f", MB),
        ("server RSS peak", "rss_mb_peak", ",.0f", MB),
        ("server RSS at the end", "rss_mb_end", ",.0f", MB),
    )


def _stages(run: str, label: str) -> list[Row]:
    return [
        (f"{label}: ms/frame p50", f"{run}.ms_per_frame_p50", ",.0f", MS),
        (f"{label}: ms/frame p95", f"{run}.ms_per_frame_p95", ",.0f", MS),
        *(
            (f"{label}: {stage.replace('_', ' ')}", f"{run}.stage_ms_p50.{stage}", ".0f", MS)
            for stage in ("encoder", "memory_attention", "decoder", "memory_encoder")
        ),
    ]


def _figs_precision() -> list[Fig]:
    return figs(
        "precision_cpu.json",
        *_stages("float32", "float32"),
        *_stages("bfloat16", "bfloat16"),
        ("bf16 speed-up per frame (p50 ratio)", "speedup_p50", ".2f", "×"),
        ("bf16 vs float32 masks: min IoU", "agreement.min_iou"),
        ("bf16 vs float32: max low-res logit difference", "agreement.max_abs_logit_diff", ".2f"),
    )


def _figs_reference() -> list[Fig]:
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


def _figs_interleaved() -> list[Fig]:
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


def _figs_onnx() -> list[Fig]:
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


def _figs_engines() -> list[Fig]:
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


def _figs_openvino_serving() -> list[Fig]:
    out: list[Fig] = []
    for file, rate, p99 in (
        ("capacity_openvino_4hz.json", "4 Hz", "400 ms"),
        ("capacity_openvino_1hz.json", "1 Hz", "1 s"),
        ("capacity_openvino_8hz.json", "8 Hz", "250 ms"),
    ):
        out += figs(file, (f"openvino bf16 at {rate}, p99 ≤ {p99}: sessions held", "capacity_sessions", "d"))
    prof = "frame_profile"
    rows: list[Row] = [
        ("one session at 1 Hz: server time per frame, median", f"{prof}.server_ms_median", ".0f", MS),
        *(
            (f"… {stage.replace('_', ' ')}", f"{prof}.stages.{stage}.ms", ".1f", MS)
            for stage in (
                "queue",
                "schedule",
                "decode",
                "preprocess",
                "encoder",
                "memory_attention",
                "decoder",
                "memory_encoder",
                "mask_upsample",
                "postprocess",
                "encode",
                "other",
            )
        ),
        (
            "time between graphs, share of a frame: median (target ≤ 10 %)",
            f"{prof}.between_graphs_share_median",
            ".1f",
            PCT,
            100.0,
        ),
        (
            "time between graphs, share of a frame: worst frame",
            f"{prof}.between_graphs_share_max",
            ".1f",
            PCT,
            100.0,
        ),
        ("same run: end-to-end latency p99", "latency_ms.p99", ".0f", MS),
    ]
    return out + figs("profile_openvino_1hz.json", *rows)


# ---- the streaming table: bench/stream_suite.py's own rows, each matched to its JSON ----------


def stream_block(root: Path) -> str:
    table_path = root / RESULTS_DIR / "stream_table.md"
    if not table_path.is_file():
        raise FigureError(f"{table_path} does not exist: run bench/stream_suite.py")
    lines = table_path.read_text().splitlines()
    fmt_row: Callable[[str, dict, str], str] = stream_suite(root)._row
    reports = {p.name: json.loads(p.read_text()) for p in sorted((root / RESULTS_DIR).glob("stream_*.json"))}
    out = [
        "Rows written by `bench/stream_suite.py` to `bench/results/stream_table.md`; each row is the"
        " file named in its source column, formatted by the suite."
    ]
    for line in lines:
        if not line.startswith("|"):
            continue
        if line.startswith("| scenario"):
            out += ["", line + " source | run |"]
        elif line.startswith("|---"):
            out.append(line + "---|---|")
        else:
            row = cells(line)
            label, target = row[0], row[-1]
            match = [n for n, r in reports.items() if fmt_row(label, r, target) == line.strip()]
            if not match:
                raise FigureError(f"stream_table.md row {label!r} matches no bench/results/stream_*.json")
            out.append(f"{line.strip()} `{match[0]}` | {run_tag(reports[match[0]])} |")
    return "\n".join(out) + "\n"


# ---- assembling ------------------------------------------------------------------------------


def blocks(root: Path) -> dict[str, Callable[[], str]]:
    """Every block name and how to render it."""
    return {
        "readme-results": lambda: fig_table(root, _figs_readme()),
        "scheduler": lambda: fig_table(root, _figs_scheduler()),
        "validation": lambda: fig_table(root, _figs_validation()),
        "cluster": lambda: fig_table(root, _figs_cluster()),
        "davis": lambda: fig_table(root, _figs_davis()),
        "flow": lambda: fig_table(root, _figs_flow()),
        "flow-cases": lambda: fig_table(root, _figs_flow_cases(root)),
        "gating": lambda: fig_table(root, _figs_gating(root)),
        "overseer": lambda: fig_table(root, _figs_overseer()),
        "soak": lambda: fig_table(root, _figs_soak()),
        "stream": lambda: stream_block(root),
        "stream-5min": lambda: fig_table(root, _figs_stream_5min()),
        "precision": lambda: fig_table(root, _figs_precision()),
        "reference": lambda: fig_table(root, _figs_reference()),
        "interleaved": lambda: fig_table(root, _figs_interleaved()),
        "onnx": lambda: fig_table(root, _figs_onnx()),
        "engines": lambda: fig_table(root, _figs_engines()),
        "openvino-serving": lambda: fig_table(root, _figs_openvino_serving()),
    }


def render(root: Path, text: str, where: str) -> str:
    """``text`` with every figure block regenerated."""
    renderers = blocks(root)

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in renderers:
            raise FigureError(f"{where}: unknown figure block {name!r} (known: {', '.join(renderers)})")
        return f"<!-- figures:{name} -->\n{renderers[name]()}<!-- /figures:{name} -->"

    return BLOCK_RE.sub(fill, text)
