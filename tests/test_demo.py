"""`tracker demo` produces what a person looks at: a table, overlay GIFs and a latency plot."""

from __future__ import annotations

import gc

import imageio.v3 as iio
import numpy as np
import pytest

from tracker import demo
from tracker.demo import VIDEO_FLOW_OPTIONS, results_table, run_demo
from tracker.viz import PREDICTION_BGR


@pytest.mark.slow
def test_demo_writes_table_gifs_and_latency_plot(tmp_path, davis_dir, capsys, monkeypatch):
    # Each stream runs with what was alive before it frozen out of full garbage collections.
    frozen_during = []
    replay_sequence = demo.replay_sequence

    def replay_noting_the_freeze(*args, **kwargs):
        frozen_during.append(gc.get_freeze_count())
        return replay_sequence(*args, **kwargs)

    monkeypatch.setattr(demo, "replay_sequence", replay_noting_the_freeze)
    report = run_demo(tmp_path, davis=davis_dir / "car-shadow", seed=3)
    assert len(frozen_during) == 2 and min(frozen_during) > 10_000 and gc.get_freeze_count() == 0
    names = [c["name"] for c in report["cases"]]
    assert names == ["S001", "car-shadow"]
    # The video case runs under DEGRADE and its settings say so, with how many answers were degraded.
    cine, video = report["cases"]
    assert cine["demo_settings"] == "flow" and cine["degraded"] == 0
    side, degraded = VIDEO_FLOW_OPTIONS["max_side"], video["degraded"]
    assert video["demo_settings"] == f"flow, max_side {side}, degrade policy ({degraded} frames degraded)"
    table = capsys.readouterr().out
    assert "S001" in table and "car-shadow" in table and "Dice" in table
    assert (tmp_path / "results.txt").read_text().strip() == results_table(report["cases"])
    for case in report["cases"]:
        frames = iio.imread(tmp_path / f"{case['name']}.gif")
        assert frames.shape[0] == case["frames"]
        # The predicted contour is drawn in the prediction colour (RGB order in the GIF).
        green = np.array(PREDICTION_BGR[::-1])
        assert (np.abs(frames[-1][..., :3].astype(int) - green).sum(axis=-1) < 60).sum() > 20
    plot = iio.imread(tmp_path / "latency.png")
    assert plot.ndim == 3 and plot.shape[0] > 300 and plot.shape[1] > 800
    assert report["summary"]["frames"] == sum(c["frames"] for c in report["cases"])
