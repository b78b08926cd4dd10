"""The committed generated code matches the proto, and the wire encodings round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tracker import convert, masks, protogen
from tracker.types import FrameError
from tracker.v1 import tracker_pb2 as pb

SNAPSHOT = Path(__file__).parent / "data" / "proto_field_numbers.json"


def test_generated_code_is_current():
    assert protogen.stale_files() == [], "run `make proto` and commit tracker/v1/"


def _messages() -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message of tracker.proto (nested ones too) by full name, as compiled."""
    file = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(messages, prefix: str) -> None:
        for m in messages:
            found[prefix + m.name] = m
            walk(m.nested_type, f"{prefix}{m.name}.")

    walk(file.message_type, file.package + ".")
    return found


def test_released_field_numbers_are_kept_or_reserved():
    """Field numbers are the wire contract: a renumbering breaks deployed clients.

    ``tests/data/proto_field_numbers.json`` records every field as released. Each must
    still exist with its number, or, once removed, have its number and name listed under
    ``reserved`` in its message; and no field may take a released number under another
    name. Adding fields needs no change here (append them to the file when released).
    """
    released = json.loads(SNAPSHOT.read_text())
    assert released, f"{SNAPSHOT} lists no fields"
    messages = _messages()
    for message, fields in released.items():
        assert message in messages, f"message {message} was removed: reserve it instead"
        m = messages[message]
        current = {f.name: f.number for f in m.field}
        by_number = {number: name for name, number in current.items()}
        reserved_names = set(m.reserved_name)
        for name, number in fields.items():
            reserved_number = any(r.start <= number < r.end for r in m.reserved_range)
            if name in current:
                assert current[name] == number, f"{message}.{name} renumbered {number} -> {current[name]}"
            else:
                assert reserved_number and name in reserved_names, (
                    f"{message}.{name} = {number} was removed without `reserved {number};` and"
                    f' `reserved "{name}";`'
                )
            assert by_number.get(number, name) == name, (
                f"{message}: number {number} of released field {name} is reused by {by_number[number]}"
            )
        for r in m.reserved_range:  # and nothing current sits on a reserved number
            clash = [f.name for f in m.field if r.start <= f.number < r.end]
            assert not clash, f"{message}: {clash} use reserved numbers {r.start}..{r.end - 1}"


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
