"""Training smoke test on CPU (tiny images, few iterations), resume, ONNX export parity, detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from tracker.lab.synth.surgical import write_sequence  # noqa: E402
from tracker.lab.training.train import TrainConfig, split, train  # noqa: E402
from tracker.types import Frame  # noqa: E402

pytestmark = pytest.mark.slow

CONFIG = TrainConfig(
    arch="mbv3",
    epochs=2,
    batch_size=2,
    val_fraction=0.1,
    min_size=96,
    max_size=128,
    max_iters_per_epoch=4,
    warmup_iters=3,
    proposals=100,
    progress=False,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("overseer")
    data = root / "seq"
    write_sequence(data, 10, seed=3, height=96, width=128)
    losses: list[float] = []
    result = train(
        data / "annotations.json", data, root / "w.pt", CONFIG, on_iteration=lambda _i, v: losses.append(v)
    )
    return root, data, result, losses


def test_loss_falls_and_validation_runs(trained) -> None:
    _, _, result, losses = trained
    assert len(losses) == 8
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert [h.epoch for h in result.history] == [0, 1]  # two epochs: the checks below are not vacuous
    for h in result.history:
        assert h.val_dice is not None and 0.0 <= h.val_dice <= 1.0, h
        assert h.val_map is not None and 0.0 <= h.val_map <= 1.0, h


def test_checkpoint_loads_weights_only_and_resumes(trained) -> None:
    root, data, result, _ = trained
    ckpt = torch.load(root / "w.pt", weights_only=True)
    assert ckpt["spec"]["classes"] == list(result.classes) and ckpt["epoch"] == 1
    assert "optimizer" in ckpt
    resumed_path = root / "resumed.pt"
    resumed_path.write_bytes((root / "w.pt").read_bytes())
    more = TrainConfig(**{**CONFIG.__dict__, "epochs": 3, "max_iters_per_epoch": 1})
    again = train(data / "annotations.json", data, resumed_path, more, resume=True)
    assert [h.epoch for h in again.history] == [0, 1, 2]
    assert torch.load(resumed_path, weights_only=True)["iteration"] == 9


def test_onnx_export_matches_torchvision(trained) -> None:
    from tracker.lab.training.export import export_onnx, parity
    from tracker.overseer.onnx_runner import OnnxMaskRCNNDetector

    root, data, result, _ = trained
    onnx_path = export_onnx(root / "w.pt", root / "w.onnx")
    image = np.asarray(Image.open(data / "JPEGImages" / "00008.jpg"))
    p = parity(root / "w.pt", onnx_path, image)
    assert p.compared >= 5
    assert p.max_box_px < 0.5 and p.max_score_diff < 1e-3 and p.min_mask_iou > 0.95, p
    det = OnnxMaskRCNNDetector(onnx_path, score_threshold=0.0)
    assert det.classes == result.classes
    big = np.asarray(Image.fromarray(image).resize((256, 192)))  # other frame sizes are resized
    found = det.detect(Frame(0, big))
    assert found, "score_threshold 0 must return detections"
    for d in found:
        assert d.mask.shape == (192, 256) and d.label in result.classes, d.label


def test_torch_detector_and_wrap_engine(trained) -> None:
    from tracker.engines import create_engine
    from tracker.overseer.build import load_detector, wrap_engine

    root, data, _, _ = trained
    det = load_detector(root / "w.pt", score_threshold=0.0)
    image = np.asarray(Image.open(data / "JPEGImages" / "00003.jpg"))
    found = det.detect(Frame(0, image))
    assert found, "score_threshold 0 must return detections"
    assert {d.mask.shape for d in found} == {(96, 128)}
    engine = wrap_engine(create_engine("flow"), str(root / "w.pt"))
    assert "overseer" in engine.info.capabilities
    with pytest.raises(ValueError, match=r"\.pt"):
        load_detector(root / "seq" / "annotations.json")


def test_split_holds_out_the_last_frames() -> None:
    assert split(10, 0.2) == (list(range(8)), [8, 9])
    assert split(2, 0.9) == ([0], [1])
    with pytest.raises(ValueError):
        split(1, 0.2)


def test_cli_group_parses(tmp_path: Path) -> None:
    import argparse

    from tracker.lab.training.cli import add_cli

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["overseer", "train", "--coco", "a.json", "--images", "d", "--out", "w.pt"])
    assert args.arch == "mbv3" and args.func.__name__ == "_cmd_train"
    args = parser.parse_args(["overseer", "export", "w.pt", "--out", "w.onnx"])
    assert args.func.__name__ == "_cmd_export"


def test_sequences_merge_whole_and_train_validates_on_held_out_ones(tmp_path: Path) -> None:
    from tracker.lab.training.dataset import merge_sequences
    from tracker.lab.training.train import CocoInstances, history_report

    for name, seed in (("a", 1), ("b", 2), ("held", 3)):
        write_sequence(tmp_path / "seqs" / name, 4, seed=seed, height=96, width=128)
    merged = merge_sequences([tmp_path / "seqs" / "a", tmp_path / "seqs" / "b"], tmp_path / "train.json")
    data = CocoInstances(merged, tmp_path)
    assert len(data.items) == 8 and all(item.file.is_file() for item in data.items)
    assert [item.file.parent.parent.name for item in data.items] == ["a"] * 4 + ["b"] * 4
    ids = [ann["id"] for item in data.items for ann in item.anns]
    assert len(ids) == len(set(ids)) > 0  # renumbered: no clash between the sequences' ids
    held = merge_sequences([tmp_path / "seqs" / "held"], tmp_path / "val.json")
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1, "max_iters_per_epoch": 2})
    seen: list[int] = []
    result = train(
        merged, tmp_path, tmp_path / "w.pt", config, validation=(held, tmp_path),
        on_epoch=lambda history: seen.append(len(history)),
    )  # fmt: skip
    assert result.history[0].val_dice is not None  # validated on the held-out sequence's 4 frames
    assert seen == [1]
    report = history_report(config, result.classes, result.history)
    assert report["epochs"][0]["epoch"] == 1 and report["epochs"][0]["val_dice"] == result.history[0].val_dice
    assert report["config"]["epochs"] == 1 and report["classes"] == list(result.classes)
    with pytest.raises(FileNotFoundError, match=r"annotations\.json"):
        merge_sequences([tmp_path / "nothing"], tmp_path / "x.json")


def test_small_architecture_trains_from_scratch_and_exports_within_1e4(tmp_path: Path) -> None:
    from tracker.lab.training.export import export_onnx, parity
    from tracker.lab.training.train import learning_rate

    data = tmp_path / "seq"
    write_sequence(data, 10, seed=5, height=96, width=128, hard=True)
    config = TrainConfig(
        **{**CONFIG.__dict__, "arch": "small", "epochs": 3, "lr": 0.02, "max_iters_per_epoch": 4}
    )
    losses: list[float] = []
    result = train(
        data / "annotations.json",
        data,
        tmp_path / "w.pt",
        config,
        on_iteration=lambda _i, v: losses.append(v),
    )
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    last = result.history[-1]
    assert last.val_map50 is not None and 0.0 <= last.val_map50 <= 1.0
    assert set(last.val_ap50_per_class) == set(result.classes)  # every class reported, None when absent
    # The schedule: warm-up to the rate, then cosine down to 1 % of it at the last iteration.
    assert learning_rate(config, 2, 12) == pytest.approx(0.02)
    assert learning_rate(config, 12, 12) == pytest.approx(0.0002)
    onnx_path = export_onnx(tmp_path / "w.pt", tmp_path / "w.onnx")
    image = np.asarray(Image.open(data / "JPEGImages" / "00009.jpg"))
    p = parity(tmp_path / "w.pt", onnx_path, image)
    assert p.compared >= 1, p
    assert p.max_score_diff <= 1e-4 and p.max_box_px <= 1e-2 and p.min_mask_iou >= 0.99, p


def test_small_architecture_takes_no_backbone_weights(tmp_path: Path) -> None:
    from tracker.overseer.model import ModelSpec, build_model

    with pytest.raises(ValueError, match="from scratch"):
        build_model(ModelSpec("small", ("a",)), backbone_weights=tmp_path / "w.pth")


def test_hflip_mirrors_image_masks_and_boxes_together() -> None:
    from tracker.lab.training.train import hflip

    image = torch.zeros(3, 4, 10)
    image[:, 1:3, 1:4] = 1.0
    masks = (image[:1] > 0).to(torch.uint8)
    target = {"boxes": torch.tensor([[1.0, 1.0, 4.0, 3.0]]), "labels": torch.tensor([1]), "masks": masks}
    flipped, t = hflip(image, target)
    ys, xs = torch.nonzero(t["masks"][0], as_tuple=True)
    assert t["boxes"].tolist() == [[6.0, 1.0, 9.0, 3.0]]
    assert (int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1) == (6, 9, 1, 3)
    assert torch.equal(flipped[0] > 0, t["masks"][0] > 0) and torch.equal(t["labels"], target["labels"])


def test_ship_copies_the_export_with_a_manifest_and_refuses_what_is_not_one(
    trained, tmp_path, monkeypatch
) -> None:
    import argparse
    import json

    import onnx

    from tracker.lab.training import cli
    from tracker.lab.training.export import export_onnx
    from tracker.overseer.shipped import read_manifest, shipped_detector

    root, _, result, _ = trained
    onnx_path = export_onnx(root / "w.pt", tmp_path / "det.onnx")
    training = tmp_path / "training.json"
    run = {"command": "tracker overseer train x", "commit": "abc"}
    training.write_text(
        json.dumps({"provenance": run, "epochs": [{"epoch": 2, "val_mask_ap50": 0.25, "seconds": 3.0}]})
    )
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(cli, "SHIPPED_DIR", shipped)
    parser = argparse.ArgumentParser()
    cli.add_cli(parser.add_subparsers(dest="command"))

    def ship(path: Path, *extra: str) -> int:
        args = parser.parse_args(
            ["overseer", "ship", str(path), "--training-json", str(training), "--data", "s 1-2", *extra]
        )
        return args.func(args)

    assert ship(onnx_path, "--max-mb", "200") == 0  # the fixture's mbv3 exports at about 83 MB
    entry = read_manifest(shipped)
    assert entry is not None and entry.classes == result.classes and entry.commit == "abc"
    assert entry.validation == {"epoch": 2, "val_mask_ap50": 0.25} and entry.data == "s 1-2"
    assert shipped_detector(shipped) == shipped / "det.onnx"
    with pytest.raises(ValueError, match="max-mb"):
        ship(onnx_path, "--max-mb", "0.001")
    other = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(other))
    with pytest.raises(ValueError, match="not an overseer export"):
        ship(other)
