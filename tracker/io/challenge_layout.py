"""Predicted masks in the layouts the official evaluators read unchanged (``replay --layout``).

Three layouts, one :class:`PredictionWriter` for all of them:

* ``native``: :func:`tracker.io.writers.write_predictions` (TrackRAD cases as a dataset's
  ``<id>/targets/<id>_labels.mha``, readable like ground truth; PNGs named after the source
  frames otherwise).
* ``trackrad``: what a Grand-Challenge algorithm job leaves for the TrackRAD2025 evaluation
  container. Matched to ``LMUK-RADONC-PHYS-RES/trackrad2025``, ``evaluation/evaluate.py``:
  ``read_predictions`` reads ``<input>/predictions.json`` (a list of jobs);
  ``get_file_location`` puts a job's output at ``<input>/<pk>/output/<relative_path>`` of the
  output interface ``mri-linac-series-targets``; ``load_image_file`` reads the first
  ``*.tiff``/``*.mha`` there with ``minimal_mha_simpleitk`` (MetaImage header, zlib, the
  ``ElementType`` mapped to a NumPy dtype, ``DimSize`` reversed); ``process`` transposes that
  array with ``(2, 0, 1)``, so it must be ``(H, W, T)`` as the ground truth's, and takes the case
  id from the ``mri-linac-series`` input's image name (base name without ``.mha`` and
  ``_frames``), the ground truth being ``<ground truth>/<id>/targets/<id>_labels.mha``; it reads
  ``scanned-region`` from the job's inputs (sigma of the dose metric) and the runtime from
  ``started_at``/``completed_at`` (``extract_runtime``). The prediction is written as the
  baseline writes it (``baseline-algorithm/inference.py``, ``write_array_as_image_file``:
  ``images/mri-linac-series-targets/output.mha``, compressed), as uint8 0/1 (``MET_UCHAR``, as
  the labels), with the input frames' spacing, origin and direction; the job entries follow the
  ones ``test-algorithm.sh`` writes (slugs and relative paths), with Grand-Challenge's
  ``file``/``image``/``value`` fields (as ``DIAGNijmegen/rse-grand-challenge-forge`` stubs them,
  ``generation_utils.ci_to_civ``). Each job's ``pk`` is a UUID derived from the case id, so a
  case replayed again lands in the same folder.
* ``davis2017``: what ``davisvideochallenge/davis2017-evaluation`` scores. ``davis2017/results.py``
  (``Results.read_masks``) reads ``<results>/<sequence>/<frame id>.png`` and takes every value
  1..max as an object; ``davis2017/davis.py`` (``DAVIS``) lists the sequences in
  ``<root>/ImageSets/2017/<set>.txt``, globs ``JPEGImages/480p/<seq>/*.jpg`` and
  ``Annotations/480p/<seq>/*.png`` and (``get_all_masks``) counts the objects as the maximum of
  the first annotation after setting the void value 255 to 0, so a DAVIS-2016 annotation kept as
  0/255 holds no object at all; ``davis2017/evaluation.py`` scores frames 1..T-2 of each object.
  Results go to ``DIR/<sequence>/<frame:05d>.png`` (indexed PNGs, object ids 1..N); with ground
  truth, a DAVIS-2017 root the toolkit can be pointed at is written beside them under
  ``DIR/davis2017-ground-truth/`` (annotations with ids 1..N, the frames as JPEG, the ImageSets
  file of set ``val`` listing the sequences written). Object ids are renumbered 1..N in the order
  of the prompt's ids (the identity for DAVIS data); predicted ids the prompt does not have (an
  overseer's new tracks) are left out, since the toolkit stops on a result with more objects than
  the annotation.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence as Seq
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

from tracker.io.common import import_sitk
from tracker.io.sequence import Sequence
from tracker.io.trackrad import FIRST_LABEL_SUFFIX, FRAMES_SUFFIX
from tracker.io.writers import write_mask_pngs, write_predictions

logger = logging.getLogger(__name__)

Layout = Literal["native", "trackrad", "davis2017"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

# -- TrackRAD2025 on Grand-Challenge ------------------------------------------------------------

PREDICTIONS_JSON = "predictions.json"
SERIES_SLUG = "mri-linac-series"  # input: the cine frames
TARGET_SLUG = "mri-linac-target"  # input: the first frame's target
OUTPUT_SLUG = "mri-linac-series-targets"  # output: the predicted label stack
OUTPUT_RELATIVE_PATH = "images/mri-linac-series-targets"
OUTPUT_FILE = "output.mha"
_JOB_NAMESPACE = uuid.UUID("8f0d6f52-3c3e-5b7a-9d43-2a1f6c0e9b71")  # fixed: a case's pk never changes


def job_pk(case_id: str) -> str:
    """The job's primary key (its folder under ``DIR``): a UUID derived from the case id."""
    return str(uuid.uuid5(_JOB_NAMESPACE, case_id))


def case_id_of_image_name(image_name: str) -> str:
    """The case id the evaluation derives from the series' image name (``process`` in evaluate.py)."""
    return PurePosixPath(image_name).name.replace(".mha", "").replace("_frames", "")


def job_output_file(out_dir: Path, job: dict[str, Any]) -> Path:
    """Where ``job``'s prediction lies under ``out_dir``, taken from the job's output interface."""
    (output,) = (o for o in job["outputs"] if o["interface"]["slug"] == OUTPUT_SLUG)
    return Path(out_dir) / str(job["pk"]) / "output" / output["interface"]["relative_path"] / OUTPUT_FILE


def _interface(slug: str, relative_path: str, kind: str, super_kind: str) -> dict[str, str]:
    return {"slug": slug, "kind": kind, "super_kind": super_kind, "relative_path": relative_path}


def _value_input(slug: str, relative_path: str, kind: str, value: object) -> dict[str, object]:
    return {
        "file": None,
        "image": None,
        "value": value,
        "interface": _interface(slug, relative_path, kind, "Value"),
    }


def _image_value(slug: str, relative_path: str, name: str) -> dict[str, object]:
    return {
        "file": None,
        "image": {"name": name},
        "value": None,
        "interface": _interface(slug, relative_path, "Image", "Image"),
    }


def _write_label_stack(path: Path, masks: np.ndarray, reference: Path | None) -> None:
    """(T, H, W) masks as a 0/1 uint8 ``(H, W, T)`` MetaImage with ``reference``'s geometry."""
    sitk = import_sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis((masks > 0).astype(np.uint8), 0, -1)))
    if reference is not None and reference.is_file():
        header = sitk.ImageFileReader()
        header.SetFileName(str(reference))
        header.ReadImageInformation()
        if tuple(header.GetSize()) == tuple(image.GetSize()):
            image.SetSpacing(header.GetSpacing())
            image.SetOrigin(header.GetOrigin())
            image.SetDirection(header.GetDirection())
        else:
            logger.warning(
                "%s: size %s differs from the prediction's %s; geometry not copied",
                reference, header.GetSize(), image.GetSize(),
            )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def write_trackrad_job(
    out_dir: Path, sequence: Sequence, masks: np.ndarray, started_at: datetime, completed_at: datetime
) -> dict[str, object]:
    """Write one case's prediction as a Grand-Challenge job's output; return its predictions.json entry."""
    frames_file = check_trackrad(sequence)
    case_id = sequence.name
    masks = _checked(sequence, masks)
    if masks.size and int(masks.max()) > 1:
        logger.warning("%s: TrackRAD predicts one target; object ids > 1 are merged", case_id)
    series = f"{case_id}{FRAMES_SUFFIX}"
    job: dict[str, object] = {
        "pk": job_pk(case_id),
        "status": "Succeeded",
        "inputs": [
            _value_input("frame-rate", "frame-rate.json", "Float", sequence.frame_rate_hz),
            _value_input(
                "magnetic-field-strength",
                "b-field-strength.json",
                "Float",
                sequence.metadata.get("b_field_strength_t"),
            ),
            _value_input(
                "scanned-region", "scanned-region.json", "String", sequence.metadata.get("scanned_region")
            ),
            _image_value(TARGET_SLUG, "images/mri-linac-target", f"{case_id}{FIRST_LABEL_SUFFIX}"),
            _image_value(SERIES_SLUG, "images/mri-linacs", series),
        ],
        "outputs": [_image_value(OUTPUT_SLUG, OUTPUT_RELATIVE_PATH, OUTPUT_FILE)],
        "started_at": started_at.astimezone(UTC).isoformat(),
        "completed_at": completed_at.astimezone(UTC).isoformat(),
    }
    path = job_output_file(out_dir, job)
    stray = [p for p in path.parent.glob("*") if p.suffix in (".mha", ".tiff") and p != path]
    if stray:
        logger.warning("%s: other images the evaluation may read instead: %s", path.parent, stray)
    _write_label_stack(path, masks, frames_file)
    return job


def check_trackrad(sequence: Sequence) -> Path:
    """The case's frames file; ValueError unless the evaluation can match ``sequence`` to its ground truth."""
    if sequence.kind != "trackrad" or sequence.source_path is None:
        raise ValueError(
            f"{sequence.name}: the trackrad layout needs a TrackRAD case folder (the evaluation finds"
            f" the ground truth by case id), not {sequence.kind or 'this'} input"
        )
    back = case_id_of_image_name(f"{sequence.name}{FRAMES_SUFFIX}")
    if back != sequence.name:
        raise ValueError(f"case id {sequence.name!r} would be read back by the evaluation as {back!r}")
    return sequence.source_path / "images" / f"{sequence.name}{FRAMES_SUFFIX}"


def _checked(sequence: Sequence, masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    expected = (len(sequence), *sequence.shape_hw)
    if masks.shape != expected:
        raise ValueError(
            f"predictions {masks.shape} do not match sequence {sequence.name!r} {expected} (T, H, W)"
        )
    return masks


def write_json_atomically(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
    return path


# -- DAVIS 2017 ----------------------------------------------------------------------------------

DAVIS_ROOT = "davis2017-ground-truth"
DAVIS_RESOLUTION = "480p"  # the toolkit's default; evaluation_method.py passes no other
DAVIS_SET = "val"
DAVIS_VOID = 255


def davis_renumbering(sequence: Sequence) -> dict[int, int]:
    """Each prompted object id -> its toolkit id 1..N (in the prompt's order)."""
    ids = sequence.object_ids()
    if len(ids) >= DAVIS_VOID:
        raise ValueError(f"{sequence.name}: {len(ids)} objects; DAVIS PNGs hold at most {DAVIS_VOID - 1}")
    return {oid: k + 1 for k, oid in enumerate(ids)}


def _renumber(label: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    out = np.zeros(label.shape, np.uint8)
    for oid, k in mapping.items():
        out[label == oid] = k
    return out


def _jpeg_ready(frame: np.ndarray) -> np.ndarray:
    """A frame as 8-bit grey or RGB: uint8 as it is, anything else scaled from its min..max."""
    a = np.asarray(frame)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    scaled = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return np.rint(scaled).astype(np.uint8)


def write_davis2017_sequence(out_dir: Path, sequence: Sequence, masks: np.ndarray) -> Path:
    """Write results ``out_dir/<seq>/<i:05d>.png`` (and, with ground truth, its DAVIS-2017 root).

    Returns the results folder.
    """
    check_davis2017(sequence)
    mapping = davis_renumbering(sequence)
    masks = _checked(sequence, masks)
    unknown = sorted(set(np.unique(masks).tolist()) - {0, *mapping})
    if unknown:
        logger.warning(
            "%s: predicted ids %s are not prompted objects; left out of the DAVIS results",
            sequence.name,
            unknown,
        )
    names = [f"{i:05d}" for i in range(len(masks))]
    folder = Path(out_dir) / sequence.name
    write_mask_pngs(folder, [_renumber(m, mapping) for m in masks], names)
    if sequence.labels is not None:
        root = Path(out_dir) / DAVIS_ROOT
        labels = [_renumber(np.asarray(sequence.labels[i]), mapping) for i in range(len(sequence))]
        write_mask_pngs(root / "Annotations" / DAVIS_RESOLUTION / sequence.name, labels, names)
        images = root / "JPEGImages" / DAVIS_RESOLUTION / sequence.name
        images.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            Image.fromarray(_jpeg_ready(sequence.frames[i])).save(images / f"{name}.jpg", quality=95)
    return folder


def check_davis2017(sequence: Sequence) -> None:
    if sequence.name == DAVIS_ROOT:
        raise ValueError(f"a sequence named {DAVIS_ROOT!r} would collide with the DAVIS-2017 root folder")


def write_davis2017_imageset(out_dir: Path, names: Seq[str]) -> Path:
    """``ImageSets/2017/val.txt`` of the written root: the sequences the toolkit will score."""
    path = Path(out_dir) / DAVIS_ROOT / "ImageSets" / "2017" / f"{DAVIS_SET}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names))
    return path


# -- one writer for a replay ---------------------------------------------------------------------


class PredictionWriter:
    """Writes each replayed case in one layout, and the layout's index after every case.

    The index (``predictions.json`` for ``trackrad``, the ImageSets file for ``davis2017``)
    lists the cases this writer wrote, so it stays consistent if a later case fails.
    """

    def __init__(self, out_dir: Path, layout: str = "native") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown mask layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.out_dir = Path(out_dir)
        self.layout = layout
        self._jobs: dict[str, dict[str, object]] = {}
        self._davis_sequences: list[str] = []

    def check(self, sequence: Sequence) -> None:
        """Raise ValueError, before anything is replayed, for a sequence this layout cannot hold."""
        if self.layout == "trackrad":
            check_trackrad(sequence)
        elif self.layout == "davis2017":
            check_davis2017(sequence)

    def write(
        self,
        sequence: Sequence,
        masks: np.ndarray,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
    ) -> Path:
        """Write ``sequence``'s (T, H, W) predicted label maps; return the file or folder written."""
        if self.layout == "trackrad":
            now = datetime.now(UTC)
            job = write_trackrad_job(self.out_dir, sequence, masks, started_at or now, completed_at or now)
            self._jobs[str(job["pk"])] = job
            write_json_atomically(self.out_dir / PREDICTIONS_JSON, list(self._jobs.values()))
            return job_output_file(self.out_dir, job)
        if self.layout == "davis2017":
            folder = write_davis2017_sequence(self.out_dir, sequence, masks)
            if sequence.labels is not None and sequence.name not in self._davis_sequences:
                self._davis_sequences.append(sequence.name)
                write_davis2017_imageset(self.out_dir, self._davis_sequences)
            return folder
        return write_predictions(self.out_dir, sequence, masks)
