"""``tracker live``: stream a live source through the tracker, watch it, record it.

Two threads share one session opened with ``send_policy="latest"``. The
*capture* thread reads the source at its own rate and hands each frame to the
session, which never queues more than one unsent frame: when the send path is
behind, the older frame is replaced and answered locally as ``DROPPED``
(counted as skipped), the same latest-frame-wins rule the server applies. The
*results* thread takes every answer in turn and feeds the web view, the
recording and the statistics, so a slow consumer never slows the capture.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tracker.client import ClientResult, StreamSession, TrackerClient, TrackerError
from tracker.client.sync_failover import FailoverSession
from tracker.convert import default_budget_ms
from tracker.io.readers import read_mask_file
from tracker.lab.live.source import FrameSource, open_source
from tracker.lab.live.view import ViewServer, ViewState, start_view
from tracker.lab.report.viz import overlay
from tracker.timing import percentiles
from tracker.types import (
    BoxPrompt,
    FrameStatus,
    MaskPrompt,
    Modality,
    ObjectPrompt,
    PointsPrompt,
    PromptAck,
    SessionConfig,
)

logger = logging.getLogger(__name__)

MAX_HELD_FRAMES = 256  # frames kept for drawing until their answer arrives


@dataclass(frozen=True)
class LiveOptions:
    """Everything ``tracker live`` takes besides the source."""

    server: str | None = None  # HOST:PORT; None: an in-process server on loopback
    engine: str = ""
    engine_options: dict[str, str] = field(default_factory=dict)
    prompt_box: tuple[float, float, float, float] | None = None  # x, y, w, h in pixels
    prompt_mask: Path | None = None
    prompt_click: bool = False
    label: str = "target"
    record: Path | None = None
    view: bool = False
    view_host: str = "127.0.0.1"
    view_port: int = 0
    max_frames: int | None = None
    duration_s: float | None = None
    frame_rate_hz: float | None = None  # override the source's rate
    latency_budget_ms: float | None = None  # None: the modality's default
    modality: Modality | None = None
    root_certificates: Path | None = None
    token: str | None = None
    # Re-open through the same address (a proxy) when the session's replica dies or
    # drains; the frames of the gap are answered LOST (tracker.client.failover).
    failover: bool = False
    # An answer older than this after its frame was read is stale: its BEAM_ON is held.
    max_answer_age_ms: float | None = None  # None: the session's budget


@dataclass
class LiveSummary:
    """What happened, for the log line at the end and for tests."""

    source: str
    frames_read: int = 0  # frames handed to the session
    frames_transmitted: int = 0  # frames that went out to the server
    frames_skipped: int = 0  # replaced on the client before they went out
    statuses: dict[str, int] = field(default_factory=dict)  # every answer, local ones included
    answered_indices: list[int] = field(default_factory=list)
    server_answers: int = 0
    local_answers: int = 0  # DROPPED answers the client gave to frames it skipped
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # end to end, OK/LATE answers
    budget_ms: float = 0.0
    recorded_frames: int = 0
    record_path: str | None = None
    view_url: str | None = None
    error: str | None = None
    failovers: list[dict[str, object]] = field(default_factory=list)  # with --failover
    # answers older than the session's max_answer_age_ms, and the BEAM_ONs the client held for it
    stale_answers: int = 0
    stale_holds: int = 0

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data.pop("answered_indices")
        return data


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``x,y,w,h`` in pixels."""
    parts = [p.strip() for p in text.split(",")]
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--prompt-box expects x,y,w,h in pixels, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"--prompt-box needs a positive width and height, got {text!r}")
    return x, y, w, h


def initial_objects(options: LiveOptions, source: FrameSource) -> tuple[ObjectPrompt, ...]:
    """The session's first prompts: a box, a mask file's objects, or the recording's own first mask."""
    if options.prompt_box is not None:
        x, y, w, h = options.prompt_box
        return (ObjectPrompt(1, BoxPrompt(x, y, x + w, y + h), options.label),)
    label = read_mask_file(options.prompt_mask) if options.prompt_mask else source.prompt_label()
    if label is None:
        if options.prompt_click:
            return ()
        raise ValueError(
            f"{source.name}: nothing to track: give --prompt-box, --prompt-mask or --prompt-click"
        )
    ids = [int(v) for v in np.unique(label) if v != 0]
    if not ids:
        raise ValueError("the prompt mask is empty")
    return tuple(ObjectPrompt(i, MaskPrompt(label == i), options.label) for i in ids)


class Recorder:
    """Writes overlaid frames in index order (answers can arrive out of order), with a caption."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 10.0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._pending: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
        self._next = 0
        self.frames_written = 0

    def add(self, index: int, frame: np.ndarray, labels: np.ndarray, caption: str) -> None:
        self._pending[index] = (frame, labels, caption)
        while self._next in self._pending:
            self._write(*self._pending.pop(self._next))
            self._next += 1
        if len(self._pending) > MAX_HELD_FRAMES:  # an answer never came: skip the gap
            self._next = min(self._pending)
            self.add(self._next, *self._pending.pop(self._next))

    def _write(self, frame: np.ndarray, labels: np.ndarray, caption: str) -> None:
        bgr = cv2.cvtColor(overlay(frame, labels, caption=caption), cv2.COLOR_RGB2BGR)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (bgr.shape[1], bgr.shape[0])
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise ValueError(f"{self.path}: OpenCV cannot write this video (mp4v)")
        if (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size)
        self._writer.write(bgr)
        self.frames_written += 1

    def close(self) -> None:
        for index in sorted(self._pending):
            self._write(*self._pending.pop(index))
        if self._writer is not None:
            self._writer.release()


@contextlib.contextmanager
def _connect(options: LiveOptions) -> Iterator[TrackerClient]:
    if options.server:
        with TrackerClient(
            options.server, root_certificates=options.root_certificates, token=options.token
        ) as client:
            client.wait_ready()
            yield client
        return
    from tracker.lab.replay import connect

    with connect(None, options.engine, options.engine_options) as client:
        yield client


class LiveRunner:
    """One ``tracker live`` run: :meth:`start`, then :meth:`wait` (or :meth:`stop`)."""

    def __init__(self, source: FrameSource | str | int | Path, options: LiveOptions) -> None:
        if options.prompt_click and not options.view:
            raise ValueError("--prompt-click needs --view (the clicks come from the web page)")
        self.options = options
        if not isinstance(source, FrameSource):
            source = open_source(source, options.frame_rate_hz)
        self.source = source
        if options.frame_rate_hz:
            self.source.frame_rate_hz = options.frame_rate_hz
        self.summary = LiveSummary(source=self.source.name, record_path=str(options.record or "") or None)
        self._stop = threading.Event()
        self._stack = contextlib.ExitStack()
        self._held: OrderedDict[int, np.ndarray] = OrderedDict()
        self._held_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._latencies: list[float] = []
        self._last_labels: np.ndarray | None = None
        self._ids_lock = threading.Lock()
        self.session: StreamSession | FailoverSession | None = None
        self.view: ViewServer | None = None
        self.recorder: Recorder | None = None

    @property
    def view_url(self) -> str | None:
        return self.view.url if self.view else None

    def start(self) -> LiveRunner:
        options, source = self.options, self.source
        try:
            modality = options.modality or source.modality
            budget = options.latency_budget_ms or default_budget_ms(modality, source.frame_rate_hz)
            objects = initial_objects(options, source)
            client = self._stack.enter_context(_connect(options))
            config = SessionConfig(
                modality=modality,
                engine=options.engine,
                engine_options=dict(options.engine_options),
                objects=objects,
                latency_budget_ms=budget,
                frame_rate_hz=source.frame_rate_hz,
                geometry=source.geometry,
                client_name="tracker live",
            )
            self.session = client.open_session(
                config,
                send_policy="latest",
                failover=options.failover,
                max_answer_age_ms=options.max_answer_age_ms,
            )
            self._stack.callback(self._end_session)
            self._next_object_id = max((o.object_id for o in objects), default=0) + 1
            self.summary.budget_ms = self.session.started.latency_budget_ms
            if options.record is not None:
                self.recorder = Recorder(options.record, source.frame_rate_hz)
            if options.view:
                state = ViewState(self.summary.budget_ms, click_enabled=options.prompt_click)
                self.view = start_view(state, options.view_host, options.view_port, self._on_click)
                self._stack.callback(self.view.stop)
                self.summary.view_url = self.view.url
        except BaseException:
            self._stack.close()
            source.close()
            raise
        logger.info(
            "live: %s at %.1f Hz, session %s, budget %.0f ms%s",
            source.name, source.frame_rate_hz, self.session.session_id, self.summary.budget_ms,
            f", view {self.view.url}" if self.view else "",
        )  # fmt: skip
        self._threads = [
            threading.Thread(target=self._capture, name="live-capture", daemon=True),
            threading.Thread(target=self._results, name="live-results", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _end_session(self) -> None:
        if self.session is not None:
            self.session.cancel()

    # -- capture -----------------------------------------------------------------------

    def _capture(self) -> None:
        options, source, session = self.options, self.source, self.session
        assert session is not None
        start = time.monotonic()
        rate = source.frame_rate_hz
        index = 0
        try:
            while not self._stop.is_set():
                if options.max_frames is not None and index >= options.max_frames:
                    break
                if options.duration_s is not None and time.monotonic() - start >= options.duration_s:
                    break
                if source.paced and rate > 0:
                    delay = start + index / rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                pixels = source.read()
                if pixels is None:
                    break
                with self._held_lock:
                    self._held[index] = pixels
                    while len(self._held) > MAX_HELD_FRAMES:
                        self._held.popitem(last=False)
                session.send_frame(pixels, index, time.monotonic() - start)
                index += 1
        except TrackerError as exc:
            self.summary.error = str(exc)
            logger.error("live: %s", exc)
        except Exception as exc:  # a source fault ends the run, reported, not swallowed by the thread
            self.summary.error = f"source failed: {type(exc).__name__}: {exc}"
            logger.exception("live: the source failed")
        finally:
            self.summary.frames_read = index
            with contextlib.suppress(TrackerError):
                session.done_writing()

    # -- results -----------------------------------------------------------------------

    def _results(self) -> None:
        session = self.session
        assert session is not None
        try:
            while (item := session.recv(timeout_s=None)) is not None:
                if isinstance(item, ClientResult):
                    self._handle(item)
                elif isinstance(item, PromptAck):
                    logger.info("prompt update %d: %s", item.update_id, item.message)
        except TrackerError as exc:
            self.summary.error = str(exc)
            logger.error("live: %s", exc)
            self._stop.set()

    def _handle(self, answer: ClientResult) -> None:
        result = answer.result
        summary = self.summary
        status = result.status.value
        summary.statuses[status] = summary.statuses.get(status, 0) + 1
        summary.answered_indices.append(result.frame_index)
        summary.server_answers += 0 if answer.local else 1
        summary.local_answers += 1 if answer.local else 0
        with self._held_lock:
            frame = self._held.pop(result.frame_index, None)
        answered = result.status in (FrameStatus.OK, FrameStatus.LATE)
        if answered:
            self._latencies.append(answer.end_to_end_ms)
        if frame is None:
            return
        if answered or self._last_labels is None or self._last_labels.shape != frame.shape[:2]:
            labels = np.zeros(frame.shape[:2], dtype=np.uint16)
            for obj in result.objects if answered else []:
                labels[obj.mask] = obj.object_id
            self._last_labels = labels
        labels = self._last_labels  # DROPPED/ERROR: what a console would still be showing
        if self.recorder is not None:
            source = " (client)" if answer.local else ""
            caption = f"frame {result.frame_index}  {status}{source}  {answer.end_to_end_ms:.0f} ms"
            self.recorder.add(result.frame_index, frame, labels, caption)
        if self.view is not None:
            self.view.state.publish(self._event(answer), frame, labels)

    def _event(self, answer: ClientResult) -> dict[str, object]:
        result, session, statuses = answer.result, self.session, self.summary.statuses
        assert session is not None
        return {
            "frame_index": result.frame_index,
            "status": result.status.value,
            "message": result.message,
            "local": answer.local,
            "end_to_end_ms": answer.end_to_end_ms,
            "server_ms": result.timing.total_ms,
            "budget_ms": self.summary.budget_ms,
            "width": int(self._last_labels.shape[1]) if self._last_labels is not None else 0,
            "height": int(self._last_labels.shape[0]) if self._last_labels is not None else 0,
            "has_image": True,
            "frames_sent": session.frames_sent,
            "frames_skipped": session.frames_skipped,
            "dropped": statuses.get("DROPPED", 0),
            "late": statuses.get("LATE", 0),
            "stale": answer.stale,
            "stale_answers": session.stale_answers,
            "stale_holds": session.stale_holds,
            "objects": [
                {
                    "id": o.object_id,
                    "label": o.label,
                    "present": o.present,
                    "score": o.score,
                    "area_px": o.area_px,
                    "centroid_px": list(o.centroid_px) if o.centroid_px else None,
                    "centroid_mm": list(o.centroid_mm) if o.centroid_mm else None,
                }
                for o in result.objects
            ],
        }

    # -- clicks from the page ------------------------------------------------------------

    def _on_click(self, x: float, y: float) -> dict[str, object]:
        """A positive point prompt for a new object, sent as an add-object update."""
        session = self.session
        if session is None:
            return {"accepted": False, "message": "no session"}
        with self._ids_lock:
            object_id = self._next_object_id
            self._next_object_id += 1
        prompt = PointsPrompt(np.array([[x, y]], dtype=float), np.array([1]))
        try:
            ack = session.add_object(object_id, prompt, f"click {object_id}", timeout_s=10)
        except (TrackerError, TimeoutError) as exc:
            return {"accepted": False, "object_id": object_id, "message": str(exc)}
        logger.info("live: object %d added at (%.0f, %.0f)", object_id, x, y)
        message = f"tracking object {object_id}: {ack.message}"
        return {"accepted": True, "object_id": object_id, "message": message}

    # -- ending --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading the source; answers still in flight are collected by :meth:`wait`."""
        self._stop.set()

    def wait(self, timeout_s: float | None = None) -> LiveSummary:
        """Wait for the source to end (or :meth:`stop`), collect the last answers, release everything."""
        try:
            for thread in self._threads:
                thread.join(timeout_s)
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(10)
            if self.recorder is not None:
                self.recorder.close()
                self.summary.recorded_frames = self.recorder.frames_written
            if self.session is not None:
                self.summary.frames_transmitted = self.session.frames_sent
                self.summary.frames_skipped = self.session.frames_skipped
                self.summary.stale_answers = self.session.stale_answers
                self.summary.stale_holds = self.session.stale_holds
                if isinstance(self.session, FailoverSession):
                    self.summary.failovers = [
                        {
                            "old_session": e.old_session_id,
                            "new_session": e.new_session_id,
                            "cause": e.cause,
                            "lost_frames": list(e.lost_frames),
                            "gap_ms": round(e.gap_ms, 1),
                            "attempts": e.attempts,
                        }
                        for e in self.session.events
                    ]
            self.summary.latency_ms = percentiles(self._latencies, (50, 95))
            self._stack.close()
            self.source.close()
        return self.summary

    def run(self) -> LiveSummary:
        self.start()
        try:
            for thread in self._threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            logger.info("live: interrupted; collecting the last answers")
            self.stop()
        return self.wait()


def run_live(source: FrameSource | str | int | Path, options: LiveOptions | None = None) -> LiveSummary:
    """Run ``tracker live`` to the end of the source, ``max_frames`` or ``duration_s``."""
    return LiveRunner(source, options or LiveOptions()).run()
