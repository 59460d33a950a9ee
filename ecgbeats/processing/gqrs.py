"""wfdb's GQRS detector, compiled by numba: the candidate beats of the service's detector.

wfdb ships GQRS as pure Python, a sample at a time (about 0.35 million samples/s). :func:`gqrs` is the
same algorithm, statement for statement, compiled: it gives wfdb's ``gqrs_detect`` output sample for
sample (``tests/unit/test_gqrs.py``, and ``make bench-detectors`` on every record and rate) at about
100 million samples/s. :func:`gqrs_peaks` places each beat at the peak of GQRS's QRS matched filter
(within a sample or two of the annotated R peak) rather than at wfdb's annotation time, 2 * dt earlier.
``ecgbeats.processing.detection`` checks these candidates against both leads.

What wfdb's port does, and this one therefore does too: its learning pass stops at once (the first
sample is flagged invalid), so detection starts from the configured thresholds; the ring buffers of
the smoothed and filtered signals wrap at 32,768 samples; once the filter reads past the signal's
end, no more beats are put; the last beats are marked at their peak, the others ``2 * dt`` before it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NPEAKS = 64  # peaks buffered (the ring of candidate peaks)
BUFLN = 32768  # ring buffer length of the smoothed and filtered signals (a power of 2)
_MASK = BUFLN - 1


@njit(cache=True)
def _at(x: np.ndarray, t: int) -> int:
    if t < 0:
        return x[0]
    if t > len(x) - 1:
        return x[len(x) - 1]
    return x[t]


@njit(cache=True)
def _peaktype(i: int, ptime: np.ndarray, pamp: np.ndarray, ptype: np.ndarray, rrmin: int) -> int:
    """1 if peak ``i`` is the most prominent in its neighbourhood (``rrmin`` either way), else 2."""
    if ptype[i]:
        return ptype[i]
    a = pamp[i]
    t0 = ptime[i] - rrmin
    t1 = ptime[i] + rrmin
    if t0 < 0:
        t0 = 0
    pp = (i - 1) & (NPEAKS - 1)
    while t0 < ptime[pp] and ptime[pp] < ptime[(pp + 1) & (NPEAKS - 1)]:
        if pamp[pp] == 0:
            break
        if a < pamp[pp] and _peaktype(pp, ptime, pamp, ptype, rrmin) == 1:
            ptype[i] = 2
            return 2
        pp = (pp - 1) & (NPEAKS - 1)
    pp = (i + 1) & (NPEAKS - 1)
    while ptime[pp] < t1 and ptime[pp] > ptime[(pp - 1) & (NPEAKS - 1)]:
        if pamp[pp] == 0:
            break
        if a < pamp[pp] and _peaktype(pp, ptime, pamp, ptype, rrmin) == 1:
            ptype[i] = 2
            return 2
        pp = (pp + 1) & (NPEAKS - 1)
    ptype[i] = 1
    return 1


@njit(cache=True)
def _run(x: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: C901 (one state machine, kept as wfdb has it)
    """wfdb's ``GQRS.gqrs`` in its RUNNING state over the digital signal ``x``: each beat's annotation time
    (wfdb's output) and the peak of its matched-filter output (where the QRS is)."""
    sps, rrmean, rrdev, rrmin, rrmax, rrinc = conf[0], conf[1], conf[2], conf[3], conf[4], conf[5]
    dt, rtmin, rtmean, rtmax, pthr, qthr = conf[6], conf[7], conf[8], conf[9], conf[10], conf[11]
    pthmin, qthmin, adc_zero = conf[12], conf[13], conf[14]
    dt2, dt3, dt4 = 2 * dt, 3 * dt, 4 * dt
    smdt = dt
    v1norm = smdt * dt * 64
    smt = 0
    smt0 = smdt
    tf = len(x) - 1

    smv = np.zeros(BUFLN, dtype=np.int64)
    qfv = np.zeros(BUFLN, dtype=np.int64)
    ptime = np.zeros(NPEAKS, dtype=np.int64)
    pamp = np.zeros(NPEAKS, dtype=np.int64)
    ptype = np.zeros(NPEAKS, dtype=np.int64)
    current = 0
    # every beat is a distinct peak of the filter output, and peaks are at least 2 samples apart; a fixed
    # capacity (never grown) keeps numba's loop free of array reallocation, which made it 8 times slower
    beats = np.empty((len(x) + sps + dt4) // 2 + 64, dtype=np.int64)  # wfdb's annotation times
    peaks = np.empty_like(beats)  # the filtered signal's peak of each beat
    n_beats = 0

    v1 = 0
    annot_time = 0
    last_peak = 0
    last_qrs = 0
    r = -1  # the last QRS's peak (none yet)
    # the learning pass ends at t = sps + 1 - dt4 and leaves the sample there flagged valid or not
    valid = sps + 1 - dt4 <= tf
    running = True  # False once past the signal's end (wfdb's CLEANUP state: no more beats are put)
    countdown = -1
    t = -dt4
    while t <= tf + sps:
        if countdown < 0:
            if valid:
                # qf(): the QRS matched filter at t, after smoothing up to t + dt4 (sm())
                at_t = t + dt4
                while at_t > smt:
                    smt += 1
                    if smt > smt0:
                        smv[smt & _MASK] = (
                            smv[(smt - 1) & _MASK]
                            + _at(x, smt + smdt)
                            + _at(x, smt + smdt - 1)
                            - _at(x, smt - smdt)
                            - _at(x, smt - smdt - 1)
                        )
                        valid = smt - smdt - 1 <= tf  # the last sample read decides, as wfdb's at() does
                    else:
                        v = _at(x, smt)
                        valid = smt <= tf
                        for j in range(1, smdt):
                            v += _at(x, smt + j) + _at(x, smt - j)
                            smv[smt & _MASK] = (
                                (v << 1) + _at(x, smt + j + 1) + _at(x, smt - j - 1) - adc_zero * (smdt << 2)
                            )
                            valid = smt - j - 1 <= tf
                dv2 = smv[at_t & _MASK] - smv[(t - dt4) & _MASK]
                dv1 = smv[(t + dt) & _MASK] - smv[(t - dt) & _MASK]
                dv = dv1 << 1
                dv -= smv[(t + dt2) & _MASK] - smv[(t - dt2) & _MASK]
                dv = dv << 1
                dv += dv1
                dv -= smv[(t + dt3) & _MASK] - smv[(t - dt3) & _MASK]
                dv = dv << 1
                dv += dv2
                v1 += dv
                v0 = int(v1 / v1norm)
                qfv[t & _MASK] = v0 * v0
            else:
                countdown = sps
                running = False
        else:
            countdown -= 1
            if countdown < 0:
                break

        q0 = qfv[t & _MASK]
        q1 = qfv[(t - 1) & _MASK]
        q2 = qfv[(t - 2) & _MASK]
        if q1 > pthr and q2 < q1 and q1 >= q0 and t > dt4:
            # add_peak(t - 1, q1, 0)
            current = (current + 1) & (NPEAKS - 1)
            ptime[current] = t - 1
            pamp[current] = q1
            ptype[current] = 0
            pamp[(current + 1) & (NPEAKS - 1)] = 0
            last_peak = t - 1
            p = (current + 1) & (NPEAKS - 1)
            while ptime[p] < t - rtmax:
                if ptime[p] >= annot_time + rrmin and _peaktype(p, ptime, pamp, ptype, rrmin) == 1:
                    if pamp[p] > qthr:
                        rr = ptime[p] - annot_time
                        # find_missing(r, p): the primary peak between them closest to the mean RR
                        q = -1
                        if r >= 0:
                            minrrerr = ptime[p] - ptime[r]
                            s = (r + 1) & (NPEAKS - 1)
                            while ptime[s] < ptime[p]:
                                if _peaktype(s, ptime, pamp, ptype, rrmin) == 1:
                                    rrerr = abs(ptime[s] - ptime[r] - rrmean)
                                    if rrerr < minrrerr:
                                        minrrerr = rrerr
                                        q = s
                                s = (s + 1) & (NPEAKS - 1)
                        if rr > rrmean + 2 * rrdev and rr > 2 * (rrmean - rrdev) and q >= 0:
                            p = q
                            rr = ptime[p] - annot_time
                        rrd = abs(rr - rrmean)
                        rrdev += (rrd - rrdev) >> 3
                        if rrd > rrinc:
                            rrd = rrinc
                        if rr > rrmean:
                            rrmean += rrd
                        else:
                            rrmean -= rrd
                        if pamp[p] > qthr * 4:
                            qthr += 1
                        elif pamp[p] < qthr:
                            qthr -= 1
                        if qthr > pthr * 20:
                            qthr = pthr * 20
                        last_qrs = ptime[p]
                        if running:
                            if n_beats == len(beats):
                                raise RuntimeError("GQRS: more beats than peaks")
                            beats[n_beats] = ptime[p] - dt2
                            peaks[n_beats] = ptime[p]
                            n_beats += 1
                            annot_time = ptime[p]
                        # this beat's T wave: the later peak whose RT interval is closest to the mean
                        tw = -1
                        rtdmin = rtmean
                        q = (p + 1) & (NPEAKS - 1)
                        while ptime[q] > annot_time:
                            rt = ptime[q] - annot_time - dt2
                            if rt < rtmin:
                                q = (q + 1) & (NPEAKS - 1)
                                continue
                            if rt > rtmax:
                                break
                            rtd = abs(rt - rtmean)
                            if rtd < rtdmin:
                                rtdmin = rtd
                                tw = q
                            q = (q + 1) & (NPEAKS - 1)
                        if tw >= 0:
                            rt = ptime[tw] - dt2 - annot_time
                            rtmean += (rt - rtmean) >> 4
                            if rtmean > rtmax:
                                rtmean = rtmax
                            elif rtmean < rtmin:
                                rtmean = rrmin  # sic: wfdb's (and the C original's) reset
                            ptype[tw] = 2  # a T wave is a secondary peak
                        r = p
                    elif t - last_qrs > rrmax and qthr > qthmin:
                        qthr -= qthr >> 4
                p = (p + 1) & (NPEAKS - 1)
        elif t - last_peak > rrmax and pthr > pthmin:
            pthr -= pthr >> 4
        t += 1

    # the last beat or two, marked at their peak
    p = (current + 1) & (NPEAKS - 1)
    while ptime[p] < ptime[(p + 1) & (NPEAKS - 1)]:
        if ptime[p] >= annot_time + rrmin and ptime[p] < tf and _peaktype(p, ptime, pamp, ptype, rrmin) == 1:
            annot_time = ptime[p]
            if n_beats == len(beats):
                raise RuntimeError("GQRS: more beats than peaks")
            beats[n_beats] = annot_time
            peaks[n_beats] = annot_time
            n_beats += 1
        p = (p + 1) & (NPEAKS - 1)
    return beats[:n_beats].copy(), peaks[:n_beats].copy()


class DetectionError(ValueError):
    """The detector cannot run on this signal (too short, or not finite)."""


def _detect(signal: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    from wfdb.io.record import Record  # imported here: wfdb pulls in a lot, the beats path does not need it
    from wfdb.processing.qrs import GQRS

    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1:
        raise DetectionError(f"one lead is detected at a time, got an array of shape {signal.shape}")
    if len(signal) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if not np.isfinite(signal).all():
        raise DetectionError(f"the signal has {int((~np.isfinite(signal)).sum())} non-finite samples")
    # wfdb's digitisation of a physical signal (24-bit, its gain from the signal's range): its own gain
    # and baseline, and its arithmetic (times the gain, plus the baseline, rounded) without its checks
    adc_gain, baseline = Record(fmt=["24"]).calc_adc_gain_baseline(0, [signal.min()], [signal.max()])
    digital = np.round(signal * adc_gain + baseline).astype(np.int64)
    try:
        conf = GQRS.Conf(fs=fs, adc_gain=adc_gain)
    except Exception as err:  # wfdb refuses rates too low for its filters
        raise DetectionError(f"GQRS cannot run at {fs:g} Hz: {err}") from err
    values = np.array(
        [conf.sps, conf.rrmean, conf.rrdev, conf.rrmin, conf.rrmax, conf.rrinc, conf.dt, conf.rtmin, conf.rtmean,
         conf.rtmax, conf.pthr, conf.qthr, conf.pthmin, conf.qthmin, 0],
        dtype=np.int64,
    )  # fmt: skip
    return _run(digital, values)


def gqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    """wfdb's ``gqrs_detect(sig=signal, fs=fs)``, compiled: the same digitisation, parameters and output
    (each beat's annotation time, ``2 * dt`` before its peak except the last one or two)."""
    return _detect(signal, fs)[0]


def gqrs_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R peaks by GQRS: each beat at its matched filter's peak, sorted, unique and inside the signal."""
    peaks = np.unique(_detect(signal, fs)[1])
    return peaks[(peaks >= 0) & (peaks < len(signal))]
