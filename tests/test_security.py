"""TLS, mutual TLS and bearer tokens on a real server; plaintext only on loopback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tracker.engines import create_engine
from tracker.server.app import ServerOptions, start_server
from tracker.server.security import BearerTokenInterceptor, TlsFiles, load_tokens
from tracker.v1 import tracker_pb2 as pb
from tracker.v1 import tracker_pb2_grpc as pb_grpc

TOKEN = "s3cret-token-0123456789abcdef"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    p = {
        name: d / name
        for name in ("ca.key", "ca.pem", "server.key", "server.pem", "client.key", "client.pem")
    }
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(p["ca.key"]),
             "-out", str(p["ca.pem"]), "-days", "2", "-subj", "/CN=test-ca")  # fmt: skip
    ext = d / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for who, extra in (("server", ["-extfile", str(ext)]), ("client", [])):
        csr = d / f"{who}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(p[f"{who}.key"]), "-out", str(csr),
                 "-subj", f"/CN={who}")  # fmt: skip
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(p["ca.pem"]), "-CAkey", str(p["ca.key"]),
                 "-CAcreateserial", "-out", str(p[f"{who}.pem"]), "-days", "2", *extra)  # fmt: skip
    return p


def _info(channel: grpc.Channel, token: str | None = None) -> pb.ServerInfo:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    return pb_grpc.TrackerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=5, metadata=metadata)


def _secure_channel(port: int, pki: dict[str, Path], client_cert: bool) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca.pem"].read_bytes(),
        private_key=pki["client.key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client.pem"].read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(f"localhost:{port}", creds)


def test_tls_server_serves_tls_clients_and_refuses_plaintext(pki):
    running = start_server(
        {"flow": create_engine("flow")},
        options=ServerOptions(tls=TlsFiles(pki["server.pem"], pki["server.key"])),
    )
    try:
        with _secure_channel(running.port, pki, client_cert=False) as channel:
            assert _info(channel).default_engine == "flow"
        with grpc.insecure_channel(running.address) as channel, pytest.raises(grpc.RpcError) as err:
            _info(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def test_mutual_tls_requires_a_client_certificate(pki):
    tls = TlsFiles(pki["server.pem"], pki["server.key"], client_ca=pki["ca.pem"])
    running = start_server({"flow": create_engine("flow")}, options=ServerOptions(tls=tls))
    try:
        with _secure_channel(running.port, pki, client_cert=True) as channel:
            assert _info(channel).default_engine == "flow"
        with (
            _secure_channel(running.port, pki, client_cert=False) as channel,
            pytest.raises(grpc.RpcError) as err,
        ):
            _info(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def test_missing_tls_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="TLS certificate file not found"):
        TlsFiles(tmp_path / "nope.pem", tmp_path / "nope.key").credentials()


def test_plaintext_is_refused_off_loopback():
    with pytest.raises(ValueError, match=r"refusing plaintext on 0\.0\.0\.0"):
        start_server({"flow": create_engine("flow")}, options=ServerOptions(host="0.0.0.0"))


def test_bearer_token_is_required_except_for_health():
    running = start_server({"flow": create_engine("flow")}, options=ServerOptions(auth_tokens=(TOKEN,)))
    try:
        assert running.ready.wait(30)
        with grpc.insecure_channel(running.address) as channel:
            for token, expected in (
                (None, "missing `authorization"),
                ("wrong-token-0123456789", "invalid bearer"),
            ):
                with pytest.raises(grpc.RpcError) as err:
                    _info(channel, token)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and expected in err.value.details()
            # The streaming method is guarded too.
            with pytest.raises(grpc.RpcError) as err:
                list(
                    pb_grpc.TrackerStub(channel).Track(
                        iter([pb.TrackRequest(open=pb.SessionOpen())]), timeout=5
                    )
                )
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _info(channel, TOKEN).default_engine == "flow"
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(0)


def test_tokens_come_from_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "tokens"
    path.write_text("# operators\n" + TOKEN + "\n\n")
    monkeypatch.setenv("TRACKER_AUTH_TOKENS", "another-long-token-abcdefgh, third-long-token-abcdefgh")
    assert load_tokens(path) == (TOKEN, "another-long-token-abcdefgh", "third-long-token-abcdefgh")
    monkeypatch.setenv("TRACKER_AUTH_TOKENS", "short")
    with pytest.raises(ValueError, match="shorter than 16"):
        load_tokens(None)
    with pytest.raises(ValueError, match="at least one token"):
        BearerTokenInterceptor(())
