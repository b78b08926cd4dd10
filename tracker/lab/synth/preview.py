"""Pictures for a person to check a synthetic cine-MRI case: a montage (first frame, maximum inhale, motion
trace) and a contact sheet of evenly spaced frames with the ground truth outlined."""

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
    return _write_captioned(montage, caption, Path(path_png))


def write_contact_sheet(
    frames: np.ndarray,
    labels: np.ndarray | None,
    path_png: Path,
    n_panels: int = 8,
    columns: int = 4,
    panel_px: int = 240,
    caption: str = "",
) -> Path:
    """Evenly spaced frames of a (T, H, W) sequence side by side, one grey scale for all, with the
    ground truth outlined in green and each panel titled with its frame index ("empty" when its label is)."""
    picks = np.linspace(0, len(frames) - 1, min(n_panels, len(frames))).round().astype(int)
    lo, hi = np.percentile(frames[picks], [0.5, 99.5])
    panels = []
    for k in picks:
        u8 = np.clip((frames[k].astype(np.float32) - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
        img = cv2.cvtColor(
            cv2.resize(u8, (panel_px, panel_px), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR
        )
        title = f"frame {k}"
        if labels is not None:
            big = cv2.resize(
                labels[k].astype(np.uint8), (panel_px, panel_px), interpolation=cv2.INTER_NEAREST
            )
            contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(img, contours, -1, (0, 255, 0), 1)
            title += "" if labels[k].any() else " (empty)"
        cv2.putText(img, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
        panels.append(img)
    blank = np.zeros_like(panels[0])
    panels += [blank] * (-len(panels) % columns)
    rows = [np.concatenate(panels[i : i + columns], axis=1) for i in range(0, len(panels), columns)]
    return _write_captioned(np.concatenate(rows, axis=0), caption, Path(path_png))


def _write_captioned(image: np.ndarray, caption: str, path_png: Path) -> Path:
    """``image`` under a white bar with ``caption`` (none when empty), written as a PNG."""
    if caption:
        bar = np.full((24, image.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        image = np.concatenate([bar, image], axis=0)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path_png), image):
        raise OSError(f"could not write {path_png}")
    return path_png
