"""Fills the figure blocks of README.md and docs/*.md from bench/results/*.json, or checks them.

    .venv/bin/python bench/readme_figures.py           # rewrite every block
    .venv/bin/python bench/readme_figures.py --check   # exit 1 and list the problems if anything is stale

A block is the text between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``. Every
figure in it is one table row that cites its result file and key (``flow.json:latency.frames``,
files under bench/results/) and names the run it came from: the machine and commit from the
file's ``provenance`` block, or, for files written before provenance existed, the machine block
marked **no provenance**. The streaming table is bench/stream_suite.py's own
(bench/results/stream_table.md); each of its rows is matched to the stream_*.json it was
formatted from with stream_suite's row formatter, so a row without a source is an error.

``--check`` also verifies, independently of the generator, that every cited value still equals
the shown figure to the shown precision, that every ``file.json:key`` citation in prose resolves,
that README.md is at most 250 lines, and that every relative link points to an existing file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = "bench/results"
README_MAX_LINES = 250
# Pages other engineers are writing on their branches; the lead merges them before the end.
FUTURE_DOCS = frozenset(
    {"docs/scale-out.md", "docs/validation.md", "docs/deployment.md", "docs/scheduler.md"}
)

BLOCK_RE = re.compile(r"<!-- figures:([\w-]+) -->\n(.*?)<!-- /figures:\1 -->", re.S)
CITE_RE = re.compile(r"`((?:bench/results/)?(?:round1/)?[\w.-]+\.json):([\w.-]+)`(?: ×([\d.]+))?")
NUMBER_RE = re.compile(r"-?[\d,]*\.?\d+(?:e[-+]?\d+)?")
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
logger = logging.getLogger("readme_figures")


class FigureError(Exception):
    """A figure that cannot be traced to its result file."""


@dataclass(frozen=True)
class Fig:
    """One figure: a value read from ``bench/results/FILE`` at dotted ``key`` (list items by index)."""

    label: str
    file: str
    key: str
    fmt: str = ".3f"
    unit: str = ""
    scale: float = 1.0


def results_path(root: Path, file: str) -> Path:
    return root / (file if file.startswith("bench/") else f"{RESULTS_DIR}/{file}")


def load(root: Path, file: str) -> dict[str, Any]:
    path = results_path(root, file)
    if not path.is_file():
        raise FigureError(f"{file}: result file {path} does not exist")
    return json.loads(path.read_text())


def lookup(data: Any, key: str, where: str) -> Any:
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise FigureError(f"{where}: key {key!r} not found (at {part!r})")
    return node


def run_tag(data: dict[str, Any]) -> str:
    """Machine and commit of a result; old files without ``provenance`` are marked visibly."""
    prov = data.get("provenance")
    if isinstance(prov, dict):
        m = prov.get("machine", {})
        commit = (prov.get("commit") or "unknown")[:7]
        dirty = " (dirty)" if prov.get("dirty") else ""
        return f"{_machine(m)} · `{commit}`{dirty}"
    return f"{_machine(data.get('machine', {}))} · **round 1, no provenance**"


def _machine(m: dict[str, Any]) -> str:
    if not m:
        return "machine not recorded"
    parts = [str(m.get("cpu", "?")), f"{m.get('cores', '?')} cores"]
    if m.get("ram_gib"):
        parts.append(f"{m['ram_gib']} GiB")
    parts.append(str(m["gpu"]) if m.get("gpu") else "no GPU")
    return ", ".join(parts)


def fig_value(root: Path, fig: Fig) -> str:
    value = lookup(load(root, fig.file), fig.key, fig.file)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FigureError(f"{fig.file}:{fig.key} is {value!r}, not a number")
    shown = value * fig.scale if fig.scale != 1.0 else value
    return f"{shown:{fig.fmt}}{fig.unit}"


def fig_table(root: Path, figs: list[Fig]) -> str:
    rows = ["| figure | value | source (`bench/results/` file: key) | run |", "|---|---|---|---|"]
    for fig in figs:
        scale = f" ×{fig.scale:g}" if fig.scale != 1.0 else ""
        rows.append(
            f"| {fig.label} | {fig_value(root, fig)} | `{fig.file}:{fig.key}`{scale}"
            f" | {run_tag(load(root, fig.file))} |"
        )
    return "\n".join(rows) + "\n"


# ---- the figures, block by block -------------------------------------------------------------

Row = tuple[Any, ...]  # (label, key[, fmt[, unit[, scale]]]) of one figure in one file
MS, MB, PCT = " ms", " MB", " %"


def figs(file: str, *rows: Row) -> list[Fig]:
    return [Fig(label, file, key, *rest) for label, key, *rest in rows]


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
        "round1/stream_sam2_tiny_1hz_bf16_5min.json",
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
        "round1/precision_cpu.json",
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
        "round1/reference_1000.json",
        *rows,
        ("max abs logit difference over all frames", "parity.max_abs_logit_diff", ".1f"),
        ("min mask IoU over all frames", "parity.min_iou", ".1f"),
        ("frames compared", "parity.frames", ",d"),
    )


def _figs_interleaved() -> list[Fig]:
    out: list[Fig] = []
    for file, name in (
        ("round1/reference_ab_fp32.json", "float32"),
        ("round1/reference_ab_bf16.json", "bfloat16"),
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
    return out + figs("round1/reference_120.json", init)


def _figs_onnx() -> list[Fig]:
    seq = "beside the reference, sequential"
    return [
        *figs(
            "round1/reference_onnx.json",
            (f"{seq}: PyTorch engine ms/frame p50", "ours.ms_per_frame_p50", ",.0f", MS),
            (f"{seq}: reference ms/frame p50", "reference.ms_per_frame_p50", ",.0f", MS),
            (f"{seq}: ONNX Runtime ms/frame p50", "onnx.ms_per_frame_p50", ",.0f", MS),
            ("sequential: ONNX vs PyTorch max logit difference", "onnx.parity.max_abs_logit_diff", ".1e"),
        ),
        *figs(
            "round1/onnx_cpu.json",
            *_stages("ours", "interleaved, PyTorch float32"),
            *_stages("onnx", "interleaved, ONNX Runtime float32"),
            ("interleaved: ONNX Runtime speed-up per frame (target ≥ 1.25×)", "speedup_p50", ".2f", "×"),
            ("interleaved: ONNX vs PyTorch, max abs logit difference", "parity.max_abs_logit_diff", ".1e"),
        ),
    ]


# ---- the streaming table: bench/stream_suite.py's own rows, each matched to its JSON ----------


def _stream_suite(root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("stream_suite", root / "bench" / "stream_suite.py")
    if spec is None or spec.loader is None:
        raise FigureError("bench/stream_suite.py cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def stream_block(root: Path) -> str:
    table_path = root / RESULTS_DIR / "stream_table.md"
    if not table_path.is_file():
        raise FigureError(f"{table_path} does not exist: run bench/stream_suite.py")
    lines = table_path.read_text().splitlines()
    fmt_row: Callable[[str, dict, str], str] = _stream_suite(root)._row
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
            cells = _cells(line)
            label, target = cells[0], cells[-1]
            match = [n for n, r in reports.items() if fmt_row(label, r, target) == line.strip()]
            if not match:
                raise FigureError(f"stream_table.md row {label!r} matches no bench/results/stream_*.json")
            out.append(f"{line.strip()} `{match[0]}` | {run_tag(reports[match[0]])} |")
    return "\n".join(out) + "\n"


def _stream_row_problems(root: Path, block: str) -> list[str]:
    fmt_row = _stream_suite(root)._row
    problems = []
    for line in block.splitlines():
        if not line.startswith("|") or line.startswith(("| scenario", "|---")):
            continue
        cells = _cells(line)
        file = cells[-2].strip("`")
        try:
            report = load(root, file)
        except FigureError as exc:
            problems.append(f"stream row {cells[0]!r}: {exc}")
            continue
        original = "| " + " | ".join(cells[:-2]) + " |"
        if fmt_row(cells[0], report, cells[-3]) != original:
            problems.append(f"stream row {cells[0]!r} differs from {file}")
    return problems


# ---- assembling, writing, checking ------------------------------------------------------------


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
    }


def doc_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(root: Path, text: str, where: str) -> str:
    """``text`` with every figure block regenerated."""
    renderers = blocks(root)

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in renderers:
            raise FigureError(f"{where}: unknown figure block {name!r} (known: {', '.join(renderers)})")
        return f"<!-- figures:{name} -->\n{renderers[name]()}<!-- /figures:{name} -->"

    return BLOCK_RE.sub(fill, text)


def _decimals(shown: str) -> float:
    """Half a unit in the last shown digit: the rounding a correct figure can differ by."""
    mantissa, _, exp = shown.lower().partition("e")
    places = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 0.5 * 10.0 ** (-places + (int(exp) if exp else 0))


def cited_value_problems(root: Path, text: str, where: str) -> Iterator[str]:
    """Checks each cited figure row against its file without the generator: value, key, file."""
    for m in BLOCK_RE.finditer(text):
        if m.group(1) == "stream":
            yield from (f"{where}: {p}" for p in _stream_row_problems(root, m.group(2)))
            continue
        for line in m.group(2).splitlines():
            if not line.startswith("|") or line.startswith(("| figure", "|---")):
                continue
            cells = _cells(line)
            cite = CITE_RE.search(line)
            if cite is None or len(cells) < 3:
                yield f"{where}: figure row without a source: {line}"
                continue
            file, key, scale = cite.group(1), cite.group(2), float(cite.group(3) or 1.0)
            try:
                value = lookup(load(root, file), key, file)
            except FigureError as exc:
                yield f"{where}: {exc}"
                continue
            number = NUMBER_RE.search(cells[1].replace("**", ""))
            if number is None or isinstance(value, bool) or not isinstance(value, int | float):
                yield f"{where}: {file}:{key} = {value!r} cannot back the figure {cells[1]!r}"
                continue
            shown = number.group(0).replace(",", "")
            if abs(float(shown) - value * scale) > _decimals(shown) * 1.0001 + 1e-12:
                yield f"{where}: {cells[1]!r} differs from {file}:{key} = {value!r}" + (
                    f" ×{scale:g}" if scale != 1 else ""
                )


def prose_citation_problems(root: Path, text: str, where: str) -> Iterator[str]:
    for m in CITE_RE.finditer(BLOCK_RE.sub("", text)):
        try:
            lookup(load(root, m.group(1)), m.group(2), m.group(1))
        except FigureError as exc:
            yield f"{where}: prose citation {m.group(0)}: {exc}"


def anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    ids: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        ids.add(f"{slug}-{n}" if n else slug)
    return ids


def link_problems(root: Path, path: Path, text: str) -> Iterator[str]:
    for m in LINK_RE.finditer(re.sub(r"```.*?```", "", text, flags=re.S)):
        target, _, fragment = m.group(1).partition("#")
        if re.match(r"[a-z][\w+.-]*:", target):
            continue  # URL or mailto
        resolved = (path.parent / target).resolve() if target else path.resolve()
        inside = resolved.is_relative_to(root.resolve())
        if inside and resolved.relative_to(root.resolve()).as_posix() in FUTURE_DOCS:
            continue
        if not resolved.exists():
            yield f"{path.relative_to(root)}: link to missing file {m.group(1)}"
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
            yield f"{path.relative_to(root)}: link to missing heading {m.group(1)}"


def check(root: Path = REPO) -> list[str]:
    """Every problem found, as sentences; empty when README.md and docs/ are in order."""
    problems: list[str] = []
    readme = root / "README.md"
    n_lines = len(readme.read_text().splitlines()) if readme.is_file() else 0
    if n_lines > README_MAX_LINES:
        problems.append(f"README.md has {n_lines} lines (at most {README_MAX_LINES})")
    for path in doc_files(root):
        if not path.is_file():
            continue
        where = str(path.relative_to(root))
        text = path.read_text()
        try:
            if render(root, text, where) != text:
                problems.append(f"{where}: figure blocks are stale; run bench/readme_figures.py")
        except FigureError as exc:
            problems.append(str(exc))
        problems += cited_value_problems(root, text, where)
        problems += prose_citation_problems(root, text, where)
        problems += link_problems(root, path, text)
    return problems


def write(root: Path = REPO) -> list[Path]:
    changed = []
    for path in doc_files(root):
        text = path.read_text()
        new = render(root, text, str(path.relative_to(root)))
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="verify instead of rewriting; exit 1 on problems"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        problems = check()
        for problem in problems:
            print(problem)
        print("figures: OK" if not problems else f"figures: {len(problems)} problem(s)")
        return 1 if problems else 0
    try:
        changed = write()
    except FigureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        logger.info("rewrote %s", path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
