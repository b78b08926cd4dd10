"""Soak test: many concurrent sessions with random disconnects and malformed input, on loopback.

Not part of `make test` (it runs for minutes). Bounded in count and time: it stops
after --duration seconds. Every frame a session sends is accounted for as OK, LATE,
DROPPED or ERROR, or as cut off by that session's own disconnect or by a malformed
request it sent on purpose (which ends its stream with INVALID_ARGUMENT). The
server must not crash and its memory must stay flat.

    .venv/bin/python bench/soak.py --duration 180 --workers 12 --json bench/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import psutil

from tracker import convert
from tracker.lab.bench.common import write_json
from tracker.lab.bench.stream import ServerProcess, machine_info
from tracker.lab.provenance import provenance
from tracker.types import MaskPrompt
from tracker.v1 import tracker_pb2 as pb

logger = logging.getLogger("soak")
H, W = 96, 128


@dataclass
class Tally:
    sessions: int = 0
    frames_sent: int = 0
    answered: Counter = field(default_factory=Counter)  # status -> count
    cut_by_disconnect: int = 0  # sent, then the client cancelled before the answer
    cut_by_malformed: int = 0  # sent before a deliberate malformed request ended the stream
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _open() -> bytes:
    yy, xx = np.mgrid[:H, :W]
    mask = (xx - 60) ** 2 + (yy - 48) ** 2 < 15**2
    obj = pb.ObjectPrompt(object_id=1, prompt=convert.prompt_to_proto(MaskPrompt(mask)))
    return pb.TrackRequest(open=pb.SessionOpen(objects=[obj], latency_budget_ms=200)).SerializeToString()


def _frame(rng: random.Random, index: int, base: np.ndarray) -> tuple[bytes, bool]:
    """A frame request, and whether it is malformed in a way answered with an ERROR frame."""
    shifted = np.roll(base, (index % 7, index % 5), axis=(0, 1))
    msg = convert.frame_to_proto(shifted, index)
    kind = rng.random()
    if kind < 0.05:
        msg.pixels = msg.pixels[: len(msg.pixels) // 2]  # truncated buffer
        return pb.TrackRequest(frame=msg).SerializeToString(), True
    if kind < 0.08:
        msg.pixel_type = 77  # unknown pixel type
        return pb.TrackRequest(frame=msg).SerializeToString(), True
    return pb.TrackRequest(frame=msg).SerializeToString(), False


def _session(address: str, rng: random.Random, tally: Tally, deadline: float) -> None:
    base = (np.random.default_rng(rng.randrange(1 << 30)).random((H, W)) * 255).astype(np.uint8)
    n_frames = rng.randint(5, 40)
    disconnect_after = rng.randint(1, n_frames) if rng.random() < 0.25 else None
    garbage_after = rng.randint(1, n_frames) if rng.random() < 0.1 else None
    sent: list[int] = []
    send_lock = threading.Condition()
    stop = threading.Event()

    def requests():
        yield _open()
        for i in range(n_frames):
            if stop.is_set() or time.monotonic() > deadline:
                return
            if garbage_after is not None and i == garbage_after:
                yield b"\x0a\xff\xff\xff\xff\x0f"  # not a TrackRequest
                return
            data, _ = _frame(rng, i, base)
            with send_lock:
                sent.append(i)
            yield data
            time.sleep(rng.uniform(0.0, 0.03))

    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/tracker.v1.Tracker/Track",
            request_serializer=lambda b: b,
            response_deserializer=pb.TrackResponse.FromString,
        )(requests(), timeout=120)
        answered: Counter = Counter()
        status_counts: Counter = Counter()
        code = grpc.StatusCode.OK
        try:
            for response in call:
                if response.WhichOneof("kind") != "frame":
                    continue
                answered[response.frame.frame_index] += 1
                status_counts[pb.FrameStatus.Name(response.frame.status)] += 1
                if disconnect_after is not None and sum(answered.values()) >= disconnect_after:
                    stop.set()
                    call.cancel()
                    break
        except grpc.RpcError as exc:
            code = exc.code()
    with send_lock:
        sent_now = list(sent)
    missing = len(sent_now) - sum(answered.values())
    with tally.lock:
        tally.sessions += 1
        tally.frames_sent += len(sent_now)
        tally.answered.update(status_counts)
        if any(c > 1 for c in answered.values()):
            tally.unexpected.append(f"a frame answered twice: {answered.most_common(1)}")
        if disconnect_after is not None and stop.is_set():
            tally.cut_by_disconnect += missing
        elif garbage_after is not None and code == grpc.StatusCode.INVALID_ARGUMENT:
            tally.cut_by_malformed += missing
        elif code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) or missing:
            tally.unexpected.append(f"stream ended {code.name} with {missing} frames unanswered")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--workers", type=int, default=12, help="concurrent sessions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_provenance = provenance(seed=args.seed)  # at the start: the load average is the run's
    server = ServerProcess("flow", (), args.workers)
    server.wait_ready()
    proc = psutil.Process(server.process.pid)
    tally = Tally()
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    deadline = start + args.duration

    def worker(k: int) -> None:
        rng = random.Random(args.seed * 1000 + k)
        while time.monotonic() < deadline:
            _session(server.address, rng, tally, deadline)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(args.workers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        rss.append((time.monotonic() - start, proc.memory_info().rss / 2**20))
        if int(rss[-1][0]) % 30 == 0:
            logger.info(
                "t=%.0f s sessions=%d frames=%d rss=%.1f MB",
                rss[-1][0],
                tally.sessions,
                tally.frames_sent,
                rss[-1][1],
            )
    alive = server.process.poll() is None
    server.stop()
    accounted = sum(tally.answered.values()) + tally.cut_by_disconnect + tally.cut_by_malformed
    after_warm = [m for t, m in rss if t >= 10.0]
    report = {
        "provenance": run_provenance,
        "seed": args.seed,
        "duration_s": args.duration,
        "workers": args.workers,
        "sessions": tally.sessions,
        "frames_sent": tally.frames_sent,
        "answered": dict(tally.answered),
        "cut_by_own_disconnect": tally.cut_by_disconnect,
        "cut_by_own_malformed_request": tally.cut_by_malformed,
        "unaccounted": tally.frames_sent - accounted,
        "unexpected": tally.unexpected[:20],
        "server_alive_at_end": alive,
        "rss_mb_at_10s": after_warm[0] if after_warm else None,
        "rss_mb_end": rss[-1][1] if rss else None,
        "rss_growth_after_10s_pct": 100.0 * (after_warm[-1] - after_warm[0]) / after_warm[0]
        if len(after_warm) > 1
        else None,
        "machine": machine_info(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        write_json(report, args.json)
    ok = alive and report["unaccounted"] == 0 and not tally.unexpected
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
