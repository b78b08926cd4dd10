"""When to re-prompt the tracker: the overseer's decisions, as pure, causal logic.

Why a separate module: the decisions (add what entered, drop what left,
correct what drifted, merge duplicates) are where the overseer earns or loses
its keep, so they must be testable with scripted detections, without a
detector, an engine or torch. Everything here is NumPy on small masks.

SASVi (the method this follows) triggers when the overseer sees a class that
is not tracked and requires it to persist in the *next* 3 frames — a
look-ahead that a live stream cannot afford. Here every rule is causal: a
condition must hold on ``m`` consecutive overseer runs *up to now*, so a
decision comes ``m - 1`` runs after the condition first appears and applies on
the next frame. A one-run flicker (a spurious detection, a missed one) never
re-prompts when ``m >= 2``.

Rules, per overseer run (``decide``):

* **enter**: a detection with score >= ``min_score`` that matches no tracked
  object, seen on ``m`` consecutive runs (tracked across runs by class and mask
  overlap) -> ADD it from the detector's mask, with a fresh object id; other
  objects keep their state.
* **leave**: a tracked object that no detection supports for ``m`` runs ->
  REMOVE. With ``trust_tracker_presence`` the tracker must also report it
  absent (presence score < 0.5 or an empty mask): right for engines with an
  informative presence head (SAM2), which then keep occluded objects; wrong for
  ``flow``, whose score is a registration confidence that stays high on a ghost
  — hence off by default.
* **drift**: a tracked object matched to a detection of its class with mask IoU
  < ``drift_iou`` for ``m`` runs -> CORRECT it with the detector's mask.
* **duplicate**: two tracked objects overlapping with IoU >= ``duplicate_iou``
  for ``m`` runs -> the overseer votes: the one its detection matched is kept,
  the other removed (when it matched neither, both age out as *leave*).

Matching: greedy by mask IoU (>= ``match_iou``) between tracks and detections of
a compatible class (equal labels, or a track without a label); then leftover
pairs of the same class whose boxes touch are matched too (IoU below
``match_iou``: that is drift, not a new object). Cost per run: O(tracks x
detections) mask comparisons, each on the pair's bounding box.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from tracker.options import check_values, opt, parse_options
from tracker.overseer.types import Detection, TrackView
from tracker.types import UpdateAction

logger = logging.getLogger(__name__)

REASON_ENTER = "enter"
REASON_LEAVE = "leave"
REASON_DRIFT = "drift"
REASON_DUPLICATE = "duplicate"
REASON_GUARD = "guard"


OWNER = "overseer"  # names the options in error messages


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of :class:`RepromptPolicy` and :class:`RunTrigger` (engine options ``overseer.<name>``)."""

    every_k: int = opt(1, minimum=1, help="run the overseer every k frames (plus on abrupt changes)")
    min_score: float = opt(0.5, minimum=0, maximum=1, help="s: detections below are ignored")
    persist_runs: int = opt(3, minimum=1, help="m: consecutive runs a condition must hold")
    drift_iou: float = opt(
        0.5, minimum=0, maximum=1, help="t: tracker/overseer IoU below this is disagreement"
    )
    match_iou: float = opt(0.1, minimum=0, maximum=1, help="a detection supports a track above this IoU")
    duplicate_iou: float = opt(
        0.7, minimum=0, maximum=1, help="two tracks overlapping this much are duplicates (SASVi's 0.70)"
    )
    trust_tracker_presence: bool = opt(
        False, help="leave also needs the tracker to report the object absent (see the policy module)"
    )
    area_jump: float = opt(
        2.0,
        exclusive_minimum=1,
        help="abrupt change: a mask area grows or shrinks by this factor in one frame",
    )
    score_drop: float = opt(0.3, help="abrupt change: a presence score falls by this much in one frame")
    # A sliver at the border is not an object yet.
    min_area_px: int = opt(30, help="smaller detections are ignored")
    # Above usual client ids.
    first_auto_id: int = opt(1000, help="ids the overseer gives new objects start here")

    def __post_init__(self) -> None:
        check_values(self, owner=OWNER)

    @classmethod
    def from_options(cls, options: Mapping[str, str], base: PolicyConfig | None = None) -> PolicyConfig:
        """``base`` (default: the defaults) with string options (``every_k=2``, ...) applied.

        Raises ValueError naming an unknown, malformed or out-of-range option.
        """
        return parse_options(cls, options, owner=OWNER, base=base)


@dataclass(frozen=True)
class Decision:
    """One re-prompt: what to do to which object, from which mask, and why."""

    action: UpdateAction
    object_id: int
    label: str
    reason: str
    observed_frame: int
    mask: np.ndarray | None = None  # for ADD and CORRECT
    score: float = 0.0
    iou: float = 0.0
    message: str = ""


# --------------------------------------------------------------------------- geometry


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks, computed on their joint bounding box; 0 when either is empty."""
    ba, bb = _bbox(a), _bbox(b)
    if ba is None or bb is None:
        return 0.0
    if ba[1] <= bb[0] or bb[1] <= ba[0] or ba[3] <= bb[2] or bb[3] <= ba[2]:
        return 0.0
    r0, r1, c0, c1 = min(ba[0], bb[0]), max(ba[1], bb[1]), min(ba[2], bb[2]), max(ba[3], bb[3])
    x, y = a[r0:r1, c0:c1], b[r0:r1, c0:c1]
    union = int(np.count_nonzero(x | y))
    return int(np.count_nonzero(x & y)) / union if union else 0.0


def _boxes_touch(a: np.ndarray, b: np.ndarray, margin_frac: float = 0.25) -> bool:
    ba, bb = _bbox(a), _bbox(b)
    if ba is None or bb is None:
        return False
    ma = margin_frac * max(ba[1] - ba[0], ba[3] - ba[2])
    return not (ba[1] + ma < bb[0] or bb[1] + ma < ba[0] or ba[3] + ma < bb[2] or bb[3] + ma < ba[2])


def _compatible(track: TrackView, det: Detection) -> bool:
    return not track.label or track.label == det.label


# --------------------------------------------------------------------------- trigger


@dataclass
class RunTrigger:
    """Decides, frame by frame, whether the overseer runs: every k frames or on an abrupt change.

    Abrupt: an object's mask area changes by ``area_jump`` x or its presence
    score drops by ``score_drop`` between consecutive frames, or it appears or
    vanishes. Cheap (areas only); runs on the per-frame path.
    """

    config: PolicyConfig
    _since_run: int = 0
    _started: bool = False
    _prev: dict[int, tuple[int, float]] = field(default_factory=dict)  # id -> (area, score)

    def check(self, tracks: list[TrackView]) -> str | None:
        """The reason to run now ("periodic", "abrupt:<id>"), or None; call once per frame."""
        current = {t.object_id: (t.area, t.score) for t in tracks}
        abrupt = None
        for oid, (area, score) in current.items():
            if oid not in self._prev:
                continue
            prev_area, prev_score = self._prev[oid]
            lo, hi = min(area, prev_area), max(area, prev_area)
            if (
                (lo == 0 and hi > 0)
                or (lo > 0 and hi / lo >= self.config.area_jump)
                or prev_score - score >= self.config.score_drop
            ):
                abrupt = f"abrupt:{oid}"
        self._prev = current
        self._since_run += 1
        if not self._started or self._since_run >= self.config.every_k:
            reason = "periodic"
        elif abrupt is not None:
            reason = abrupt
        else:
            return None
        self._started = True
        self._since_run = 0
        return reason


# --------------------------------------------------------------------------- policy


@dataclass
class _Candidate:
    label: str
    mask: np.ndarray
    score: float
    runs: int = 1


@dataclass
class _Match:
    track: TrackView
    det: Detection
    iou: float


class RepromptPolicy:
    """The causal re-prompt rules (see the module docstring); one instance per stream.

    Not thread-safe, but needs no lock when one caller at a time runs
    :meth:`decide` (the engine wrapper runs at most one overseer pass at a time).
    """

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self._absent: dict[int, int] = {}
        self._drift: dict[int, int] = {}
        self._duplicate: dict[int, int] = {}
        self._candidates: list[_Candidate] = []
        self._next_id = self.config.first_auto_id

    def _fresh_id(self, taken: set[int]) -> int:
        self._next_id = max(self._next_id, max(taken, default=0) + 1)
        oid = self._next_id
        self._next_id += 1
        return oid

    def _match(
        self, tracks: list[TrackView], dets: list[Detection]
    ) -> tuple[list[_Match], set[int], set[int]]:
        pairs = []
        for i, t in enumerate(tracks):
            for j, d in enumerate(dets):
                if _compatible(t, d):
                    iou = mask_iou(t.mask, d.mask)
                    if iou >= self.config.match_iou:
                        pairs.append((iou, i, j))
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        used_t: set[int] = set()
        used_d: set[int] = set()
        matches = []
        for iou, i, j in pairs:
            if i not in used_t and j not in used_d:
                used_t.add(i)
                used_d.add(j)
                matches.append(_Match(tracks[i], dets[j], iou))
        # Leftovers of the same class close to each other: the tracker drifted off its object.
        for i, t in enumerate(tracks):
            if i in used_t or not t.mask.any():
                continue
            for j, d in enumerate(dets):
                if j not in used_d and t.label and t.label == d.label and _boxes_touch(t.mask, d.mask):
                    used_t.add(i)
                    used_d.add(j)
                    matches.append(_Match(t, d, mask_iou(t.mask, d.mask)))
                    break
        return matches, used_t, used_d

    def decide(
        self,
        frame_index: int,
        tracks: list[TrackView],
        detections: list[Detection],
        reserved: Collection[int] = (),
    ) -> list[Decision]:
        """One overseer run on one frame: the decisions it takes (possibly none).

        ``reserved``: ids taken besides the tracks' (the session's objects not tracked yet);
        a new object never gets one.
        """
        cfg = self.config
        m = cfg.persist_runs
        dets = [d for d in detections if d.score >= cfg.min_score and d.area >= cfg.min_area_px]
        ids = {t.object_id for t in tracks}
        for state in (self._absent, self._drift, self._duplicate):
            for oid in list(state):
                if oid not in ids:
                    del state[oid]
        matches, _, used_d = self._match(tracks, dets)
        matched = {mt.track.object_id: mt for mt in matches}
        decisions: list[Decision] = []
        removed: set[int] = set()

        for t in tracks:
            oid = t.object_id
            mt = matched.get(oid)
            if mt is not None:
                self._absent[oid] = 0
                self._duplicate[oid] = 0
                if mt.iou < cfg.drift_iou:
                    self._drift[oid] = self._drift.get(oid, 0) + 1
                    if self._drift[oid] >= m:
                        decisions.append(
                            Decision(
                                UpdateAction.CORRECT,
                                oid,
                                t.label,
                                REASON_DRIFT,
                                frame_index,
                                mt.det.mask,
                                mt.det.score,
                                mt.iou,
                                f"tracker and overseer disagreed (IoU < {cfg.drift_iou}) for {m} runs",
                            )
                        )
                        self._drift[oid] = 0
                else:
                    self._drift[oid] = 0
                continue
            self._drift[oid] = 0
            # Unmatched: a duplicate of a track the overseer did match, or (maybe) gone.
            twin = next(
                (
                    o
                    for o in matches
                    if o.track.object_id != oid and mask_iou(t.mask, o.track.mask) >= cfg.duplicate_iou
                ),
                None,
            )
            if twin is not None:
                self._absent[oid] = 0
                self._duplicate[oid] = self._duplicate.get(oid, 0) + 1
                if self._duplicate[oid] >= m:
                    decisions.append(
                        Decision(
                            UpdateAction.REMOVE,
                            oid,
                            t.label,
                            REASON_DUPLICATE,
                            frame_index,
                            iou=mask_iou(t.mask, twin.track.mask),
                            message=f"duplicate of object {twin.track.object_id}; the overseer voted for it",
                        )
                    )
                    removed.add(oid)
                continue
            self._duplicate[oid] = 0
            if cfg.trust_tracker_presence and t.present:
                self._absent[oid] = 0
                continue
            self._absent[oid] = self._absent.get(oid, 0) + 1
            if self._absent[oid] >= m:
                decisions.append(
                    Decision(
                        UpdateAction.REMOVE,
                        oid,
                        t.label,
                        REASON_LEAVE,
                        frame_index,
                        score=t.score,
                        message=f"not seen by the overseer for {m} runs",
                    )
                )
                removed.add(oid)

        # New objects: unmatched detections that do not sit on a tracked object.
        fresh = [
            d
            for j, d in enumerate(dets)
            if j not in used_d and all(mask_iou(d.mask, t.mask) < cfg.duplicate_iou for t in tracks)
        ]
        candidates: list[_Candidate] = []
        pool = list(self._candidates)
        for d in fresh:
            best, best_iou = None, cfg.match_iou
            for c in pool:
                if c.label == d.label:
                    iou = mask_iou(c.mask, d.mask)
                    if iou >= best_iou:
                        best, best_iou = c, iou
            if best is not None:
                # By identity: candidates hold mask arrays, which == cannot compare.
                pool = [c for c in pool if c is not best]
                candidates.append(_Candidate(d.label, d.mask, d.score, best.runs + 1))
            else:
                candidates.append(_Candidate(d.label, d.mask, d.score))
        self._candidates = []
        taken = ids | set(reserved) | {dec.object_id for dec in decisions}
        for c in candidates:
            if c.runs >= m:
                oid = self._fresh_id(taken)
                taken.add(oid)
                decisions.append(
                    Decision(
                        UpdateAction.ADD,
                        oid,
                        c.label,
                        REASON_ENTER,
                        frame_index,
                        c.mask,
                        c.score,
                        message=f"{c.label} seen on {m} consecutive runs and not tracked",
                    )
                )
            else:
                self._candidates.append(c)
        for oid in removed:
            self._absent.pop(oid, None)
            self._duplicate.pop(oid, None)
            self._drift.pop(oid, None)
        if decisions:
            logger.debug(
                "frame %d: %s", frame_index, [(d.action.value, d.object_id, d.reason) for d in decisions]
            )
        return decisions


# --------------------------------------------------------------------------- drift guard


@dataclass(frozen=True)
class GuardConfig:
    """Knobs of :class:`DriftGuardPolicy` (cine-MRI: no classes, no detector)."""

    persist_runs: int = 2  # m: consecutive implausible frames before re-anchoring
    area_jump: float = 1.6  # implausible: area differs from the last plausible one by this factor
    centroid_jump: float = 0.5  # implausible: centroid moved more than this x sqrt(area) in one frame
    min_presence: float = 0.5  # implausible: presence score below this
    agree_iou: float = 0.5  # the reference agrees with the engine above this IoU (then nothing to fix)


@dataclass
class _GuardState:
    area: float
    centroid: tuple[float, float]
    implausible_runs: int = 0


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


class DriftGuardPolicy:
    """Re-anchor an object from a reference tracker when the main engine's answer jumps implausibly.

    For cine-MRI there are no classes to detect; the reference is the prompted
    mask propagated by the ``flow`` engine (slow to fail, no weights). When the
    main engine's mask area or centroid jumps beyond what breathing motion does
    in one frame, or its presence score drops, and the reference disagrees, for
    ``m`` consecutive frames, the object is CORRECTed with the reference mask.
    Cost: an IoU and a centroid per object per frame.
    """

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self._state: dict[int, _GuardState] = {}

    def forget(self, object_id: int) -> None:
        self._state.pop(object_id, None)

    def decide(
        self, frame_index: int, tracks: list[TrackView], references: dict[int, np.ndarray]
    ) -> list[Decision]:
        cfg = self.config
        decisions = []
        for oid in list(self._state):
            if oid not in {t.object_id for t in tracks}:
                del self._state[oid]
        for t in tracks:
            ref = references.get(t.object_id)
            area = float(t.area)
            state = self._state.get(t.object_id)
            if state is None:
                if area > 0:
                    self._state[t.object_id] = _GuardState(area, _centroid(t.mask))
                continue
            why = ""
            if t.score < cfg.min_presence or area == 0:
                why = f"presence {t.score:.2f}" if area else "empty mask"
            else:
                ratio = max(area, state.area) / max(1.0, min(area, state.area))
                c = _centroid(t.mask)
                jump = float(np.hypot(c[0] - state.centroid[0], c[1] - state.centroid[1]))
                if ratio >= cfg.area_jump:
                    why = f"area x{ratio:.2f}"
                elif jump > cfg.centroid_jump * np.sqrt(state.area):
                    why = f"centroid jump {jump:.1f} px"
            if not why:
                state.area, state.centroid, state.implausible_runs = area, _centroid(t.mask), 0
                continue
            iou = mask_iou(t.mask, ref) if ref is not None else 0.0
            if ref is None or not ref.any() or iou >= cfg.agree_iou:
                state.implausible_runs = 0
                continue
            state.implausible_runs += 1
            if state.implausible_runs >= cfg.persist_runs:
                decisions.append(
                    Decision(
                        UpdateAction.CORRECT,
                        t.object_id,
                        t.label,
                        REASON_GUARD,
                        frame_index,
                        ref,
                        t.score,
                        iou,
                        f"implausible answer ({why}); re-anchored from the flow reference",
                    )
                )
                state.area, state.centroid, state.implausible_runs = float(ref.sum()), _centroid(ref), 0
        return decisions
