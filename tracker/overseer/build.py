"""Turn an overseer spec (``oracle``, ``guard``, ``W.pt``, ``W.onnx``) into a wrapped engine.

One entry point for the CLI (``serve --overseer``, ``replay --overseer``) and
the bench, so every caller selects detectors the same way:

* ``oracle``: ground truth as detections. Each session names its annotations
  with the session option ``overseer.oracle=PATH`` (a COCO json or a sequence
  folder). Only honoured when ``allow_oracle_paths`` is set — i.e. for the
  in-process server of ``tracker replay`` — because it makes the server read a
  client-named file.
* ``guard``: no detector; the flow drift guard (cine-MRI).
* ``*.pt``: a checkpoint of ``tracker overseer train`` run with torchvision.
* ``*.onnx``: its export run with ONNX Runtime (no torch/torchvision needed).

The weights are loaded once per engine and shared by its sessions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tracker.engines.base import Engine
from tracker.overseer.engine import OPTION_PREFIX, Execution, OverseenEngine
from tracker.overseer.onnx_runner import OnnxMaskRCNNDetector
from tracker.overseer.policy import GuardConfig, PolicyConfig
from tracker.overseer.types import Detector
from tracker.types import PromptError, SessionConfig

logger = logging.getLogger(__name__)

ORACLE_OPTION = OPTION_PREFIX + "oracle"


def load_detector(path: Path | str, *, score_threshold: float = 0.3, device: str = "cpu") -> Detector:
    """A detector from trained weights: ``.pt`` (torchvision) or ``.onnx`` (ONNX Runtime)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such overseer weights file")
    if p.suffix == ".onnx":
        return OnnxMaskRCNNDetector(p, score_threshold=score_threshold)
    if p.suffix in (".pt", ".pth"):
        from tracker.overseer.model import TorchMaskRCNNDetector

        return TorchMaskRCNNDetector.from_checkpoint(p, score_threshold=score_threshold, device=device)
    raise ValueError(f"{p}: overseer weights must be .pt (torch checkpoint) or .onnx")


def _oracle_factory(allow_paths: bool):
    def factory(config: SessionConfig) -> Detector:
        from tracker.overseer.coco import OracleDetector

        path = config.engine_options.get(ORACLE_OPTION)
        if not allow_paths:
            raise PromptError(
                "the oracle overseer is only available in-process (tracker replay without --server)"
            )
        if not path:
            raise PromptError(
                f"the oracle overseer needs the session option {ORACLE_OPTION}=PATH (annotations)"
            )
        try:
            return OracleDetector.from_path(path)
        except (ValueError, FileNotFoundError) as exc:
            raise PromptError(f"oracle overseer: {exc}") from None

    return factory


def wrap_engine(
    inner: Engine,
    spec: str,
    policy_config: PolicyConfig | None = None,
    *,
    execution: Execution = "auto",
    allow_oracle_paths: bool = False,
    guard_config: GuardConfig | None = None,
) -> OverseenEngine:
    """``inner`` watched by the overseer ``spec`` (see the module docstring)."""
    if spec == "oracle":
        return OverseenEngine(
            inner, _oracle_factory(allow_oracle_paths), policy_config, execution, description="oracle"
        )
    if spec == "guard":
        return OverseenEngine(
            inner,
            None,
            policy_config,
            "inline",
            guard=True,
            guard_config=guard_config,
            description="flow guard",
        )
    detector = load_detector(spec)
    return OverseenEngine(
        inner,
        lambda _config: detector,
        policy_config,
        execution,
        description=f"{detector.name} {Path(spec).name}",
    )
