"""Transport security and authentication for the server.

* TLS, and mutual TLS when a client CA is given (``grpc.ssl_server_credentials``).
* Bearer tokens in the ``authorization`` metadata, checked by a server
  interceptor before any tracker method runs. Tokens are compared in constant
  time (``hmac.compare_digest``) so that response timing does not leak how much
  of a guessed token was right. The health service (and reflection) may stay
  open so that orchestrators can probe the server without credentials.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

logger = logging.getLogger(__name__)

TOKEN_ENV = "TRACKER_AUTH_TOKENS"  # comma- or newline-separated
OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM certificate chain of the server
    key: Path  # PEM private key of the server
    client_ca: Path | None = None  # PEM CA bundle: when set, clients must present a certificate it signed

    def credentials(self) -> grpc.ServerCredentials:
        for name, path in (("certificate", self.cert), ("key", self.key), ("client CA", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"TLS {name} file not found: {path}")
        pair = (Path(self.key).read_bytes(), Path(self.cert).read_bytes())
        if self.client_ca is None:
            return grpc.ssl_server_credentials([pair])
        return grpc.ssl_server_credentials(
            [pair], root_certificates=Path(self.client_ca).read_bytes(), require_client_auth=True
        )


def load_tokens(token_file: Path | None = None, env: str = TOKEN_ENV) -> tuple[str, ...]:
    """Tokens from a file (one per line, ``#`` comments) and/or the environment variable."""
    tokens: list[str] = []
    if token_file is not None:
        for line in Path(token_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
    for part in os.environ.get(env, "").replace("\n", ",").split(","):
        if part.strip():
            tokens.append(part.strip())
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise ValueError(f"{len(short)} auth token(s) are shorter than 16 characters; use long random tokens")
    return tuple(tokens)


def _abort_handler(
    code: grpc.StatusCode, details: str, handler: grpc.RpcMethodHandler
) -> grpc.RpcMethodHandler:
    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, details)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without a valid ``authorization: Bearer <token>`` with UNAUTHENTICATED."""

    def __init__(self, tokens: Iterable[str], open_services: Iterable[str] = OPEN_SERVICES) -> None:
        self._tokens = tuple(t.encode() for t in tokens)
        if not self._tokens:
            raise ValueError("bearer-token authentication needs at least one token")
        self._open = tuple(f"/{s}/" for s in open_services)

    def _valid(self, presented: str) -> bool:
        scheme, _, token = presented.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        candidate = token.strip().encode()
        # Compare against every token, without stopping early, in constant time each.
        return sum(hmac.compare_digest(candidate, t) for t in self._tokens) > 0

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._open):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = metadata.get("authorization")
        if presented is None:
            return _abort_handler(
                grpc.StatusCode.UNAUTHENTICATED, "missing `authorization: Bearer <token>` metadata", handler
            )
        if not self._valid(str(presented)):
            logger.warning("refused %s: invalid bearer token", method)
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token", handler)
        return handler
