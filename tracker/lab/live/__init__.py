"""``tracker live``: a live source through the tracker, with a web view and a recording.

:func:`add_cli` adds the subcommand to ``tracker``'s parser; :func:`run_live`
runs it from Python. Heavy modules load on first use, so building the CLI
parser stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.lab.live.cli import add_cli

if TYPE_CHECKING:
    from tracker.lab.live.runner import LiveOptions, LiveRunner, LiveSummary, run_live

__all__ = ["LiveOptions", "LiveRunner", "LiveSummary", "add_cli", "run_live"]


def __getattr__(name: str) -> Any:
    if name in ("LiveOptions", "LiveRunner", "LiveSummary", "run_live"):
        from tracker.lab.live import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'tracker.lab.live' has no attribute {name!r}")
