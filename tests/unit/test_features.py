"""Feature groups: existing groups unchanged, new domain groups shaped and valued as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import FEATURE_GROUPS, build_features, downsampled, morphology, rr_normalised


def _beats() -> pd.DataFrame:
    t = np.arange(BEAT_SAMPLES)
    narrow = 0.3 + 0.7 * np.exp(-(t**2) / 2.0) + 0.15 * np.exp(-((t - 35) ** 2) / 40.0)  # N-like: sharp QRS
    wide = 0.3 + 0.7 * np.exp(-(t**2) / 60.0) - 0.15 * np.exp(-((t - 40) ** 2) / 40.0)  # V-like: wide QRS
    rows = np.vstack([narrow, wide])
    lengths = np.array([100, 190])
    rows[0, 100:] = 0.0
    frame = pd.DataFrame(rows.astype(np.float32), columns=SAMPLE_COLUMNS)
    return frame.assign(length=lengths, rr_prev=[0.8, np.nan], rr_next=[0.8, 1.2], rr_local=[0.8, 1.0])


def test_existing_groups_are_unchanged():
    beats = _beats()
    x = build_features(beats, ["samples", "length", "rr"])
    assert list(x.columns[:BEAT_SAMPLES]) == SAMPLE_COLUMNS and x.shape[1] == BEAT_SAMPLES + 1 + 6
    assert x["rr_prev_ratio"].iloc[0] == pytest.approx(1.0) and np.isnan(x["rr_prev_ratio"].iloc[1])


def test_every_group_builds_and_columns_are_unique():
    beats = _beats()
    groups = [g for g in FEATURE_GROUPS if g != "tsfresh"]
    x = build_features(beats, groups)
    assert x.columns.is_unique and len(x) == 2
    with pytest.raises(ValueError, match="unknown feature groups"):
        build_features(beats, ["wavelets"])


def test_morphology_separates_narrow_and_wide_qrs():
    m = morphology(_beats())
    assert m.loc[0, "r_amp"] > 0.5 and m.loc[1, "r_amp"] > 0.5
    assert m.loc[1, "qrs_end_ms"] > m.loc[0, "qrs_end_ms"]
    assert m.loc[1, "r_halfwidth_ms"] > m.loc[0, "r_halfwidth_ms"]
    assert m.loc[0, "t_polarity"] > 0 > m.loc[1, "t_polarity"]  # upright vs inverted T
    assert m.loc[0, "r_downslope"] < m.loc[1, "r_downslope"]  # steeper down-stroke of the narrow QRS


def test_morphology_ignores_the_padding():
    beats = _beats()
    changed = beats.copy()
    changed.loc[0, SAMPLE_COLUMNS[120:]] = 0.9  # values after length=100 are padding
    pd.testing.assert_frame_equal(morphology(beats).iloc[[0]], morphology(changed).iloc[[0]])


def test_downsampled_and_masked_and_rr_norm():
    beats = _beats()
    d = downsampled(beats)
    assert d.shape == (2, 63)
    assert d.iloc[0, 0] == pytest.approx(beats.loc[0, SAMPLE_COLUMNS[:3]].mean(), rel=1e-6)
    masked = build_features(beats, ["samples_masked"])
    assert masked.iloc[0, 100:].isna().all() and masked.iloc[0, :100].notna().all()
    assert masked.iloc[1].notna().all()  # longer than 187: no padding
    r = rr_normalised(beats)
    assert r.loc[0, "rr_pause_ratio"] == pytest.approx(1.0)
    assert r.loc[1, "rr_next_minus_local"] == pytest.approx(0.2, abs=1e-6) and np.isnan(r.loc[1, "rr_prev_minus_local"])


def test_one_beat_at_a_time_gives_exactly_the_batch_values(fixture_beats):
    """The service scores one beat per request, the pipeline a whole split per call: every group,
    tsfresh included, must give the same values in the same column order either way."""
    from ecgbeats.features.tsfresh_features import freeze
    from ecgbeats.serving.scoring import beat_frame

    beats = fixture_beats.groupby("label").head(8).reset_index(drop=True)
    settings = freeze(["beat__maximum", "beat__abs_energy", 'beat__fft_coefficient__attr_"abs"__coeff_1'])
    groups = list(FEATURE_GROUPS)
    rr = {c: beats[c].to_numpy() for c in ("rr_prev", "rr_next", "rr_local")}
    samples = beats[SAMPLE_COLUMNS].to_numpy()
    lengths = beats["length"].to_numpy()

    # the pipeline's own table (with its provenance columns) gives the same values as the service's
    pipeline = build_features(beats, groups, tsfresh_settings=settings)
    for given in (rr, None):  # RR intervals are optional in the service: missing is NaN, the same way
        batch = build_features(beat_frame(samples, lengths=lengths, rr=given), groups, tsfresh_settings=settings)
        assert list(batch.columns[-3:]) == settings.columns and batch.notna().any(axis=None)
        for i in range(len(beats)):
            one_rr = None if given is None else {c: v[i : i + 1] for c, v in given.items()}
            one = beat_frame(samples[i : i + 1], lengths=lengths[i : i + 1], rr=one_rr)
            single = build_features(one, groups, tsfresh_settings=settings)
            assert list(single.columns) == list(batch.columns)
            np.testing.assert_array_equal(single.to_numpy()[0], batch.to_numpy()[i], err_msg=f"beat {i}")
        if given is not None:
            np.testing.assert_array_equal(pipeline.to_numpy(), batch.to_numpy())
        else:
            assert batch["rr_prev_ratio"].isna().all()
