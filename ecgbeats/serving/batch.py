"""Batch scoring: beats from a parquet or CSV file, or a WFDB record, to a parquet or CSV of predictions.

    python -m ecgbeats.serving.batch INPUT OUTPUT [--model DIR] [--on-error stop|skip] ...

Inputs:
- parquet: a beat table (``s000``..``s186``; ``length``, ``rr_prev``, ``rr_next``, ``rr_local``,
  ``label`` and the other beat-table columns are used or carried along when present);
- CSV: the published Kaggle format (no header; 187 values, optionally a 188th label column), or a
  CSV with a header row naming at least ``s000``..``s186``;
- a WFDB record (``path/to/208`` or ``path/to/208.hea``): the first channel (``--channel``) in mV,
  R peaks detected by XQRS as the API does (``--peaks detect``), or the annotated beats exactly
  as ``ingest`` cuts them (``--peaks annotations``, needs the ``.atr`` file). A record model (the
  default served one) measures each beat on the record itself, on both leads (``--second-channel``),
  and takes only WFDB records.

Every beat goes through ``ecgbeats.serving.scoring.Scorer``, the code path of the API. Input is read
and scored in chunks with a progress bar. A malformed row (wrong column count, a value that is not
a finite number, out of range) is reported with its row number (1-based, data rows; header not
counted): ``--on-error stop`` (default) stops the run, ``--on-error skip`` scores the other rows
(``--errors FILE`` lists the skipped ones). The output is written to a temporary file and renamed
only when the whole run succeeds, so a failed or interrupted run leaves no output behind.

Exit codes: 0 done (rows may have been skipped with ``--on-error skip``); 2 bad input or model, an empty
input, an output that would overwrite the input, or an output that cannot be written (one line on
stderr); 143 stopped by SIGTERM (the partial output is removed).
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS, InputDataError, record_beats
from ecgbeats.features.groups import RR_COLUMNS
from ecgbeats.features.record import annotated_beats
from ecgbeats.io import atomic_path, write_csv
from ecgbeats.modelling.bundle import BundleError, load_bundle
from ecgbeats.serving.scoring import Scorer, ScoringError, frame_to_beats, row_problems
from ecgbeats.serving.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 5000
MAX_LOGGED_ERRORS = 20
# columns carried from the input into the predictions when present
CARRIED = ["record", "beat_index", "r_peak", "r_refined", "time_s", "symbol", "label", "length", *RR_COLUMNS]
PROBLEM = "_problem"


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
    if name.endswith(".hea") or path.with_name(path.name + ".hea").is_file():
        return "wfdb"
    raise BatchInputError(f"{path}: cannot tell the format (use .parquet, .csv, a WFDB record, or --input-format)")


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


def _record_base(path: Path) -> Path:
    return path.with_suffix("") if path.suffix == ".hea" else path


def wfdb_frames(
    path: Path, scorer: Scorer, peaks: str, channel: int, second_channel: int | None = None
) -> pd.DataFrame:
    """The beat table of a WFDB record, at detected or annotated R peaks.

    A ``record`` bundle measures the beats on ``channel`` and, when it uses two leads, on
    ``second_channel`` (default: the record's other signal); with annotated peaks exactly as its
    training beats were measured (``ecgbeats.features.record.annotated_beats``).
    """

    base = _record_base(path)
    if scorer.record_config is not None:
        return _record_frame(base, scorer, peaks, channel, second_channel)
    if peaks == "annotations":
        try:
            preprocessing = scorer.bundle.preprocessing  # cut as the model's training beats were
            frame = record_beats(base.parent, base.name, local_rr_beats=preprocessing.local_rr_beats,
                                 beat_end=preprocessing.beat_end)  # fmt: skip
        except InputDataError as err:
            raise BatchInputError(str(err)) from err
        if channel != 0:
            raise BatchInputError("--peaks annotations cuts the first channel, as ingest does; drop --channel")
        frame["time_s"] = np.nan
        return frame
    return _detected_frame(base, scorer, [channel])


def _record_frame(base: Path, scorer: Scorer, peaks: str, channel: int, second_channel: int | None) -> pd.DataFrame:
    import wfdb

    config = scorer.record_config
    assert config is not None
    if peaks == "annotations":
        if channel != 0 or second_channel not in (None, 1):
            raise BatchInputError("--peaks annotations measures the record's signals as training did; drop --channel")
        try:
            frame = annotated_beats(base.parent, base.name, config)
        except InputDataError as err:
            raise BatchInputError(str(err)) from err
        frame["beat_index"] = np.arange(len(frame))
        return frame
    try:
        header = wfdb.rdheader(str(base))
    except Exception as err:
        raise BatchInputError(f"record {base}: cannot read the header: {err}") from err
    channels = [channel]
    if config.leads == 2:
        other = (
            second_channel
            if second_channel is not None
            else next((c for c in range(header.n_sig) if c != channel), None)
        )
        if other is not None and other >= 0:
            channels.append(other)
    if any(not 0 <= c < header.n_sig for c in channels):
        raise BatchInputError(f"record {base} has {header.n_sig} signal(s); channels {channels} asked for")
    return _detected_frame(base, scorer, channels)


def _detected_frame(base: Path, scorer: Scorer, channels: list[int]) -> pd.DataFrame:
    """The beats the scorer detects and measures on ``channels`` of a record (the first is detected on)."""
    import wfdb

    try:
        record = wfdb.rdrecord(str(base), channels=channels)
    except Exception as err:  # wfdb raises many kinds on missing or damaged files
        raise BatchInputError(f"record {base}: cannot read channel(s) {channels}: {err}") from err
    columns = []
    for i, channel in enumerate(channels):
        units = (record.units or ["mV"] * len(channels))[i]
        scale = {"mv": 1.0, "uv": 1e-3, "v": 1e3}.get(str(units).lower())
        if scale is None:
            raise BatchInputError(f"record {base}: channel {channel} is in {units!r}, expected mV")
        signal = np.asarray(record.p_signal)[:, i] * scale
        if not np.isfinite(signal).all():
            bad = int(np.argmin(np.isfinite(signal)))
            raise BatchInputError(f"record {base}: sample {bad} of channel {channel} is not a finite number")
        columns.append(signal)
    try:
        _, frame, _ = scorer.strip_beats(
            columns[0] if len(columns) == 1 else np.column_stack(columns), float(record.fs)
        )
    except ScoringError as err:
        raise BatchInputError(f"record {base}: {err.message}") from err
    unscored = frame.pop("unscored")
    if (unscored != "").any():
        reasons = unscored[unscored != ""].value_counts()
        log.warning(
            "record %s: %d beat(s) in unusable stretches are not classified (%s)", base.name, int(reasons.sum()),
            ", ".join(f"{count} {reason}" for reason, count in reasons.items()),
        )  # fmt: skip
        frame = frame[(unscored == "").to_numpy()].reset_index(drop=True)
    frame.insert(0, "record", base.name)
    frame["beat_index"] = np.arange(len(frame))
    return frame


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
    channel: int = 0,
    second_channel: int | None = None,
    progress: bool = True,
) -> RunReport:
    """Score ``input_path`` into ``output_path``; raises BatchInputError (and writes nothing) on bad input."""
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be stop or skip, got {on_error!r}")
    fmt = detect_format(input_path) if input_format == "auto" else input_format
    inputs = [_record_base(input_path).with_suffix(ext) for ext in (".hea", ".dat", ".atr")] if fmt == "wfdb" else []
    if any(output_path.resolve() == p.resolve() for p in (input_path, *inputs)):
        raise BatchInputError(f"{output_path}: the output would overwrite the input; name another file")
    if fmt != "wfdb" and not input_path.is_file():
        raise BatchInputError(f"{input_path}: no such file")
    out_fmt = "parquet" if output_path.suffix.lower() in (".parquet", ".pq") else "csv"
    if output_path.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise BatchInputError(f"{output_path}: the output must end in .parquet or .csv")
    if fmt != "wfdb" and scorer.representation == "record":
        raise BatchInputError(
            f"{input_path}: the model measures beats on the raw record (representation 'record'); "
            "give it a WFDB record, not a beat table"
        )
    if fmt == "csv":
        chunks, total = read_csv_chunks(input_path, chunk_size), count_rows(input_path, fmt)
    elif fmt == "parquet":
        chunks, total = read_parquet_chunks(input_path, chunk_size), count_rows(input_path, fmt)
    elif fmt == "wfdb":
        frame = wfdb_frames(input_path, scorer, peaks, channel, second_channel)
        chunks, total = _frame_chunks(frame, chunk_size), len(frame)
    else:
        raise BatchInputError(f"unknown input format {fmt!r}")

    report = RunReport()
    errors: list[tuple[int, str]] = []
    with atomic_path(output_path) as tmp, tqdm(total=total, unit="beat", disable=not progress) as bar:
        writer = _Writer(tmp, out_fmt)
        for chunk in chunks:
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
            writer.write(score_chunk(scorer, good))
            report.rows += len(chunk)
            report.scored += len(good)
            report.skipped += int(bad.sum())
            bar.update(len(chunk))
        if report.rows == 0:  # raised inside atomic_path: no output file is left behind
            raise BatchInputError(f"{input_path}: no beats to score (the file is empty or has only a header)")
        writer.close(score_chunk(scorer, chunk.iloc[0:0]))
    if errors_path is not None:
        write_csv(pd.DataFrame(errors, columns=["row", "problem"]), errors_path)
    if report.skipped:
        log.warning("%s: skipped %d malformed row(s) of %d", input_path, report.skipped, report.rows)
    return report


EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it stopped


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_TERMINATED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecgbeats.serving.batch",
        description="Score beats (parquet, CSV) or a WFDB record into a parquet or CSV of predictions.",
    )
    parser.add_argument("input", type=Path, help="a .parquet or .csv of beats, or a WFDB record path")
    parser.add_argument("output", type=Path, help="the predictions: .parquet or .csv")
    parser.add_argument(
        "--model", type=Path, default=None, help="bundle dir (default: $ECGBEATS_MODEL_DIR or models/record)"
    )
    parser.add_argument("--input-format", choices=["auto", "parquet", "csv", "wfdb"], default="auto")
    parser.add_argument("--on-error", choices=["stop", "skip"], default="stop", help="on a malformed row")
    parser.add_argument("--errors", type=Path, default=None, help="with --on-error skip: a CSV of skipped rows")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--peaks", choices=["detect", "annotations"], default="detect", help="WFDB input: R peaks")
    parser.add_argument("--channel", type=int, default=0, help="WFDB input: the channel to score")
    parser.add_argument("--second-channel", type=int, default=None,
                        help="WFDB input, two-lead record model: the second lead (default: the record's other "
                        "signal; -1: none, its measures are then unknown)")  # fmt: skip
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
            progress=not args.no_progress,
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
