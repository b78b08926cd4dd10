"""Masks and prompts: what a client sends to start or correct an object, checked as it is read."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tracker import masks as mask_codec
from tracker.convert.limits import Limits
from tracker.types import (
    BoxPrompt,
    MaskPrompt,
    ObjectPrompt,
    PointsPrompt,
    Prompt,
    PromptError,
    PromptUpdate,
    UpdateAction,
)
from tracker.v1 import tracker_pb2 as pb


def mask_from_proto(msg: pb.Mask) -> np.ndarray:
    h, w = int(msg.height), int(msg.width)
    if h == 0 or w == 0:
        raise ValueError(f"mask has no size ({h}x{w})")
    if msg.encoding == pb.PNG:
        return mask_codec.png_decode(msg.data, h, w)
    if msg.encoding in (pb.RLE, pb.MASK_ENCODING_UNSPECIFIED):
        return mask_codec.rle_decode(list(msg.rle_counts), h, w)
    raise ValueError(f"unknown mask encoding {msg.encoding}")


def mask_to_proto(mask: np.ndarray, encoding: int = pb.RLE) -> pb.Mask:
    h, w = mask.shape
    if encoding == pb.PNG:
        return pb.Mask(height=h, width=w, encoding=pb.PNG, data=mask_codec.png_encode(mask))
    return pb.Mask(height=h, width=w, encoding=pb.RLE, rle_counts=mask_codec.rle_encode(mask))


def prompt_from_proto(msg: pb.Prompt, object_id: int, limits: Limits) -> Prompt:
    kind = msg.WhichOneof("kind")
    if kind == "mask":
        try:
            mask = mask_from_proto(msg.mask)
        except ValueError as exc:
            raise PromptError(f"mask prompt for object {object_id}: {exc}") from None
        if not mask.any():
            raise PromptError(f"mask prompt for object {object_id} is empty")
        return MaskPrompt(mask)
    if kind == "box":
        b = msg.box
        coords = (b.x0, b.y0, b.x1, b.y1)
        if not all(math.isfinite(c) for c in coords):
            raise PromptError(f"box prompt for object {object_id} has a non-finite coordinate")
        if b.x1 <= b.x0 or b.y1 <= b.y0:
            raise PromptError(f"box prompt for object {object_id} has no area: (x0, y0, x1, y1) = {coords}")
        return BoxPrompt(b.x0, b.y0, b.x1, b.y1)
    if kind == "points":
        pts = msg.points.points
        if not pts:
            raise PromptError(f"points prompt for object {object_id} has no points")
        if len(pts) > limits.max_prompt_points:
            raise PromptError(
                f"points prompt for object {object_id} has {len(pts)} points;"
                f" the limit is {limits.max_prompt_points}"
            )
        xy = np.array([[p.x, p.y] for p in pts], dtype=np.float64)
        if not np.isfinite(xy).all():
            raise PromptError(f"points prompt for object {object_id} has a non-finite coordinate")
        labels = np.array([1 if p.positive else 0 for p in pts], dtype=np.int64)
        if not labels.any():
            raise PromptError(f"points prompt for object {object_id} needs at least one positive point")
        return PointsPrompt(xy, labels)
    raise PromptError(f"object {object_id} has no prompt (set mask, box or points)")


def prompt_to_proto(prompt: Prompt) -> pb.Prompt:
    if isinstance(prompt, MaskPrompt):
        return pb.Prompt(mask=mask_to_proto(np.asarray(prompt.mask, dtype=bool)))
    if isinstance(prompt, BoxPrompt):
        return pb.Prompt(box=pb.Box(x0=prompt.x0, y0=prompt.y0, x1=prompt.x1, y1=prompt.y1))
    points = [
        pb.Point(x=float(x), y=float(y), positive=bool(lab))
        for (x, y), lab in zip(np.asarray(prompt.points), np.asarray(prompt.labels), strict=True)
    ]
    return pb.Prompt(points=pb.Points(points=points))


def _reference_from_proto(values: Sequence[float], object_id: int) -> tuple[float, float, float] | None:
    if not values:
        return None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise PromptError(f"reference_mm of object {object_id} must be 3 finite numbers, got {list(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))


def object_prompt_from_proto(msg: pb.ObjectPrompt, limits: Limits) -> ObjectPrompt:
    if not msg.HasField("prompt"):
        raise PromptError(f"object {msg.object_id} has no prompt (set mask, box or points)")
    prompt = prompt_from_proto(msg.prompt, msg.object_id, limits)
    return ObjectPrompt(
        msg.object_id, prompt, msg.label, _reference_from_proto(msg.reference_mm, msg.object_id)
    )


def object_prompt_to_proto(obj: ObjectPrompt) -> pb.ObjectPrompt:
    return pb.ObjectPrompt(
        object_id=obj.object_id,
        label=obj.label,
        prompt=prompt_to_proto(obj.prompt),
        reference_mm=obj.reference_mm or (),
    )


def prompt_update_from_proto(msg: pb.PromptUpdate, limits: Limits) -> PromptUpdate:
    action = msg.WhichOneof("action")
    if action == "remove_object_id":
        return PromptUpdate(UpdateAction.REMOVE, msg.remove_object_id, update_id=msg.update_id)
    if action in ("add", "correct"):
        obj = object_prompt_from_proto(getattr(msg, action), limits)
        kind = UpdateAction.ADD if action == "add" else UpdateAction.CORRECT
        return PromptUpdate(
            kind, obj.object_id, obj.prompt, obj.label, update_id=msg.update_id, reference_mm=obj.reference_mm
        )
    raise PromptError(f"prompt update {msg.update_id} has no action (set add, remove_object_id or correct)")


def prompt_update_to_proto(update: PromptUpdate) -> pb.PromptUpdate:
    if update.action is UpdateAction.REMOVE:
        return pb.PromptUpdate(update_id=update.update_id, remove_object_id=update.object_id)
    if update.prompt is None:
        raise ValueError(f"{update.action.value} of object {update.object_id} needs a prompt")
    obj = object_prompt_to_proto(
        ObjectPrompt(update.object_id, update.prompt, update.label, update.reference_mm)
    )
    if update.action is UpdateAction.ADD:
        return pb.PromptUpdate(update_id=update.update_id, add=obj)
    return pb.PromptUpdate(update_id=update.update_id, correct=obj)
