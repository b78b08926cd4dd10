"""Replay recorded sequences through the real gRPC API and score them.

Two pacing modes:

* ``max``: each frame is sent as soon as the previous answer arrives, so a
  validation replay never drops a frame and every frame is scored on its own
  prediction.
* ``realtime``: frames are sent at their acquisition times whatever the
  answers (open loop, as a scanner would), so the report counts what the
  server drops or answers late.

Frames answered ``DROPPED`` or ``ERROR`` carry no mask; for scoring they hold
the last answered mask, which is what a console would still be showing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tracker.client import ClientResult, StreamSession, TrackerClient
from tracker.client.connect import is_loopback_address
from tracker.convert import default_budget_ms
from tracker.engines import create_engine
from tracker.gating.reference import boundary_region, planned_reference
from tracker.gating.types import GatingConfig
from tracker.io.challenge_layout import PredictionWriter
from tracker.io.readers import open_sequence, read_mask_file
from tracker.io.sequence import Sequence
from tracker.lab.provenance import provenance
from tracker.lab.replay.gating_report import confidence_block, gating_blocks, pooled_confidence, worst_cases
from tracker.lab.replay.records import CaseResult, FrameRecord, Rate, ReplayOptions
from tracker.lab.scoring import davis, metrics
from tracker.lab.scoring import objects as overseer_scoring
from tracker.lab.scoring.challenge import challenge_scores
from tracker.masks import centroid_of
from tracker.overseer.build import ORACLE_OPTION, wrap_engine
from tracker.overseer.policy import PolicyConfig
from tracker.server.app import start_server
from tracker.timing import percentiles
from tracker.types import FrameStatus, MaskPrompt, Modality, ObjectPrompt, SessionConfig

logger = logging.getLogger(__name__)


def session_config_for(sequence: Sequence, options: ReplayOptions) -> SessionConfig:
    prompt = sequence.prompt_label()
    if prompt is None:
        raise ValueError(f"{sequence.name}: no first-frame mask to prompt with (give --first-mask)")
    classes = _instance_classes(sequence)
    references, window = _planned_references(sequence, options)
    objects = tuple(
        ObjectPrompt(
            object_id,
            MaskPrompt(prompt == object_id),
            classes.get(object_id, "target"),
            references.get(object_id),
        )
        for object_id in sequence.object_ids()
    )
    if not objects:
        raise ValueError(f"{sequence.name}: the first-frame mask is empty")
    budget = options.latency_budget_ms or default_budget_ms(sequence.modality, sequence.frame_rate_hz)
    engine_options = dict(options.engine_options)
    if options.overseer == "oracle":
        engine_options[ORACLE_OPTION] = str(sequence.source_path or "")
    return SessionConfig(
        modality=sequence.modality,
        engine=options.engine,
        engine_options=engine_options,
        objects=objects,
        latency_budget_ms=budget,
        budget_policy=options.budget_policy,
        frame_rate_hz=sequence.frame_rate_hz,
        geometry=sequence.geometry,
        image_size=sequence.shape_hw,
        client_name="tracker replay",
        gating=None
        if options.gating_margin_mm is None
        else GatingConfig(
            margin_mm=options.gating_margin_mm,
            beam_latency_ms=options.beam_latency_ms,
            horizon_ms=options.prediction_horizon_ms,
            predictor=options.predictor,
            rule=options.gating_rule,
            window_mask=window,
            min_inside_fraction=options.min_inside_fraction,
            **({} if options.gating_guard_mm is None else {"guard_mm": options.gating_guard_mm}),
            **{
                k: v
                for k in ("min_confidence", "guard_sigmas", "confidence_error_mm", "min_checked_forecasts")
                if (v := getattr(options, k)) is not None
            },
        ),
    )


def _planned_references(
    sequence: Sequence, options: ReplayOptions
) -> tuple[dict[int, tuple[float, float, float]], np.ndarray | None]:
    """End-exhale gating: each object's true centroid on the reference image, and the mask rule's
    boundary (their true masks there, expanded by the margin). Empty for the first-frame reference,
    where the gate takes its first confident position, as it does without a plan."""
    if options.gating_margin_mm is None or options.gating_reference == "first_frame":
        return {}, None
    if sequence.labels is None:
        raise ValueError(
            f"{sequence.name}: gating reference {options.gating_reference!r} needs ground-truth labels"
            " (the planner's reference image)"
        )
    labels = np.asarray(sequence.labels)
    times = np.array([sequence.timestamp(i) for i in range(len(sequence))])
    ids = sequence.object_ids()
    first = planned_reference(labels, ids[0], sequence.geometry, times, options.gating_reference)
    on_image = labels[first.frame_index]
    references = {
        oid: sequence.geometry.pixel_to_mm(*c)
        for oid in ids
        if (c := centroid_of(on_image == oid)) is not None
    }
    window = None
    if options.gating_rule == "mask":
        window = boundary_region(
            np.isin(on_image, ids), options.gating_margin_mm, sequence.geometry.spacing_mm
        )
    return references, window


def _instance_classes(sequence: Sequence) -> dict[int, str]:
    """Class name per instance id, from the sequence's COCO ``annotations.json`` ({} without one)."""
    if "instance_classes" not in sequence.metadata:
        sequence.metadata["instance_classes"] = _read_instance_classes(sequence)
    return sequence.metadata["instance_classes"]  # type: ignore[return-value]


def _read_instance_classes(sequence: Sequence) -> dict[int, str]:
    from tracker.overseer.coco import instance_classes

    try:
        return instance_classes(sequence.source_path)
    except (ValueError, KeyError, OSError) as exc:
        logger.warning("%s: unreadable annotations.json (%s); objects have no class", sequence.name, exc)
        return {}


def _label_map(answer: ClientResult, shape: tuple[int, int]) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint16)
    for obj in answer.result.objects:
        label[obj.mask] = obj.object_id
    return label


def _read_frame(sequence: Sequence, index: int) -> np.ndarray:
    return np.asarray(sequence.frames[index])


def _stream(session: StreamSession, sequence: Sequence, rate: Rate, bar: tqdm) -> list[ClientResult]:
    """Send every frame and collect exactly one answer per frame, in index order."""
    n = len(sequence)
    answers: dict[int, ClientResult] = {}
    if rate == "max":
        # The next frame is read (a JPEG decoded, say) while this one is computed, as a camera
        # has its frame ready when it sends it: read in the loop, it would delay every send
        # against the frame's timestamp, and the server counts that delay against its budget.
        with ThreadPoolExecutor(1, thread_name_prefix="replay-reader") as reader:
            upcoming = reader.submit(_read_frame, sequence, 0)
            for i in range(n):
                session.send_frame(upcoming.result(), i, sequence.timestamp(i))
                if i + 1 < n:
                    upcoming = reader.submit(_read_frame, sequence, i + 1)
                answer = session.recv_frame()
                answers[answer.result.frame_index] = answer
                bar.update(1)
    else:
        failure: list[BaseException] = []

        def send() -> None:
            start = time.monotonic()
            try:
                for i in range(n):
                    delay = start + sequence.timestamp(i) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    session.send_frame(np.asarray(sequence.frames[i]), i, sequence.timestamp(i))
            except BaseException as exc:  # surfaced below, not lost in the thread
                failure.append(exc)

        sender = threading.Thread(target=send, name="replay-sender", daemon=True)
        sender.start()
        while len(answers) < n and not failure:
            answer = session.recv_frame()
            answers[answer.result.frame_index] = answer
            bar.update(1)
        sender.join()
        if failure:
            raise failure[0]
    if sorted(answers) != list(range(n)):
        missing = sorted(set(range(n)) - set(answers))
        raise RuntimeError(f"{sequence.name}: frames without an answer: {missing[:10]}")
    return [answers[i] for i in range(n)]


def replay_sequence(client: TrackerClient, sequence: Sequence, options: ReplayOptions) -> CaseResult:
    config = session_config_for(sequence, options)
    shape = sequence.shape_hw
    with tqdm(
        total=len(sequence), desc=sequence.name, unit="frame", disable=not options.progress, leave=False
    ) as bar:
        session = client.open_session(config)
        try:
            answers = _stream(session, sequence, options.rate, bar)
        except BaseException:
            session.cancel()
            raise
        session.close()
    predictions = np.zeros((len(sequence), *shape), dtype=np.uint16)
    held = np.zeros(shape, dtype=np.uint16)
    records = []
    # A loopback server stamps receipt with this machine's wall clock: the send time on the same
    # clock tells the time a frame took to reach the server apart from the server's own.
    wall_offset_s = time.time() - time.monotonic() if is_loopback_address(client.address) else None
    for i, answer in enumerate(answers):
        result = answer.result
        if result.status in (FrameStatus.OK, FrameStatus.LATE):
            held = _label_map(answer, shape)
        predictions[i] = held
        positions = {
            o.object_id: (o.centroid_mm, o.predicted_mm, o.prediction_horizon_ms)
            for o in result.objects
            if o.centroid_mm is not None and o.present
        }
        records.append(
            FrameRecord(
                i,
                result.status,
                answer.end_to_end_ms,
                result.timing.total_ms,
                result.message,
                list(result.reprompts),
                result.gating.state if result.gating is not None else None,
                positions,
                {o.object_id: o.confidence for o in result.objects if o.confidence is not None},
                result.gating.cause if result.gating is not None else "",
                result.gating.guard_mm if result.gating is not None else 0.0,
                list(result.degradations),
                _to_server_ms(answer, wall_offset_s),
            )
        )
    scores, outcomes = score_objects(sequence, predictions)
    result = CaseResult(sequence, records, predictions, scores, config.latency_budget_ms, outcomes)
    result.gating_margin_mm = options.gating_margin_mm
    result.options = options
    return result


def _to_server_ms(answer: ClientResult, wall_offset_s: float | None) -> float | None:
    received = answer.result.timing.receive_time_s
    if wall_offset_s is None or answer.local or received <= 0:
        return None
    return (received - (answer.sent_mono + wall_offset_s)) * 1000.0


def score_predictions(sequence: Sequence, predictions: np.ndarray) -> dict[int, metrics.SequenceScores]:
    """TrackRAD-style scores per object (frame 0 excluded); empty without ground truth."""
    return score_objects(sequence, predictions)[0]


def score_objects(
    sequence: Sequence, predictions: np.ndarray
) -> tuple[dict[int, metrics.SequenceScores], dict[int, overseer_scoring.ObjectOutcome]]:
    """Scores and entry/exit outcomes per ground-truth object (every object of every frame).

    Tracks prompted from the ground truth keep its ids; tracks added later (by an
    overseer) are associated with the object they overlap most, and an object no
    track covers scores J = 0 on that frame (see :mod:`tracker.lab.scoring.objects`).
    With only prompted objects this is exactly the per-id scoring of before.
    """
    if sequence.labels is None:
        return {}, {}
    labels = np.asarray(sequence.labels)
    return overseer_scoring.score_objects(
        predictions, labels, sequence.object_ids(), sequence.geometry.spacing_mm, _instance_classes(sequence)
    )


def _mean_or_none(values: Seq[float]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


# Each case's means of its objects' scores over every frame after the prompt (1..T-1): report key ->
# the per-object key. J is ``j_mean_after_prompt`` here, apart from the DAVIS block's ``davis.j_mean``
# (the toolkit's frames 1..T-2), so that neither is quoted for the other.
METRIC_KEYS = {
    "dice_mean": "dice_mean",
    "hd95_mm_mean": "hd95_mm_mean",
    "msd_mm_mean": "msd_mm_mean",
    "centroid_mm_mean": "centroid_mm_mean",
    "j_mean_after_prompt": "j_mean",
}


def case_report(case: CaseResult) -> dict[str, object]:
    statuses = [r.status for r in case.records]
    answered = [r for r in case.records if r.status in (FrameStatus.OK, FrameStatus.LATE)]
    per_object = {oid: s.as_dict() for oid, s in case.scores.items()}
    report: dict[str, object] = {
        "name": case.sequence.name,
        "path": str(case.sequence.source_path or ""),
        "kind": case.sequence.kind,
        "modality": case.sequence.modality.value,
        "frame_rate_hz": case.sequence.frame_rate_hz,
        "budget_ms": case.budget_ms,
        "frames": len(case.records),
        "dropped": statuses.count(FrameStatus.DROPPED),
        "late": statuses.count(FrameStatus.LATE),
        "errors": statuses.count(FrameStatus.ERROR),
        "degraded": sum(1 for r in case.records if r.degradations),  # answered with accuracy traded
    }
    for key, object_key in METRIC_KEYS.items():
        report[key] = _mean_or_none([d[object_key] for d in per_object.values()])
    report["latency_ms"] = percentiles([r.end_to_end_ms for r in answered])
    report["server_ms"] = percentiles([r.server_ms for r in answered])
    for oid, outcome in case.outcomes.items():
        if oid in per_object:
            per_object[oid] = {**per_object[oid], **_outcome_fields(outcome)}  # type: ignore[dict-item]
    report["objects"] = {str(k): v for k, v in per_object.items()}
    events = [(r.index, e) for r in case.records for e in r.reprompts]
    labels = None if case.sequence.labels is None else np.asarray(case.sequence.labels)
    report["reprompts"] = overseer_scoring.reprompt_rows(case.predictions, labels, case.outcomes, events)
    report["per_class_j"] = overseer_scoring.per_class_j(
        [(o.label, case.scores[oid].iou_mean) for oid, o in case.outcomes.items() if oid in case.scores]
    )
    report["entry_delay"] = overseer_scoring.delay_summary(
        [o.entry_delay for o in case.outcomes.values() if o.enter_frame is not None]
    )
    report["exit_delay"] = overseer_scoring.delay_summary(
        [o.exit_delay for o in case.outcomes.values() if o.exit_frame is not None]
    )
    report.update(cine_blocks(case))
    if (scores := davis_scores_of(case)) is not None:
        report["davis"] = scores.as_dict()
    confidence = confidence_block(case)
    if confidence:
        report["confidence"] = confidence
    first = case.scores.get(case.sequence.object_ids()[0]) if case.sequence.object_ids() else None
    dice_at = (
        {} if first is None else dict(zip(first.frame_indices, (f.dice for f in first.frames), strict=True))
    )
    report["per_frame"] = [
        {"index": r.index, "status": r.status.value, "latency_ms": r.end_to_end_ms, "server_ms": r.server_ms}
        | ({"to_server_ms": r.to_server_ms} if r.to_server_ms is not None else {})
        | (
            {"beam": r.beam.value, "cause": r.hold_cause, "guard_mm": r.guard_mm}
            if r.beam is not None
            else {}
        )
        | ({"confidence": next(iter(r.confidences.values()))} if r.confidences else {})
        | ({"dice": dice_at[r.index]} if r.index in dice_at else {})
        for r in case.records
    ]
    return report


def davis_scores_of(case: CaseResult) -> davis.DavisScores | None:
    """davis2017-evaluation's J, F and J&F for video input with ground truth (None otherwise)."""
    sequence = case.sequence
    if sequence.modality is Modality.CINE_MRI or sequence.labels is None:
        return None
    return davis.score_sequence(case.predictions, sequence.labels, sequence.object_ids())


def cine_blocks(case: CaseResult) -> dict[str, object]:
    """Cine-MRI with ground truth: the challenge's numbers (dose metric included) and gating."""
    seq = case.sequence
    if seq.modality is not Modality.CINE_MRI or seq.labels is None or not seq.object_ids():
        return {"relative_d98_mean": None}  # a dose metric means nothing for video
    oid = seq.object_ids()[0]
    region = seq.metadata.get("scanned_region")
    challenge = challenge_scores(
        case.predictions == oid,
        np.asarray(seq.labels) == oid,
        dose=True,
        scanned_region=str(region) if region is not None else None,
    )
    out: dict[str, object] = {
        "challenge": {
            k: v for k, v in challenge.as_dict().items() if k not in ("dice_per_frame", "frame_indices")
        },
        "relative_d98_mean": challenge.relative_d98,
    }
    if case.options.challenge_mode:
        out.update(
            dice_mean=challenge.dice, hd95_mm_mean=challenge.hd95_px, centroid_mm_mean=challenge.centroid_px
        )
    blocks = gating_blocks(case, case.options.gating_rule, case.options.min_inside_fraction)
    blocks.pop("oracle_beam", None)
    out.update(blocks)
    return out


def summary_report(cases: list[dict[str, object]], records: list[FrameRecord]) -> dict[str, object]:
    """Totals, the mean of the per-case metric means (each case weighs the same), pooled latencies."""
    summary: dict[str, object] = {
        "cases": len(cases),
        **{key: sum(int(c[key]) for c in cases) for key in ("frames", "dropped", "late", "errors")},  # type: ignore[call-overload]
    }
    for key in METRIC_KEYS:
        summary[key] = _mean_or_none([c[key] for c in cases])  # type: ignore[misc]
    answered = [r for r in records if r.status in (FrameStatus.OK, FrameStatus.LATE)]
    summary["latency_ms"] = percentiles([r.end_to_end_ms for r in answered])
    summary["server_ms"] = percentiles([r.server_ms for r in answered])
    # Overseer view: decisions, J per object pooled over cases, per class, entry/exit delays.
    summary["reprompts"] = sum(len(c.get("reprompts", [])) for c in cases)  # type: ignore[arg-type]
    summary["false_reprompts"] = sum(
        1
        for c in cases
        for e in c.get("reprompts", [])
        if e.get("lowered_j")  # type: ignore[attr-defined]
    )
    objects = [o for c in cases for o in c.get("objects", {}).values()]  # type: ignore[union-attr]
    summary["j_mean_objects"] = _mean_or_none([o["j_mean"] for o in objects])
    summary["per_class_j"] = overseer_scoring.per_class_j(
        [(o.get("class", ""), o["j_mean"]) for o in objects]
    )
    summary["entry_delay"] = overseer_scoring.delay_summary(
        [o["entry_delay"] for o in objects if o.get("enter_frame") is not None]
    )
    summary["exit_delay"] = overseer_scoring.delay_summary(
        [o["exit_delay"] for o in objects if o.get("exit_frame") is not None]
    )
    summary["relative_d98_mean"] = _mean_or_none([c.get("relative_d98_mean") for c in cases])  # type: ignore[misc]
    scored = [o for c in cases for o in c.get("davis", {}).get("objects", {}).values()]  # type: ignore[union-attr]
    if scored:  # the toolkit's global means: over every object of every sequence
        j, f = _mean_or_none([o["j_mean"] for o in scored]), _mean_or_none([o["f_mean"] for o in scored])
        summary["davis"] = {"objects": len(scored), "j_mean": j, "f_mean": f, "j_and_f_mean": (j + f) / 2}  # type: ignore[operator]
    gated = [c for c in cases if "gating" in c]
    if gated:  # the mean over cases of each case's figure (each case weighs the same)
        gating: dict[str, float | None] = {
            key: _mean_or_none([c["gating"][key] for c in gated])  # type: ignore[index]
            for key in (
                "beam_on_fraction",
                "beam_on_outside_fraction",
                "beam_hold_inside_fraction",
                "beam_off_latency_ms",
                "duty_cycle",
                "oracle_duty_cycle",
                "duty_vs_oracle",
            )
        }
        # Pooled as well: every oracle beam-on frame weighs the same, whatever its case's length.
        on = sum(int(c["gating"]["beam_on_frames"]) for c in gated)  # type: ignore[index]
        oracle_on = sum(int(c["gating"]["oracle_on_frames"]) for c in gated)  # type: ignore[index]
        gating["duty_vs_oracle_pooled"] = on / oracle_on if oracle_on else None
        summary["gating"] = gating
        summary["prediction"] = {
            key: _mean_or_none([c["prediction"][key] for c in gated])  # type: ignore[index]
            for key in ("horizon_ms_median", "error_mm_mean", "no_prediction_error_mm_mean")
        }
    challenged = [c["challenge"] for c in cases if "challenge" in c]
    if challenged:
        summary["challenge"] = {
            key: _mean_or_none([c[key] for c in challenged])  # type: ignore[index]
            for key in ("dice", "hd95_px", "asd_px", "msd_symmetric_px", "centroid_px", "relative_d98")
        }
    confidence = pooled_confidence(cases)
    if confidence:
        summary["confidence"] = confidence
    summary["worst"] = worst_cases(cases)
    return summary


def _outcome_fields(outcome: overseer_scoring.ObjectOutcome) -> dict[str, object]:
    return {
        "class": outcome.label,
        "track_ids": outcome.track_ids,
        "enter_frame": outcome.enter_frame,
        "entry_delay": outcome.entry_delay,
        "exit_frame": outcome.exit_frame,
        "exit_delay": outcome.exit_delay,
    }


@contextmanager
def connect(
    server: str | None,
    engine: str,
    engine_options: dict[str, str],
    overseer: str = "",
    overseer_options: dict[str, str] | None = None,
) -> Iterator[TrackerClient]:
    """A client for ``server``, or for a server started in-process on a free loopback port.

    ``overseer`` wraps the in-process engine (see :mod:`tracker.overseer.build`); a
    remote server must have been started with its own overseer instead.
    """
    if server and overseer:
        raise ValueError(
            f"--overseer {overseer} needs the in-process server: the oracle reads this machine's"
            " annotations and a detector must run inside the server; drop --server, or start the"
            " remote server with its overseer (tracker serve --overseer ...)"
        )
    if server:
        with TrackerClient(server) as client:
            client.wait_ready()
            yield client
        return

    name = engine or "flow"
    served = create_engine(name, engine_options)
    if overseer:
        policy = PolicyConfig.from_options(dict(overseer_options or {}))
        served = wrap_engine(served, overseer, policy, allow_oracle_paths=True)
    running = start_server({name: served}, host="127.0.0.1", port=0)
    try:
        with TrackerClient(running.address) as client:
            yield client
    finally:
        running.stop(grace_s=1.0)


def replay(
    paths: Seq[Path | str],
    options: ReplayOptions,
    server: str | None = None,
    report_path: Path | None = None,
) -> tuple[dict[str, object], list[CaseResult]]:
    """Replay each sequence in ``paths``; write the JSON report and masks where asked."""
    first_mask = read_mask_file(options.first_mask) if options.first_mask else None
    sequences = [
        open_sequence(Path(path), frame_rate_hz=options.frame_rate_hz, first_mask=first_mask)
        for path in paths
    ]
    writer = None
    if options.out_masks is not None:
        writer = PredictionWriter(options.out_masks, options.out_masks_layout)
        for sequence in sequences:
            writer.check(sequence)  # before anything is replayed
    results: list[CaseResult] = []
    cases: list[dict[str, object]] = []
    started = provenance()  # taken when the run starts
    with connect(
        server, options.engine, options.engine_options, options.overseer, options.overseer_options
    ) as client:
        for sequence in tqdm(
            sequences, desc="replay", unit="case", disable=not options.progress or len(sequences) < 2
        ):
            case_started = datetime.now(UTC)
            result = replay_sequence(client, sequence, options)
            case_completed = datetime.now(UTC)
            results.append(result)
            cases.append(case := case_report(result))
            if writer is not None:
                writer.write(sequence, result.predictions, case_started, case_completed)
            logger.info(
                "%s: %d frames, dice %s, dropped %d, late %d",
                sequence.name, len(sequence), _fmt(case["dice_mean"]), case["dropped"], case["late"],
            )  # fmt: skip
    report = {
        "cases": cases,
        "summary": summary_report(cases, [rec for r in results for rec in r.records]),
        "settings": {
            "rate": options.rate,
            "engine": options.engine or "flow",
            "server": server or "in-process",
            "overseer": options.overseer or None,
            "overseer_options": dict(options.overseer_options),
            "gating_margin_mm": options.gating_margin_mm,
            "gating_rule": options.gating_rule,
            "gating_reference": options.gating_reference,
            "min_inside_fraction": options.min_inside_fraction,
            "min_confidence": options.min_confidence,
            "guard_sigmas": options.guard_sigmas,
            "challenge_mode": options.challenge_mode,
            "out_masks_layout": options.out_masks_layout if options.out_masks is not None else None,
        },
        "provenance": started,
    }
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2))
    return report, results


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"
