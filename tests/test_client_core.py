"""The client core alone, without a server: requests, update ids, answer routing, errors, failover rules.

These are the rules both transports (threads and asyncio) share; the transports
themselves are tested against real servers in tests/test_client.py and
tests/test_failover.py.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import convert
from tracker.client import ClientResult, PromptRefusedError, SessionLostError, TrackerError
from tracker.client.connect import make_connect_options
from tracker.client.core import END, SessionCore, build_session_config, frame_of, unwrap
from tracker.client.errors import error_from_status, is_connection_loss
from tracker.client.failover import REFUSAL_CODES, FailoverCore, FailoverPolicy, triggers_failover
from tracker.gating.types import BeamState, GatingConfig, GatingDecision
from tracker.types import (
    BoxPrompt,
    FrameResult,
    FrameStatus,
    Modality,
    ObjectPrompt,
    PromptAck,
    PromptUpdate,
    SessionConfig,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb

OBJECTS = (ObjectPrompt(1, BoxPrompt(2, 2, 10, 10), "liver"),)
IMAGE = np.zeros((16, 16), np.uint8)


def _ack(update_id: int, accepted: bool = True) -> pb.TrackResponse:
    return pb.TrackResponse(prompt_ack=pb.PromptAck(update_id=update_id, accepted=accepted, message="m"))


def _frame_answer(index: int, status: FrameStatus = FrameStatus.OK) -> pb.TrackResponse:
    return pb.TrackResponse(frame=convert.frame_result_to_proto(FrameResult(index, status)))


# -- request building ------------------------------------------------------------------------


def test_open_request_carries_the_config() -> None:
    core: SessionCore[object] = SessionCore(
        SessionConfig(objects=OBJECTS, engine="flow", latency_budget_ms=250.0)
    )
    core.open(pb.RLE)
    request = core.next_request()
    assert isinstance(request, pb.TrackRequest) and request.WhichOneof("kind") == "open"
    assert request.open.engine == "flow" and request.open.latency_budget_ms == 250.0
    assert [o.object_id for o in request.open.objects] == [1]
    assert core.frames_sent == 0 and core.next_request() is None  # the open is not a frame


def test_frames_are_counted_when_they_leave_and_latest_policy_answers_the_replaced_one() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig(), "latest")
    assert core.push_frame(IMAGE, 0, 0.5, now=1.0) is None
    skipped = core.push_frame(IMAGE, 1, 0.6, now=1.25)
    assert isinstance(skipped, ClientResult) and skipped.local
    assert skipped.frame_index == 0 and skipped.status is FrameStatus.DROPPED and skipped.sent_mono == 1.0
    assert "frame 1 replaced it" in skipped.result.message
    assert core.frames_skipped == 1 and core.frames_sent == 0 and 0 not in core.sent_at
    request = core.next_request()
    assert isinstance(request, pb.TrackRequest) and request.frame.index == 1
    assert request.frame.timestamp_s == pytest.approx(0.6)
    assert core.frames_sent == 1


def test_half_close_is_queued_once_and_closes_the_session_for_sending() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig())
    assert core.end_writing() is True
    assert core.end_writing() is False
    assert core.next_request() is END and core.next_request() is None
    with pytest.raises(TrackerError, match="closed for sending"):
        core.push_frame(IMAGE, 0, None, 1.0)
    with pytest.raises(TrackerError, match="closed for sending"):
        core.push_update(PromptUpdate(UpdateAction.REMOVE, 1))


def test_a_failed_session_raises_its_failure_on_send() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig())
    lost = SessionLostError(grpc.StatusCode.UNAVAILABLE, "socket closed", "s1")
    assert core.fail(lost) is True
    with pytest.raises(SessionLostError):
        core.push_frame(IMAGE, 0, None, 1.0)
    assert core.fail(TrackerError(grpc.StatusCode.INTERNAL, "boom")) is False


def test_build_session_config_takes_every_field_and_names_unknown_ones() -> None:
    base = SessionConfig(modality=Modality.CINE_MRI, client_name="console")
    gating = GatingConfig(margin_mm=4.0)
    config = build_session_config(base, objects=list(OBJECTS), engine_options={"a": "1"}, gating=gating)
    assert config.objects == OBJECTS and isinstance(config.objects, tuple)
    assert config.engine_options == {"a": "1"} and config.gating is gating
    assert config.modality is Modality.CINE_MRI and config.client_name == "console"
    assert build_session_config() == SessionConfig()
    with pytest.raises(TypeError, match=r"unknown session setting\(s\) \['latency_ms'\].*latency_budget_ms"):
        build_session_config(latency_ms=5.0)


def test_connect_options_name_an_unknown_setting() -> None:
    options = make_connect_options("10.0.0.1:50051", token="t", root_certificates="-----BEGIN CERT")
    assert options.secure and options.metadata() == (("authorization", "Bearer t"),)
    with pytest.raises(TypeError, match=r"unknown connection setting\(s\) \['tls_on'\]"):
        make_connect_options("x:1", tls_on=True)  # type: ignore[call-arg]


# -- update ids and answer routing -----------------------------------------------------------


def test_update_ids_are_allocated_and_a_requested_id_moves_the_counter_past_it() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig())
    assert core.push_update(PromptUpdate(UpdateAction.REMOVE, 1)).update_id == 1
    assert core.push_update(PromptUpdate(UpdateAction.REMOVE, 1, update_id=10)).update_id == 10
    assert core.push_update(PromptUpdate(UpdateAction.REMOVE, 1)).update_id == 11
    ids = []
    while isinstance(request := core.next_request(), pb.TrackRequest):
        ids.append(request.prompt_update.update_id)
    assert ids == [1, 10, 11]


def test_acks_go_to_their_waiter_and_the_rest_to_the_caller() -> None:
    core: SessionCore[str] = SessionCore(SessionConfig())
    awaited = core.push_update(PromptUpdate(UpdateAction.REMOVE, 1), waiter="caller-of-update")
    queued = core.push_update(PromptUpdate(UpdateAction.REMOVE, 2))
    waiter, ack = core.route(_ack(awaited.update_id), received=2.0)
    assert waiter == "caller-of-update" and ack == PromptAck(awaited.update_id, True, "m")
    waiter, ack = core.route(_ack(queued.update_id, accepted=False), received=2.0)
    assert waiter is None and ack == PromptAck(queued.update_id, False, "m")
    assert core.route(_ack(awaited.update_id), 2.0)[0] is None  # a waiter gets one ack only


def test_frame_answers_carry_their_send_time_and_gating_holds_pass_through() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig())
    core.push_frame(IMAGE, 7, None, now=1.0)
    waiter, answer = core.route(_frame_answer(7), received=1.2)
    assert waiter is None and isinstance(answer, ClientResult)
    assert answer.frame_index == 7 and answer.end_to_end_ms == pytest.approx(200.0)
    hold = pb.TrackResponse(gating=convert.gating_decision_to_proto(GatingDecision(BeamState.HOLD, "stall")))
    _, decision = core.route(hold, 1.3)
    assert isinstance(decision, GatingDecision) and decision.state is BeamState.HOLD


def test_waiters_left_at_the_end_get_the_sessions_failure() -> None:
    core: SessionCore[str] = SessionCore(SessionConfig())
    core.push_update(PromptUpdate(UpdateAction.REMOVE, 1), waiter="w1")
    core.fail(TrackerError(grpc.StatusCode.INTERNAL, "engine died"))
    waiters, error = core.orphans()
    assert waiters == ["w1"] and error.details == "engine died" and core.waiters == {}
    fresh: SessionCore[str] = SessionCore(SessionConfig())
    fresh.push_update(PromptUpdate(UpdateAction.REMOVE, 1), waiter="w2")
    assert "ended before the prompt update was answered" in str(fresh.orphans()[1])


def test_first_answer_must_be_started() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig())
    with pytest.raises(TrackerError, match="expected `started`, got end of stream"):
        core.accept_first(None)
    with pytest.raises(TrackerError, match="expected `started`, got `frame`") as err:
        core.accept_first(_frame_answer(0))
    assert err.value.code == grpc.StatusCode.INTERNAL
    started = pb.TrackResponse(started=pb.SessionStarted(session_id="s9", latency_budget_ms=100.0))
    assert core.accept_first(started).session_id == "s9" and core.session_id == "s9"


def test_queued_answers_unwrap_to_none_at_the_end_and_raise_errors() -> None:
    assert unwrap(END) is None
    with pytest.raises(PromptRefusedError):
        unwrap(PromptRefusedError(PromptAck(3, False, "no")))
    result = ClientResult(FrameResult(1, FrameStatus.OK), 0.0, 0.1)
    assert unwrap(result) is result and frame_of(result) is result
    assert frame_of(PromptAck(1, True)) is None
    with pytest.raises(TrackerError, match="stream ended before the frame was answered"):
        frame_of(None)


# -- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "details", "lost"),
    [
        (grpc.StatusCode.UNAVAILABLE, "connection refused", True),
        (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2", True),
        (grpc.StatusCode.UNKNOWN, "Stream removed", True),
        (grpc.StatusCode.INTERNAL, "engine raised", False),
        (grpc.StatusCode.INVALID_ARGUMENT, "socket closed", False),  # the server's own refusal
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "max sessions", False),
    ],
)
def test_error_mapping_keeps_the_servers_words_and_tells_a_lost_connection(
    code: grpc.StatusCode, details: str, lost: bool
) -> None:
    assert is_connection_loss(code, details) is lost
    error = error_from_status(code, details, "s1", in_session=True)
    assert isinstance(error, SessionLostError) is lost
    assert error.code == code and details in str(error)
    assert type(error_from_status(code, details, "s1", in_session=False)) is TrackerError  # not in a session


def test_a_cancel_is_silent_only_when_the_caller_made_it() -> None:
    core: SessionCore[object] = SessionCore(SessionConfig())
    error = core.stream_error(grpc.StatusCode.CANCELLED, None)
    assert isinstance(error, SessionLostError) and "cancelled" in error.details
    core.closed = True
    assert core.stream_error(grpc.StatusCode.CANCELLED, "Cancelled") is None
    assert type(core.stream_error(grpc.StatusCode.INVALID_ARGUMENT, "bad frame")) is TrackerError


# -- failover decisions ----------------------------------------------------------------------


@pytest.mark.parametrize("code", list(grpc.StatusCode))
def test_which_status_codes_fail_over_and_which_reopen_failures_are_retried(code: grpc.StatusCode) -> None:
    from tracker.client.failover import is_retryable_reopen

    error = TrackerError(code, "x")
    assert triggers_failover(error) is (code == grpc.StatusCode.UNAVAILABLE)
    retried = is_retryable_reopen(error, FailoverPolicy())
    if code in REFUSAL_CODES:
        assert not retried
    elif code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,  # the client cancelled nothing: a replica or the proxy dropped it
    ):
        assert retried
    else:
        assert not retried  # e.g. INTERNAL without a transport message: the server's own failure
    assert is_retryable_reopen(SessionLostError(code, "x"), FailoverPolicy())  # a lost connection always is


@given(
    attempts=st.integers(1, 20),
    initial=st.floats(0.0, 2.0),
    multiplier=st.floats(1.0, 4.0),
    cap=st.floats(0.0, 5.0),
)
def test_backoff_starts_at_once_grows_and_stays_under_its_cap(
    attempts: int, initial: float, multiplier: float, cap: float
) -> None:
    policy = FailoverPolicy(
        max_attempts=attempts, backoff_initial_s=initial, backoff_multiplier=multiplier, backoff_max_s=cap
    )
    delays = list(policy.delays())
    assert len(delays) == attempts and delays[0] == 0.0
    assert min(delays) >= 0.0 and max(delays) <= cap
    assert delays == sorted(delays)  # never shrinks
    if attempts > 1:
        assert delays[1] == min(initial, cap)


def test_backoff_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="non-shrinking"):
        FailoverPolicy(backoff_multiplier=0.5)
    with pytest.raises(ValueError, match="open timeout"):
        FailoverPolicy(open_timeout_s=0.0)


def test_a_refusal_ends_the_session_and_answers_in_flight_frames_lost() -> None:
    core = FailoverCore(SessionConfig(objects=OBJECTS))
    core.sent(4, 1.0, IMAGE)
    refusal = TrackerError(grpc.StatusCode.PERMISSION_DENIED, "token revoked")
    out, reopen = core.ended(refusal, "s1", now=1.5)
    assert not reopen
    lost, failure, end = out
    assert isinstance(lost, ClientResult) and lost.status is FrameStatus.LOST and lost.frame_index == 4
    assert failure is refusal and end is END
    with pytest.raises(TrackerError, match="token revoked"):
        core.admit_frame(5, 1.6, IMAGE)


def test_a_fault_answers_lost_then_reopens_unless_the_caller_is_closing() -> None:
    core = FailoverCore(SessionConfig(objects=OBJECTS))
    core.sent(0, 1.0, IMAGE)
    out, reopen = core.ended(SessionLostError(grpc.StatusCode.UNAVAILABLE, "goaway"), "s1", now=1.2)
    assert reopen and [a.frame_index for a in out] == [0]  # no BEAM_HOLD: not a gating session
    assert core.in_gap
    gap_answer = core.admit_frame(1, 1.3, IMAGE)
    assert gap_answer is not None and gap_answer.status is FrameStatus.LOST
    with pytest.raises(SessionLostError, match="failing over"):
        core.check_update("s1")
    plan = core.next_attempt()
    assert plan is not None and core.reopen_attempts == 1
    config, prime = plan
    assert config.client_name == "(failover)" and prime is None  # no frame was tracked well yet
    closing = FailoverCore(SessionConfig(objects=OBJECTS))
    closing.closing = True
    out, reopen = closing.ended(TrackerError(grpc.StatusCode.UNAVAILABLE, "drain"), "s2", now=2.0)
    assert not reopen and out[-1] is END and closing.next_attempt() is None


def test_give_up_names_the_cause_and_the_last_refusal() -> None:
    cause = TrackerError(grpc.StatusCode.UNAVAILABLE, "replica drained")
    last = TrackerError(grpc.StatusCode.RESOURCE_EXHAUSTED, "no room")
    given_up = FailoverCore.gave_up(cause, last)
    assert given_up.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "replica drained" in given_up.details and "no room" in given_up.details


def test_a_send_that_fails_with_a_refusal_is_raised_and_forgotten() -> None:
    core = FailoverCore(SessionConfig(objects=OBJECTS))
    assert core.admit_frame(3, 1.0, IMAGE) is None and 3 in core.inflight
    with pytest.raises(TrackerError, match="bad pixels"):
        core.not_sent(3, TrackerError(grpc.StatusCode.INVALID_ARGUMENT, "bad pixels"))
    assert 3 not in core.inflight
    core.admit_frame(4, 1.1, IMAGE)
    core.not_sent(4, SessionLostError(grpc.StatusCode.UNAVAILABLE, "socket closed"))  # answered LOST later
    assert 4 in core.inflight


def test_an_accepted_update_changes_what_a_reopen_prompts() -> None:
    core = FailoverCore(SessionConfig(objects=OBJECTS))
    update = core.book_update(PromptUpdate(UpdateAction.ADD, 2, BoxPrompt(1, 1, 5, 5), "gallbladder"), 7)
    assert update.update_id == 7
    assert core.route(PromptAck(7, True)) is True
    assert [o.object_id for o in core.resume_config().objects] == [1, 2]
    core.book_update(PromptUpdate(UpdateAction.REMOVE, 1), 8)
    core.route(PromptAck(8, False, "refused"))  # refused: object 1 stays
    assert [o.object_id for o in core.resume_config().objects] == [1, 2]


@pytest.mark.parametrize("local", [False, True])
def test_the_priming_frames_answer_is_swallowed_even_when_the_send_slot_dropped_it(local: bool) -> None:
    # The priming frame re-sends an index the caller already has an answer for: whether the
    # server computed it or a "latest" send slot replaced it locally, passing it on would
    # answer that frame twice.
    core = FailoverCore(SessionConfig(objects=OBJECTS))
    core.sent(0, 1.0, IMAGE)
    core.ended(SessionLostError(grpc.StatusCode.UNAVAILABLE, "goaway"), "s1", now=1.2)
    core.next_attempt()
    core.reopened("s2", 1, priming=0)
    status = FrameStatus.DROPPED if local else FrameStatus.OK
    assert core.route(ClientResult(FrameResult(0, status), 1.3, 1.4, local=local)) is False
    assert core.route(ClientResult(FrameResult(5, FrameStatus.OK), 1.5, 1.6)) is True
