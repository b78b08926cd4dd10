"""The check behind ``bench/readme_figures.py --check``: every figure still matches its result file.

Independently of the generator, every cited value must equal the shown figure to the shown
precision, every ``file.json:key`` citation in prose must resolve, README.md must stay within
:data:`README_MAX_LINES` lines and cite no issue numbers, and every relative link must point
to an existing file (and heading). :func:`check` also requires the blocks to be what
:func:`figure_blocks.render` makes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from figure_blocks import render
from figure_sources import BLOCK_RE, FigureError, cells, doc_files, load, lookup, stream_suite

README_MAX_LINES = 200
# An issue number in the README ("#25", "issue 13"): history belongs in CHANGELOG.md.
ISSUE_REF_RE = re.compile(r"(?<![\w&/])#\d+\b|\b[Ii]ssues? \d+")
# Pages other engineers are writing on their branches; the lead merges them before the end.
FUTURE_DOCS = frozenset(
    {"docs/scale-out.md", "docs/validation.md", "docs/deployment.md", "docs/scheduler.md"}
)

CITE_RE = re.compile(r"`((?:bench/results/)?[\w.-]+\.json):([\w.-]+)`(?: ×([\d.]+))?")
NUMBER_RE = re.compile(r"-?[\d,]*\.?\d+(?:e[-+]?\d+)?")
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _stream_row_problems(root: Path, block: str) -> list[str]:
    fmt_row = stream_suite(root)._row
    problems = []
    for line in block.splitlines():
        if not line.startswith("|") or line.startswith(("| scenario", "|---")):
            continue
        row = cells(line)
        file = row[-2].strip("`")
        try:
            report = load(root, file)
        except FigureError as exc:
            problems.append(f"stream row {row[0]!r}: {exc}")
            continue
        original = "| " + " | ".join(row[:-2]) + " |"
        if fmt_row(row[0], report, row[-3]) != original:
            problems.append(f"stream row {row[0]!r} differs from {file}")
    return problems


def _decimals(shown: str) -> float:
    """Half a unit in the last shown digit: the rounding a correct figure can differ by."""
    mantissa, _, exp = shown.lower().partition("e")
    places = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 0.5 * 10.0 ** (-places + (int(exp) if exp else 0))


def cited_value_problems(root: Path, text: str, where: str) -> Iterator[str]:
    """Checks each cited figure row against its file without the generator: value, key, file."""
    for m in BLOCK_RE.finditer(text):
        if m.group(1) == "stream":
            yield from (f"{where}: {p}" for p in _stream_row_problems(root, m.group(2)))
            continue
        for line in m.group(2).splitlines():
            if not line.startswith("|") or line.startswith(("| figure", "|---")):
                continue
            row = cells(line)
            cite = CITE_RE.search(line)
            if cite is None or len(row) < 3:
                yield f"{where}: figure row without a source: {line}"
                continue
            file, key, scale = cite.group(1), cite.group(2), float(cite.group(3) or 1.0)
            try:
                value = lookup(load(root, file), key, file)
            except FigureError as exc:
                yield f"{where}: {exc}"
                continue
            number = NUMBER_RE.search(row[1].replace("**", ""))
            if number is None or isinstance(value, bool) or not isinstance(value, int | float):
                yield f"{where}: {file}:{key} = {value!r} cannot back the figure {row[1]!r}"
                continue
            shown = number.group(0).replace(",", "")
            if abs(float(shown) - value * scale) > _decimals(shown) * 1.0001 + 1e-12:
                yield f"{where}: {row[1]!r} differs from {file}:{key} = {value!r}" + (
                    f" ×{scale:g}" if scale != 1 else ""
                )


def prose_citation_problems(root: Path, text: str, where: str) -> Iterator[str]:
    for m in CITE_RE.finditer(BLOCK_RE.sub("", text)):
        try:
            lookup(load(root, m.group(1)), m.group(2), m.group(1))
        except FigureError as exc:
            yield f"{where}: prose citation {m.group(0)}: {exc}"


def anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    ids: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        ids.add(f"{slug}-{n}" if n else slug)
    return ids


def link_problems(root: Path, path: Path, text: str) -> Iterator[str]:
    for m in LINK_RE.finditer(re.sub(r"```.*?```", "", text, flags=re.S)):
        target, _, fragment = m.group(1).partition("#")
        if re.match(r"[a-z][\w+.-]*:", target):
            continue  # URL or mailto
        resolved = (path.parent / target).resolve() if target else path.resolve()
        inside = resolved.is_relative_to(root.resolve())
        if inside and resolved.relative_to(root.resolve()).as_posix() in FUTURE_DOCS:
            continue
        if not resolved.exists():
            yield f"{path.relative_to(root)}: link to missing file {m.group(1)}"
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
            yield f"{path.relative_to(root)}: link to missing heading {m.group(1)}"


def check(root: Path) -> list[str]:
    """Every problem found, as sentences; empty when README.md and docs/ are in order."""
    problems: list[str] = []
    readme = root / "README.md"
    n_lines = len(readme.read_text().splitlines()) if readme.is_file() else 0
    if n_lines > README_MAX_LINES:
        problems.append(f"README.md has {n_lines} lines (at most {README_MAX_LINES})")
    if readme.is_file():
        refs = sorted({m.group(0) for m in ISSUE_REF_RE.finditer(readme.read_text())})
        if refs:
            problems.append(f"README.md cites issues ({', '.join(refs)}): history goes to CHANGELOG.md")
    for path in doc_files(root):
        if not path.is_file():
            continue
        where = str(path.relative_to(root))
        text = path.read_text()
        try:
            if render(root, text, where) != text:
                problems.append(f"{where}: figure blocks are stale; run bench/readme_figures.py")
        except FigureError as exc:
            problems.append(str(exc))
        problems += cited_value_problems(root, text, where)
        problems += prose_citation_problems(root, text, where)
        problems += link_problems(root, path, text)
    return problems
