"""Replay outputs the official evaluators read as they are (``tracker replay --layout``).

TrackRAD2025: the loader below follows ``LMUK-RADONC-PHYS-RES/trackrad2025``,
``evaluation/evaluate.py`` step by step: ``read_predictions`` (``predictions.json``),
``get_interface_relative_path`` + ``get_file_location`` (``<input>/<pk>/output/<relative path>``),
``load_image_file`` (the first ``*.tiff`` then ``*.mha`` there, read as ``minimal_mha_simpleitk``
reads a MetaImage: header lines up to ``ElementDataFile``, zlib when ``CompressedData``, dtype from
``ElementType`` (uint8 unless named), shape from ``DimSize`` reversed), ``get_image_name`` and the
case id rule of ``process``, the ground truth at ``<gt>/<id>/targets/<id>_labels.mha``, both
arrays transposed ``(2, 0, 1)``, ``get_interface_value`` for the scanned region and
``extract_runtime``. With ``TRACKRAD2025_EVALUATION`` naming a checkout's ``evaluation/`` folder
(and pandas and psutil importable) the official ``evaluate.py`` runs too, unchanged, on the output.

DAVIS 2017: the loader follows ``davisvideochallenge/davis2017-evaluation``: ``davis2017/davis.py``
(``DAVIS.__init__``: ImageSets list, JPEG and PNG globs; ``get_all_masks``: void 255 set to 0,
objects = max of the first annotation), ``davis2017/evaluation.py`` (``evaluate``: frames 1..T-2,
``_evaluate_semisupervised``: zero padding) and ``davis2017/results.py`` (``read_masks``: values
1..max); J and F per frame by the transcription in ``tests/test_davis.py``. With
``DAVIS2017_EVALUATION`` naming a checkout, the toolkit's ``DAVISEvaluation`` runs as well.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zlib
from datetime import datetime
from glob import glob
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from tests.conftest import davis_root, disk, shift, textured_image
from tests.test_davis import ref_f_measure, ref_iou
from tracker.cli import main as cli_main
from tracker.io.challenge_layout import DAVIS_ROOT, PredictionWriter, job_pk
from tracker.io.readers import open_sequence
from tracker.io.sequence import Sequence
from tracker.io.trackrad import write_trackrad_case
from tracker.lab.replay import ReplayOptions, replay
from tracker.lab.scoring import davis
from tracker.lab.scoring.challenge import challenge_scores

# Geometry unlike SimpleITK's defaults, as the challenge's data have (time spacing, an offset).
SPACING = (5.0, 1.0, 1.0)
ORIGIN = (0.1053, 0.4946, 38.5)
DIRECTION = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)


def _regeometry(path: Path) -> None:
    image = sitk.ReadImage(str(path))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    sitk.WriteImage(image, str(path), useCompression=True)


def _trackrad_case(root: Path, case_id: str, seed: int, empty_truth_at: int | None, region: str) -> Path:
    """A small moving-texture case with a disk target, written in the TrackRAD layout."""
    h, w, n = 72, 88, 10
    base = textured_image(h, w, seed)
    moves = [(2.0 * np.sin(i / 2.0), 1.5 * i / n) for i in range(n)]
    frames = np.stack([shift(base, dx, dy) for dx, dy in moves]).astype(np.float32)
    labels = np.stack([disk(h, w, 40 + dx, 34 + dy, 9) for dx, dy in moves]).astype(np.uint8)
    if empty_truth_at is not None:
        labels[empty_truth_at] = 0  # the target out of the slice: the evaluation drops the frame
    case = write_trackrad_case(root, case_id, frames, labels[0], 4.0, labels, scanned_region=region)
    for name in (f"images/{case_id}_frames.mha", f"targets/{case_id}_labels.mha"):
        _regeometry(case / name)
    return case


@pytest.fixture(scope="module")
def trackrad_replay(tmp_path_factory) -> tuple[Path, Path, dict, list]:
    """Two cases replayed with the flow engine into the trackrad layout: (cases, out, report, results)."""
    tmp = tmp_path_factory.mktemp("trackrad")
    cases = tmp / "cases"
    paths = [
        _trackrad_case(cases, "A_001", 3, None, "lung"),
        _trackrad_case(cases, "B_002", 5, 6, "abdomen"),
    ]
    out = tmp / "out"
    options = ReplayOptions(progress=False, out_masks=out, out_masks_layout="trackrad")
    report, results = replay(paths, options, report_path=tmp / "report.json")
    return cases, out, report, results


# -- the official TrackRAD2025 loading path, step by step ------------------------------------------


def read_mha_as_minimal_reader(path: str | Path) -> tuple[dict[str, str], np.ndarray]:
    """A MetaImage read as ``minimal_mha_simpleitk.ReadImage`` + ``GetArrayFromImage`` read it."""
    header: dict[str, str] = {}
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            assert line, f"{path}: no ElementDataFile line"
            text = line.decode("utf-8").strip()
            if " = " in text:
                key, value = text.split(" = ", 1)
                header[key] = value
            if "ElementDataFile" in text:
                assert "LOCAL" in text, "the evaluation container has no separate raw file"
                data = f.read()
                break
    if header.get("CompressedData") == "True":
        data = zlib.decompress(data)
    dtypes = {
        "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64, "MET_INT": np.int32, "MET_UINT": np.uint32,
        "MET_SHORT": np.int16, "MET_USHORT": np.uint16, "MET_CHAR": np.int8, "MET_UCHAR": np.uint8,
    }  # fmt: skip
    dtype = dtypes.get(header.get("ElementType", ""), np.uint8)
    shape = [int(v) for v in header["DimSize"].split(" ")][::-1]
    return header, np.frombuffer(data, dtype=dtype).reshape(shape)


def _interface_entry(values: list[dict], slug: str) -> dict:
    matches = [v for v in values if v["interface"]["slug"] == slug]
    assert matches, f"no interface {slug!r}"  # the evaluation raises RuntimeError here
    return matches[0]


# Evaluation toolkits run from a checkout, by the variable naming it: (what it names, toolkit, modules).
_TOOLKITS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "TRACKRAD2025_EVALUATION": (
        "a trackrad2025 checkout's evaluation/ folder",
        "the official evaluation",
        ("pandas", "psutil", "scipy"),
    ),
    "DAVIS2017_EVALUATION": (
        "a davis2017-evaluation checkout",
        "davis2017-evaluation",
        ("skimage", "tqdm", "cv2"),
    ),
}


def _checkout(variable: str) -> str:
    """The toolkit checkout ``$variable`` names; skip where it is unset or the toolkit lacks a module."""
    folder, tool, modules = _TOOLKITS[variable]
    checkout = os.environ.get(variable)
    if not checkout:
        pytest.skip(f"set {variable} to {folder}")
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{tool} needs {module}")
    return checkout


def official_jobs(input_dir: Path, ground_truth: Path) -> dict[str, dict]:
    """Per case id: what ``process`` would score, loaded as ``evaluate.py`` loads it."""
    jobs = json.loads((input_dir / "predictions.json").read_text())
    loaded = {}
    for job in jobs:
        relative = _interface_entry(job["outputs"], "mri-linac-series-targets")["interface"]["relative_path"]
        location = input_dir / job["pk"] / "output" / relative
        files = glob(str(location / "*.tiff")) + glob(str(location / "*.mha"))
        header, prediction = read_mha_as_minimal_reader(files[0])
        series_name = _interface_entry(job["inputs"], "mri-linac-series")["image"]["name"]
        _interface_entry(job["inputs"], "mri-linac-target")["image"]["name"]  # read by process too
        region = _interface_entry(job["inputs"], "scanned-region")["value"]
        case_id = os.path.basename(series_name).replace(".mha", "").replace("_frames", "")
        _, truth = read_mha_as_minimal_reader(ground_truth / f"{case_id}/targets/{case_id}_labels.mha")
        runtime = (
            datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(job["started_at"])
        ).total_seconds()
        loaded[case_id] = {
            "pk": job["pk"],
            "file": Path(files[0]),
            "n_files": len(files),
            "header": header,
            "y_pred": prediction.transpose(2, 0, 1),
            "y_true": truth.transpose(2, 0, 1),
            "scanned_region": region,
            "runtime": runtime,
        }
    return loaded


@pytest.mark.slow
def test_trackrad_layout_loads_through_the_official_path(trackrad_replay) -> None:
    cases, out, report, results = trackrad_replay
    loaded = official_jobs(out, cases)
    assert sorted(loaded) == ["A_001", "B_002"]  # every job listed, each matched to its case
    for case_report, result in zip(report["cases"], results, strict=True):
        name = result.sequence.name
        job = loaded[name]
        assert job["pk"] == job_pk(name) and job["n_files"] == 1
        assert job["header"]["ElementType"] == "MET_UCHAR"
        # What the evaluation scores is exactly what the replay predicted, in (T, H, W) ...
        expected = (result.predictions > 0).astype(np.uint8)
        assert job["y_pred"].shape == job["y_true"].shape == expected.shape
        np.testing.assert_array_equal(job["y_pred"], expected)
        np.testing.assert_array_equal(job["y_true"], np.asarray(result.sequence.labels))
        assert job["y_pred"].sum() != 0  # the evaluation asserts a non-empty prediction
        assert job["scanned_region"] == result.sequence.metadata["scanned_region"]
        assert job["runtime"] > 0
        # ... with the input image's geometry, as SimpleITK reads it.
        written = sitk.ReadImage(str(job["file"]))
        truth = sitk.ReadImage(str(cases / name / "targets" / f"{name}_labels.mha"))
        assert written.GetSize() == truth.GetSize()
        assert written.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_allclose(written.GetSpacing(), SPACING)
        np.testing.assert_allclose(written.GetOrigin(), ORIGIN)
        np.testing.assert_allclose(written.GetDirection(), DIRECTION)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), np.moveaxis(expected, 0, -1))
        # The report's challenge block is what those loaded arrays score.
        region = job["scanned_region"]
        again = challenge_scores(job["y_pred"] > 0, job["y_true"] > 0, dose=True, scanned_region=region)
        block = case_report["challenge"]
        for key in ("dice", "hd95_px", "asd_px", "centroid_px", "relative_d98"):
            assert getattr(again, key) == pytest.approx(block[key], abs=1e-9), key
    assert loaded["B_002"]["y_true"][6].sum() == 0  # the empty-truth frame reached the evaluation


@pytest.mark.slow
def test_trackrad_layout_runs_the_official_evaluation(trackrad_replay, tmp_path) -> None:
    """The challenge's own evaluate.py, unchanged, on the replay's output (a checkout needed)."""
    checkout = _checkout("TRACKRAD2025_EVALUATION")
    cases, out, report, _ = trackrad_replay
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # Only the container's fixed folders are pointed elsewhere: /input, /output, the ground truth.
    script = (
        "import sys, pathlib, evaluate\n"
        "evaluate.INPUT_DIRECTORY = pathlib.Path(sys.argv[1])\n"
        "evaluate.OUTPUT_DIRECTORY = pathlib.Path(sys.argv[2])\n"
        "evaluate.GROUND_TRUTH_DIRECTORY = pathlib.Path(sys.argv[3])\n"
        "raise SystemExit(evaluate.main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([checkout, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", script, str(out), str(metrics_dir), str(cases)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    official = {r["case_id"]: r for r in json.loads((metrics_dir / "metrics.json").read_text())["results"]}
    assert sorted(official) == ["A_001", "B_002"]
    pairs = {
        "dice_similarity_coefficient": "dice",
        "hausdorff_distance_95": "hd95_px",
        "surface_distance_average": "asd_px",
        "center_distance": "centroid_px",
        "relative_d98_dose": "relative_d98",
    }
    for case in report["cases"]:
        theirs = official[case["name"]]
        assert theirs["frame_count"] == case["frames"]
        for their_key, our_key in pairs.items():
            assert theirs[their_key] == pytest.approx(case["challenge"][our_key], abs=1e-6), their_key


@pytest.mark.slow
def test_layout_flag_through_the_cli(tmp_path) -> None:
    case = _trackrad_case(tmp_path / "cases", "C_003", 7, None, "thorax")
    out = tmp_path / "gc"
    args = [
        "replay",
        str(case),
        "--report",
        str(tmp_path / "r.json"),
        "--no-progress",
        "--out-masks",
        str(out),
    ]
    assert cli_main([*args, "--layout", "trackrad"]) == 0
    job = official_jobs(out, tmp_path / "cases")["C_003"]
    np.testing.assert_array_equal(job["y_pred"][0], job["y_true"][0])  # frame 0 is the prompt
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["out_masks_layout"] == "trackrad"
    assert cli_main([*args[:-1], str(tmp_path / "native")]) == 0  # the default stays the native layout
    assert (tmp_path / "native" / "C_003" / "targets" / "C_003_labels.mha").is_file()
    # Input the evaluation could not match to a ground truth is refused before anything is replayed.
    video = tmp_path / "clip"
    video.mkdir()
    for i in range(3):
        Image.fromarray(textured_image(40, 48, i)).save(video / f"{i:05d}.png")
    Image.fromarray(disk(40, 48, 20, 20, 6).astype(np.uint8) * 255).save(video / "00000_mask.png")
    refused = ["replay", str(video), "--report", str(tmp_path / "v.json"), "--out-masks", str(tmp_path / "v")]
    assert cli_main([*refused, "--layout", "trackrad", "--no-progress", "--frame-rate", "10"]) == 2
    assert not (tmp_path / "v.json").exists()


# -- the DAVIS 2017 toolkit's loading path ---------------------------------------------------------


def toolkit_load(root: Path, results: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per ``val`` sequence: (annotation, result) object masks of frames 1..T-2, as the toolkit has them."""
    names = [n.strip() for n in (root / "ImageSets" / "2017" / "val.txt").read_text().splitlines()]
    loaded = {}
    for seq in names:
        images = sorted(glob(str(root / "JPEGImages" / "480p" / seq / "*.jpg")))
        assert images, f"images for sequence {seq} not found"  # DAVIS.__init__ raises here
        annotation_files = sorted(glob(str(root / "Annotations" / "480p" / seq / "*.png")))
        assert len(annotation_files) == len(images)
        annotations = np.stack([np.array(Image.open(f)) for f in annotation_files]).astype(float)
        ids = ["".join(Path(f).name.split(".")[:-1]) for f in annotation_files]
        annotations[annotations == 255] = 0  # void
        n_objects = int(np.max(annotations[0]))
        gt = np.arange(1, n_objects + 1)[:, None, None, None] == annotations[None]
        gt, ids = gt[:, 1:-1], ids[1:-1]  # semi-supervised: first and last frames not scored
        res = np.stack([np.array(Image.open(results / seq / f"{i}.png")) for i in ids]).astype(float)
        n_res = int(np.max(res))
        res_masks = np.arange(1, n_res + 1)[:, None, None, None] == res[None]
        assert n_res <= n_objects, "the toolkit stops: an index higher than the number of objects"
        pad = np.zeros((n_objects - n_res, *res_masks.shape[1:]), bool)
        loaded[seq] = (gt, np.concatenate([res_masks, pad]))
    return loaded


def toolkit_j_f(gt: np.ndarray, res: np.ndarray) -> tuple[list[float], list[float]]:
    """Per object, the mean over frames of J (``db_eval_iou``) and F (``db_eval_boundary``)."""
    j = [float(np.mean([ref_iou(g, r) for g, r in zip(gt[k], res[k], strict=True)])) for k in range(len(gt))]
    f = [
        float(np.mean([ref_f_measure(r, g) for g, r in zip(gt[k], res[k], strict=True)]))
        for k in range(len(gt))
    ]
    return j, f


def _known_masks() -> tuple[Sequence, np.ndarray]:
    """Ids 2 and 5 (written as 1, 2), an empty annotated frame, a predicted id the prompt lacks."""
    h, w, n = 60, 80, 7
    base = textured_image(h, w, 1)
    labels = np.zeros((n, h, w), np.uint8)
    predictions = np.zeros((n, h, w), np.uint16)
    for t in range(n):
        labels[t][disk(h, w, 20 + t, 25, 8)] = 2
        labels[t][disk(h, w, 55, 30 + t, 7)] = 5
        predictions[t][disk(h, w, 21 + t, 25, 8)] = 2
        predictions[t][disk(h, w, 55, 32 + t, 6)] = 5
    labels[3][labels[3] == 5] = 0  # object 5 out of view on one frame
    predictions[4][disk(h, w, 70, 50, 4)] = 7  # an overseer's new track
    return Sequence("two-objects", np.stack([base] * n), 24.0, labels=labels, kind="images"), predictions


def test_davis2017_layout_from_known_masks(tmp_path) -> None:
    sequence, predictions = _known_masks()
    folder = PredictionWriter(tmp_path, "davis2017").write(sequence, predictions)
    assert folder == tmp_path / "two-objects"
    with Image.open(folder / "00003.png") as im:
        assert im.mode == "P"

    gt, res = toolkit_load(tmp_path / DAVIS_ROOT, tmp_path)["two-objects"]
    ours = davis.score_sequence(predictions, np.asarray(sequence.labels), [2, 5])
    assert ours is not None
    assert gt.shape[0] == res.shape[0] == len(ours.objects) == 2  # > 0 and equal to ours
    j, f = toolkit_j_f(gt, res)
    assert j == pytest.approx([o.j_mean for o in ours.objects], abs=1e-9)
    assert f == pytest.approx([o.f_mean for o in ours.objects], abs=1e-9)
    assert j[1] < 1.0  # the shifted object does not score perfectly: the comparison can fail


@pytest.fixture(scope="module")
def davis_replay(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The first 8 frames of DAVIS-2016 blackswan (0/255 annotations) replayed with --layout davis2017."""
    tmp = tmp_path_factory.mktemp("davis")
    source = davis_root() / "blackswan"
    seq = tmp / "in" / "blackswan"
    for sub, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        (seq / sub).mkdir(parents=True)
        for i in range(8):
            (seq / sub / f"{i:05d}{suffix}").write_bytes((source / sub / f"{i:05d}{suffix}").read_bytes())
    out = tmp / "out"
    report_path = tmp / "r.json"
    args = ["replay", str(seq), "--report", str(report_path), "--out-masks", str(out), "--no-progress"]
    assert cli_main([*args, "--layout", "davis2017"]) == 0
    return seq, out, json.loads(report_path.read_text())


@pytest.mark.slow
def test_davis2017_layout_from_a_replay_of_a_davis2016_clip(davis_replay) -> None:
    """0/255 annotations in, one object (not none) for the toolkit out, scored as the report says."""
    seq, out, report = davis_replay
    assert set(np.unique(np.array(Image.open(seq / "Annotations" / "00000.png")))) == {0, 255}
    gt, res = toolkit_load(out / DAVIS_ROOT, out)["blackswan"]
    assert gt.shape[0] == res.shape[0] == 1
    j, f = toolkit_j_f(gt, res)
    block = report["cases"][0]["davis"]
    assert list(block["objects"]) == ["1"]
    assert j[0] == pytest.approx(block["j_mean"], abs=1e-9)
    assert f[0] == pytest.approx(block["f_mean"], abs=1e-9)
    assert report["summary"]["davis"]["j_mean"] == pytest.approx(j[0], abs=1e-9)
    # The replay report's own J covers every frame after the prompt, under its own name.
    assert "j_mean" not in report["cases"][0] and "j_mean_after_prompt" in report["cases"][0]
    # The written root is read back by this project's DAVIS reader as the same annotation.
    back = open_sequence(out / DAVIS_ROOT / "JPEGImages" / "480p" / "blackswan")
    original = open_sequence(seq)
    assert back.labels is not None and original.labels is not None
    np.testing.assert_array_equal(np.asarray(back.labels[5]), np.asarray(original.labels[5]))


@pytest.mark.slow
def test_davis2017_layout_runs_the_toolkit(davis_replay, tmp_path) -> None:
    """davis2017-evaluation's own DAVISEvaluation on both layouts above (a checkout needed)."""
    checkout = _checkout("DAVIS2017_EVALUATION")
    sys.path.insert(0, checkout)
    try:
        from davis2017.evaluation import DAVISEvaluation
    finally:
        sys.path.remove(checkout)

    sequence, predictions = _known_masks()
    PredictionWriter(tmp_path, "davis2017").write(sequence, predictions)
    ours = davis.score_sequence(predictions, np.asarray(sequence.labels), [2, 5])
    assert ours is not None
    _, out, report = davis_replay
    replayed = report["cases"][0]["davis"]["objects"].values()
    for root, results, j, f in (
        (tmp_path / DAVIS_ROOT, tmp_path, [o.j_mean for o in ours.objects], [o.f_mean for o in ours.objects]),
        (out / DAVIS_ROOT, out, [o["j_mean"] for o in replayed], [o["f_mean"] for o in replayed]),
    ):
        evaluation = DAVISEvaluation(davis_root=str(root), task="semi-supervised", gt_set="val")
        scores = evaluation.evaluate(str(results))
        assert len(scores["J"]["M"]) == len(j) > 0
        assert scores["J"]["M"] == pytest.approx(j, abs=1e-9)
        assert scores["F"]["M"] == pytest.approx(f, abs=1e-9)
