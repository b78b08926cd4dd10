"""How fetching, verifying or loading a checkpoint fails: one base class, so callers can catch them all."""

from __future__ import annotations


class WeightsError(RuntimeError):
    """A checkpoint could not be fetched, verified or loaded."""


class ChecksumMismatch(WeightsError):
    """A downloaded or cached file does not have the expected SHA-256."""


class UnverifiedDownloadRefused(WeightsError):
    """No hash is known for a checkpoint and the caller did not accept trust on first use."""


class CheckpointError(WeightsError):
    """A file is not a usable checkpoint for the given model."""
