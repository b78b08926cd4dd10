"""What bench/readme_figures.py builds figures from: result files read by key, the run that wrote them.

A figure (:class:`Fig`) is a value in a ``bench/results/`` JSON file at a dotted key, shown as one
table row that cites the file and key and names the run (:func:`run_tag`); :data:`BLOCK_RE` finds
the figure blocks in the pages (:func:`doc_files`). Every function takes the tree's ``root``, so
that the tests can run them on a copy.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

RESULTS_DIR = "bench/results"
BLOCK_RE = re.compile(r"<!-- figures:([\w-]+) -->\n(.*?)<!-- /figures:\1 -->", re.S)


class FigureError(Exception):
    """A figure that cannot be traced to its result file."""


@dataclass(frozen=True)
class Fig:
    """One figure: a value read from ``bench/results/FILE`` at dotted ``key`` (list items by index)."""

    label: str
    file: str
    key: str
    fmt: str = ".3f"
    unit: str = ""
    scale: float = 1.0


def results_path(root: Path, file: str) -> Path:
    return root / (file if file.startswith("bench/") else f"{RESULTS_DIR}/{file}")


def load(root: Path, file: str) -> dict[str, Any]:
    path = results_path(root, file)
    if not path.is_file():
        raise FigureError(f"{file}: result file {path} does not exist")
    return json.loads(path.read_text())


def lookup(data: Any, key: str, where: str) -> Any:
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise FigureError(f"{where}: key {key!r} not found (at {part!r})")
    return node


def run_tag(data: dict[str, Any]) -> str:
    """Machine and commit of a result; old files without ``provenance`` are marked visibly."""
    prov = data.get("provenance")
    if isinstance(prov, dict):
        m = prov.get("machine", {})
        commit = (prov.get("commit") or "unknown")[:7]
        dirty = " (dirty)" if prov.get("dirty") else ""
        return f"{_machine(m)} · `{commit}`{dirty}"
    return f"{_machine(data.get('machine', {}))} · **round 1, no provenance**"


def _machine(m: dict[str, Any]) -> str:
    if not m:
        return "machine not recorded"
    parts = [str(m.get("cpu", "?")), f"{m.get('cores', '?')} cores"]
    if m.get("ram_gib"):
        parts.append(f"{m['ram_gib']} GiB")
    parts.append(str(m["gpu"]) if m.get("gpu") else "no GPU")
    return ", ".join(parts)


def fig_value(root: Path, fig: Fig) -> str:
    value = lookup(load(root, fig.file), fig.key, fig.file)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FigureError(f"{fig.file}:{fig.key} is {value!r}, not a number")
    shown = value * fig.scale if fig.scale != 1.0 else value
    return f"{shown:{fig.fmt}}{fig.unit}"


def fig_table(root: Path, figs: list[Fig]) -> str:
    rows = ["| figure | value | source (`bench/results/` file: key) | run |", "|---|---|---|---|"]
    for fig in figs:
        scale = f" ×{fig.scale:g}" if fig.scale != 1.0 else ""
        rows.append(
            f"| {fig.label} | {fig_value(root, fig)} | `{fig.file}:{fig.key}`{scale}"
            f" | {run_tag(load(root, fig.file))} |"
        )
    return "\n".join(rows) + "\n"


def headline_table(root: Path, figs: list[Fig]) -> str:
    """A short table for the README: each run (machine and commit) named once, under the table."""
    runs: list[str] = []
    rows = ["| figure | value | source (`bench/results/` file: key) | run |", "|---|---|---|---|"]
    for fig in figs:
        tag = run_tag(load(root, fig.file))
        if tag not in runs:
            runs.append(tag)
        scale = f" ×{fig.scale:g}" if fig.scale != 1.0 else ""
        letter = chr(ord("A") + runs.index(tag))
        rows.append(f"| {fig.label} | {fig_value(root, fig)} | `{fig.file}:{fig.key}`{scale} | {letter} |")
    rows.append("")
    rows += [f"{chr(ord('A') + i)}: {tag}{'' if i == len(runs) - 1 else ';'}" for i, tag in enumerate(runs)]
    return "\n".join(rows) + "\n"


Row = tuple[Any, ...]  # (label, key[, fmt[, unit[, scale]]]) of one figure in one file
MS, MB, PCT = " ms", " MB", " %"


def figs(file: str, *rows: Row) -> list[Fig]:
    return [Fig(label, file, key, *rest) for label, key, *rest in rows]


def doc_files(root: Path) -> list[Path]:
    """The pages that may hold figure blocks: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def stream_suite(root: Path) -> ModuleType:
    """``root``'s bench/stream_suite.py, whose row formatter wrote bench/results/stream_table.md."""
    spec = importlib.util.spec_from_file_location("stream_suite", root / "bench" / "stream_suite.py")
    if spec is None or spec.loader is None:
        raise FigureError("bench/stream_suite.py cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cells(row: str) -> list[str]:
    """The cells of a Markdown table row, stripped."""
    return [c.strip() for c in row.strip().strip("|").split("|")]
