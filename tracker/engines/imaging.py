"""Images and prompts to the arrays engines track with: 8-bit grey, and prompt masks.

Weight-free helpers shared by the ``flow`` engine and the overseer: a robust
intensity window for cine-MRI's 12-16-bit frames, prompt masks from boxes
(GrabCut) and clicks, and the removal of flow specks from propagated masks.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from tracker.types import BoxPrompt, FrameError, MaskPrompt, PointsPrompt, Prompt, PromptError

logger = logging.getLogger(__name__)

# Robust intensity window for non-8-bit frames: the extreme 0.5 % on each side
# are clipped so that a few hot pixels or a dark background do not squash the
# anatomy into a handful of grey levels.
_NORM_LOW_PERCENTILE = 0.5
_NORM_HIGH_PERCENTILE = 99.5
# The percentiles are taken on a strided subsample of at most this many pixels:
# exact enough for a window and it keeps the cost ~0.3 ms even for large frames.
_NORM_MAX_SAMPLES = 65536


# -- preprocessing ---------------------------------------------------------------------


def to_gray8(pixels: np.ndarray) -> np.ndarray:
    """Convert a frame to the 8-bit grey image the flow works on.

    * ``uint8`` (H, W) is returned as is (no copy), ``uint8`` (H, W, 3) RGB is
      converted to grey with OpenCV's luma weights.
    * Anything else (``uint16``, ``int16``, floats; cine-MRI with an arbitrary,
      drifting intensity scale) is windowed per frame between its 0.5th and
      99.5th percentiles and mapped to 0..255. Non-finite values become 0.

    Raises :class:`FrameError` for shapes or dtypes that are not images.
    """
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        if a.dtype == np.uint8:
            code = cv2.COLOR_RGB2GRAY if a.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
            return cv2.cvtColor(np.ascontiguousarray(a), code)
        # Non-8-bit colour (rare): luma in float, then the same robust window.
        a = a[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 2:
        raise FrameError(f"frame must be (H, W) or (H, W, 3) with H, W >= 2, got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)  # no copy unless it was a strided view (OpenCV wants dense)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise FrameError(f"unsupported frame dtype {a.dtype}; expected uint8, uint16, int16 or float32")

    f = a.astype(np.float32, copy=False)
    finite = None
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(f)
        if not finite.all():
            f = np.where(finite, f, np.nan)
    step = max(1, math.ceil(math.sqrt(f.size / _NORM_MAX_SAMPLES)))
    sample = f[::step, ::step]
    lo, hi = np.nanpercentile(sample, [_NORM_LOW_PERCENTILE, _NORM_HIGH_PERCENTILE])
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        # Constant (or all non-finite) frame: nothing to register against.
        return np.zeros(a.shape, dtype=np.uint8)
    out = (f - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    np.clip(out, 0.0, 255.0, out=out)
    if finite is not None:
        out[~finite] = 0.0
    return out.astype(np.uint8)


# Immerkær's noise-estimation mask: the difference of two Laplacians, blind to any image
# that is locally a plane or a quadric, so what it responds to is mostly noise. Its squared
# weights sum to 36: white noise of std sigma gives a response of std 6 sigma.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_NOISE_MAX_SAMPLES = 16384  # a strided sample of the response: its median to about 1 %
_NOISE_MIN_SAMPLES = 256


def noise_sigma(gray: np.ndarray) -> float:
    """The std of an image's white noise, in its grey levels: Immerkær's (1996) estimator, with the
    median absolute response (times 1.4826, the Gaussian's MAD factor) in place of his mean, so that
    the few pixels on edges and fine texture do not count as noise. Images too small for the median
    to be mostly noise (under ``_NOISE_MIN_SAMPLES`` interior pixels): 0, no noise assumed.
    """
    if (gray.shape[0] - 2) * (gray.shape[1] - 2) < _NOISE_MIN_SAMPLES:
        return 0.0
    response = cv2.filter2D(gray, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    step = max(1, math.ceil(math.sqrt(response.size / _NOISE_MAX_SAMPLES)))  # the median is the cost
    return float(1.4826 * np.median(np.abs(response[::step, ::step])) / 6.0)


def _to_bgr8(pixels: np.ndarray) -> np.ndarray:
    """An 8-bit 3-channel image for GrabCut: colour kept for video, grey replicated otherwise."""
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] >= 3 and a.dtype == np.uint8:
        return np.ascontiguousarray(a[:, :, 2::-1])  # RGB -> BGR (GrabCut does not care, but be tidy)
    return cv2.cvtColor(to_gray8(a), cv2.COLOR_GRAY2BGR)


# -- prompts -> masks --------------------------------------------------------------------


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def drop_islands(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Remove connected parts smaller than ``min_fraction`` of the largest part.

    Warping a mask through a noisy flow field leaves specks far from the object
    (a few pixels each, where the flow latched onto similar texture). They barely
    move Dice but dominate boundary metrics such as HD95 and shift the centroid,
    and they would be fed forward as the next frame's mask. Parts of a genuinely
    split object (an instrument crossed by another) are far larger than the
    threshold and survive. Cost: one connected-components pass over the mask's
    bounding box.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return mask
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = mask[y0:y1, x0:x1].astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= min_fraction * areas.max()) + 1
    out = np.zeros_like(mask, dtype=bool)
    out[y0:y1, x0:x1] = np.isin(labels, keep)
    return out


def _box_pixels(prompt: BoxPrompt, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer pixel range (x0, y0, x1, y1), exclusive ends, of a box, clipped to the image."""
    h, w = hw
    x0 = min(max(math.floor(prompt.x0), 0), w - 1)
    y0 = min(max(math.floor(prompt.y0), 0), h - 1)
    x1 = min(max(math.ceil(prompt.x1), x0 + 1), w)
    y1 = min(max(math.ceil(prompt.y1), y0 + 1), h)
    return x0, y0, x1, y1


def _box_mask(prompt: BoxPrompt, image: np.ndarray, mode: str) -> np.ndarray:
    """Mask from a box: GrabCut inside a crop around it, or the filled box.

    GrabCut (initialised with the rectangle, 5 iterations) recovers the object
    inside a loose box, which matters for the flow engine because the prompt
    mask is what every later frame is warped from: a filled box would carry the
    background corners along for the whole stream. It runs on a crop of the box
    plus a margin so its cost (tens of ms) depends on the box, not the frame.
    Its result is used only when plausible: it must keep at least 20 % of the
    box (otherwise GrabCut has latched onto a small, contrasting detail) and
    there must be background around the box to learn from; else the filled box
    is returned, which is a safe if coarse answer.
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _box_pixels(prompt, (h, w))
    filled = np.zeros((h, w), dtype=bool)
    filled[y0:y1, x0:x1] = True
    bw, bh = x1 - x0, y1 - y0
    if mode == "box" or bw < 6 or bh < 6:
        return filled
    margin = max(8, round(0.25 * max(bw, bh)))
    cx0, cy0 = max(0, x0 - margin), max(0, y0 - margin)
    cx1, cy1 = min(w, x1 + margin), min(h, y1 + margin)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
        return filled  # the box is the whole image: no background to model
    crop = _to_bgr8(image[cy0:cy1, cx0:cx1])
    gc = np.zeros(crop.shape[:2], dtype=np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, gc, (x0 - cx0, y0 - cy0, bw, bh), bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    except cv2.error as exc:  # degenerate colour models (e.g. a flat image)
        logger.debug("GrabCut failed on a box prompt (%s); using the filled box", exc)
        return filled
    fg = _largest_component((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD))
    if fg.sum() < 0.2 * bw * bh:
        logger.debug("GrabCut kept %d of %d box pixels; using the filled box", int(fg.sum()), bw * bh)
        return filled
    out = np.zeros((h, w), dtype=bool)
    out[cy0:cy1, cx0:cx1] = fg
    return out


def _disks(hw: tuple[int, int], points: np.ndarray, radius: float) -> np.ndarray:
    out = np.zeros(hw, dtype=np.uint8)
    r = max(1, round(radius))
    for x, y in points:
        cv2.circle(out, (round(float(x)), round(float(y))), r, 1, thickness=-1)
    return out.astype(bool)


def _points_mask(prompt: PointsPrompt, image: np.ndarray, point_radius: float) -> np.ndarray:
    """Mask from clicks: GrabCut seeded by the points, else disks around the positives.

    Positive points are definite foreground (small disks), negative points
    definite background; a disk of ``2 * point_radius`` around each positive is
    *probably* foreground and the rest of a crop around the clicks *probably*
    background, with the crop's edge definite background. The components that
    contain a positive click are kept. The crop reaches ``max(3 * point_radius,
    15 % of the image side)`` beyond the clicks, so an object much larger than
    that (a whole liver from one click) is cut at the crop: click more points
    or use a box. If GrabCut fails, adds nothing to the seeds or fills most of
    the crop, the answer is the union of ``point_radius`` disks around the
    positives minus those around the negatives (so an object much smaller than
    ``point_radius`` gets a disk that is too large: lower the option for it).
    """
    h, w = image.shape[:2]
    pts = np.asarray(prompt.points, dtype=float).reshape(-1, 2)
    labels = np.asarray(prompt.labels).reshape(-1)
    pos, neg = pts[labels == 1], pts[labels != 1]
    fallback = _disks((h, w), pos, point_radius) & ~_disks((h, w), neg, point_radius)
    fallback |= _disks((h, w), pos, 1)  # the clicked pixels themselves always belong

    context = max(3.0 * point_radius, 0.15 * min(h, w))
    cx0 = max(0, math.floor(pos[:, 0].min() - context))
    cy0 = max(0, math.floor(pos[:, 1].min() - context))
    cx1 = min(w, math.ceil(pos[:, 0].max() + context) + 1)
    cy1 = min(h, math.ceil(pos[:, 1].max() + context) + 1)
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        return fallback
    chw = (cy1 - cy0, cx1 - cx0)
    off = np.array([cx0, cy0], dtype=float)
    seed = max(1.0, 0.3 * point_radius)
    gc = np.full(chw, cv2.GC_PR_BGD, dtype=np.uint8)
    gc[_disks(chw, pos - off, 2.0 * point_radius)] = cv2.GC_PR_FGD
    gc[[0, -1], :] = cv2.GC_BGD
    gc[:, [0, -1]] = cv2.GC_BGD
    if len(neg):
        gc[_disks(chw, neg - off, seed)] = cv2.GC_BGD
    fg_seed = _disks(chw, pos - off, seed)
    gc[fg_seed] = cv2.GC_FGD
    crop = _to_bgr8(image[cy0:cy1, cx0:cx1])
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        logger.debug("GrabCut failed on a points prompt (%s); using disks", exc)
        return fallback
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    _, comp = cv2.connectedComponents(fg, connectivity=8)
    keep = np.unique(comp[fg_seed & (fg > 0)])
    fg_kept = np.isin(comp, keep[keep > 0])
    # Implausible: nothing beyond the definite seeds (no contrast to cut along, e.g. a flat
    # image), or most of the crop (no boundary found before the crop's edge).
    if fg_kept.sum() <= 2 * fg_seed.sum() or fg_kept.sum() > 0.6 * chw[0] * chw[1]:
        logger.debug("GrabCut gave an implausible points mask; using disks")
        return fallback
    out = np.zeros((h, w), dtype=bool)
    out[cy0:cy1, cx0:cx1] = fg_kept
    return out


def prompt_to_mask(
    prompt: Prompt, image: np.ndarray, *, box_mode: str = "grabcut", point_radius: float = 10.0
) -> np.ndarray:
    """The bool (H, W) mask a prompt defines on ``image`` (any frame the engine accepts).

    ``MaskPrompt`` is taken as is; ``BoxPrompt`` and ``PointsPrompt`` are
    segmented with GrabCut (see :func:`_box_mask` and :func:`_points_mask` for
    when it falls back to the filled box or disks). The prompt is assumed
    already checked against the image size (:func:`tracker.engines.base.check_prompt_fits`).
    """
    if isinstance(prompt, MaskPrompt):
        return np.asarray(prompt.mask).astype(bool)
    if isinstance(prompt, BoxPrompt):
        return _box_mask(prompt, image, box_mode)
    if isinstance(prompt, PointsPrompt):
        return _points_mask(prompt, image, point_radius)
    raise PromptError(f"unsupported prompt type {type(prompt).__name__}")


# -- options --------------------------------------------------------------------------


def target_contrast(pixels: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(mean inside ``mask`` minus mean of a ring around it, std of that ring), in pixel units.

    The ring is as wide as about half the mask's equivalent diameter. Computed on a crop around
    the mask, in float on the original intensities (colour averaged), so windowing cannot clip
    it. ``(0.0, 0.0)`` for an empty mask or one with no ring inside the frame.
    """
    if not mask.any():
        return 0.0, 0.0
    ys, xs = np.nonzero(mask)
    k = max(3, int(math.sqrt(len(ys) / math.pi)) | 1)
    h, w = mask.shape
    y0, y1 = max(0, ys.min() - k), min(h, ys.max() + k + 1)
    x0, x1 = max(0, xs.min() - k), min(w, xs.max() + k + 1)
    crop = np.asarray(pixels)[y0:y1, x0:x1].astype(np.float32)
    if crop.ndim == 3:
        crop = crop.mean(axis=2)
    inside = mask[y0:y1, x0:x1]
    grown = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    ring = grown.astype(bool) & ~inside
    if not ring.any():
        return 0.0, 0.0
    return float(crop[inside].mean() - crop[ring].mean()), float(crop[ring].std())
