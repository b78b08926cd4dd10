"""Writers for predicted masks in the project's native layout.

TrackRAD cases get ``<id>/targets/<id>_labels.mha``, the dataset's own label file (the same
format and ``(H, W, T)`` order as the ground truth); everything else gets one indexed PNG per
frame named like the source frames (object k = value k, as the DAVIS toolkit reads masks).
The layouts the official evaluators read as they are (TrackRAD2025's Grand-Challenge job
outputs with ``predictions.json``, a DAVIS-2017 results folder and root) are written by
:mod:`tracker.io.challenge_layout`. ``read_mask_file`` lives in :mod:`tracker.io.readers`
(the readers need it for ``first_mask``) and is re-exported here for the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from tracker.io.masks import davis_palette, read_mask_file
from tracker.io.sequence import Sequence
from tracker.io.trackrad import LABELS_SUFFIX, write_trackrad_labels

__all__ = ["read_mask_file", "write_mask_pngs", "write_predictions"]

logger = logging.getLogger(__name__)


def write_mask_pngs(
    out_dir: Path,
    masks: Iterable[np.ndarray] | np.ndarray,
    names: Iterable[str] | None = None,
) -> list[Path]:
    """Write one indexed (palette) PNG per frame; return the paths.

    Pixel value ``k`` is object ``k``, 0 the background (a bool mask is object 1),
    with the DAVIS palette so the files stay viewable: what davis2017-evaluation
    reads (it takes every value 1..max as an object, so a 0/255 file would be 255
    objects). ``names`` default to ``00000.png``…; a name without ``.png`` gets it
    appended.
    """
    out_dir = Path(out_dir)
    frames = [np.asarray(m) for m in masks]
    if names is None:
        file_names = [f"{i:05d}.png" for i in range(len(frames))]
    else:
        file_names = [n if n.lower().endswith(".png") else f"{n}.png" for n in names]
        if len(file_names) != len(frames):
            raise ValueError(f"{len(file_names)} names for {len(frames)} masks")
    for i, m in enumerate(frames):
        if m.ndim != 2:
            raise ValueError(f"mask {i} must be a 2D label map, got shape {m.shape}")
        if m.dtype != bool and m.size and (int(m.min()) < 0 or int(m.max()) > 255):
            raise ValueError(f"mask {i}: label values must lie in 0..255 for PNG, got {m.min()}..{m.max()}")

    out_dir.mkdir(parents=True, exist_ok=True)
    palette = davis_palette().reshape(-1).tolist()
    paths = []
    for m, name in zip(frames, file_names, strict=True):
        path = out_dir / name
        image = Image.fromarray(m.astype(np.uint8))
        image.putpalette(palette)  # an "L" image with a palette becomes "P", values kept
        image.save(path)
        paths.append(path)
    return paths


def write_predictions(out_dir: Path, sequence: Sequence, masks: np.ndarray) -> Path:
    """Write predicted (T, H, W) label maps for ``sequence``; return the file or folder written.

    TrackRAD: ``out_dir/<id>/targets/<id>_labels.mha`` (binary, the
    challenge's single target). Others: PNGs in ``out_dir/<sequence.name>/``
    named after the source frames when known (DAVIS scoring matches names).
    """
    out_dir = Path(out_dir)
    masks = np.asarray(masks)
    expected = (len(sequence), *sequence.shape_hw)
    if masks.shape != expected:
        raise ValueError(
            f"predictions {masks.shape} do not match sequence {sequence.name!r} {expected} (T, H, W)"
        )
    if sequence.kind == "trackrad":
        path = out_dir / sequence.name / "targets" / f"{sequence.name}{LABELS_SUFFIX}"
        if masks.size and int(masks.max()) > 1:
            logger.warning("%s: TrackRAD labels are binary; object ids > 1 are merged", path)
        write_trackrad_labels(path, masks)
        return path
    names = sequence.metadata.get("frame_names")
    if not (isinstance(names, list) and len(names) == len(masks)):
        names = None
    folder = out_dir / sequence.name
    write_mask_pngs(folder, masks, names)
    return folder
