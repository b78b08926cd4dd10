"""``tracker overseer train|export``: the overseer's command-line group.

Wire it from ``tracker/cli.py`` with ``add_cli(sub)`` on the top-level
subparsers; each subcommand sets ``func`` like the others. torch is imported
only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from tracker.lab.bench.common import write_json
from tracker.lab.provenance import provenance
from tracker.lab.training.dataset import merge_sequences
from tracker.overseer.shipped import SHIPPED_DIR, ShippedDetector, write_manifest
from tracker.overseer.types import ARCHS
from tracker.weights.manifest import sha256_file

logger = logging.getLogger(__name__)


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``overseer`` group (train, dataset, export, ship) to the ``tracker`` command."""
    p = subparsers.add_parser("overseer", help="train and export the Mask R-CNN overseer")
    sub = p.add_subparsers(dest="overseer_command", required=True)

    t = sub.add_parser("train", help="fine-tune Mask R-CNN on COCO instance annotations")
    t.add_argument("--coco", type=Path, required=True, help="COCO instance annotations (json)")
    t.add_argument("--images", type=Path, required=True, help="folder the json's file_names are relative to")
    t.add_argument(
        "--out", type=Path, required=True, help="checkpoint to write (W.pt), rewritten every epoch"
    )
    t.add_argument(
        "--arch",
        choices=ARCHS,
        default="mbv3",
        help="mbv3 or r50 for a GPU or with --backbone-weights; small to train from scratch on a CPU",
    )
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--val-fraction", type=float, default=0.2, help="last fraction of frames held out")
    t.add_argument(
        "--val-coco", type=Path, default=None, help="validate on these held-out annotations instead"
    )
    t.add_argument(
        "--val-images", type=Path, default=None, help="folder --val-coco's file_names are relative to"
    )
    t.add_argument("--min-size", type=int, default=320, help="Mask R-CNN resize: shorter side")
    t.add_argument("--max-size", type=int, default=512, help="Mask R-CNN resize: longer side cap")
    t.add_argument(
        "--proposals", type=int, default=0, help="RPN proposals per image (0: torchvision default)"
    )
    t.add_argument("--max-iters", type=int, default=0, help="batches per epoch (0: all)")
    t.add_argument("--backbone-weights", type=Path, default=None, help="local ImageNet backbone state dict")
    t.add_argument("--resume", action="store_true", help="continue from --out")
    t.add_argument("--json", type=Path, default=None, help="result file: settings and each epoch's figures")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-hflip", action="store_true", help="no left-right flips of training images")
    t.add_argument(
        "--threads", type=int, default=0, help="CPU threads (0: every core); 1 leaves a core for other work"
    )
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser(
        "dataset", help="merge sequence folders (each with annotations.json) into one COCO file for training"
    )
    d.add_argument("sequences", type=Path, nargs="+", help="sequence folders, each kept whole")
    d.add_argument(
        "--out", type=Path, required=True, help="the merged COCO json (paths relative to its folder)"
    )
    d.set_defaults(func=_cmd_dataset)

    e = sub.add_parser("export", help="export a trained overseer to ONNX (checks parity with torchvision)")
    e.add_argument("weights", type=Path, help="checkpoint from overseer train (W.pt)")
    e.add_argument("--out", type=Path, required=True, help="W.onnx")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--no-check", action="store_true", help="skip the torchvision/ONNX Runtime parity check")
    e.set_defaults(func=_cmd_export)

    s = sub.add_parser(
        "ship", help="copy an exported detector into the package with its manifest (what `make demo` runs)"
    )
    s.add_argument("onnx", type=Path, help="W.onnx from overseer export")
    s.add_argument("--training-json", type=Path, required=True, help="the train run's --json result file")
    s.add_argument("--data", required=True, help="what it was trained and validated on (seeds, generator)")
    s.add_argument("--max-mb", type=float, default=25.0, help="refuse a larger file")
    s.set_defaults(func=_cmd_ship)


def _cmd_train(args: argparse.Namespace) -> int:
    from tracker.lab.training.train import EpochStats, TrainConfig, history_report, train
    from tracker.overseer.model import load_checkpoint

    config = TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        min_size=args.min_size,
        max_size=args.max_size,
        proposals=args.proposals,
        max_iters_per_epoch=args.max_iters,
        backbone_weights=args.backbone_weights,
        seed=args.seed,
        hflip=not args.no_hflip,
        threads=args.threads,
        progress=not args.no_progress,
    )
    if (args.val_coco is None) != (args.val_images is None):
        raise ValueError("--val-coco and --val-images go together")
    validation = (args.val_coco, args.val_images) if args.val_coco is not None else None

    def record(history: list[EpochStats]) -> None:
        if args.json is not None:
            report = history_report(config, tuple(load_checkpoint(args.out)["spec"]["classes"]), history)
            write_json({"provenance": provenance(seed=args.seed), **report}, args.json)

    result = train(
        args.coco, args.images, args.out, config, resume=args.resume, validation=validation, on_epoch=record
    )
    last = result.history[-1] if result.history else None
    if last is not None:
        logger.info(
            "wrote %s: loss %.3f, val mAP %s, val Dice %s",
            args.out,
            last.train_loss,
            last.val_map,
            last.val_dice,
        )
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    import onnx

    size = args.onnx.stat().st_size
    if size > args.max_mb * 2**20:
        raise ValueError(f"{args.onnx} is {size / 2**20:.1f} MB, over --max-mb {args.max_mb:g}: not shipped")
    meta = {p.key: p.value for p in onnx.load(str(args.onnx), load_external_data=False).metadata_props}
    if meta.get("format") != "tracker-overseer-onnx-v1":
        raise ValueError(f"{args.onnx}: not an overseer export (written by tracker overseer export)")
    training = json.loads(args.training_json.read_text())
    last = training["epochs"][-1] if training.get("epochs") else {}
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    for old in SHIPPED_DIR.glob("*.onnx"):
        old.unlink()  # one shipped detector at a time
    target = SHIPPED_DIR / args.onnx.name
    shutil.copyfile(args.onnx, target)
    entry = ShippedDetector(
        file=target.name,
        sha256=sha256_file(target),
        bytes=size,
        classes=tuple(json.loads(meta["classes"])),
        arch=meta.get("arch", ""),
        # A result file rebuilt from a checkpoint names the training run in its "run" block.
        training_command=str(
            training.get("run", {}).get("training_command", training["provenance"]["command"])
        ),
        commit=str(training.get("run", {}).get("training_commit", training["provenance"]["commit"])),
        data=args.data,
        validation={k: v for k, v in last.items() if k.startswith("val_") or k == "epoch"},
    )
    logger.info("shipped %s (%.1f MB) with %s", target, size / 2**20, write_manifest(entry, SHIPPED_DIR))
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    merge_sequences(args.sequences, args.out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tracker.lab.training.export import export_onnx, parity
    from tracker.overseer.model import load_checkpoint

    export_onnx(args.weights, args.out, args.opset)
    if not args.no_check:
        h, w = load_checkpoint(args.weights)["spec"]["image_hw"]
        image = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
        result = parity(args.weights, args.out, image)
        logger.info("parity torchvision vs ONNX Runtime: %s", json.dumps(result.as_dict()))
    return 0
