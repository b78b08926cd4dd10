"""Export a trained overseer to ONNX and check it against torchvision.

torchvision's Mask R-CNN exports with the TorchScript-based exporter
(``dynamo=False``) at opset >= 11; 17 is used. Tracing bakes the transform's
resize factors in, so the graph has a fixed input size — the training frame
size, stored in the model metadata with the class names — and the runner
(:mod:`tracker.overseer.onnx_runner`) resizes frames to it.

Parity (:func:`parity`): the same input through both; detections are paired in
score order and compared by box distance, score difference and mask IoU.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tracker.overseer.model import load_model
from tracker.overseer.onnx_runner import OnnxMaskRCNNDetector

logger = logging.getLogger(__name__)

OPSET = 17


def export_onnx(checkpoint: Path | str, out: Path | str, opset: int = OPSET) -> Path:
    """Write ``out`` (.onnx) from a ``tracker overseer train`` checkpoint."""
    import onnx

    model, spec = load_model(checkpoint)
    h, w = spec.image_hw
    x = torch.rand(3, h, w)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about constants (expected: fixed input size)
        torch.onnx.export(
            model,
            ([x],),
            str(out),
            opset_version=opset,
            input_names=["image"],
            output_names=["boxes", "labels", "scores", "masks"],
            dynamo=False,
        )
    proto = onnx.load(str(out))
    for key, value in {
        "classes": json.dumps(list(spec.classes)),
        "image_hw": json.dumps([h, w]),
        "arch": spec.arch,
        "format": "tracker-overseer-onnx-v1",
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    logger.info("exported %s (%s, %dx%d, opset %d) to %s", checkpoint, spec.arch, h, w, opset, out)
    return out


@dataclass
class Parity:
    torch_count: int
    onnx_count: int
    compared: int
    max_box_px: float
    max_score_diff: float
    min_mask_iou: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def parity(checkpoint: Path | str, onnx_path: Path | str, image: np.ndarray, top_k: int = 10) -> Parity:
    """Compare torchvision and ONNX Runtime on ``image`` (H, W, 3 uint8 at the export size)."""
    from tracker.overseer.model import frame_to_tensor

    model, _ = load_model(checkpoint)
    x = frame_to_tensor(image)
    with torch.inference_mode():
        ref = model([x])[0]
    runner = OnnxMaskRCNNDetector(onnx_path, score_threshold=0.0)
    boxes, _labels, scores, masks = runner.raw(x.numpy())
    tb, ts, tm = ref["boxes"].numpy(), ref["scores"].numpy(), ref["masks"].numpy()[:, 0] >= 0.5
    om = masks[:, 0] >= 0.5
    n = min(top_k, len(ts), len(scores))
    box_err = float(np.abs(tb[:n] - boxes[:n]).max()) if n else 0.0
    score_err = float(np.abs(ts[:n] - scores[:n]).max()) if n else 0.0
    ious = []
    for i in range(n):
        union = np.logical_or(tm[i], om[i]).sum()
        ious.append(float(np.logical_and(tm[i], om[i]).sum() / union) if union else 1.0)
    return Parity(len(ts), len(scores), n, box_err, score_err, min(ious, default=1.0))
