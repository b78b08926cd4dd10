"""torchvision Mask R-CNN for the overseer: building, checkpoints, and a torch detector.

Three architectures:

* ``r50``: ResNet-50-FPN, torchvision's reference Mask R-CNN (~2 s per 512 px
  frame on this project's 2-core CPU; for a GPU);
* ``mbv3``: MobileNetV3-Large-FPN (``backbone_utils.mobilenet_backbone``) in
  the same ``MaskRCNN`` head, ~2x cheaper on CPU, with smaller anchors because
  its FPN has 3 levels at strides 16-32... (the anchors cover 16-256 px);
* ``small``: torchvision's ``MaskRCNN`` on a five-stage conv-BN-ReLU backbone
  (16-128 channels) with a 64-channel FPN at strides 8, 16 and 32 and heads
  narrowed to match. Made to be trained from scratch on a CPU: with no
  ImageNet weights to start from, the large backbones need more epochs than a
  2-core machine gives in hours, while a handful of instrument classes on a
  320x240 frame need far less capacity. For a GPU or a real domain, ``mbv3`` or
  ``r50`` with ImageNet weights.

Nothing is ever downloaded: models are built with ``weights=None`` and
``weights_backbone=None``; ``backbone_weights`` loads a local ImageNet state
dict (torchvision's own ``resnet50``/``mobilenet_v3_large`` files) into the
backbone when the user has one. Checkpoints are plain dicts of tensors and
primitives, loaded with ``torch.load(weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from tracker.engines.imaging import to_gray8
from tracker.overseer.types import ARCHS, Detection, outputs_to_detections
from tracker.types import Frame

logger = logging.getLogger(__name__)

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


SMALL_CHANNELS = (16, 32, 64, 96, 128)  # stages at strides 2, 4, 8, 16, 32
SMALL_FPN = 64


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[torch.nn.Module]:
    return [
        torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        torch.nn.BatchNorm2d(c_out),
        torch.nn.ReLU(inplace=True),
    ]


def _small_maskrcnn(num_classes: int, spec: ModelSpec) -> MaskRCNN:
    stages: dict[str, torch.nn.Module] = {}
    c_in = 3
    for k, c in enumerate(SMALL_CHANNELS):
        stages[f"s{k}"] = torch.nn.Sequential(*_conv_bn(c_in, c, 2), *_conv_bn(c, c, 1))
        c_in = c
    body = torch.nn.Sequential(collections.OrderedDict(stages))
    backbone = BackboneWithFPN(
        body, {"s2": "0", "s3": "1", "s4": "2"}, list(SMALL_CHANNELS[2:]), SMALL_FPN
    )  # FPN levels 0-2 and torchvision's extra max-pooled level "pool"
    levels = ["0", "1", "2"]
    # Two sizes per level (the RPN head needs the same count everywhere): 16-256 px.
    anchors = AnchorGenerator(((16, 24), (32, 48), (64, 96), (128, 256)), ((0.5, 1.0, 2.0),) * 4)
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=spec.min_size,
        max_size=spec.max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        box_head=TwoMLPHead(SMALL_FPN * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2),
        mask_head=MaskRCNNHeads(SMALL_FPN, (SMALL_FPN,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(SMALL_FPN, SMALL_FPN, num_classes),
    )


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
    elif spec.arch == "small":
        if backbone_weights is not None:
            raise ValueError("the small overseer is trained from scratch: it takes no backbone weights")
        model = _small_maskrcnn(num_classes, spec)
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
