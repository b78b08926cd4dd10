"""Blocking failover session: in :mod:`tracker.client.sync_failover`; this path is kept."""

from tracker.client.sync_failover import FailoverSession

__all__ = ["FailoverSession"]
