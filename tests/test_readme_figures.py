"""Every figure in README.md and docs/ traces to a result file; the README stays short; links resolve.

The first test checks the committed pages. The others copy the pages and the result files to
a temporary tree, break one thing, and require ``bench/readme_figures.py``'s check to name it:
a check that cannot fail would prove nothing.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


BENCH = REPO / "bench"


def _bench_module(name: str) -> ModuleType:
    """bench/NAME.py, imported as the bench scripts import their siblings: by name from bench/."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


sources = _bench_module("figure_sources")
blocks = _bench_module("figure_blocks")
checker = _bench_module("figure_check")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the pages, the result files and the scripts the check reads."""
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copy(REPO / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for name in (
        "readme_figures.py",
        "figure_sources.py",
        "figure_blocks.py",
        "figure_blocks_sam2.py",
        "figure_blocks_overseer.py",
        "figure_check.py",
        "stream_suite.py",
    ):
        shutil.copy(REPO / "bench" / name, tmp_path / "bench" / name)
    results = REPO / "bench" / "results"
    for path in results.rglob("*"):
        if path.suffix in (".json", ".md"):
            target = tmp_path / "bench" / "results" / path.relative_to(results)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    assert checker.check(tmp_path) == [], "the copy must start clean"
    return tmp_path


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def test_committed_pages_trace_every_figure_and_link() -> None:
    problems = checker.check(REPO)
    assert problems == [], "\n".join(problems)
    readme = (REPO / "README.md").read_text()
    # The blocks are really there and filled, not vacuously absent.
    assert sources.BLOCK_RE.search(readme) is not None
    n_rows = sum(
        line.startswith("| ") and "`" in line
        for path in sources.doc_files(REPO)
        for m in sources.BLOCK_RE.finditer(path.read_text())
        for line in m.group(2).splitlines()
    )
    assert n_rows >= 100
    assert "make demo" in readme and "make test" in readme


def test_a_result_that_changed_fails(tree: Path) -> None:
    _edit_json(tree / "bench/results/flow.json", lambda d: d["accuracy"].update(dice_median_all_frames=0.5))
    problems = checker.check(tree)
    assert any("stale" in p for p in problems)
    assert any("'0.954' differs from flow.json:accuracy.dice_median_all_frames = 0.5" in p for p in problems)


def _row_value(text: str, cite: str) -> tuple[str, str]:
    """The table row citing ``cite`` and the value it shows."""
    line = next(line for line in text.splitlines() if f"`{cite}`" in line)
    return line, [c.strip() for c in line.strip().strip("|").split("|")][1]


def test_a_figure_edited_by_hand_fails(tree: Path) -> None:
    readme = tree / "README.md"
    text = readme.read_text()
    row, shown = _row_value(text, "engines_cpu.json:engines.openvino-bf16.ms_per_frame_p50")
    readme.write_text(text.replace(row, row.replace(f"| {shown} |", "| 99999 ms |")))
    problems = checker.check(tree)
    assert any("'99999 ms' differs from engines_cpu.json:engines.openvino-bf16" in p for p in problems)


def test_a_scaled_figure_is_checked_after_scaling(tree: Path) -> None:
    _, shown = _row_value(
        (tree / "docs" / "gating.md").read_text(), "gating.json:gating.beam_on_outside_fraction"
    )
    _edit_json(tree / "bench/results/gating.json", lambda d: d["gating"].update(beam_on_outside_fraction=0.5))
    problems = checker.check(tree)
    assert any(
        f"'{shown}' differs from gating.json:gating.beam_on_outside_fraction = 0.5 ×100" in p
        for p in problems
    )


def test_a_missing_key_fails(tree: Path) -> None:
    _edit_json(tree / "bench/results/soak.json", lambda d: d.pop("unaccounted"))
    problems = checker.check(tree)
    assert any("key 'unaccounted' not found" in p for p in problems)


def test_a_missing_result_file_fails(tree: Path) -> None:
    (tree / "bench/results/overseer.json").unlink()
    problems = checker.check(tree)
    assert any("overseer.json" in p and "does not exist" in p for p in problems)


def test_a_row_without_a_source_fails(tree: Path) -> None:
    page = tree / "docs" / "gating.md"
    text = page.read_text()
    page.write_text(
        text.replace("<!-- /figures:gating -->", "| made-up figure | 42 mm | | |\n<!-- /figures:gating -->")
    )
    problems = checker.check(tree)
    assert any("figure row without a source: | made-up figure" in p for p in problems)


def test_a_streaming_row_that_matches_no_result_fails(tree: Path) -> None:
    _edit_json(tree / "bench/results/stream_flow_8x8hz.json", lambda d: d.update(ok=7000))
    problems = checker.check(tree)
    assert any("stream row 'cine load' differs from stream_flow_8x8hz.json" in p for p in problems)
    with pytest.raises(sources.FigureError, match="matches no bench/results/stream_"):
        blocks.stream_block(tree)


def test_a_prose_citation_must_resolve(tree: Path) -> None:
    page = tree / "docs" / "engines.md"
    page.write_text(page.read_text() + "\nSee `precision_cpu.json:bfloat16.no_such_key`.\n")
    problems = checker.check(tree)
    assert any("prose citation `precision_cpu.json:bfloat16.no_such_key`" in p for p in problems)


def test_a_long_readme_fails(tree: Path) -> None:
    readme = tree / "README.md"
    lines = readme.read_text().splitlines()
    readme.write_text("\n".join(lines + ["filler"] * (201 - len(lines))) + "\n")
    assert any("README.md has 201 lines (at most 200)" in p for p in checker.check(tree))
    readme.write_text("\n".join(lines + ["filler"] * (200 - len(lines))) + "\n")
    assert checker.check(tree) == []


def test_a_readme_that_cites_issues_fails(tree: Path) -> None:
    readme = tree / "README.md"
    text = readme.read_text()
    readme.write_text(text + "\nDone in #25; see issue 13.\n")
    assert any("README.md cites issues (#25, issue 13)" in p for p in checker.check(tree))
    readme.write_text(text + "\nThe 2nd frame, `x#1`, [usage](docs/usage.md#the-demo) and C# stay allowed.\n")
    assert checker.check(tree) == []


def test_a_broken_relative_link_fails(tree: Path) -> None:
    page = tree / "docs" / "overseer.md"
    page.write_text(
        page.read_text() + "\nSee [training](training.md) and [the code](../tracker/nothing.py).\n"
    )
    problems = checker.check(tree)
    assert any("docs/overseer.md: link to missing file training.md" in p for p in problems)
    assert any("link to missing file ../tracker/nothing.py" in p for p in problems)


def test_a_link_to_a_missing_heading_fails(tree: Path) -> None:
    page = tree / "docs" / "gating.md"
    page.write_text(
        page.read_text() + "\n[ok](engines.md#precision-float32-and-bf16) [bad](engines.md#no-such-part)\n"
    )
    problems = checker.check(tree)
    assert problems == ["docs/gating.md: link to missing heading engines.md#no-such-part"]


def test_heading_ids_follow_github() -> None:
    text = "# A `b`: C 2.1, d\n```\n# not a heading\n```\n## Same\n## Same\n"
    assert checker.anchors(text) == {"a-b-c-21-d", "same", "same-1"}


def test_provenance_names_machine_and_commit_and_old_files_are_marked() -> None:
    machine = {"cpu": "AMD EPYC", "cores": 2, "ram_gib": 23.4}
    new = {"provenance": {"commit": "0123456789abcdef", "dirty": True, "machine": machine}}
    assert sources.run_tag(new) == "AMD EPYC, 2 cores, 23.4 GiB, no GPU · `0123456` (dirty)"
    old = "AMD EPYC, 2 cores, 23.4 GiB, no GPU · **round 1, no provenance**"
    assert sources.run_tag({"machine": machine}) == old
    assert "no provenance**" in sources.run_tag({})


def test_check_command_exits_non_zero_and_rewrite_fixes_stale_blocks(tree: Path) -> None:
    _edit_json(tree / "bench/results/flow.json", lambda d: d["latency"].update(server_ms_median=9.96))
    script = [sys.executable, str(tree / "bench" / "readme_figures.py")]
    failed = subprocess.run([*script, "--check"], capture_output=True, text=True, cwd=tree, timeout=120)
    assert failed.returncode == 1 and "flow.json:latency.server_ms_median" in failed.stdout
    subprocess.run(script, check=True, capture_output=True, cwd=tree, timeout=120)
    assert "| 10.0 ms | `flow.json:latency.server_ms_median`" in (tree / "README.md").read_text()
    passed = subprocess.run([*script, "--check"], capture_output=True, text=True, cwd=tree, timeout=120)
    assert passed.returncode == 0, passed.stdout


PROVENANCE_KEYS = {"command", "commit", "dirty", "date", "machine", "load_avg_at_start", "libraries", "seed"}


def test_every_committed_result_carries_its_provenance() -> None:
    files = sorted((REPO / "bench" / "results").rglob("*.json"))
    assert len(files) >= 20  # the scan really found the results
    missing = {}
    for path in files:
        prov = json.loads(path.read_text()).get("provenance")
        lacking = PROVENANCE_KEYS - set(prov) if isinstance(prov, dict) else PROVENANCE_KEYS
        if lacking or not (isinstance(prov, dict) and prov.get("commit") and prov.get("machine")):
            missing[str(path.relative_to(REPO))] = sorted(lacking) or ["commit or machine empty"]
    assert not missing, f"results without complete provenance: {missing}"
