"""Readers for every recorded-sequence format the tracker understands.

Each reader returns a :class:`tracker.io.sequence.Sequence` in the project's
conventions (frames ``(T, H, W)`` or ``(T, H, W, 3)`` RGB, integer label maps,
:class:`~tracker.types.Geometry` in millimetres). :func:`open_sequence` picks
the right one from what is on disk, so the CLI, replay and benchmarks never
need to know which format a recording came in.

Frame rates: an explicit ``frame_rate_hz`` always wins. Otherwise each reader
uses what its format records (DICOM FrameTime/CineRate, the video container,
ITK time-axis spacing when it is plausibly seconds); DAVIS defaults to 24 Hz
(the rate the DAVIS videos were captured at). When nothing is known the rate is
``0.0``, the project's "unknown", with a warning, rather than a guessed number
that would silently skew latency budgets.

Long recordings are read lazily (video, image folders) so that opening an hour
of endoscopy does not load it into memory; short clips and DICOM/ITK files,
which are decoded as a whole anyway, are plain arrays.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import SimpleITK as sitk
from PIL import Image

from tracker.io.sequence import Sequence
from tracker.io.trackrad import FRAMES_SUFFIX, is_trackrad_case, read_trackrad_case
from tracker.types import Geometry, Modality

logger = logging.getLogger(__name__)

ITK_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv", ".mts")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")

DAVIS_FRAME_RATE_HZ = 24.0  # DAVIS videos were captured at 24 fps (Perazzi et al., CVPR 2016)
PRELOAD_VIDEO_BYTES = 256 * 2**20  # decode clips up to this size up front; stream longer ones

_LABEL_SUFFIXES = ("_labels", "_label", "_mask", "_seg")
_MASK_NAME_SUFFIXES = ("_mask", "_masks", "_label", "_labels")
_MASK_DIR_NAMES = ("masks", "labels")

SUPPORTED_FORMATS = (
    "TrackRAD2025 case folder (<id>/images/<id>_frames.mha); "
    "DAVIS sequence folder (JPEGImages/ + Annotations/); "
    f"folder of image frames ({', '.join(IMAGE_SUFFIXES)}); "
    "multi-frame DICOM file or folder of single-frame DICOM files; "
    f"ITK cine file ({', '.join(ITK_SUFFIXES)}); "
    f"video file ({', '.join(VIDEO_SUFFIXES)})"
)


# --------------------------------------------------------------------------- helpers


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that puts ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _suffix(path: Path) -> str:
    """Lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _stem(path: Path) -> str:
    suffix = _suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def _as_label_map(array: np.ndarray, source: object = "") -> np.ndarray:
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


def _conform_pixels(array: np.ndarray) -> np.ndarray:
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


def _unit(vector: object, name: str, source: object) -> tuple[float, float, float]:
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
    if _suffix(path) in (".jpg", ".jpeg"):
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
    if _suffix(path) in ITK_SUFFIXES:
        array = np.squeeze(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
        if array.ndim != 2:
            raise ValueError(f"{path}: expected a 2D mask (one frame), got shape {array.shape}")
        return _as_label_map(array, path)
    if _suffix(path) not in MASK_SUFFIXES:
        raise ValueError(f"{path}: unknown mask format; use {', '.join(MASK_SUFFIXES + ITK_SUFFIXES)}")
    values, is_ids = _decode_mask_image(path)
    if not is_ids:
        values, _ = _binarise_if_255(values, path, None)
    if values.ndim != 2:
        raise ValueError(f"{path}: expected a 2D mask, got shape {values.shape}")
    return _as_label_map(values, path)


class _MaskFiles:
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
        return _as_label_map(values, path)


# --------------------------------------------------------------------------- ITK


def _itk_geometry(image: sitk.Image, source: object) -> Geometry:
    """In-plane geometry of a 2D image or of the first two axes of a 2D+t image.

    ITK's direction matrix is stored row-major; column ``j`` is the direction of
    axis ``j`` in physical space. For a 3D image axis 0 is x (columns), axis 1
    is y (rows) and axis 2 is time, whose direction is ignored.
    """
    dim = image.GetDimension()
    spacing = image.GetSpacing()
    origin = list(image.GetOrigin()) + [0.0] * (3 - dim)
    d = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    x_dir = list(d[:, 0]) + [0.0] * (3 - dim)
    y_dir = list(d[:, 1]) + [0.0] * (3 - dim)
    return Geometry(
        spacing_mm=(float(spacing[0]), float(spacing[1])),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        x_direction=_unit(x_dir, "x direction", source),
        y_direction=_unit(y_dir, "y direction", source),
    )


def _itk_modality(image: sitk.Image) -> Modality:
    """MetaImage files may record ``Modality = MET_MOD_MR``; otherwise assume cine-MRI."""
    if image.HasMetaDataKey("Modality"):
        value = image.GetMetaData("Modality").upper()
        if "MR" not in value and value not in ("", "MET_MOD_UNKNOWN"):
            return Modality.OTHER
    return Modality.CINE_MRI


def _read_itk_frames(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    components = image.GetNumberOfComponentsPerPixel()
    dim = image.GetDimension()
    if components not in (1, 3):
        raise ValueError(f"{path}: {components} components per pixel; expected 1 (grey) or 3 (RGB)")
    if dim == 2:
        array = array[None]
    elif dim != 3:
        raise ValueError(f"{path}: {dim}D image; expected 2D (one frame) or 2D+t (last ITK axis = time)")
    return array, image


def _find_itk_labels(path: Path) -> tuple[Path | None, Path | None]:
    """Sibling ``<stem>_labels.<ext>`` (and ``<stem>_first_label.<ext>``), any ITK extension.

    ``<id>_frames.mha`` pairs with ``<id>_labels.mha`` as in TrackRAD naming.
    """
    stem, folder = _stem(path), path.parent
    bases = [stem]
    if stem.endswith("_frames"):
        bases.append(stem[: -len("_frames")])
    suffixes = [_suffix(path)] + [s for s in ITK_SUFFIXES if s != _suffix(path)]

    def first_existing(names: list[str]) -> Path | None:
        for base in bases:
            for name in names:
                for ext in suffixes:
                    candidate = folder / f"{base}{name}{ext}"
                    if candidate.is_file() and candidate != path:
                        return candidate
        return None

    return first_existing(list(_LABEL_SUFFIXES)), first_existing(["_first_label"])


def read_itk_sequence(
    path: Path,
    frame_rate_hz: float | None = None,
    *,
    labels_path: Path | None = None,
    first_label_path: Path | None = None,
) -> Sequence:
    """Read a cine stored as one ITK image (MHA/MHD/NIfTI/NRRD) whose last ITK axis is time.

    ``GetArrayFromImage`` gives ``(T, H, W)`` (or ``(T, H, W, 3)`` for RGB
    vectors); a 2D image is one frame. Geometry comes from the in-plane axes.

    Frame rate: ``frame_rate_hz`` if given; else ``1 / spacing[2]`` when the
    time-axis spacing is plausibly seconds (0.005–10 s and not exactly 1.0,
    ITK's default that writers leave when they do not know); else 0 (unknown).
    Pass ``frame_rate_hz`` for files whose time spacing is 1 s or in ms.

    Ground truth: ``labels_path`` or a sibling ``<stem>_labels.<ext>`` (also
    ``_label``, ``_mask``, ``_seg``) with the same ``(T, H, W)`` shape; a label
    file of one frame, or ``<stem>_first_label.<ext>``, gives the prompt only.
    """
    path = Path(path)
    frames, image = _read_itk_frames(path)
    geometry = _itk_geometry(image, path)
    metadata: dict[str, object] = {}

    rate, rate_source = 0.0, "unknown"
    if frame_rate_hz is not None:
        rate, rate_source = float(frame_rate_hz), "argument"
    elif image.GetDimension() == 3:
        dt = float(image.GetSpacing()[2])
        if 0.005 <= dt <= 10.0 and not math.isclose(dt, 1.0):
            rate, rate_source = 1.0 / dt, "time-axis spacing (s)"
        else:
            logger.warning(
                "%s: time-axis spacing %.4g is not a plausible frame period in seconds "
                "(1.0 is ITK's default); frame rate unknown, pass frame_rate_hz",
                path,
                dt,
            )
    metadata["frame_rate_source"] = rate_source

    found_labels, found_first = _find_itk_labels(path)
    labels_path = Path(labels_path) if labels_path is not None else found_labels
    first_label_path = Path(first_label_path) if first_label_path is not None else found_first
    labels = first_label = None
    if labels_path is not None:
        label_array, _ = _read_itk_frames(labels_path)
        if label_array.ndim == 4:
            raise ValueError(f"{labels_path}: labels must be scalar, got {label_array.shape[-1]} components")
        if label_array.shape == frames.shape[:3]:
            labels = _as_label_map(label_array, labels_path)
        elif label_array.shape == (1, *frames.shape[1:3]):
            first_label = _as_label_map(label_array[0], labels_path)
        else:
            raise ValueError(
                f"{labels_path}: labels {label_array.shape} do not match frames {frames.shape[:3]} (T, H, W)"
            )
        metadata["labels_path"] = str(labels_path)
    if first_label_path is not None and first_label is None:
        first_label = read_mask_file(first_label_path)
        if first_label.shape != frames.shape[1:3]:
            raise ValueError(
                f"{first_label_path}: {first_label.shape} does not match frames {frames.shape[1:3]}"
            )

    return Sequence(
        name=_stem(path),
        frames=_conform_pixels(frames),
        frame_rate_hz=rate,
        modality=_itk_modality(image),
        geometry=geometry,
        first_label=first_label,
        labels=labels,
        source_path=path,
        kind="itk",
        metadata=metadata,
    )


# --------------------------------------------------------------------------- DICOM


def _tm_seconds(value: object) -> float | None:
    """Seconds since midnight from a DICOM TM (``HHMMSS.FFFFFF``, also legacy ``HH:MM:SS``)."""
    text = str(value or "").strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", text)
    if not match:
        return None
    h, m, s, frac = match.groups()
    return int(h) * 3600 + int(m or 0) * 60 + int(s or 0) + float(frac or 0)


def _dt_seconds(value: object) -> float | None:
    """POSIX-like seconds from a DICOM DT (``YYYYMMDDHHMMSS.FFFFFF[&ZZXX]``), UTC offset ignored."""
    text = re.split(r"[+-]", str(value or "").strip())[0]
    match = re.fullmatch(r"(\d{8})(\d{2,6}(?:\.\d+)?)?", text)
    if not match:
        return None
    date = _dt.datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=_dt.UTC)
    return date.timestamp() + (_tm_seconds(match.group(2)) or 0.0)


def _da_tm_seconds(ds: Any, date_kw: str, time_kw: str) -> float | None:
    t = _tm_seconds(ds.get(time_kw))
    if t is None:
        return None
    date = str(ds.get(date_kw) or "").strip()
    if re.fullmatch(r"\d{8}", date):  # a date makes midnight crossings come out right
        return _dt.datetime.strptime(date, "%Y%m%d").replace(tzinfo=_dt.UTC).timestamp() + t
    return t


def _acquisition_seconds(ds: Any) -> float | None:
    """Acquisition time of a single-frame dataset: AcquisitionDateTime, AcquisitionTime, ContentTime."""
    if ds.get("AcquisitionDateTime"):
        value = _dt_seconds(ds.AcquisitionDateTime)
        if value is not None:
            return value
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
        value = _da_tm_seconds(ds, date_kw, time_kw)
        if value is not None:
            return value
    return None


def _functional_item(ds: Any, sequence_kw: str, frame: int = 0) -> Any | None:
    """Item of a functional group macro: shared groups first, then frame ``frame``'s."""
    for groups_kw, index in (
        ("SharedFunctionalGroupsSequence", 0),
        ("PerFrameFunctionalGroupsSequence", frame),
    ):
        groups = ds.get(groups_kw)
        if groups and len(groups) > index:
            seq = groups[index].get(sequence_kw)
            if seq:
                return seq[0]
    return None


def _dicom_geometry(ds: Any, source: object) -> tuple[Geometry, str]:
    """Geometry and where its spacing came from.

    DICOM PixelSpacing is ``[row spacing, column spacing]`` = ``[dy, dx]``,
    hence the swap. ImageOrientationPatient's first triple is the direction of
    increasing column index (x), the second that of increasing row index (y).
    """
    measures = _functional_item(ds, "PixelMeasuresSequence")
    orientation_item = _functional_item(ds, "PlaneOrientationSequence")
    position_item = _functional_item(ds, "PlanePositionSequence")
    pixel_spacing = ds.get("PixelSpacing") or (measures.get("PixelSpacing") if measures else None)
    iop = ds.get("ImageOrientationPatient") or (
        orientation_item.get("ImageOrientationPatient") if orientation_item else None
    )
    ipp = ds.get("ImagePositionPatient") or (
        position_item.get("ImagePositionPatient") if position_item else None
    )

    spacing_source = "PixelSpacing"
    if pixel_spacing is not None and len(pixel_spacing) == 2 and all(float(v) > 0 for v in pixel_spacing):
        spacing = (float(pixel_spacing[1]), float(pixel_spacing[0]))
    else:
        spacing, spacing_source = _ultrasound_spacing(ds)
        if spacing is None:
            logger.warning("%s: no PixelSpacing or ultrasound calibration; assuming 1 mm pixels", source)
            spacing, spacing_source = (1.0, 1.0), "default (1 mm): no PixelSpacing or ultrasound region"
    x_dir, y_dir = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    if iop is not None and len(iop) == 6:
        x_dir = _unit([float(v) for v in iop[:3]], "ImageOrientationPatient row direction", source)
        y_dir = _unit([float(v) for v in iop[3:]], "ImageOrientationPatient column direction", source)
    origin = (0.0, 0.0, 0.0)
    if ipp is not None and len(ipp) == 3:
        origin = (float(ipp[0]), float(ipp[1]), float(ipp[2]))
    return Geometry(
        spacing_mm=spacing, origin_mm=origin, x_direction=x_dir, y_direction=y_dir
    ), spacing_source


def _ultrasound_spacing(ds: Any) -> tuple[tuple[float, float] | None, str]:
    """Pixel size from SequenceOfUltrasoundRegions (PhysicalDeltaX/Y in cm, units code 3).

    Prefers a 2D tissue region (RegionSpatialFormat 1); other unit codes
    (seconds, cm/s: M-mode and Doppler strips) are not lengths and are skipped.
    """
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    candidates = []
    for region in regions:
        if region.get("PhysicalUnitsXDirection") != 3 or region.get("PhysicalUnitsYDirection") != 3:
            continue
        dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
        if dx is None or dy is None or float(dx) <= 0 or float(dy) <= 0:
            continue
        candidates.append(
            (region.get("RegionSpatialFormat") != 1, (abs(float(dx)) * 10, abs(float(dy)) * 10))
        )
    if not candidates:
        return None, ""
    candidates.sort(key=lambda c: c[0])
    return candidates[0][1], "SequenceOfUltrasoundRegions"


def _dicom_modality(ds: Any) -> Modality:
    value = str(ds.get("Modality", "")).upper()
    if value == "MR":
        return Modality.CINE_MRI
    if value == "ES":  # endoscopy
        return Modality.ENDOSCOPY
    return Modality.OTHER


def _rescale(ds: Any, frame: int = 0) -> tuple[float, float]:
    """RescaleSlope/Intercept, from the top level or the Pixel Value Transformation macro."""
    item = ds if "RescaleSlope" in ds else _functional_item(ds, "PixelValueTransformationSequence", frame)
    if item is None or "RescaleSlope" not in item:
        return 1.0, 0.0
    return float(item.RescaleSlope), float(item.get("RescaleIntercept", 0.0))


def _decode_dicom(ds: Any, source: object) -> np.ndarray:
    """All frames as (T, H, W) or (T, H, W, 3); YBR is converted to RGB, palettes applied."""
    from pydicom.pixels import apply_color_lut, pixel_array

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError(f"{source}: DICOM file has no pixel data")
    try:
        # as_rgb (the default) converts YBR_FULL / YBR_FULL_422 to RGB, native or JPEG
        array = pixel_array(ds)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", syntax)
        raise ValueError(
            f"{source}: cannot decode pixel data with transfer syntax {name} ({exc}). JPEG baseline needs "
            "pillow; JPEG lossless/JPEG-LS need pylibjpeg + pylibjpeg-libjpeg (or python-gdcm); "
            "JPEG 2000 needs pylibjpeg-openjpeg"
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        samples = 3
    if frames == 1:
        array = array[None]
    expected = 4 if samples == 3 else 3
    if array.ndim != expected:
        raise ValueError(f"{source}: unexpected pixel array shape {array.shape} for {frames} frames")
    if samples == 1:
        if "PerFrameFunctionalGroupsSequence" in ds and "RescaleSlope" not in ds:
            scales = [_rescale(ds, i) for i in range(array.shape[0])]
        else:
            scales = [_rescale(ds)] * array.shape[0]
        if any(s != (1.0, 0.0) for s in scales):
            out = np.empty(array.shape, dtype=np.float32)
            for i, (slope, intercept) in enumerate(scales):
                out[i] = array[i].astype(np.float32) * slope + intercept
            array = out
        if photometric == "MONOCHROME1":  # low values are bright: invert so brighter is higher
            array = (array.max() + array.min()) - array
    return _conform_pixels(array)


def _frame_rate_and_times(ds: Any, count: int) -> tuple[float, np.ndarray | None, str]:
    """Frame rate (Hz), per-frame timestamps (s) and where the rate came from."""
    times: np.ndarray | None = None
    vector = ds.get("FrameTimeVector")
    if vector is not None and len(vector) == count and count > 1:
        # FrameTimeVector holds the increment before each frame (the first is 0), in ms
        times = np.cumsum(np.asarray([float(v) for v in vector])) / 1000.0
    elif "PerFrameFunctionalGroupsSequence" in ds:
        stamps = []
        for item in ds.PerFrameFunctionalGroupsSequence:
            content = item.get("FrameContentSequence")
            stamps.append(_dt_seconds(content[0].get("FrameAcquisitionDateTime")) if content else None)
        if len(stamps) == count and count > 1 and all(s is not None for s in stamps):
            times = np.asarray(stamps, dtype=float) - float(stamps[0])  # type: ignore[arg-type]

    frame_time = ds.get("FrameTime")
    if frame_time is not None and float(frame_time) > 0:
        return 1000.0 / float(frame_time), times, "FrameTime"
    if times is not None and np.all(np.diff(times) > 0):
        return 1.0 / float(np.median(np.diff(times))), times, "frame times"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        value = ds.get(keyword)
        if value is not None and float(value) > 0:
            return float(value), times, keyword
    return 0.0, times, "unknown"


def _is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 preamble check; ``.dcm``-style files without a preamble count too."""
    if not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() in DICOM_SUFFIXES


def _dicom_sequence(
    frames: np.ndarray,
    ds: Any,
    path: Path,
    name: str,
    frame_rate_hz: float | None,
    rate: float,
    times: np.ndarray | None,
    rate_source: str,
    metadata: dict[str, object],
) -> Sequence:
    geometry, spacing_source = _dicom_geometry(ds, path)
    if frame_rate_hz is not None:
        rate, rate_source = float(frame_rate_hz), "argument"
    elif rate <= 0:
        logger.warning("%s: no FrameTime, CineRate or frame times; frame rate unknown", path)
    metadata.update(
        {
            "spacing_source": spacing_source,
            "frame_rate_source": rate_source,
            "dicom_modality": str(ds.get("Modality", "")),
            "stored_photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
            "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
        }
    )
    return Sequence(
        name=name,
        frames=frames,
        frame_rate_hz=rate,
        modality=_dicom_modality(ds),
        geometry=geometry,
        timestamps_s=times,
        source_path=path,
        kind="dicom",
        metadata=metadata,
    )


def _check_same_plane(datasets: list[Any], path: Path) -> None:
    orientations = {
        tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient") or ()) for ds in datasets
    }
    if len(orientations) > 1:
        raise ValueError(
            f"{path}: frames lie in {len(orientations)} different image planes (e.g. an interleaved "
            "sagittal/coronal cine); split them into one folder per plane"
        )


def _read_dicom_folder(path: Path, frame_rate_hz: float | None) -> Sequence:
    import pydicom

    datasets = []
    for file in sorted((p for p in path.iterdir() if p.is_file()), key=lambda p: natural_key(p.name)):
        if not _is_dicom_file(file):
            continue
        try:
            ds = pydicom.dcmread(file)
        except Exception as exc:  # a stray non-DICOM file with a .dcm name
            logger.warning("%s: skipped, not readable as DICOM (%s)", file, exc)
            continue
        if "PixelData" not in ds:  # DICOMDIR, structured reports, presentation states
            continue
        datasets.append((file, ds))
    if not datasets:
        raise ValueError(f"{path}: no DICOM images in this folder")

    series: dict[str, list[tuple[Path, Any]]] = {}
    for file, ds in datasets:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    if len(series) > 1:
        uid, chosen = max(series.items(), key=lambda kv: len(kv[1]))
        logger.warning("%s: %d series in one folder; reading the largest (%s)", path, len(series), uid)
        datasets = chosen
    if len(datasets) == 1 and int(datasets[0][1].get("NumberOfFrames", 1) or 1) > 1:
        return read_dicom(datasets[0][0], frame_rate_hz=frame_rate_hz)

    def sort_key(item: tuple[Path, Any]) -> tuple[float, float, float, tuple[object, ...]]:
        file, ds = item
        number = ds.get("InstanceNumber")
        time = _acquisition_seconds(ds)
        position = 0.0
        iop, ipp = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
        if iop is not None and ipp is not None and len(iop) == 6 and len(ipp) == 3:
            normal = np.cross([float(v) for v in iop[:3]], [float(v) for v in iop[3:]])
            position = float(np.dot(normal, [float(v) for v in ipp]))
        return (
            float(number) if number is not None and str(number) != "" else math.inf,
            time if time is not None else math.inf,
            position,
            natural_key(file.name),
        )

    datasets.sort(key=sort_key)
    dss = [ds for _, ds in datasets]
    shapes = {(int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1)) for ds in dss}
    if len(shapes) > 1:
        raise ValueError(f"{path}: frames differ in size {sorted(shapes)}; not one cine series")
    _check_same_plane(dss, path)
    decoded = [_decode_dicom(ds, file) for file, ds in datasets]
    frames = np.concatenate(decoded, axis=0)
    if frames.dtype != decoded[0].dtype or len({d.dtype for d in decoded}) > 1:
        frames = frames.astype(np.float32)

    stamps = [_acquisition_seconds(ds) for ds in dss]
    times = None
    rate, rate_source = 0.0, "unknown"
    if len(dss) > 1 and all(s is not None for s in stamps):
        times = np.asarray(stamps, dtype=float)
        steps = np.diff(times)
        if np.all(steps > 0):
            rate, rate_source = 1.0 / float(np.median(steps)), "AcquisitionTime"
    if rate <= 0:
        rate, _, rate_source = _frame_rate_and_times(dss[0], 1)
    return _dicom_sequence(
        frames,
        dss[0],
        path,
        path.name,
        frame_rate_hz,
        rate,
        times,
        rate_source,
        {"files": [str(f) for f, _ in datasets]},
    )


def read_dicom(path: Path, frame_rate_hz: float | None = None) -> Sequence:
    """Read a multi-frame DICOM file, or a folder of single-frame DICOM files (one per frame).

    Folder frames are ordered by InstanceNumber, then acquisition time, then
    position along the slice normal, then file name. Pixel values get
    RescaleSlope/Intercept (float32 when it is not the identity); YBR colour is
    converted to RGB and palette colour applied. Geometry: PixelSpacing (stored
    as [dy, dx]), ImagePositionPatient, ImageOrientationPatient (top level or
    enhanced functional groups); ultrasound falls back to the calibrated
    SequenceOfUltrasoundRegions, else 1 mm (``metadata["spacing_source"]``
    says which). Frame rate: ``frame_rate_hz``, else FrameTime (ms), frame
    times (FrameTimeVector, per-frame acquisition times), CineRate,
    RecommendedDisplayFrameRate, else 0 (unknown).
    """
    import pydicom

    path = Path(path)
    if path.is_dir():
        return _read_dicom_folder(path, frame_rate_hz)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable DICOM file ({exc})") from exc
    frames = _decode_dicom(ds, path)
    if "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        planes = []
        for item in per_frame:
            seq = item.get("PlaneOrientationSequence")
            if seq:
                planes.append(seq[0])
        _check_same_plane(planes, path)
    rate, times, rate_source = _frame_rate_and_times(ds, frames.shape[0])
    return _dicom_sequence(frames, ds, path, _stem(path), frame_rate_hz, rate, times, rate_source, {})


# --------------------------------------------------------------------------- video


class VideoFrames(LazyFrames):
    """Lazy RGB frames of a video file: sequential reads stream, jumps seek, recent frames cache.

    OpenCV's capture is not thread-safe; :class:`LazyFrames` calls the loader under its
    lock. Short forward jumps decode through (exact); long jumps use ``CAP_PROP_POS_FRAMES``.
    """

    _FORWARD_DECODE_LIMIT = 48

    def __init__(self, path: Path, cache_size: int = 16) -> None:
        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise ValueError(f"{self.path}: OpenCV cannot open this video")
        self._next = 0  # index the next cap.read() returns
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = self._verified_count(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        super().__init__(count, self._decode, (height, width, 3), np.dtype(np.uint8), cache_size)

    def _verified_count(self, reported: int) -> int:
        """Containers estimate frame counts from duration; check the last one decodes, else count."""
        if reported > 0 and self._read_at(reported - 1) is not None:
            return reported
        logger.info("%s: container frame count %d is unreliable; counting frames", self.path, reported)
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        count = 0
        while self._cap.grab():
            count += 1
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._next = 0
        if count == 0:
            raise ValueError(f"{self.path}: video has no decodable frames")
        return count

    def _read_at(self, index: int) -> np.ndarray | None:
        if index != self._next:
            if self._next < index <= self._next + self._FORWARD_DECODE_LIMIT:
                while self._next < index and self._cap.grab():
                    self._next += 1
            else:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                self._next = index
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._next = -1  # position unknown: seek next time
            return None
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _decode(self, index: int) -> np.ndarray:
        frame = self._read_at(index)
        if frame is None:
            raise IndexError(f"{self.path}: frame {index} could not be decoded")
        return frame

    def close(self) -> None:
        with self._lock:
            self._cap.release()

    def __del__(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()


def read_video(
    path: Path,
    frame_rate_hz: float | None = None,
    *,
    preload: bool | None = None,
    modality: Modality = Modality.OTHER,
) -> Sequence:
    """Read any video OpenCV can open, as RGB uint8 frames.

    ``preload=None`` decodes clips up to :data:`PRELOAD_VIDEO_BYTES` into one
    array and streams longer ones through :class:`VideoFrames`. The frame
    rate is ``frame_rate_hz`` or the container's (0 when it reports none).
    ``modality`` defaults to OTHER; pass ENDOSCOPY for surgical video.
    """
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        if preload is None:
            preload = 0 < count * width * height * 3 <= PRELOAD_VIDEO_BYTES
        frames: np.ndarray | VideoFrames
        if preload:
            decoded = []
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if not decoded:
                raise ValueError(f"{path}: video has no decodable frames")
            frames = np.stack(decoded)
    finally:
        cap.release()
    if not preload:
        frames = VideoFrames(path)

    rate_source = "container"
    if frame_rate_hz is not None:
        fps, rate_source = float(frame_rate_hz), "argument"
    elif not (math.isfinite(fps) and 0 < fps <= 1000):
        logger.warning("%s: container reports no usable frame rate (%s); frame rate unknown", path, fps)
        fps, rate_source = 0.0, "unknown"
    codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)) if fourcc > 0 else ""
    return Sequence(
        name=_stem(path),
        frames=frames,
        frame_rate_hz=fps,
        modality=modality,
        source_path=path,
        kind="video",
        metadata={
            "frame_rate_source": rate_source,
            "codec": codec.strip("\x00"),
            "container_frame_count": count,
            "lazy": not preload,
        },
    )


# --------------------------------------------------------------------------- image folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


def _is_mask_name(path: Path) -> bool:
    return any(path.stem.lower().endswith(s) for s in _MASK_NAME_SUFFIXES)


def _davis_dirs(path: Path) -> tuple[Path, Path, str] | None:
    """(images, annotations, name) for a DAVIS sequence, else None.

    Accepts ``<seq>/JPEGImages`` + ``<seq>/Annotations`` and the official
    ``DAVIS/JPEGImages/480p/<seq>`` (annotations in ``Annotations/480p/<seq>``).
    """
    path = Path(path)
    if (path / "JPEGImages").is_dir() and (path / "Annotations").is_dir():
        return path / "JPEGImages", path / "Annotations", path.name
    parts = path.parts
    if "JPEGImages" in parts:
        i = len(parts) - 1 - parts[::-1].index("JPEGImages")
        annotations = Path(*parts[:i], "Annotations", *parts[i + 1 :])
        if annotations.is_dir() and path.is_dir():
            name = path.parent.name if path.name == "JPEGImages" else path.name
            return path, annotations, name
    return None


def is_davis_sequence(path: Path) -> bool:
    return _davis_dirs(Path(path)) is not None


def _mask_paths(folder: Path, frames: list[Path], mask_dir: Path | None) -> list[Path | None]:
    """The mask of each frame, matched by stem (``masks/<stem>.png`` or ``<stem>_mask.png``).

    When no stems match but the mask folder holds exactly one image per frame,
    they are paired in natural order.
    """
    candidates: list[Path] = []
    if mask_dir is not None:
        candidates = [mask_dir]
    else:
        for name in _MASK_DIR_NAMES:
            for parent in (folder, folder.parent):
                if (parent / name).is_dir() and (parent / name) != folder:
                    candidates.append(parent / name)
    for directory in candidates:
        files = sorted(
            (p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES),
            key=lambda p: natural_key(p.name),
        )
        by_stem: dict[str, Path] = {}
        for p in files:
            by_stem.setdefault(p.stem, p)
            for s in _MASK_NAME_SUFFIXES:
                if p.stem.endswith(s):
                    by_stem.setdefault(p.stem[: -len(s)], p)
        matched = [by_stem.get(f.stem) for f in frames]
        if any(m is not None for m in matched):
            return matched
        if len(files) == len(frames):
            return list(files)
    inline: list[Path | None] = []
    for f in frames:
        found = None
        for s in _MASK_NAME_SUFFIXES:
            for ext in MASK_SUFFIXES:
                candidate = folder / f"{f.stem}{s}{ext}"
                if candidate.is_file():
                    found = candidate
                    break
            if found:
                break
        inline.append(found)
    return inline


def _load_rgb_or_grey(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        if im.size != size:
            raise ValueError(f"{path}: size {im.size} differs from the first frame's {size}")
        if im.mode != mode:
            im = im.convert(mode)
        return np.asarray(im)


def read_image_folder(
    path: Path,
    frame_rate_hz: float | None = None,
    *,
    mask_dir: Path | None = None,
    modality: Modality = Modality.OTHER,
) -> Sequence:
    """Read a folder of image frames (natural order), or a DAVIS sequence, with optional masks.

    Masks: ``mask_dir``, else a ``masks/`` or ``labels/`` folder inside or
    beside the frames folder, else ``<name>_mask.png`` next to each frame;
    DAVIS masks are ``Annotations/<stem>.png``. 0/255 masks become one object
    (1); palette PNGs keep their indices (DAVIS-2017 objects 1..K). When every
    frame has a mask they are ``labels``; otherwise the first frame's mask (if
    any) is ``first_label`` and ``metadata["annotated_frames"]`` lists which
    frames had one. Frames are read lazily. Frame rate: ``frame_rate_hz``, 24
    Hz for DAVIS, else 0 (unknown).
    """
    path = Path(path)
    davis = _davis_dirs(path)
    if davis is not None:
        folder, mask_dir, name = davis
        kind = "davis"
    else:
        folder, name, kind = path, path.name, "images"
    if not folder.is_dir():
        raise ValueError(f"{path}: not a folder")
    files = [p for p in _image_files(folder) if not _is_mask_name(p)]
    if not files:
        raise ValueError(f"{folder}: no image frames ({', '.join(IMAGE_SUFFIXES)})")

    with Image.open(files[0]) as first:
        size = first.size
        if first.mode in ("L", "I;16", "I;16B", "I;16L"):
            mode = "I;16" if first.mode.startswith("I;16") else "L"
        else:
            mode = "RGB"
    for f in files[1:]:  # headers only: cheap, and catches a stray file before tracking starts
        with Image.open(f) as im:
            if im.size != size:
                raise ValueError(f"{f}: size {im.size} differs from {files[0].name}'s {size}")
    dtype = np.uint16 if mode == "I;16" else np.uint8
    frame_shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    frames = LazyFrames(
        len(files),
        lambda i: _load_rgb_or_grey(files[i], mode, size),
        frame_shape,
        dtype,
    )

    masks = _mask_paths(folder, files, mask_dir)
    annotated = [i for i, m in enumerate(masks) if m is not None]
    labels: LazyFrames | None = None
    first_label = None
    if annotated:
        loader = _MaskFiles([m for m in masks if m is not None])
        position = {frame: k for k, frame in enumerate(annotated)}
        first = loader.load(0)
        if first.shape != frame_shape[:2]:
            raise ValueError(
                f"{masks[annotated[0]]}: mask {first.shape} does not match frames {frame_shape[:2]}"
            )
        if len(annotated) == len(files):
            labels = LazyFrames(len(files), lambda i: loader.load(position[i]), first.shape, first.dtype)
        elif annotated[0] == 0:
            first_label = first

    rate, rate_source = 0.0, "unknown"
    if frame_rate_hz is not None:
        rate, rate_source = float(frame_rate_hz), "argument"
    elif kind == "davis":
        rate, rate_source = DAVIS_FRAME_RATE_HZ, "DAVIS default (24 fps capture)"
    else:
        logger.warning("%s: image folder has no frame rate; pass frame_rate_hz", path)
    return Sequence(
        name=name,
        frames=frames,
        frame_rate_hz=rate,
        modality=modality,
        first_label=first_label,
        labels=labels,
        source_path=path,
        kind=kind,
        metadata={
            "frame_rate_source": rate_source,
            "frame_names": [f.stem for f in files],
            "annotated_frames": annotated,
        },
    )


# --------------------------------------------------------------------------- dispatch


def _trackrad_case_of_file(path: Path) -> Path | None:
    """The case folder when ``path`` is ``<id>/images/<id>_frames.mha``."""
    case = path.parent.parent
    if path.parent.name == "images" and path.name == f"{case.name}{FRAMES_SUFFIX}":
        return case
    return None


def _folder_kind(path: Path) -> str | None:
    files = [p for p in path.iterdir() if p.is_file()]
    images = sum(1 for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    dicoms = sum(1 for p in files if p.suffix.lower() not in IMAGE_SUFFIXES and _is_dicom_file(p))
    if dicoms and dicoms >= images:
        return "dicom"
    if images:
        return "images"
    return None


def open_sequence(
    path: Path | str,
    *,
    frame_rate_hz: float | None = None,
    first_mask: Path | str | None = None,
) -> Sequence:
    """Open any recorded sequence the tracker understands, detecting the format from disk.

    ``frame_rate_hz`` overrides whatever the file says (including TrackRAD's
    frame-rate.json). ``first_mask`` (PNG/JPEG/MHA/NIfTI) replaces the prompt
    label. Raises ``FileNotFoundError`` for a missing path and ``ValueError``
    naming the supported formats when nothing fits.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    sequence: Sequence | None = None
    if path.is_dir():
        if is_trackrad_case(path):
            sequence = read_trackrad_case(path)
        elif is_davis_sequence(path):
            sequence = read_image_folder(path, frame_rate_hz=frame_rate_hz)
        else:
            kind = _folder_kind(path)
            if kind == "dicom":
                sequence = read_dicom(path, frame_rate_hz=frame_rate_hz)
            elif kind == "images":
                sequence = read_image_folder(path, frame_rate_hz=frame_rate_hz)
    else:
        suffix = _suffix(path)
        case = _trackrad_case_of_file(path)
        if case is not None and is_trackrad_case(case):
            sequence = read_trackrad_case(case)
        elif suffix in ITK_SUFFIXES:
            sequence = read_itk_sequence(path, frame_rate_hz=frame_rate_hz)
        elif suffix in VIDEO_SUFFIXES:
            sequence = read_video(path, frame_rate_hz=frame_rate_hz)
        elif _is_dicom_file(path):
            sequence = read_dicom(path, frame_rate_hz=frame_rate_hz)
    if sequence is None:
        raise ValueError(
            f"{path}: not a sequence format this tracker understands. Supported: {SUPPORTED_FORMATS}"
        )

    if frame_rate_hz is not None and sequence.frame_rate_hz != float(frame_rate_hz):
        logger.info(
            "%s: frame rate %.3g Hz overridden to %.3g Hz", path, sequence.frame_rate_hz, frame_rate_hz
        )
        sequence.frame_rate_hz = float(frame_rate_hz)
        sequence.metadata["frame_rate_source"] = "argument"
    if first_mask is not None:
        label = read_mask_file(Path(first_mask))
        if label.shape != sequence.shape_hw:
            raise ValueError(
                f"{first_mask}: mask {label.shape} does not match frames {sequence.shape_hw} (H, W)"
            )
        if not label.any():
            raise ValueError(f"{first_mask}: mask is empty; nothing to track")
        sequence.first_label = label
        sequence.metadata["first_mask_path"] = os.fspath(first_mask)
    return sequence
