"""The ``sam2`` engine: SAM 2.1 run causally, one frame at a time, at bounded memory.

The engine is the part every stream shares and nobody changes: the model, built by sam2's
own ``build_sam2_video_predictor`` (see :mod:`tracker.engines.sam2.model`), and how to run it
(:class:`~tracker.engines.sam2.session.Sam2Runtime`). Each stream's state, and the step that
tracks a frame (alone or batched with other streams' frames), is a
:class:`~tracker.engines.sam2.session.Sam2Session`.

At build, :mod:`tracker.engines.sam2.accel` installs per-frame savings on this engine's model
instance: the neck's position encodings are computed once (exact), and with bf16 on CPU
memory attention uses a bf16 matrix-product attention core.

Options, costs: see :mod:`tracker.engines.sam2.options`. Per frame: one image-encoder pass
(the dominant cost) plus, per object, memory attention over at most ``num_maskmem`` frames
and ``max_obj_ptrs`` pointers, the SAM heads and the memory encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tracker.engines.base import PROMPT_CAPABILITIES, Engine, EngineInfo, EngineSession, StepOutput
from tracker.engines.sam2.memory import MemoryPolicy
from tracker.engines.sam2.options import Sam2Settings, parse_options
from tracker.engines.sam2.session import Sam2Runtime, Sam2Session
from tracker.engines.sam2.timing import instrument
from tracker.types import Frame, SessionConfig

logger = logging.getLogger(__name__)

ENGINE_VERSION = "0.1.0"
# Most frames of distinct sessions one image-encoder call takes, unless a backend has a
# limit of its own (TensorRT: its optimisation profile); the scheduler's --max-batch is lower.
DEFAULT_MAX_BATCH = 16

CAPABILITIES = (
    *PROMPT_CAPABILITIES,
    "presence_score",
    "multi_object",
    "cine_mri_preset",
    "crop",
)


def _sam2_version() -> str:
    try:
        return version("sam2")
    except PackageNotFoundError:
        return "unknown"


class Sam2Engine(Engine):
    """Shared, stateless part: the model and settings. Sessions hold all tracking state."""

    def __init__(self, settings: Sam2Settings, model: Any | None = None) -> None:
        """Build (or adopt) the model. ``model``: an already built SAM2 model with these
        settings' config and image size (the parity test shares one with the reference)."""
        import torch

        from tracker.engines.sam2.accel import apply_fast_paths
        from tracker.engines.sam2.model import build_model, fill_holes_available

        self.settings = settings
        model = model if model is not None else build_model(settings)
        if int(model.image_size) != settings.image_size:
            raise ValueError(
                f"model image_size {model.image_size} differs from settings {settings.image_size}"
            )
        model.eval()
        apply_fast_paths(model, settings)  # see tracker.engines.sam2.accel: exact except bf16 on CPU
        instrument(model)  # per-stage timings; numerics untouched (see tracker.engines.sam2.timing)
        fill_hole_area = int(getattr(model, "fill_hole_area", 0))
        self.runtime = Sam2Runtime(
            settings=settings,
            model=model,
            policy=MemoryPolicy.of(model),
            fill_hole_area=fill_hole_area,
            fill_holes=fill_hole_area > 0 and fill_holes_available(),
            max_batch=DEFAULT_MAX_BATCH,
        )
        if fill_hole_area > 0 and not self.runtime.fill_holes:
            logger.info(
                "sam2's hole-filling kernel (sam2._C) is not built: small holes in masks are not filled"
                " (the reference predictor skips it the same way)"
            )
        warnings: tuple[str, ...] = ()
        if settings.random_weights:
            warnings = (
                f"RANDOM WEIGHTS: the sam2 engine ({settings.model}) runs with untrained weights (seed"
                f" {settings.seed}); its masks are meaningless; for tests and benchmarks only, not for"
                " clinical use",
            )
        self.info = EngineInfo(
            name="sam2",
            version=(
                f"{ENGINE_VERSION} ({settings.model} @{settings.image_size}px {settings.dtype},"
                f" sam2 {_sam2_version()}, torch {torch.__version__})"
            ),
            capabilities=CAPABILITIES,
            device=settings.device,
            random_weights=settings.random_weights,
            warnings=warnings,
        )

    @property
    def model(self) -> Any:
        """The SAM2 model every session of this engine runs."""
        return self.runtime.model

    @property
    def max_batch_size(self) -> int:  # type: ignore[override]
        return self.runtime.max_batch or DEFAULT_MAX_BATCH

    @max_batch_size.setter
    def max_batch_size(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {value}")
        self.runtime.max_batch = value

    @classmethod
    def from_options(cls, options: dict[str, str]) -> Sam2Engine:
        """Build from string options; ``option_help(Sam2Settings)`` lists names and allowed values."""
        return cls(parse_options(options))

    def set_intra_op_threads(self, threads: int) -> None:
        import torch

        if self.model.device.type == "cpu":
            torch.set_num_threads(threads)

    def open_session(self, config: SessionConfig) -> Sam2Session:
        return Sam2Session(config, self.runtime)

    def batch_key(self, session: EngineSession, frame: Frame) -> Hashable | None:
        """Every frame of this engine's sessions can share an image-encoder call.

        The input is always resized (or cropped, then resized) to ``image_size`` square, so
        frame sizes need not match; what must match is the model, its device and the
        autocast dtype, all fixed per engine. See :meth:`Sam2Session.step_batch`.
        """
        s = self.settings
        return (self.info.name, id(self), s.image_size, s.device, s.dtype)

    def step_batch(self, work: Sequence[tuple[EngineSession, Frame]]) -> list[StepOutput | Exception]:
        """One encoder call for all items, then each session's tracking (:meth:`Sam2Session.step_batch`)."""
        return Sam2Session.step_batch(self.runtime, work)

    def close(self) -> None:
        self.runtime.model = None


def make_engine(options: dict[str, str]) -> Sam2Engine:
    """Registry factory: ``ENGINE_FACTORIES["sam2"] = make_engine``."""
    return Sam2Engine.from_options(options)
