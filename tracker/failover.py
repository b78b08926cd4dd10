"""Client failover rules: in :mod:`tracker.client.failover`; this path is kept."""

from tracker.client.failover import (
    REFUSAL_CODES,
    FailoverCore,
    FailoverEvent,
    FailoverFailed,
    FailoverPolicy,
    is_retryable_reopen,
    triggers_failover,
)

__all__ = [
    "REFUSAL_CODES",
    "FailoverCore",
    "FailoverEvent",
    "FailoverFailed",
    "FailoverPolicy",
    "is_retryable_reopen",
    "triggers_failover",
]
