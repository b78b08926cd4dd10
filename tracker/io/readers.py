"""Every recorded-sequence format the tracker understands, behind one dispatcher.

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

The readers live in one module per format (:mod:`tracker.io.itk`,
:mod:`tracker.io.dicom`, :mod:`tracker.io.video`, :mod:`tracker.io.folder`,
:mod:`tracker.io.davis`, :mod:`tracker.io.trackrad`); this module is the
dispatcher, :func:`open_sequence`, and keeps their public names importable
from one place. Only the ITK and TrackRAD readers need SimpleITK, imported when
such a file is read, so a bare install reads DAVIS folders and videos.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tracker.io.common import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    ITK_SUFFIXES,
    MASK_SUFFIXES,
    VIDEO_SUFFIXES,
    LazyFrames,
    natural_key,
    suffix_of,
)
from tracker.io.davis import DAVIS_FRAME_RATE_HZ, is_davis_sequence
from tracker.io.dicom import is_dicom_file, read_dicom
from tracker.io.folder import read_image_folder
from tracker.io.itk import read_itk_sequence
from tracker.io.masks import davis_palette, read_mask_file
from tracker.io.sequence import Sequence
from tracker.io.trackrad import FRAMES_SUFFIX, is_trackrad_case, read_trackrad_case
from tracker.io.video import PRELOAD_VIDEO_BYTES, VideoFrames, read_video

__all__ = [
    "DAVIS_FRAME_RATE_HZ",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ITK_SUFFIXES",
    "MASK_SUFFIXES",
    "PRELOAD_VIDEO_BYTES",
    "SUPPORTED_FORMATS",
    "VIDEO_SUFFIXES",
    "LazyFrames",
    "Sequence",
    "VideoFrames",
    "davis_palette",
    "is_davis_sequence",
    "is_dicom_file",
    "natural_key",
    "open_sequence",
    "read_dicom",
    "read_image_folder",
    "read_itk_sequence",
    "read_mask_file",
    "read_video",
]

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = (
    "TrackRAD2025 case folder (<id>/images/<id>_frames.mha); "
    "DAVIS sequence folder (JPEGImages/ + Annotations/); "
    f"folder of image frames ({', '.join(IMAGE_SUFFIXES)}); "
    "multi-frame DICOM file or folder of single-frame DICOM files; "
    f"ITK cine file ({', '.join(ITK_SUFFIXES)}); "
    f"video file ({', '.join(VIDEO_SUFFIXES)})"
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
    dicoms = sum(1 for p in files if p.suffix.lower() not in IMAGE_SUFFIXES and is_dicom_file(p))
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
        suffix = suffix_of(path)
        case = _trackrad_case_of_file(path)
        if case is not None and is_trackrad_case(case):
            sequence = read_trackrad_case(case)
        elif suffix in ITK_SUFFIXES:
            sequence = read_itk_sequence(path, frame_rate_hz=frame_rate_hz)
        elif suffix in VIDEO_SUFFIXES:
            sequence = read_video(path, frame_rate_hz=frame_rate_hz)
        elif is_dicom_file(path):
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
