"""R peaks of a single-lead ECG: wfdb's XQRS detector, with its local-peak search compiled, at 360 Hz
or below.

XQRS spends about 95 % of its time in ``wfdb.processing.peaks.find_local_peaks``, a Python loop that
takes the maximum of a window around almost every sample (1.8 of 1.9 s on a 30-minute record). Its
QRS logic runs once per candidate peak and is cheap. :func:`find_local_peaks` gives the same peaks
(``tests/unit/test_detection.py``): the scan, which skips ``radius`` samples after each peak, is
compiled and keeps its window's maximum in a monotonic queue (one pass, not a window per sample).
:func:`detect_r_peaks` runs XQRS with it: the R peaks are XQRS's, sample for sample, some 30 times
sooner (``make bench-strip``).

Why XQRS and not a faster detector: ``make bench-detectors`` compares XQRS, GQRS (also compiled, in
``benchmarks/gqrs_compiled.py``), NeuroKit2 and sleepecg (``reports/deployment.md``, "QRS detectors
compared"). GQRS finds more beats, but through the service's strip path on the DS2 records its QRS +P
fell below the 0.997 floor of ``gate.yaml``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecgbeats.data.beats import SOURCE_FS, to_source_rate


@njit(cache=True)
def _scan(sig: np.ndarray, radius: int) -> np.ndarray:  # pragma: no cover (compiled)
    """wfdb's scan: from sample 0, a sample equal to the maximum of ``sig[i - radius : i + radius]`` is a
    peak and the scan jumps ``radius`` samples past it; any other sample moves the scan on by one. The
    window maximum comes from a monotonic queue of candidate indices, as both window ends only advance."""
    n = len(sig)
    out = np.empty(n // radius + 1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)  # indices of decreasing values: the front is the window's maximum
    head = 0
    tail = 0
    pushed = 0
    k = 0
    i = 0
    while i < n:
        hi = min(i + radius, n)
        while pushed < hi:
            while tail > head and sig[queue[tail - 1]] <= sig[pushed]:
                tail -= 1
            queue[tail] = pushed
            tail += 1
            pushed += 1
        while queue[head] < i - radius:
            head += 1
        if sig[i] == sig[queue[head]]:
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


def _use_compiled_local_peaks() -> None:
    """XQRS looks ``find_local_peaks`` up in its module at every call: point it at the compiled one."""
    from wfdb.processing import qrs

    if qrs.find_local_peaks is not find_local_peaks:
        qrs.find_local_peaks = find_local_peaks


def _xqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    from wfdb.processing import XQRS  # imported here: wfdb pulls in a lot, the beats path does not need it

    _use_compiled_local_peaks()
    detector = XQRS(sig=np.asarray(signal, dtype=np.float64), fs=fs)
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
