"""``tracker weights list|fetch|add``: :func:`add_cli` plugs them into the ``tracker`` command."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tracker.weights.download import fetch
from tracker.weights.errors import UnverifiedDownloadRefused, WeightsError
from tracker.weights.manifest import register_local
from tracker.weights.registry import WEIGHTS_DIR_ENV, list_weights, resolve_model

logger = logging.getLogger(__name__)


def _format_size(n: int) -> str:
    return f"{n / 1_000_000:.0f} MB"


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "size", "config", "sha256")]
    rows += [
        (i.name, _format_size(i.size_bytes), i.config, i.sha256 or "unpublished") for i in list_weights()
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for row in rows:
        print(  # noqa: T201 - the command's output
            "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        path = fetch(
            args.name,
            args.dir,
            url=args.url,
            sha256=args.sha256,
            progress=not args.no_progress,
            trust_on_first_use=args.trust_on_first_use,
        )
    except UnverifiedDownloadRefused as exc:
        logger.error("%s", exc)
        return 2
    except WeightsError as exc:
        logger.error("%s", exc)
        return 1
    logger.info("checkpoint ready: %s (config %s)", path, resolve_model(args.name).config)
    return 0


def add_cli(subparsers: Any) -> None:
    """Add ``weights list`` and ``weights fetch`` to the ``tracker`` command's subparsers."""
    p = subparsers.add_parser("weights", help="list and download SAM 2.1 checkpoints")
    weights = p.add_subparsers(dest="weights_action", required=True)

    s = weights.add_parser("list", help="known checkpoints with their size, config and SHA-256")
    s.set_defaults(func=_cmd_list)

    s = weights.add_parser("fetch", help="download a checkpoint into the cache and verify its SHA-256")
    s.add_argument("name", help="tiny, small, base_plus, large, or an alias such as t or sam2.1_hiera_tiny")
    s.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"cache folder; default: ${WEIGHTS_DIR_ENV} or ~/.cache/rt-tracker/weights",
    )
    s.add_argument("--url", default=None, help="download from this URL (a mirror) instead of Meta's")
    s.add_argument("--sha256", default=None, metavar="HEX", help="expected SHA-256, overriding the registry")
    s.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="where no hash is known, record the downloaded file's hash instead of refusing",
    )
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_fetch)

    s = weights.add_parser(
        "add", help="record a local or fine-tuned checkpoint's SHA-256 so a server may load it"
    )
    s.add_argument("path", type=Path, help="the checkpoint file")
    s.add_argument("--dir", type=Path, default=None, help="model directory (default: the weights cache)")
    s.set_defaults(func=_cmd_add)


def _cmd_add(args: argparse.Namespace) -> int:
    target = register_local(args.path, args.dir)
    logger.info("ready to serve: --engine-option checkpoint=%s", target)
    return 0
