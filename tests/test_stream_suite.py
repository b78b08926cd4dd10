"""bench/stream_suite.py's table rows: targets evaluated on the result, reused rows labelled."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tracker.types import BudgetPolicy

SUITE = Path(__file__).resolve().parent.parent / "bench" / "stream_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("stream_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(ok: int, late: int, dropped: int, errors: int = 0, degraded: int | None = 0, growth=1.0) -> dict:
    r = {"ok": ok, "late": late, "dropped": dropped, "errors": errors, "rss_growth_after_10s_pct": growth}
    if degraded is not None:
        r["degraded"] = degraded
    return r


@pytest.mark.parametrize(
    ("policy", "result", "met"),
    [
        (BudgetPolicy.STRICT, _result(100, 300, 0), True),
        (BudgetPolicy.STRICT, _result(100, 300, 5), False),  # STRICT never drops
        (BudgetPolicy.STRICT, _result(400, 0, 0), False),  # no overload seen: nothing answered LATE
        (BudgetPolicy.LATEST, _result(100, 2, 298), True),
        (BudgetPolicy.LATEST, _result(100, 2, 298, degraded=40), False),  # LATEST does not degrade
        (BudgetPolicy.LATEST, _result(400, 0, 0), False),
        (BudgetPolicy.DEGRADE, _result(200, 0, 200, degraded=150), True),
        (BudgetPolicy.DEGRADE, _result(200, 0, 200, degraded=0), False),
        (BudgetPolicy.DEGRADE, _result(200, 0, 200, degraded=None), False),  # not recorded: cannot be met
        (BudgetPolicy.LATEST, _result(100, 2, 298, errors=1), False),
        (BudgetPolicy.LATEST, _result(100, 2, 298, growth=9.0), False),  # memory grew
    ],
)
def test_overload_target_is_evaluated(suite, policy, result, met) -> None:
    text = suite.overload_check(policy, result)
    verdict = text.rsplit(": ", 1)[1]
    assert verdict.startswith("met" if met else "NOT met"), text


def test_unmeasured_rss_and_unrecorded_degradations_are_said(suite) -> None:
    assert "RSS growth not measured" in suite.overload_check(
        BudgetPolicy.LATEST, _result(1, 0, 5, growth=None)
    )
    assert "degradations not recorded" in suite.overload_check(
        BudgetPolicy.DEGRADE, _result(1, 0, 5, degraded=None)
    )


def test_reused_rows_say_where_they_come_from(suite) -> None:
    here = "a" * 40
    assert suite.origin_note({"provenance": {"commit": here}}, here) == ""
    assert "measured at commit bbbbbbbbb, not this one" in suite.origin_note(
        {"provenance": {"commit": "b" * 40}}, here
    )
    assert "no provenance" in suite.origin_note({}, here)
