"""Generate the Python code for ``proto/tracker/v1/tracker.proto``.

The proto package ``tracker.v1`` maps onto this project's ``tracker.v1``
subpackage, so generated imports (``from tracker.v1 import tracker_pb2``) work
unchanged. The generated files are committed; ``tests/test_proto.py`` fails
when they are stale. Run ``make proto`` (or ``python -m tracker.protogen``)
after editing the proto.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILES = ("tracker/v1/tracker.proto",)
GENERATED = ("tracker_pb2.py", "tracker_pb2.pyi", "tracker_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc into ``out_root``; return the generated files."""

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return [out_root / "tracker" / "v1" / name for name in GENERATED]


def stale_files() -> list[str]:
    """Names of committed generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = REPO_ROOT / "tracker" / "v1"
        return [
            f.name
            for f in fresh
            if not (committed / f.name).is_file() or (committed / f.name).read_bytes() != f.read_bytes()
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed code is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = stale_files()
        if stale:
            logger.error("stale generated code: %s (run `make proto`)", ", ".join(stale))
            return 1
        logger.info("generated code is current")
        return 0
    for path in generate(REPO_ROOT):
        logger.info("wrote %s", path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
