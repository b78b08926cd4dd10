"""``tracker replay ... --html report.html``: one self-contained page a physicist can read and archive.

No network: styles and script are inline (each minified onto one line) and
every figure is a matplotlib PNG embedded as base64. The page holds the per-case
table (worst case first), Dice and centroid error over time, the target trace
against the gating window with the beam state and the truth, the latency CDF
against the budget, confidence against error, and the settings, versions,
machine and git commit (:mod:`tracker.lab.provenance`). A small inline script
marks the page as rendered (``data-rendered``) and lists any script error on
the page itself, so a headless browser can check both.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from tracker.lab.provenance import provenance
from tracker.lab.replay.gating_report import case_reference, true_centroids_mm

if TYPE_CHECKING:
    from tracker.lab.replay import CaseResult

logger = logging.getLogger(__name__)

_STYLE = """
body { font-family: sans-serif; margin: 20px; color: #222; background: #fff; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: right; }
th { background: #eef; } td.name { text-align: left; }
tr.bad td { background: #fde2e2; }
img { max-width: 100%; border: 1px solid #ddd; margin: 4px 0; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
.errors { color: #b00; }
"""
_SCRIPT = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var box = document.getElementById('script-errors');
  box.textContent = window.__errors.length ? 'script errors: ' + window.__errors.join('; ') : '';
  document.body.setAttribute('data-rendered', window.__errors.length ? 'errors' : 'ok');
});
"""


def _one_line(source: str) -> str:
    """``source`` (inline CSS or JS whose every statement ends its line) minified onto one line."""
    return " ".join(line.strip() for line in source.splitlines() if line.strip())


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return (
        '<img alt="figure" src="data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode() + '">'
    )


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _get(case: dict[str, Any], *path: str) -> Any:
    value: Any = case
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


_COLUMNS = (
    ("Dice", ("dice_mean",)),
    ("challenge Dice", ("challenge", "dice")),
    ("centroid mm", ("centroid_mm_mean",)),
    ("ASD px (challenge)", ("challenge", "asd_px")),
    ("MSD px (symmetric)", ("challenge", "msd_symmetric_px")),
    ("HD95 mm", ("hd95_mm_mean",)),
    ("rel. D98", ("challenge", "relative_d98")),
    ("beam-on outside", ("gating", "beam_on_outside_fraction")),
    ("duty", ("gating", "duty_cycle")),
    ("oracle duty", ("gating", "oracle_duty_cycle")),
    ("duty / oracle", ("gating", "duty_vs_oracle")),
    ("conf. vs Dice (Spearman)", ("confidence", "spearman_vs_dice")),
    ("conf. vs centroid error (Spearman)", ("confidence", "spearman_vs_centroid_error")),
    ("latency p95 ms", ("latency_ms", "p95")),
)


def _worst_first(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(case: dict[str, Any]) -> tuple[float, float]:
        outside = _get(case, "gating", "beam_on_outside_fraction") or 0.0
        dice = _get(case, "challenge", "dice")
        dice = case.get("dice_mean") if dice is None else dice
        return (-float(outside), float(dice) if dice is not None and np.isfinite(dice) else -1.0)

    return sorted(cases, key=key)


def _case_table(cases: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in _COLUMNS)
    rows = []
    for case in _worst_first(cases):
        outside = _get(case, "gating", "beam_on_outside_fraction")
        bad = outside is not None and outside > 0.01
        cells = "".join(f"<td>{_fmt(_get(case, *path))}</td>" for _, path in _COLUMNS)
        cls = ' class="bad"' if bad else ""
        rows.append(f'<tr{cls}><td class="name">{html.escape(str(case["name"]))}</td>{cells}</tr>')
    return f"<table><tr><th>case (worst first)</th>{head}</tr>{''.join(rows)}</table>"


def _latency_cdf(results: list[CaseResult]) -> str:
    fig = Figure(figsize=(6, 3))  # the object API: no pyplot state, no display backend
    ax = fig.subplots()
    for result in results:
        lat = np.sort([r.end_to_end_ms for r in result.records])
        if lat.size:
            ax.step(lat, np.arange(1, lat.size + 1) / lat.size, where="post", label=result.sequence.name)
    budgets = sorted({r.budget_ms for r in results})
    for budget in budgets:
        ax.axvline(budget, color="red", linestyle="--", linewidth=1)
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("share of frames")
    ax.set_title(f"latency CDF; red: budget ({', '.join(f'{b:.0f}' for b in budgets)} ms)")
    if len(results) <= 10:
        ax.legend(fontsize=7)
    return _png(fig)


def _case_figure(result: CaseResult, report: dict[str, Any]) -> str:
    seq = result.sequence
    oid = seq.object_ids()[0] if seq.object_ids() else None
    scores = result.scores.get(oid) if oid is not None else None
    times = np.array([seq.timestamp(i) for i in range(len(seq))])
    gated = "gating" in report and seq.labels is not None and oid is not None
    fig = Figure(figsize=(15 if gated else 10, 3.2))
    axes = fig.subplots(1, 3 if gated else 2)
    ax = axes[0]
    if scores is not None and scores.frames:
        idx = np.array(scores.frame_indices)
        ax.plot(times[idx], [f.dice for f in scores.frames], color="tab:blue", label="Dice")
        ax.set_ylim(0, 1.02)
        ax2 = ax.twinx()
        ax2.plot(
            times[idx], [f.centroid_mm for f in scores.frames], color="tab:orange", label="centroid error"
        )
        ax2.set_ylabel("centroid error (mm)", color="tab:orange")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Dice", color="tab:blue")
    ax.set_title(f"{seq.name}: Dice and centroid error")

    ax = axes[1]
    conf, err = [], []
    if scores is not None and oid is not None:
        for i, f in zip(scores.frame_indices, scores.frames, strict=True):
            c = result.records[i].confidences.get(oid)
            if c is not None:
                conf.append(c)
                err.append(1.0 - f.dice)
    ax.scatter(conf, err, s=8)
    ax.set_xlabel("reported confidence")
    ax.set_ylabel("1 - Dice")
    ax.set_title("confidence against error")

    if gated:
        ax = axes[2]
        truth = true_centroids_mm(seq, oid)
        known = np.isfinite(truth).all(axis=1)
        planned = case_reference(result)  # the reference the gate and the oracle were given
        reference = truth[int(np.argmax(known))] if planned is None else np.asarray(planned.position_mm)
        distance = np.linalg.norm(truth - reference, axis=1)
        measured = np.array(
            [
                np.linalg.norm(np.asarray(r.positions[oid][0]) - reference) if oid in r.positions else np.nan
                for r in result.records
            ]
        )
        margin = float(result.gating_margin_mm or 0.0)
        on = np.array([r.beam is not None and r.beam.value == "BEAM_ON" for r in result.records])
        top = float(np.nanmax(np.r_[distance[known], measured[np.isfinite(measured)], margin])) * 1.1 + 0.5
        ax.fill_between(times, 0, top, where=on, step="post", color="tab:green", alpha=0.2, label="beam on")
        ax.axhline(margin, color="red", linestyle="--", linewidth=1, label=f"window {margin:.1f} mm")
        ax.plot(times[known], distance[known], color="black", label="truth")
        ax.plot(times, measured, color="tab:blue", linewidth=1, label="tracked")
        ax.set_ylim(0, top)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("distance from reference (mm)")
        ax.set_title("target against the gating window")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def render_html(report: dict[str, Any], results: list[CaseResult]) -> str:
    cases: list[dict[str, Any]] = list(report.get("cases", []))
    by_name = {r.sequence.name: r for r in results}
    summary = report.get("summary", {})
    prov = report.get("provenance") or provenance()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>tracker replay report</title>",
        f"<style>{_one_line(_STYLE)}</style><script>{_one_line(_SCRIPT)}</script></head><body>",
        "<h1>Tracker replay report</h1>",
        '<p id="script-errors" class="errors"></p>',
        f"<p>{len(cases)} case(s); engine {_fmt(_get(report, 'settings', 'engine'))}; "
        f"commit {_fmt(prov.get('commit'))}{' (dirty)' if prov.get('dirty') else ''}; "
        f"{_fmt(prov.get('date'))}</p>",
        "<h2>Cases, worst first</h2>",
        _case_table(cases),
        "<h2>Worst case beside the mean</h2>",
        _worst_table(summary.get("worst", {})),
        "<h2>Latency</h2>",
        _latency_cdf(results) if results else "<p>no frames</p>",
        "<h2>Confidence against error, all cases</h2>",
        _reliability(summary.get("confidence", {})),
        "<h2>Per case</h2>",
    ]
    for case in _worst_first(cases):
        result = by_name.get(str(case["name"]))
        if result is not None:
            parts.append(f"<h3>{html.escape(result.sequence.name)}</h3>{_case_figure(result, case)}")
            causes = _get(case, "gating", "hold_causes")
            if causes:
                parts.append(f"<p>HOLD causes: {html.escape(json.dumps(causes))}</p>")
    settings = json.dumps({"settings": report.get("settings"), "provenance": prov}, indent=2)
    parts += [
        "<h2>Settings, versions, machine, commit</h2>",
        f"<pre>{html.escape(settings)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _reliability(pooled: dict[str, Any]) -> str:
    """The reliability plot: centroid error by confidence bin, pooled over the cases."""
    bins = [b for b in pooled.get("reliability", []) if b["frames"]]
    if not bins:
        return "<p>no confidence reported</p>"
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    centres = [(b["confidence_from"] + b["confidence_to"]) / 2 for b in bins]
    widths = [b["confidence_to"] - b["confidence_from"] for b in bins]
    ax.bar(centres, [b["centroid_mm_p95"] for b in bins], width=widths, color="tab:orange", alpha=0.4,
           edgecolor="white", label="95th percentile")  # fmt: skip
    ax.bar(centres, [b["centroid_mm_mean"] for b in bins], width=widths, color="tab:blue", alpha=0.8,
           edgecolor="white", label="mean")  # fmt: skip
    for x, b in zip(centres, bins, strict=True):
        ax.annotate(f"{b['frames']}", (x, b["centroid_mm_p95"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("reported confidence (bin; frames above each bar)")
    ax.set_ylabel("centroid error (mm)")
    rho = pooled.get("spearman_vs_centroid_error")
    ax.set_title(f"reliability: Spearman {_fmt(rho)} over {pooled.get('frames')} frames")
    ax.legend(fontsize=7)
    return _png(fig)


def _worst_table(worst: dict[str, dict[str, Any]]) -> str:
    if not worst:
        return "<p>n/a</p>"
    rows = "".join(
        f"<tr><td class='name'>{html.escape(name)}</td><td>{_fmt(w.get('mean'))}</td>"
        f"<td>{_fmt(w.get('worst'))}</td><td class='name'>{html.escape(str(w.get('case')))}</td></tr>"
        for name, w in worst.items()
    )
    return f"<table><tr><th>figure</th><th>mean</th><th>worst</th><th>worst case</th></tr>{rows}</table>"


def write_html_report(path: Path, report: dict[str, Any], results: list[CaseResult]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, results), encoding="utf-8")
    return path
