"""The client library (blocking and asyncio) against real servers on loopback."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.conftest import disk, shift, textured_image
from tracker.client import (
    ClientResult,
    EngineInfo,
    Outbox,
    PromptRefusedError,
    ServerInfo,
    SessionLostError,
    SessionStarted,
    StreamSession,
    TrackerClient,
    TrackerError,
)
from tracker.client.aio import AsyncTrackerClient
from tracker.client.core import Pending
from tracker.convert import Limits
from tracker.engines import create_engine
from tracker.server.app import start_server
from tracker.server.host import SessionHost
from tracker.server.servicer import TrackerServicer
from tracker.types import (
    BoxPrompt,
    FrameStatus,
    Geometry,
    MaskPrompt,
    Modality,
    ObjectPrompt,
    PointsPrompt,
    PromptAck,
    PromptUpdate,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

H, W = 64, 80
TARGET = disk(H, W, 30, 32, 8)
OBJECTS = (ObjectPrompt(1, MaskPrompt(TARGET), "tumour"),)


def _frames(n: int) -> list[np.ndarray]:
    image = textured_image(H, W)
    return [shift(image, i, 0) for i in range(n)]


# -- blocking ------------------------------------------------------------------------------


def test_round_trip_returns_dataclasses_with_masks_mm_and_timings(flow_server):
    geometry = Geometry(spacing_mm=(0.5, 2.0), origin_mm=(10.0, -5.0, 3.0))
    with TrackerClient(flow_server.address) as client:
        client.wait_ready(5)
        info = client.info()
        assert isinstance(info, ServerInfo) and info.default_engine == "flow"
        assert isinstance(info.engines[0], EngineInfo) and info.max_objects_per_session == 64
        with client.open_session(
            modality=Modality.CINE_MRI, objects=OBJECTS, latency_budget_ms=500, geometry=geometry
        ) as session:
            assert isinstance(session.started, SessionStarted)
            assert session.started.latency_budget_ms == 500 and session.session_id
            assert client.info().active_sessions == info.active_sessions + 1
            answers = []
            for i, frame in enumerate(_frames(3)):
                session.send_frame(frame, i, timestamp_s=0.1 * i)
                answers.append(session.recv_frame())
    assert [a.frame_index for a in answers] == [0, 1, 2]
    last = answers[-1]
    assert isinstance(last, ClientResult) and last.status is FrameStatus.OK and not last.local
    obj = last.objects[0]
    assert obj.object_id == 1 and obj.label == "tumour" and obj.present
    assert obj.mask.dtype == bool and obj.mask.shape == (H, W)
    assert obj.centroid_px[0] == pytest.approx(32, abs=1.0)
    assert obj.centroid_mm == pytest.approx(geometry.pixel_to_mm(*obj.centroid_px))
    assert {"decode", "postprocess"} <= set(last.result.timing.stages_ms)
    assert last.end_to_end_ms >= last.result.timing.total_ms > 0


def test_object_calls_wait_for_acks_and_refusals_raise_with_the_server_message(flow_server):
    frames = _frames(4)
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(objects=OBJECTS)
        session.send_frame(frames[0], 0)
        session.recv_frame()
        ack = session.add_object(7, BoxPrompt(50, 10, 75, 35), "grasper")
        assert isinstance(ack, PromptAck) and ack.accepted and ack.update_id >= 1
        session.send_frame(frames[1], 1)
        second = session.recv_frame().result
        assert [o.object_id for o in second.objects] == [1, 7] and second.objects[1].label == "grasper"
        assert second.applied_update_ids == [ack.update_id]

        with pytest.raises(PromptRefusedError) as err:
            session.remove_object(99)
        assert "unknown object id 99" in str(err.value) and not err.value.ack.accepted
        with pytest.raises(PromptRefusedError, match="object 1 is already tracked"):
            session.add_object(1, BoxPrompt(1, 1, 9, 9))

        corrected = disk(H, W, 20, 20, 6)
        session.correct_object(1, MaskPrompt(corrected))
        session.remove_object(7)
        session.send_frame(frames[2], 2)
        third = session.recv_frame().result
        # Acks of the convenience calls never show up among the stream's answers.
        session.send_frame(frames[3], 3)
        rest = session.close()
    assert [o.object_id for o in third.objects] == [1]
    assert np.array_equal(third.objects[0].mask, corrected)
    assert [type(a) for a in rest] == [ClientResult]


def test_send_update_acks_come_through_recv_with_allocated_ids(flow_server):
    with TrackerClient(flow_server.address) as client:
        session = client.open_session(objects=OBJECTS)
        first = session.send_update(PromptUpdate(UpdateAction.ADD, 5, BoxPrompt(5, 5, 20, 20)))
        explicit = session.send_update(PromptUpdate(UpdateAction.REMOVE, 5, update_id=40))
        after = session.send_update(PromptUpdate(UpdateAction.REMOVE, 5))
        acks = [session.recv(timeout_s=10) for _ in range(3)]
        session.cancel()
    assert (first, explicit, after) == (1, 40, 41)
    assert [(a.update_id, a.accepted) for a in acks] == [(1, True), (40, True), (41, False)]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"engine": "sam9"}, "engine 'sam9' is not served here; available: flow"),
        ({"latency_budget_ms": -5.0}, "latency_budget_ms must be a positive"),
        ({"objects": (ObjectPrompt(3, BoxPrompt(10, 10, 5, 20)),)}, "box prompt for object 3 has no area"),
    ],
)
def test_bad_session_open_raises_invalid_argument_with_the_server_text(flow_server, kwargs, expected):
    with TrackerClient(flow_server.address) as client, pytest.raises(TrackerError) as err:
        client.open_session(**kwargs)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.value.details


def test_outbox_latest_policy_keeps_one_unsent_frame_behind_the_updates():
    box = Outbox("latest")
    assert box.push_frame(Pending(pb.TrackRequest(), 0)) is None
    box.push(Pending(pb.TrackRequest(), None))
    replaced = box.push_frame(Pending(pb.TrackRequest(), 1))
    assert replaced is not None and replaced.frame_index == 0 and len(box) == 2
    order = [box.pop().frame_index for _ in range(2)]
    assert order == [None, 1] and box.pop() is None
    queue = Outbox("queue")
    for i in range(3):
        assert queue.push_frame(Pending(pb.TrackRequest(), i)) is None
    assert len(queue) == 3
    with pytest.raises(ValueError, match="send policy"):
        Outbox("newest")  # type: ignore[arg-type]


class _StalledReader(pb_grpc.TrackerServicer):
    """Starts a session, then reads nothing for a while: the client's send path backs up."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.received: list[int] = []

    def Track(self, request_iterator, context):  # noqa: N802
        next(request_iterator)
        yield pb.TrackResponse(started=pb.SessionStarted(session_id="stalled", protocol_version="tracker.v1"))
        time.sleep(self.stall_s)
        for request in request_iterator:
            self.received.append(request.frame.index)
            yield pb.TrackResponse(frame=pb.FrameResult(frame_index=request.frame.index, status=pb.OK))


def _serve(servicer: pb_grpc.TrackerServicer, *, port: int = 0, **kw: object) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), **kw)  # type: ignore[arg-type]
    pb_grpc.add_TrackerServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def test_latest_policy_replaces_unsent_frames_and_answers_them_locally():
    servicer = _StalledReader(stall_s=0.8)
    server, port = _serve(servicer)
    big = np.zeros((1024, 1024), np.uint8)  # 1 MB: far more than the transport's window
    try:
        with TrackerClient(f"127.0.0.1:{port}") as client:
            session = client.open_session(objects=OBJECTS, send_policy="latest")
            n = 12
            for i in range(n):
                session.send_frame(big, i)
                time.sleep(0.01)
            answers = [a for a in session.close() if isinstance(a, ClientResult)]
    finally:
        server.stop(0)
    assert sorted(a.frame_index for a in answers) == list(range(n)), "one answer per frame sent"
    local = [a for a in answers if a.local]
    assert local and len(local) == session.frames_skipped
    assert all(a.status is FrameStatus.DROPPED and "skipped on the client" in a.result.message for a in local)
    assert session.frames_sent == len(servicer.received) == n - len(local)
    assert servicer.received[-1] == n - 1, "the newest frame always goes out"


def test_lost_connection_raises_session_lost_and_new_sessions_work_after_restart():
    running = start_server({"flow": create_engine("flow")}, port=0)
    port = running.port
    client = TrackerClient(running.address)
    try:
        session = client.open_session(objects=OBJECTS)
        session.send_frame(_frames(1)[0], 0)
        session.recv_frame()
        running.stop(grace_s=0)
        with pytest.raises(SessionLostError) as err:
            session.recv(timeout_s=10)
        message = str(err.value)
        assert "server-side state" in message and "new session" in message and session.session_id in message
        with pytest.raises(SessionLostError):
            session.send_frame(_frames(1)[0], 1)
        with pytest.raises(TrackerError) as down:
            client.open_session(objects=OBJECTS, timeout_s=5)
        assert down.value.code == grpc.StatusCode.UNAVAILABLE
        running = start_server({"flow": create_engine("flow")}, port=port)
        fresh = client.open_session(objects=OBJECTS, timeout_s=10)  # channel re-created automatically
        assert fresh.session_id != session.session_id
        fresh.send_frame(_frames(1)[0], 0)
        assert fresh.recv_frame().status is FrameStatus.OK
        fresh.close()
        client.reconnect()
        assert client.info().active_sessions == 0
    finally:
        client.close()
        running.stop(grace_s=0)


# -- TLS and bearer tokens -----------------------------------------------------------------

TOKEN = "s3cret-token"


class _TokenCheck(grpc.ServerInterceptor):
    """Refuses every call without ``authorization: Bearer TOKEN`` (what the server will do later)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata)
        self.seen.append(handler_call_details.method)
        if metadata.get("authorization") == f"Bearer {TOKEN}":
            return continuation(handler_call_details)

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        handler = continuation(handler_call_details)
        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[str, Path, _TokenCheck]]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed: cannot make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    interceptor = _TokenCheck()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=[interceptor])
    host = SessionHost({"flow": create_engine("flow")}, "flow", Limits().max_sessions)
    servicer = TrackerServicer(host, Limits())
    pb_grpc.add_TrackerServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield f"localhost:{port}", cert, interceptor
    server.stop(0)
    host.close()


def test_tls_with_token_round_trips(tls_server):
    address, cert, interceptor = tls_server
    with TrackerClient(address, root_certificates=cert, token=TOKEN) as client:
        assert client.info().default_engine == "flow"
        with client.open_session(objects=OBJECTS) as session:
            session.send_frame(_frames(1)[0], 0)
            assert session.recv_frame().status is FrameStatus.OK
    assert "/tracker.v1.Tracker/Track" in interceptor.seen


@pytest.mark.parametrize("token", [None, "wrong"])
def test_tls_without_the_right_token_is_unauthenticated(tls_server, token):
    address, cert, _ = tls_server
    with TrackerClient(address, root_certificates=cert.read_bytes(), token=token) as client:
        with pytest.raises(TrackerError) as err:
            client.info()
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in err.value.details
        with pytest.raises(TrackerError) as err:
            client.open_session(objects=OBJECTS)
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server):
    address, _, _ = tls_server
    with TrackerClient(address, token=TOKEN) as client, pytest.raises(TrackerError) as err:
        client.info(timeout_s=5)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_async_client_over_tls_with_token(tls_server):
    address, cert, _ = tls_server

    async def main() -> FrameStatus:
        async with AsyncTrackerClient(address, root_certificates=cert, token=TOKEN) as client:
            assert (await client.info()).default_engine == "flow"
            async with await client.open_session(objects=OBJECTS) as session:
                await session.send_frame(_frames(1)[0], 0)
                return (await session.recv_frame()).status

    assert asyncio.run(main()) is FrameStatus.OK


# -- asyncio -------------------------------------------------------------------------------


def test_async_round_trip_with_object_calls_and_refusals(flow_server):
    frames = _frames(3)

    async def main() -> tuple[list[ClientResult], list[ClientResult]]:
        async with AsyncTrackerClient(flow_server.address) as client:
            await client.wait_ready(5)
            info = await client.info()
            assert info.protocol_version == "tracker.v1"
            session = await client.open_session(objects=OBJECTS, modality=Modality.CINE_MRI)
            assert session.started.engine.name == "flow"
            await session.send_frame(frames[0], 0)
            first = await session.recv_frame()
            ack = await session.add_object(4, PointsPrompt(np.array([[60.0, 20.0]]), np.array([1])), "click")
            assert ack.accepted
            with pytest.raises(PromptRefusedError, match="unknown object id 99"):
                await session.correct_object(99, BoxPrompt(1, 1, 5, 5))
            await session.send_frame(frames[1], 1)
            second = await session.recv_frame()
            await session.remove_object(4)
            update_id = await session.send_update(PromptUpdate(UpdateAction.REMOVE, 42))
            refused = await session.recv()
            assert isinstance(refused, PromptAck) and refused.update_id == update_id
            assert not refused.accepted and "unknown object id 42" in refused.message
            await session.send_frame(frames[2], 2)
            rest = [a async for a in _drain(session)]
            return [first, second], rest

    (first, second), rest = asyncio.run(main())
    assert first.status is FrameStatus.OK and [o.object_id for o in second.objects] == [1, 4]
    assert second.objects[1].label == "click" and second.objects[1].present
    assert [a.frame_index for a in rest] == [2] and [o.object_id for o in rest[0].objects] == [1]


async def _drain(session):
    await session.done_writing()
    async for answer in session.results(timeout_s=10):
        yield answer


def test_async_bad_open_raises_with_server_message(flow_server):
    async def main() -> TrackerError:
        async with AsyncTrackerClient(flow_server.address) as client:
            with pytest.raises(TrackerError) as err:
                await client.open_session(engine="sam9")
            return err.value

    err = asyncio.run(main())
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "engine 'sam9' is not served here" in err.details


def test_async_lost_connection_and_latest_policy():
    servicer = _StalledReader(stall_s=0.6)
    server, port = _serve(servicer)
    big = np.zeros((1024, 1024), np.uint8)

    async def main() -> tuple[list[ClientResult], int, BaseException]:
        async with AsyncTrackerClient(f"127.0.0.1:{port}") as client:
            session = await client.open_session(objects=OBJECTS, send_policy="latest")
            for i in range(10):
                await session.send_frame(big, i)
                await asyncio.sleep(0.01)
            answers = [a for a in await session.close() if isinstance(a, ClientResult)]
            lost = await client.open_session(objects=OBJECTS)
            await asyncio.get_running_loop().run_in_executor(None, lambda: server.stop(0).wait())
            with pytest.raises(SessionLostError) as err:
                while True:
                    await lost.recv(timeout_s=10)
            return answers, session.frames_skipped, err.value

    try:
        answers, skipped, lost = asyncio.run(main())
    finally:
        server.stop(0)
    assert sorted(a.frame_index for a in answers) == list(range(10))
    assert skipped == sum(a.local for a in answers) > 0
    assert "server-side state" in str(lost) and "fresh prompts" in str(lost)


def test_blocking_session_is_usable_from_two_threads(flow_server):
    """A capture thread sends while the caller's thread receives (the live client's pattern)."""
    frames = _frames(8)
    with TrackerClient(flow_server.address) as client:
        session: StreamSession = client.open_session(objects=OBJECTS)

        def send() -> None:
            for i, f in enumerate(frames):
                session.send_frame(f, i)
                time.sleep(0.005)
            session.done_writing()

        sender = threading.Thread(target=send)
        sender.start()
        indices = [a.frame_index for a in session.results(timeout_s=10)]
        sender.join()
    assert sorted(indices) == list(range(8))
