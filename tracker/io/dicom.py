"""DICOM cine: multi-frame files and folders of single-frame files (pydicom, imported on use)."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from tracker.io.common import DICOM_SUFFIXES, conform_pixels, natural_key, stem_of, unit_vector
from tracker.io.sequence import Sequence
from tracker.types import Geometry, Modality

logger = logging.getLogger(__name__)


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
        x_dir = unit_vector([float(v) for v in iop[:3]], "ImageOrientationPatient row direction", source)
        y_dir = unit_vector([float(v) for v in iop[3:]], "ImageOrientationPatient column direction", source)
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
    return conform_pixels(array)


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


def is_dicom_file(path: Path) -> bool:
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
        if not is_dicom_file(file):
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
    return _dicom_sequence(frames, ds, path, stem_of(path), frame_rate_hz, rate, times, rate_source, {})


# --------------------------------------------------------------------------- video
