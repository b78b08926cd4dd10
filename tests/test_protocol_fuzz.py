"""Property-based tests of the protocol: whatever a client sends, it gets a specific answer.

Hypothesis builds streams of valid, mutated and garbage requests (truncated pixel
buffers, absurd shapes and pixel types, NaN/Inf, out-of-order and duplicate frame
indices, prompts outside the image, unknown object ids, raw bytes that are no
TrackRequest at all). Every stream must end with OK or a specific error status
and message; every frame of a stream that ends OK is answered exactly once; every
prompt update is acknowledged; and afterwards the server is healthy and another
session works as before.
"""

from __future__ import annotations

from collections import Counter

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import disk, textured_image
from tracker import convert
from tracker.convert import Limits
from tracker.engines import create_engine
from tracker.server.app import start_server
from tracker.types import MaskPrompt
from tracker.v1 import tracker_pb2 as pb

H, W = 32, 40
CAP = 64 * 64
ALLOWED_ABORTS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture(scope="module")
def server():
    running = start_server(
        {"flow": create_engine("flow")}, limits=Limits(max_frame_pixels=CAP, max_sessions=8)
    )
    assert running.ready.wait(30)
    yield running
    running.stop(0)


def _mask_prompt(cx: float, cy: float) -> pb.Prompt:
    return convert.prompt_to_proto(MaskPrompt(disk(H, W, cx, cy, 5)))


def _good_open() -> pb.TrackRequest:
    return pb.TrackRequest(
        open=pb.SessionOpen(objects=[pb.ObjectPrompt(object_id=1, prompt=_mask_prompt(20, 16))])
    )


opens = st.one_of(
    st.just(_good_open()),
    st.builds(
        lambda budget, fps, modality, policy: pb.TrackRequest(
            open=pb.SessionOpen(
                objects=[pb.ObjectPrompt(object_id=1, prompt=_mask_prompt(20, 16))],
                latency_budget_ms=budget,
                frame_rate_hz=fps,
                modality=modality,
                budget_policy=policy,
            )
        ),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.integers(0, 6),
        st.integers(0, 5),
    ),
    st.builds(
        lambda x0, y0, x1, y1: pb.TrackRequest(
            open=pb.SessionOpen(
                objects=[
                    pb.ObjectPrompt(object_id=2, prompt=pb.Prompt(box=pb.Box(x0=x0, y0=y0, x1=x1, y1=y1)))
                ]
            )
        ),
        *[st.floats(-100, 200, width=32)] * 4,
    ),
)

dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.float32])


@st.composite
def frames(draw: st.DrawFn) -> pb.TrackRequest:
    index = draw(st.integers(0, 20))
    kind = draw(st.sampled_from(["good", "truncated", "absurd", "pixel_type", "nan", "channels", "resized"]))
    dtype = draw(dtypes)
    image = textured_image(H, W, seed=index).astype(dtype)
    msg = convert.frame_to_proto(image, index, timestamp_s=draw(st.floats(0, 100)))
    if kind == "truncated":
        msg.pixels = msg.pixels[: draw(st.integers(0, max(0, len(msg.pixels) - 1)))]
    elif kind == "absurd":
        msg.height = draw(st.integers(0, 2**32 - 1))
        msg.width = draw(st.integers(0, 2**32 - 1))
    elif kind == "pixel_type":
        msg.pixel_type = draw(st.integers(5, 1000) | st.just(0))
    elif kind == "nan" and dtype is np.float32:
        bad = image.astype(np.float32)
        bad.flat[draw(st.integers(0, bad.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        msg = convert.frame_to_proto(bad, index)
    elif kind == "channels":
        msg.channels = draw(st.integers(2, 300))
    elif kind == "resized":
        msg = convert.frame_to_proto(textured_image(H + 3, W, seed=1), index)
    return pb.TrackRequest(frame=msg)


@st.composite
def updates(draw: st.DrawFn) -> pb.TrackRequest:
    update_id = draw(st.integers(0, 2**63))
    object_id = draw(st.integers(0, 5))
    action = draw(st.sampled_from(["add", "correct", "remove", "none"]))
    prompt = draw(
        st.sampled_from(
            [
                _mask_prompt(10, 10),
                pb.Prompt(box=pb.Box(x0=-50, y0=-50, x1=-10, y1=-10)),
                pb.Prompt(points=pb.Points(points=[pb.Point(x=1000, y=3, positive=True)])),
                pb.Prompt(mask=pb.Mask(height=H, width=W, rle_counts=[1, 2, 3])),
                pb.Prompt(),
            ]
        )
    )
    obj = pb.ObjectPrompt(object_id=object_id, prompt=prompt)
    if action == "add":
        return pb.TrackRequest(prompt_update=pb.PromptUpdate(update_id=update_id, add=obj))
    if action == "correct":
        return pb.TrackRequest(prompt_update=pb.PromptUpdate(update_id=update_id, correct=obj))
    if action == "remove":
        return pb.TrackRequest(prompt_update=pb.PromptUpdate(update_id=update_id, remove_object_id=object_id))
    return pb.TrackRequest(prompt_update=pb.PromptUpdate(update_id=update_id))


requests = st.one_of(
    frames(),
    updates(),
    st.binary(min_size=1, max_size=64),  # raw garbage in place of a serialized message
    st.just(pb.TrackRequest()),  # an empty request
)


def _serialise(item: pb.TrackRequest | bytes) -> bytes:
    return item if isinstance(item, bytes) else item.SerializeToString()


def _healthy(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        call = channel.stream_stream("/tracker.v1.Tracker/Track", request_serializer=_serialise,
                                     response_deserializer=pb.TrackResponse.FromString)  # fmt: skip
        answers = list(
            call(
                iter([_good_open(), pb.TrackRequest(frame=convert.frame_to_proto(textured_image(H, W), 0))]),
                timeout=10,
            )
        )
        assert answers[-1].frame.status == pb.OK and answers[-1].frame.objects[0].present


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=opens | requests, rest=st.lists(requests, max_size=12))
def test_any_stream_gets_specific_answers_and_leaves_the_server_healthy(server, first, rest):
    stream = [first, *rest]
    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream("/tracker.v1.Tracker/Track", request_serializer=_serialise,
                                     response_deserializer=pb.TrackResponse.FromString)  # fmt: skip
        answers: list[pb.TrackResponse] = []
        code, details = grpc.StatusCode.OK, ""
        try:
            for answer in call(iter(stream), timeout=30):
                answers.append(answer)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
    assert code in ALLOWED_ABORTS | {grpc.StatusCode.OK}, (code, details)
    if code != grpc.StatusCode.OK:
        assert len(details) > 10, "an error must say what was wrong"
    frame_answers = [a.frame for a in answers if a.WhichOneof("kind") == "frame"]
    for f in frame_answers:
        assert f.status in (pb.OK, pb.LATE, pb.DROPPED, pb.ERROR)
        if f.status == pb.ERROR:
            assert f.message and not f.objects
    if code == grpc.StatusCode.OK:
        sent = Counter(
            r.frame.index
            for r in stream[1:]
            if isinstance(r, pb.TrackRequest) and r.WhichOneof("kind") == "frame"
        )
        assert Counter(f.frame_index for f in frame_answers) == sent, "every frame answered exactly once"
        sent_updates = [
            r
            for r in stream[1:]
            if isinstance(r, pb.TrackRequest) and r.WhichOneof("kind") == "prompt_update"
        ]
        acks = [a.prompt_ack for a in answers if a.WhichOneof("kind") == "prompt_ack"]
        assert len(acks) == len(sent_updates), "every prompt update acknowledged"
        assert all(a.accepted or a.message for a in acks)
    _healthy(server)


def test_garbage_bytes_get_invalid_argument_naming_the_request(server):
    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream("/tracker.v1.Tracker/Track", request_serializer=_serialise,
                                     response_deserializer=pb.TrackResponse.FromString)  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            list(call(iter([_good_open(), b"\xff\xff\xff\xff"]), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request 2 (4 bytes) is not a valid tracker.v1.TrackRequest" in err.value.details()
