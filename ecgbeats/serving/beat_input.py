"""Beat batches from a request body into arrays, without a Python object per value.

Two request types of ``POST /v1/beats:classify``:

- ``application/json``: :func:`json_beats` parses it with orjson and checks it with numpy. It accepts
  only what the request model (``ecgbeats.serving.api.request_models``) accepts, to the same values:
  it returns None for anything else, however harmless, and the request model then validates the body
  and words the 422 (so every error names the same field as before).
- ``application/x-npy``: :func:`npy_beats` reads a NumPy ``.npy`` float array of shape (n, 187), the
  samples, or (n, 191), the samples then ``length``, ``rr_prev``, ``rr_next``, ``rr_local`` with NaN
  for unknown; it checks the rules of ``ecgbeats.data.rules`` and raises :class:`BeatsInputError`
  with errors in the request model's form (``beats[3].samples[12]``, ``beats[0].rr_prev``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.rules import MAX_LENGTH, MAX_RR_SECONDS, MIN_BEAT_RANGE, VALUE_TOLERANCE, range_problem

NPY_TYPE = "application/x-npy"
RR_NAMES = ("rr_prev", "rr_next", "rr_local")
BEAT_KEYS = frozenset({"samples", "length", *RR_NAMES})
NPY_COLUMNS = (BEAT_SAMPLES, BEAT_SAMPLES + 1 + len(RR_NAMES))  # samples; samples, length, rr_*
MAX_ERRORS = 21  # one more than a response lists, so it can say there were more


@dataclass(frozen=True)
class BeatArrays:
    samples: np.ndarray  # (n, 187) float64 or float32
    lengths: np.ndarray  # (n,) float64, NaN: from the zero padding
    rr: dict[str, np.ndarray]  # (n,) float64 each, NaN: unknown

    def __len__(self) -> int:
        return len(self.samples)


class BeatsInputError(ValueError):
    """Beats that break the rules; ``errors`` in pydantic's form (type, loc, msg) for the 422 handler."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


def _rules_hold(samples: np.ndarray, lengths: np.ndarray, rr: np.ndarray) -> bool:
    with np.errstate(invalid="ignore"):
        if not (np.isfinite(samples).all() and (samples >= -VALUE_TOLERANCE).all()):
            return False
        if not (samples <= 1 + VALUE_TOLERANCE).all():
            return False
        if not (samples.max(axis=1) - samples.min(axis=1) >= MIN_BEAT_RANGE).all():
            return False
        known = ~np.isnan(rr)
        return bool((np.isfinite(rr[known]) & (rr[known] > 0) & (rr[known] <= MAX_RR_SECONDS)).all())


def json_beats(body: bytes, max_beats: int) -> BeatArrays | None:
    """The beats of a valid JSON body; None when the request model must judge it (see the module notes)."""
    # JSON true/false is never valid here, and numpy would read it as 1/0: leave those to the model
    if b"true" in body or b"false" in body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or data.keys() != {"beats"}:
        return None
    beats = data["beats"]
    if type(beats) is not list or not 1 <= len(beats) <= max_beats:
        return None
    n = len(beats)
    lengths = np.full(n, np.nan)
    rr = np.full((n, len(RR_NAMES)), np.nan)
    rows = []
    try:
        for i, beat in enumerate(beats):
            if type(beat) is not dict or not beat.keys() <= BEAT_KEYS or type(beat.get("samples")) is not list:
                return None
            rows.append(beat["samples"])
            if len(beat) == 1:
                continue
            length = beat.get("length")
            if length is not None:
                if type(length) is not int or not 0 <= length <= MAX_LENGTH:  # the model's int is strict
                    return None
                lengths[i] = length
            for j, name in enumerate(RR_NAMES):
                value = beat.get(name)
                if value is not None:
                    if type(value) is not float and type(value) is not int:
                        return None
                    rr[i, j] = value
        samples = np.array(rows)  # no dtype: a string, null or huge integer gives a non-number dtype
    except (ValueError, OverflowError):  # ragged rows, an integer beyond float64
        return None
    if samples.dtype.kind not in "fi" or samples.shape != (n, BEAT_SAMPLES):
        return None
    samples = samples.astype(np.float64, copy=False)
    if not _rules_hold(samples, lengths, rr):
        return None
    return BeatArrays(samples, lengths, {name: rr[:, j] for j, name in enumerate(RR_NAMES)})


def _npy_array(body: bytes, max_beats: int) -> np.ndarray:
    """The array of an .npy body, its header checked before any allocation (never unpickled)."""

    def refuse(message: str) -> BeatsInputError:
        return BeatsInputError([{"type": "npy_invalid", "loc": ("body",), "msg": message}])

    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as err:
        raise refuse(f"not a NumPy .npy array: {str(err)[:120]}") from None
    if dtype.kind != "f" or dtype.hasobject:
        raise refuse(f"the array's dtype is {dtype.str}; send float32 or float64")
    if len(shape) != 2 or shape[1] not in NPY_COLUMNS:
        raise refuse(
            f"the array's shape is {shape}; send (n, {BEAT_SAMPLES}) samples, or (n, {NPY_COLUMNS[1]}): "
            "the samples, then length, rr_prev, rr_next, rr_local (NaN: unknown)"
        )
    if not 1 <= shape[0] <= max_beats:
        raise BeatsInputError([
            {"type": "too_long", "loc": ("body", "beats"), "msg": f"{shape[0]} beats; send 1 to {max_beats}"}
        ])  # fmt: skip
    size = shape[0] * shape[1] * dtype.itemsize
    if len(body) - stream.tell() != size:
        raise refuse(f"the header announces {size} bytes of data, the body holds {len(body) - stream.tell()}")
    return np.frombuffer(body, dtype=dtype, offset=stream.tell()).reshape(shape, order="F" if fortran else "C")


def npy_beats(body: bytes, max_beats: int) -> BeatArrays:
    """The beats of an ``application/x-npy`` body, or :class:`BeatsInputError` naming each bad field."""
    array = _npy_array(body, max_beats).astype(np.float64)
    samples = array[:, :BEAT_SAMPLES]
    n = len(array)
    extra = array[:, BEAT_SAMPLES:] if array.shape[1] > BEAT_SAMPLES else np.full((n, 1 + len(RR_NAMES)), np.nan)
    lengths, rr = extra[:, 0], extra[:, 1:]
    if _rules_hold(samples, lengths, rr) and _lengths_hold(lengths):
        return BeatArrays(samples, lengths, {name: rr[:, j] for j, name in enumerate(RR_NAMES)})
    raise BeatsInputError(_npy_errors(samples, lengths, rr))


def _lengths_hold(lengths: np.ndarray) -> bool:
    known = lengths[~np.isnan(lengths)]
    return bool(((known >= 0) & (known <= MAX_LENGTH) & (known == np.round(known))).all())


def _npy_errors(samples: np.ndarray, lengths: np.ndarray, rr: np.ndarray) -> list[dict[str, Any]]:
    """The request model's errors for the same beats, in row order (at most ``MAX_ERRORS``)."""
    errors: list[dict[str, Any]] = []

    def add(kind: str, loc: tuple[Any, ...], msg: str) -> bool:
        errors.append({"type": kind, "loc": ("body", "beats", *loc), "msg": msg})
        return len(errors) >= MAX_ERRORS

    with np.errstate(invalid="ignore"):
        bad_value = ~np.isfinite(samples) | (samples < -VALUE_TOLERANCE) | (samples > 1 + VALUE_TOLERANCE)
        rr_bad = ~np.isnan(rr) & ~(np.isfinite(rr) & (rr > 0) & (rr <= MAX_RR_SECONDS))
        length_bad = ~np.isnan(lengths) & ~((lengths >= 0) & (lengths <= MAX_LENGTH) & (lengths == np.round(lengths)))
    for i in range(len(samples)):
        for j in np.flatnonzero(bad_value[i]):
            value = samples[i, j]
            if not np.isfinite(value):
                kind, msg = "finite_number", "Input should be a finite number"
            elif value < -VALUE_TOLERANCE:
                kind, msg = "greater_than_equal", f"Input should be greater than or equal to {-VALUE_TOLERANCE}"
            else:
                kind, msg = "less_than_equal", f"Input should be less than or equal to {1 + VALUE_TOLERANCE}"
            if add(kind, (i, "samples", int(j)), msg):
                return errors
        if not bad_value[i].any():
            problem = range_problem(samples[i])
            if problem and add("value_error", (i, "samples"), f"Value error, {problem}"):
                return errors
        for k, name in enumerate(RR_NAMES):
            if rr_bad[i, k] and add(
                "rr_range", (i, name), f"{rr[i, k]:g} is not in (0, {MAX_RR_SECONDS:g}] seconds (NaN: unknown)"
            ):
                return errors
        if length_bad[i] and add(
            "length_range", (i, "length"), f"{lengths[i]:g} is not a whole number in [0, {MAX_LENGTH}] (NaN: unknown)"
        ):
            return errors
    return errors
