"""Bad input gets a clear error naming the problem; the stream and other sessions go on."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.conftest import disk, disk_config, textured_image
from tracker import convert
from tracker.client import TrackerClient, TrackerError
from tracker.convert import Limits
from tracker.engines import create_engine
from tracker.server.app import start_server
from tracker.types import (
    FrameStatus,
    MaskPrompt,
    Modality,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

H, W = 64, 80
CAP = 100 * 100


@pytest.fixture(scope="module")
def server():
    running = start_server({"flow": create_engine("flow")}, limits=Limits(max_frame_pixels=CAP))
    yield running
    running.stop(0)


def _config() -> SessionConfig:
    return disk_config(H, W, 40, 32, 8, modality=Modality.CINE_MRI)


def _good_frame(index: int) -> pb.Frame:
    return convert.frame_to_proto(textured_image(H, W), index)


def _bad_frames() -> list[tuple[pb.Frame, str]]:
    good = _good_frame(0)
    nan = np.zeros((H, W), np.float32)
    nan[3, 4] = np.nan
    nan[5, 6] = np.inf
    big = np.zeros((101, 101), np.uint8)
    cases = [
        (
            pb.Frame(index=1, height=H, width=W, pixels=good.pixels),
            "unsupported pixel type PIXEL_TYPE_UNSPECIFIED",
        ),
        (
            pb.Frame(index=2, height=H, width=W, pixel_type=99, pixels=good.pixels),
            "unsupported pixel type 99",
        ),
        (pb.Frame(index=3, height=H, width=W, pixel_type=pb.UINT8, pixels=good.pixels[:-7]), "needs 5120"),
        (pb.Frame(index=4, height=H, width=W, pixel_type=pb.UINT16, pixels=good.pixels), "needs 10240"),
        (pb.Frame(index=5, height=0, width=W, pixel_type=pb.UINT8), "empty frame"),
        (
            pb.Frame(index=6, height=H, width=W, channels=2, pixel_type=pb.UINT8, pixels=good.pixels * 2),
            "2 channels",
        ),
        (convert.frame_to_proto(nan, 7), "2 pixel(s) are NaN or infinite"),
        (convert.frame_to_proto(big, 8), f"exceeds the limit of {CAP} pixels"),
        (convert.frame_to_proto(np.zeros((H + 1, W), np.uint8), 9), f"but this session's frames are {H}x{W}"),
    ]
    return cases


def test_each_bad_frame_gets_an_error_naming_the_problem_and_the_stream_goes_on(server):
    with TrackerClient(server.address) as client:
        session = client.open_session(_config())
        session.send_frame(textured_image(H, W), 0)
        assert session.recv_frame().result.status is FrameStatus.OK
        for frame, expected in _bad_frames():
            session.send_raw(pb.TrackRequest(frame=frame))
            result = session.recv_frame().result
            assert result.frame_index == frame.index
            assert result.status is FrameStatus.ERROR, expected
            assert expected in result.message
            assert not result.objects
        session.send_frame(textured_image(H, W), 100)
        after = session.recv_frame().result
        session.close()
    assert after.status is FrameStatus.OK and after.objects[0].present


def _abort_of(server, requests: list[pb.TrackRequest]) -> grpc.RpcError:
    channel = grpc.insecure_channel(server.address)
    try:
        with pytest.raises(grpc.RpcError) as err:
            list(pb_grpc.TrackerStub(channel).Track(iter(requests), timeout=10))
        return err.value
    finally:
        channel.close()


def _answers_then_abort(
    server, requests: list[pb.TrackRequest]
) -> tuple[list[pb.TrackResponse], grpc.RpcError]:
    """Every response the stream gave before it ended, and how it ended."""
    channel = grpc.insecure_channel(server.address)
    responses: list[pb.TrackResponse] = []
    try:
        with pytest.raises(grpc.RpcError) as err:
            for response in pb_grpc.TrackerStub(channel).Track(iter(requests), timeout=10):
                responses.append(response)
        return responses, err.value
    finally:
        channel.close()


def _frame_answers(responses: list[pb.TrackResponse]) -> list[tuple[int, str, str]]:
    return [
        (r.frame.frame_index, pb.FrameStatus.Name(r.frame.status), r.frame.message)
        for r in responses
        if r.WhichOneof("kind") == "frame"
    ]


def test_the_frame_that_ends_a_session_is_answered_with_its_index(server):
    prompt = convert.prompt_to_proto(_mask_prompt(H + 2, W))
    open_msg = pb.SessionOpen(objects=[pb.ObjectPrompt(object_id=1, prompt=prompt)])
    responses, err = _answers_then_abort(
        server, [pb.TrackRequest(open=open_msg), pb.TrackRequest(frame=_good_frame(0))]
    )
    answers = _frame_answers(responses)
    assert [(i, status) for i, status, _ in answers] == [(0, "ERROR")]  # exactly one answer, then the end
    assert answers[0][2].startswith("frame 0: ") and f"{H + 2}x{W}" in answers[0][2]
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == answers[0][2]


def test_a_wrong_size_first_valid_frame_after_errors_is_answered_with_its_own_index(server):
    prompt = convert.prompt_to_proto(_mask_prompt(H + 2, W))
    open_msg = pb.SessionOpen(objects=[pb.ObjectPrompt(object_id=1, prompt=prompt)])
    bad = pb.Frame(index=0, height=H, width=W, pixel_type=pb.UINT8, pixels=b"short")
    frames = [
        pb.Frame(index=i, height=bad.height, width=bad.width, pixel_type=bad.pixel_type, pixels=bad.pixels)
        for i in range(3)
    ]
    requests = [pb.TrackRequest(open=open_msg), *(pb.TrackRequest(frame=f) for f in frames)]
    requests.append(pb.TrackRequest(frame=_good_frame(3)))
    responses, err = _answers_then_abort(server, requests)
    answers = _frame_answers(responses)
    assert [(i, status) for i, status, _ in answers] == [
        (0, "ERROR"),
        (1, "ERROR"),
        (2, "ERROR"),
        (3, "ERROR"),
    ]
    assert answers[3][2].startswith("frame 3: the first frame this session processes is")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_frame_before_open_is_invalid_argument(server):
    err = _abort_of(server, [pb.TrackRequest(frame=_good_frame(0))])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session is not open" in err.details()


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (pb.Prompt(mask=pb.Mask(height=H, width=W, rle_counts=[5, 5])), "RLE counts sum to 10"),
        (pb.Prompt(mask=pb.Mask(height=H, width=W, rle_counts=[H * W])), "is empty"),
        (pb.Prompt(mask=pb.Mask(height=H, width=W, encoding=pb.PNG, data=b"junk")), "not a readable PNG"),
        (pb.Prompt(box=pb.Box(x0=10, y0=10, x1=5, y1=20)), "has no area"),
        (pb.Prompt(points=pb.Points()), "has no points"),
        (pb.Prompt(points=pb.Points(points=[pb.Point(x=3, y=4, positive=False)])), "at least one positive"),
        (pb.Prompt(), "has no prompt"),
    ],
)
def test_malformed_initial_prompt_is_invalid_argument(server, prompt, expected):
    open_msg = pb.SessionOpen(objects=[pb.ObjectPrompt(object_id=3, prompt=prompt)])
    err = _abort_of(server, [pb.TrackRequest(open=open_msg)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.details() and "object 3" in err.details()


def test_prompt_outside_the_image_is_refused_at_the_first_frame(server):
    open_msg = pb.SessionOpen(
        objects=[pb.ObjectPrompt(object_id=2, prompt=pb.Prompt(box=pb.Box(x0=500, y0=500, x1=600, y1=600)))]
    )
    err = _abort_of(server, [pb.TrackRequest(open=open_msg), pb.TrackRequest(frame=_good_frame(0))])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lies outside the 64x80 image" in err.details()


@pytest.mark.parametrize(
    ("open_msg", "expected"),
    [
        (pb.SessionOpen(engine="sam9"), "engine 'sam9' is not served here; available: flow"),
        (pb.SessionOpen(latency_budget_ms=-5), "latency_budget_ms must be a positive"),
        (pb.SessionOpen(geometry=pb.Geometry(spacing_mm=[1.0, -1.0])), "pixel spacing must be two positive"),
        (pb.SessionOpen(geometry=pb.Geometry(x_direction=[2, 0, 0])), "x_direction must be a unit vector"),
        (pb.SessionOpen(height=10), "declare both height and width"),
        (
            pb.SessionOpen(
                objects=[pb.ObjectPrompt(object_id=1, prompt=pb.Prompt(box=pb.Box(x1=1, y1=1)))] * 2
            ),
            "object ids must be unique",
        ),
    ],
)
def test_bad_session_open_is_invalid_argument(server, open_msg, expected):
    err = _abort_of(server, [pb.TrackRequest(open=open_msg)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.details()


def test_second_open_ends_the_stream_clearly(server):
    with TrackerClient(server.address) as client:
        session = client.open_session(_config())
        session.send_raw(pb.TrackRequest(open=pb.SessionOpen()))
        with pytest.raises(TrackerError) as err:
            session.recv()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "already open" in err.value.details


def test_bad_prompt_updates_are_refused_by_ack(server):
    with TrackerClient(server.address) as client:
        session = client.open_session(_config())
        session.send_update(
            PromptUpdate(UpdateAction.CORRECT, 42, MaskPrompt(disk(H, W, 5, 5, 3)), update_id=1)
        )
        session.send_update(PromptUpdate(UpdateAction.ADD, 1, MaskPrompt(disk(H, W, 5, 5, 3)), update_id=2))
        session.send_raw(pb.TrackRequest(prompt_update=pb.PromptUpdate(update_id=3)))
        session.send_update(
            PromptUpdate(UpdateAction.ADD, 5, MaskPrompt(disk(H + 2, W, 5, 5, 3)), update_id=4)
        )
        acks = {}
        for _ in range(4):
            ack = session.recv()
            acks[ack.update_id] = ack
        session.close()
    assert not any(a.accepted for a in acks.values())
    assert "unknown object id 42" in acks[1].message
    assert "object 1 is already tracked" in acks[2].message
    assert "has no action" in acks[3].message
    assert "is 66x80 but frames are 64x80" in acks[4].message


def test_a_broken_session_does_not_affect_another(server):
    with TrackerClient(server.address) as client:
        healthy = client.open_session(_config())
        healthy.send_frame(textured_image(H, W), 0)
        assert healthy.recv_frame().result.status is FrameStatus.OK
        broken = client.open_session(_config())
        for frame, _ in _bad_frames():
            broken.send_raw(pb.TrackRequest(frame=frame))
        broken.send_raw(pb.TrackRequest(open=pb.SessionOpen()))
        with pytest.raises(TrackerError):
            while broken.recv() is not None:
                pass
        healthy.send_frame(textured_image(H, W), 1)
        result = healthy.recv_frame().result
        healthy.close()
    assert result.status is FrameStatus.OK and result.objects[0].present


def test_empty_request_mid_stream_ends_the_stream_naming_the_problem(server):
    open_msg = pb.SessionOpen(
        objects=[pb.ObjectPrompt(object_id=1, prompt=convert.prompt_to_proto(_mask_prompt()))]
    )
    err = _abort_of(server, [pb.TrackRequest(open=open_msg), pb.TrackRequest()])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "empty request: set open, frame or prompt_update"  # as docs/protocol.md's table


def _mask_prompt(h: int = H, w: int = W) -> MaskPrompt:
    return MaskPrompt(disk(h, w, 40, 32, 8))


def test_mask_prompt_of_another_size_than_the_first_frame_ends_the_session_clearly(server):
    # Found with the Node.js client: every frame used to be answered ERROR instead.
    prompt = convert.prompt_to_proto(_mask_prompt(H + 2, W))
    open_msg = pb.SessionOpen(objects=[pb.ObjectPrompt(object_id=1, prompt=prompt)])
    err = _abort_of(server, [pb.TrackRequest(open=open_msg), pb.TrackRequest(frame=_good_frame(0))])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{H + 2}x{W}" in err.details() and f"{H}x{W}" in err.details()


def test_box_outside_the_image_message_shows_plain_numbers(server):
    box = pb.Box(x0=500, y0=500, x1=2000, y1=600)
    open_msg = pb.SessionOpen(objects=[pb.ObjectPrompt(object_id=2, prompt=pb.Prompt(box=box))])
    err = _abort_of(server, [pb.TrackRequest(open=open_msg), pb.TrackRequest(frame=_good_frame(0))])
    assert "lies outside the 64x80 image" in err.details()
    assert "np." not in err.details() and "2000" in err.details()
