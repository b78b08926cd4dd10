"""torchvision Mask R-CNN for the overseer: building, checkpoints, and a torch detector.

Two architectures:

* ``r50``: ResNet-50-FPN, torchvision's reference Mask R-CNN (~2 s per 512 px
  frame on this project's 2-core CPU; for a GPU);
* ``mbv3``: MobileNetV3-Large-FPN (``backbone_utils.mobilenet_backbone``) in
  the same ``MaskRCNN`` head, ~2x cheaper on CPU, with smaller anchors because
  its FPN has 3 levels at strides 16-32... (the anchors cover 16-256 px).

Nothing is ever downloaded: models are built with ``weights=None`` and
``weights_backbone=None``; ``backbone_weights`` loads a local ImageNet state
dict (torchvision's own ``resnet50``/``mobilenet_v3_large`` files) into the
backbone when the user has one. Checkpoints are plain dicts of tensors and
primitives, loaded with ``torch.load(weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone

from tracker.engines.imaging import to_gray8
from tracker.overseer.types import Detection, outputs_to_detections
from tracker.types import Frame

logger = logging.getLogger(__name__)

ARCHS = ("r50", "mbv3")
CHECKPOINT_FORMAT = "tracker-overseer-v1"


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a trained overseer (saved in every checkpoint)."""

    arch: str
    classes: tuple[str, ...]  # class names; label k of the model is classes[k - 1]
    min_size: int = 320  # torchvision's GeneralizedRCNNTransform resize range
    max_size: int = 512
    image_hw: tuple[int, int] = (240, 320)  # training frame size, used as the ONNX input size
    # RPN proposals kept per image (train and test); 0: torchvision's defaults (2000/1000). Small
    # frames with a handful of instruments need far fewer, and a Mask R-CNN step costs ~3x less.
    proposals: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "classes": list(self.classes),
            "min_size": self.min_size,
            "max_size": self.max_size,
            "image_hw": list(self.image_hw),
            "proposals": self.proposals,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            str(d["arch"]),
            tuple(str(c) for c in d["classes"]),
            int(d["min_size"]),
            int(d["max_size"]),
            (int(d["image_hw"][0]), int(d["image_hw"][1])),
            int(d.get("proposals", 0)),
        )


def _load_backbone_weights(body: torch.nn.Module, path: Path, arch: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    prefix = "features." if arch == "mbv3" else ""
    cleaned = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = body.load_state_dict(cleaned, strict=False)
    loaded = len(cleaned) - len(unexpected)
    if loaded == 0:
        raise ValueError(f"{path}: no tensor matches the {arch} backbone; is it the right file?")
    logger.info("backbone weights from %s: %d tensors loaded, %d missing", path, loaded, len(missing))


def build_model(spec: ModelSpec, backbone_weights: Path | None = None) -> MaskRCNN:
    """A Mask R-CNN for ``spec`` (random heads; backbone from ``backbone_weights`` if given)."""
    if spec.arch not in ARCHS:
        raise ValueError(f"unknown overseer architecture {spec.arch!r}; choose from {', '.join(ARCHS)}")
    num_classes = len(spec.classes) + 1  # + background
    if spec.arch == "r50":
        model = maskrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes,
            min_size=spec.min_size,
            max_size=spec.max_size,
            trainable_backbone_layers=5 if backbone_weights is None else 3,
        )
    else:
        backbone = mobilenet_backbone(
            backbone_name="mobilenet_v3_large",
            fpn=True,
            weights=None,
            trainable_layers=6 if backbone_weights is None else 3,
        )
        sizes = ((16, 32, 64, 128, 256),) * 3
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        model = MaskRCNN(
            backbone,
            num_classes=num_classes,
            min_size=spec.min_size,
            max_size=spec.max_size,
            rpn_anchor_generator=anchors,
        )
    if spec.proposals > 0:
        n = spec.proposals
        model.rpn._pre_nms_top_n = {"training": 2 * n, "testing": 2 * n}
        model.rpn._post_nms_top_n = {"training": n, "testing": n}
        model.roi_heads.fg_bg_sampler.batch_size_per_image = min(512, n)
        model.roi_heads.detections_per_img = min(100, max(10, n // 4))
    if backbone_weights is not None:
        _load_backbone_weights(model.backbone.body, Path(backbone_weights), spec.arch)
    return model


def save_checkpoint(path: Path, spec: ModelSpec, model: torch.nn.Module, **extra: Any) -> None:
    """Write atomically (a crash mid-save never leaves a truncated checkpoint behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {"format": CHECKPOINT_FORMAT, "spec": spec.as_dict(), "model": model.state_dict(), **extra}, tmp
    )
    tmp.replace(path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an overseer checkpoint (written by tracker overseer train)")
    return ckpt


def load_model(path: Path | str) -> tuple[MaskRCNN, ModelSpec]:
    ckpt = load_checkpoint(path)
    spec = ModelSpec.from_dict(ckpt["spec"])
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, spec


def frame_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1] from an RGB or grey frame of any supported dtype."""
    a = np.asarray(pixels)
    if a.dtype != np.uint8 or a.ndim != 3:
        a = to_gray8(a) if not (a.ndim == 3 and a.dtype == np.uint8) else a
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return torch.from_numpy(np.array(a[:, :, :3], copy=True)).permute(2, 0, 1).float().div_(255.0)


class TorchMaskRCNNDetector:
    """The overseer as torchvision Mask R-CNN; one model shared by all sessions of an engine.

    Forward passes are serialised by a lock (one model, many session threads);
    on a CPU that costs nothing, since one pass already uses every core.
    """

    name = "maskrcnn"

    def __init__(self, model: MaskRCNN, spec: ModelSpec, score_threshold: float = 0.3, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.spec = spec
        self.device = device
        self.score_threshold = score_threshold
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: Path | str, score_threshold: float = 0.3, device: str = "cpu"):
        model, spec = load_model(path)
        return cls(model, spec, score_threshold, device)

    def detect(self, frame: Frame) -> list[Detection]:
        x = frame_to_tensor(frame.pixels).to(self.device)
        with self._lock, torch.inference_mode():
            out = self.model([x])[0]
        return outputs_to_detections(
            out["labels"].cpu().numpy(),
            out["scores"].cpu().numpy(),
            out["masks"].cpu().numpy(),
            self.spec.classes,
            self.score_threshold,
        )

    def close(self) -> None:
        pass
