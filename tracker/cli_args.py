"""Command-line arguments the ``tracker`` subcommands share: repeated ``KEY=VALUE`` options."""

from __future__ import annotations

from collections.abc import Iterable


def key_value(pair: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` as ``(KEY, VALUE)``; the value may hold further ``=``. ValueError otherwise."""
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {pair!r}")
    return key, value


def key_values(pairs: Iterable[str]) -> dict[str, str]:
    """Repeated ``--engine-option KEY=VALUE`` (and the like) as a dict; a repeated KEY's last value wins."""
    return dict(key_value(pair) for pair in pairs)
