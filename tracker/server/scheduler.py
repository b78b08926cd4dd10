"""Compute scheduling: which session's frame runs next, on which worker, with whom.

Sessions do not compute on their own gRPC threads. Each one hands its frame (with
the prompt updates already applied to its engine session, and its deadline) to
its engine's :class:`Scheduler`, and waits in its inbox for the outcome, still
free to send verdicts (``DROPPED``, ``LATE``) the moment they are decided.

:class:`EdfScheduler` runs a fixed set of worker threads sized to the device:

* **earliest deadline first** across sessions: a worker takes the queued job
  whose deadline comes first;
* **one frame per session at a time, in order**: a session submits its next
  frame only when the previous one is answered, so neither can be violated;
* **batching across streams** (Triton's dynamic batcher): jobs whose engine
  ``batch_key`` is equal (and not None) go into one ``step_batch`` call, up to
  ``max_batch``; a worker holding fewer may wait up to ``max_queue_delay_ms``
  for more, but never past the point where the earliest job in hand would miss
  its deadline.

Why threads and not processes: the per-frame hot paths of every engine run in
native code that releases the GIL (OpenCV's DIS flow and remap, torch operators,
ONNX Runtime sessions), so worker threads use every core while sharing one
copy of the model and each session's state without copying frames. The
libraries' own thread pools are sized so that workers x threads <= cores
(:func:`thread_budget`); otherwise N workers each spawning a pool per call
oversubscribe the cores, which is what throttled the per-session design.

:class:`InlineScheduler` is the per-session design kept for comparison
(``tracker serve --scheduler per-session``): the job runs on the submitting
session's own thread with the libraries' default thread pools.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from tracker.engines.base import Engine, EngineSession, StepOutput
from tracker.types import Frame

logger = logging.getLogger(__name__)

SCHEDULERS = ("edf", "per-session")


@dataclass(frozen=True)
class SchedulerConfig:
    """``tracker serve`` flags: ``--scheduler``, ``--workers``, ``--max-batch``, ``--max-queue-delay-ms``."""

    kind: str = "edf"  # "edf" or "per-session"
    workers: int | None = None  # None: the engine's default for this machine
    max_batch: int = 4
    max_queue_delay_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.kind!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"--max-queue-delay-ms must be >= 0, got {self.max_queue_delay_ms}")


@dataclass
class Completion:
    """What became of a job: the engine's output or its exception, and when it ran."""

    output: StepOutput | None
    error: Exception | None
    started_mono: float  # a worker took the job
    finished_mono: float  # the engine call returned
    batch_size: int  # frames in the engine call that computed this one


@dataclass(order=True)
class Job:
    """One frame of one session, ready to compute (its prompt updates are already applied)."""

    deadline_mono: float
    seq: int
    session: EngineSession = field(compare=False)
    frame: Frame = field(compare=False)
    done: Callable[[Completion], None] = field(compare=False)
    submitted_mono: float = field(compare=False, default=0.0)


@dataclass(frozen=True)
class SchedulerInfo:
    kind: str
    workers: int
    max_batch: int
    max_queue_delay_ms: float
    threads_per_worker: int


def cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_budget(workers: int, available: int | None = None) -> int:
    """Library threads per worker so that workers x threads <= cores (at least 1)."""
    return max(1, (available or cores()) // workers)


class Scheduler:
    """Runs jobs for the sessions of one engine. Thread-safe."""

    info: SchedulerInfo

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop taking jobs; jobs still queued complete with an error."""

    def _run(self, engine: Engine | None, jobs: list[Job]) -> None:
        """Run ``jobs`` as one engine call and complete each; never raises."""
        start = time.monotonic()
        try:
            if len(jobs) == 1:
                try:
                    outcomes: list[StepOutput | Exception] = [jobs[0].session.step(jobs[0].frame)]
                except Exception as exc:
                    outcomes = [exc]
            else:
                assert engine is not None  # only a batching scheduler makes batches
                outcomes = engine.step_batch([(j.session, j.frame) for j in jobs])
        except Exception as exc:  # a batch call that failed as a whole: every frame in it fails
            logger.exception("engine batch of %d failed", len(jobs))
            outcomes = [exc] * len(jobs)
        end = time.monotonic()
        if len(outcomes) != len(jobs):
            error = RuntimeError(f"engine returned {len(outcomes)} outcomes for a batch of {len(jobs)}")
            outcomes = [error] * len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            completion = Completion(
                output=outcome if isinstance(outcome, StepOutput) else None,
                error=outcome if isinstance(outcome, Exception) else None,
                started_mono=start,
                finished_mono=end,
                batch_size=len(jobs),
            )
            try:
                job.done(completion)
            except Exception:  # a session's callback must not take the worker down
                logger.exception("completion callback failed")


class InlineScheduler(Scheduler):
    """The per-session design: each job runs at once on the thread that submits it."""

    def __init__(self) -> None:
        self.info = SchedulerInfo("per-session", 0, 1, 0.0, cores())

    def submit(self, job: Job) -> None:
        self._run(None, [job])


class EdfScheduler(Scheduler):
    """Worker threads taking jobs earliest-deadline-first, batching by the engine's key."""

    def __init__(
        self,
        engine: Engine,
        workers: int,
        max_batch: int = 4,
        max_queue_delay_ms: float = 2.0,
        threads_per_worker: int | None = None,
        name: str = "engine",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.engine = engine
        self.max_batch = max_batch
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        threads = threads_per_worker or thread_budget(workers)
        self.info = SchedulerInfo("edf", workers, max_batch, max_queue_delay_ms, threads)
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: list[Job] = []  # a heap on (deadline, seq)
        self._seq = itertools.count()
        self._closed = False
        self._batch_ms: float | None = None  # running estimate of one engine call, for the batch wait
        engine.set_intra_op_threads(threads)
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            job.seq = next(self._seq)
            job.submitted_mono = time.monotonic()
            heapq.heappush(self._queue, job)
            self._cond.notify()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            left, self._queue = self._queue, []
            self._cond.notify_all()
        now = time.monotonic()
        for job in left:
            job.done(Completion(None, RuntimeError("the server is shutting down"), now, now, 0))
        for worker in self._workers:
            worker.join(timeout=5.0)

    # -- workers -------------------------------------------------------------------------

    def _work(self) -> None:
        self.engine.set_intra_op_threads(self.info.threads_per_worker)  # per-thread pools (OpenMP)
        while True:
            jobs = self._take()
            if jobs is None:
                return
            start = time.monotonic()
            self._run(self.engine, jobs)
            elapsed_ms = (time.monotonic() - start) * 1000.0
            self._batch_ms = elapsed_ms if self._batch_ms is None else 0.8 * self._batch_ms + 0.2 * elapsed_ms
            if self._on_batch is not None:
                self._on_batch(len(jobs))

    def _take(self) -> list[Job] | None:
        """The earliest-deadline job and, when the engine batches, its batch-mates."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._queue)
            if self._closed:
                return None
            head = heapq.heappop(self._queue)
            key = self._key(head)
            if key is None or self.max_batch == 1:
                return [head]
            batch = [head, *self._pop_matching(key, self.max_batch - 1)]
            # Wait a little for batch-mates, never past the point where the head would miss
            # its deadline (by the running estimate of one call's time).
            estimate_s = (self._batch_ms or 0.0) / 1000.0
            until = min(time.monotonic() + self.max_queue_delay_s, head.deadline_mono - estimate_s)
            while len(batch) < self.max_batch and not self._closed:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                batch += self._pop_matching(key, self.max_batch - len(batch))
            return batch

    def _key(self, job: Job) -> Hashable | None:
        try:
            return self.engine.batch_key(job.session, job.frame)
        except Exception:  # a key that cannot be computed: run the job alone
            logger.exception("batch_key failed")
            return None

    def _pop_matching(self, key: Hashable, limit: int) -> list[Job]:
        """Up to ``limit`` queued jobs with ``key``, earliest deadlines first (caller holds the lock)."""
        if limit <= 0 or not self._queue:
            return []
        taken: list[Job] = []
        kept: list[Job] = []
        for job in sorted(self._queue):
            if len(taken) < limit and self._key(job) == key:
                taken.append(job)
            else:
                kept.append(job)
        if taken:
            self._queue = kept
            heapq.heapify(self._queue)
        return taken


def make_scheduler(
    engine: Engine, config: SchedulerConfig, name: str, on_batch: Callable[[int], None] | None = None
) -> Scheduler:
    if config.kind == "per-session":
        return InlineScheduler()
    workers = config.workers or engine.default_workers(cores())
    return EdfScheduler(
        engine,
        workers,
        max_batch=config.max_batch,
        max_queue_delay_ms=config.max_queue_delay_ms,
        name=name,
        on_batch=on_batch,
    )
