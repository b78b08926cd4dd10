"""The ``sam2`` engine: SAM 2.1 run causally, frame by frame (see :mod:`tracker.engines.sam2.engine`).

Importing this package does not import torch or sam2; building an engine does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.engines.base import Engine


def make_engine(options: dict[str, str]) -> Engine:
    """Registry factory for ``tracker.engines.ENGINE_FACTORIES["sam2"]`` (string options, validated)."""
    from tracker.engines.sam2.engine import Sam2Engine

    return Sam2Engine.from_options(options)


__all__ = ["make_engine"]
