"""The committed generated code matches the proto, and the wire encodings round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tracker import convert, masks, protogen
from tracker.types import FrameError
from tracker.v1 import tracker_pb2 as pb


def test_generated_code_is_current():
    assert protogen.stale_files() == [], "run `make proto` and commit tracker/v1/"


def test_removed_fields_are_never_reused():
    # Field numbers are the wire contract: a renumbering breaks deployed clients.
    frame = pb.Frame.DESCRIPTOR.fields_by_name
    names = ("index", "timestamp_s", "height", "width", "channels", "pixel_type", "pixels")
    assert [frame[n].number for n in names] == [1, 2, 3, 4, 5, 6, 7]
    request = pb.TrackRequest.DESCRIPTOR.fields_by_name
    assert (request["open"].number, request["frame"].number, request["prompt_update"].number) == (1, 2, 3)


@given(arrays(bool, st.tuples(st.integers(1, 20), st.integers(1, 20))))
@settings(max_examples=200, deadline=None)
def test_rle_round_trip(mask):
    counts = masks.rle_encode(mask)
    assert sum(counts) == mask.size
    assert all(c > 0 for c in counts[1:])
    assert np.array_equal(masks.rle_decode(counts, *mask.shape), mask)


def test_rle_starts_with_background():
    assert masks.rle_encode(np.array([[True, True, False]])) == [0, 2, 1]
    assert masks.rle_encode(np.array([[False, True, True]])) == [1, 2]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
def test_frame_round_trip(dtype, shape):
    rng = np.random.default_rng(0)
    pixels = (rng.random(shape) * 100).astype(dtype)
    frame = convert.frame_from_proto(convert.frame_to_proto(pixels, 4, 1.5), convert.Limits())
    assert frame.index == 4 and frame.timestamp_s == 1.5
    assert frame.pixels.dtype == dtype and np.array_equal(frame.pixels, pixels)


def test_big_endian_input_is_sent_little_endian():
    pixels = np.arange(6, dtype=">u2").reshape(2, 3)
    frame = convert.frame_from_proto(convert.frame_to_proto(pixels, 0), convert.Limits())
    assert np.array_equal(frame.pixels, pixels)


def test_unsupported_dtype_is_refused_by_the_client_encoder():
    with pytest.raises(ValueError, match="float64"):
        convert.frame_to_proto(np.zeros((2, 2)), 0)


def test_frame_limit_names_the_limit():
    with pytest.raises(FrameError, match="exceeds the limit of 10 pixels"):
        convert.frame_from_proto(
            convert.frame_to_proto(np.zeros((4, 4), np.uint8), 0), convert.Limits(max_frame_pixels=10)
        )
