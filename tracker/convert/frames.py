"""Frames: the pixel types the protocol carries, decoded with every size and value check."""

from __future__ import annotations

import numpy as np

from tracker.convert.limits import Limits
from tracker.types import Frame, FrameError
from tracker.v1 import tracker_pb2 as pb

PIXEL_DTYPES: dict[int, np.dtype] = {
    pb.UINT8: np.dtype("<u1"),
    pb.UINT16: np.dtype("<u2"),
    pb.INT16: np.dtype("<i2"),
    pb.FLOAT32: np.dtype("<f4"),
}
_DTYPE_TO_PIXEL_TYPE = {np.dtype(v).newbyteorder("="): k for k, v in PIXEL_DTYPES.items()}


def frame_from_proto(msg: pb.Frame, limits: Limits) -> Frame:
    """Decode and validate one frame; raise FrameError naming the problem."""
    dtype = PIXEL_DTYPES.get(msg.pixel_type)
    if dtype is None:
        name = (
            pb.PixelType.Name(msg.pixel_type) if msg.pixel_type in pb.PixelType.values() else msg.pixel_type
        )
        raise FrameError(
            f"frame {msg.index}: unsupported pixel type {name}; use UINT8, UINT16, INT16 or FLOAT32"
        )
    h, w = int(msg.height), int(msg.width)
    channels = int(msg.channels) or 1
    if h == 0 or w == 0:
        raise FrameError(f"frame {msg.index}: empty frame ({h}x{w})")
    if channels not in (1, 3):
        raise FrameError(f"frame {msg.index}: {channels} channels; only 1 (grey) or 3 (RGB) are supported")
    if h * w > limits.max_frame_pixels:
        raise FrameError(
            f"frame {msg.index}: {h}x{w} = {h * w} pixels exceeds the limit of"
            f" {limits.max_frame_pixels} pixels"
        )
    expected = h * w * channels * dtype.itemsize
    if len(msg.pixels) != expected:
        raise FrameError(
            f"frame {msg.index}: pixel buffer has {len(msg.pixels)} bytes but {h}x{w}x{channels}"
            f" {dtype.name} needs {expected}"
        )
    pixels = np.frombuffer(msg.pixels, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    pixels = pixels.reshape((h, w) if channels == 1 else (h, w, 3))
    if dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        if bad:
            raise FrameError(f"frame {msg.index}: {bad} pixel(s) are NaN or infinite")
    return Frame(index=int(msg.index), pixels=pixels, timestamp_s=msg.timestamp_s or None)


def frame_to_proto(pixels: np.ndarray, index: int, timestamp_s: float | None = None) -> pb.Frame:
    """Encode a NumPy frame; raise ValueError for dtypes or shapes the protocol cannot carry."""
    pixels = np.asarray(pixels)
    pixel_type = _DTYPE_TO_PIXEL_TYPE.get(pixels.dtype.newbyteorder("="))
    if pixel_type is None:
        raise ValueError(f"frame dtype {pixels.dtype} is not one of uint8, uint16, int16, float32")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"frame shape {pixels.shape} is neither (H, W) nor (H, W, 3)")
    data = np.ascontiguousarray(pixels, dtype=PIXEL_DTYPES[pixel_type]).tobytes()
    return pb.Frame(
        index=index,
        timestamp_s=timestamp_s or 0.0,
        height=pixels.shape[0],
        width=pixels.shape[1],
        channels=1 if pixels.ndim == 2 else 3,
        pixel_type=pixel_type,
        pixels=data,
    )
