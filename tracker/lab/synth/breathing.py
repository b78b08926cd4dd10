"""Irregular respiratory motion traces for synthetic cine-MRI.

Real free-breathing motion is what makes MR-linac tracking hard, so the trace
is deliberately not a sine: each cycle has its own period and amplitude, the
end-exhale position lingers longer than end-inhale (Lujan's ``cos^2n`` shape),
the baseline drifts over minutes, and now and then the patient takes a deep
breath or pauses (apnoea). The anterior-posterior component follows the
superior-inferior one with a phase offset, which traces the hysteresis loop
seen in lung-tumour trajectories.

Sign convention of the returned trace (what :mod:`tracker.lab.synth.cine_mri`
relies on): column 0 is superior-inferior (SI) displacement in mm, positive
towards the feet (inferior, the direction the diaphragm moves on inhalation);
column 1 is anterior-posterior (AP) displacement in mm, positive anterior. Zero
is the end-exhale position before any drift; the trace starts at a random
breathing phase, so frame 0 is not necessarily at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The trace is built on this internal grid and then sampled at the frame times,
# so that a 1 Hz acquisition samples the same continuous motion as an 8 Hz one.
_GRID_HZ = 50.0


@dataclass(frozen=True)
class BreathingParams:
    """Statistics of one patient's breathing.

    Amplitudes are peak-to-peak (end-exhale to end-inhale), the usual way tumour
    motion is reported in the radiotherapy literature.
    """

    period_mean_s: float = 4.0
    period_cv: float = 0.15  # cycle-to-cycle coefficient of variation of the period
    amplitude_mean_mm: float = 12.0  # SI peak-to-peak
    amplitude_cv: float = 0.15  # cycle-to-cycle coefficient of variation of the amplitude
    drift_mm_per_min: float = 1.5  # SI baseline drift; its sign is drawn per trace
    deep_breath_prob: float = 0.05  # per cycle
    deep_breath_factor: tuple[float, float] = (1.3, 1.7)  # amplitude multiplier range
    pause_prob: float = 0.04  # per cycle: an end-exhale pause follows the cycle
    pause_s: tuple[float, float] = (1.5, 5.0)  # pause duration range
    ap_ratio: float = 0.3  # AP peak-to-peak as a fraction of SI
    hysteresis_rad: float = 0.35  # AP phase lead over SI (opens the SI-AP loop)
    shape_n: float = 1.5  # Lujan exponent: larger values give longer end-exhale rests
    jitter_mm: float = 0.2  # small smooth irregularity on top of the model

    def __post_init__(self) -> None:
        if self.period_mean_s <= 0.5:
            raise ValueError(f"period_mean_s must exceed 0.5 s, got {self.period_mean_s}")
        if self.amplitude_mean_mm < 0:
            raise ValueError(f"amplitude_mean_mm must be >= 0, got {self.amplitude_mean_mm}")
        for name in ("period_cv", "amplitude_cv", "jitter_mm", "ap_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("deep_breath_prob", "pause_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        if self.shape_n <= 0:
            raise ValueError(f"shape_n must be positive, got {self.shape_n}")


def random_breathing_params(rng: np.random.Generator) -> BreathingParams:
    """Breathing statistics spanning what MR-linac patients show (period 3-6 s, 5-25 mm SI)."""
    return BreathingParams(
        period_mean_s=float(rng.uniform(3.0, 6.0)),
        period_cv=float(rng.uniform(0.08, 0.25)),
        amplitude_mean_mm=float(rng.uniform(5.0, 25.0)),
        amplitude_cv=float(rng.uniform(0.08, 0.25)),
        drift_mm_per_min=float(rng.uniform(0.3, 3.0)),
        deep_breath_prob=float(rng.uniform(0.0, 0.1)),
        pause_prob=float(rng.uniform(0.0, 0.08)),
        ap_ratio=float(rng.uniform(0.15, 0.45)),
        hysteresis_rad=float(rng.uniform(-0.2, 0.6)),
        shape_n=float(rng.uniform(1.0, 2.5)),
    )


@dataclass
class _Cycles:
    """Per-cycle schedule on the fine grid: phase in [0, 2π) per cycle and amplitude."""

    phase: np.ndarray  # cumulative phase, 2π per cycle, flat during pauses
    amplitude: np.ndarray  # peak-to-peak SI of the cycle the grid point belongs to


def _cycles(duration_s: float, rng: np.random.Generator, p: BreathingParams) -> _Cycles:
    n_grid = int(np.ceil(duration_s * _GRID_HZ)) + 2
    phase = np.empty(n_grid)
    amplitude = np.empty(n_grid)
    # Start somewhere inside a cycle so frame 0 is not always at end-exhale.
    start_phase = float(rng.uniform(0.0, 2.0 * np.pi))
    i = 0
    k = 0  # cycle index
    while i < n_grid:
        period = p.period_mean_s * float(np.exp(rng.normal(0.0, p.period_cv)))
        period = float(np.clip(period, 0.5 * p.period_mean_s, 2.0 * p.period_mean_s))
        amp = p.amplitude_mean_mm * float(np.exp(rng.normal(0.0, p.amplitude_cv)))
        if rng.random() < p.deep_breath_prob:
            amp *= float(rng.uniform(*p.deep_breath_factor))
            period *= 1.3  # deep breaths are slower as well as larger
        n = max(2, round(period * _GRID_HZ))
        local = np.arange(n) * (2.0 * np.pi / n)
        if k == 0:
            local = local[local >= start_phase] if start_phase < local[-1] else local[-1:]
        take = min(len(local), n_grid - i)
        phase[i : i + take] = 2.0 * np.pi * k + local[:take]
        amplitude[i : i + take] = amp
        i += take
        k += 1
        if i < n_grid and rng.random() < p.pause_prob:
            n_pause = round(rng.uniform(*p.pause_s) * _GRID_HZ)
            take = min(n_pause, n_grid - i)
            phase[i : i + take] = 2.0 * np.pi * k  # held at end-exhale
            amplitude[i : i + take] = amp
            i += take
    return _Cycles(phase=phase, amplitude=amplitude)


def _smooth(x: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Gaussian smoothing with edge padding (avoids a scipy import for one filter)."""
    if sigma_samples <= 0:
        return x
    half = int(np.ceil(3 * sigma_samples))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_samples) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(x, half, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def breathing_trace(
    duration_s: float,
    rate_hz: float,
    rng: np.random.Generator,
    params: BreathingParams | None = None,
) -> np.ndarray:
    """SI and AP displacement (mm) at each frame time ``k / rate_hz``, shape ``(T, 2)``.

    ``T = floor(duration_s * rate_hz)`` (at least 1). See the module docstring for
    the sign convention. The motion is modelled continuously and then sampled,
    so low frame rates see large, aliased inter-frame jumps, as real 1 Hz cine
    does.
    """
    if duration_s <= 0 or rate_hz <= 0:
        raise ValueError(f"duration_s and rate_hz must be positive, got {duration_s}, {rate_hz}")
    p = params or BreathingParams()
    n_frames = max(1, int(np.floor(duration_s * rate_hz + 1e-9)))
    cycles = _cycles(duration_s, rng, p)
    n_grid = len(cycles.phase)
    t_grid = np.arange(n_grid) / _GRID_HZ
    # Smooth the per-cycle amplitude so a deep breath swells in rather than jumping.
    amp = _smooth(cycles.amplitude, 0.4 * _GRID_HZ)
    two_n = 2.0 * p.shape_n
    si = amp * np.abs(np.sin(cycles.phase / 2.0)) ** two_n
    ap = p.ap_ratio * amp * np.abs(np.sin((cycles.phase + p.hysteresis_rad) / 2.0)) ** two_n
    # Baseline drift: a linear trend (sign drawn) plus a slow wander of similar size.
    sign = 1.0 if rng.random() < 0.5 else -1.0
    drift = sign * p.drift_mm_per_min * t_grid / 60.0
    wander = _smooth(rng.normal(0.0, 1.0, n_grid), 20.0 * _GRID_HZ)
    wander_scale = np.std(wander) + 1e-12
    drift = drift + 0.15 * p.drift_mm_per_min * (wander - wander[0]) / wander_scale * (duration_s / 60.0)
    si = si + drift
    ap = ap + 0.2 * drift  # the AP baseline drifts less
    if p.jitter_mm > 0:
        si = si + p.jitter_mm * _unit(_smooth(rng.normal(0.0, 1.0, n_grid), 0.3 * _GRID_HZ))
        ap = ap + 0.5 * p.jitter_mm * _unit(_smooth(rng.normal(0.0, 1.0, n_grid), 0.3 * _GRID_HZ))
    t_frames = np.arange(n_frames) / rate_hz
    out = np.stack([np.interp(t_frames, t_grid, si), np.interp(t_frames, t_grid, ap)], axis=1)
    return out.astype(np.float64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.std(x) + 1e-12)
