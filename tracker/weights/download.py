"""A verified, resumable download into the cache: :func:`fetch`.

The file grows as ``<file>.part`` (resumed with an HTTP ``Range`` request), is hashed, and only
a file that verifies is renamed into place; see the package docstring.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from tracker.weights.errors import ChecksumMismatch, UnverifiedDownloadRefused, WeightsError
from tracker.weights.manifest import (
    MANIFEST_NAME,
    READ_CHUNK,
    normalize_sha256,
    read_manifest,
    record,
    sha256_file,
)
from tracker.weights.registry import WeightInfo, default_weights_dir, resolve_model

logger = logging.getLogger(__name__)

_TIMEOUT_S = 60.0
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes\s+\*/(\d+)$")


def _expected_hash(
    info: WeightInfo, override: str | None, manifest: Mapping[str, Any]
) -> tuple[str | None, str]:
    """The hash to verify against and where it came from: caller, registry, then manifest."""
    if override is not None:
        value = normalize_sha256(override)
        if info.sha256 is not None and value != info.sha256:
            logger.warning(
                "the given SHA-256 %s differs from the published %s for %s; verifying against the given one",
                value,
                info.sha256,
                info.name,
            )
        return value, "user"
    if info.sha256 is not None:
        return normalize_sha256(info.sha256), "published"
    entry = manifest.get(info.filename)
    if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str):
        return normalize_sha256(entry["sha256"]), "trust-on-first-use"
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
    manifest = read_manifest(dest)
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
        record(dest, info, source_url, actual, source)
    logger.info("fetched %s, sha256 %s verified (%s): %s", info.name, actual, source, target)
    return target


def _trust_first_use(dest: Path, info: WeightInfo, url: str, target: Path, actual: str) -> None:
    record(dest, info, url, actual, "trust-on-first-use")
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
            while chunk := response.read(READ_CHUNK):
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
