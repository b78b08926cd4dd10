"""Mask files: the DAVIS palette, image masks (0/255, palette, colour, ids) and ITK masks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from tracker.io.common import ITK_SUFFIXES, MASK_SUFFIXES, as_label_map, import_sitk, suffix_of

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- masks

_DAVIS_PALETTE: np.ndarray | None = None


def davis_palette() -> np.ndarray:
    """The DAVIS-2017 / PASCAL VOC palette, (256, 3) uint8: index k is object k's colour."""
    global _DAVIS_PALETTE
    if _DAVIS_PALETTE is None:
        palette = np.zeros((256, 3), dtype=np.uint8)
        for i in range(256):
            c, r, g, b = i, 0, 0, 0
            for j in range(8):
                r |= ((c >> 0) & 1) << (7 - j)
                g |= ((c >> 1) & 1) << (7 - j)
                b |= ((c >> 2) & 1) << (7 - j)
                c >>= 3
            palette[i] = (r, g, b)
        _DAVIS_PALETTE = palette
    return _DAVIS_PALETTE


def _rgb_mask_to_ids(rgb: np.ndarray, source: object) -> np.ndarray:
    """Colour mask → ids: DAVIS palette colours map to their index, other colours in sorted order."""
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal = davis_palette().astype(np.int32)
    pal_packed = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    colours = np.unique(packed)
    lookup = {int(v): i for i, v in enumerate(pal_packed)}
    if all(int(c) in lookup for c in colours):
        mapping = {int(c): lookup[int(c)] for c in colours}
    else:
        logger.warning(
            "%s: colour mask does not use the DAVIS palette; numbering colours in sorted order, "
            "which may differ between frames (save masks as palette or grayscale PNGs)",
            source,
        )
        others = [int(c) for c in colours if c != 0]
        mapping = {0: 0, **{c: i + 1 for i, c in enumerate(others)}}
    out = np.zeros(packed.shape, dtype=np.int32)
    for colour, index in mapping.items():
        out[packed == colour] = index
    return out


def _decode_mask_image(path: Path) -> tuple[np.ndarray, bool]:
    """Raw mask values from an image file and whether they are palette indices."""
    with Image.open(path) as im:
        mode = im.mode
        if mode == "P":
            return np.array(im), True
        if mode == "1":
            return np.array(im).astype(np.uint8), True
        if mode in ("RGB", "RGBA", "LA"):
            arr = np.array(im.convert("RGB"))
            if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
                return arr[..., 0], False
            return _rgb_mask_to_ids(arr, path), True
        return np.array(im), False


def _binarise_if_255(values: np.ndarray, path: Path, binary: bool | None) -> tuple[np.ndarray, bool]:
    """Map a grayscale mask to label ids; decide (or apply) the 0/255 → 0/1 convention.

    A grayscale mask whose only non-zero value is the type's maximum (DAVIS-2016
    style 0/255) is one object; otherwise grey values are object ids. JPEG masks
    are lossy, so they are thresholded at half range.
    """
    top = 0xFFFF if values.dtype == np.uint16 else 0xFF
    if suffix_of(path) in (".jpg", ".jpeg"):
        return (values > top // 2).astype(np.uint8), True
    if binary is None:
        nonzero = np.unique(values[values != 0])
        binary = nonzero.size == 0 or (nonzero.size == 1 and int(nonzero[0]) == top)
    if binary:
        return (values > top // 2).astype(np.uint8), True
    return values, False


def read_mask_file(path: Path) -> np.ndarray:
    """Read one mask (PNG/JPEG/BMP/TIFF image, or MHA/NIfTI/NRRD) as a 2D integer label map.

    Image masks follow :func:`_binarise_if_255`: 0/255 masks become 0/1, palette
    PNGs keep their indices (DAVIS-2017), other grey values are ids. ITK masks
    may carry one singleton axis (TrackRAD stores the first label as (H, W, 1)).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    if suffix_of(path) in ITK_SUFFIXES:
        sitk = import_sitk()
        array = np.squeeze(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
        if array.ndim != 2:
            raise ValueError(f"{path}: expected a 2D mask (one frame), got shape {array.shape}")
        return as_label_map(array, path)
    if suffix_of(path) not in MASK_SUFFIXES:
        raise ValueError(f"{path}: unknown mask format; use {', '.join(MASK_SUFFIXES + ITK_SUFFIXES)}")
    values, is_ids = _decode_mask_image(path)
    if not is_ids:
        values, _ = _binarise_if_255(values, path, None)
    if values.ndim != 2:
        raise ValueError(f"{path}: expected a 2D mask, got shape {values.shape}")
    return as_label_map(values, path)


class MaskFiles:
    """Loads mask images with one 0/255-vs-ids decision for the whole sequence.

    Deciding per frame would turn object 255 into 1 on frames where it is the
    only object left, so the decision is made once from the first mask.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._binary: bool | None = None

    def load(self, index: int) -> np.ndarray:
        path = self.paths[index]
        values, is_ids = _decode_mask_image(path)
        if not is_ids:
            values, self._binary = _binarise_if_255(values, path, self._binary)
        return as_label_map(values, path)


# --------------------------------------------------------------------------- ITK
