"""``tracker synth surgical``: kept apart from the generator so that building the CLI stays light."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_cli(synth_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``synth surgical`` to the ``synth`` subcommand group of ``tracker``."""
    s = synth_subparsers.add_parser(
        "surgical", help="laparoscopic video with instruments entering/leaving; COCO + DAVIS-layout masks"
    )
    s.add_argument("--out", type=Path, required=True, help="sequence folder to write")
    s.add_argument("--frames", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--instruments", type=int, default=0, help="instances over the sequence; 0: from --frames")
    s.set_defaults(func=_cmd_surgical)


def _cmd_surgical(args: argparse.Namespace) -> int:
    from tracker.synth.surgical import write_sequence

    seq = write_sequence(
        args.out, args.frames, args.seed, height=args.height, width=args.width, n_instruments=args.instruments
    )
    logger.info("instruments: %s", ", ".join(f"{p.instance_id}:{p.class_name}" for p in seq.instruments))
    return 0
