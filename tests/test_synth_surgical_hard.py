"""The hard mode of the synthetic surgical video: what it adds, and that the base scene is unchanged."""

from __future__ import annotations

import numpy as np

from tracker.lab.synth.surgical import SurgicalParams, render_sequence
from tracker.lab.synth.surgical_hard import hard_scene

PARAMS = SurgicalParams(frames=60, height=96, width=128)


def test_the_base_scene_of_a_seed_is_unchanged_by_the_hard_mode_code() -> None:
    easy_a, labels_a, _ = render_sequence(PARAMS, 7)
    easy_b, labels_b, _ = render_sequence(PARAMS, 7)
    assert np.array_equal(easy_a, easy_b) and np.array_equal(labels_a, labels_b)
    hard, _, _ = render_sequence(SurgicalParams(**{**PARAMS.__dict__, "hard": True}), 7)
    again, _, _ = render_sequence(SurgicalParams(**{**PARAMS.__dict__, "hard": True}), 7)
    assert np.array_equal(hard, again)  # deterministic per seed
    assert not np.array_equal(hard, easy_a)


def test_hard_mode_hides_instruments_under_tissue_and_inserts_some_from_top_or_bottom() -> None:
    params = SurgicalParams(**{**PARAMS.__dict__, "hard": True})
    seeds_with_vertical = 0
    for seed in range(6):
        _, labels, plans = render_sequence(params, seed)
        h = params.height
        seeds_with_vertical += any(not 0 <= p.insertion_xy[1] <= h for p in plans)
        scene = hard_scene(seed, (params.height, params.width), params.frames, [p.instance_id for p in plans])
        covered = scene.flap_mask >= 0.5
        for t in scene.flap_frames:
            assert not labels[t][covered].any(), "a label under the tissue flap"
    assert seeds_with_vertical >= 2


def test_smoke_and_blur_soften_the_image() -> None:
    easy, _, _ = render_sequence(PARAMS, 3)
    hard, _, _ = render_sequence(SurgicalParams(**{**PARAMS.__dict__, "hard": True}), 3)

    def detail(frames: np.ndarray) -> float:
        grey = frames.astype(np.float32).mean(axis=3)
        return float(np.abs(np.diff(grey, axis=2)).mean())

    assert detail(hard) < 0.9 * detail(easy)
