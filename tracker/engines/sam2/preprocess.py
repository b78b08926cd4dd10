"""Frames and prompts in, SAM2 model inputs out; low-res logits back to full-frame masks.

Video frames (``uint8`` RGB, or ``uint8`` grey) go through exactly the steps of sam2's
video loader (``sam2.utils.misc._load_img_as_tensor`` and ``load_video_frames``): PIL
``resize`` to the model's square size with PIL's default filter (bicubic), ``/ 255.0`` in
float64, stored as float32, minus the ImageNet mean, divided by the ImageNet std. Doing the
same arithmetic in the same order is what makes the engine's output bit-comparable to
``SAM2VideoPredictor`` (see tests/test_sam2_parity.py).

Cine-MRI frames (``uint16``, ``int16``, floats; single channel) have no fixed intensity
scale, so each frame is windowed between its 0.5th and 99.5th percentiles to [0, 1] (a
few hot pixels or a dark background must not squash the anatomy), replicated to three
channels (the model was trained on RGB photographs, where grey means equal channels),
resized with antialiased bilinear interpolation in float32 (no 8-bit quantisation) and
normalised like video.

Crop mode: a square window around the prompts (plus a margin) is cut out of each frame
and resized to the model size, so a 2 cm tumour in a 40 cm field of view covers many
feature cells instead of one or two; masks are mapped back into the full frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tracker.types import BoxPrompt, FrameError, MaskPrompt, PointsPrompt, Prompt, PromptError

if TYPE_CHECKING:
    import torch

IMG_MEAN = (0.485, 0.456, 0.406)  # sam2.utils.misc.load_video_frames defaults (ImageNet)
IMG_STD = (0.229, 0.224, 0.225)

NORM_LOW_PERCENTILE = 0.5
NORM_HIGH_PERCENTILE = 99.5
# Percentiles from a strided subsample of at most this many pixels: exact enough for a
# window, and ~1 ms even for 1024^2 frames.
_NORM_MAX_SAMPLES = 65536
# Smallest crop side: below this the model would upsample a few pixels into its whole input.
MIN_CROP_SIDE = 32


@dataclass(frozen=True)
class CropWindow:
    """A rectangle of the full frame, ``x1``/``y1`` exclusive (pixels)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def contains(self, box: tuple[int, int, int, int]) -> bool:
        x0, y0, x1, y1 = box
        return self.x0 <= x0 and self.y0 <= y0 and x1 <= self.x1 and y1 <= self.y1


def full_window(hw: tuple[int, int]) -> CropWindow:
    return CropWindow(0, 0, hw[1], hw[0])


def square_window_around(box: tuple[int, int, int, int], margin: int, hw: tuple[int, int]) -> CropWindow:
    """The square window (as far as the frame allows) holding ``box`` plus ``margin`` px.

    Square because the model's input is square: a square crop is resized without
    changing the aspect ratio. Near an edge the window is shifted inside the frame
    rather than shrunk; if the frame is narrower than the side, it spans that dimension.
    """
    h, w = hw
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) + 2 * margin
    side = max(side, MIN_CROP_SIDE)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def span(c: float, n: int) -> tuple[int, int]:
        s = min(side, n)
        a = round(c - s / 2.0)
        a = min(max(a, 0), n - s)
        return a, a + s

    wx0, wx1 = span(cx, w)
    wy0, wy1 = span(cy, h)
    return CropWindow(wx0, wy0, wx1, wy1)


def prompt_extent(prompt: Prompt, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer bounding box (x0, y0, x1, y1), exclusive ends, of what a prompt covers."""
    h, w = hw
    if isinstance(prompt, MaskPrompt):
        return mask_box(np.asarray(prompt.mask, dtype=bool)) or (0, 0, w, h)
    if isinstance(prompt, BoxPrompt):
        x0, y0, x1, y1 = prompt.x0, prompt.y0, prompt.x1, prompt.y1
    elif isinstance(prompt, PointsPrompt):
        pts = np.asarray(prompt.points, dtype=float).reshape(-1, 2)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0) + 1.0
    else:
        raise PromptError(f"unsupported prompt type {type(prompt).__name__}")
    return (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(w, max(math.ceil(x1), math.floor(x0) + 1)),
        min(h, max(math.ceil(y1), math.floor(y0) + 1)),
    )


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), exclusive ends, of a bool mask; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def union_box(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


# -- frames --------------------------------------------------------------------------------


def _normalize(img: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation in place, with sam2's (C, 1, 1) float32 mean/std tensors."""
    import torch

    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    img -= mean
    img /= std
    return img


def _video_tensor(rgb8: np.ndarray, image_size: int) -> torch.Tensor:
    """sam2's ``_load_img_as_tensor`` + normalisation, from decoded pixels instead of a file.

    After the resize every value is one of 256 bytes, so ``/ 255.0`` in float64, the
    float32 cast and the float32 ``(x - mean) / std`` are done once per byte value and
    channel (:func:`_byte_table`) and looked up: the same values bit for bit, without
    the float64 and float32 full-size temporaries a frame would otherwise allocate.
    """
    import torch

    # PIL's default resize filter, exactly as sam2 calls it (bicubic in Pillow >= 7).
    img_np = np.array(Image.fromarray(rgb8).resize((image_size, image_size)))
    table = _byte_table()
    out = np.empty((3, image_size, image_size), dtype=np.float32)
    for c in range(3):
        np.take(table[c], img_np[:, :, c], out=out[c])
    return torch.from_numpy(out)


@functools.cache
def _byte_table() -> np.ndarray:
    """(3, 256) float32: byte value -> normalised model input per channel, as sam2's loader computes it."""
    import torch

    values = torch.from_numpy(np.arange(256, dtype=np.float64) / 255.0).to(torch.float32)
    img = values.reshape(1, 1, 256).expand(3, 1, 256).clone()
    return _normalize(img).reshape(3, 256).numpy().copy()


def window_gray(a: np.ndarray) -> np.ndarray:
    """Float32 [0, 1] image windowed at the frame's robust 0.5-99.5 percentiles; non-finite -> 0."""
    f = a.astype(np.float32, copy=False)
    finite = np.isfinite(f) if np.issubdtype(f.dtype, np.floating) else None
    if finite is not None and not finite.all():
        f = np.where(finite, f, np.nan)
    step = max(1, math.ceil(math.sqrt(f.size / _NORM_MAX_SAMPLES)))
    lo, hi = np.nanpercentile(f[::step, ::step], [NORM_LOW_PERCENTILE, NORM_HIGH_PERCENTILE])
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)  # constant frame: nothing to see
    out = (f - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    if finite is not None:
        out[~finite] = 0.0
    return out


def _gray_float_tensor(gray01: np.ndarray, image_size: int) -> torch.Tensor:
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch convention

    t = torch.from_numpy(np.ascontiguousarray(gray01, dtype=np.float32))[None, None]
    if t.shape[-2:] != (image_size, image_size):
        t = F.interpolate(
            t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    img = t[0].expand(3, -1, -1).clone()
    return _normalize(img)


def frame_to_tensor(pixels: np.ndarray, image_size: int, window: CropWindow | None = None) -> torch.Tensor:
    """The normalised (3, S, S) float32 model input for one frame (optionally cropped).

    * ``uint8`` (H, W, 3|4) RGB(A) and ``uint8`` (H, W) grey: sam2's video path (exact).
    * anything else single-channel (cine-MRI ``uint16``/``int16``/floats): per-frame
      robust window, three equal channels, float resize.
    """
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if window is not None:
        a = a[window.y0 : window.y1, window.x0 : window.x1]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        if a.dtype != np.uint8:
            raise FrameError(f"colour frames must be uint8 RGB, got {a.dtype} with {a.shape[2]} channels")
        return _video_tensor(np.ascontiguousarray(a[:, :, :3]), image_size)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 2:
        raise FrameError(f"frame must be (H, W) or (H, W, 3) with H, W >= 2, got shape {a.shape}")
    if a.dtype == np.uint8:
        # What sam2's loader does with a grey JPEG: convert("RGB") replicates the channel.
        return _video_tensor(
            np.array(Image.fromarray(np.ascontiguousarray(a), "L").convert("RGB")), image_size
        )
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise FrameError(f"unsupported frame dtype {a.dtype}; expected uint8, uint16, int16 or float32")
    return _gray_float_tensor(window_gray(a), image_size)


# -- prompts -------------------------------------------------------------------------------


def mask_input(mask: np.ndarray, image_size: int, window: CropWindow) -> torch.Tensor:
    """(1, 1, S, S) float 0/1 mask input, as ``SAM2VideoPredictor.add_new_mask`` makes it."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    m = np.asarray(mask, dtype=bool)[window.y0 : window.y1, window.x0 : window.x1]
    t = torch.from_numpy(np.ascontiguousarray(m))[None, None].float()
    if t.shape[-2:] != (image_size, image_size):
        t = F.interpolate(
            t, size=(image_size, image_size), align_corners=False, mode="bilinear", antialias=True
        )
        t = (t >= 0.5).float()
    return t


def point_inputs(
    prompt: BoxPrompt | PointsPrompt, image_size: int, window: CropWindow
) -> dict[str, torch.Tensor]:
    """SAM2's ``point_inputs`` dict, as ``add_new_points_or_box`` builds it.

    A box becomes two points with labels 2 and 3 (before any clicks). Our boxes have
    exclusive far corners; SAM's are the last pixel inside (``mask_to_box``), so 1 is
    subtracted from ``x1``/``y1``. Coordinates are normalised by the window size and
    scaled to the model size.
    """
    import torch

    if isinstance(prompt, BoxPrompt):
        coords = np.array([[prompt.x0, prompt.y0], [prompt.x1 - 1.0, prompt.y1 - 1.0]], dtype=np.float64)
        coords[1] = np.maximum(coords[1], coords[0])
        labels = np.array([2, 3], dtype=np.int32)
    else:
        coords = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
        labels = (np.asarray(prompt.labels).reshape(-1) == 1).astype(np.int32)
    pts = torch.tensor(coords, dtype=torch.float32)[None]
    pts = pts - torch.tensor([window.x0, window.y0], dtype=torch.float32)
    pts = pts / torch.tensor([window.width, window.height]).to(pts.dtype)
    pts = pts * image_size
    return {"point_coords": pts, "point_labels": torch.tensor(labels, dtype=torch.int32)[None]}


# -- outputs -------------------------------------------------------------------------------


def logits_to_window(low_res: torch.Tensor, window: CropWindow) -> torch.Tensor:
    """(1, 1, h, w) logits at the window's resolution, as sam2's ``_get_orig_video_res_output``."""
    import torch.nn.functional as F  # noqa: N812

    size = (window.height, window.width)
    if low_res.shape[-2:] == size:
        return low_res
    return F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)


def logits_to_mask(low_res: torch.Tensor, window: CropWindow, hw: tuple[int, int]) -> np.ndarray:
    """Full-frame bool mask: upsample to the window, threshold at 0, paste into the frame."""
    inside = (logits_to_window(low_res.float(), window)[0, 0] > 0).cpu().numpy()
    if (window.x0, window.y0, window.x1, window.y1) == (0, 0, hw[1], hw[0]):
        return inside
    out = np.zeros(hw, dtype=bool)
    out[window.y0 : window.y1, window.x0 : window.x1] = inside
    return out
