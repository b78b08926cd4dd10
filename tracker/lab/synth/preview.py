"""A montage for a person to check a synthetic cine-MRI case: first frame, maximum inhale, motion trace."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tracker.lab.synth.cine_mri import CineCase


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(frame, [0.5, 99.5])
    u8 = np.clip((frame.astype(np.float32) - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)


def _with_contour(
    frame: np.ndarray, label: np.ndarray, colour: tuple[int, int, int], title: str
) -> np.ndarray:
    img = _to_bgr(frame)
    contours, _ = cv2.findContours(label.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, colour, 1)
    cv2.putText(img, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    return img


def _trace_plot(case: CineCase, height: int, width: int) -> np.ndarray:
    """SI (and AP) motion against time, drawn with OpenCV so no plotting library is needed."""
    img = np.full((height, width, 3), 255, np.uint8)
    t = case.frame_times_s
    left, right, top, bottom = 44, 10, 28, 30
    values = case.motion_mm
    lo, hi = float(values.min()) - 1, float(values.max()) + 1
    t_max = max(float(t[-1]), 1e-6)

    def to_px(tt: np.ndarray, v: np.ndarray) -> np.ndarray:
        xs = left + tt / t_max * (width - left - right)
        ys = top + (hi - v) / (hi - lo) * (height - top - bottom)
        return np.stack([xs, ys], axis=1).round().astype(np.int32)

    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    for v in np.linspace(lo, hi, 5):
        y = int(to_px(np.array([0.0]), np.array([v]))[0, 1])
        cv2.line(img, (left - 3, y), (left, y), (0, 0, 0), 1)
        cv2.putText(img, f"{v:.0f}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.polylines(img, [to_px(t, values[:, 0])], False, (200, 60, 0), 1, cv2.LINE_AA)
    cv2.polylines(img, [to_px(t, values[:, 1])], False, (0, 140, 0), 1, cv2.LINE_AA)
    for p in to_px(t, values[:, 0]):
        cv2.circle(img, (int(p[0]), int(p[1])), 2, (200, 60, 0), -1)
    p = case.params
    title = f"SI (blue) / AP (green) mm, {p.frame_rate_hz:g} Hz, {len(t)} frames"
    cv2.putText(img, title, (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(
        img, f"time 0..{t_max:.0f} s", (left, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
    )
    return img


def write_case_preview(case: CineCase, path_png: Path, panel_px: int = 360) -> Path:
    """Montage for a person to check a case: frame 0 with contour, max inhale, the SI trace."""
    k_inhale = int(np.argmax(case.motion_mm[:, 0]))
    p = case.params
    first = _with_contour(case.frames[0], case.labels[0], (0, 255, 0), f"frame 0 ({case.tumour_site})")
    inhale = _with_contour(
        case.frames[k_inhale], case.labels[k_inhale], (0, 0, 255), f"frame {k_inhale}: max inhale"
    )
    cv2.drawContours(
        inhale,
        cv2.findContours(case.labels[0], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0],
        -1,
        (0, 255, 0),
        1,
    )
    panels = [cv2.resize(im, (panel_px, panel_px), interpolation=cv2.INTER_AREA) for im in (first, inhale)]
    panels.append(_trace_plot(case, panel_px, int(panel_px * 1.4)))
    montage = np.concatenate(panels, axis=1)
    caption = (
        f"{p.region}, {p.field_strength_t:g} T, {p.size_px} px, tumour {p.tumour_diameter_mm:.1f} mm"
        f"{' low-contrast' if p.low_contrast else ''}, noise {p.noise_sigma:.3f}, seed {case.seed}"
    )
    bar = np.full((24, montage.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    montage = np.concatenate([bar, montage], axis=0)
    path_png = Path(path_png)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path_png), montage):
        raise OSError(f"could not write {path_png}")
    return path_png
