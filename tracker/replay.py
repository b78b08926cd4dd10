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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from tracker import metrics
from tracker.client import ClientResult, StreamSession, TrackerClient
from tracker.convert import default_budget_ms
from tracker.io.readers import open_sequence, read_mask_file
from tracker.io.sequence import Sequence
from tracker.io.writers import write_predictions
from tracker.types import FrameStatus, MaskPrompt, ObjectPrompt, SessionConfig

logger = logging.getLogger(__name__)

Rate = Literal["realtime", "max"]


@dataclass(frozen=True)
class ReplayOptions:
    rate: Rate = "max"
    engine: str = ""  # empty: the server's default
    engine_options: dict[str, str] = field(default_factory=dict)
    latency_budget_ms: float | None = None  # None: 1000 ms for cine-MRI, one frame interval for video
    out_masks: Path | None = None
    first_mask: Path | None = None
    frame_rate_hz: float | None = None  # override for sources that do not state it
    progress: bool = True


@dataclass
class FrameRecord:
    index: int
    status: FrameStatus
    end_to_end_ms: float
    server_ms: float
    message: str = ""


@dataclass
class CaseResult:
    sequence: Sequence
    records: list[FrameRecord]
    predictions: np.ndarray  # (T, H, W) integer label maps
    scores: dict[int, metrics.SequenceScores]  # per object id, where ground truth exists
    budget_ms: float

    def report(self) -> dict[str, object]:
        return case_report(self)


def percentiles(values: Seq[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of ``values`` (None when there are none)."""
    if len(values) == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}


def session_config_for(sequence: Sequence, options: ReplayOptions) -> SessionConfig:
    prompt = sequence.prompt_label()
    if prompt is None:
        raise ValueError(f"{sequence.name}: no first-frame mask to prompt with (give --first-mask)")
    objects = tuple(
        ObjectPrompt(object_id, MaskPrompt(prompt == object_id), "target")
        for object_id in sequence.object_ids()
    )
    if not objects:
        raise ValueError(f"{sequence.name}: the first-frame mask is empty")
    budget = options.latency_budget_ms or default_budget_ms(sequence.modality, sequence.frame_rate_hz)
    return SessionConfig(
        modality=sequence.modality,
        engine=options.engine,
        engine_options=dict(options.engine_options),
        objects=objects,
        latency_budget_ms=budget,
        frame_rate_hz=sequence.frame_rate_hz,
        geometry=sequence.geometry,
        image_size=sequence.shape_hw,
        client_name="tracker replay",
    )


def _label_map(answer: ClientResult, shape: tuple[int, int]) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint16)
    for obj in answer.result.objects:
        label[obj.mask] = obj.object_id
    return label


def _stream(session: StreamSession, sequence: Sequence, rate: Rate, bar: tqdm) -> list[ClientResult]:
    """Send every frame and collect exactly one answer per frame, in index order."""
    n = len(sequence)
    answers: dict[int, ClientResult] = {}
    if rate == "max":
        for i in range(n):
            session.send_frame(np.asarray(sequence.frames[i]), i, sequence.timestamp(i))
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
    for i, answer in enumerate(answers):
        result = answer.result
        if result.status in (FrameStatus.OK, FrameStatus.LATE):
            held = _label_map(answer, shape)
        predictions[i] = held
        records.append(
            FrameRecord(i, result.status, answer.end_to_end_ms, result.timing.total_ms, result.message)
        )
    scores = score_predictions(sequence, predictions)
    return CaseResult(sequence, records, predictions, scores, config.latency_budget_ms)


def score_predictions(sequence: Sequence, predictions: np.ndarray) -> dict[int, metrics.SequenceScores]:
    """TrackRAD-style scores per object (frame 0 excluded); empty without ground truth."""
    if sequence.labels is None:
        return {}
    labels = np.asarray(sequence.labels)
    return {
        object_id: metrics.score_sequence(
            predictions == object_id, labels == object_id, sequence.geometry.spacing_mm
        )
        for object_id in sequence.object_ids()
    }


def _mean_or_none(values: Seq[float]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


METRIC_KEYS = ("dice_mean", "hd95_mm_mean", "msd_mm_mean", "centroid_mm_mean", "j_mean")


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
    }
    for key in METRIC_KEYS:
        report[key] = _mean_or_none([d[key] for d in per_object.values()])
    report["latency_ms"] = percentiles([r.end_to_end_ms for r in answered])
    report["server_ms"] = percentiles([r.server_ms for r in answered])
    report["objects"] = {str(k): v for k, v in per_object.items()}
    report["per_frame"] = [
        {"index": r.index, "status": r.status.value, "latency_ms": r.end_to_end_ms, "server_ms": r.server_ms}
        for r in case.records
    ]
    return report


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
    return summary


@contextmanager
def connect(server: str | None, engine: str, engine_options: dict[str, str]) -> Iterator[TrackerClient]:
    """A client for ``server``, or for a server started in-process on a free loopback port."""
    if server:
        with TrackerClient(server) as client:
            client.wait_ready()
            yield client
        return
    from engines import create_engine
    from tracker.server.app import start_server

    name = engine or "flow"
    running = start_server({name: create_engine(name, engine_options)}, host="127.0.0.1", port=0)
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
    results: list[CaseResult] = []
    cases: list[dict[str, object]] = []
    with connect(server, options.engine, options.engine_options) as client:
        for sequence in tqdm(
            sequences, desc="replay", unit="case", disable=not options.progress or len(sequences) < 2
        ):
            result = replay_sequence(client, sequence, options)
            results.append(result)
            cases.append(case := result.report())
            if options.out_masks is not None:
                write_predictions(options.out_masks, sequence, result.predictions)
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
        },
    }
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2))
    return report, results


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"
