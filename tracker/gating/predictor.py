"""Latency-compensating motion prediction for a tracked target.

A position measured on a frame acquired at time *t* reaches the beam controller
at *t + latency*; by then a breathing target has moved on (at 4 Hz, a 15 mm
breathing amplitude moves up to ~12 mm/s). Each predictor is updated with the
target's position at every frame's acquisition time and forecasts where it will
be ``horizon_s`` later.

* :class:`KalmanPredictor`: a constant-velocity Kalman filter per axis with
  white-noise acceleration, handling irregular frame intervals. Measurement
  noise smooths centroid jitter; the process noise admits breathing's
  accelerations.
* :class:`QuadraticPredictor`: a least-squares quadratic (or linear, when too
  few points) fit over the last second, extrapolated, as several TrackRAD2025
  teams did.
* :class:`HoldPredictor`: no prediction (the last measurement), the baseline.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass, field

import numpy as np


class MotionPredictor(abc.ABC):
    """Forecasts a 3D position; one instance per tracked object."""

    @abc.abstractmethod
    def update(self, t_s: float, position_mm: np.ndarray) -> None:
        """Record the measured position at acquisition time ``t_s``."""

    @abc.abstractmethod
    def predict(self, horizon_s: float) -> np.ndarray | None:
        """Position ``horizon_s`` after the last measurement; None before any."""

    def reset(self) -> None:  # noqa: B027 - optional
        """Forget the history (e.g. after the target was re-prompted elsewhere)."""


class HoldPredictor(MotionPredictor):
    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def update(self, t_s: float, position_mm: np.ndarray) -> None:
        self._last = np.asarray(position_mm, dtype=float)

    def predict(self, horizon_s: float) -> np.ndarray | None:
        return None if self._last is None else self._last.copy()

    def reset(self) -> None:
        self._last = None


@dataclass
class KalmanPredictor(MotionPredictor):
    """Constant velocity with white-noise acceleration, independently per axis.

    ``accel_psd`` (mm²/s³) sets how fast velocity may change: breathing at 15 mm
    amplitude and a 4 s period peaks near 37 mm/s², which a value of a few
    hundred follows without lag. ``measurement_sd_mm`` is the centroid noise.
    """

    accel_psd: float = 400.0
    measurement_sd_mm: float = 0.5
    max_velocity_mm_s: float = 80.0  # a bound on extrapolation from a glitch
    _x: np.ndarray | None = None  # (3, 2): position and velocity per axis
    _p: np.ndarray | None = None  # (3, 2, 2): covariance per axis
    _t: float = 0.0

    def update(self, t_s: float, position_mm: np.ndarray) -> None:
        z = np.asarray(position_mm, dtype=float)
        r = self.measurement_sd_mm**2
        if self._x is None:
            self._x = np.stack([z, np.zeros(3)], axis=1)
            self._p = np.tile(np.diag([r, 100.0**2]), (3, 1, 1))
            self._t = t_s
            return
        assert self._p is not None
        dt = max(t_s - self._t, 1e-6)
        f = np.array([[1.0, dt], [0.0, 1.0]])
        q = self.accel_psd * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        x = self._x @ f.T  # predict, all axes at once
        p = f @ self._p @ f.T + q
        innovation = z - x[:, 0]
        s = p[:, 0, 0] + r
        gain = p[:, :, 0] / s[:, None]  # (3, 2)
        x = x + gain * innovation[:, None]
        p = p - gain[:, :, None] * p[:, 0, None, :]
        x[:, 1] = np.clip(x[:, 1], -self.max_velocity_mm_s, self.max_velocity_mm_s)
        self._x, self._p, self._t = x, p, t_s

    def predict(self, horizon_s: float) -> np.ndarray | None:
        if self._x is None:
            return None
        return self._x[:, 0] + self._x[:, 1] * horizon_s

    def reset(self) -> None:
        self._x = self._p = None


@dataclass
class QuadraticPredictor(MotionPredictor):
    """Least-squares quadratic over the last ``window_s`` (linear with three points or fewer)."""

    window_s: float = 1.0
    max_points: int = 16
    _history: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: deque(maxlen=64))

    def update(self, t_s: float, position_mm: np.ndarray) -> None:
        self._history.append((t_s, np.asarray(position_mm, dtype=float)))
        while len(self._history) > 2 and t_s - self._history[0][0] > self.window_s:
            self._history.popleft()

    def predict(self, horizon_s: float) -> np.ndarray | None:
        if not self._history:
            return None
        pts = list(self._history)[-self.max_points :]
        if len(pts) == 1:
            return pts[0][1].copy()
        t = np.array([p[0] for p in pts])
        y = np.stack([p[1] for p in pts])
        t_last = t[-1]
        degree = 2 if len(pts) > 3 else 1
        coeffs = np.polyfit(t - t_last, y, degree)  # (degree + 1, 3)
        powers = np.array([horizon_s**k for k in range(degree, -1, -1)])
        return powers @ coeffs

    def reset(self) -> None:
        self._history.clear()


PREDICTORS = {"kalman": KalmanPredictor, "quadratic": QuadraticPredictor, "hold": HoldPredictor}


def make_predictor(name: str) -> MotionPredictor:
    try:
        return PREDICTORS[name]()
    except KeyError:
        raise ValueError(f"unknown motion predictor {name!r}; available: {', '.join(PREDICTORS)}") from None
