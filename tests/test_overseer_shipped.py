"""The shipped overseer detector: its manifest, its hash check, and the file itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.overseer.shipped import (
    SHIPPED_DIR,
    ShippedDetector,
    read_manifest,
    shipped_detector,
    write_manifest,
)
from tracker.weights.manifest import sha256_file


def _entry(path: Path) -> ShippedDetector:
    return ShippedDetector(
        file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size, classes=("a", "b"), arch="small",
        training_command="tracker overseer train ...", commit="0" * 40, data="seeds 1-2",
        validation={"epoch": 1, "val_mask_ap50": 0.5},
    )  # fmt: skip


def test_nothing_shipped_is_none_not_an_error(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None and shipped_detector(tmp_path) is None


def test_a_shipped_file_is_returned_only_while_its_hash_matches(tmp_path: Path) -> None:
    model = tmp_path / "det.onnx"
    model.write_bytes(b"not really a model, but hashed all the same")
    write_manifest(_entry(model), tmp_path)
    assert read_manifest(tmp_path) == _entry(model)
    assert shipped_detector(tmp_path) == model
    model.write_bytes(b"changed after shipping")
    with pytest.raises(ValueError, match="differs from the manifest"):
        shipped_detector(tmp_path)
    model.unlink()
    with pytest.raises(ValueError, match="missing"):
        shipped_detector(tmp_path)


def test_the_package_ships_a_detector_that_loads_with_its_manifest_classes() -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    from tracker.overseer.onnx_runner import OnnxMaskRCNNDetector

    entry = read_manifest()
    assert entry is not None, f"no detector in {SHIPPED_DIR}: `tracker overseer ship` puts one there"
    path = shipped_detector()
    assert path is not None and path.stat().st_size <= 25 * 2**20
    assert onnxruntime.InferenceSession(str(path)).get_inputs()[0].name == "image"
    assert OnnxMaskRCNNDetector(path).classes == entry.classes
    assert entry.commit and "tracker overseer train" in entry.training_command and entry.data
