"""Batch scoring: beats from a parquet or CSV file, or a recording (WFDB, EDF), to a parquet or CSV of predictions.

    python -m ecgbeats.serving.batch INPUT OUTPUT [--model DIR] [--on-error stop|skip] ...

Inputs:
- parquet: a beat table (``s000``..``s186``; ``length``, ``rr_prev``, ``rr_next``, ``rr_local``,
  ``label`` and the other beat-table columns are used or carried along when present);
- CSV: the published Kaggle format (no header; 187 values, optionally a 188th label column), or a
  CSV with a header row naming at least ``s000``..``s186``;
- a WFDB record (``path/to/208`` or ``path/to/208.hea``): the first channel (``--channel``) in mV,
  R peaks detected as the API does, checked against a second lead (``--second-channel``; default: the
  first other channel) (``--peaks detect``), or the annotated beats exactly as ``ingest`` cuts them
  (``--peaks annotations``, needs the ``.atr`` file). A record model (the default served one) measures
  each beat on the record itself (a two-lead one on both leads) and takes only recordings;
- an EDF or EDF+C file (``.edf``, what Holter systems export), read lazily by ``edfio``: the lead
  ``--channel`` by index or label (``ECG1``), converted to mV from its physical dimension (mV, uV or V;
  any other unit is refused), R peaks detected as for WFDB.

A recording longer than ``--segment-seconds`` (1800) is streamed: read and scored a segment at a time on
a fixed grid of segments with overlapping contexts (``ecgbeats.serving.streaming``), so memory stays
flat on a 24-hour Holter and the progress bar counts the recording's seconds. The beats do not depend
on how the signal is read: ``--whole`` (read it all, then score) gives the same ones.

Every beat goes through ``ecgbeats.serving.scoring.Scorer``, the code path of the API. Input is read
and scored in chunks with a progress bar. A malformed row (wrong column count, a value that is not
a finite number, out of range) is reported with its row number (1-based, data rows; header not
counted): ``--on-error stop`` (default) stops the run, ``--on-error skip`` scores the other rows
(``--errors FILE`` lists the skipped ones; it is written only when rows were skipped, and an errors file
an earlier run left at that path is removed, so the file present after a run always lists that run's
skipped rows). The output is written to a temporary file and renamed only when the whole run succeeds,
so a failed or interrupted run leaves no output behind and changes no file.

A recording's header is checked against its data before anything is scored: the sampling rate must be
one the service accepts (``ECGBEATS_MIN_FS``..``ECGBEATS_MAX_FS``, 100-1000 Hz by default), a WFDB
record's ``.dat`` files must hold the samples its header declares, and an EDF file's size must be its
header (256 bytes for the file and for each signal) plus the data records the header declares. A header
the data does not bear out (a truncated copy, a damaged field) is refused, not scored at a wrong rate or
from a wrong offset.

Exit codes: 0 done (rows may have been skipped with ``--on-error skip``); 2 bad input or model, an empty
input, a recording whose header its data does not bear out, an output or ``--errors`` file that would
overwrite the input or each other, or an output that cannot be written (one line on stderr); 143 stopped
by SIGTERM (the partial output is removed).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS, InputDataError, record_beats
from ecgbeats.features.groups import RR_COLUMNS
from ecgbeats.features.record import annotated_beats
from ecgbeats.io import atomic_path, write_csv, write_json, write_text
from ecgbeats.modelling.bundle import BundleError, load_bundle
from ecgbeats.serving import streaming
from ecgbeats.serving.scoring import Scorer, ScoringError, frame_to_beats, row_problems, unanalysed_stretches
from ecgbeats.serving.settings import Settings, SettingsError, load_settings
from ecgbeats.serving.streaming import SEGMENT_S

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 5000
MAX_LOGGED_ERRORS = 20
# columns carried from the input into the predictions when present
CARRIED = [
    "record", "beat_index", "r_peak", "r_refined", "time_s", "symbol", "label", "length", *RR_COLUMNS, "rhythm",
    "rr_check",
]  # fmt: skip
PROBLEM = "_problem"
FINDINGS_COLUMNS = ["time_s", "class_name", "rhythm", "rr_check"]
# the sampling rates a recording may have: the service's rule for a strip (its settings' defaults)
DEFAULT_FS_RANGE = (float(Settings.model_fields["min_fs"].default), float(Settings.model_fields["max_fs"].default))


class BatchInputError(ValueError):
    """Input that stops the run; the message names the file and, for a bad row, its number."""


@dataclass
class RunReport:
    rows: int = 0
    scored: int = 0
    skipped: int = 0


# ---------------------------------------------------------------- readers: chunks with a 1-based `row`


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    if name.endswith(".edf"):
        return "edf"
    if name.endswith(".hea") or path.with_name(path.name + ".hea").is_file():
        return "wfdb"
    raise BatchInputError(
        f"{path}: cannot tell the format (use .parquet, .csv, .edf, a WFDB record, or --input-format)"
    )


def _float_or_nan(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return np.nan


def read_csv_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Chunks of a Kaggle CSV (no header) or a headed beat CSV; structural problems go in ``_problem``."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None:
            return
        headed = bool(first) and np.isnan(_float_or_nan(first[0]))
        if headed:
            columns = [c.strip() for c in first]
            missing = [c for c in SAMPLE_COLUMNS if c not in columns]
            if missing:
                raise BatchInputError(f"{path}: the header lacks sample columns {missing[:3]}...")
            wanted = [c for c in (*SAMPLE_COLUMNS, *CARRIED) if c in columns]
            index = {c: columns.index(c) for c in wanted}
            rows: Iterator[list[str]] = reader
        else:
            columns = [*SAMPLE_COLUMNS, "label"]
            wanted = columns
            index = {c: i for i, c in enumerate(columns)}
            rows = _chain([first], reader)
        numeric = [c for c in wanted if c not in ("record", "symbol")]
        buffer: list[dict[str, object]] = []
        for number, cells in enumerate(rows, start=1):
            record: dict[str, object] = {"row": number, PROBLEM: ""}
            expected = len(columns) if headed else None
            if headed and len(cells) != expected:
                record[PROBLEM] = f"{len(cells)} columns, the header has {expected}"
            elif not headed and len(cells) not in (BEAT_SAMPLES, BEAT_SAMPLES + 1):
                record[PROBLEM] = f"{len(cells)} columns, expected {BEAT_SAMPLES} (or {BEAT_SAMPLES + 1} with a label)"
            else:
                for col in wanted:
                    i = index[col]
                    if i >= len(cells):
                        continue
                    if col in numeric:
                        blank = cells[i].strip() == ""
                        value = np.nan if blank else _float_or_nan(cells[i])
                        # a sample must be a number; an optional column may be blank (unknown), not text
                        bad = np.isnan(value) and (col in SAMPLE_COLUMNS or not blank)
                        if bad and not record[PROBLEM]:
                            record[PROBLEM] = f"{col}: {cells[i][:40]!r} is not a finite number"
                        record[col] = value
                    else:
                        record[col] = cells[i]
            buffer.append(record)
            if len(buffer) >= chunk_size:
                yield _csv_frame(buffer, wanted)
                buffer = []
        if buffer:
            yield _csv_frame(buffer, wanted)


def _chain(first: list[list[str]], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield from first
    yield from rest


def _csv_frame(records: list[dict[str, object]], wanted: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    for col in wanted:
        if col not in frame:
            frame[col] = np.nan
    if "label" in frame and frame["label"].isna().all():
        frame = frame.drop(columns="label")
    return frame


def read_parquet_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    try:
        handle = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise BatchInputError(f"{path}: cannot read as parquet: {err}") from err
    names = handle.schema_arrow.names
    missing = [c for c in SAMPLE_COLUMNS if c not in names]
    if missing:
        raise BatchInputError(f"{path}: no sample columns {missing[:3]}... (a beat table has s000..s186)")
    columns = [c for c in (*SAMPLE_COLUMNS, *CARRIED) if c in names]
    start = 1
    for batch in handle.iter_batches(batch_size=chunk_size, columns=columns):
        frame = batch.to_pandas()
        for col in SAMPLE_COLUMNS:  # a text column: its bad cells become NaN and are reported as such
            if not pd.api.types.is_numeric_dtype(frame[col]):
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
        frame.insert(0, "row", np.arange(start, start + len(frame)))
        frame[PROBLEM] = ""
        start += len(frame)
        yield frame


def count_rows(path: Path, fmt: str) -> int | None:
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException):
            return None
    if fmt == "csv":
        with open(path, "rb") as handle:
            lines = sum(1 for _ in handle)
        with open(path, newline="") as handle:
            first = next(csv.reader(handle), [""])
        return max(0, lines - (1 if first and np.isnan(_float_or_nan(first[0])) else 0))
    return None


# ---------------------------------------------------------------- scoring


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def check_written(inputs: list[Path], written: dict[str, Path | None]) -> None:
    """Refuse a file the run would write (named by its role) that is one of its inputs or another file it writes."""
    named = [(role, path) for role, path in written.items() if path is not None]
    for i, (role, path) in enumerate(named):
        if any(_same_file(path, p) for p in inputs):
            raise BatchInputError(f"{path}: the {role} would overwrite the input; name another file")
        for other, earlier in named[:i]:
            if _same_file(path, earlier):
                raise BatchInputError(f"{path}: the {role} would overwrite the {other}; name another file")


def _record_base(path: Path) -> Path:
    return path.with_suffix("") if path.suffix == ".hea" else path


def wfdb_frames(
    path: Path,
    scorer: Scorer,
    channel: str | int = 0,
    second_channel: str | int | None = None,
    fs_range: tuple[float, float] = DEFAULT_FS_RANGE,
) -> pd.DataFrame:
    """The beat table of a WFDB record at its annotated R peaks, exactly as ``ingest`` cuts them (a beat-row
    bundle) or as a record bundle's training beats were measured (``ecgbeats.features.record.annotated_beats``).
    """
    base = _record_base(path)
    if str(channel) != "0" or second_channel not in (None, 1, "1"):
        raise BatchInputError("--peaks annotations measures the record's signals as training did; drop --channel")
    check_wfdb_header(base, fs_range)
    try:
        if scorer.record_config is not None:
            frame = annotated_beats(base.parent, base.name, scorer.record_config)
            frame["beat_index"] = np.arange(len(frame))
            return frame
        preprocessing = scorer.bundle.preprocessing  # cut as the model's training beats were
        frame = record_beats(base.parent, base.name, local_rr_beats=preprocessing.local_rr_beats,
                             beat_end=preprocessing.beat_end)  # fmt: skip
    except InputDataError as err:
        raise BatchInputError(str(err)) from err
    frame["time_s"] = np.nan
    return frame


VOLT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}  # to millivolts


@dataclass
class SignalSource:
    """A recording read a stretch at a time: ``read(start, stop)`` gives (samples, leads) in mV."""

    name: str
    fs: float
    n_samples: int
    labels: list[str]
    read: Callable[[int, int], np.ndarray]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs


def _pick_channel(spec: str | int, labels: list[str], where: str) -> int:
    """A channel by index (``0``) or label (``MLII``, case-insensitive)."""
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise BatchInputError(
                f"{where} has {len(labels)} channel(s) ({', '.join(labels)}); there is no channel {index}"
            )
        return index
    matches = [i for i, label in enumerate(labels) if label.strip().lower() == text.lower()]
    if not matches:
        raise BatchInputError(f"{where} has no channel {text!r} (channels: {', '.join(labels)})")
    return matches[0]


def _scales(where: str, labels: list[str], units: list[str], channels: list[int]) -> list[float]:
    scales = []
    for c in channels:
        scale = VOLT_SCALE.get(units[c].strip().lower())
        if scale is None:
            raise BatchInputError(
                f"{where}: channel {labels[c]!r} is in {units[c].strip() or 'no units'!r}, not a voltage (mV, uV or V)"
            )
        scales.append(scale)
    return scales


def _channels(
    where: str, scorer: Scorer, labels: list[str], units: list[str], channel: str | int, second: str | int | None
) -> list[int]:
    """The lead to detect on, and the second lead (default: the first other channel in a voltage unit;
    ``-1``: none): the detector checks its beats against it, and a two-lead record model measures on it
    (its measures are unknown without it)."""
    channels = [_pick_channel(channel, labels, where)]
    if str(second) != "-1":
        if second is None:
            other = [i for i in range(len(labels)) if i != channels[0] and units[i].strip().lower() in VOLT_SCALE]
            channels += other[:1]
        else:
            channels.append(_pick_channel(second, labels, where))
    return channels


def _finite(where: str, block: np.ndarray, start: int, labels: list[str]) -> np.ndarray:
    if not np.isfinite(block).all():
        row, col = np.argwhere(~np.isfinite(block))[0]
        raise BatchInputError(
            f"{where}: sample {start + int(row)} of channel {labels[int(col)]!r} is not a finite number"
        )
    return block


def _check_rate(where: str, fs: float, fs_range: tuple[float, float]) -> float:
    low, high = fs_range
    if not (math.isfinite(fs) and low <= fs <= high):
        raise BatchInputError(f"{where}: the sampling rate {fs:g} Hz is outside the accepted {low:g}-{high:g} Hz")
    return fs


def _wfdb_rate_text(header_path: Path) -> str | None:
    """The sampling rate as the record line spells it (``name n_sig fs[/counter[(base)]] ...``), or None."""
    for line in header_path.read_text(errors="replace").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            return fields[2].split("/")[0] if len(fields) > 2 else None
    return None


def check_wfdb_header(base: Path, fs_range: tuple[float, float]) -> tuple[Any, float, int]:
    """A WFDB record's header, its sampling rate and its length, checked against the header's text and the
    record's data files; refused with one line if the data does not bear them out."""
    import wfdb
    from wfdb.io._signal import COMPRESSED_FMTS, _infer_sig_len

    where = f"record {base}"
    try:
        header = wfdb.rdheader(str(base))
    except Exception as err:  # wfdb raises many kinds on missing or damaged files
        raise BatchInputError(f"{where}: cannot read the header: {err}") from err
    # wfdb reads a rate it cannot parse (-360, nan) as WFDB's default 250 Hz, or a part of it (3.6 of 3.6e2)
    text = _wfdb_rate_text(base.with_name(base.name + ".hea"))
    fs = float(header.fs)
    if text is not None:
        try:
            stated = float(text)
        except ValueError:
            raise BatchInputError(f"{where}: the sampling rate {text!r} is not a number") from None
        _check_rate(where, stated, fs_range)
        if stated != fs:
            raise BatchInputError(f"{where}: the header's sampling rate {text!r} is read by wfdb as {fs:g} Hz")
    _check_rate(where, fs, fs_range)
    files: dict[str, list[int]] = {}
    for i, name in enumerate(getattr(header, "file_name", None) or []):
        if name != "~":  # "~": a signal with no samples stored
            files.setdefault(name, []).append(i)
    held: dict[str, int] = {}
    for name, signals in files.items():
        fmt = header.fmt[signals[0]]
        if fmt in COMPRESSED_FMTS:  # FLAC: the size does not tell the length
            continue
        if not (base.parent / name).is_file():
            raise BatchInputError(f"{where}: its data file {name} is missing")
        frame = sum((header.samps_per_frame or [1] * header.n_sig)[i] or 1 for i in signals)
        offset = (header.byte_offset or [None] * header.n_sig)[signals[0]]
        # the frames the file holds, by the rule wfdb applies to a header that omits the length
        held[name] = _infer_sig_len(name, fmt, frame, offset, str(base.parent))
    length = header.sig_len if header.sig_len is not None else min(held.values(), default=0)
    for name, frames in held.items():
        if frames < length:
            raise BatchInputError(
                f"{where}: {name} holds {frames} samples per signal, its header declares {length}: "
                "the file is truncated"
            )
        if frames > length:
            raise BatchInputError(
                f"{where}: {name} holds {frames} samples per signal, more than the {length} its header declares"
            )
    return header, fs, int(length)


def open_wfdb(
    base: Path,
    scorer: Scorer,
    channel: str | int,
    second: str | int | None,
    fs_range: tuple[float, float] = DEFAULT_FS_RANGE,
) -> SignalSource:
    """A WFDB record, read a stretch at a time (``wfdb.rdrecord(sampfrom, sampto)``)."""
    import wfdb

    where = f"record {base}"
    header, fs, length = check_wfdb_header(base, fs_range)
    labels = [str(name) for name in (header.sig_name or [f"signal {i}" for i in range(header.n_sig)])]
    units = [str(u) for u in (header.units or ["mV"] * header.n_sig)]
    channels = _channels(where, scorer, labels, units, channel, second)
    scales = np.array(_scales(where, labels, units, channels))
    picked = [labels[c] for c in channels]

    def read(start: int, stop: int) -> np.ndarray:
        try:
            record = wfdb.rdrecord(str(base), sampfrom=start, sampto=stop, channels=channels)
        except Exception as err:
            raise BatchInputError(f"{where}: cannot read samples {start}-{stop} of {picked}: {err}") from err
        return _finite(where, np.asarray(record.p_signal, dtype=np.float64) * scales, start, picked)

    return SignalSource(base.name, fs, length, picked, read)


def check_edf_layout(path: Path) -> None:
    """Refuse an EDF file whose header's layout its size does not bear out: edfio reads the data from where
    the header's byte count says (a wrong one: samples read from the wrong place) and takes a file holding
    fewer or more data records than declared with a warning only."""
    # the fixed fields of the EDF specification: each signal's header is 256 bytes, its samples per data
    # record at 216 bytes into the signal headers' block (after label, transducer, dimension, ranges, filter)
    try:
        with open(path, "rb") as handle:
            fixed = handle.read(256)
            signals = int(fixed[252:256])
            block = handle.read(256 * signals)
        header_bytes, declared, duration = int(fixed[184:192]), int(fixed[236:244]), float(fixed[244:252])
        per_record = [int(block[216 * signals + 8 * i : 216 * signals + 8 * (i + 1)]) for i in range(signals)]
    except ValueError as err:
        raise BatchInputError(f"{path}: cannot read as EDF: a header field is not a number ({err})") from err
    if header_bytes != 256 * (signals + 1):
        raise BatchInputError(
            f"{path}: the header says it is {header_bytes} bytes long, but {signals} signal(s) make it "
            f"{256 * (signals + 1)}"
        )
    if not (math.isfinite(duration) and duration > 0):
        raise BatchInputError(f"{path}: the data record duration {duration:g} s is not a positive number")
    record_bytes = 2 * sum(per_record)
    data = path.stat().st_size - header_bytes
    if declared == -1:  # EDF+: a recording still being written; the data says how many records
        if record_bytes and data % record_bytes:
            raise BatchInputError(
                f"{path}: {data} bytes of data, not a whole number of data records of {record_bytes} bytes: "
                "the file is truncated"
            )
    elif data != declared * record_bytes:
        raise BatchInputError(
            f"{path}: {data} bytes of data, its header declares {declared} data records of {record_bytes} bytes: "
            + ("the file is truncated" if data < declared * record_bytes else "there is more data than it declares")
        )


def open_edf(
    path: Path,
    scorer: Scorer,
    channel: str | int,
    second: str | int | None,
    fs_range: tuple[float, float] = DEFAULT_FS_RANGE,
) -> SignalSource:
    """An EDF or EDF+C file read lazily by edfio, a stretch at a time; units converted to mV."""
    import edfio

    where = f"{path}"
    check_edf_layout(path)
    try:
        edf = edfio.read_edf(path, lazy_load_data=True)
    except Exception as err:  # edfio raises ValueError and others on a damaged header
        raise BatchInputError(f"{where}: cannot read as EDF: {err}") from err
    if not edf.is_continuous:
        raise BatchInputError(f"{where}: a discontinuous EDF+D recording; only continuous EDF and EDF+C are read")
    signals = list(edf.signals)  # annotation signals (EDF+ "EDF Annotations") are not among them
    labels = [s.label for s in signals]
    units = [s.physical_dimension for s in signals]
    if not signals:
        raise BatchInputError(f"{where}: no signals")
    channels = _channels(where, scorer, labels, units, channel, second)
    scales = _scales(where, labels, units, channels)
    rates = {float(signals[c].sampling_frequency) for c in channels}
    if len(rates) > 1:
        raise BatchInputError(
            f"{where}: channels {[labels[c] for c in channels]} have different rates {sorted(rates)} Hz"
        )
    fs = _check_rate(where, rates.pop(), fs_range)
    n = min(edf.num_data_records * signals[c].samples_per_data_record for c in channels)
    picked = [labels[c] for c in channels]

    def read(start: int, stop: int) -> np.ndarray:
        # the file opened afresh for every stretch: edfio reads through a memory map, and the pages a
        # map has touched count as this process's memory until it is dropped (a day: the whole file)
        stretch = list(edfio.read_edf(path, lazy_load_data=True).signals)
        block = np.column_stack(
            [
                stretch[c].get_data_slice(start / fs, stop / fs) * scale
                for c, scale in zip(channels, scales, strict=True)
            ]
        )
        return _finite(where, block, start, picked)

    return SignalSource(path.name, fs, n, picked, read)


def signal_frames(
    source: SignalSource,
    scorer: Scorer,
    *,
    segment_s: float,
    whole: bool,
    chunk_size: int,
    unanalysed: list[tuple[float, float, str]] | None = None,
) -> Iterator[tuple[pd.DataFrame, float]]:
    """The beat tables of a recording and the seconds of it each covers (for the progress bar); the
    stretches the quality check judged unusable are appended to ``unanalysed`` (start s, end s, reason).

    Streamed (the default): read a segment at a time and scored in segments of ``segment_s`` seconds
    (``ecgbeats.serving.streaming``), memory bounded by the segment. ``whole``: the whole signal read
    first, then ``Scorer.strip_beats`` on it with the same segments (the same beats), or in one piece
    with ``segment_s`` 0 (the service's strip path).
    """
    from ecgbeats.serving.streaming import segment_beats

    fs, n = source.fs, source.n_samples
    dropped: dict[str, int] = {}
    count = 0

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        nonlocal count
        unscored = frame.pop("unscored")
        for reason, k in unscored[unscored != ""].value_counts().items():
            dropped[str(reason)] = dropped.get(str(reason), 0) + int(k)
        frame = frame[(unscored == "").to_numpy()].reset_index(drop=True)
        frame.insert(0, "record", source.name)
        frame["beat_index"] = np.arange(count, count + len(frame))
        frame.insert(0, "row", np.arange(count + 1, count + len(frame) + 1))
        frame[PROBLEM] = ""
        count += len(frame)
        return frame

    try:
        if whole or segment_s <= 0 or n <= round(segment_s * fs):  # one segment: the same beats, in one read
            _, frame, quality = streaming.strip_beats(
                scorer, source.read(0, n), fs, segment_s if segment_s > 0 else None
            )
            if unanalysed is not None:
                unanalysed.extend(unanalysed_stretches(quality.unusable, fs))
            frame = tidy(frame)
            for start in range(0, max(len(frame), 1), chunk_size):
                yield (
                    frame.iloc[start : start + chunk_size].reset_index(drop=True),
                    (source.duration_s if start == 0 else 0.0),
                )
        else:
            step = round(segment_s * fs)
            reads = (source.read(start, min(start + step, n)) for start in range(0, n, step))
            for part in segment_beats(scorer, reads, fs, segment_s):
                if unanalysed is not None:
                    unanalysed.extend(unanalysed_stretches(part.unusable, fs))
                yield tidy(part.beats), (part.stop - part.start) / fs
    except ScoringError as err:
        raise BatchInputError(f"{source.name}: {err.message}") from err
    except BatchInputError:
        raise
    except ValueError as err:  # a segment length off the quality grid
        raise BatchInputError(f"{source.name}: {err}") from err
    if dropped:
        log.warning(
            "%s: %d beat(s) in unusable stretches are not classified (%s)", source.name, sum(dropped.values()),
            ", ".join(f"{k} {reason}" for reason, k in dropped.items()),
        )  # fmt: skip


def _counted(chunks: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, float]]:
    for chunk in chunks:
        yield chunk, float(len(chunk))


def _frame_chunks(frame: pd.DataFrame, chunk_size: int) -> Iterator[pd.DataFrame]:
    frame = frame.reset_index(drop=True)
    frame.insert(0, "row", np.arange(1, len(frame) + 1))
    frame[PROBLEM] = ""
    for start in range(0, len(frame), chunk_size):
        yield frame.iloc[start : start + chunk_size].reset_index(drop=True)


def score_chunk(scorer: Scorer, chunk: pd.DataFrame) -> pd.DataFrame:
    """Predictions of the good rows of a checked chunk: row, the carried columns, class and p_*."""
    carried = [c for c in ("row", *CARRIED) if c in chunk]
    out = chunk[carried].reset_index(drop=True)
    if len(chunk):
        beats = chunk if scorer.representation == "record" else frame_to_beats(chunk)
        predictions = scorer.score_beats(beats).to_frame()
    else:
        predictions = pd.DataFrame(
            {"class_code": pd.Series(dtype=np.int8), "class_name": pd.Series(dtype=object)}
            | {f"p_{n}": pd.Series(dtype=np.float64) for n in scorer.class_names}
        )
    out = pd.concat([out, predictions], axis=1)
    out["model_version"] = scorer.version
    return out


class _Writer:
    """Appends chunks to a temporary parquet or CSV file (inside ``atomic_path``)."""

    def __init__(self, tmp: Path, fmt: str) -> None:
        self.tmp, self.fmt = tmp, fmt
        self.parquet: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.wrote_csv_header = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            if self.schema is None:
                self.schema = pa.Schema.from_pandas(frame, preserve_index=False)
                self.parquet = pq.ParquetWriter(self.tmp, self.schema)
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            assert self.parquet is not None
            self.parquet.write_table(table)
        else:
            frame.to_csv(self.tmp, mode="a", header=not self.wrote_csv_header, index=False, float_format="%.6g")
            self.wrote_csv_header = True

    def close(self, empty: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            if self.parquet is None:
                empty.to_parquet(self.tmp, index=False)
            else:
                self.parquet.close()
        elif not self.wrote_csv_header:
            empty.to_csv(self.tmp, index=False)


def run(
    input_path: Path,
    output_path: Path,
    scorer: Scorer,
    *,
    input_format: str = "auto",
    chunk_size: int = DEFAULT_CHUNK,
    on_error: str = "stop",
    errors_path: Path | None = None,
    peaks: str = "detect",
    channel: str | int = 0,
    second_channel: str | int | None = None,
    segment_s: float = SEGMENT_S,
    whole: bool = False,
    progress: bool = True,
    findings_path: Path | None = None,
    report_path: Path | None = None,
    fs_range: tuple[float, float] = DEFAULT_FS_RANGE,
) -> RunReport:
    """Score ``input_path`` into ``output_path``; raises BatchInputError (and writes nothing) on bad input.

    ``errors_path`` gets the skipped rows (``on_error`` skip), only if there are any; an earlier run's file
    there is removed otherwise. For a recording, ``findings_path`` (JSON) and ``report_path`` (a
    self-contained HTML page) get its findings (``ecgbeats.modelling.findings``; the page:
    ``ecgbeats.serving.findings_report``). ``fs_range``: the sampling rates a recording may have (Hz)."""
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be stop or skip, got {on_error!r}")
    fmt = detect_format(input_path) if input_format == "auto" else input_format
    inputs = [_record_base(input_path).with_suffix(ext) for ext in (".hea", ".dat", ".atr")] if fmt == "wfdb" else []
    check_written(
        [input_path, *inputs],
        {"output": output_path, "--errors file": errors_path, "findings": findings_path, "report": report_path},
    )
    if fmt != "wfdb" and not input_path.is_file():
        raise BatchInputError(f"{input_path}: no such file")
    out_fmt = "parquet" if output_path.suffix.lower() in (".parquet", ".pq") else "csv"
    if output_path.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise BatchInputError(f"{output_path}: the output must end in .parquet or .csv")
    signal_input = fmt in ("wfdb", "edf")
    wants_findings = findings_path is not None or report_path is not None
    if wants_findings and not signal_input:
        raise BatchInputError(f"{input_path}: findings and a report need a recording (WFDB or EDF), not beat rows")
    for extra, suffix in ((findings_path, ".json"), (report_path, ".html")):
        if extra is not None and extra.suffix.lower() != suffix:
            raise BatchInputError(f"{extra}: must end in {suffix}")
    if not signal_input and scorer.representation == "record":
        raise BatchInputError(
            f"{input_path}: the model measures beats on the raw record (representation 'record'); "
            "give it a WFDB record or an EDF file, not a beat table"
        )
    unit = "beat"
    unanalysed: list[tuple[float, float, str]] = []
    timeline: list[pd.DataFrame] = []  # the classified beats' times, classes and doubts: the findings' input
    chunks: Iterator[tuple[pd.DataFrame, float]]
    total: float | None
    if fmt == "csv":
        chunks, total = _counted(read_csv_chunks(input_path, chunk_size)), count_rows(input_path, fmt)
    elif fmt == "parquet":
        chunks, total = _counted(read_parquet_chunks(input_path, chunk_size)), count_rows(input_path, fmt)
    elif signal_input and peaks == "annotations":
        if fmt != "wfdb":
            raise BatchInputError(f"{input_path}: --peaks annotations needs a WFDB record with its .atr annotations")
        frame = wfdb_frames(input_path, scorer, channel, second_channel, fs_range)
        chunks, total = _counted(_frame_chunks(frame, chunk_size)), float(len(frame))
    elif signal_input:
        if fmt == "wfdb":
            source = open_wfdb(_record_base(input_path), scorer, channel, second_channel, fs_range)
        else:
            source = open_edf(input_path, scorer, channel, second_channel, fs_range)
        log.info(
            "%s: %.1f h at %g Hz, channel(s) %s; %s", source.name, source.duration_s / 3600, source.fs,
            ", ".join(source.labels),
            "whole signal at once" if whole or segment_s <= 0 else f"streamed in {segment_s:g}-s segments",
        )  # fmt: skip
        chunks = signal_frames(
            source, scorer, segment_s=segment_s, whole=whole, chunk_size=chunk_size, unanalysed=unanalysed
        )
        total, unit = round(source.duration_s, 1), "s"
    else:
        raise BatchInputError(f"unknown input format {fmt!r}")

    report = RunReport()
    errors: list[tuple[int, str]] = []
    bar_format = "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]" if unit == "s" else None
    with (
        atomic_path(output_path) as tmp,
        tqdm(total=total, unit=unit, disable=not progress, bar_format=bar_format) as bar,
    ):
        writer = _Writer(tmp, out_fmt)
        for chunk, advance in chunks:
            bar.update(advance)
            if len(chunk) == 0:  # a stretch with no beat (a long unusable one)
                continue
            checked = (
                row_problems(chunk) if scorer.representation == "beat" else chunk[PROBLEM]
            )  # record: measured here
            problems = chunk[PROBLEM].where(chunk[PROBLEM] != "", checked)
            bad = (problems != "").to_numpy()
            for row, problem in zip(chunk["row"].to_numpy()[bad], problems.to_numpy()[bad], strict=True):
                message = f"{input_path}: row {int(row)}: {problem}"
                if on_error == "stop":
                    raise BatchInputError(message)
                if len(errors) < MAX_LOGGED_ERRORS:
                    log.warning("skipped %s", message)
                errors.append((int(row), str(problem)))
            good = chunk[~bad].reset_index(drop=True)
            scored = score_chunk(scorer, good)
            writer.write(scored)
            if wants_findings:
                timeline.append(scored[[c for c in FINDINGS_COLUMNS if c in scored]])
            report.rows += len(chunk)
            report.scored += len(good)
            report.skipped += int(bad.sum())
        if report.rows == 0:  # raised inside atomic_path: no output file is left behind
            what = "no beats detected in the recording" if signal_input else "the file is empty or has only a header"
            raise BatchInputError(f"{input_path}: no beats to score ({what})")
        writer.close(score_chunk(scorer, chunk.iloc[0:0]))
    if errors_path is not None and errors:
        write_csv(pd.DataFrame(errors, columns=["row", "problem"]), errors_path)
        log.info("the %d skipped row(s) are listed in %s", len(errors), errors_path)
    elif errors_path is not None and errors_path.exists():
        errors_path.unlink()  # it lists an earlier run's rows: left, it would pass for this run's
        log.info("no row skipped; removed the errors file of an earlier run: %s", errors_path)
    if wants_findings:
        write_findings(source, pd.concat(timeline, ignore_index=True), unanalysed, findings_path, report_path, scorer)
    if report.skipped:
        log.warning("%s: skipped %d malformed row(s) of %d", input_path, report.skipped, report.rows)
    return report


def write_findings(
    source: SignalSource,
    beats: pd.DataFrame,
    unanalysed: list[tuple[float, float, str]],
    findings_path: Path | None,
    report_path: Path | None,
    scorer: Scorer,
) -> dict:
    """The recording's findings to JSON and its report page (each written whole or not at all)."""
    from ecgbeats.modelling.findings import recording_findings
    from ecgbeats.serving.findings_report import render_report

    found = recording_findings(beats, source.duration_s, merge_stretches(unanalysed))
    found["recording"] = {"name": source.name, "fs": source.fs, "leads": list(source.labels)}
    found["model"] = {"version": scorer.version, "digest": scorer.digest}
    if findings_path is not None:
        write_json(found, findings_path)
        log.info("findings of %s written to %s", source.name, findings_path)
    if report_path is not None:
        write_text(render_report(found, beats, source.read, source.fs), report_path)
        log.info("report of %s written to %s", source.name, report_path)
    return found


def merge_stretches(stretches: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Overlapping or touching stretches as one (segment contexts report a stretch more than once)."""
    out: list[tuple[float, float, str]] = []
    for start, end, reason in sorted(stretches):
        if out and start <= out[-1][1]:
            last = out[-1]
            out[-1] = (last[0], max(last[1], end), last[2] if last[2] == reason else f"{last[2]}, {reason}")
        else:
            out.append((start, end, reason))
    return out


EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it stopped


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_TERMINATED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecgbeats.serving.batch",
        description="Score beats (parquet, CSV) or a recording (WFDB, EDF) into a parquet or CSV of predictions.",
    )
    parser.add_argument("input", type=Path, help="a .parquet or .csv of beats, a WFDB record path or an .edf file")
    parser.add_argument("output", type=Path, help="the predictions: .parquet or .csv")
    parser.add_argument(
        "--model", type=Path, default=None, help="bundle dir (default: $ECGBEATS_MODEL_DIR or models/record-reference)"
    )
    parser.add_argument("--input-format", choices=["auto", "parquet", "csv", "wfdb", "edf"], default="auto")
    parser.add_argument("--on-error", choices=["stop", "skip"], default="stop", help="on a malformed row")
    parser.add_argument(
        "--errors",
        type=Path,
        default=None,
        help="with --on-error skip: a CSV of the skipped rows, written only if rows were skipped (an earlier "
        "run's file at that path is removed otherwise)",
    )
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--peaks", choices=["detect", "annotations"], default="detect", help="WFDB input: R peaks")
    parser.add_argument("--channel", default="0", help="WFDB/EDF input: the lead to score, by index or label (MLII)")
    parser.add_argument(
        "--second-channel",
        default=None,
        help="WFDB/EDF input: the second lead by index or label, which the detector checks beats against and "
        "a two-lead record model measures on (default: the first other channel in mV, uV or V; -1: none)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=SEGMENT_S,
        help="WFDB/EDF input: score in segments of this many seconds on a fixed grid, streamed "
        "(a multiple of 10; 0: the whole signal in one piece, as the service scores a strip)",
    )
    parser.add_argument(
        "--whole", action="store_true", help="WFDB/EDF input: read the whole signal first (the beats streaming gives)"
    )
    parser.add_argument(
        "--findings", type=Path, help="WFDB/EDF input: the recording's findings (pauses, ectopy, rhythm, HRV) as JSON"
    )
    parser.add_argument(
        "--report", type=Path, help="WFDB/EDF input: the findings as a self-contained HTML page (trends and strips)"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM (a job scheduler's stop) unwinds like Ctrl-C: the temporary output is removed, nothing is left
    signal.signal(signal.SIGTERM, _stop)
    if args.chunk_size < 1:
        parser.error("--chunk-size must be at least 1")
    try:
        settings = load_settings()
        model_dir = args.model or settings.model_dir
        scorer = Scorer(load_bundle(model_dir, settings.model_digest), version=settings.model_version)
        report = run(
            args.input, args.output, scorer,
            input_format=args.input_format, chunk_size=args.chunk_size, on_error=args.on_error,
            errors_path=args.errors, peaks=args.peaks, channel=args.channel, second_channel=args.second_channel,
            segment_s=args.segment_seconds, whole=args.whole, progress=not args.no_progress,
            findings_path=args.findings, report_path=args.report, fs_range=(settings.min_fs, settings.max_fs),
        )  # fmt: skip
    except (BundleError, BatchInputError, SettingsError) as err:
        print(f"ecgbeats batch: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an unwritable output directory, a full disk, an unreadable input
        print(f"ecgbeats batch: {err.strerror or err}: {err.filename or args.output}", file=sys.stderr)
        return 2
    log.info(
        "scored %d of %d rows (%d skipped) with model %s into %s",
        report.scored, report.rows, report.skipped, scorer.version, args.output,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
