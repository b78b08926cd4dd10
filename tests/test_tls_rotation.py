"""Certificates replaced while a real TLS server runs: new connections get them, open sessions go on."""

from __future__ import annotations

import logging
import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import disk, shift, textured_image
from tests.test_security import _openssl
from tracker.client import TrackerClient, TrackerError
from tracker.engines import create_engine
from tracker.server.app import RunningServer, ServerOptions, start_server
from tracker.server.security import TlsFiles
from tracker.types import FrameStatus, MaskPrompt, ObjectPrompt

H, W = 64, 80
OBJECTS = (ObjectPrompt(1, MaskPrompt(disk(H, W, 30, 32, 8)), "tumour"),)
IMAGE = textured_image(H, W)
SECURITY_LOGGER = "tracker.server.security"


def _issue(folder: Path, ca: str) -> dict[str, Path]:
    """A new CA named ``ca`` and a server certificate for localhost it signed (EC keys: fast to make)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = folder / ca
    d.mkdir()
    p = {name: d / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(p["ca.key"]), "-out", str(p["ca.pem"]), "-days", "2",
             "-subj", f"/CN={ca}")  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", *ec, "-keyout", str(p["server.key"]), "-out", str(p["server.csr"]),
             "-subj", "/CN=localhost")  # fmt: skip
    _openssl("x509", "-req", "-in", str(p["server.csr"]), "-CA", str(p["ca.pem"]), "-CAkey", str(p["ca.key"]),
             "-CAcreateserial", "-out", str(p["server.pem"]), "-days", "2",
             "-extfile", str(d / "server.ext"))  # fmt: skip
    return p


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` next to ``path`` and rename it over ``path``, as a rotation would."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.fixture
def pkis(tmp_path) -> tuple[dict[str, Path], dict[str, Path]]:
    return _issue(tmp_path, "old-ca"), _issue(tmp_path, "new-ca")


@pytest.fixture
def served(tmp_path, pkis) -> Iterator[tuple[RunningServer, TlsFiles]]:
    """A flow server on the old CA's certificate, from files in ``tmp_path/live``."""
    old, _ = pkis
    live = tmp_path / "live"
    live.mkdir()
    files = TlsFiles(live / "server.pem", live / "server.key")
    shutil.copyfile(old["server.pem"], files.cert)
    shutil.copyfile(old["server.key"], files.key)
    running = start_server({"flow": create_engine("flow")}, options=ServerOptions(tls=files))
    try:
        assert running.ready.wait(30)
        yield running, files
    finally:
        running.stop(0)


def _connects(port: int, ca: Path) -> bool:
    """Whether a new connection that trusts only ``ca`` completes a call; False on a handshake error."""
    with TrackerClient(f"localhost:{port}", root_certificates=ca) as client:
        try:
            return client.info(timeout_s=5).default_engine == "flow"
        except TrackerError as err:
            assert err.code == grpc.StatusCode.UNAVAILABLE, err
            return False


def _presented(port: int) -> bytes:
    """The DER certificate the server presents to a new connection now."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))


def _der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def test_new_connections_get_the_new_certificate_and_open_sessions_go_on(served, pkis, caplog):
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER)
    (running, files), (old, new) = served, pkis
    with (
        TrackerClient(f"localhost:{running.port}", root_certificates=old["ca.pem"]) as client,
        client.open_session(objects=OBJECTS) as session,
    ):
        for i in range(3):
            session.send_frame(shift(IMAGE, i, 0), i)
            assert session.recv_frame().status is FrameStatus.OK
        assert _presented(running.port) == _der(old["server.pem"])

        _replace(files.key, new["server.key"].read_bytes())
        _replace(files.cert, new["server.pem"].read_bytes())

        for i in range(3, 6):  # the open session keeps its connection, made with the old certificate
            session.send_frame(shift(IMAGE, i, 0), i)
            assert session.recv_frame().status is FrameStatus.OK
        assert _connects(running.port, new["ca.pem"])
        assert not _connects(running.port, old["ca.pem"])
        assert _presented(running.port) == _der(new["server.pem"])
        for i in range(6, 9):
            session.send_frame(shift(IMAGE, i, 0), i)
            assert session.recv_frame().status is FrameStatus.OK

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    reloaded = [r.getMessage() for r in caplog.records if "reloaded" in r.getMessage()]
    assert len(reloaded) == 1 and "certificate, key changed" in reloaded[0] and "valid until" in reloaded[0]


def test_a_broken_key_keeps_the_old_certificate_until_the_files_are_fixed(served, pkis, caplog):
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER)
    (running, files), (old, new) = served, pkis

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    for broken, problem in (
        (b"-----BEGIN PRIVATE KEY-----\nnot a key\n", "holds no usable PEM private key"),
        (b"", "is empty"),
        (new["server.key"].read_bytes(), "does not match the certificate"),  # the cert is still the old one
    ):
        caplog.clear()
        _replace(files.key, broken)
        for _ in range(2):  # every new connection looks at the files; the error is logged once
            assert _connects(running.port, old["ca.pem"])
            assert _presented(running.port) == _der(old["server.pem"])
        assert len(errors()) == 1, errors()
        assert str(files.key) in errors()[0] and problem in errors()[0]

    caplog.clear()
    _replace(files.cert, new["server.pem"].read_bytes())  # with the new key already in place: a good pair
    assert _connects(running.port, new["ca.pem"])
    assert not _connects(running.port, old["ca.pem"])
    assert not errors()
    assert any("reloaded (certificate, key changed)" in r.getMessage() for r in caplog.records)


def test_a_broken_pair_at_start_is_refused_naming_the_file(pkis, tmp_path):
    old, new = pkis
    with pytest.raises(ValueError, match=r"server\.key does not match the certificate"):
        TlsFiles(old["server.pem"], new["server.key"]).credentials()
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"certificate file .*empty\.pem is empty"):
        TlsFiles(empty, old["server.key"]).credentials()
