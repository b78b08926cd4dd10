"""The asyncio client; it lives in :mod:`tracker.client.aio`; this path is kept."""

from tracker.client.aio import AsyncStreamSession, AsyncTrackerClient

__all__ = ["AsyncStreamSession", "AsyncTrackerClient"]
