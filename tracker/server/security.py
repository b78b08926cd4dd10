"""Transport security and authentication for the server.

* TLS, and mutual TLS when a client CA is given, from files that may be replaced
  while the server runs: new connections get the new certificate
  (``grpc.dynamic_ssl_server_credentials``, see :class:`CertificateWatch`).
* Bearer tokens in the ``authorization`` metadata, checked by a server
  interceptor before any tracker method runs. Tokens are compared in constant
  time (``hmac.compare_digest``) so that response timing does not leak how much
  of a guessed token was right. The health service (and reflection) may stay
  open so that orchestrators can probe the server without credentials.
"""

from __future__ import annotations

import _ssl
import hmac
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


Stamp = tuple[int, int, int]  # (inode, mtime_ns, size) of a file


class TlsFileError(ValueError):
    """A TLS file that cannot be served: unreadable, empty, not PEM, or a key that does not match."""


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _refuse_password() -> bytes:
    raise TlsFileError("encrypted private keys are not supported")


def _not_after(cert: Path) -> str | None:
    """The certificate's notAfter as OpenSSL prints it, via the stdlib's own (private) PEM decoder."""
    decode = getattr(_ssl, "_test_decode_cert", None)
    try:
        return str(decode(str(cert))["notAfter"]) if decode else None
    except (ssl.SSLError, OSError, KeyError):
        return None


@dataclass(frozen=True)
class TlsFiles:
    """The server's TLS files; :meth:`credentials` serves them and picks up replaced files."""

    cert: Path  # PEM certificate chain of the server
    key: Path  # PEM private key of the server
    client_ca: Path | None = None  # PEM CA bundle: when set, clients must present a certificate it signed

    def named(self) -> tuple[tuple[str, Path], ...]:
        files = (("certificate", self.cert), ("key", self.key), ("client CA", self.client_ca))
        return tuple((name, Path(path)) for name, path in files if path is not None)

    def stamps(self) -> tuple[Stamp | None, ...]:
        return tuple(_stamp(path) for _, path in self.named())

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The files as a gRPC certificate configuration; TlsFileError naming the file and the problem."""
        data: dict[str, bytes] = {}
        for name, path in self.named():
            try:
                data[name] = path.read_bytes()
            except OSError as exc:
                raise TlsFileError(f"cannot read the TLS {name} file {path}: {exc.strerror or exc}") from None
            if not data[name].strip():
                raise TlsFileError(f"the TLS {name} file {path} is empty")
            if name != "key":
                try:
                    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
                        cadata=data[name].decode("ascii", errors="replace")
                    )
                except (ssl.SSLError, ValueError) as exc:
                    raise TlsFileError(
                        f"the TLS {name} file {path} holds no PEM certificate: {exc}"
                    ) from None
        try:  # OpenSSL checks that the key is a private key and that it matches the certificate
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert, self.key, _refuse_password)
        except (ssl.SSLError, TlsFileError) as exc:
            if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
                raise TlsFileError(
                    f"the TLS key file {self.key} does not match the certificate {self.cert}"
                ) from None
            raise TlsFileError(
                f"the TLS key file {self.key} holds no usable PEM private key: {exc}"
            ) from None
        return grpc.ssl_server_certificate_configuration(
            [(data["key"], data["certificate"])], root_certificates=data.get("client CA")
        )

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that serve the files as they are now, and again after they are replaced."""
        for name, path in self.named():
            if not path.is_file():
                raise FileNotFoundError(f"TLS {name} file not found: {path}")
        stamps = self.stamps()
        watch = CertificateWatch(self, self.load(), seen=stamps, in_use=stamps)
        logger.info("TLS certificate %s in use (valid until %s)", self.cert, _not_after(self.cert) or "?")
        return grpc.dynamic_ssl_server_credentials(
            watch.initial, watch.fetch, require_client_authentication=self.client_ca is not None
        )


@dataclass
class CertificateWatch:
    """What a TLS server last saw of its files, and gRPC's fetcher that reloads them when they change.

    gRPC calls :meth:`fetch` before each new TLS handshake; connections already
    established keep the certificate they were made with. A call costs one ``stat``
    per file and reads the files only when an inode, mtime or size differs from
    the last call's. A broken set of files (unreadable, empty, not PEM, a key
    that does not match the certificate) is logged once at ERROR and the
    certificate in use stays; the next change is tried again.
    """

    files: TlsFiles
    initial: grpc.ServerCertificateConfiguration
    seen: tuple[Stamp | None, ...]  # the stamps of the last look, good or broken
    in_use: tuple[Stamp | None, ...]  # the stamps of the files gRPC serves
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and load; None to keep the one in use."""
        stamps = self.files.stamps()
        with self.lock:
            if stamps == self.seen:
                return None
            self.seen = stamps
            try:
                config = self.files.load()
            except TlsFileError as exc:
                logger.error("%s; keeping the certificate in use", exc)
                return None
            except Exception:  # gRPC would only log it; keep serving whatever happens here
                logger.exception("reloading the TLS files failed; keeping the certificate in use")
                return None
            if self.files.stamps() != stamps:  # replaced while being read: the next handshake looks again
                return None
            changed = [
                name
                for (name, _), a, b in zip(self.files.named(), stamps, self.in_use, strict=True)
                if a != b
            ]
            self.in_use = stamps
        logger.info(
            "TLS certificate reloaded (%s changed): %s in use for new connections (valid until %s)",
            ", ".join(changed), self.files.cert, _not_after(self.files.cert) or "?",
        )  # fmt: skip
        return config


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
