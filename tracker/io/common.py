"""Shared pieces of the format readers: suffixes, pixel and label conventions, lazy frames.

Every reader module (:mod:`tracker.io.itk`, :mod:`~tracker.io.dicom`,
:mod:`~tracker.io.video`, :mod:`~tracker.io.folder`) builds on these; none of
them imports an optional library at import time.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ITK_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv", ".mts")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


LABEL_SUFFIXES = ("_labels", "_label", "_mask", "_seg")
MASK_NAME_SUFFIXES = ("_mask", "_masks", "_label", "_labels")
MASK_DIR_NAMES = ("masks", "labels")


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that puts ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def suffix_of(path: Path) -> str:
    """Lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def stem_of(path: Path) -> str:
    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix else path.name


def as_label_map(array: np.ndarray, source: object = "") -> np.ndarray:
    """Integer label map in the smallest unsigned type that holds it (0 = background)."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        rounded = np.rint(array)
        if not np.allclose(rounded, array, atol=1e-3):
            raise ValueError(f"{source}: label values must be integers, got fractional values")
        array = rounded.astype(np.int64)
    if array.size and int(array.min()) < 0:
        raise ValueError(f"{source}: label values must be >= 0, got {int(array.min())}")
    top = int(array.max()) if array.size else 0
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.int32
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def conform_pixels(array: np.ndarray) -> np.ndarray:
    """Cast to a pixel type the pipeline accepts (uint8, uint16, int16 or float32).

    Keeps integer data integer when it fits, because engines normalise by the
    type's range and MR/CT intensities must not lose precision.
    """
    array = np.asarray(array)
    if array.dtype in (np.uint8, np.uint16, np.int16, np.float32):
        return array
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if lo >= 0 and hi <= 0xFFFF:
            return array.astype(np.uint8 if hi <= 0xFF and array.dtype.itemsize == 1 else np.uint16)
        if lo >= -0x8000 and hi <= 0x7FFF:
            return array.astype(np.int16)
    return array.astype(np.float32)


def unit_vector(vector: object, name: str, source: object) -> tuple[float, float, float]:
    v = np.asarray(vector, dtype=float).reshape(-1)
    if v.size != 3 or not np.all(np.isfinite(v)):
        raise ValueError(f"{source}: {name} must be three finite numbers, got {vector}")
    norm = float(np.linalg.norm(v))
    if norm < 1e-6:
        raise ValueError(f"{source}: {name} is a zero vector")
    v = v / norm  # DICOM stores directions to ~6 digits; Geometry wants unit length
    return (float(v[0]), float(v[1]), float(v[2]))


class LazyFrames:
    """Frames loaded on demand by index, with a small LRU cache.

    Satisfies :class:`tracker.io.sequence.FrameSource`. ``shape`` and ``dtype``
    describe the stacked array without loading it.
    """

    def __init__(
        self,
        count: int,
        loader: Callable[[int], np.ndarray],
        frame_shape: tuple[int, ...],
        dtype: np.dtype,
        cache_size: int = 8,
    ) -> None:
        self._count = int(count)
        self._loader = loader
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._lock = threading.Lock()
        self.shape = (self._count, *frame_shape)
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self._count

    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"frame index {index} out of range for {self._count} frames")
        return i

    def __getitem__(self, index: int) -> np.ndarray:
        i = self._index(index)
        with self._lock:
            cached = self._cache.get(i)
            if cached is not None:
                self._cache.move_to_end(i)
                return cached
            frame = self._loader(i)
            self._cache[i] = frame
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return frame

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Load every frame into one array (``np.asarray(frames)``); only for short sequences."""
        return np.stack([self[i] for i in range(self._count)]).astype(dtype or self.dtype, copy=False)


def import_sitk() -> Any:
    """SimpleITK, imported on first use: only ITK/TrackRAD files need it (the ``[io]`` extra)."""
    try:
        import SimpleITK as sitk
    except ImportError as exc:
        raise ImportError(
            "reading MHA/NIfTI/NRRD (ITK) files needs SimpleITK: pip install 'rt-tracker[io]'"
        ) from exc
    return sitk
