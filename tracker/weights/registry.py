"""The known SAM 2.1 checkpoints (official URL, Hydra config, size, pinned SHA-256) and the cache folder.

See the package docstring for where the hashes come from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

WEIGHTS_DIR_ENV = "TRACKER_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightInfo:
    """One downloadable checkpoint.

    ``sha256`` is None when no trustworthy published hash is known; see the package docstring
    for what :func:`~tracker.weights.download.fetch` does then. ``config`` is the Hydra config name sam2's
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
