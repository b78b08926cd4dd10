"""Folders of image frames (natural order) with optional masks; DAVIS sequences are one such folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from tracker.io.common import (
    IMAGE_SUFFIXES,
    MASK_DIR_NAMES,
    MASK_NAME_SUFFIXES,
    MASK_SUFFIXES,
    LazyFrames,
    natural_key,
)
from tracker.io.davis import DAVIS_FRAME_RATE_HZ, davis_dirs
from tracker.io.masks import MaskFiles
from tracker.io.sequence import Sequence
from tracker.types import Modality

logger = logging.getLogger(__name__)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


def _is_mask_name(path: Path) -> bool:
    return any(path.stem.lower().endswith(s) for s in MASK_NAME_SUFFIXES)


def _mask_paths(folder: Path, frames: list[Path], mask_dir: Path | None) -> list[Path | None]:
    """The mask of each frame, matched by stem (``masks/<stem>.png`` or ``<stem>_mask.png``).

    When no stems match but the mask folder holds exactly one image per frame,
    they are paired in natural order.
    """
    candidates: list[Path] = []
    if mask_dir is not None:
        candidates = [mask_dir]
    else:
        for name in MASK_DIR_NAMES:
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
            for s in MASK_NAME_SUFFIXES:
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
        for s in MASK_NAME_SUFFIXES:
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
    davis = davis_dirs(path)
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
        loader = MaskFiles([m for m in masks if m is not None])
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
