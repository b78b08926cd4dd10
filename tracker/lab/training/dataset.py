"""Many annotated sequences as one COCO training set, each kept whole on one side of the split.

``tracker synth surgical`` (or a team's own annotation tool) writes one COCO file per
sequence, with image paths relative to that sequence's folder. Training on several
sequences and validating on others needs one file per side whose paths are relative to
a common root: :func:`merge_sequences` writes it. Sequences are never split: frames of one
video on both sides would put near-duplicates of every validation frame in training.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tracker.overseer.coco import ANNOTATIONS_FILE

logger = logging.getLogger(__name__)


def merge_sequences(sequences: list[Path], out: Path) -> Path:
    """One COCO file at ``out`` for the sequence folders ``sequences`` (each with its annotations.json).

    Image and annotation ids are renumbered; ``file_name`` becomes relative to ``out``'s folder;
    ``frame_index`` runs on across sequences in the order given; every image records its
    ``sequence``. The categories must be the same in every sequence.
    """
    if not sequences:
        raise ValueError("no sequence folders given")
    out = Path(out)
    root = out.parent.resolve()
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": None}
    frame = 0
    for folder in sequences:
        path = Path(folder) / ANNOTATIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {ANNOTATIONS_FILE} (a COCO file of the sequence)")
        data = json.loads(path.read_text())
        categories = sorted(data.get("categories", []), key=lambda c: int(c["id"]))
        if merged["categories"] is None:
            merged["categories"] = categories
        elif categories != merged["categories"]:
            raise ValueError(f"{folder}: its categories differ from {sequences[0]}'s")
        prefix = Path(os.path.relpath(Path(folder).resolve(), root))
        new_id: dict[int, int] = {}
        for image in sorted(data.get("images", []), key=lambda im: int(im.get("frame_index", im["id"]))):
            new_id[int(image["id"])] = len(merged["images"]) + 1
            merged["images"].append(
                {
                    **image,
                    "id": new_id[int(image["id"])],
                    "file_name": str(prefix / image["file_name"]),
                    "frame_index": frame,
                    "sequence": Path(folder).name,
                }
            )
            frame += 1
        for ann in data.get("annotations", []):
            merged["annotations"].append(
                {**ann, "id": len(merged["annotations"]) + 1, "image_id": new_id[int(ann["image_id"])]}
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged))
    logger.info(
        "%s: %d sequences, %d images, %d instances",
        out, len(sequences), len(merged["images"]), len(merged["annotations"]),
    )  # fmt: skip
    return out
