"""COCO instance annotations: reading them per frame, and the ground-truth ("oracle") overseer.

The oracle turns annotations into detections (score 1) so that the re-prompt
policy and its delays can be validated without a trained detector. It reads a
COCO json (``annotations.json`` of ``tracker synth surgical``, or any COCO file
whose images are in frame order) or, failing that, a DAVIS folder's per-frame
instance PNGs (every instance then has the class ``object``).

Segmentations: uncompressed RLE is decoded here; compressed RLE and polygons
need ``pycocotools`` (imported only when such a segmentation is met).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracker.io.readers import natural_key
from tracker.overseer.types import Detection
from tracker.types import Frame

logger = logging.getLogger(__name__)

ANNOTATIONS_FILE = "annotations.json"


def rle_encode(mask: np.ndarray) -> dict[str, object]:
    """COCO uncompressed RLE: column-major run lengths starting with a background run."""
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def decode_segmentation(segmentation: object, height: int, width: int) -> np.ndarray:
    """A bool (H, W) mask from a COCO segmentation (uncompressed RLE natively, else pycocotools)."""
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        h, w = (int(v) for v in segmentation["size"])
        counts = np.asarray(segmentation["counts"], dtype=np.int64)
        values = np.zeros(len(counts), bool)
        values[1::2] = True
        flat = np.repeat(values, counts)
        if flat.size != h * w:
            raise ValueError(f"RLE counts sum to {flat.size}, expected {h}x{w}")
        return flat.reshape((w, h)).T
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(
            "compressed RLE / polygon segmentations need pycocotools (pip install pycocotools)"
        ) from exc
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    else:
        rle = segmentation
        if isinstance(rle.get("counts"), str):
            rle = {**rle, "counts": rle["counts"].encode()}
    return mask_utils.decode(rle).astype(bool)


@dataclass
class CocoInstance:
    label: str
    instance_id: int  # the annotation's instance_id (or track_id), else its annotation id
    segmentation: object
    height: int
    width: int

    def mask(self) -> np.ndarray:
        return decode_segmentation(self.segmentation, self.height, self.width)


@dataclass
class CocoFrames:
    """Annotations grouped by frame position (images sorted by ``frame_index``, else by file name)."""

    classes: tuple[str, ...]
    frames: list[list[CocoInstance]] = field(default_factory=list)
    file_names: list[str] = field(default_factory=list)

    def instance_classes(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for frame in self.frames:
            for inst in frame:
                out.setdefault(inst.instance_id, inst.label)
        return out


def load_coco(path: Path | str) -> CocoFrames:
    """Read a COCO instance-annotation file into per-frame instance lists."""
    data = json.loads(Path(path).read_text())
    cats = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    images = list(data.get("images", []))
    if all("frame_index" in im for im in images):
        images.sort(key=lambda im: int(im["frame_index"]))
    else:
        images.sort(key=lambda im: natural_key(str(im.get("file_name", im["id"]))))
    position = {im["id"]: i for i, im in enumerate(images)}
    frames: list[list[CocoInstance]] = [[] for _ in images]
    for ann in data.get("annotations", []):
        im = images[position[ann["image_id"]]]
        iid = int(ann.get("instance_id", ann.get("track_id", ann["id"])))
        frames[position[ann["image_id"]]].append(
            CocoInstance(
                cats.get(int(ann["category_id"]), str(ann["category_id"])),
                iid,
                ann["segmentation"],
                int(im["height"]),
                int(im["width"]),
            )
        )
    classes = tuple(cats[k] for k in sorted(cats))
    return CocoFrames(classes, frames, [str(im.get("file_name", "")) for im in images])


def find_annotations(sequence_path: Path | str | None) -> Path | None:
    """``annotations.json`` in (or beside) a sequence folder, if there is one."""
    if sequence_path is None:
        return None
    p = Path(sequence_path)
    if p.is_file() and p.suffix == ".json":
        return p
    for candidate in (p / ANNOTATIONS_FILE, p.parent / ANNOTATIONS_FILE):
        if candidate.is_file():
            return candidate
    return None


def instance_classes(sequence_path: Path | str | None) -> dict[int, str]:
    """Class name of each instance id of a sequence, from its COCO annotations ({} without)."""
    path = find_annotations(sequence_path)
    if path is None:
        return {}
    data = json.loads(path.read_text())
    if "instances" in data:
        return {int(i["instance_id"]): str(i["category"]) for i in data["instances"]}
    return load_coco(path).instance_classes()


class OracleDetector:
    """Detections read from ground truth, by frame index (``Frame.index`` = position in the sequence).

    Why: validates the policy and the whole re-prompt loop without a trained
    detector, with known-perfect detections, so measured delays are the
    policy's own. Cost: decoding the frame's annotations (~0.1 ms each).
    """

    name = "oracle"

    def __init__(self, frames: list[list[tuple[str, np.ndarray]]]) -> None:
        self._frames = frames

    @classmethod
    def from_path(cls, path: Path | str) -> OracleDetector:
        """From a COCO json, a folder containing ``annotations.json``, or a DAVIS folder's masks."""
        p = Path(path)
        coco = find_annotations(p)
        if coco is not None:
            data = load_coco(coco)
            return cls([[(i.label, i.mask()) for i in frame] for frame in data.frames])
        from tracker.io.readers import open_sequence

        seq = open_sequence(p)
        if seq.labels is None:
            raise ValueError(
                f"{p}: no COCO annotations and no per-frame instance masks for the oracle overseer"
            )
        frames = []
        for t in range(len(seq)):
            label = np.asarray(seq.labels[t])
            frames.append([("object", label == k) for k in np.unique(label) if k != 0])
        logger.info("%s: oracle from per-frame instance masks (class 'object')", p)
        return cls(frames)

    def detect(self, frame: Frame) -> list[Detection]:
        if not 0 <= frame.index < len(self._frames):
            return []
        return [Detection(label, 1.0, mask) for label, mask in self._frames[frame.index]]

    def close(self) -> None:
        self._frames = []
