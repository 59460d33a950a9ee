"""The one code path from beats, or from a raw ECG strip, to class predictions.

Both the HTTP service and the batch CLI call :class:`Scorer`; neither builds features or calls the
booster itself. R peaks of a strip are found by GQRS, checked against the second lead
(``ecgbeats.processing.detection``).
A beat-row bundle then cuts the strip by ``ecgbeats.data.beats.cut_beats`` (the function ``ingest``
uses), with RR intervals from ``ecgbeats.data.beats.rr_intervals``; a record bundle measures every
beat on the strip by ``ecgbeats.features.record.record_features`` (the function its training beats
were measured with).

The value rules of a beat row (the API's request models, the batch and drift CLIs and the Kaggle-CSV
reader of ingest) are ``ecgbeats.data.rules``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import ecgbeats
from ecgbeats.data.beats import BEAT_SAMPLES, cut_beats, rr_intervals
from ecgbeats.data.dataset import SAMPLE_COLUMNS, padded_length
from ecgbeats.data.rules import MAX_LENGTH, MAX_RR_SECONDS, MIN_BEAT_RANGE, VALUE_TOLERANCE, row_problems
from ecgbeats.features.groups import RR_COLUMNS
from ecgbeats.features.record import feature_columns, record_features
from ecgbeats.features.reference import rhythm_context
from ecgbeats.modelling.bundle import ModelBundle, bundle_digest
from ecgbeats.processing import detection
from ecgbeats.processing.quality import QualityConfig, Segment, StripQuality, UnusableSignal, assess
from ecgbeats.serving.beat_arrays import array_features

log = logging.getLogger(__name__)

__all__ = ["MAX_LENGTH", "MAX_RR_SECONDS", "MIN_BEAT_RANGE", "VALUE_TOLERANCE", "row_problems"]  # re-exported

MIN_PEAKS = 2  # a beat runs from its R peak to the next one


class ScoringError(ValueError):
    """Input that cannot be scored; ``field`` names the offending input field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ScoringError], tuple[str, str]]:
        return ScoringError, (self.field, self.message)  # raised in a strip worker process, re-raised here


# Called after every scored batch with the model's input features and the probabilities: the hook
# for drift monitoring (feature and prediction distributions) and prediction counters.
PredictionObserver = Callable[[pd.DataFrame, np.ndarray], None]


def beat_arrays(
    samples: np.ndarray,
    *,
    lengths: np.ndarray | None = None,
    rr: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated beats in the form the features are built from: float32 samples clipped to [0, 1]
    (n, 187), int32 lengths (n,) and float32 RR intervals (n, 3: rr_prev, rr_next, rr_local).

    ``lengths`` entries that are NaN or missing are derived from the zero padding; missing RR
    values stay NaN.
    """
    samples = np.clip(np.asarray(samples, dtype=np.float32), 0.0, 1.0)
    if samples.ndim != 2 or samples.shape[1] != BEAT_SAMPLES:
        raise ScoringError("samples", f"beats must be an (n, {BEAT_SAMPLES}) array, got shape {samples.shape}")
    derived = padded_length(samples)
    if lengths is None:
        length = derived
    else:
        given = np.asarray(lengths, dtype=np.float64)
        length = np.where(np.isnan(given), derived, given)
    rr_values = np.full((len(samples), len(RR_COLUMNS)), np.nan, dtype=np.float32)
    for i, col in enumerate(RR_COLUMNS):
        if rr is not None and rr.get(col) is not None:
            rr_values[:, i] = np.asarray(rr[col], dtype=np.float32)
    return samples, length.astype(np.int32), rr_values


def beat_frame(
    samples: np.ndarray,
    *,
    lengths: np.ndarray | None = None,
    rr: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """A beat table (the columns the features need) from validated beats (see :func:`beat_arrays`)."""
    samples, length, rr_values = beat_arrays(samples, lengths=lengths, rr=rr)
    frame = pd.DataFrame({"length": length})
    for i, col in enumerate(RR_COLUMNS):
        frame[col] = rr_values[:, i]
    return pd.concat([frame, pd.DataFrame(samples, columns=SAMPLE_COLUMNS)], axis=1)


def frame_to_beats(frame: pd.DataFrame) -> pd.DataFrame:
    """A checked beat table (e.g. read from parquet or CSV) in the form :func:`beat_frame` gives."""
    lengths = frame["length"].to_numpy(dtype=np.float64, na_value=np.nan) if "length" in frame else None
    rr = {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in RR_COLUMNS if c in frame}
    samples = frame[SAMPLE_COLUMNS].to_numpy(dtype=np.float32)
    return beat_frame(samples, lengths=lengths, rr=rr or None)


@dataclass(frozen=True)
class Predictions:
    probabilities: np.ndarray  # (n, n_classes)
    class_names: list[str]

    @property
    def codes(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def names(self) -> list[str]:
        return [self.class_names[c] for c in self.codes]

    def counts(self) -> dict[str, int]:
        counts = np.bincount(self.codes, minlength=len(self.class_names))
        return {name: int(counts[i]) for i, name in enumerate(self.class_names)}

    def to_frame(self) -> pd.DataFrame:
        """class_code, class_name and one ``p_<class>`` column per class."""
        frame = pd.DataFrame({"class_code": self.codes.astype(np.int8), "class_name": self.names})
        for i, name in enumerate(self.class_names):
            frame[f"p_{name}"] = self.probabilities[:, i].astype(np.float64)
        return frame


@dataclass(frozen=True)
class StripResult:
    peaks: np.ndarray  # every detected R peak, samples at the strip's rate
    fs: float
    beats: pd.DataFrame  # the classified beats: r_peak, time_s and the features (beat bundles: of peaks[:-1])
    predictions: Predictions
    quality: StripQuality
    unscored: pd.DataFrame  # r_peak, time_s, reason: beats in unusable stretches, not classified

    def summary(self) -> dict[str, Any]:
        rr = np.diff(self.peaks) / self.fs
        return {
            "duration_s": None,  # filled by the caller, who knows the strip length
            "detected_r_peaks": int(len(self.peaks)),
            "beats": int(len(self.beats)),
            "counts": self.predictions.counts(),
            "mean_heart_rate_bpm": float(60.0 / rr.mean()) if len(rr) else None,
            "quality": self.quality.summary(len(self.unscored)),
        }


def unanalysed_stretches(segments: Sequence[Segment], fs: float) -> list[tuple[float, float, str]]:
    """The unusable stretches of a strip's quality check as (start s, end s, reason): the findings' input."""
    return [(seg.start / fs, seg.end / fs, seg.reason) for seg in segments]


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R peaks of a strip ((samples,) or (samples, leads), in millivolts):
    ``ecgbeats.processing.detection.detect_r_peaks``, with its failures as the strip's fault."""
    try:
        return detection.detect_r_peaks(signal, fs)
    except Exception as err:  # a detector fails in its own ways on degenerate strips; that is the input's fault
        log.warning("R-peak detection failed on a %d-sample strip at %g Hz", len(signal), fs, exc_info=True)
        raise ScoringError("signal", f"R-peak detection failed on this strip: {err}") from err


class Scorer:
    """A loaded bundle, its version, and the prediction observers; the only way to predict."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        version: str | None = None,
        observers: Sequence[PredictionObserver] = (),
        num_threads: int | None = None,
    ) -> None:
        self.bundle = bundle
        # LightGBM threads per prediction; None: LightGBM's default (all cores). The service uses 1:
        # on a busy host OpenMP threads of small predictions spin and wait for each other (one beat on
        # the shared 2-core dev machine: 12 ms as a DataFrame with the default, 0.05 ms as an array
        # with 1 thread; see reports/deployment.md)
        self.num_threads = num_threads
        self.digest = bundle_digest(bundle.path)
        self.version = version or model_version(bundle, self.digest)
        self.observers: list[PredictionObserver] = list(observers)
        self.representation = bundle.representation
        # as the training beats were made: the beat rows' rhythm, or the record measurement
        self.local_rr_beats = bundle.preprocessing.local_rr_beats if self.representation == "beat" else None
        self.record_config = bundle.record_config if self.representation == "record" else None
        self.quality_config = QualityConfig()
        # the features of beat rows from arrays, checked against build_features at start-up (None: the tables)
        self.array_features = (
            array_features(bundle.meta["features"]["groups"], bundle.feature_columns)
            if self.representation == "beat" and not bundle.meta["features"].get("tsfresh")
            else None
        )

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the strip path's kernels now, not on the first strip."""
        # 10 s of 1-mV spikes, 30 ms wide, once a second, on a 1 µV grid: every compiled step runs
        t = np.arange(3600) / 360.0
        strip = np.round(np.exp(-((((t % 1.0) - 0.5) / 0.012) ** 2)), 3)
        peaks = detection.detect_r_peaks(strip, 360.0)
        if self.record_config is not None:
            feature_columns(self.record_config)
            record_features(strip, 360.0, peaks, self.record_config)

    @property
    def class_names(self) -> list[str]:
        return self.bundle.class_names

    def score_beats(self, beats: pd.DataFrame) -> Predictions:
        """Class probabilities of a beat table (as :func:`beat_frame` or the ingest stage makes)."""
        if len(beats) == 0:
            return Predictions(np.zeros((0, len(self.class_names))), self.class_names)
        features = self.bundle.features(beats)
        # a float64 array, not the DataFrame: LightGBM's pandas conversion costs ~1.4 ms per call;
        # the columns are already in the training order (ModelBundle.features reindexes them)
        return self._predict(features.to_numpy(dtype=np.float64), features, beats)

    def score_arrays(
        self,
        samples: np.ndarray,
        *,
        lengths: np.ndarray | None = None,
        rr: dict[str, np.ndarray] | None = None,
    ) -> Predictions:
        """:meth:`score_beats` of ``beat_frame(samples, lengths=lengths, rr=rr)``, the same probabilities,
        without the beat table where the bundle's features have an array form (the service's path)."""
        fast = self.array_features
        if fast is None:
            return self.score_beats(beat_frame(samples, lengths=lengths, rr=rr))
        samples, length, rr_values = beat_arrays(samples, lengths=lengths, rr=rr)
        if len(samples) == 0:
            return Predictions(np.zeros((0, len(self.class_names))), self.class_names)
        values = fast(samples, length, rr_values)
        # the observers take the features as a table, as score_beats gives them (float32, no copy)
        return self._predict(values.astype(np.float64), lambda: pd.DataFrame(values, columns=fast.columns, copy=False))

    def _predict(
        self,
        values: np.ndarray,
        features: pd.DataFrame | Callable[[], pd.DataFrame],
        beats: pd.DataFrame | None = None,
    ) -> Predictions:
        threads: dict[str, Any] = {} if self.num_threads is None else {"num_threads": self.num_threads}
        proba = np.asarray(self.bundle.booster.predict(values, **threads), dtype=np.float64).reshape(len(values), -1)
        if beats is not None:  # a record bundle's rhythm rules read the beat table's reference measures
            proba = self.bundle.interpret(proba, beats)
        if self.observers:
            table = features() if callable(features) else features
            for observe in self.observers:
                observe(table, proba)
        return Predictions(proba, self.class_names)

    def strip_beats(self, signal: np.ndarray, fs: float) -> tuple[np.ndarray, pd.DataFrame, StripQuality]:
        """Detected R peaks, the beat table at them (the shared segmentation), and the strip's quality.

        ``signal`` is one lead, (samples,), or (samples, leads) with the record model's second lead.
        Its quality is judged first (``ecgbeats.processing.quality``: spikes bridged, an inverted first
        lead flipped, a strip with no usable stretch refused); R peaks are detected on the first lead,
        checked against the second when there is one (``ecgbeats.processing.detection``).
        A ``beat`` bundle cuts Kaggle beat rows from the first lead (every peak but the last); a
        ``record`` bundle measures every peak on the raw signal (``ecgbeats.features.record.record_features``,
        as its training beats were). The table's ``unscored`` column names why a beat in an unusable
        stretch is not to be classified ("" for the others).

        In one piece; ``ecgbeats.serving.streaming.strip_beats`` cuts a long recording into segments.
        """
        try:
            quality = assess(signal, fs, self.quality_config)
        except UnusableSignal as err:
            raise ScoringError("signal", str(err)) from None
        peaks = detect_r_peaks(quality.signal, fs)
        if len(peaks) < MIN_PEAKS:
            raise ScoringError(
                "signal", f"found {len(peaks)} R peak(s) in the strip; at least {MIN_PEAKS} are needed for a beat"
            )
        quality.orient(peaks, self.quality_config)
        return self.measure_beats(quality, peaks, fs)

    def measure_beats(
        self, quality: StripQuality, peaks: np.ndarray, fs: float
    ) -> tuple[np.ndarray, pd.DataFrame, StripQuality]:
        """The beat table at detected ``peaks`` of a judged (and oriented) strip: :meth:`strip_beats`' last step.

        Its ``rr_check`` column doubts the RR interval before a beat where a long one may hide a missed
        beat (``ecgbeats.processing.detection.rr_checks``)."""
        signal = quality.signal
        first = signal if signal.ndim == 1 else signal[:, 0]
        checks = detection.rr_checks(first, fs, peaks, [(seg.start, seg.end) for seg in quality.unusable])
        if self.record_config is not None:
            refined, beats = record_features(signal, fs, peaks, self.record_config)
            beats.insert(0, "time_s", refined / fs)
            beats.insert(0, "r_peak", refined)
            if "ctx_irregularity" in beats:  # the rhythm context, said with each beat (not a model input)
                beats["rhythm"] = rhythm_context(
                    beats["ctx_irregularity"].to_numpy(), beats["ctx_no_p_share"].to_numpy(),
                    self.record_config.reference,
                )  # fmt: skip
            beats["rr_check"] = checks
            beats["unscored"] = quality.beat_reasons(refined)
            return refined, beats, quality
        cut = cut_beats(first, fs, peaks)
        assert self.local_rr_beats is not None  # a beat bundle's
        rr = {key: values[:-1] for key, values in rr_intervals(peaks, fs, self.local_rr_beats).items()}
        beats = beat_frame(cut.samples, lengths=cut.lengths, rr=rr)
        beats.insert(0, "time_s", peaks[:-1] / fs)
        beats.insert(0, "r_peak", peaks[:-1])
        beats["rr_check"] = checks[:-1]
        beats["unscored"] = quality.beat_reasons(peaks[:-1])
        return peaks, beats, quality

    def score_strip(self, signal: np.ndarray, fs: float) -> StripResult:
        peaks, beats, quality = self.strip_beats(signal, fs)
        scored = (beats.pop("unscored") == "").to_numpy()
        unscored = pd.DataFrame(
            {"r_peak": beats["r_peak"].to_numpy()[~scored], "time_s": beats["time_s"].to_numpy()[~scored]}
        )
        unscored["reason"] = quality.beat_reasons(unscored["r_peak"].to_numpy())
        if not scored.any():
            reasons = ", ".join(sorted(set(unscored["reason"])))
            raise ScoringError(
                "signal", f"none of the {len(beats)} detected beats lies in a usable stretch ({reasons})"
            )
        beats = beats[scored].reset_index(drop=True)
        return StripResult(
            peaks=peaks, fs=fs, beats=beats, predictions=self.score_beats(beats), quality=quality, unscored=unscored
        )


def model_version(bundle: ModelBundle, digest: str | None = None) -> str:
    """The bundle's ``version`` if its meta has one, else ``<ecgbeats version>+<protocol>.<digest[:12]>``."""
    if bundle.meta.get("version"):
        return str(bundle.meta["version"])
    digest = digest or bundle_digest(bundle.path)
    provenance = bundle.meta.get("provenance") or {}
    base = provenance.get("ecgbeats_version") or ecgbeats.__version__
    protocol = "".join(ch for ch in str(bundle.meta.get("protocol", "model")) if ch.isalnum()) or "model"
    return f"{base}+{protocol}.{digest[:12]}"
