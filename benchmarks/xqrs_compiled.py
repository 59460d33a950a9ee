"""wfdb's XQRS detector, its Python loops compiled: a candidate of ``benchmarks.bench_detectors``.

XQRS as wfdb ships it spends about 95 % of its time in ``wfdb.processing.peaks.find_local_peaks``, a
Python loop that takes the maximum of a window around almost every sample (1.8 of 1.9 s on a
30-minute record), and most of the rest in two loops over candidate peaks (its learning and its
detection). Here all three are compiled or vectorised and give XQRS's beats, sample for sample
(``tests/unit/test_xqrs_compiled.py``; on the 48 MIT-BIH records at 250, 360, 500 and 1,000 Hz,
``make bench-detectors``):

- :func:`find_local_peaks`: the scan, which skips ``radius`` samples after each peak, settles a
  sample with a larger neighbour at once and reads the window of a local maximum only;
- the learning correlates a chunk of candidate peaks with the wavelet in one matrix product, and
  lets XQRS's own sum decide a candidate within 1e-9 of the threshold;
- :func:`_detection_loop` is XQRS's detection loop (threshold, noise level, search back) in numba.

What is left is mostly XQRS's filtering (scipy's ``filtfilt``): about 24 of its 29 ms on a 30-minute record.

The service detects with GQRS checked against the second lead instead
(``ecgbeats.processing.detection``): XQRS misses 577 of the 7,236 V beats of the 48
records at 360 Hz, and leaves 64 detected RR intervals of 2 s or more that hide a beat
(``reports/deployment.md``, "QRS detectors compared").
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ecgbeats.data.beats import SOURCE_FS, to_source_rate


@njit(cache=True)
def _scan(sig: np.ndarray, radius: int) -> np.ndarray:  # pragma: no cover (compiled)
    """wfdb's scan: from sample 0, a sample equal to the maximum of ``sig[i - radius : i + radius]`` is a
    peak and the scan jumps ``radius`` samples past it; any other sample moves the scan on by one. A
    sample is that maximum when nothing in its window is larger: a larger neighbour settles most
    samples at once, and only a local maximum reads its whole window."""
    n = len(sig)
    out = np.empty(n // radius + 1, dtype=np.int64)  # peaks lie at least ``radius`` apart
    k = 0
    i = 0
    while i < n:
        value = sig[i]
        lo = max(i - radius, 0)
        hi = min(i + radius, n)
        if (i + 1 < hi and sig[i + 1] > value) or (i - 1 >= lo and sig[i - 1] > value):
            i += 1
            continue
        peak = True
        for j in range(lo, hi):
            if sig[j] > value:
                peak = False
                break
        if peak:
            out[k] = i
            k += 1
            i += radius
        else:
            i += 1
    return out[:k]


def find_local_peaks(sig: np.ndarray, radius: int) -> np.ndarray:
    """``wfdb.processing.peaks.find_local_peaks(sig, radius)``, the same peaks: a sample is a peak if it
    equals the maximum of ``sig[i - radius : i + radius]`` (cut at the ends) where the scan reaches it."""
    sig = np.asarray(sig)
    radius = int(radius)
    if sig.ndim != 1 or radius < 1 or len(sig) <= radius + 1 or not np.isfinite(sig).all():
        from wfdb.processing.peaks import find_local_peaks as wfdb_find_local_peaks

        return wfdb_find_local_peaks(sig, radius)  # its own answer (or error) on what the fast path skips
    if np.min(sig) == np.max(sig):
        return np.empty(0)
    peaks = _scan(np.asarray(sig, dtype=np.float64), radius)
    return peaks if len(peaks) else np.array([])


@njit(cache=True)
def _update_qrs(  # pragma: no cover (compiled)
    i: int,
    amplitude: float,
    weight: float,
    last_qrs_ind: float,
    rr_recent: float,
    rr_max: float,
    qrs_amp: float,
    noise_amp: float,
    qrs_thr_min: float,
) -> tuple[float, float, float]:
    """``XQRS._update_qrs``: the recent RR interval, QRS amplitude (``weight`` 0.125, or 0.25 when found
    searching back) and threshold after a QRS at ``i``. ``1 - weight`` is 0.875 or 0.75 exactly, and
    Python's ``max(a, b)`` keeps ``a`` unless ``b`` is larger."""
    rr_new = i - last_qrs_ind
    if rr_new < rr_max:
        rr_recent = 0.875 * rr_recent + 0.125 * rr_new
    qrs_amp = (1.0 - weight) * qrs_amp + weight * amplitude
    qrs_thr = 0.25 * qrs_amp + 0.75 * noise_amp
    if qrs_thr_min > qrs_thr:
        qrs_thr = qrs_thr_min
    return rr_recent, qrs_amp, qrs_thr


@njit(cache=True)
def _detection_loop(  # pragma: no cover (compiled)
    peaks: np.ndarray,
    sig_i: np.ndarray,
    qrs_amp: float,
    noise_amp: float,
    qrs_thr: float,
    rr_recent: float,
    last_qrs_ind: float,
    ref_period: float,
    rr_max: float,
    qrs_thr_min: float,
) -> np.ndarray:
    """``XQRS._run_detection`` without the T-wave check (``t_inspect_period`` 0, XQRS's default): each
    MWI peak is a QRS or noise, and a long gap after the last QRS searches back at half the threshold.
    The same arithmetic in the same order, so the same beats. A peak is found at most once (the
    search back starts after the last QRS's peak), so ``n`` places hold them all."""
    n = len(peaks)
    found = np.empty(n, dtype=np.int64)
    k = 0
    last_qrs_peak_num = -1  # XQRS's None: no QRS yet
    for peak_num in range(n):
        i = peaks[peak_num]
        if i - last_qrs_ind > ref_period and sig_i[i] > qrs_thr:
            rr_recent, qrs_amp, qrs_thr = _update_qrs(
                i, sig_i[i], 0.125, last_qrs_ind, rr_recent, rr_max, qrs_amp, noise_amp, qrs_thr_min
            )
            found[k] = i
            k += 1
            last_qrs_ind = i
            last_qrs_peak_num = peak_num
        else:
            noise_amp = 0.875 * noise_amp + 0.125 * sig_i[i]
        if peak_num == n - 1 or not peaks[peak_num + 1] - last_qrs_ind > rr_recent * 1.66 or last_qrs_peak_num < 0:
            continue
        for back in range(last_qrs_peak_num + 1, peak_num + 1):  # the range is fixed before the search
            j = peaks[back]
            if j - last_qrs_ind > ref_period and sig_i[j] > qrs_thr / 2:
                rr_recent, qrs_amp, qrs_thr = _update_qrs(
                    j, sig_i[j], 0.25, last_qrs_ind, rr_recent, rr_max, qrs_amp, noise_amp, qrs_thr_min
                )
                found[k] = j
                k += 1
                last_qrs_ind = j
                last_qrs_peak_num = peak_num  # XQRS records the peak being searched from, not the one found
    return found[:k]


# XQRS's learning: a candidate is a calibration beat if its normalised segment correlates with the
# Ricker wavelet above this; the fast path recomputes XQRS's own sum for any candidate this close to it
_LEARN_XCORR = 0.6
_LEARN_CLOSE = 1e-9
_LEARN_CHUNK = 256


@cache
def _compiled_xqrs() -> type:
    """XQRS with its detection loop compiled and its learning vectorised: the same beats (the class is
    made on first use, as importing wfdb is slow and the beats path does not need it)."""
    from wfdb.processing import XQRS, qrs
    from wfdb.processing.basic import normalize

    class CompiledXQRS(XQRS):
        def _learn_init_params(self, n_calib_beats: int = 8) -> None:
            """XQRS's learning: walk the peaks of the filtered signal until ``n_calib_beats`` correlate with
            the wavelet. The correlations of a chunk of peaks come from one matrix product."""
            ricker_wavelet = qrs.ricker(self.qrs_radius * 2, 4)
            peak_inds_f = find_local_peaks(self.sig_f, self.qrs_radius)
            peak_nums_r = np.where(peak_inds_f > self.qrs_width)[0]
            peak_nums_l = np.where(peak_inds_f <= self.sig_len - self.qrs_width)[0]
            if not peak_inds_f.size or not peak_nums_r.size or not peak_nums_l.size:
                self._set_default_init_params()
                return
            last_qrs_ind = -self.rr_max
            qrs_inds: list[int] = []
            qrs_amps: list[float] = []
            noise_amps: list[float] = []
            offsets = np.arange(-self.qrs_radius, self.qrs_radius)
            candidates = peak_inds_f[peak_nums_r[0] : peak_nums_l[-1]]
            for start in range(0, len(candidates), _LEARN_CHUNK):
                chunk = candidates[start : start + _LEARN_CHUNK]
                segments = self.sig_f[chunk[:, None] + offsets[None, :]]
                with np.errstate(invalid="ignore", divide="ignore"):
                    xcorr = (segments @ ricker_wavelet) / np.linalg.norm(segments, axis=1)
                for row, i in enumerate(chunk.tolist()):
                    value = xcorr[row]
                    if abs(value - _LEARN_XCORR) <= _LEARN_CLOSE:  # XQRS's own arithmetic decides
                        segment = self.sig_f[i - self.qrs_radius : i + self.qrs_radius]
                        value = np.correlate(normalize(segment), ricker_wavelet)[0]
                    if value > _LEARN_XCORR and i - last_qrs_ind > self.rr_min:
                        last_qrs_ind = i
                        qrs_inds.append(i)
                        qrs_amps.append(self.sig_i[i])
                    else:
                        noise_amps.append(self.sig_i[i])
                    if len(qrs_inds) == n_calib_beats:
                        break
                if len(qrs_inds) == n_calib_beats:
                    break
            if len(qrs_inds) != n_calib_beats:
                self._set_default_init_params()
                return
            qrs_amp = np.mean(qrs_amps)
            noise_amp = np.mean(noise_amps) if noise_amps else qrs_amp / 10
            rr_intervals = np.diff(qrs_inds)
            rr_intervals = rr_intervals[rr_intervals < self.rr_max]
            rr_recent = np.mean(rr_intervals) if rr_intervals.any() else self.rr_init
            self._set_init_params(
                qrs_amp_recent=qrs_amp,
                noise_amp_recent=noise_amp,
                rr_recent=rr_recent,
                last_qrs_ind=min(0, qrs_inds[0] - self.rr_min - 1),
            )
            self.learned_init_params = True

        def _run_detection(self) -> None:
            if self.t_inspect_period:  # the T-wave check is not compiled: XQRS's own loop
                super()._run_detection()
                return
            self.qrs_inds = self.sampfrom + _detection_loop(
                np.asarray(self.peak_inds_i, dtype=np.int64),
                np.asarray(self.sig_i, dtype=np.float64),
                float(self.qrs_amp_recent),
                float(self.noise_amp_recent),
                float(self.qrs_thr),
                float(self.rr_recent),
                float(self.last_qrs_ind),
                float(self.ref_period),
                float(self.rr_max),
                float(self.qrs_thr_min),
            )

    return CompiledXQRS


def _use_compiled_local_peaks() -> None:
    """XQRS looks ``find_local_peaks`` up in its module at every call: point it at the compiled one."""
    from wfdb.processing import qrs

    if qrs.find_local_peaks is not find_local_peaks:
        qrs.find_local_peaks = find_local_peaks


def _xqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    _use_compiled_local_peaks()
    detector = _compiled_xqrs()(sig=np.asarray(signal, dtype=np.float64), fs=fs)
    detector.detect(verbose=False)
    return np.asarray(detector.qrs_inds, dtype=np.int64)


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R peaks of a single-lead strip (in millivolts) by wfdb's XQRS, sorted, unique and inside the strip.

    Above 360 Hz (``SOURCE_FS``, the MIT-BIH rate) the strip is resampled to 360 Hz for the detection
    and the peaks are moved back: on the DS1 records resampled to 1,000 Hz, XQRS at the strip's rate
    missed 13.5 % of the beats (Se 0.8646, 7,029 errors) against 1.35 % at 360 Hz (1,380 errors), and at
    500 Hz it made 1,495 errors. At 360 Hz and below it runs on the strip as it is (at 250 Hz: 970
    errors, against 1,382 when resampled to 360 Hz).

    On the fixture excerpts XQRS's indices sit on the annotated R peaks (median offset 0 samples in 4
    of 6 records); ``wfdb.processing.correct_peaks`` moved them further away, so it is not used. XQRS's
    own errors (it fails in its own ways on degenerate strips) propagate.
    """
    if fs > SOURCE_FS:
        at_source, _ = to_source_rate(signal, fs, np.zeros(0, dtype=np.int64))
        peaks = np.round(_xqrs(at_source, SOURCE_FS) * (fs / SOURCE_FS)).astype(np.int64)
    else:
        peaks = _xqrs(signal, fs)
    peaks = np.unique(peaks)
    return peaks[(peaks >= 0) & (peaks < len(signal))]
