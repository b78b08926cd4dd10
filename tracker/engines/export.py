"""``tracker export``: SAM 2.1's per-frame graphs to ONNX, with a manifest.

``tracker export --model tiny --random-weights --image-size 512 --out exports/tiny512``
writes ``image_encoder.onnx``, ``memory_attention.onnx``, ``memory_encoder.onnx``,
``sam_heads.onnx`` and ``manifest.json`` (see :mod:`tracker.engines.onnx.manifest`); each graph
is verified against its torch module before the manifest is written. The ``onnx``
engine then runs them with ``export_dir=exports/tiny512``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.engines.sam2.options import parse_options

logger = logging.getLogger(__name__)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="sam2.1_hiera_tiny",
        help="sam2.1_hiera_tiny | small | base_plus | large (or t|s|b+|l)",
    )
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="SAM 2.1 checkpoint (.pt) to export")
    weights.add_argument(
        "--random-weights", action="store_true", help="untrained weights (tests, benchmarks)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--image-size", type=int, required=True, help="model input size (multiple of 32)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument(
        "--sharpen-logits",
        type=float,
        default=None,
        help=argparse.SUPPRESS,  # tests/benchmarks: tracker.engines.sam2.parity.sharpen_random_logits
    )


def run_export(args: argparse.Namespace) -> int:
    """Build the model like the sam2 engine does, export, print a summary."""
    from tracker.engines.onnx.export import export_model, weights_record
    from tracker.engines.sam2.model import build_model

    if args.opset < 17:
        raise SystemExit("--opset must be >= 17 (LayerNormalization, scaled-dot-product attention)")
    opts = {"model": args.model, "image_size": str(args.image_size), "device": "cpu", "seed": str(args.seed)}
    if args.checkpoint:
        opts["checkpoint"] = args.checkpoint
    else:
        opts["random_weights"] = "true"
    if args.sharpen_logits and not args.random_weights:
        raise SystemExit("--sharpen-logits is for random weights only")
    settings = parse_options(opts, cuda_available=False)
    model = build_model(settings)
    if args.sharpen_logits:
        from tracker.engines.sam2.parity import sharpen_random_logits

        sharpen_random_logits(model, args.sharpen_logits)
    manifest, checks = export_model(
        model,
        args.out,
        model_name=settings.model,
        config=settings.config,
        weights=weights_record(settings.checkpoint, settings.seed, args.sharpen_logits),
        opset=args.opset,
    )
    for c in checks:
        logger.info("%s: verified, max abs diff vs torch %.2e", c.name, c.max_abs_diff)
    sys.stdout.write(f"exported {settings.model} @{manifest.image_size}px to {args.out}\n")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``export`` on the main CLI's subparsers (``tracker export ...``)."""
    p = subparsers.add_parser("export", help="export SAM 2.1 per-frame graphs to ONNX (+ manifest)")
    _add_arguments(p)
    p.set_defaults(func=run_export)


def export_main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m tracker.engines.export ...``."""
    parser = argparse.ArgumentParser(prog="tracker export", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_export(args)


if __name__ == "__main__":
    raise SystemExit(export_main())
