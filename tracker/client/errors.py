"""The client's errors and how a gRPC status maps onto them (no I/O)."""

from __future__ import annotations

import grpc

from tracker.types import PromptAck

# Status codes that mean the transport went away under a live session (server stopped or
# restarted, network dropped, proxy reset). Anything else is the server's own decision.
LOST_CODES = (grpc.StatusCode.UNAVAILABLE,)
_LOST_TEXT = ("stream removed", "socket closed", "rst_stream", "connection reset", "goaway")


class TrackerError(RuntimeError):
    """The server refused a call or ended the session; ``code`` and ``details`` say why.

    ``details`` is the server's own message (e.g. ``cannot open session: ...``
    for an INVALID_ARGUMENT open). ``code`` is None for refusals that travel
    inside the stream rather than as a gRPC status (see :class:`PromptRefusedError`).
    """

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(f"{code.name}: {details}" if code is not None else details)
        self.code = code
        self.details = details


class PromptRefusedError(TrackerError):
    """The server answered a prompt update with ``accepted = false``; the session goes on."""

    def __init__(self, ack: PromptAck) -> None:
        super().__init__(None, f"prompt update {ack.update_id} refused: {ack.message}")
        self.ack = ack


class SessionLostError(TrackerError):
    """The connection dropped under an open session; its server-side state is gone.

    Sessions are never resumed: the tracker's state (reference frames, object
    memory) lived on the server and was discarded with the stream. Open a new
    session with fresh prompts; the client re-creates its channel for it.
    """

    def __init__(self, code: grpc.StatusCode | None, details: str, session_id: str = "") -> None:
        name = f"session {session_id}" if session_id else "the session"
        super().__init__(
            code,
            f"connection lost ({details}); the server-side state of {name} is gone:"
            " open a new session with fresh prompts (sessions are not resumed)",
        )
        self.cause_details = details
        self.session_id = session_id


class AnswerTimeout(SessionLostError):
    """Frames were in flight and the session answered nothing for too long: a silent loss.

    A connection that dies without a reset (a switch dropping packets, a frozen host)
    ends no stream; the client notices by the answers it does not get.
    """


def is_connection_loss(code: grpc.StatusCode | None, details: str) -> bool:
    """Whether a stream's end status means the transport dropped (not a server refusal)."""
    if code in LOST_CODES:
        return True
    text = (details or "").lower()
    return code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL) and any(t in text for t in _LOST_TEXT)


def error_from_status(
    code: grpc.StatusCode | None, details: str, session_id: str = "", *, in_session: bool = False
) -> TrackerError:
    """The exception a call that ended with ``code`` should surface as: the server's message kept."""
    if in_session and is_connection_loss(code, details):
        return SessionLostError(code, details, session_id)
    return TrackerError(code, details)


def error_from_rpc(exc: grpc.RpcError, session_id: str = "", *, in_session: bool = False) -> TrackerError:
    """:func:`error_from_status` of a failed call's exception (sync or ``grpc.aio``)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    return error_from_status(code, details, session_id, in_session=in_session)
