"""``manifest.json`` of an export directory: what was exported, from what, and its hashes.

The runtime refuses a directory whose manifest does not match what it is asked to run
(model, image size, graph files, weights): silently running graphs exported from other
weights or another resolution would give plausible-looking but wrong masks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
RANDOM_WEIGHTS = "random-weights"


class ManifestError(ValueError):
    """An export directory that cannot be used as asked (mismatch, missing or altered file)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class WeightsRecord:
    """Where the exported weights came from: a checkpoint (path + SHA-256) or a seed."""

    source: str  # "checkpoint" | RANDOM_WEIGHTS
    sha256: str = RANDOM_WEIGHTS
    path: str | None = None
    seed: int | None = None
    sharpen_logits: float | None = None  # tests/benchmarks: tracker.engines.sam2.parity.sharpen_random_logits


@dataclass
class GraphRecord:
    file: str
    sha256: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


@dataclass
class Manifest:
    model: str
    config: str
    image_size: int
    opset: int
    weights: WeightsRecord
    graphs: dict[str, GraphRecord] = field(default_factory=dict)
    format: int = FORMAT_VERSION
    exporter: dict[str, str] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(
                f"no {MANIFEST_NAME} in {directory}: not an export directory (run `tracker export`)"
            )
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT_VERSION:
                raise ManifestError(
                    f"{path}: manifest format {raw.get('format')!r}, expected {FORMAT_VERSION}"
                )
            return cls(
                model=str(raw["model"]),
                config=str(raw["config"]),
                image_size=int(raw["image_size"]),
                opset=int(raw["opset"]),
                weights=WeightsRecord(**raw["weights"]),
                graphs={k: GraphRecord(**v) for k, v in raw["graphs"].items()},
                format=int(raw["format"]),
                exporter=dict(raw.get("exporter", {})),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{path} is malformed: {exc}") from exc

    def verify(
        self,
        directory: Path,
        *,
        model: str | None = None,
        image_size: int | None = None,
        checkpoint: str | None = None,
        graph_names: tuple[str, ...] = (),
    ) -> None:
        """Raise :class:`ManifestError` naming the first mismatch; check every file hash."""
        if model is not None and model != self.model:
            raise ManifestError(f"export in {directory} is for model {self.model}, not {model}")
        if image_size is not None and image_size != self.image_size:
            raise ManifestError(
                f"export in {directory} is for image size {self.image_size}, not {image_size}; export again"
                f" with --image-size {image_size}"
            )
        for name in graph_names:
            if name not in self.graphs:
                raise ManifestError(f"export in {directory} lacks graph {name!r}")
        for name, g in self.graphs.items():
            path = Path(directory) / g.file
            if not path.is_file():
                raise ManifestError(f"graph {name}: file {path} is missing")
            actual = sha256_file(path)
            if actual != g.sha256:
                raise ManifestError(
                    f"graph {name}: {path} has SHA-256 {actual}, manifest says {g.sha256} (altered or"
                    " partly copied export)"
                )
        if checkpoint is not None:
            if self.weights.source != "checkpoint":
                raise ManifestError(
                    f"export in {directory} was made with random weights (seed {self.weights.seed}), not from"
                    f" checkpoint {checkpoint}"
                )
            actual = sha256_file(Path(checkpoint))
            if actual != self.weights.sha256:
                raise ManifestError(
                    f"checkpoint {checkpoint} has SHA-256 {actual}, but the export was made from one with"
                    f" {self.weights.sha256}"
                )
