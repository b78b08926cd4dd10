"""Compute scheduling: which session's frame runs next, on which worker, with whom.

Sessions do not compute on their own gRPC threads. Each one hands its frame (with
the prompt updates already applied to its engine session, and its deadline) to
its engine's :class:`Scheduler` and gets a future back; it goes on answering
(``DROPPED``, ``LATE``) while the frame computes, and reads the outcome from the
future. Workers complete futures; they never call into session code.

:class:`EdfScheduler` runs a fixed set of worker threads sized to the device:

* **earliest deadline first** across sessions: a worker takes the queued job
  whose deadline comes first;
* **one frame per session at a time, in order**: a session submits its next
  frame only when the previous one is answered, so neither can be violated;
* **batching across streams** (Triton's dynamic batcher): jobs whose engine
  ``batch_key`` is equal (and not None) go into one ``step_batch`` call, up to
  ``max_batch`` and the engine's own ``max_batch_size``; a worker holding fewer may
  wait up to ``max_queue_delay_ms`` for more, but never past the point where the
  earliest job in hand would miss its deadline.

Why threads and not processes: the per-frame hot paths of every engine run in
native code that releases the GIL (OpenCV's DIS flow and remap, torch operators,
ONNX Runtime sessions), so worker threads use every core while sharing one
copy of the model and each session's state without copying frames. The
libraries' own thread pools are sized so that workers x threads <= cores
(:func:`thread_budget`); otherwise N workers each spawning a pool per call
oversubscribe the cores, which is what throttled the per-session design.

**A worker that dies or hangs** is replaced, and the sessions whose frames it held
end (their frame answered ``ERROR``, then the stream ``UNAVAILABLE``): threads cannot
be killed, so a watchdog retires a worker whose engine call has run longer than
``stall_timeout_s`` (a native call that never returns, a stalled device) and starts
a fresh one; a worker whose thread is ending (an exception that is not an
``Exception``, such as ``SystemExit``, escaped the engine) does the same on its way
out. Completions are delivered once, so a retired worker that returns late changes
nothing. Other sessions keep being served throughout.

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
from concurrent.futures import Future
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
    # A worker whose engine call runs longer than this is retired and replaced; its sessions
    # end UNAVAILABLE. Far above any frame's cost: it catches a hang, not a slow frame.
    stall_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.kind!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"--max-queue-delay-ms must be >= 0, got {self.max_queue_delay_ms}")
        if not self.stall_timeout_s > 0:
            raise ValueError(f"--worker-stall-timeout-s must be > 0, got {self.stall_timeout_s}")


class WorkerLost(RuntimeError):
    """The compute worker holding this frame died or stopped answering.

    The session's engine state may be half-updated (or still being updated by the stuck
    call), so the session cannot go on: its frame is answered ERROR and its stream ends
    UNAVAILABLE, which a failover client answers by resuming on a fresh session.
    """


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
    submitted_mono: float = field(compare=False, default=0.0)
    future: Future[Completion] = field(compare=False, default_factory=Future, repr=False)
    _lock: threading.Lock = field(compare=False, default_factory=threading.Lock, repr=False)

    def complete(self, completion: Completion) -> bool:
        """Deliver ``completion`` unless one was delivered already (a retired worker's late one)."""
        with self._lock:
            if self.future.done():
                return False
            self.future.set_result(completion)
        return True


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

    def submit(self, job: Job) -> Future[Completion]:
        """Queue ``job``; its future completes once with what became of it. RuntimeError when closed."""
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
            job.complete(completion)


class InlineScheduler(Scheduler):
    """The per-session design: each job runs at once on the thread that submits it."""

    def __init__(self) -> None:
        self.info = SchedulerInfo("per-session", 0, 1, 0.0, cores())

    def submit(self, job: Job) -> Future[Completion]:
        self._run(None, [job])
        return job.future


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
        stall_timeout_s: float = 30.0,
        on_worker_lost: Callable[[str], None] | None = None,
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
        self._name = name
        self._stall_s = stall_timeout_s
        self._on_worker_lost = on_worker_lost
        self._busy: dict[threading.Thread, tuple[float, list[Job]]] = {}  # worker -> (start, jobs)
        self._retired: set[threading.Thread] = set()
        self._replacements = itertools.count(1)
        self._stop = threading.Event()
        self.workers_replaced = 0
        engine.set_intra_op_threads(threads)
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True)
        self._watchdog.start()

    def submit(self, job: Job) -> Future[Completion]:
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            job.seq = next(self._seq)
            job.submitted_mono = time.monotonic()
            heapq.heappush(self._queue, job)
            self._cond.notify()
        return job.future

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def live_workers(self) -> list[threading.Thread]:
        """The workers taking jobs now (not the retired ones, even if still stuck in a call)."""
        with self._cond:
            return [w for w in self._workers if w not in self._retired]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            left, self._queue = self._queue, []
            self._cond.notify_all()
            workers = [w for w in self._workers if w not in self._retired]
        self._stop.set()
        now = time.monotonic()
        for job in left:
            job.complete(Completion(None, RuntimeError("the server is shutting down"), now, now, 0))
        for worker in workers:
            worker.join(timeout=5.0)
        self._watchdog.join(timeout=5.0)

    # -- workers -------------------------------------------------------------------------

    def _work(self) -> None:
        me = threading.current_thread()
        self.engine.set_intra_op_threads(self.info.threads_per_worker)  # per-thread pools (OpenMP)
        while True:
            jobs = self._take()
            if jobs is None:
                return
            start = time.monotonic()
            with self._cond:
                self._busy[me] = (start, jobs)
            try:
                self._run(self.engine, jobs)
            except BaseException as exc:  # this thread is ending: hand its work and its place on
                self._lose(me, jobs, f"compute worker {me.name} died: {type(exc).__name__}: {exc}")
                return
            finally:
                with self._cond:
                    self._busy.pop(me, None)
            if me in self._retired:  # the watchdog gave up on this call and replaced the worker
                return
            elapsed_ms = (time.monotonic() - start) * 1000.0
            self._batch_ms = elapsed_ms if self._batch_ms is None else 0.8 * self._batch_ms + 0.2 * elapsed_ms
            if self._on_batch is not None:
                self._on_batch(len(jobs))

    def _watch(self) -> None:
        """Retire workers whose engine call has run past the stall timeout."""
        period = min(1.0, self._stall_s / 4.0)
        while not self._stop.wait(period):
            now = time.monotonic()
            with self._cond:
                stuck = [
                    (worker, jobs, now - start)
                    for worker, (start, jobs) in self._busy.items()
                    if now - start > self._stall_s and worker not in self._retired
                ]
            for worker, jobs, age in stuck:
                self._lose(
                    worker,
                    jobs,
                    f"compute worker {worker.name} stopped responding: {len(jobs)} frame(s) in the engine"
                    f" for {age:.1f} s (stall timeout {self._stall_s:g} s)",
                )

    def _lose(self, worker: threading.Thread, jobs: list[Job], reason: str) -> None:
        """Retire ``worker``, start its replacement, and end the jobs it held with :class:`WorkerLost`."""
        with self._cond:
            if worker in self._retired:
                return
            self._retired.add(worker)
            self._busy.pop(worker, None)
            if not self._closed:
                fresh = threading.Thread(
                    target=self._work, name=f"{self._name}-worker-r{next(self._replacements)}", daemon=True
                )
                self._workers.append(fresh)
                fresh.start()
            self.workers_replaced += 1
        logger.error("%s; a fresh worker took its place; ending the session(s) it held", reason)
        now = time.monotonic()
        for job in jobs:
            job.complete(Completion(None, WorkerLost(reason), now, now, len(jobs)))
        if self._on_worker_lost is not None:
            self._on_worker_lost(reason)

    def _take(self) -> list[Job] | None:
        """The earliest-deadline job and, when the engine batches, its batch-mates."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._queue)
            if self._closed:
                return None
            head = heapq.heappop(self._queue)
            limit = min(self.max_batch, self.engine.max_batch_size)  # what we allow, what it takes
            key = self._key(head) if limit > 1 else None
            if key is None:
                return [head]
            batch = [head, *self._pop_matching(key, limit - 1)]
            # Wait a little for batch-mates, never past the point where the head would miss
            # its deadline (by the running estimate of one call's time).
            estimate_s = (self._batch_ms or 0.0) / 1000.0
            until = min(time.monotonic() + self.max_queue_delay_s, head.deadline_mono - estimate_s)
            while len(batch) < limit and not self._closed:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                batch += self._pop_matching(key, limit - len(batch))
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
    engine: Engine,
    config: SchedulerConfig,
    name: str,
    on_batch: Callable[[int], None] | None = None,
    on_worker_lost: Callable[[str], None] | None = None,
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
        stall_timeout_s=config.stall_timeout_s,
        on_worker_lost=on_worker_lost,
    )
