"""Fills the figure blocks of README.md and docs/*.md from bench/results/*.json, or checks them.

    .venv/bin/python bench/readme_figures.py           # rewrite every block
    .venv/bin/python bench/readme_figures.py --check   # exit 1 and list the problems if anything is stale

A block is the text between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``. Every
figure in it is one table row that cites its result file and key (``flow.json:latency.frames``,
files under bench/results/) and names the run it came from: the machine and commit from the
file's ``provenance`` block, or, for files written before provenance existed, the machine block
marked **no provenance**. The streaming table is bench/stream_suite.py's own
(bench/results/stream_table.md); each of its rows is matched to the stream_*.json it was
formatted from with stream_suite's row formatter, so a row without a source is an error.

``--check`` also verifies, independently of the generator, that every cited value still equals
the shown figure to the shown precision, that every ``file.json:key`` citation in prose resolves,
that README.md is at most 250 lines, and that every relative link points to an existing file.

This is the command; the work is in its sibling modules: figure_sources.py (result files, keys,
table rows), figure_blocks.py (every block's figures, rendering) and figure_check.py (the check).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from figure_blocks import render
from figure_check import check
from figure_sources import FigureError, doc_files

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("readme_figures")


def write(root: Path = REPO) -> list[Path]:
    changed = []
    for path in doc_files(root):
        text = path.read_text()
        new = render(root, text, str(path.relative_to(root)))
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="verify instead of rewriting; exit 1 on problems"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        problems = check(REPO)
        for problem in problems:
            print(problem)
        print("figures: OK" if not problems else f"figures: {len(problems)} problem(s)")
        return 1 if problems else 0
    try:
        changed = write()
    except FigureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        logger.info("rewrote %s", path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
