"""Fine-tune the overseer on a few COCO-annotated frames of the target domain.

Why so small a loop: SASVi's overseer is trained per domain on few
annotations; what matters is that it is reproducible on a CPU, resumable, and
reports held-out quality every epoch. The loop:

* splits the images into train and a held-out validation block: the *last*
  ``val_fraction`` of the images in frame order (``frame_index``, else file
  name). A random split of video frames would put near-duplicates of every
  validation frame in the training set and overstate the scores;
* trains with SGD (momentum 0.9, weight decay 1e-4, linear warm-up over the
  first 50 iterations then cosine decay to 1 % of the rate, gradients clipped at
  norm 10), tqdm showing the loss;
* validates each epoch: COCO mask AP@[.5:.95], AP@0.5 and AP@0.5 per class
  with ``pycocotools`` (``None`` with a warning when it is not installed) and mean Dice of the ground-truth
  instances (each against the best same-class prediction with score >= 0.5,
  0 when none);
* writes a checkpoint (model, optimizer, epoch, history, class names) after
  every epoch; ``resume`` continues from it.

Cost: MobileNetV3-FPN at 320 px trains at ~1 s per 2-image batch on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from tracker.io.readers import natural_key
from tracker.overseer.coco import decode_segmentation
from tracker.overseer.model import (
    ModelSpec,
    build_model,
    frame_to_tensor,
    load_checkpoint,
    save_checkpoint,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "mbv3"
    epochs: int = 10
    batch_size: int = 2
    lr: float = 0.01
    val_fraction: float = 0.2
    min_size: int = 320
    max_size: int = 512
    proposals: int = 0  # RPN proposals per image; 0: torchvision's defaults (see ModelSpec)
    max_iters_per_epoch: int = 0  # 0: the whole training split each epoch
    backbone_weights: Path | None = None
    seed: int = 0
    warmup_iters: int = 50
    hflip: bool = True  # flip each training image left-right with probability 0.5
    threads: int = 0  # torch's CPU threads; 0: its default (every core)
    progress: bool = True


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    iteration_losses: list[float]
    val_map: float | None
    val_dice: float | None
    seconds: float
    val_map50: float | None = None
    val_ap50_per_class: dict[str, float | None] = field(default_factory=dict)


@dataclass
class TrainResult:
    checkpoint: Path
    classes: tuple[str, ...]
    history: list[EpochStats] = field(default_factory=list)


@dataclass
class _Item:
    image_id: int
    file: Path
    height: int
    width: int
    anns: list[dict[str, Any]]


class CocoInstances:
    """COCO images + instance masks as Mask R-CNN training samples (labels 1..C by category id order)."""

    def __init__(self, ann_file: Path, images_dir: Path) -> None:
        data = json.loads(Path(ann_file).read_text())
        cats = sorted(data.get("categories", []), key=lambda c: int(c["id"]))
        if not cats:
            raise ValueError(f"{ann_file}: no categories")
        self.classes: tuple[str, ...] = tuple(str(c["name"]) for c in cats)
        self._label_of = {int(c["id"]): i + 1 for i, c in enumerate(cats)}
        images = list(data.get("images", []))
        if all("frame_index" in im for im in images):
            images.sort(key=lambda im: int(im["frame_index"]))
        else:
            images.sort(key=lambda im: natural_key(str(im["file_name"])))
        by_image: dict[int, list[dict[str, Any]]] = {}
        for ann in data.get("annotations", []):
            if not ann.get("iscrowd", 0):
                by_image.setdefault(ann["image_id"], []).append(ann)
        self.items = [
            _Item(
                im["id"],
                Path(images_dir) / im["file_name"],
                int(im["height"]),
                int(im["width"]),
                by_image.get(im["id"], []),
            )
            for im in images
        ]
        if not self.items:
            raise ValueError(f"{ann_file}: no images")
        missing = [str(i.file) for i in self.items if not i.file.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} annotated images are missing, e.g. {missing[0]}")

    def label_of(self, category_id: int) -> int:
        return self._label_of[int(category_id)]

    def sample(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[index]
        with Image.open(item.file) as im:
            pixels = np.asarray(im.convert("RGB"))
        masks, boxes, labels = [], [], []
        for ann in item.anns:
            m = decode_segmentation(ann["segmentation"], item.height, item.width)
            ys, xs = np.nonzero(m)
            if xs.size == 0:
                continue
            masks.append(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(self.label_of(ann["category_id"]))
        h, w = pixels.shape[:2]
        target = {
            "boxes": torch.as_tensor(np.array(boxes, np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.array(labels, np.int64)),
            "masks": torch.as_tensor(np.array(masks, np.uint8).reshape(-1, h, w)),
        }
        return frame_to_tensor(pixels), target


Target = dict[str, torch.Tensor]


def hflip(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """The sample mirrored left-right: image, masks and boxes (x0, x1 swap and reflect)."""
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def split(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Contiguous split in frame order: the last ``val_fraction`` (at least one image) is held out."""
    if n < 2:
        raise ValueError("need at least 2 annotated images (one to train on, one held out)")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return list(range(n - n_val)), list(range(n - n_val, n))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, data: CocoInstances, indices: list[int]
) -> tuple[MaskAP | None, float | None]:
    """(mask AP via pycocotools, None without it or without instances; mean Dice of GT instances)."""
    model.eval()
    dices: list[float] = []
    results: list[dict[str, Any]] = []
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        mask_utils = None
    gt_images, gt_anns = [], []
    for idx in indices:
        x, target = data.sample(idx)
        out = model([x])[0]
        labels = out["labels"].numpy()
        scores = out["scores"].numpy()
        masks = out["masks"].numpy()[:, 0] >= 0.5
        item = data.items[idx]
        gt_images.append({"id": item.image_id, "height": item.height, "width": item.width})
        for k in range(len(target["labels"])):
            gm = target["masks"][k].numpy().astype(bool)
            gl = int(target["labels"][k])
            cand = [_dice(masks[j], gm) for j in range(len(labels)) if labels[j] == gl and scores[j] >= 0.5]
            dices.append(max(cand, default=0.0))
            if mask_utils is not None:
                rle = mask_utils.encode(np.asfortranarray(gm.astype(np.uint8)))
                gt_anns.append(
                    {
                        "id": len(gt_anns) + 1,
                        "image_id": item.image_id,
                        "category_id": gl,
                        "segmentation": rle,
                        "area": float(gm.sum()),
                        "iscrowd": 0,
                        "bbox": mask_utils.toBbox(rle).tolist(),
                    }
                )
        if mask_utils is not None:
            for j in range(len(labels)):
                rle = mask_utils.encode(np.asfortranarray(masks[j].astype(np.uint8)))
                results.append(
                    {
                        "image_id": item.image_id,
                        "category_id": int(labels[j]),
                        "segmentation": rle,
                        "score": float(scores[j]),
                    }
                )
    dice = float(np.mean(dices)) if dices else None
    if mask_utils is None:
        logger.warning("pycocotools is not installed: no mask mAP (pip install pycocotools)")
        return None, dice
    return _coco_map(gt_images, gt_anns, results, data.classes), dice


@dataclass(frozen=True)
class MaskAP:
    """COCO mask AP of one validation pass (pycocotools' ``COCOeval``, ``iouType="segm"``)."""

    ap: float  # AP@[.5:.95], all classes
    ap50: float  # AP@0.5, all classes
    ap50_per_class: dict[str, float | None]  # None: the class has no instance in the validation set


def _coco_map(
    images: list[dict[str, Any]],
    anns: list[dict[str, Any]],
    results: list[dict[str, Any]],
    classes: tuple[str, ...],
) -> MaskAP | None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not anns:
        return None
    if not results:
        return MaskAP(0.0, 0.0, {c: 0.0 for c in classes})
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k} for k in range(1, len(classes) + 1)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision[iou threshold, recall, class, area range, max detections]: IoU 0.5 is index 0,
    # area "all" index 0, 100 detections the last; -1 marks a class with no ground truth.
    precision = ev.eval["precision"]
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        p = precision[0, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else None
    return MaskAP(max(0.0, float(ev.stats[0])), max(0.0, float(ev.stats[1])), per_class)


def train(
    ann_file: Path,
    images_dir: Path,
    out: Path,
    config: TrainConfig,
    *,
    resume: bool | Path = False,
    on_iteration: Callable[[int, float], None] | None = None,
    validation: tuple[Path, Path] | None = None,
    on_epoch: Callable[[list[EpochStats]], None] | None = None,
) -> TrainResult:
    """Fine-tune on ``ann_file``; write the checkpoint to ``out`` after every epoch.

    ``validation``: (COCO file, images folder) of held-out sequences to validate on; then every
    image of ``ann_file`` is trained on. Without it, the last ``val_fraction`` is held out.
    """
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    data = CocoInstances(ann_file, images_dir)
    if validation is None:
        val_data = data
        train_idx, val_idx = split(len(data.items), config.val_fraction)
    else:
        val_data = CocoInstances(*validation)
        if val_data.classes != data.classes:
            raise ValueError(f"validation classes {val_data.classes} differ from training's {data.classes}")
        train_idx, val_idx = list(range(len(data.items))), list(range(len(val_data.items)))
    first = data.items[0]
    spec = ModelSpec(
        config.arch,
        data.classes,
        config.min_size,
        config.max_size,
        (first.height, first.width),
        config.proposals,
    )
    model = build_model(spec, config.backbone_weights)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=1e-4)
    history: list[EpochStats] = []
    start_epoch = 0
    iteration = 0
    if resume:
        path = out if resume is True else Path(resume)
        ckpt = load_checkpoint(path)
        saved = ModelSpec.from_dict(ckpt["spec"])
        if saved.arch != spec.arch or saved.classes != spec.classes:
            raise ValueError(
                f"{path}: checkpoint is {saved.arch} {saved.classes}, not {spec.arch} {spec.classes}"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = int(ckpt["epoch"]) + 1
        iteration = int(ckpt.get("iteration", 0))
        history = [EpochStats(**h) for h in ckpt.get("history", [])]
        logger.info("resuming %s at epoch %d", path, start_epoch + 1)
    logger.info(
        "training %s on %d images (%d held out), classes %s",
        config.arch,
        len(train_idx),
        len(val_idx),
        data.classes,
    )
    per_epoch = math.ceil(len(train_idx) / config.batch_size)
    if config.max_iters_per_epoch:
        per_epoch = min(per_epoch, config.max_iters_per_epoch)
    total_iters = per_epoch * config.epochs
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(train_idx).tolist()
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        if config.max_iters_per_epoch:
            batches = batches[: config.max_iters_per_epoch]
        losses: list[float] = []
        bar = tqdm(
            batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not config.progress
        )
        for batch in bar:
            samples = [data.sample(i) for i in batch]
            if config.hflip:
                samples = [hflip(*x) if rng.random() < 0.5 else x for x in samples]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, iteration, total_iters)
            loss_dict = model([s[0] for s in samples], [s[1] for s in samples])
            loss = sum(loss_dict.values())
            value = float(loss.item())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at iteration {iteration}; lower --lr")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            losses.append(value)
            if on_iteration is not None:
                on_iteration(iteration, value)
            iteration += 1
            bar.set_postfix(loss=f"{value:.3f}")
        val_ap, val_dice = evaluate(model, val_data, val_idx)
        val_map = None if val_ap is None else val_ap.ap
        stats = EpochStats(
            epoch,
            float(np.mean(losses)) if losses else math.nan,
            losses,
            val_map,
            val_dice,
            time.perf_counter() - t0,
            None if val_ap is None else val_ap.ap50,
            {} if val_ap is None else val_ap.ap50_per_class,
        )
        history.append(stats)
        logger.info(
            "epoch %d: loss %.3f, val mask mAP %s, val Dice %s (%.1f s)",
            epoch + 1,
            stats.train_loss,
            _fmt(val_map),
            _fmt(val_dice),
            stats.seconds,
        )
        save_checkpoint(
            out,
            spec,
            model,
            optimizer=optimizer.state_dict(),
            epoch=epoch,
            iteration=iteration,
            history=[asdict(h) for h in history],
        )
        if on_epoch is not None:
            on_epoch(history)
    return TrainResult(out, data.classes, history)


def learning_rate(config: TrainConfig, iteration: int, total_iters: int) -> float:
    """Linear warm-up from lr/1000 over ``warmup_iters``, then cosine decay to lr/100 at the end."""
    if iteration < config.warmup_iters:
        return config.lr * (0.001 + 0.999 * (iteration + 1) / config.warmup_iters)
    span = max(1, total_iters - config.warmup_iters)
    t = min(1.0, (iteration - config.warmup_iters) / span)
    return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def history_report(
    config: TrainConfig, classes: tuple[str, ...], history: list[EpochStats]
) -> dict[str, Any]:
    """What a training run's result file holds: the settings and each epoch's validation figures."""
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "classes": list(classes),
        "total_minutes": sum(h.seconds for h in history) / 60.0,
        "epochs": [
            {
                "epoch": h.epoch + 1,
                "train_loss": h.train_loss,
                "val_mask_ap": h.val_map,
                "val_mask_ap50": h.val_map50,
                "val_mask_ap50_per_class": h.val_ap50_per_class,
                "val_dice": h.val_dice,
                "seconds": h.seconds,
            }
            for h in history
        ],
    }


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
