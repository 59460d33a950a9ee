"""Signal quality of a raw ECG strip, before its beats are classified.

A strip is judged in windows of ``window_s`` seconds on its first lead, band-passed 1-40 Hz:

- ``flat``: the 1st-99th percentile range is below ``flat_range_mv`` (a QRS alone spans more);
- ``saturated``: over ``saturated_share`` of the samples sit at the window's own extreme value
  (an amplifier or ADC at its rail);
- ``noise``: kurtosis below ``noise_kurtosis`` *and* the 5-15 Hz share of the 5-40 Hz power below
  ``noise_psqi``: the kSQI and pSQI of Li, Mark and Clifford (2008) and Zhao and Zhang (2018).
  Beats make an ECG peaked (kurtosis well above 3) with its QRS power at 5-15 Hz; Gaussian noise has
  kurtosis 3 and a flat spectrum (pSQI about 0.29).
- ``spike``: samples more than ``spike_mv`` from the band-passed baseline (electrode pops, clipping
  transients; a QRS in the 48 MIT-BIH records reaches at most 3.9 mV there) are bridged by linear
  interpolation before detection, and beats within ``spike_pad_s`` of them are not classified.

On the 48 MIT-BIH records (lead 1, every 10-s window, 8,640 windows) no window is flat, noise or
saturated, and no sample is a spike; every window of Gaussian noise alone is noise
(``reports/deployment.md``, signal quality).

Polarity: R waves of a limb lead mostly point up. The ratio of the median downward to the median upward
QRS deflection of the first lead is at most 1.32 in 47 of the 48 MIT-BIH records, and 2.18 in record
207 (bundle-branch blocks and ventricular flutter, upright); inverted, the records give 1.4 to 2.6.
No threshold separates them, so: over ``inverted_ratio`` the lead is taken as inverted and flipped
before its beats are measured; over ``suspect_ratio`` it is left as it is and the answer warns that
it may be inverted. Either way the answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

REASONS = ("flat", "saturated", "noise", "spike")


@dataclass(frozen=True)
class QualityConfig:
    window_s: float = 10.0
    flat_range_mv: float = 0.1
    saturated_share: float = 0.2
    noise_kurtosis: float = 4.5
    noise_psqi: float = 0.5
    spike_mv: float = 8.0
    spike_pad_s: float = 0.05
    inverted_ratio: float = 2.4  # flipped: above every upright MIT-BIH record (the highest, 207: 2.18)
    suspect_ratio: float = 1.6  # reported as possibly inverted, not flipped
    qrs_half_width_s: float = 0.06


@dataclass(frozen=True)
class Segment:
    start: int  # samples, inclusive
    end: int  # samples, exclusive
    reason: str


@dataclass
class StripQuality:
    """What :func:`assess` found, and the lead it repaired."""

    signal: np.ndarray  # the strip, spikes bridged (and, after :meth:`orient`, the first lead upright)
    fs: float
    windows: int
    unusable: list[Segment] = field(default_factory=list)
    spikes: int = 0
    inverted: bool = False
    suspect: bool = False  # possibly inverted: reported, not flipped
    qrs_ratio: float | None = None  # median downward / upward QRS deflection of the first lead

    def beat_reasons(self, peaks: np.ndarray) -> np.ndarray:
        """Per R peak, why its beat is not classified ("" for a scorable beat)."""
        reasons = np.full(len(peaks), "", dtype=object)
        for seg in self.unusable:
            reasons[(peaks >= seg.start) & (peaks < seg.end) & (reasons == "")] = seg.reason
        return reasons

    def orient(self, peaks: np.ndarray, config: QualityConfig) -> None:
        """Flip the first lead if its QRS complexes at ``peaks`` point down (see the module notes)."""
        first = self.signal if self.signal.ndim == 1 else self.signal[:, 0]
        usable = peaks[self.beat_reasons(peaks) == ""]
        half = max(1, round(config.qrs_half_width_s * self.fs))
        usable = usable[(usable >= half) & (usable < len(first) - half)]
        if len(usable) < 3:
            return
        filtered = _bandpass(first, self.fs, 5.0, 25.0)
        around = filtered[usable[:, None] + np.arange(-half, half + 1)[None, :]]
        up, down = np.median(around.max(axis=1)), np.median(-around.min(axis=1))
        self.qrs_ratio = float(down / up) if up > 0 else float("inf")
        self.suspect = config.suspect_ratio < self.qrs_ratio <= config.inverted_ratio
        if self.qrs_ratio > config.inverted_ratio:
            self.inverted = True
            self.signal = self.signal.copy()
            if self.signal.ndim == 1:
                self.signal = -self.signal
            else:
                self.signal[:, 0] = -self.signal[:, 0]

    def summary(self, n_beats_unscored: int) -> dict[str, object]:
        return {
            "polarity": (
                "inverted, flipped before measuring"
                if self.inverted
                else "possibly inverted, not flipped: QRS complexes mostly point down; check the lead"
                if self.suspect
                else "upright"
            ),
            "qrs_down_up_ratio": None if self.qrs_ratio is None else round(self.qrs_ratio, 3),
            "spikes_bridged": self.spikes,
            "unscored_beats": n_beats_unscored,
            "unusable": [
                {"start_s": seg.start / self.fs, "end_s": seg.end / self.fs, "reason": seg.reason}
                for seg in self.unusable
            ],
        }


class UnusableSignal(ValueError):
    """No part of the strip is an ECG that can be classified; the message says why, window by window."""

    def __init__(self, message: str, verdicts: list[str]) -> None:
        super().__init__(message)
        self.verdicts = verdicts  # the reason of every window


def _bandpass(x: np.ndarray, fs: float, low: float = 1.0, high: float = 40.0) -> np.ndarray:
    nyquist = fs / 2
    sos = sps.butter(2, [low / nyquist, min(high, 0.9 * nyquist) / nyquist], btype="band", output="sos")
    # mirror 2 s at each end: an odd extension of a noisy sample rings through a 1 Hz high-pass
    return sps.sosfiltfilt(sos, x, padtype="even", padlen=min(len(x) - 1, int(2 * fs)))


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _kurtosis(x: np.ndarray) -> np.ndarray:
    """Pearson's kurtosis of each row (3 for Gaussian noise), as ``scipy.stats.kurtosis(x, axis=-1,
    fisher=False)``; NaN for a constant row. Without scipy's per-call argument handling."""
    d = x - x.mean(axis=-1, keepdims=True)
    d2 = d * d
    m2 = d2.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m2 > 0, (d2 * d2).mean(axis=-1) / (m2 * m2), np.nan)


def _psqi(raw: np.ndarray, fs: float) -> float:
    """The 5-15 Hz share of the 5-40 Hz power of one window (Welch, 2-s segments)."""
    freqs, power = sps.welch(raw, fs=fs, nperseg=min(len(raw), int(2 * fs)))
    band = power[(freqs >= 5) & (freqs <= 40)].sum()
    return float(power[(freqs >= 5) & (freqs <= 15)].sum() / band) if band > 0 else 0.0


def window_reasons(
    raw: np.ndarray, filtered: np.ndarray, bounds: list[tuple[int, int]], fs: float, config: QualityConfig
) -> list[str]:
    """Why each window ``[start, end)`` of ``bounds`` is unusable ("" if it is usable).

    Windows of one length are judged together, as rows of one array; the spectrum (pSQI) is computed
    only for a window whose kurtosis is already low, since noise needs both.
    """
    verdicts = [""] * len(bounds)
    lengths = np.array([end - start for start, end in bounds])
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        starts = np.array([bounds[i][0] for i in rows])
        if np.array_equal(starts, starts[0] + length * np.arange(len(rows))):  # back to back: views, no copy
            span = slice(starts[0], starts[0] + length * len(rows))
            x, f = raw[span].reshape(len(rows), length), filtered[span].reshape(len(rows), length)
        else:
            index = starts[:, None] + np.arange(length)[None, :]
            x, f = raw[index], filtered[index]
        low, high = np.percentile(f, [1, 99], axis=1)
        at_rail = np.maximum(
            (x == x.max(axis=1, keepdims=True)).mean(axis=1), (x == x.min(axis=1, keepdims=True)).mean(axis=1)
        )
        peaked = ~(_kurtosis(f) < config.noise_kurtosis)
        for row, i in enumerate(rows):
            if high[row] - low[row] < config.flat_range_mv:
                verdicts[i] = "flat"
            elif at_rail[row] > config.saturated_share:
                verdicts[i] = "saturated"
            elif not peaked[row] and _psqi(x[row], fs) < config.noise_psqi:
                verdicts[i] = "noise"
    return verdicts


def assess(strip: np.ndarray, fs: float, config: QualityConfig | None = None) -> StripQuality:
    """Judge a strip ((samples,) or (samples, leads), mV) and bridge its spikes; see the module notes.

    Raises :class:`UnusableSignal` when every window is unusable.
    """
    config = config or QualityConfig()
    strip = np.array(strip, dtype=np.float64)
    first = strip if strip.ndim == 1 else strip[:, 0]
    n = len(first)
    filtered = _bandpass(first, fs)
    spike = np.abs(filtered - np.median(filtered)) > config.spike_mv
    unusable: list[Segment] = []
    spans = _spans(spike)
    if spans:
        pad = round(config.spike_pad_s * fs)
        for start, end in spans:
            unusable.append(Segment(max(0, start - pad), min(n, end + pad), "spike"))
        bridged = np.zeros(n, dtype=bool)
        for seg in unusable:
            bridged[seg.start : seg.end] = True
        keep = np.flatnonzero(~bridged)
        if len(keep) >= 2:
            columns = [first] if strip.ndim == 1 else [strip[:, j] for j in range(strip.shape[1])]
            for column in columns:  # views into strip: bridged in place
                column[bridged] = np.interp(np.flatnonzero(bridged), keep, column[keep])
        filtered = _bandpass(first, fs)
    size = max(1, round(config.window_s * fs))
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < size // 2:
        starts.pop()  # a short tail joins the window before it
    bounds = [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]
    verdicts = window_reasons(first, filtered, bounds, fs, config)
    unusable.extend(Segment(s, e, v) for (s, e), v in zip(bounds, verdicts, strict=True) if v)
    if all(verdicts):
        counts = {reason: verdicts.count(reason) for reason in dict.fromkeys(verdicts)}
        described = ", ".join(f"{count} {reason}" for reason, count in counts.items())
        raise UnusableSignal(
            f"no usable ECG in the strip: its {len(bounds)} window(s) of {config.window_s:g} s are {described} "
            f"(flat: under {config.flat_range_mv:g} mV peak to peak; noise: no peaked QRS energy at 5-15 Hz; "
            "saturated: stuck at the amplifier's rail)",
            verdicts,
        )
    unusable.sort(key=lambda seg: seg.start)
    return StripQuality(signal=strip, fs=fs, windows=len(bounds), unusable=unusable, spikes=len(spans))
