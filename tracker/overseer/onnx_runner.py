"""Run an exported overseer with ONNX Runtime: deployment without torch or torchvision.

The export (:mod:`tracker.lab.training.export`) fixes the input size (the traced
resize in torchvision's transform bakes its scale factors in), so frames are
resized to it here and masks are resized back. Class names and the input size
travel in the model's metadata. ``InferenceSession.run`` is thread-safe, so one
runner serves every session of an engine. Imports only NumPy, OpenCV and
onnxruntime.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from tracker.engines.imaging import to_gray8
from tracker.overseer.types import Detection, outputs_to_detections
from tracker.types import Frame

logger = logging.getLogger(__name__)


def _rgb8(pixels: np.ndarray) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim == 3 and a.dtype == np.uint8:
        return a[:, :, :3]

    return np.repeat(to_gray8(a)[:, :, None], 3, axis=2)


class OnnxMaskRCNNDetector:
    name = "maskrcnn-onnx"

    def __init__(self, path: Path | str, score_threshold: float = 0.3, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # shape-inference warnings of the traced loops are expected
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "classes" not in meta or "image_hw" not in meta:
            raise ValueError(f"{path}: not an overseer export (no classes/image_hw metadata)")
        self.classes: tuple[str, ...] = tuple(json.loads(meta["classes"]))
        self.image_hw: tuple[int, int] = tuple(json.loads(meta["image_hw"]))  # type: ignore[assignment]
        self.score_threshold = score_threshold
        self.input_name = self.session.get_inputs()[0].name

    def raw(self, image_chw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """boxes, labels, scores, masks for a (3, H, W) float32 input at the export size."""
        boxes, labels, scores, masks = self.session.run(None, {self.input_name: image_chw.astype(np.float32)})
        return boxes, labels, scores, masks

    def detect(self, frame: Frame) -> list[Detection]:
        rgb = _rgb8(frame.pixels)
        h, w = self.image_hw
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / 255.0
        _, labels, scores, masks = self.raw(x)
        return outputs_to_detections(
            labels, scores, masks, self.classes, self.score_threshold, frame.shape_hw
        )

    def close(self) -> None:
        pass
