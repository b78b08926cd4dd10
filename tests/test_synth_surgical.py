"""Synthetic surgical sequences: deterministic, readable as they are, COCO consistent with the masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tracker.io.readers import open_sequence
from tracker.lab.synth.surgical import CLASSES, SurgicalParams, render_sequence, write_sequence
from tracker.overseer.coco import decode_segmentation, instance_classes, load_coco, rle_encode


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("surgical") / "seq"
    return write_sequence(out, 40, seed=3, height=96, width=128)


def test_rendering_is_deterministic_per_seed() -> None:
    p = SurgicalParams(frames=6, height=64, width=80)
    a, la, _ = render_sequence(p, 5)
    b, lb, _ = render_sequence(p, 5)
    c, _, _ = render_sequence(p, 6)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_open_sequence_reads_it_as_davis_with_all_labels(written) -> None:
    seq = open_sequence(written.path)
    assert seq.kind == "davis" and len(seq) == 40 and seq.shape_hw == (96, 128)
    assert seq.labels is not None
    labels = np.asarray(seq.labels)
    ids = {int(v) for v in np.unique(labels) if v}
    assert ids == {p.instance_id for p in written.instruments}
    assert set(seq.object_ids()) < ids  # some instruments are not in view on frame 0


def test_instruments_enter_and_leave(written) -> None:
    labels = np.asarray(open_sequence(written.path).labels)
    present = {k: np.flatnonzero((labels == k).any(axis=(1, 2))) for k in range(1, labels.max() + 1)}
    assert any(v.size and v[0] > 0 for v in present.values()), "nothing enters"
    assert any(v.size and v[-1] < len(labels) - 1 for v in present.values()), "nothing leaves"


def test_coco_matches_palette_masks_and_names_classes(written) -> None:
    coco = load_coco(written.path / "annotations.json")
    assert coco.classes == CLASSES
    labels = np.asarray(open_sequence(written.path).labels)
    for t in (0, 17, 39):
        for inst in coco.frames[t]:
            assert np.array_equal(inst.mask(), labels[t] == inst.instance_id)
        assert {i.instance_id for i in coco.frames[t]} == {int(v) for v in np.unique(labels[t]) if v}
    classes = instance_classes(written.path)
    assert classes == {p.instance_id: p.class_name for p in written.instruments}
    data = json.loads((written.path / "annotations.json").read_text())
    assert all(
        a["area"] == int(np.asarray(a["segmentation"]["counts"])[1::2].sum()) for a in data["annotations"]
    )


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((7, 9)) > 0.5
        assert np.array_equal(decode_segmentation(rle_encode(m), 7, 9), m)
    full = np.ones((3, 4), bool)
    assert rle_encode(full)["counts"][0] == 0


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_sequence(tmp_path / "x", 1)
    with pytest.raises(ValueError):
        write_sequence(tmp_path / "x", 5, height=16)
