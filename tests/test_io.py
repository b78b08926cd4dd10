"""Readers, writers and format dispatch, on files written here and on real shared data."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, UltrasoundMultiFrameImageStorage, generate_uid

from tracker.io.readers import (
    LazyFrames,
    davis_palette,
    natural_key,
    open_sequence,
    read_dicom,
    read_image_folder,
    read_itk_sequence,
    read_video,
)
from tracker.io.sequence import Sequence
from tracker.io.trackrad import read_trackrad_case, write_trackrad_case
from tracker.io.writers import read_mask_file, write_mask_pngs, write_predictions
from tracker.types import Modality

ECHO = "color3d_jpeg_baseline.dcm"


def _echo_file() -> Path:
    """pydicom-data's echocardiogram: skip only where pydicom-data is not installed."""
    try:
        metadata.version("pydicom-data")
    except metadata.PackageNotFoundError:
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")
    from pydicom.data import get_testdata_file

    found = get_testdata_file(ECHO, download=False)  # installed: never fetch it from the network
    if not found:
        pytest.fail(f"pydicom-data is installed but pydicom finds no {ECHO} in it")
    return Path(str(found))


def _frames(t: int = 4, h: int = 12, w: int = 20) -> np.ndarray:
    """Frames whose every pixel encodes (t, y, x), so any axis mix-up changes values."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    return (tt * 1000 + yy * 30 + xx).astype(np.int16)


# --------------------------------------------------------------------------- ITK

OBLIQUE = np.array(  # rotation about z by 30°, then about x by 20°: columns are axis directions
    [
        [0.8660254, -0.5, 0.0],
        [0.46984631, 0.81379768, -0.34202014],
        [0.17101007, 0.29619813, 0.93969262],
    ]
)


def _write_itk(
    path: Path,
    thw: np.ndarray,
    spacing=(0.8, 1.2, 0.25),
    origin=(-10.0, 5.0, 2.0),
    direction=OBLIQUE,
) -> sitk.Image:
    image = sitk.GetImageFromArray(thw)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction).reshape(-1)))
    sitk.WriteImage(image, str(path))
    return image


def test_itk_mha_geometry_rate_and_sibling_labels(tmp_path: Path) -> None:
    frames = _frames()
    image = _write_itk(tmp_path / "cine.mha", frames)
    labels = np.zeros(frames.shape, np.uint8)
    labels[:, 2:5, 3:7] = 1
    labels[:, 8:10, 10:15] = 2
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "cine_labels.mha"))

    seq = read_itk_sequence(tmp_path / "cine.mha")
    assert seq.kind == "itk" and seq.modality is Modality.CINE_MRI and seq.name == "cine"
    np.testing.assert_array_equal(np.asarray(seq.frames), frames)
    assert seq.geometry.spacing_mm == pytest.approx((0.8, 1.2))
    assert seq.geometry.origin_mm == pytest.approx((-10.0, 5.0, 2.0))
    assert seq.geometry.x_direction == pytest.approx(tuple(OBLIQUE[:, 0]), abs=1e-6)
    assert seq.geometry.y_direction == pytest.approx(tuple(OBLIQUE[:, 1]), abs=1e-6)
    # the same physical point as ITK computes for pixel (x=7, y=3) of frame 0
    expected = image.TransformContinuousIndexToPhysicalPoint((7.0, 3.0, 0.0))
    assert seq.geometry.pixel_to_mm(7, 3) == pytest.approx(expected, abs=1e-6)
    assert seq.frame_rate_hz == pytest.approx(4.0)  # time spacing 0.25 s
    np.testing.assert_array_equal(np.asarray(seq.labels), labels)
    assert seq.object_ids() == [1, 2]


def test_itk_nifti_rate_unknown_then_given(tmp_path: Path) -> None:
    frames = _frames(t=3)
    _write_itk(
        tmp_path / "run.nii.gz", frames, spacing=(1.5, 0.5, 1.0), origin=(0, 0, 0), direction=np.eye(3)
    )
    seq = read_itk_sequence(tmp_path / "run.nii.gz")
    assert seq.name == "run" and len(seq) == 3
    np.testing.assert_array_equal(np.asarray(seq.frames), frames)
    assert seq.geometry.spacing_mm == pytest.approx((1.5, 0.5))
    assert seq.frame_rate_hz == 0.0 and seq.metadata["frame_rate_source"] == "unknown"
    assert read_itk_sequence(tmp_path / "run.nii.gz", frame_rate_hz=6.5).frame_rate_hz == 6.5
    assert seq.labels is None and seq.prompt_label() is None


def test_itk_2d_is_one_frame_and_label_mismatch_fails(tmp_path: Path) -> None:
    img = sitk.GetImageFromArray(_frames(t=1)[0])
    img.SetSpacing((0.7, 0.9))
    sitk.WriteImage(img, str(tmp_path / "one.nrrd"))
    seq = read_itk_sequence(tmp_path / "one.nrrd", frame_rate_hz=2.0)
    assert np.asarray(seq.frames).shape == (1, 12, 20)
    assert seq.geometry.spacing_mm == pytest.approx((0.7, 0.9))

    _write_itk(tmp_path / "bad.mha", _frames(t=3))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 12, 20), np.uint8)), str(tmp_path / "bad_labels.mha"))
    with pytest.raises(ValueError, match="do not match"):
        read_itk_sequence(tmp_path / "bad.mha")


def test_itk_modality_from_metaimage_header(tmp_path: Path) -> None:
    for name, modality in (("ct.mha", b"MET_MOD_CT"), ("mr.mha", b"MET_MOD_MR")):
        _write_itk(tmp_path / name, _frames(t=2))  # SimpleITK does not write the Modality field
        raw = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(
            raw.replace(b"ElementType", b"Modality = " + modality + b"\nElementType", 1)
        )
    assert read_itk_sequence(tmp_path / "ct.mha").modality is Modality.OTHER
    assert read_itk_sequence(tmp_path / "mr.mha").modality is Modality.CINE_MRI


# --------------------------------------------------------------------------- DICOM

ROW_SPACING, COL_SPACING = 0.7, 1.3  # deliberately different: catches an [x, y] / [y, x] swap
IOP = (0.0, 1.0, 0.0, 0.6, 0.0, -0.8)  # oblique sagittal-ish: rows along +y, columns along (0.6, 0, -0.8)
IPP = (-12.5, 30.0, 101.0)


def _dicom(
    path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", sop_class=MRImageStorage, **attrs
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.set_pixel_data(pixels, photometric, pixels.dtype.itemsize * 8)
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_multiframe_geometry_rescale_and_rate(tmp_path: Path) -> None:
    frames = _frames().astype(np.uint16)
    _dicom(
        tmp_path / "cine.dcm",
        frames,
        Modality="MR",
        PixelSpacing=[ROW_SPACING, COL_SPACING],
        ImagePositionPatient=list(IPP),
        ImageOrientationPatient=list(IOP),
        FrameTime=250.0,
        RescaleSlope=2.0,
        RescaleIntercept=-10.0,
    )
    seq = read_dicom(tmp_path / "cine.dcm")
    assert seq.kind == "dicom" and seq.modality is Modality.CINE_MRI and len(seq) == 4
    assert seq.geometry.spacing_mm == pytest.approx((COL_SPACING, ROW_SPACING))  # (x, y)
    assert seq.geometry.origin_mm == pytest.approx(IPP)
    assert seq.geometry.x_direction == pytest.approx(IOP[:3])
    assert seq.geometry.y_direction == pytest.approx(IOP[3:])
    # pixel (x=2, y=1) lies 2 column steps along the row direction, 1 row step along the column direction
    expected = np.array(IPP) + 2 * COL_SPACING * np.array(IOP[:3]) + 1 * ROW_SPACING * np.array(IOP[3:])
    assert seq.geometry.pixel_to_mm(2, 1) == pytest.approx(tuple(expected))
    assert seq.frame_rate_hz == pytest.approx(4.0)
    assert np.asarray(seq.frames).dtype == np.float32
    np.testing.assert_allclose(np.asarray(seq.frames), frames * 2.0 - 10.0)


@pytest.mark.parametrize("with_times", [True, False])
def test_dicom_folder_sorted_by_instance_number(tmp_path: Path, with_times: bool) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    frames = _frames(t=5).astype(np.int16)
    series = generate_uid()
    order = [3, 0, 4, 1, 2]  # file names deliberately out of temporal order
    for file_index, t in enumerate(order):
        times = {"AcquisitionTime": f"1200{t // 4:02d}.{(t % 4) * 25:02d}0000"} if with_times else {}
        _dicom(
            folder / f"IM{file_index:03d}",  # no extension, as scanners write them
            frames[t],
            Modality="MR",
            SeriesInstanceUID=series,
            InstanceNumber=t + 1,
            **times,  # 12:00:00.00 + 0.25 s * t
            PixelSpacing=[ROW_SPACING, COL_SPACING],
            ImagePositionPatient=list(IPP),
            ImageOrientationPatient=list(IOP),
        )
    (folder / "notes.txt").write_text("not DICOM")
    seq = read_dicom(folder)
    np.testing.assert_array_equal(np.asarray(seq.frames), frames)
    assert seq.geometry.spacing_mm == pytest.approx((COL_SPACING, ROW_SPACING))
    assert seq.geometry.x_direction == pytest.approx(IOP[:3])
    if with_times:
        assert seq.frame_rate_hz == pytest.approx(4.0)
        assert seq.timestamp(4) == pytest.approx(1.0)
    else:
        assert seq.frame_rate_hz == 0.0 and seq.timestamps_s is None
    assert open_sequence(folder, frame_rate_hz=3.0).frame_rate_hz == 3.0


def test_dicom_folder_with_mixed_planes_fails(tmp_path: Path) -> None:
    for i, iop in enumerate([IOP, (1, 0, 0, 0, 1, 0)]):
        _dicom(
            tmp_path / f"{i}.dcm", _frames(t=1)[0], InstanceNumber=i + 1, ImageOrientationPatient=list(iop)
        )
    with pytest.raises(ValueError, match="image planes"):
        read_dicom(tmp_path)


def test_dicom_ultrasound_spacing_fallbacks_and_ybr(tmp_path: Path) -> None:
    rgb = np.zeros((3, 8, 10, 3), np.uint8)
    rgb[..., 0] = 200  # red
    from pydicom.pixels import convert_color_space

    region = Dataset()
    region.RegionSpatialFormat = 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 0.05
    region.PhysicalDeltaY = 0.04
    _dicom(
        tmp_path / "us.dcm",
        convert_color_space(rgb, "RGB", "YBR_FULL"),
        "YBR_FULL",
        sop_class=UltrasoundMultiFrameImageStorage,
        Modality="US",
        CineRate=50,
        SequenceOfUltrasoundRegions=[region],
    )
    seq = read_dicom(tmp_path / "us.dcm")
    assert seq.geometry.spacing_mm == pytest.approx((0.5, 0.4))
    assert seq.metadata["spacing_source"] == "SequenceOfUltrasoundRegions"
    assert seq.frame_rate_hz == 50.0 and seq.modality is Modality.OTHER
    frame = np.asarray(seq.frames[1]).astype(int)
    assert frame.shape == (8, 10, 3)
    assert abs(frame[..., 0].mean() - 200) < 3 and frame[..., 1:].max() < 5  # converted back to RGB

    _dicom(tmp_path / "bare.dcm", rgb, "RGB", sop_class=UltrasoundMultiFrameImageStorage, Modality="US")
    bare = read_dicom(tmp_path / "bare.dcm")
    assert bare.geometry.spacing_mm == (1.0, 1.0) and "default" in str(bare.metadata["spacing_source"])
    assert bare.frame_rate_hz == 0.0
    np.testing.assert_array_equal(np.asarray(bare.frames), rgb)


def test_real_echo_dicom() -> None:
    seq = open_sequence(_echo_file())
    frames = np.asarray(seq.frames)
    assert seq.kind == "dicom" and frames.shape == (120, 480, 640, 3) and frames.dtype == np.uint8
    assert seq.frame_rate_hz == pytest.approx(30.0, abs=0.01)  # FrameTime 33.333 ms
    assert seq.geometry.spacing_mm == pytest.approx((0.5105, 0.5105), abs=1e-4)  # 0.051 cm regions
    # decoded as RGB, not left as YCbCr: the grey echo image has R ≈ G ≈ B, its corner is black,
    # and the green marker dot at (x=380, y=40) is green (in YCbCr it would read ~(140, 90, 80))
    mid = frames[60].astype(int)
    assert np.abs(mid[..., 0] - mid[..., 1]).mean() < 3
    assert mid[450:480, 0:60].max() < 10
    r, g, b = mid[39:42, 379:382].reshape(-1, 3).mean(axis=0)
    assert g > 140 and g > r + 50 and g > b + 20


# --------------------------------------------------------------------------- video


def _write_video(path: Path, fourcc: str, fps: float = 25.0, n: int = 12) -> np.ndarray:
    """Frames alternating pure red / pure blue (RGB), with a bright square that moves."""
    rgb = np.zeros((n, 48, 64, 3), np.uint8)
    rgb[0::2, ..., 0] = 220
    rgb[1::2, ..., 2] = 220
    for i in range(n):
        rgb[i, 8:24, 2 * i : 2 * i + 16] = 255
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for frame in rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return rgb


@pytest.mark.parametrize(("fourcc", "name"), [("MJPG", "clip.avi"), ("mp4v", "clip.mp4")])
def test_video_rgb_order_fps_and_lazy_access(tmp_path: Path, fourcc: str, name: str) -> None:
    rgb = _write_video(tmp_path / name, fourcc)
    seq = read_video(tmp_path / name)
    frames = np.asarray(seq.frames)
    assert seq.kind == "video" and seq.frame_rate_hz == pytest.approx(25.0)
    assert frames.shape == rgb.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - rgb).mean() < 8
    assert frames[0, 40, 60, 0] > 150 and frames[0, 40, 60, 2] < 60  # red stays red: BGR was converted

    lazy = read_video(tmp_path / name, preload=False, frame_rate_hz=10.0)
    assert lazy.metadata["lazy"] is True and lazy.frame_rate_hz == 10.0 and len(lazy) == len(rgb)
    for i in (0, 1, 2, 9, 3, 11, -1, 5):  # forward, backward and negative indices
        np.testing.assert_array_equal(lazy.frames[i], frames[i])
    np.testing.assert_array_equal(np.asarray(lazy.frames), frames)
    assert open_sequence(tmp_path / name).kind == "video"
    with pytest.raises(IndexError):
        lazy.frames[len(rgb)]


# --------------------------------------------------------------------------- image folders and DAVIS


def _save_rgb(path: Path, value: int, shape=(10, 14)) -> None:
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(path)


def test_image_folder_natural_order_and_masks(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    (folder / "masks").mkdir(parents=True)
    for i in (1, 2, 10):
        _save_rgb(folder / f"frame{i}.png", i * 10)
        mask = np.zeros((10, 14), np.uint8)
        mask[i % 10 : i % 10 + 3, :4] = 255
        Image.fromarray(mask).save(folder / "masks" / f"frame{i}.png")
    seq = read_image_folder(folder, frame_rate_hz=12.0)
    assert seq.kind == "images" and seq.frame_rate_hz == 12.0
    assert [int(f[0, 0, 0]) for f in seq] == [10, 20, 100]  # frame2 before frame10
    assert seq.metadata["frame_names"] == ["frame1", "frame2", "frame10"]
    assert seq.labels is not None and np.asarray(seq.labels[2]).max() == 1
    assert np.asarray(seq.labels[2])[0:3, :4].all() and seq.labels[2].sum() == 12

    assert read_image_folder(folder).frame_rate_hz == 0.0  # unknown, not guessed
    assert open_sequence(folder).kind == "images"  # masks/ inside is not mistaken for frames


def test_image_folder_inline_masks_first_only(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((6, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "0_mask.png")
    seq = read_image_folder(tmp_path, frame_rate_hz=5)
    assert len(seq) == 3 and np.asarray(seq.frames[2]).shape == (6, 8)  # grey stays 2D
    assert seq.labels is None and seq.first_label is not None
    np.testing.assert_array_equal(seq.first_label, (mask > 0).astype(np.uint8))
    assert seq.metadata["annotated_frames"] == [0]


def test_davis_layout_palette_objects(tmp_path: Path) -> None:
    seq_dir = tmp_path / "bears"
    (seq_dir / "JPEGImages").mkdir(parents=True)
    (seq_dir / "Annotations").mkdir()
    ids = []
    for i in range(3):
        _save_rgb(seq_dir / "JPEGImages" / f"{i:05d}.jpg", 50 + i)
        label = np.zeros((10, 14), np.uint8)
        label[1:4, 1:4] = 1
        label[5:9, 6 + i : 10 + i] = 2 if i < 2 else 0  # object 2 leaves on the last frame
        ids.append(label)
    write_mask_pngs(seq_dir / "Annotations", ids)
    assert Image.open(seq_dir / "Annotations" / "00000.png").mode == "P"
    seq = open_sequence(seq_dir)
    assert seq.kind == "davis" and seq.name == "bears" and seq.frame_rate_hz == 24.0
    assert open_sequence(seq_dir / "JPEGImages").name == "bears"  # the frames folder itself works too
    for i in range(3):
        np.testing.assert_array_equal(seq.labels[i], ids[i])
    assert seq.object_ids() == [1, 2]


def test_real_davis_blackswan(davis_dir: Path) -> None:
    seq = open_sequence(davis_dir / "blackswan")
    assert seq.kind == "davis" and len(seq) == 50 and seq.shape_hw == (480, 854)
    assert seq.frames[49].shape == (480, 854, 3) and seq.frames[49].dtype == np.uint8
    assert seq.labels is not None and len(seq.labels) == 50
    first = np.asarray(seq.labels[0])
    assert set(np.unique(first)) == {0, 1} and seq.object_ids() == [1]
    raw = np.asarray(Image.open(davis_dir / "blackswan" / "Annotations" / "00000.png"))
    np.testing.assert_array_equal(first, (raw > 127).astype(np.uint8))
    assert 0.02 < first.mean() < 0.5  # a swan, not an empty or full mask


# --------------------------------------------------------------------------- dispatch


def test_open_sequence_dispatch_and_overrides(tmp_path: Path) -> None:
    frames = _frames(t=3).astype(np.uint8)
    first = np.zeros(frames.shape[1:], np.uint8)
    first[3:6, 4:9] = 1
    case = write_trackrad_case(tmp_path, "A_001", frames, first, 8.0, labels=np.repeat(first[None], 3, 0))
    seq = open_sequence(case)
    assert seq.kind == "trackrad" and seq.frame_rate_hz == 8.0
    assert open_sequence(case / "images" / "A_001_frames.mha").kind == "trackrad"
    assert open_sequence(case, frame_rate_hz=2.0).frame_rate_hz == 2.0

    _write_itk(tmp_path / "x.mha", frames)
    override = np.zeros(frames.shape[1:], np.uint8)
    override[0:2, 0:2] = 255
    Image.fromarray(override).save(tmp_path / "prompt.png")
    seq = open_sequence(tmp_path / "x.mha", first_mask=tmp_path / "prompt.png")
    assert seq.kind == "itk"
    np.testing.assert_array_equal(seq.prompt_label(), (override > 0).astype(np.uint8))
    # TrackRAD's own first label (H, W, 1 on disk) works as --first-mask
    seq = open_sequence(tmp_path / "x.mha", first_mask=case / "targets" / "A_001_first_label.mha")
    np.testing.assert_array_equal(seq.first_label, first)

    Image.fromarray(np.ones((5, 5), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="does not match"):
        open_sequence(tmp_path / "x.mha", first_mask=tmp_path / "small.png")


def test_open_sequence_unknown_and_missing(tmp_path: Path) -> None:
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*Supported:.*DICOM.*video"):
        open_sequence(unknown)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        open_sequence(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        open_sequence(tmp_path / "nope.mha")


# --------------------------------------------------------------------------- writers


def test_write_mask_pngs_round_trip(tmp_path: Path) -> None:
    single = [np.eye(5, dtype=bool), np.zeros((5, 5), bool)]
    paths = write_mask_pngs(tmp_path / "one", single, names=["a", "b.png"])
    assert [p.name for p in paths] == ["a.png", "b.png"]
    with Image.open(paths[0]) as im:  # indexed, object 1 = value 1: what davis2017-evaluation reads
        assert im.mode == "P" and np.asarray(im).max() == 1
    np.testing.assert_array_equal(read_mask_file(paths[0]), np.eye(5, dtype=np.uint8))
    assert read_mask_file(paths[1]).max() == 0

    multi = np.zeros((2, 5, 5), np.uint8)
    multi[0, 0, 0], multi[0, 4, 4], multi[1, 2, 2] = 1, 3, 3
    paths = write_mask_pngs(tmp_path / "multi", multi)
    for path, expected in zip(paths, multi, strict=True):
        np.testing.assert_array_equal(read_mask_file(path), expected)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        write_mask_pngs(tmp_path / "big", [np.full((2, 2), 300)])


def test_write_predictions_trackrad_and_pngs(tmp_path: Path) -> None:
    frames = _frames(t=3).astype(np.uint8)
    first = np.zeros(frames.shape[1:], np.uint8)
    first[2:5, 2:5] = 1
    case = write_trackrad_case(tmp_path / "in", "B_7", frames, first, 4.0)
    seq = read_trackrad_case(case)
    pred = np.zeros(frames.shape, np.uint8)
    pred[:, 1:4, 1:6] = 1
    out = write_predictions(tmp_path / "out", seq, pred)
    assert out == tmp_path / "out" / "B_7" / "targets" / "B_7_labels.mha"
    # read back through the TrackRAD reader's (H, W, T) convention
    back = np.moveaxis(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), -1, 0)
    np.testing.assert_array_equal(back, pred)

    images = Sequence(
        name="clip",
        frames=frames,
        frame_rate_hz=10.0,
        kind="images",
        metadata={"frame_names": ["f1", "f2", "f10"]},
    )
    folder = write_predictions(tmp_path / "out", images, pred * 2)
    assert sorted(p.name for p in folder.iterdir()) == ["f1.png", "f10.png", "f2.png"]
    np.testing.assert_array_equal(read_mask_file(folder / "f10.png"), pred[2] * 2)
    with pytest.raises(ValueError, match="do not match"):
        write_predictions(tmp_path / "out", images, pred[:2])


def test_small_helpers() -> None:
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]
    assert davis_palette()[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]  # DAVIS/VOC colours
    lazy = LazyFrames(3, lambda i: np.full((2, 2), i), (2, 2), np.int64, cache_size=1)
    assert lazy[-1][0, 0] == 2 and lazy.shape == (3, 2, 2)
    with pytest.raises(IndexError):
        lazy[3]


_WITHOUT_IO_EXTRA = """
import json, sys
sys.modules["SimpleITK"] = None  # as if the [io] extra were not installed: `import SimpleITK` fails
sys.modules["pydicom"] = None
from tracker.io.readers import open_sequence
davis = open_sequence(sys.argv[1])
video = open_sequence(sys.argv[2])
try:
    open_sequence(sys.argv[3])
    itk_error = ""
except ImportError as exc:
    itk_error = str(exc)
print(json.dumps({"davis": [davis.kind, len(davis.frames), davis.object_ids()],
                  "video": [video.kind, len(video.frames)], "itk_error": itk_error}))
"""


def test_davis_and_video_read_without_simpleitk(tmp_path: Path) -> None:
    """The bare install (no [io] extra) reads DAVIS folders and videos; ITK files name the extra."""
    import json
    import subprocess
    import sys

    seq_dir = tmp_path / "bears"
    (seq_dir / "JPEGImages").mkdir(parents=True)
    (seq_dir / "Annotations").mkdir()
    label = np.zeros((10, 14), np.uint8)
    label[1:4, 1:4] = 1
    for i in range(3):
        _save_rgb(seq_dir / "JPEGImages" / f"{i:05d}.jpg", 50 + i)
    write_mask_pngs(seq_dir / "Annotations", [label] * 3)
    _write_video(tmp_path / "clip.avi", "MJPG", n=5)
    _write_itk(tmp_path / "cine.mha", _frames())
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_IO_EXTRA,
            str(seq_dir),
            str(tmp_path / "clip.avi"),
            str(tmp_path / "cine.mha"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["davis"] == ["davis", 3, [1]]
    assert found["video"] == ["video", 5]
    assert "SimpleITK" in found["itk_error"] and "rt-tracker[io]" in found["itk_error"]
