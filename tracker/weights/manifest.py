"""Hashes and manifests: a model directory's ``manifest.json`` lists the checkpoints it trusts.

:func:`fetch <tracker.weights.download.fetch>` records what it downloads there when no published
hash vouches for it; :func:`register_local` records a local or fine-tuned file; servers load only
files that :func:`verify_model_file` finds listed and unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracker.weights.errors import WeightsError
from tracker.weights.registry import WeightInfo, default_weights_dir

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
READ_CHUNK = 1 << 20  # bytes per read: hashing and downloading never hold a whole checkpoint in memory
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so a 900 MB checkpoint needs no 900 MB of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_sha256(value: str) -> str:
    """``value`` as 64 lower-case hex digits; ValueError for anything else."""
    hex_value = value.strip().lower()
    if not _SHA256_RE.match(hex_value):
        raise ValueError(f"not a SHA-256 hex digest (64 hex characters): {value!r}")
    return hex_value


def read_manifest(dest: Path) -> dict[str, Any]:
    """``dest``'s manifest (empty when there is none); WeightsError when it is damaged."""
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


def record(dest: Path, info: WeightInfo, url: str, sha256: str, source: str) -> None:
    """List ``info``'s file in ``dest``'s manifest with its hash and who vouched for it (``source``)."""
    manifest = read_manifest(dest)
    manifest[info.filename] = {
        "name": info.name,
        "url": url,
        "sha256": sha256,
        "verified_by": source,
        "config": info.config,
    }
    _write_manifest(dest, manifest)


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
    record(dest, info, source_url, digest, "local")
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
    manifest = read_manifest(resolved.parent)
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
