"""SAM 2.1 checkpoints: a registry, a verified resumable download, and a safe loader.

Why this exists: the tracker loads hundreds of megabytes of third-party weights into a
process that answers a treatment console. A truncated download, a mirror's HTML error page
or a tampered file must never be loaded silently, and loading must never run code from the
file. So:

* every download is checked against a SHA-256 before it is moved into the cache, and a file
  that fails is deleted rather than kept around to be picked up later;
* downloads go to ``<file>.part`` and resume with an HTTP ``Range`` request, because the
  large checkpoint is ~900 MB and clinical networks drop connections;
* the verified ``.part`` is renamed into place with :func:`os.replace`, so the cache holds
  either nothing or a complete, verified file under the final name;
* :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``: tensors and plain
  containers only, never arbitrary pickled objects.

Where the hashes come from. Meta publishes the download URLs (the sam2 repository's
``checkpoints/download_ckpts.sh`` and README) but **no checksums**. The SHA-256 values in
:data:`_REGISTRY` are the ones pinned by the micro-sam project
(``computational-cell-analytics/micro-sam``, ``micro_sam/v2/util.py``, ``HASHES``) for these
exact ``dl.fbaipublicfiles.com/.../092824/`` URLs, which micro-sam verifies on every
download. They agree with many independent repositories that recorded the hashes and byte
sizes of their own downloads of the same URLs, and with the Hugging Face mirrors
(``facebook/sam2.1-hiera-*``), whose Git-LFS storage addresses files by SHA-256. They are
therefore third-party observations, not a statement by Meta; a registry entry may carry
``sha256=None`` and then :func:`fetch` refuses to finish unless the caller supplies a hash
(``--sha256 HEX``) or explicitly accepts trust on first use (``--trust-on-first-use``), which
records the computed hash in the cache's ``manifest.json`` and verifies against it from then
on. Trust on first use only detects *later* changes; it does not prove the first download
was genuine.

Not handled: two processes fetching the same file into the same cache at the same moment
(they would share the ``.part``; the hash check still stops a corrupted result from being
installed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "TRACKER_WEIGHTS_DIR"
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes\s+\*/(\d+)$")
_MAX_LISTED_KEYS = 10


class WeightsError(RuntimeError):
    """A checkpoint could not be fetched, verified or loaded."""


class ChecksumMismatch(WeightsError):
    """A downloaded or cached file does not have the expected SHA-256."""


class UnverifiedDownloadRefused(WeightsError):
    """No hash is known for a checkpoint and the caller did not accept trust on first use."""


class CheckpointError(WeightsError):
    """A file is not a usable checkpoint for the given model."""


@dataclass(frozen=True)
class WeightInfo:
    """One downloadable checkpoint.

    ``sha256`` is None when no trustworthy published hash is known; see the module docstring
    for what :func:`fetch` does then. ``config`` is the Hydra config name sam2's
    ``build_sam2`` expects for these weights.
    """

    name: str
    aliases: tuple[str, ...]
    url: str
    config: str
    size_bytes: int
    sha256: str | None

    @property
    def filename(self) -> str:
        """The cache file name: the last component of the official URL."""
        return PurePosixPath(urlsplit(self.url).path).name


_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"

# SHA-256 values: micro-sam, micro_sam/v2/util.py `HASHES` (github.com/computational-cell-analytics/
# micro-sam, read at commit 05c57cce615abd66915365b7ca6c9bf552b71455), keyed hvit_t/s/b/l for the same
# 092824 URLs. Byte sizes: as recorded next to the same hashes in several unrelated public repositories
# (download scripts and provenance notes for these URLs); they are informational, the hash decides.
_REGISTRY: tuple[WeightInfo, ...] = (
    WeightInfo(
        name="tiny",
        aliases=(
            "t",
            "sam2.1_hiera_tiny",
            "sam2.1_hiera_t",
            "sam2.1-hiera-tiny",
            "facebook/sam2.1-hiera-tiny",
        ),
        url=f"{_BASE_URL}/sam2.1_hiera_tiny.pt",
        config="configs/sam2.1/sam2.1_hiera_t.yaml",
        size_bytes=156_008_466,
        sha256="7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
    ),
    WeightInfo(
        name="small",
        aliases=(
            "s",
            "sam2.1_hiera_small",
            "sam2.1_hiera_s",
            "sam2.1-hiera-small",
            "facebook/sam2.1-hiera-small",
        ),
        url=f"{_BASE_URL}/sam2.1_hiera_small.pt",
        config="configs/sam2.1/sam2.1_hiera_s.yaml",
        size_bytes=184_416_285,
        sha256="6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
    ),
    WeightInfo(
        name="base_plus",
        aliases=(
            "b+",
            "base+",
            "base-plus",
            "sam2.1_hiera_base_plus",
            "sam2.1_hiera_b+",
            "sam2.1-hiera-base-plus",
            "facebook/sam2.1-hiera-base-plus",
        ),
        url=f"{_BASE_URL}/sam2.1_hiera_base_plus.pt",
        config="configs/sam2.1/sam2.1_hiera_b+.yaml",
        size_bytes=323_606_802,
        sha256="a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    ),
    WeightInfo(
        name="large",
        aliases=(
            "l",
            "sam2.1_hiera_large",
            "sam2.1_hiera_l",
            "sam2.1-hiera-large",
            "facebook/sam2.1-hiera-large",
        ),
        url=f"{_BASE_URL}/sam2.1_hiera_large.pt",
        config="configs/sam2.1/sam2.1_hiera_l.yaml",
        size_bytes=898_083_611,
        sha256="2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
    ),
)


def list_weights() -> list[WeightInfo]:
    """The known checkpoints, smallest first."""
    return list(_REGISTRY)


def resolve_model(name: str) -> WeightInfo:
    """Look a checkpoint up by name or alias (case-insensitive).

    Raises ValueError naming the valid names, so a typo on the command line is answered with
    the choices rather than a KeyError.
    """
    key = name.strip().lower()
    for info in _REGISTRY:
        if key == info.name or key in (a.lower() for a in info.aliases):
            return info
    valid = ", ".join(f"{i.name} ({', '.join(i.aliases)})" for i in _REGISTRY)
    raise ValueError(f"unknown checkpoint {name!r}; valid names (aliases): {valid}")


def default_weights_dir() -> Path:
    """``$TRACKER_WEIGHTS_DIR``, else ``~/.cache/rt-tracker/weights``."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rt-tracker" / "weights"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so a 900 MB checkpoint needs no 900 MB of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalize_sha256(value: str) -> str:
    hex_value = value.strip().lower()
    if not _SHA256_RE.match(hex_value):
        raise ValueError(f"not a SHA-256 hex digest (64 hex characters): {value!r}")
    return hex_value


def _read_manifest(dest: Path) -> dict[str, Any]:
    path = dest / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        # A damaged manifest must not be silently treated as "no recorded hash" by a later TOFU run
        # that would then trust a different file: stop and let a person look.
        raise WeightsError(f"cannot read weights manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"weights manifest {path} is not a JSON object")
    return data


def _write_manifest(dest: Path, manifest: Mapping[str, Any]) -> None:
    path = dest / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _record(dest: Path, info: WeightInfo, url: str, sha256: str, source: str) -> None:
    manifest = _read_manifest(dest)
    manifest[info.filename] = {
        "name": info.name,
        "url": url,
        "sha256": sha256,
        "verified_by": source,
        "config": info.config,
    }
    _write_manifest(dest, manifest)


def _expected_hash(
    info: WeightInfo, override: str | None, manifest: Mapping[str, Any]
) -> tuple[str | None, str]:
    """The hash to verify against and where it came from: caller, registry, then manifest."""
    if override is not None:
        value = _normalize_sha256(override)
        if info.sha256 is not None and value != info.sha256:
            logger.warning(
                "the given SHA-256 %s differs from the published %s for %s; verifying against the given one",
                value,
                info.sha256,
                info.name,
            )
        return value, "user"
    if info.sha256 is not None:
        return _normalize_sha256(info.sha256), "published"
    entry = manifest.get(info.filename)
    if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str):
        return _normalize_sha256(entry["sha256"]), "trust-on-first-use"
    return None, "none"


def fetch(
    name: str | WeightInfo,
    dest_dir: Path | str | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    trust_on_first_use: bool = False,
) -> Path:
    """Download a checkpoint into the cache (or find it there) and return its verified path.

    ``name`` is a registry name or alias, or a :class:`WeightInfo` for a checkpoint outside the
    registry. ``url`` overrides where to download from (a mirror) without changing the cached
    file name or the expected hash. ``sha256`` overrides the expected hash. A file already in
    the cache is hashed and returned without any network access if it verifies; if it does not,
    it is deleted and downloaded again. An interrupted download leaves ``<file>.part`` behind and
    raises; calling again resumes it.

    Without any known hash (no ``sha256`` argument, none in the registry, none recorded in the
    manifest) this raises :class:`UnverifiedDownloadRefused` before downloading, unless
    ``trust_on_first_use`` is set: then the computed hash is recorded in ``manifest.json`` with a
    loud warning, and later fetches verify against it.
    """
    info = name if isinstance(name, WeightInfo) else resolve_model(name)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_weights_dir()
    source_url = url or info.url
    if urlsplit(source_url).scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are supported, got {source_url!r}")
    dest.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(dest)
    expected, source = _expected_hash(info, sha256, manifest)
    if expected is None and not trust_on_first_use:
        raise UnverifiedDownloadRefused(
            f"no published SHA-256 is known for {info.name} ({info.filename}), so a download could not be"
            " verified; pass --sha256 HEX (sha256=...) with a hash from a source you trust, or"
            " --trust-on-first-use (trust_on_first_use=True) to record the hash of what is downloaded now"
        )

    target = dest / info.filename
    if target.is_file():
        if expected is None:
            actual = sha256_file(target)
            _trust_first_use(dest, info, source_url, target, actual)
            return target
        actual = sha256_file(target)
        if actual == expected:
            logger.info("%s already present and verified (sha256 %s): %s", info.name, actual, target)
            return target
        logger.warning(
            "cached %s does not verify (expected sha256 %s, got %s); deleting it and downloading again",
            target,
            expected,
            actual,
        )
        target.unlink()

    part = target.with_name(target.name + ".part")
    _download(source_url, part, progress=progress, desc=info.filename)
    actual = sha256_file(part)
    if expected is None:
        os.replace(part, target)
        _trust_first_use(dest, info, source_url, target, actual)
        return target
    if actual != expected:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"SHA-256 mismatch for {info.filename} downloaded from {source_url}: expected {expected}"
            f" ({source}), got {actual}; the downloaded file was deleted"
        )
    os.replace(part, target)
    if source != "published":
        _record(dest, info, source_url, actual, source)
    logger.info("fetched %s, sha256 %s verified (%s): %s", info.name, actual, source, target)
    return target


def _trust_first_use(dest: Path, info: WeightInfo, url: str, target: Path, actual: str) -> None:
    _record(dest, info, url, actual, "trust-on-first-use")
    logger.warning(
        "TRUST ON FIRST USE: %s was NOT verified against any published hash. Its SHA-256 %s is now"
        " recorded in %s and later fetches will check against it, but that does not show this copy"
        " is genuine: compare the hash with a source you trust. File: %s",
        info.name,
        actual,
        dest / MANIFEST_NAME,
        target,
    )


def _content_range_start_total(header: str | None) -> tuple[int, int | None] | None:
    match = _CONTENT_RANGE_RE.match((header or "").strip())
    if not match:
        return None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _open(url: str, offset: int) -> Any:
    headers = {"User-Agent": "rt-tracker-weights/1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)


def _download(url: str, part: Path, *, progress: bool, desc: str) -> None:
    """Fill ``part`` with the whole resource at ``url``, resuming from what it already holds.

    Raises WeightsError, keeping ``part``, when the transfer ends early, so a later call resumes.
    """
    offset = part.stat().st_size if part.is_file() else 0
    for _attempt in range(2):  # a second attempt only after discarding an unusable .part
        try:
            response = _open(url, offset)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                unsatisfied = _UNSATISFIED_RANGE_RE.match(exc.headers.get("Content-Range", "").strip())
                if unsatisfied and int(unsatisfied.group(1)) == offset:
                    logger.info("%s: the partial download is already complete (%d bytes)", desc, offset)
                    return
                logger.info("%s: server rejected resuming at byte %d; starting over", desc, offset)
                part.unlink(missing_ok=True)
                offset = 0
                continue
            raise WeightsError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise WeightsError(f"download of {url} failed: {exc}") from exc

        with response:
            length_header = response.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            mode = "wb"
            if offset and response.status == 206:
                content_range = _content_range_start_total(response.headers.get("Content-Range"))
                if content_range is None or content_range[0] != offset:
                    logger.info("%s: server resumed at an unexpected position; starting over", desc)
                    part.unlink(missing_ok=True)
                    offset = 0
                    continue
                total = content_range[1] or (offset + length if length is not None else None)
                mode = "ab"
                logger.info("%s: resuming at byte %d", desc, offset)
            else:
                if offset:
                    logger.info(
                        "%s: server does not support resuming (HTTP %d); starting over", desc, response.status
                    )
                    offset = 0
                total = length
            _copy(response, part, mode, offset, total, progress=progress, desc=desc)
            return
    raise WeightsError(f"download of {url} could not be started cleanly")


def _copy(
    response: Any, part: Path, mode: str, offset: int, total: int | None, *, progress: bool, desc: str
) -> None:
    from tqdm import tqdm

    written = offset
    try:
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # includes http.client.IncompleteRead's relatives and socket errors
        raise WeightsError(
            f"download of {desc} interrupted after {written} bytes ({exc}); run fetch again to resume"
        ) from exc
    # http.client returns b"" rather than raising when the connection closes before Content-Length.
    if total is not None and written != total:
        raise WeightsError(
            f"download of {desc} ended after {written} of {total} bytes; run fetch again to resume"
        )


def _is_legacy_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # pickle protocol >= 2 opcode, the legacy torch.save format


def load_checkpoint(model: torch.nn.Module, path: Path | str) -> None:
    """Load a checkpoint's weights into ``model``, strictly and without unpickling objects.

    Accepts sam2's layout (the state dict under ``"model"``, as ``build_sam._load_checkpoint``
    reads it) or a bare state dict. Keys and shapes are compared before anything is copied, so a
    mismatch leaves ``model`` untouched and the error names up to ten missing and unexpected keys
    with their counts.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path) and not _is_legacy_pickle(path):
        with open(path, "rb") as f:
            head = f.read(16)
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle;"
            f" it starts with {head!r})"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):
            raise CheckpointError(
                f"refusing to load {path}: it contains pickled Python objects other than tensors and plain"
                " containers, which could run code when loaded (torch.load weights_only=True rejected it)"
            ) from exc
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_line(exc)}") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_line(exc)}") from exc

    state = _state_dict_of(obj, path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match {type(model).__name__}: "
            f"{len(missing)} missing key(s){_listing(missing)}; "
            f"{len(unexpected)} unexpected key(s){_listing(unexpected)}"
        )
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{path} does not match {type(model).__name__}: {len(mismatched)} shape mismatch(es)"
            f"{_listing(mismatched)}"
        )
    model.load_state_dict(state, strict=True)
    logger.info("loaded %d tensors from %s into %s", len(state), path, type(model).__name__)


def _state_dict_of(obj: Any, path: Path) -> Mapping[str, Any]:
    import torch

    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, Mapping):
        keys = sorted(str(k) for k in obj)
        raise CheckpointError(
            f"{path} holds no state dict: expected tensors under 'model' or at the top level;"
            f" top-level keys{_listing(keys) or ': none'}"
        )
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")


def _listing(items: list[str]) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    more = f", … {len(items) - _MAX_LISTED_KEYS} more" if len(items) > _MAX_LISTED_KEYS else ""
    return f": {shown}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- command line ---------------------------------------------------------------------------------


def _format_size(n: int) -> str:
    return f"{n / 1_000_000:.0f} MB"


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "size", "config", "sha256")]
    rows += [
        (i.name, _format_size(i.size_bytes), i.config, i.sha256 or "unpublished") for i in list_weights()
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for row in rows:
        print(  # noqa: T201 - the command's output
            "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        path = fetch(
            args.name,
            args.dir,
            url=args.url,
            sha256=args.sha256,
            progress=not args.no_progress,
            trust_on_first_use=args.trust_on_first_use,
        )
    except UnverifiedDownloadRefused as exc:
        logger.error("%s", exc)
        return 2
    except WeightsError as exc:
        logger.error("%s", exc)
        return 1
    logger.info("checkpoint ready: %s (config %s)", path, resolve_model(args.name).config)
    return 0


def add_cli(subparsers: Any) -> None:
    """Add ``weights list`` and ``weights fetch`` to the ``tracker`` command's subparsers."""
    p = subparsers.add_parser("weights", help="list and download SAM 2.1 checkpoints")
    weights = p.add_subparsers(dest="weights_action", required=True)

    s = weights.add_parser("list", help="known checkpoints with their size, config and SHA-256")
    s.set_defaults(func=_cmd_list)

    s = weights.add_parser("fetch", help="download a checkpoint into the cache and verify its SHA-256")
    s.add_argument("name", help="tiny, small, base_plus, large, or an alias such as t or sam2.1_hiera_tiny")
    s.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"cache folder; default: ${WEIGHTS_DIR_ENV} or ~/.cache/rt-tracker/weights",
    )
    s.add_argument("--url", default=None, help="download from this URL (a mirror) instead of Meta's")
    s.add_argument("--sha256", default=None, metavar="HEX", help="expected SHA-256, overriding the registry")
    s.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="where no hash is known, record the downloaded file's hash instead of refusing",
    )
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_fetch)

    s = weights.add_parser(
        "add", help="record a local or fine-tuned checkpoint's SHA-256 so a server may load it"
    )
    s.add_argument("path", type=Path, help="the checkpoint file")
    s.add_argument("--dir", type=Path, default=None, help="model directory (default: the weights cache)")
    s.set_defaults(func=_cmd_add)


def register_local(path: Path, dest_dir: Path | None = None) -> Path:
    """Copy ``path`` into a model directory (unless already there) and record its SHA-256.

    This is the explicit act of trust for checkpoints that have no published hash
    (fine-tuned models, MedSAM2, ...): servers load checkpoints only from model
    directories whose ``manifest.json`` lists them (see :func:`verify_model_file`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    dest = Path(dest_dir) if dest_dir is not None else default_weights_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / path.name
    if target.resolve() != path.resolve():
        shutil.copyfile(path, target)
    size = target.stat().st_size
    source_url = f"file://{path.resolve()}"  # its last component names the manifest entry
    info = WeightInfo(name=path.stem, aliases=(), url=source_url, config="", size_bytes=size, sha256=None)
    digest = sha256_file(target)
    _record(dest, info, source_url, digest, "local")
    logger.warning("recorded %s in %s as trusted (SHA-256 %s...)", target.name, dest, digest[:16])
    return target


def verify_model_file(path: Path, model_dirs: Iterable[Path]) -> Path:
    """``path`` resolved, if it lies in one of ``model_dirs`` and matches that directory's manifest.

    Raises WeightsError naming what is wrong: outside every model directory, not listed
    in the manifest, or a SHA-256 that differs from the recorded one (a changed file).
    """
    resolved = Path(path).resolve()
    dirs = [Path(d).resolve() for d in model_dirs]
    home = next((d for d in dirs if resolved.is_relative_to(d)), None)
    if home is None:
        raise WeightsError(
            f"{path} is outside the model directories ({', '.join(map(str, dirs)) or 'none'}); "
            "put it there with `tracker weights add PATH` or serve with --model-dir"
        )
    if not resolved.is_file():
        raise WeightsError(f"model file not found: {resolved}")
    manifest = _read_manifest(resolved.parent)
    entry = manifest.get(resolved.name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise WeightsError(
            f"{resolved.name} is not listed in {resolved.parent / MANIFEST_NAME}; "
            "record it with `tracker weights add PATH` (or fetch it with `tracker weights fetch`)"
        )
    actual = sha256_file(resolved)
    if actual != entry["sha256"]:
        raise WeightsError(
            f"{resolved} does not match its manifest: SHA-256 {actual} but {entry['sha256']} was recorded"
        )
    return resolved


def _cmd_add(args: argparse.Namespace) -> int:
    target = register_local(args.path, args.dir)
    logger.info("ready to serve: --engine-option checkpoint=%s", target)
    return 0
