"""Pictures a person would rather look at than read: overlays and latency plots."""

from __future__ import annotations

import logging
from collections.abc import Sequence as Seq
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

PREDICTION_BGR = (60, 220, 60)  # green: what the tracker answered
TRUTH_BGR = (60, 60, 230)  # red: ground truth


def to_display_rgb(frame: np.ndarray) -> np.ndarray:
    """Any supported frame as 8-bit RGB; non-8-bit frames get a robust 1-99 percentile window."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        lo, hi = np.percentile(frame, [1, 99])
        scaled = np.clip((frame.astype(np.float32) - lo) / max(float(hi - lo), 1e-6), 0, 1)
        frame = (scaled * 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    return np.ascontiguousarray(frame)


def overlay(
    frame: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None, caption: str = ""
) -> np.ndarray:
    """RGB frame with the predicted contour (green), the true contour (red) and a caption."""
    bgr = cv2.cvtColor(to_display_rgb(frame), cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(bgr.shape[:2]) / 300))
    for labels, colour in ((truth, TRUTH_BGR), (prediction, PREDICTION_BGR)):
        _draw_contours(bgr, labels, colour, thickness)
    if caption:
        scale = max(0.4, bgr.shape[1] / 900)
        cv2.putText(
            bgr, caption, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA
        )
        cv2.putText(
            bgr,
            caption,
            (6, int(22 * scale) + 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _draw_contours(
    bgr: np.ndarray, labels: np.ndarray | None, colour: tuple[int, int, int], thickness: int
) -> None:
    if labels is None:
        return
    for value in np.unique(labels):
        if value == 0:
            continue
        contours, _ = cv2.findContours(
            (labels == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(bgr, contours, -1, colour, thickness, lineType=cv2.LINE_AA)


def zoom_panel(
    frame: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None, height: int, margin: float = 2.5
) -> np.ndarray:
    """A magnified RGB view around the predicted object, contours drawn at the enlarged scale.

    A 5-10 mm tumour in a 300-450 mm field of view covers a few dozen pixels; a
    person judging the contour needs it enlarged. The window is ``margin`` times
    the object's extent (at least 32 px) and follows its centroid.
    """
    h, w = prediction.shape
    ys, xs = np.nonzero(prediction)
    if ys.size:
        cy, cx = int(ys.mean()), int(xs.mean())
        extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    else:
        cy, cx, extent = h // 2, w // 2, 32
    half = int(min(max(16, margin * extent / 2), h // 2, w // 2))
    y0, x0 = min(max(cy - half, 0), h - 2 * half), min(max(cx - half, 0), w - 2 * half)
    window = (slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half))
    scale = height / (2 * half)
    size = (height, height)
    bgr = cv2.cvtColor(
        cv2.resize(to_display_rgb(frame[window]), size, interpolation=cv2.INTER_CUBIC), cv2.COLOR_RGB2BGR
    )
    for labels, colour in ((truth, TRUTH_BGR), (prediction, PREDICTION_BGR)):
        if labels is not None:
            big = cv2.resize(labels[window].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            _draw_contours(bgr, big, colour, 2)
    cv2.putText(
        bgr, f"x{scale:.1f}", (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_overlay_gif(
    path: Path,
    frames: Seq[np.ndarray],
    predictions: np.ndarray,
    truths: np.ndarray | None,
    captions: Seq[str],
    fps: float,
    max_width: int = 480,
    zoom: bool = False,
) -> Path:
    """An animated GIF of the overlays, scaled down to ``max_width`` to stay small.

    ``zoom`` adds a magnified panel that follows the predicted object (for small targets).
    """
    images = []
    for i in range(len(frames)):
        truth = None if truths is None else truths[i]
        image = overlay(frames[i], predictions[i], truth, captions[i])
        if zoom:
            panel = zoom_panel(np.asarray(frames[i]), predictions[i], truth, image.shape[0])
            image = np.concatenate([image, np.full((image.shape[0], 4, 3), 255, np.uint8), panel], axis=1)
            max_width = max(max_width, image.shape[1])
        if image.shape[1] > max_width:
            height = round(image.shape[0] * max_width / image.shape[1])
            image = cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA)
        images.append(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration_ms = 1000.0 / min(max(fps, 1.0), 25.0)
    iio.imwrite(path, np.stack(images), extension=".gif", duration=duration_ms, loop=0)
    return path


def plot_latency(path: Path, cases: Seq[dict[str, object]]) -> Path:
    """Per-frame end-to-end and server latency for each case, with its budget, plus the CDF."""
    fig = Figure(figsize=(12, 4.2))  # the object API: no pyplot state, no display backend
    timeline, cdf = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    for case in cases:
        frames = [f for f in case["per_frame"] if f["status"] in ("OK", "LATE")]  # type: ignore[union-attr]
        idx = [f["index"] for f in frames]
        e2e = np.array([f["latency_ms"] for f in frames])
        server = np.array([f["server_ms"] for f in frames])
        (line,) = timeline.plot(idx, e2e, lw=1.2, label=f"{case['name']} end-to-end")
        timeline.plot(idx, server, lw=0.8, ls="--", color=line.get_color(), label=f"{case['name']} server")
        timeline.axhline(float(case["budget_ms"]), color=line.get_color(), lw=0.8, ls=":")  # type: ignore[arg-type]
        cdf.plot(
            np.sort(e2e),
            np.linspace(0, 1, len(e2e), endpoint=False),
            color=line.get_color(),
            label=str(case["name"]),
        )
    timeline.set(
        xlabel="frame", ylabel="latency (ms)", yscale="log", title="Per-frame latency (dotted: budget)"
    )
    timeline.legend(fontsize=7)
    cdf.set(xlabel="end-to-end latency (ms)", ylabel="fraction of frames", xscale="log", title="Latency CDF")
    cdf.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
