"""ITK cine files (MHA/MHD/NIfTI/NRRD): frames, geometry, frame rate and sibling labels.

SimpleITK is imported when a file is read, not when this module is imported.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tracker.io.common import (
    ITK_SUFFIXES,
    LABEL_SUFFIXES,
    as_label_map,
    conform_pixels,
    import_sitk,
    stem_of,
    suffix_of,
    unit_vector,
)
from tracker.io.masks import read_mask_file
from tracker.io.sequence import Sequence
from tracker.types import Geometry, Modality

if TYPE_CHECKING:
    import SimpleITK as sitk

logger = logging.getLogger(__name__)


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
        x_direction=unit_vector(x_dir, "x direction", source),
        y_direction=unit_vector(y_dir, "y direction", source),
    )


def _itk_modality(image: sitk.Image) -> Modality:
    """MetaImage files may record ``Modality = MET_MOD_MR``; otherwise assume cine-MRI."""
    if image.HasMetaDataKey("Modality"):
        value = image.GetMetaData("Modality").upper()
        if "MR" not in value and value not in ("", "MET_MOD_UNKNOWN"):
            return Modality.OTHER
    return Modality.CINE_MRI


def _read_itk_frames(path: Path) -> tuple[np.ndarray, sitk.Image]:
    sitk = import_sitk()
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
    stem, folder = stem_of(path), path.parent
    bases = [stem]
    if stem.endswith("_frames"):
        bases.append(stem[: -len("_frames")])
    suffixes = [suffix_of(path)] + [s for s in ITK_SUFFIXES if s != suffix_of(path)]

    def first_existing(names: list[str]) -> Path | None:
        for base in bases:
            for name in names:
                for ext in suffixes:
                    candidate = folder / f"{base}{name}{ext}"
                    if candidate.is_file() and candidate != path:
                        return candidate
        return None

    return first_existing(list(LABEL_SUFFIXES)), first_existing(["_first_label"])


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
            labels = as_label_map(label_array, labels_path)
        elif label_array.shape == (1, *frames.shape[1:3]):
            first_label = as_label_map(label_array[0], labels_path)
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
        name=stem_of(path),
        frames=conform_pixels(frames),
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
