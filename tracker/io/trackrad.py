"""TrackRAD2025 case folders: read, write, and write predictions in the same layout.

Layout of case ``<id>``::

    <id>/frame-rate.json            bare JSON number, Hz
    <id>/b-field-strength.json      bare JSON number, tesla
    <id>/scanned-region.json        bare JSON string, e.g. "thorax"
    <id>/images/<id>_frames.mha     cine frames
    <id>/targets/<id>_labels.mha    ground truth of every frame (optional)
    <id>/targets/<id>_first_label.mha  the first frame's target (the prompt)

``SimpleITK.GetArrayFromImage`` gives ``(H, W, T)`` for frames and labels, time
on the last axis, and ``(H, W, 1)`` for the first label; pixels are 1 mm. This
module turns them into the project's ``(T, H, W)`` order and back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tracker.io.common import import_sitk
from tracker.io.sequence import Sequence
from tracker.types import Geometry, Modality

FRAMES_SUFFIX = "_frames.mha"
LABELS_SUFFIX = "_labels.mha"
FIRST_LABEL_SUFFIX = "_first_label.mha"


def is_trackrad_case(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "images" / f"{path.name}{FRAMES_SUFFIX}").is_file()


def _read_json_scalar(path: Path, default: object) -> object:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON scalar ({exc})") from exc


def _read_hwt(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Array in (T, H, W) order and the in-plane spacing (x, y) in mm."""
    sitk = import_sitk()
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 2:  # a single frame stored as 2D
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"{path}: expected a (H, W, T) volume, got shape {array.shape}")
    spacing = image.GetSpacing()  # ITK order is the reverse of the array's: (T, W, H)
    spacing_xy = (float(spacing[1]), float(spacing[2])) if len(spacing) == 3 else (1.0, 1.0)
    return np.ascontiguousarray(np.moveaxis(array, -1, 0)), spacing_xy


def _write_hwt(path: Path, thw: np.ndarray, spacing_xy: tuple[float, float] = (1.0, 1.0)) -> None:
    sitk = import_sitk()
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(np.asarray(thw), 0, -1)))
    image.SetSpacing((1.0, float(spacing_xy[0]), float(spacing_xy[1])))
    sitk.WriteImage(image, str(path), useCompression=True)


def read_trackrad_case(path: Path) -> Sequence:
    """Read one TrackRAD2025 case folder."""
    path = Path(path)
    case_id = path.name
    frames_path = path / "images" / f"{case_id}{FRAMES_SUFFIX}"
    if not frames_path.is_file():
        raise FileNotFoundError(f"{path}: not a TrackRAD case (missing images/{case_id}{FRAMES_SUFFIX})")
    frames, spacing = _read_hwt(frames_path)
    frame_rate = float(_read_json_scalar(path / "frame-rate.json", 0.0))  # type: ignore[arg-type]
    if frame_rate <= 0:
        raise ValueError(f"{path}: frame-rate.json is missing or not a positive number")
    labels = None
    labels_path = path / "targets" / f"{case_id}{LABELS_SUFFIX}"
    if labels_path.is_file():
        labels, _ = _read_hwt(labels_path)
        if labels.shape != frames.shape:
            raise ValueError(
                f"{labels_path}: labels {labels.shape} do not match frames {frames.shape} (T, H, W)"
            )
        labels = (labels > 0).astype(np.uint8)
    first_label = None
    first_path = path / "targets" / f"{case_id}{FIRST_LABEL_SUFFIX}"
    if first_path.is_file():
        first, _ = _read_hwt(first_path)
        first_label = (first[0] > 0).astype(np.uint8)
        if first_label.shape != frames.shape[1:]:
            raise ValueError(
                f"{first_path}: first label {first_label.shape} does not match frames {frames.shape[1:]}"
            )
    return Sequence(
        name=case_id,
        frames=frames,
        frame_rate_hz=frame_rate,
        modality=Modality.CINE_MRI,
        geometry=Geometry(spacing_mm=spacing),
        first_label=first_label,
        labels=labels,
        source_path=path,
        kind="trackrad",
        metadata={
            "b_field_strength_t": _read_json_scalar(path / "b-field-strength.json", None),
            "scanned_region": _read_json_scalar(path / "scanned-region.json", None),
        },
    )


def write_trackrad_case(
    root: Path,
    case_id: str,
    frames: np.ndarray,
    first_label: np.ndarray,
    frame_rate_hz: float,
    labels: np.ndarray | None = None,
    b_field_strength_t: float = 0.35,
    scanned_region: str = "thorax",
    spacing_mm: tuple[float, float] = (1.0, 1.0),
) -> Path:
    """Write ``frames`` (T, H, W) and labels as case ``root/case_id``; return the case folder.

    ``spacing_mm``: the in-plane pixel spacing (x, y) every image of the case records.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got {frames.shape}")
    case = Path(root) / case_id
    (case / "images").mkdir(parents=True, exist_ok=True)
    (case / "targets").mkdir(parents=True, exist_ok=True)
    (case / "frame-rate.json").write_text(json.dumps(float(frame_rate_hz)))
    (case / "b-field-strength.json").write_text(json.dumps(float(b_field_strength_t)))
    (case / "scanned-region.json").write_text(json.dumps(scanned_region))
    _write_hwt(case / "images" / f"{case_id}{FRAMES_SUFFIX}", frames, spacing_mm)
    _write_hwt(
        case / "targets" / f"{case_id}{FIRST_LABEL_SUFFIX}",
        (np.asarray(first_label) > 0)[None].astype(np.uint8),
        spacing_mm,
    )
    if labels is not None:
        write_trackrad_labels(case / "targets" / f"{case_id}{LABELS_SUFFIX}", labels, spacing_mm)
    return case


def write_trackrad_labels(
    path: Path, labels: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)
) -> None:
    """Write (T, H, W) binary masks as a TrackRAD ``_labels.mha`` (uint8, 0/1)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (T, H, W), got {labels.shape}")
    _write_hwt(Path(path), (labels > 0).astype(np.uint8), spacing_mm)
