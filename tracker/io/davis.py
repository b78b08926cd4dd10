"""DAVIS sequence folders (``JPEGImages/`` + ``Annotations/``): layout detection and frame rate."""

from __future__ import annotations

from pathlib import Path

DAVIS_FRAME_RATE_HZ = 24.0  # DAVIS videos were captured at 24 fps (Perazzi et al., CVPR 2016)


def davis_dirs(path: Path) -> tuple[Path, Path, str] | None:
    """(images, annotations, name) for a DAVIS sequence, else None.

    Accepts ``<seq>/JPEGImages`` + ``<seq>/Annotations`` and the official
    ``DAVIS/JPEGImages/480p/<seq>`` (annotations in ``Annotations/480p/<seq>``).
    """
    path = Path(path)
    if (path / "JPEGImages").is_dir() and (path / "Annotations").is_dir():
        return path / "JPEGImages", path / "Annotations", path.name
    parts = path.parts
    if "JPEGImages" in parts:
        i = len(parts) - 1 - parts[::-1].index("JPEGImages")
        annotations = Path(*parts[:i], "Annotations", *parts[i + 1 :])
        if annotations.is_dir() and path.is_dir():
            name = path.parent.name if path.name == "JPEGImages" else path.name
            return path, annotations, name
    return None


def is_davis_sequence(path: Path) -> bool:
    return davis_dirs(Path(path)) is not None
