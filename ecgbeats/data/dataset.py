"""The beat table: one row per heartbeat, from WFDB records or from the published Kaggle CSVs.

Both sources give the same schema: provenance columns (record, beat index, R-peak sample,
annotation symbol, lead), rhythm columns (unpadded length, RR intervals) and the 187 scaled
samples ``s000``..``s186``. Kaggle CSV rows carry no record, so those fields are empty there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb
from tqdm import tqdm

from ecgbeats.data.aami import BEAT_SYMBOLS, CLASS_NAMES, SYMBOL_TO_LABEL
from ecgbeats.data.beats import BEAT_SAMPLES, cut_beats, rr_intervals
from ecgbeats.data.rules import RR_COLUMNS, SAMPLE_COLUMNS, row_problems

log = logging.getLogger(__name__)

META_COLUMNS: list[str] = [
    "record", "beat_index", "r_peak", "symbol", "lead", "label",
    "length", "rr_prev", "rr_next", "rr_local", "kaggle_split",
]  # fmt: skip
FIRST_CHANNEL = 0
KAGGLE_FILES = {"train": "mitbih_train.csv", "test": "mitbih_test.csv"}


class InputDataError(ValueError):
    """Input data that cannot be turned into beats; the message names the file and row or record."""


# where a beat ends: after the next beat annotation, or after the next annotation of any type
BEAT_ENDS = ("next_beat", "next_annotation")


@dataclass(frozen=True)
class RecordSignals:
    """One record as read: every signal in millivolts and the reference annotations."""

    signal: np.ndarray  # (samples, leads) float64, mV
    fs: float
    leads: list[str]
    ann_samples: np.ndarray
    ann_symbols: list[str]


def _read_wfdb(directory: str | Path, record: str, *, physical: bool) -> tuple[wfdb.Record, wfdb.Annotation]:
    """A record and its ``atr`` annotations, with a clear error for a missing, truncated or damaged file."""
    base = Path(directory) / record
    for ext in ("hea", "dat", "atr"):
        if not base.with_suffix(f".{ext}").is_file():
            raise InputDataError(f"record {record}: {base}.{ext} is missing")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as err:  # wfdb raises bare ValueError/IndexError on damaged files
        raise InputDataError(f"record {record}: cannot read {base}.hea: {err}") from err
    dat_size = base.with_suffix(".dat").stat().st_size
    needed = _format_bytes(header.fmt, header.n_sig, header.sig_len)
    if needed is not None and dat_size < needed:
        raise InputDataError(
            f"record {record}: {base}.dat is {dat_size} bytes, its header needs {needed} (truncated file)"
        )
    try:
        rec = wfdb.rdrecord(str(base), physical=physical)
    except Exception as err:
        raise InputDataError(f"record {record}: cannot read {base}.dat: {err}") from err
    try:
        ann = wfdb.rdann(str(base), "atr")
    except Exception as err:
        raise InputDataError(f"record {record}: cannot read {base}.atr: {err}") from err
    return rec, ann


def read_record(directory: str | Path, record: str) -> tuple[np.ndarray, float, str, np.ndarray, list[str]]:
    """Read one record: (first-channel signal in ADC units, fs, lead name, ann samples, ann symbols).

    The published beats come from each record's first channel: MLII in 45 records, V5 in 102,
    104 (no MLII, surgical dressings) and 114 (leads swapped); the ``lead`` column says which.
    """
    rec, ann = _read_wfdb(directory, record, physical=False)
    lead = rec.sig_name[FIRST_CHANNEL]
    signal = rec.d_signal[:, FIRST_CHANNEL]
    return signal, float(rec.fs), lead, np.asarray(ann.sample), list(ann.symbol)


def read_record_signals(directory: str | Path, record: str) -> RecordSignals:
    """Read one record with all its signals in millivolts (the record representation's input)."""
    rec, ann = _read_wfdb(directory, record, physical=True)
    signal = np.asarray(rec.p_signal, dtype=np.float64)
    bad = ~np.isfinite(signal)
    if bad.any():  # wfdb marks invalid samples as NaN; the filters need numbers: hold the last good value
        signal = pd.DataFrame(signal).ffill().bfill().fillna(0.0).to_numpy()
    return RecordSignals(signal, float(rec.fs), list(rec.sig_name), np.asarray(ann.sample), list(ann.symbol))


def _format_bytes(fmt: list[str], n_sig: int, n_samples: int) -> int | None:
    """Bytes a .dat file needs for the formats MIT-BIH uses (212: 12 bits, 16: 16 bits)."""
    if len(set(fmt)) != 1:
        return None
    bits = {"212": 12, "16": 16, "80": 8}.get(fmt[0])
    return None if bits is None else (bits * n_sig * n_samples + 7) // 8


def record_beats(
    directory: str | Path, record: str, *, local_rr_beats: int = 10, beat_end: str = "next_beat"
) -> pd.DataFrame:
    """The beat rows of one record: every AAMI-class beat but the record's last.

    ``beat_end`` (:data:`BEAT_ENDS`): a beat runs to the ``next_beat`` annotation plus a fifth of the
    interval after it, or to the ``next_annotation`` of any type (rhythm change, noise, comment...),
    which is the published Kaggle procedure (:mod:`ecgbeats.data.beats`).
    """
    if beat_end not in BEAT_ENDS:
        raise ValueError(f"beat_end must be one of {BEAT_ENDS}, got {beat_end!r}")
    signal, fs, lead, ann_samples, ann_symbols = read_record(directory, record)
    symbols = np.asarray(ann_symbols, dtype=object)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    beat_peaks = ann_samples[is_beat]
    rr = rr_intervals(beat_peaks, fs, local_rr_beats)

    is_aami = np.isin(symbols, list(SYMBOL_TO_LABEL))
    peaks = ann_samples[is_aami]
    beats = cut_beats(signal, fs, peaks, bounds=ann_samples if beat_end == "next_annotation" else None)
    kept = peaks[:-1]
    frame = pd.DataFrame(
        {
            "record": record,
            "beat_index": np.arange(len(kept), dtype=np.int32),
            "r_peak": kept.astype(np.int64),
            "symbol": symbols[is_aami][:-1].astype(str),
            "lead": lead,
            "label": [SYMBOL_TO_LABEL[s] for s in symbols[is_aami][:-1]],
            "length": beats.lengths.astype(np.int32),
            **{key: values[np.searchsorted(beat_peaks, kept)] for key, values in rr.items()},
            "kaggle_split": None,
        }
    )
    frame["label"] = frame["label"].astype(np.int8)
    return pd.concat([frame, pd.DataFrame(beats.samples, columns=SAMPLE_COLUMNS)], axis=1)


def build_beat_table(
    directory: str | Path,
    records: list[str],
    *,
    local_rr_beats: int = 10,
    beat_end: str = "next_beat",
    progress: bool = True,
) -> pd.DataFrame:
    """Beat rows of all ``records``, in record order (``beat_end``: see :func:`record_beats`)."""
    parts = [
        record_beats(directory, record, local_rr_beats=local_rr_beats, beat_end=beat_end)
        for record in tqdm(records, desc="records", unit="record", disable=not progress)
    ]
    return _typed(pd.concat(parts, ignore_index=True))


def padded_length(samples: np.ndarray) -> np.ndarray:
    """Samples before the trailing zero padding, per row: the position after the last non-zero sample.

    The published Kaggle rows carry no length; this recovers it (0 for an all-zero row).
    """
    nonzero = np.asarray(samples) != 0
    return np.where(nonzero.any(axis=1), BEAT_SAMPLES - np.argmax(nonzero[:, ::-1], axis=1), 0)


def read_kaggle_csv(path: str | Path, split: str | None = None) -> pd.DataFrame:
    """Read a published Kaggle CSV (187 values then the label per row) into the beat schema."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: no such file")
    try:
        # blank lines kept (as NaN rows, reported below): row numbers stay line numbers
        values = pd.read_csv(path, header=None, dtype=np.float64, skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError):
        values = None  # text or ragged rows: the slow path below finds and names the first one
    if values is None or values.shape[1] != BEAT_SAMPLES + 1 or not np.isfinite(values.to_numpy()).all():
        _raise_first_bad_cell(path)
    labels = values.iloc[:, -1].to_numpy()
    valid = np.isin(labels, np.arange(len(CLASS_NAMES)))
    if not valid.all():
        row = int(np.argmin(valid))
        raise InputDataError(f"{path}: row {row + 1}: label {float(labels[row]):g} is not one of 0..4")
    samples = values.iloc[:, :BEAT_SAMPLES].to_numpy(dtype=np.float32)
    problems = row_problems(pd.DataFrame(values.iloc[:, :BEAT_SAMPLES].to_numpy(), columns=SAMPLE_COLUMNS))
    if (problems != "").any():  # the rules of the API and the batch CLI (ecgbeats.data.rules)
        row = int(np.argmax((problems != "").to_numpy()))
        raise InputDataError(f"{path}: row {row + 1}: {problems.iat[row]}")
    lengths = padded_length(samples)
    frame = pd.DataFrame(
        {
            "record": None,
            "beat_index": pd.array([pd.NA] * len(samples), dtype="Int32"),
            "r_peak": pd.array([pd.NA] * len(samples), dtype="Int64"),
            "symbol": None,
            "lead": None,
            "label": labels.astype(np.int8),
            "length": lengths.astype(np.int32),
            "rr_prev": np.nan,
            "rr_next": np.nan,
            "rr_local": np.nan,
            "kaggle_split": split,
        }
    )
    return _typed(pd.concat([frame, pd.DataFrame(samples, columns=SAMPLE_COLUMNS)], axis=1))


def _raise_first_bad_cell(path: Path) -> None:
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            cells = line.rstrip("\r\n").split(",")
            if not line.strip():
                raise InputDataError(f"{path}: row {number} is empty")
            if len(cells) != BEAT_SAMPLES + 1:
                raise InputDataError(
                    f"{path}: row {number}: {len(cells)} columns, expected {BEAT_SAMPLES + 1} (187 samples and a label)"
                )
            for column, cell in enumerate(cells, start=1):
                try:
                    finite = np.isfinite(float(cell))
                except ValueError:
                    finite = False
                if not finite:
                    raise InputDataError(f"{path}: row {number}, column {column}: {cell!r} is not a finite number")
    raise InputDataError(f"{path}: cannot be parsed as a Kaggle beat CSV")


def read_kaggle_dir(directory: str | Path) -> pd.DataFrame:
    """Both published CSVs, with the published train/test split kept in ``kaggle_split``."""
    parts = [read_kaggle_csv(Path(directory) / name, split) for split, name in KAGGLE_FILES.items()]
    return pd.concat(parts, ignore_index=True)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[META_COLUMNS + SAMPLE_COLUMNS].copy()
    for col in ("record", "symbol", "lead", "kaggle_split"):
        frame[col] = frame[col].astype("string")
    frame["beat_index"] = frame["beat_index"].astype("Int32")
    frame["r_peak"] = frame["r_peak"].astype("Int64")
    for col in RR_COLUMNS:
        frame[col] = frame[col].astype(np.float32)
    frame[SAMPLE_COLUMNS] = frame[SAMPLE_COLUMNS].astype(np.float32)
    return frame


def load_beats(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def class_counts(labels: pd.Series | np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    return {name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)}


# A beat table partitioned by record: one parquet file per record, ``<directory>/record=<name>/``
# (hive partitioning), so a Dask worker reads the records it was given and nothing else.
PARTITION_COLUMN = "record"
PARTITION_FILE = "part-0.parquet"


def record_partitioning():
    """The pyarrow hive partitioning of a partitioned beat table: ``record`` stays a string ("100", not 100)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    return ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive")


def write_partitioned(beats: pd.DataFrame, directory: str | Path) -> list[str]:
    """Write ``beats`` as ``directory/record=<name>/part-0.parquet``, one file per record; return the records.

    The directory is replaced as a whole (written aside, then renamed), so no stale record survives.
    Kaggle CSV rows carry no record and cannot be partitioned by it.
    """
    from ecgbeats.io import atomic_dir

    unnamed = int(beats[PARTITION_COLUMN].isna().sum())
    if unnamed:
        raise InputDataError(f"{directory}: {unnamed} beats have no record to partition by")
    records = []
    with atomic_dir(directory) as tmp:
        for record, part in beats.groupby(PARTITION_COLUMN, sort=True, observed=True):
            dest = tmp / f"{PARTITION_COLUMN}={record}"
            dest.mkdir()
            part.drop(columns=PARTITION_COLUMN).to_parquet(dest / PARTITION_FILE, index=False)
            records.append(str(record))
    return records


def partitioned_records(directory: str | Path) -> list[str]:
    """The records of a partitioned beat table, sorted."""
    prefix = f"{PARTITION_COLUMN}="
    return sorted(p.name[len(prefix) :] for p in Path(directory).glob(f"{prefix}*") if p.is_dir())


def read_partitioned(directory: str | Path, records: list[str] | None = None) -> pd.DataFrame:
    """The beats of ``records`` (all by default) of a partitioned table, in record order, in the beat schema.

    Only the files of those records are opened (a partition filter). Within a record the rows keep
    their written order.
    """
    import pyarrow.parquet as pq

    if not Path(directory).is_dir():
        raise InputDataError(f"{directory}: no such partitioned beat table")
    missing = sorted(set(records or ()) - set(partitioned_records(directory)))
    if missing:
        raise InputDataError(f"{directory}: no partition for record(s) {', '.join(missing)}")
    filters = [(PARTITION_COLUMN, "in", list(records))] if records is not None else None
    table = pq.read_table(directory, partitioning=record_partitioning(), filters=filters)
    frame = table.to_pandas()
    frame[PARTITION_COLUMN] = frame[PARTITION_COLUMN].astype("string")
    order = np.argsort(frame[PARTITION_COLUMN].to_numpy(dtype=object), kind="stable")
    return _typed(frame.iloc[order].reset_index(drop=True))
