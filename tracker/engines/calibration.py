"""Self-calibration of a tracker's quality scores: each session judged against its own start.

A presence score or a forward-backward error in absolute units means different things on
different scans: noise, texture, banding and bias fields leave residuals that no warp can
explain, so a target tracked as well on a noisier scanner reads as less certain, and a gate
holds its beam for no reason. The first frames after a prompt are the best a session will
ever track (its target is where the prompt put it and has barely moved), so their scores
are the session's own reference: afterwards only what is *worse* than that reference lowers
the score.

Both scores are compared on an error scale: a presence score ``p`` in (0, 1] is the
``1 / (1 + e^2)`` of an error ``e = sqrt(1/p - 1)`` (the form the flow engine computes it
in), and a forward-backward error is one already. The reference is the median of the first
:attr:`SelfCalibration.frames` values, capped: a start that is itself poor (an error above
the cap) is not taken as normal, so calibration can never make a session more confident than
a start at the cap would.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def presence_error(score: float) -> float:
    """The error ``e`` whose ``1 / (1 + e^2)`` is ``score`` (``inf`` for a score of 0)."""
    return math.inf if score <= 0.0 else math.sqrt(max(0.0, 1.0 / min(score, 1.0) - 1.0))


@dataclass
class SelfCalibration:
    """One object's reference scores, from the first ``frames`` frames it is tracked on."""

    frames: int = 8  # 0: no calibration, the raw scores stand
    # The largest reference errors. Photometric residuals depend on the scan (noise, texture,
    # banding) far more than the flow's forward-backward consistency does, so the presence cap
    # is lenient (a raw score of 0.1) and the forward-backward one strict.
    presence_cap: float = 3.0
    fb_cap_px: float = 1.0
    _presence: list[float] = field(default_factory=list)
    _fb: list[float] = field(default_factory=list)
    presence_ref: float | None = None
    fb_ref: float | None = None

    def apply(self, presence: float, fb_px: float | None) -> tuple[float, float | None]:
        """(presence score, forward-backward error) relative to the session's own start."""
        if self.frames <= 0:
            return presence, fb_px
        if self.presence_ref is None:  # still learning: the raw values stand, and are kept
            self._presence.append(presence_error(presence))
            if fb_px is not None:
                self._fb.append(fb_px)
            if len(self._presence) >= self.frames:
                finite = [e for e in self._presence if math.isfinite(e)]
                self.presence_ref = min(statistics.median(finite), self.presence_cap) if finite else 0.0
                self.fb_ref = min(statistics.median(self._fb), self.fb_cap_px) if self._fb else 0.0
            return presence, fb_px
        excess = max(0.0, presence_error(presence) - self.presence_ref)
        calibrated = 1.0 / (1.0 + excess * excess)
        fb = None if fb_px is None else max(0.0, fb_px - (self.fb_ref or 0.0))
        return calibrated, fb
