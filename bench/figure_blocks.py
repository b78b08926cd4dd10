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

from figure_blocks_overseer import figs_overseer, figs_overseer_cost, figs_overseer_training
from figure_blocks_sam2 import (  # the SAM2 engines' blocks
    figs_engines,
    figs_interleaved,
    figs_onnx,
    figs_openvino_serving,
    figs_precision,
    figs_reference,
)
from figure_sources import (
    BLOCK_RE,
    MB,
    MS,
    PCT,
    RESULTS_DIR,
    Fig,
    FigureError,
    cells,
    fig_table,
    figs,
    headline_table,
    load,
    lookup,
    run_tag,
    stream_suite,
)

# ---- the figures, block by block -------------------------------------------------------------


def _figs_readme() -> list[Fig]:
    """The README's headline figures; every other figure is on its docs page."""
    return [
        *figs(
            "flow.json",
            ("flow: server time per 270×270 cine frame, median", "latency.server_ms_median", ".1f", MS),
        ),
        *figs(
            "validation.json",
            ("hard cine-MRI validation set, flow: mean Dice", "validation.targets.flow_dice_mean"),
            (
                "same: beam on with the target outside 3 mm, worst case",
                "validation.targets.beam_on_outside_worst",
                ".1f",
                PCT,
                100.0,
            ),
            (
                "same: beam-on time ÷ an oracle gate's, mean of cases",
                "validation.targets.duty_vs_oracle_mean",
                ".2f",
            ),
            (
                "synthetic family B, never tuned on: flow mean Dice",
                "family_b.targets.flow_dice_mean",
            ),
            (
                "same: beam-on frames ÷ an oracle gate's, pooled",
                "family_b.targets.duty_vs_oracle_pooled",
                ".2f",
            ),
        ),
        *figs(
            "engines_cpu.json",
            (
                "SAM 2.1 tiny 512 px, openvino bf16: ms per frame, p50",
                "engines.openvino-bf16.ms_per_frame_p50",
                ",.0f",
                MS,
            ),
            ("same: worst frame", "engines.openvino-bf16.ms_per_frame_max", ",.0f", MS),
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
    for name, label in (("tuning", "A tuning"), ("validation", "A validation"), ("family_b", "B")):
        rows += figs(
            "validation.json",
            (f"{label}: flow mean Dice", f"{name}.targets.flow_dice_mean"),
            (f"{label}: worst case Dice", f"{name}.targets.flow_dice_worst"),
            (
                f"{label}: worst beam-on-outside (3 mm)",
                f"{name}.targets.beam_on_outside_worst",
                ".1f",
                PCT,
                100.0,
            ),
            (
                f"{label}: beam-on frames with the target out of the slice",
                f"{name}.targets.beam_on_target_absent_frames",
                "d",
            ),
            (f"{label}: beam-on frames ÷ oracle's, pooled", f"{name}.targets.duty_vs_oracle_pooled", ".2f"),
            (f"{label}: duty cycle ÷ oracle's, worst case", f"{name}.targets.duty_vs_oracle_worst", ".2f"),
            (
                f"{label}: Spearman(confidence, centroid error), pooled",
                f"{name}.targets.confidence_spearman_vs_centroid_error_pooled",
                ".2f",
            ),
            (f"{label}: relative D98 (official), worst case", f"{name}.worst.relative_d98.worst", ".3f"),
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


def _figs_faults() -> list[Fig]:
    rows: list[Fig] = []
    for name in ("none", "blackhole_up", "blackhole_down", "jitter", "bandwidth", "slow_reader", "reset"):
        rows += figs(
            "faults.json",
            (f"{name}: frames sent", f"scenarios.{name}.frames", "d"),
            (f"{name}: frames with no answer", f"scenarios.{name}.unaccounted", "d"),
            (f"{name}: frames answered twice", f"scenarios.{name}.duplicates", "d"),
            (
                f"{name}: BEAM_ON without a fresh answer",
                f"scenarios.{name}.beam_on_without_fresh_answer",
                "d",
            ),
            (f"{name}: BEAM_ON held as stale", f"scenarios.{name}.stale_holds", "d"),
            (f"{name}: failovers", f"scenarios.{name}.failovers", "d"),
        )
        if name.startswith("blackhole"):
            rows += figs(
                "faults.json",
                (f"{name}: fault to failover, p50", f"scenarios.{name}.detect_ms.p50", ".0f", MS),
                (f"{name}: fault to failover, worst", f"scenarios.{name}.detect_ms.max", ".0f", MS),
                (f"{name}: failover to first answer, p50", f"scenarios.{name}.resume_ms.p50", ".0f", MS),
                (f"{name}: fault to the replica's sessions freed", f"scenarios.{name}.reaped_s", ".1f", " s"),
            )
        rows += figs(
            "faults.json",
            (f"{name}: replicas' RSS growth", f"scenarios.{name}.rss_growth", ".1f", PCT, 100.0),
        )
    long_run = "60 s run, fault at 20 s"
    return rows + figs(
        "faults_slow_reader_60s.json",
        (f"none, {long_run}: replicas' RSS growth", "scenarios.none.rss_growth", ".1f", PCT, 100.0),
        (f"slow_reader, {long_run}: frames with no answer", "scenarios.slow_reader.unaccounted", "d"),
        (f"slow_reader, {long_run}: RSS growth", "scenarios.slow_reader.rss_growth", ".1f", PCT, 100.0),
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
        "readme-results": lambda: headline_table(root, _figs_readme()),
        "scheduler": lambda: fig_table(root, _figs_scheduler()),
        "validation": lambda: fig_table(root, _figs_validation()),
        "cluster": lambda: fig_table(root, _figs_cluster()),
        "faults": lambda: fig_table(root, _figs_faults()),
        "davis": lambda: fig_table(root, _figs_davis()),
        "flow": lambda: fig_table(root, _figs_flow()),
        "flow-cases": lambda: fig_table(root, _figs_flow_cases(root)),
        "gating": lambda: fig_table(root, _figs_gating(root)),
        "overseer": lambda: fig_table(root, figs_overseer(root)),
        "overseer-training": lambda: fig_table(root, figs_overseer_training(root)),
        "overseer-trained": lambda: fig_table(root, figs_overseer(root, "overseer_trained.json")),
        "overseer-cost": lambda: fig_table(root, figs_overseer_cost(root)),
        "soak": lambda: fig_table(root, _figs_soak()),
        "stream": lambda: stream_block(root),
        "stream-5min": lambda: fig_table(root, _figs_stream_5min()),
        "precision": lambda: fig_table(root, figs_precision()),
        "reference": lambda: fig_table(root, figs_reference()),
        "interleaved": lambda: fig_table(root, figs_interleaved()),
        "onnx": lambda: fig_table(root, figs_onnx()),
        "engines": lambda: fig_table(root, figs_engines()),
        "openvino-serving": lambda: fig_table(root, figs_openvino_serving(root)),
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
