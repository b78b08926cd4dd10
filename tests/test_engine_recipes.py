"""engines/Makefile: its recipes call the real CLI with arguments it accepts, and fail clearly."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str) -> list[list[str]]:
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT / "engines"), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.replace("\\\n", " ").splitlines()  # a recipe line continued with a backslash
    return [shlex.split(line) for line in lines if line.strip()]


def test_the_onnx_recipe_is_a_tracker_export_the_cli_accepts() -> None:
    commands = [c for c in _dry_run("onnx", "MODEL=tiny", "SIZE=256", "RANDOM=1", "SEED=3") if "export" in c]
    assert len(commands) == 1
    argv = commands[0]
    assert argv[0].endswith("tracker")
    args = build_parser().parse_args(argv[1:])
    assert args.model == "tiny" and args.image_size == 256 and args.random_weights and args.seed == 3
    assert args.out == Path("build/sam2.1-tiny-256-random3")


def test_the_onnx_recipe_with_a_checkpoint_passes_it() -> None:
    argv = next(c for c in _dry_run("onnx", "MODEL=small", "SIZE=512", "CHECKPOINT=/m/s.pt") if "export" in c)
    args = build_parser().parse_args(argv[1:])
    assert args.checkpoint == "/m/s.pt" and not args.random_weights
    assert args.out == Path("build/sam2.1-small-512")


def test_the_onnx_recipe_without_weights_says_what_is_missing() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT / "engines"), "onnx"], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "set CHECKPOINT=FILE (or RANDOM=1" in out.stderr


def test_the_tensorrt_recipe_builds_from_the_onnx_export(tmp_path: Path) -> None:
    commands = _dry_run("tensorrt", "MODEL=tiny", "SIZE=256", "RANDOM=1", "MAX_BATCH=4")
    trt = [c for c in commands if "tracker.engines.onnx.tensorrt" in c]
    assert len(trt) == 1 and trt[0][trt[0].index("--export-dir") + 1] == "build/sam2.1-tiny-256-random0"
    assert trt[0][trt[0].index("--max-batch") + 1] == "4"
    # Run for real: here TensorRT (or a CUDA device) is missing, and it must say so, not crash.
    run = subprocess.run(
        [sys.executable, "-m", "tracker.engines.onnx.tensorrt", "--export-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert run.returncode == 2
        assert "TensorRT" in run.stderr or "tensorrt" in run.stderr
    else:  # pragma: no cover - only where TensorRT is installed: an empty dir has no manifest
        assert run.returncode == 2 and "manifest" in run.stderr


def test_the_openvino_recipe_compiles_the_onnx_export(tmp_path: Path) -> None:
    commands = _dry_run("openvino", "MODEL=tiny", "SIZE=256", "RANDOM=1", "OV_PRECISION=f32")
    ov = [c for c in commands if "tracker.engines.onnx.openvino" in c]
    assert len(ov) == 1 and ov[0][ov[0].index("--export-dir") + 1] == "build/sam2.1-tiny-256-random0"
    assert ov[0][ov[0].index("--precision") + 1] == "f32"
    assert any("export" in c for c in commands)  # the export comes first
    # Run for real on a folder without an export: a clear error naming the manifest, exit 2.
    run = subprocess.run(
        [sys.executable, "-m", "tracker.engines.onnx.openvino", "--export-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert "manifest" in run.stderr or "OpenVINO is not installed" in run.stderr


def test_the_overseer_recipe_trains_on_some_seeds_and_validates_on_others() -> None:
    commands = _dry_run("overseer", "TRAIN_SEEDS=1 2", "VAL_SEEDS=9", "EPOCHS=2")
    parser = build_parser()
    loops = [c for c in commands if c[0] == "for"]
    seeds = [" ".join(c[c.index("in") + 1 : c.index("do")]).rstrip(";").split() for c in loops]
    assert seeds == [["1", "2"], ["9"]]
    parsed = [parser.parse_args(c[1:]) for c in commands if c[0].endswith("tracker")]
    datasets = [a for a in parsed if a.overseer_command == "dataset"]
    assert [sorted(p.name for p in a.sequences) for a in datasets] == [["S1", "S2"], ["S9"]]
    (train,) = [a for a in parsed if a.overseer_command == "train"]
    assert train.coco == datasets[0].out and train.val_coco == datasets[1].out and train.epochs == 2
    (export,) = [a for a in parsed if a.overseer_command == "export"]
    assert export.weights == train.out and export.out.suffix == ".onnx"
