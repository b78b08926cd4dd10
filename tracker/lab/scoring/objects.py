"""Per-object scoring when tracked objects come and go: association, J, entry and exit delays.

Why: with an overseer, the tracker's object ids are no longer the ground
truth's — objects it adds get fresh ids, an object may be dropped and re-added
— and ground-truth objects that enter after frame 0 were never prompted. To
score *per ground-truth object*, each predicted track is associated with one
ground-truth object:

* a track whose id was prompted from the ground truth keeps that id (what the
  replay did before, so single-prompt scores are unchanged);
* any other track is associated with the ground-truth object it overlaps most
  (summed intersection over the sequence), or with none.

Several tracks may serve one object (dropped and re-added); on each frame the
object's prediction is the union of its tracks. A frame where the object exists
but none of its tracks covers it scores J = 0 — an object that enters later
counts as missed until it is tracked — and a frame after it left where a track
still shows it (a ghost) scores J = 0 too (the metrics' empty-ground-truth rule).

Delays (frames), with "visible" meaning at least ``min_area_px`` pixels of the
object are in view (the oracle overseer uses the same floor):

* entry: first frame where the object overlaps one of its tracks with IoU >=
  ``track_iou``, minus the first visible frame (objects visible on frame 0 were
  prompted and have none); None if never tracked;
* exit: first frame after the object's last visible frame on which its tracks
  show fewer than ``min_area_px`` pixels, minus that first frame; None if a
  ghost stays to the end.

False re-prompts (:func:`judge_reprompts`): an overseer decision on frame t changes the
prompts of the next frame, so it is judged by the J of the ground-truth object its track
serves on frame t+1 against frame t. It lowered J when that fell by more than
``REPROMPT_TOLERANCE`` (one frame's motion alone moves J less), or when it added or
corrected a track that serves no ground-truth object; removing such a track is right.

Cost: one pass over the (T, H, W) label and prediction stacks for the
association, then the usual per-frame metrics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from tracker.lab.scoring import metrics
from tracker.types import RepromptEvent

TRACK_IOU = 0.1
MIN_AREA_PX = 30
REPROMPT_TOLERANCE = 0.05


@dataclass
class ObjectOutcome:
    """What happened to one ground-truth object over a sequence."""

    object_id: int
    label: str
    track_ids: list[int]
    first_visible: int | None
    last_visible: int | None
    enter_frame: int | None  # first visible frame when > 0 (entered during the sequence)
    entry_delay: int | None  # frames until tracked; None: never tracked (or not entering)
    exit_frame: int | None  # first frame after the last visible one, when inside the sequence
    exit_delay: int | None  # frames until its tracks were gone; None: never dropped (or not leaving)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ground_truth_ids(labels: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(labels) if v != 0]


def associate(predictions: np.ndarray, labels: np.ndarray, prompted_ids: list[int]) -> dict[int, int]:
    """Track id -> ground-truth id (see the module docstring); unassociated tracks are left out."""
    pred_ids = [int(v) for v in np.unique(predictions) if v != 0]
    mapping = {p: p for p in pred_ids if p in prompted_ids}
    others = [p for p in pred_ids if p not in mapping]
    if not others:
        return mapping
    both = (predictions != 0) & (labels != 0)
    pairs = np.stack([predictions[both].astype(np.int64), labels[both].astype(np.int64)], axis=1)
    if pairs.size == 0:
        return mapping
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (p, g), c in zip(uniq.tolist(), counts.tolist(), strict=True):
        if p in others and c > best.get(p, (0, -1))[1]:
            best[p] = (g, c)
    mapping.update({p: g for p, (g, _) in best.items()})
    return mapping


def score_objects(
    predictions: np.ndarray,
    labels: np.ndarray,
    prompted_ids: list[int],
    spacing_mm: tuple[float, float],
    classes: dict[int, str] | None = None,
    *,
    min_area_px: int = MIN_AREA_PX,
    track_iou: float = TRACK_IOU,
) -> tuple[dict[int, metrics.SequenceScores], dict[int, ObjectOutcome]]:
    """Scores and outcomes per ground-truth object (frame 0, the prompt, is not scored)."""
    classes = classes or {}
    mapping = associate(predictions, labels, prompted_ids)
    scores: dict[int, metrics.SequenceScores] = {}
    outcomes: dict[int, ObjectOutcome] = {}
    n = len(labels)
    for g in ground_truth_ids(labels):
        tracks = sorted(p for p, gg in mapping.items() if gg == g)
        gt = labels == g
        pred = np.isin(predictions, tracks) if tracks else np.zeros_like(gt)
        scores[g] = metrics.score_sequence(pred, gt, spacing_mm)
        gt_area = gt.reshape(n, -1).sum(axis=1)
        pred_area = pred.reshape(n, -1).sum(axis=1)
        visible = np.flatnonzero(gt_area >= min_area_px)
        first = int(visible[0]) if visible.size else None
        last = int(visible[-1]) if visible.size else None
        enter = first if first is not None and first > 0 else None
        entry_delay = None
        if enter is not None:
            for t in range(enter, n):
                if metrics.iou(pred[t], gt[t]) >= track_iou:
                    entry_delay = t - enter
                    break
        exit_frame = last + 1 if last is not None and last + 1 < n else None
        exit_delay = None
        if exit_frame is not None:
            gone = np.flatnonzero(pred_area[exit_frame:] < min_area_px)
            exit_delay = int(gone[0]) if gone.size else None
        outcomes[g] = ObjectOutcome(
            g, classes.get(g, ""), tracks, first, last, enter, entry_delay, exit_frame, exit_delay
        )
    return scores, outcomes


def delay_summary(values: list[int | None]) -> dict[str, float | int | None]:
    """Mean/max of the measured delays and how many never happened (missed / never dropped)."""
    done = [v for v in values if v is not None]
    return {
        "count": len(values),
        "missed": len(values) - len(done),
        "mean": float(np.mean(done)) if done else None,
        "max": int(max(done)) if done else None,
    }


def per_class_j(objects: list[tuple[str, float]]) -> dict[str, float | None]:
    """Mean J per class over (class, j_mean) pairs; objects without a class count as ``object``."""
    by: dict[str, list[float]] = {}
    for label, j in objects:
        if j is not None and not math.isnan(j):
            by.setdefault(label or "object", []).append(j)
    return {k: float(np.mean(v)) for k, v in sorted(by.items())}


@dataclass(frozen=True)
class RepromptJudgement:
    """One overseer decision judged against the ground truth (see the module docstring)."""

    frame: int
    track_id: int
    action: str  # "add", "remove" or "correct"
    object_id: int | None  # the ground-truth object its track serves; None: none
    j_before: float | None  # that object's J on the decision's frame and the next
    j_after: float | None
    lowered_j: bool


def judge_reprompts(
    predictions: np.ndarray,
    labels: np.ndarray,
    mapping: dict[int, int],
    events: list[tuple[int, int, str]],
    tolerance: float = REPROMPT_TOLERANCE,
) -> list[RepromptJudgement]:
    """Judge (frame, track id, action) decisions; those on the last frame are never applied."""
    out: list[RepromptJudgement] = []
    n = len(labels)
    for frame, track, action in events:
        if frame + 1 >= n:
            continue
        g = mapping.get(track)
        if g is None:
            out.append(RepromptJudgement(frame, track, action, None, None, None, action != "remove"))
            continue
        tracks = [p for p, gg in mapping.items() if gg == g]
        j = [metrics.iou(np.isin(predictions[t], tracks), labels[t] == g) for t in (frame, frame + 1)]
        before, after = j
        out.append(RepromptJudgement(frame, track, action, g, before, after, after < before - tolerance))
    return out


def reprompt_rows(
    predictions: np.ndarray,
    labels: np.ndarray | None,
    outcomes: dict[int, ObjectOutcome],
    events: list[tuple[int, RepromptEvent]],
) -> list[dict[str, object]]:
    """A replay report's decisions, each with ``lowered_j`` (None: no ground truth to judge by).

    The tracks' association is the one :func:`score_objects` made (``outcomes``), not redone.
    """
    judged: dict[tuple[int, int], RepromptJudgement] = {}
    if labels is not None:
        mapping = {t: g for g, o in outcomes.items() for t in o.track_ids}
        triples = [(i, e.object_id, e.action) for i, e in events]
        judged = {(j.frame, j.track_id): j for j in judge_reprompts(predictions, labels, mapping, triples)}
    rows: list[dict[str, object]] = []
    for i, e in events:
        j = judged.get((i, e.object_id))
        rows.append(
            {"frame": i, "object_id": e.object_id, "class": e.label, "reason": e.reason, "action": e.action,
             "observed_frame": e.observed_frame, "lowered_j": None if j is None else j.lowered_j}
        )  # fmt: skip
    return rows
