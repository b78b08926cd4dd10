"""Checkpoint registry, verified resumable download and safe loading, against a loopback server only."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.server
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import torch
from torch import nn

from tracker import weights
from tracker.weights import (
    CheckpointError,
    ChecksumMismatch,
    UnverifiedDownloadRefused,
    WeightInfo,
    WeightsError,
    add_cli,
    fetch,
    list_weights,
    load_checkpoint,
    resolve_model,
)

CUT_AFTER = 1_500_000  # bytes the "flaky" server sends before dropping the first connection


class Net(nn.Module):
    """Small, but with ~3 MB of parameters so the download spans several 1 MiB chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(1024, 768)
        self.norm = nn.BatchNorm1d(768)
        self.head = nn.Linear(768, 2)


def _plant_marker(path: str) -> None:
    Path(path).write_text("code ran while loading")


class Planter:
    """Unpickling this calls ``_plant_marker``: proof of whether a loader executes pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_plant_marker, (self.marker,))


def _checkpoint_bytes(state: dict[str, torch.Tensor], *, wrap: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": state} if wrap else state, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def source_net() -> Net:
    torch.manual_seed(0)
    return Net()


@pytest.fixture(scope="module")
def payload(source_net: Net) -> bytes:
    data = _checkpoint_bytes(source_net.state_dict())
    assert len(data) > 2 * CUT_AFTER
    return data


# --- loopback HTTP server ---------------------------------------------------------------------------


@dataclasses.dataclass
class ServerState:
    files: dict[str, bytes]
    support_range: bool = True
    cut_first_response_after: int | None = None
    requests: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, range_header))
            cut, state.cut_first_response_after = state.cut_first_response_after, None
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and state.support_range:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            assert match, range_header
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        data = body[start:]
        self.send_header("Content-Length", str(len(data)))
        if state.support_range:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if cut is not None:
            self.wfile.write(data[:cut])  # then the connection closes: an interrupted transfer
            self.close_connection = True
            return
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    state: ServerState


@pytest.fixture
def server(payload: bytes) -> Iterator[tuple[_Server, str]]:
    httpd = _Server(("127.0.0.1", 0), Handler)
    httpd.state = ServerState(files={"/net.pt": payload})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may write to the real ~/.cache, even through the default directory."""
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "default-cache"))


def _info(base_url: str, payload: bytes, **changes: object) -> WeightInfo:
    info = WeightInfo(
        name="net",
        aliases=(),
        url=f"{base_url}/net.pt",
        config="configs/test/net.yaml",
        size_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
    )
    return dataclasses.replace(info, **changes)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != weights.MANIFEST_NAME)


# --- fetch ------------------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_loads(
    server: tuple[_Server, str], payload: bytes, source_net: Net, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    httpd, base = server
    path = fetch(_info(base, payload), tmp_path, progress=True)
    assert path == tmp_path / "net.pt"
    assert path.read_bytes() == payload
    assert _leftovers(tmp_path) == ["net.pt"]  # no .part left behind
    assert httpd.state.requests == [("/net.pt", None)]
    assert "net.pt" in capfd.readouterr().err  # the tqdm bar was drawn
    model = Net()
    load_checkpoint(model, path)
    for key, value in source_net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_checksum_mismatch_names_both_hashes_and_leaves_nothing(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path
) -> None:
    _, base = server
    # The registry's real tiny entry, pointed at our server: the bytes cannot have Meta's hash.
    published = resolve_model("tiny").sha256
    assert published is not None
    with pytest.raises(ChecksumMismatch) as err:
        fetch("tiny", tmp_path, url=f"{base}/net.pt", progress=False)
    message = str(err.value)
    assert published in message
    assert hashlib.sha256(payload).hexdigest() in message
    assert "deleted" in message
    assert _leftovers(tmp_path) == []


def test_interrupted_download_resumes_with_range(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path
) -> None:
    httpd, base = server
    httpd.state.cut_first_response_after = CUT_AFTER
    info = _info(base, payload)
    with pytest.raises(WeightsError, match="resume"):
        fetch(info, tmp_path, progress=False)
    part = tmp_path / "net.pt.part"
    assert part.stat().st_size == CUT_AFTER
    assert not (tmp_path / "net.pt").exists()

    path = fetch(info, tmp_path, progress=False)
    assert httpd.state.requests == [("/net.pt", None), ("/net.pt", f"bytes={CUT_AFTER}-")]
    assert weights.sha256_file(path) == info.sha256
    assert path.read_bytes() == payload
    assert _leftovers(tmp_path) == ["net.pt"]


def test_server_without_range_support_restarts_from_scratch(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path
) -> None:
    httpd, base = server
    httpd.state.support_range = False
    httpd.state.cut_first_response_after = CUT_AFTER
    info = _info(base, payload)
    with pytest.raises(WeightsError, match="resume"):
        fetch(info, tmp_path, progress=False)
    path = fetch(info, tmp_path, progress=False)
    # It asked to resume, got the whole file (200) and must not have appended it to the partial one.
    assert httpd.state.requests[1] == ("/net.pt", f"bytes={CUT_AFTER}-")
    assert path.read_bytes() == payload


def test_complete_part_file_is_finished_without_downloading_again(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path
) -> None:
    httpd, base = server
    (tmp_path / "net.pt.part").write_bytes(payload)  # e.g. killed between download and rename
    path = fetch(_info(base, payload), tmp_path, progress=False)
    assert httpd.state.requests == [("/net.pt", f"bytes={len(payload)}-")]  # answered 416
    assert path.read_bytes() == payload


def test_cached_file_is_not_downloaded_again_but_a_bad_one_is(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path
) -> None:
    httpd, base = server
    info = _info(base, payload)
    path = fetch(info, tmp_path, progress=False)
    assert fetch(info, tmp_path, progress=False) == path
    assert len(httpd.state.requests) == 1

    path.write_bytes(payload[:100] + bytes([payload[100] ^ 0xFF]) + payload[101:])  # corrupted in the cache
    assert fetch(info, tmp_path, progress=False).read_bytes() == payload
    assert len(httpd.state.requests) == 2


def test_missing_hash_is_refused_before_downloading(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path
) -> None:
    httpd, base = server
    info = _info(base, payload, sha256=None)
    with pytest.raises(UnverifiedDownloadRefused) as err:
        fetch(info, tmp_path, progress=False)
    assert "--sha256" in str(err.value)
    assert "--trust-on-first-use" in str(err.value)
    assert httpd.state.requests == []
    assert _leftovers(tmp_path) == []

    # A hash from the caller is enough, and is remembered for next time.
    digest = hashlib.sha256(payload).hexdigest()
    path = fetch(info, tmp_path, sha256=digest.upper(), progress=False)
    assert path.read_bytes() == payload
    manifest = json.loads((tmp_path / weights.MANIFEST_NAME).read_text())
    assert manifest["net.pt"]["sha256"] == digest
    assert manifest["net.pt"]["verified_by"] == "user"


def test_trust_on_first_use_records_the_hash_and_enforces_it_later(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    httpd, base = server
    info = _info(base, payload, sha256=None)
    with caplog.at_level(logging.WARNING, logger="tracker.weights"):
        path = fetch(info, tmp_path, progress=False, trust_on_first_use=True)
    digest = hashlib.sha256(payload).hexdigest()
    manifest = json.loads((tmp_path / weights.MANIFEST_NAME).read_text())
    assert manifest["net.pt"] == {
        "name": "net",
        "url": f"{base}/net.pt",
        "sha256": digest,
        "verified_by": "trust-on-first-use",
        "config": info.config,
    }
    assert any("TRUST ON FIRST USE" in r.getMessage() and digest in r.getMessage() for r in caplog.records)

    # The server now hands out different bytes: the recorded hash catches it.
    path.unlink()
    httpd.state.files["/net.pt"] = payload[::-1]
    with pytest.raises(ChecksumMismatch, match=digest):
        fetch(info, tmp_path, progress=False, trust_on_first_use=True)
    assert _leftovers(tmp_path) == []


def test_bad_sha256_argument_and_non_http_url_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        fetch("tiny", tmp_path, sha256="abc123", url="http://127.0.0.1:9/x.pt")
    with pytest.raises(ValueError, match="http"):
        fetch("tiny", tmp_path, url="file:///etc/passwd")


def test_default_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "w"))
    assert weights.default_weights_dir() == tmp_path / "w"
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV)
    assert weights.default_weights_dir() == Path.home() / ".cache" / "rt-tracker" / "weights"


# --- registry ---------------------------------------------------------------------------------------


def test_registry_lists_the_four_official_checkpoints() -> None:
    infos = list_weights()
    assert [i.name for i in infos] == ["tiny", "small", "base_plus", "large"]
    configs = resources.files("sam2")
    for info in infos:
        assert info.url == (f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{info.filename}"), (
            info.name
        )
        assert info.filename == f"sam2.1_hiera_{info.name}.pt"
        assert configs.joinpath(info.config).is_file(), info.config  # build_sam2 can find it
        assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", info.sha256)
    assert [i.size_bytes for i in infos] == sorted(i.size_bytes for i in infos)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("tiny", "tiny"),
        ("T", "tiny"),
        ("sam2.1_hiera_tiny", "tiny"),
        ("s", "small"),
        ("b+", "base_plus"),
        ("sam2.1_hiera_base_plus", "base_plus"),
        ("facebook/sam2.1-hiera-large", "large"),
        (" large ", "large"),
    ],
)
def test_resolve_model_accepts_aliases(alias: str, name: str) -> None:
    assert resolve_model(alias).name == name


def test_resolve_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown checkpoint 'huge'") as err:
        resolve_model("huge")
    for name in ("tiny", "small", "base_plus", "large"):
        assert name in str(err.value)


# --- command line -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracker")
    add_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_list_prints_a_table(capsys: pytest.CaptureFixture) -> None:
    args = _parser().parse_args(["weights", "list"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "size", "config", "sha256"]
    assert len(lines) == 5
    for line, info in zip(lines[1:], list_weights(), strict=True):
        assert line.split()[0] == info.name
        assert info.config in line
        assert (info.sha256 or "unpublished") in line


def test_cli_fetch(server: tuple[_Server, str], payload: bytes, tmp_path: Path) -> None:
    _, base = server
    digest = hashlib.sha256(payload).hexdigest()
    common = ["weights", "fetch", "t", "--dir", str(tmp_path), "--url", f"{base}/net.pt", "--no-progress"]
    args = _parser().parse_args(common)
    assert args.func(args) == 1  # our bytes are not Meta's tiny checkpoint
    args = _parser().parse_args([*common, "--sha256", digest])
    assert args.func(args) == 0
    assert (tmp_path / "sam2.1_hiera_tiny.pt").read_bytes() == payload


def test_cli_fetch_refusal_exit_code(
    server: tuple[_Server, str], payload: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = server
    unpublished = dataclasses.replace(resolve_model("tiny"), sha256=None)
    monkeypatch.setattr(weights.registry, "_REGISTRY", (unpublished,))
    common = ["weights", "fetch", "tiny", "--dir", str(tmp_path), "--url", f"{base}/net.pt", "--no-progress"]
    args = _parser().parse_args(common)
    assert args.func(args) == 2
    args = _parser().parse_args([*common, "--trust-on-first-use"])
    assert args.func(args) == 0
    args = _parser().parse_args(["weights", "list"])
    assert args.func(args) == 0


# --- load_checkpoint --------------------------------------------------------------------------------


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("wrap", [True, False], ids=["sam2-layout", "bare-state-dict"])
def test_load_checkpoint_good(source_net: Net, tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(_checkpoint_bytes(source_net.state_dict(), wrap=wrap))
    model = Net()
    load_checkpoint(model, path)
    for key, value in source_net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_load_checkpoint_missing_keys(source_net: Net, tmp_path: Path) -> None:
    state = dict(source_net.state_dict())
    del state["head.weight"], state["norm.running_mean"]
    path = tmp_path / "ckpt.pt"
    path.write_bytes(_checkpoint_bytes(state))
    model = Net()
    before = _snapshot(model)
    with pytest.raises(
        CheckpointError, match=r"2 missing key\(s\): head.weight, norm.running_mean; 0 unexpected"
    ):
        load_checkpoint(model, path)
    _assert_untouched(model, before)


def test_load_checkpoint_unexpected_keys(source_net: Net, tmp_path: Path) -> None:
    state = dict(source_net.state_dict())
    state.update({f"extra.{i:02d}": torch.zeros(1) for i in range(12)})
    path = tmp_path / "ckpt.pt"
    path.write_bytes(_checkpoint_bytes(state))
    model = Net()
    before = _snapshot(model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    message = str(err.value)
    assert "0 missing key(s)" in message
    assert "12 unexpected key(s): extra.00" in message
    assert "extra.09, … 2 more" in message
    assert "extra.10" not in message  # listing is capped at ten
    _assert_untouched(model, before)


def test_load_checkpoint_shape_mismatch(source_net: Net, tmp_path: Path) -> None:
    state = dict(source_net.state_dict())
    state["head.weight"] = torch.zeros(3, 768)
    path = tmp_path / "ckpt.pt"
    path.write_bytes(_checkpoint_bytes(state))
    model = Net()
    before = _snapshot(model)
    with pytest.raises(CheckpointError, match=r"head.weight \(3, 768\) vs model \(2, 768\)"):
        load_checkpoint(model, path)
    _assert_untouched(model, before)


def test_load_checkpoint_refuses_pickled_objects(source_net: Net, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    torch.save({"model": source_net.state_dict(), "extra": Planter(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(Net(), path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"<html><body>404 Not Found</body></html>", "not a PyTorch checkpoint"),
        (bytes(range(256)) * 8, "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
        (b"\x80\x02garbage-after-a-pickle-header", "not a readable PyTorch checkpoint"),
    ],
    ids=["html", "binary", "empty", "broken-pickle"],
)
def test_load_checkpoint_garbage(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(Net(), path)


def test_load_checkpoint_truncated_and_not_a_state_dict(source_net: Net, tmp_path: Path) -> None:
    data = _checkpoint_bytes(source_net.state_dict())
    path = tmp_path / "ckpt.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint|not a readable"):
        load_checkpoint(Net(), path)
    torch.save({"optimizer": {"lr": 0.1}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"holds no state dict.*epoch, optimizer"):
        load_checkpoint(Net(), path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(Net(), tmp_path / "absent.pt")


def test_servers_load_only_listed_unchanged_checkpoints_from_model_dirs(tmp_path, monkeypatch):
    from tracker.server.app import verified_engine_options
    from tracker.weights import register_local, verify_model_file

    monkeypatch.setenv("TRACKER_WEIGHTS_DIR", str(tmp_path / "cache"))
    outside = tmp_path / "downloads" / "finetuned.pt"
    outside.parent.mkdir()
    outside.write_bytes(b"weights v1")
    with pytest.raises(WeightsError, match="outside the model directories"):
        verified_engine_options({"checkpoint": str(outside)}, [])
    models = tmp_path / "models"
    models.mkdir()
    unlisted = models / "other.pt"
    unlisted.write_bytes(b"x")
    with pytest.raises(WeightsError, match="not listed in"):
        verify_model_file(unlisted, [models])
    registered = register_local(outside, models)
    assert registered == models / "finetuned.pt"
    options = verified_engine_options({"checkpoint": str(registered), "image_size": "512"}, [models])
    assert options == {"checkpoint": str(registered.resolve()), "image_size": "512"}
    registered.write_bytes(b"weights v2, tampered")
    with pytest.raises(WeightsError, match="does not match its manifest"):
        verified_engine_options({"checkpoint": str(registered)}, [models])
    cached = register_local(outside)  # default: the weights cache, always a model directory
    assert verified_engine_options({"checkpoint": str(cached)}, [])["checkpoint"] == str(cached.resolve())
