"""Each recording's own reference beat and rhythm, found without labels, and every beat against it.

A patient's dominant beat is not always the normal one. In a bundle branch block the normal beat is
wide; where ectopic beats are the majority (MIT-BIH 232: atrial beats at 0.73 s, sinus beats after
pauses of about 1.9 s) every median RR and median template of the recording is an ectopic beat. A
Holter reader, and Teijeiro et al. (2018), take as the reference the beats that are *sinus*: a P wave
before the QRS, on time rather than premature. This module does the same, causally:

1. **Shape clusters, online.** Each beat's QRS (lead a, ``QRS_S`` either side of R, zero mean and unit
   norm) joins the cluster whose template it correlates with best if that correlation is at least
   ``cluster_corr``, else starts a new one (at most ``max_clusters``; the one unseen longest is
   recycled). A template is the running mean of its members (the newest ``TEMPLATE_MEMORY`` weigh most),
   so it follows slow changes of lead position.
2. **The reference cluster**, chosen every ``update_beats`` beats from the beats of the preceding
   ``window_s`` seconds: its *sinus members* are those with a P wave (:func:`p_wave_prominence` at
   least ``p_wave_ratio``) that are not premature (RR before over RR after at least ``on_time_ratio``).
   Among the clusters with at least ``min_beats`` sinus members, the one whose sinus members' median
   RR is the longest wins: ectopic beats come early, so the slowest rhythm with P waves is the sinus
   one (in 232 the sinus beats after the pauses, in 214 the wide bundle-branch beat, in a bigeminy the
   beat after the compensatory pause). No such cluster (atrial fibrillation has no P waves; a strip
   shorter than ``min_beats`` beats): the cluster with the most beats, marked ``ref_sinus = 0``.
3. **Every beat against the reference**: its RR before and after over the reference RR (the median
   RR of the reference's sinus members), its QRS correlation with the reference template, QRS
   peak-to-peak and width over the reference's, its P region's correlation with the reference's mean
   P wave, and its own P-wave prominence. All are ratios or correlations: a recording scaled by any gain
   gives the same values.
4. **Rhythm context**: over the last ``context_beats`` beats, the RR irregularity (the median absolute
   successive difference over the median RR) and the share of beats without a P wave. Atrial
   fibrillation is both irregular and without P waves; a run of atrial ectopic beats is regular, and
   a sinus arrhythmia keeps its P waves. :func:`rhythm_context` names the stretches.

Only past beats, plus the beat's own next RR, enter a beat's values (the same look-ahead as the rest of
the record measurement). The statistics look back ``window_s``; the shape clusters are learned from the
start of the signal measured, and forget a beat after about ``TEMPLATE_MEMORY`` newer members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

QRS_S = 0.1  # the QRS part of a window, either side of R
P_REGION_S = (-0.25, -0.09)  # where a P wave is looked for, from R
PR_SEGMENT_S = (-0.083, -0.05)  # the isoelectric PR segment the P wave stands above
P_JUDGED_RR_S = 0.65  # a shorter RR puts the previous T wave in the P region: its P wave is not judged
TEMPLATE_MEMORY = 64  # a template is a running mean whose newest members weigh 1 / 64 at least
AF_LABEL = "irregular_no_p"  # rhythm context: irregular RR without P waves (atrial fibrillation or flutter)

REFERENCE_COLUMNS = (
    "ref_rr",
    "rr_prev_ref",
    "rr_next_ref",
    "ref_sinus",
    "ref_qrs_corr",
    "ref_p_corr",
    "ref_ptp_ratio",
    "ref_width_ratio",
    "p_wave",
    "own_cluster_share",
    "ctx_irregularity",
    "ctx_no_p_share",
)


@dataclass(frozen=True)
class ReferenceConfig:
    """How the reference is found; part of the record measurement a bundle carries."""

    cluster_corr: float = 0.9  # a beat joins a shape cluster at this QRS correlation or above
    max_clusters: int = 12
    min_beats: int = 30  # sinus members a cluster needs in the window to be the reference
    window_s: float = 300.0  # the reference's statistics look back this far
    update_beats: int = 8  # the reference is chosen again every this many beats
    p_wave_ratio: float = 0.05  # P-wave prominence over the QRS peak-to-peak: a P wave
    on_time_ratio: float = 0.85  # RR before over RR after at least this: not premature
    context_beats: int = 16  # the rhythm context: this many preceding intervals
    af_irregularity: float = 0.1  # rhythm context: irregular at this mean successive difference or above
    af_no_p_share: float = 0.8  # ... and at least this share of beats without a P wave


def p_wave_prominence(full: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
    """Per window (n, offsets) of lead a: the highest point of the P region above the PR segment, over
    the QRS peak-to-peak (an upright sinus P wave in a limb lead gives about 0.08 to 0.12; an atrial
    ectopic beat's flat or inverted P, or fibrillation, less than 0.05)."""
    p = (offsets_s >= P_REGION_S[0]) & (offsets_s < P_REGION_S[1])
    pr = (offsets_s >= PR_SEGMENT_S[0]) & (offsets_s <= PR_SEGMENT_S[1])
    qrs = np.abs(offsets_s) <= QRS_S
    if len(full) == 0:
        return np.zeros(0)
    height = np.nan_to_num(full[:, p]).max(axis=1) - np.nan_to_num(full[:, pr]).mean(axis=1)
    ptp = np.ptp(np.nan_to_num(full[:, qrs]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ptp > 0, height / ptp, np.nan)


def _unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows with zero mean and unit norm (a flat row stays zero): their dot product is the correlation."""
    centred = values - values.mean(axis=1, keepdims=True)
    norm = np.sqrt((centred**2).sum(axis=1, keepdims=True))
    return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)


@njit(cache=True)
def _median(values: np.ndarray, count: int) -> float:  # pragma: no cover (compiled)
    if count == 0:
        return np.nan
    return float(np.median(values[:count]))


@njit(cache=True)
def _small_median(values: np.ndarray, count: int) -> float:  # pragma: no cover (compiled)
    """``np.median(values[:count])`` of a few NaN-free values, sorted in place by insertion."""
    for a in range(1, count):
        v = values[a]
        b = a - 1
        while b >= 0 and values[b] > v:
            values[b + 1] = values[b]
            b -= 1
        values[b + 1] = v
    half = count // 2
    return float(values[half]) if count % 2 else float((values[half - 1] + values[half]) / 2)


@njit(cache=True)
def _rolling_context(  # pragma: no cover (compiled)
    rr_prev: np.ndarray, no_p: np.ndarray, beats: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per beat, over rows [i - beats + 1, i]: the median absolute successive RR difference over the median
    RR (each median of the window's finite values, NaN under two), and the mean of ``no_p``'s finite values
    (NaN if none): pandas' rolling median and mean, in one pass."""
    n = len(rr_prev)
    irregularity = np.full(n, np.nan)
    share = np.full(n, np.nan)
    rr = np.empty(beats)
    diffs = np.empty(beats)
    for i in range(n):
        k_rr = 0
        k_diff = 0
        k_p = 0
        total = 0.0
        for j in range(max(0, i - beats + 1), i + 1):
            if not np.isnan(rr_prev[j]):
                rr[k_rr] = rr_prev[j]
                k_rr += 1
            if j > 0:
                step = abs(rr_prev[j] - rr_prev[j - 1])
                if not np.isnan(step):
                    diffs[k_diff] = step
                    k_diff += 1
            if not np.isnan(no_p[j]):
                total += no_p[j]
                k_p += 1
        if k_rr >= 2 and k_diff >= 2:
            irregularity[i] = _small_median(diffs, k_diff) / _small_median(rr, k_rr)
        if k_p:
            share[i] = total / k_p
    return irregularity, share


@njit(cache=True)
def _reference_kernel(  # noqa: PLR0913, PLR0912, PLR0915  # pragma: no cover (compiled)
    qrs: np.ndarray,  # (n, k) unit rows
    p_part: np.ndarray,  # (n, kp) unit rows of the P region
    p_wave: np.ndarray,  # (n,) prominence
    times: np.ndarray,
    rr_prev: np.ndarray,
    rr_next: np.ndarray,
    ptp: np.ndarray,
    width: np.ndarray,
    cluster_corr: float,
    max_clusters: int,
    min_beats: int,
    window_s: float,
    update_beats: int,
    p_wave_ratio: float,
    on_time_ratio: float,
    memory: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per beat the reference's measures (see :func:`reference_features`), and each beat's cluster id."""
    n, k = qrs.shape
    kp = p_part.shape[1]
    templates = np.zeros((max_clusters, k))
    p_templates = np.zeros((max_clusters, kp))
    members = np.zeros(max_clusters, dtype=np.int64)
    p_members = np.zeros(max_clusters, dtype=np.int64)
    last_seen = np.full(max_clusters, -1, dtype=np.int64)
    slot_id = np.full(max_clusters, -1, dtype=np.int64)
    beat_id = np.full(n, -1, dtype=np.int64)
    next_id = 0
    # the reference: its slot, RR, QRS peak-to-peak and width, whether it is sinus
    ref_slot = -1
    ref_rr = np.nan
    ref_ptp = np.nan
    ref_width = np.nan
    ref_sinus = 0.0
    share = np.zeros(max_clusters)
    norms = np.zeros(max_clusters)  # each template's norm, kept with it
    corr = np.zeros(max_clusters)
    out = np.full((n, 7), np.nan)  # ref_rr, ref_sinus, qrs corr, p corr, ptp ratio, width ratio, own share
    buf_rr = np.empty(n)
    counts = np.zeros(max_clusters, dtype=np.int64)
    sinus_counts = np.zeros(max_clusters, dtype=np.int64)
    sinus_rr = np.empty((max_clusters, n))  # per cluster, its sinus members' RR in the window
    slot_of_id = np.full(n, -1, dtype=np.int64)  # cluster id -> its slot, -1 once recycled
    buf_ptp = np.empty(n)
    buf_width = np.empty(n)
    lo = 0
    for i in range(n):
        while lo < i and times[lo] < times[i] - window_s:
            lo += 1
        if i > 0 and (ref_slot < 0 or i % update_beats == 0 or slot_id[ref_slot] < 0):
            # one pass over the window: each beat's cluster (if it still exists) counts, and its RR is kept
            # when it is a sinus member (a P wave, not premature)
            counts[:] = 0
            sinus_counts[:] = 0
            for j in range(lo, i):
                s = slot_of_id[beat_id[j]]
                if s < 0:
                    continue
                counts[s] += 1
                on_time = rr_prev[j] >= on_time_ratio * rr_next[j]  # False where either is NaN
                if p_wave[j] >= p_wave_ratio and on_time:
                    sinus_rr[s, sinus_counts[s]] = rr_prev[j]
                    sinus_counts[s] += 1
            best = -1
            best_rr = -1.0
            largest = -1
            largest_count = 0
            total = i - lo
            for s in range(max_clusters):
                share[s] = 0.0
                if slot_id[s] < 0:
                    continue
                if total > 0:
                    share[s] = counts[s] / total
                if counts[s] > largest_count:
                    largest_count = counts[s]
                    largest = s
                if sinus_counts[s] >= min_beats:
                    rr = _median(sinus_rr[s], sinus_counts[s])
                    if rr > best_rr:
                        best_rr = rr
                        best = s
            chosen = best if best >= 0 else largest
            if chosen >= 0:
                ref_slot = chosen
                ref_sinus = 1.0 if best >= 0 else 0.0
                m = 0
                sinus = 0
                for j in range(lo, i):
                    if beat_id[j] != slot_id[chosen]:
                        continue
                    buf_ptp[m] = ptp[j]
                    buf_width[m] = width[j]
                    m += 1
                    if best < 0 and rr_prev[j] >= on_time_ratio * rr_next[j]:
                        buf_rr[sinus] = rr_prev[j]
                        sinus += 1
                ref_rr = best_rr if best >= 0 else _median(buf_rr, sinus)
                ref_ptp = _median(buf_ptp, m)
                ref_width = _median(buf_width, m)
        # the beat's correlation with every cluster's template as it stands (its own shape not in any yet)
        best = -1
        best_corr = -2.0
        for s in range(max_clusters):
            if slot_id[s] < 0:
                continue
            corr[s] = np.dot(qrs[i], templates[s]) / max(norms[s], 1e-12)
            if corr[s] > best_corr:
                best_corr = corr[s]
                best = s
        # the beat against the reference
        if ref_slot >= 0 and slot_id[ref_slot] >= 0:
            out[i, 0] = ref_rr
            out[i, 1] = ref_sinus
            out[i, 2] = corr[ref_slot]
            if p_members[ref_slot] > 0:
                norm = np.sqrt(np.dot(p_templates[ref_slot], p_templates[ref_slot]))
                if norm > 0:
                    out[i, 3] = np.dot(p_part[i], p_templates[ref_slot]) / norm
            if ref_ptp > 0:
                out[i, 4] = ptp[i] / ref_ptp
            if ref_width > 0:
                out[i, 5] = width[i] / ref_width
        # the beat joins the cluster it correlates with best, or starts one
        if best < 0 or best_corr < cluster_corr:
            best = -1
            for s in range(max_clusters):
                if slot_id[s] < 0:
                    best = s
                    break
            if best < 0:  # recycle the cluster unseen longest
                best = 0
                for s in range(1, max_clusters):
                    if last_seen[s] < last_seen[best]:
                        best = s
            if slot_id[best] >= 0:
                slot_of_id[slot_id[best]] = -1
            slot_id[best] = next_id
            slot_of_id[next_id] = best
            next_id += 1
            members[best] = 0
            p_members[best] = 0
            templates[best, :] = 0.0
            p_templates[best, :] = 0.0
            norms[best] = 0.0
        weight = 1.0 / min(members[best] + 1, memory)
        for c in range(k):
            templates[best, c] += weight * (qrs[i, c] - templates[best, c])
        norms[best] = np.sqrt(np.dot(templates[best], templates[best]))
        members[best] += 1
        if p_wave[i] >= p_wave_ratio:
            p_weight = 1.0 / min(p_members[best] + 1, memory)
            for c in range(kp):
                p_templates[best, c] += p_weight * (p_part[i, c] - p_templates[best, c])
            p_members[best] += 1
        last_seen[best] = i
        beat_id[i] = slot_id[best]
        out[i, 6] = share[best] if i > 0 else np.nan
    return out, beat_id


def reference_features(
    full: np.ndarray,
    offsets_s: np.ndarray,
    times: np.ndarray,
    rr_prev: np.ndarray,
    rr_next: np.ndarray,
    config: ReferenceConfig,
) -> dict[str, np.ndarray]:
    """The columns of :data:`REFERENCE_COLUMNS` for the beats whose lead-a windows are ``full``
    (n, offsets), at R-peak ``times`` (s), with their RR intervals before and after (s, NaN at the ends).

    ``offsets_s`` are the window's sample offsets from R in seconds.
    """
    n = len(full)
    if n == 0:
        return {name: np.zeros(0) for name in REFERENCE_COLUMNS}
    full = np.asarray(full, dtype=np.float64)
    qrs_mask = np.abs(offsets_s) <= QRS_S
    p_mask = (offsets_s >= P_REGION_S[0]) & (offsets_s < P_REGION_S[1])
    qrs_part = np.nan_to_num(full[:, qrs_mask])  # the parts only: copying the whole window costs more
    ptp = np.ptp(qrs_part, axis=1)
    above = np.abs(qrs_part) > 0.25 * np.abs(qrs_part).max(axis=1, keepdims=True)
    width = (qrs_part.shape[1] - above[:, ::-1].argmax(axis=1) - above.argmax(axis=1)).astype(np.float64)
    p_wave = p_wave_prominence(full, offsets_s)
    values, _ = _reference_kernel(
        np.ascontiguousarray(_unit_rows(qrs_part[:, ::2])),
        np.ascontiguousarray(_unit_rows(np.nan_to_num(full[:, p_mask][:, ::2]))),
        np.nan_to_num(p_wave, nan=0.0),
        np.asarray(times, dtype=np.float64),
        np.asarray(rr_prev, dtype=np.float64),
        np.asarray(rr_next, dtype=np.float64),
        ptp,
        width,
        float(config.cluster_corr),
        int(config.max_clusters),
        int(config.min_beats),
        float(config.window_s),
        int(config.update_beats),
        float(config.p_wave_ratio),
        float(config.on_time_ratio),
        TEMPLATE_MEMORY,
    )
    irregularity, no_p = _context(rr_prev, p_wave, config)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "ref_rr": values[:, 0],
            "rr_prev_ref": rr_prev / values[:, 0],
            "rr_next_ref": rr_next / values[:, 0],
            "ref_sinus": values[:, 1],
            "ref_qrs_corr": values[:, 2],
            "ref_p_corr": values[:, 3],
            "ref_ptp_ratio": values[:, 4],
            "ref_width_ratio": values[:, 5],
            "p_wave": p_wave,
            "own_cluster_share": values[:, 6],
            "ctx_irregularity": irregularity,
            "ctx_no_p_share": no_p,
        }


def _context(rr_prev: np.ndarray, p_wave: np.ndarray, config: ReferenceConfig) -> tuple[np.ndarray, np.ndarray]:
    """Over the ``context_beats`` intervals up to each beat: the median absolute successive RR difference
    over the median RR (medians: a few ectopic beats do not make a rhythm irregular), and the share of
    those beats without a P wave, among the beats whose RR leaves the P region clear of the previous T
    wave (NaN where none does)."""
    rr_prev = np.asarray(rr_prev, dtype=np.float64)
    judged = np.nan_to_num(rr_prev) >= P_JUDGED_RR_S
    no_p = np.where(judged, ~(np.nan_to_num(p_wave, nan=0.0) >= config.p_wave_ratio), np.nan)
    return _rolling_context(rr_prev, no_p.astype(np.float64), int(config.context_beats))


def rhythm_context(irregularity: np.ndarray, no_p_share: np.ndarray, config: ReferenceConfig) -> np.ndarray:
    """Per beat, :data:`AF_LABEL` where the preceding beats are irregular and mostly without P waves,
    else "" (a sinus rhythm, or too few beats to tell)."""
    af = (np.nan_to_num(irregularity) >= config.af_irregularity) & (np.nan_to_num(no_p_share) >= config.af_no_p_share)
    return np.where(af, AF_LABEL, "")
