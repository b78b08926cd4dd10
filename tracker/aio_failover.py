"""Asyncio failover session: in :mod:`tracker.client.aio_failover`; this path is kept."""

from tracker.client.aio_failover import AsyncFailoverSession

__all__ = ["AsyncFailoverSession"]
