"""The overseer detector that ships with the package, checked against its manifest before use.

``tracker/overseer/shipped/`` holds at most one exported detector (``*.onnx``) and a
``manifest.json`` that names it with its SHA-256, size, classes, the command and commit that
trained it and the data it was trained and validated on. :func:`shipped_detector` returns
it only when the file's hash matches the manifest: a file changed after shipping is an
error, never silently loaded. ``tracker overseer ship`` (the lab) writes both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tracker.weights.manifest import sha256_file

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ShippedDetector:
    """One shipped detector, as its manifest describes it."""

    file: str  # name inside the shipped folder
    sha256: str
    bytes: int
    classes: tuple[str, ...]
    arch: str
    training_command: str
    commit: str
    data: str  # what it was trained and validated on (seeds, generator, sizes)
    validation: dict[str, object]  # the last epoch's held-out figures

    def path(self, root: Path = SHIPPED_DIR) -> Path:
        return root / self.file

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "classes": list(self.classes)}


def read_manifest(root: Path = SHIPPED_DIR) -> ShippedDetector | None:
    """The manifest's detector; None when nothing is shipped."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return ShippedDetector(
        file=str(d["file"]),
        sha256=str(d["sha256"]),
        bytes=int(d["bytes"]),
        classes=tuple(str(c) for c in d["classes"]),
        arch=str(d["arch"]),
        training_command=str(d["training_command"]),
        commit=str(d["commit"]),
        data=str(d["data"]),
        validation=dict(d["validation"]),
    )


def shipped_detector(root: Path = SHIPPED_DIR) -> Path | None:
    """The shipped ONNX file, verified; None when nothing is shipped; ValueError when it changed."""
    entry = read_manifest(root)
    if entry is None:
        return None
    path = entry.path(root)
    if not path.is_file():
        raise ValueError(f"{root / MANIFEST_NAME} names {entry.file}, which is missing")
    actual = sha256_file(path)
    if actual != entry.sha256 or path.stat().st_size != entry.bytes:
        raise ValueError(
            f"{path}: SHA-256 {actual} ({path.stat().st_size} bytes) differs from the manifest's"
            f" {entry.sha256} ({entry.bytes} bytes); re-ship it with `tracker overseer ship`"
        )
    return path


def write_manifest(entry: ShippedDetector, root: Path = SHIPPED_DIR) -> Path:
    path = root / MANIFEST_NAME
    path.write_text(json.dumps(entry.as_dict(), indent=1) + "\n")
    return path
