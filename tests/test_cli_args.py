"""The ``KEY=VALUE`` options every ``tracker`` subcommand takes: parsed one way, refused clearly."""

from __future__ import annotations

import pytest

from tracker.cli_args import key_value, key_values


def test_pairs_split_at_the_first_equals_sign_and_a_repeated_key_keeps_its_last_value() -> None:
    assert key_value("checkpoint=/models/a=b.pt") == ("checkpoint", "/models/a=b.pt")
    assert key_value("prompt=") == ("prompt", "")
    assert key_values(["image_size=512", "dtype=bfloat16", "image_size=1024"]) == {
        "image_size": "1024",
        "dtype": "bfloat16",
    }
    assert key_values([]) == {}


@pytest.mark.parametrize("pair", ["image_size", "=512", ""])
def test_a_pair_without_a_key_or_an_equals_sign_is_refused_by_name(pair: str) -> None:
    with pytest.raises(ValueError, match=f"expected KEY=VALUE, got {pair!r}"):
        key_values(["dtype=float32", pair])
