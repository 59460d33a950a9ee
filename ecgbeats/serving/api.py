"""The HTTP service: ``create_app(settings)`` builds a FastAPI app around one model bundle.

Run it with ``python -m ecgbeats.serving`` or ``uvicorn --factory ecgbeats.serving.api:app_from_env``.
The bundle is verified (sha256 manifest) and loaded in the lifespan handler; a missing or tampered
bundle stops the start-up. Every input problem is a 4xx with a JSON body naming the field:

    {"error": "invalid_input", "message": "...", "errors": [{"field": "beats[0].samples[3]", ...}]}
"""

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import anyio
import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ecgbeats
from ecgbeats.data.aami import CLASS_DESCRIPTIONS
from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.rules import range_problem
from ecgbeats.modelling.bundle import BundleError, load_bundle
from ecgbeats.modelling.findings import recording_findings
from ecgbeats.serving.beat_input import NPY_TYPE, BeatArrays, BeatsInputError, json_beats, npy_beats
from ecgbeats.serving.monitoring import ServiceMetrics
from ecgbeats.serving.scoring import (
    MAX_LENGTH,
    MAX_RR_SECONDS,
    VALUE_TOLERANCE,
    Predictions,
    Scorer,
    ScoringError,
    unanalysed_stretches,
)
from ecgbeats.serving.security import AccessGuard, key_ring
from ecgbeats.serving.settings import Settings
from ecgbeats.serving.viewer import include_viewer
from ecgbeats.serving.workers import StripWorkers, WorkerLost

log = logging.getLogger(__name__)

BEATS_PATH = "/v1/beats:classify"
ECG_PATH = "/v1/ecg:classify"
JSON_PATHS = frozenset({BEATS_PATH, ECG_PATH})
KNOWN_FIELDS = frozenset(
    {"body", "beats", "signal", "fs", "content-type", "content-length", "authorization", "request"}
)
# request latency per endpoint (seconds): fine below 0.1 s, where one-beat requests and their alert live
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_REPORTED_ERRORS = 20  # a response lists at most this many field errors (and says how many there were)
# beats scored on the event loop itself: below this the hop to a worker thread costs more than the scoring
# (about 0.5 ms for one beat); larger batches go to a thread so the loop keeps serving
INLINE_BEATS = 16
# the request types of the beats endpoint (the strip endpoint takes JSON only)
MEDIA_TYPES = {BEATS_PATH: ("application/json", NPY_TYPE)}

Probability = Annotated[float, Field(ge=0, le=1)]


# ---------------------------------------------------------------- request and response models


def request_models(settings: Settings) -> tuple[type[BaseModel], type[BaseModel]]:
    """The two request bodies, with the limits of ``settings`` in their (OpenAPI) schema."""
    sample = Annotated[float, Field(ge=-VALUE_TOLERANCE, le=1 + VALUE_TOLERANCE, allow_inf_nan=False)]
    rr = Annotated[float, Field(gt=0, le=MAX_RR_SECONDS, allow_inf_nan=False)] | None

    class Beat(BaseModel):
        """One Kaggle-format beat: 187 values in [0, 1] from the R peak on, zero-padded."""

        model_config = ConfigDict(extra="forbid", strict=True)
        samples: list[sample] = Field(
            min_length=BEAT_SAMPLES,
            max_length=BEAT_SAMPLES,
            description=f"{BEAT_SAMPLES} min-max scaled samples at 120 Hz; values up to {VALUE_TOLERANCE:g} "
            "outside [0, 1] are clipped, others rejected",
        )
        rr_prev: rr = Field(None, description="seconds from the previous R peak; null if unknown")
        rr_next: rr = Field(None, description="seconds to the next R peak; null if unknown")
        rr_local: rr = Field(None, description="mean RR interval (s) around the beat; null if unknown")
        length: int | None = Field(
            None, ge=0, le=MAX_LENGTH, description="samples before the zero padding; default: from the padding"
        )

        @field_validator("samples")
        @classmethod
        def _a_beat(cls, value: list[float]) -> list[float]:
            problem = range_problem(np.asarray(value))
            if problem:
                raise ValueError(problem)
            return value

    class BeatsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        beats: list[Beat] = Field(min_length=1, max_length=settings.max_batch_beats)

    mv = Annotated[float, Field(ge=-settings.max_abs_mv, le=settings.max_abs_mv, allow_inf_nan=False)]

    class StripRequest(BaseModel):
        """A single-lead ECG strip in millivolts (e.g. MIT-BIH MLII)."""

        model_config = ConfigDict(extra="forbid", strict=True)
        fs: float = Field(
            ge=settings.min_fs, le=settings.max_fs, allow_inf_nan=False, description="sampling rate in Hz"
        )
        signal: list[mv] = Field(
            min_length=settings.min_strip_samples,
            max_length=settings.max_strip_samples,
            description=f"samples in mV; {settings.min_strip_seconds:g} s to {settings.max_strip_seconds:g} s long",
        )
        second_lead: list[mv] | None = Field(
            None,
            description="optional second lead in mV, as many samples as signal (MIT-BIH: V1, V2, V4 or V5): "
            "the R-peak detector checks its beats against it (fewer missed and extra beats), and a two-lead "
            "record model measures its beats on it too (treating it as unknown without it)",
        )

        @field_validator("second_lead")
        @classmethod
        def _same_length(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
            signal = info.data.get("signal")
            if value is not None and signal is not None and len(value) != len(signal):
                raise ValueError(f"second_lead has {len(value)} samples, signal has {len(signal)}")
            return value

        @field_validator("signal")
        @classmethod
        def _duration(cls, value: list[float], info: ValidationInfo) -> list[float]:
            fs = info.data.get("fs")
            if fs is not None:
                seconds = len(value) / fs
                if not settings.min_strip_seconds <= seconds <= settings.max_strip_seconds:
                    raise ValueError(
                        f"the strip is {seconds:.3g} s long at {fs:g} Hz; it must be "
                        f"{settings.min_strip_seconds:g} s to {settings.max_strip_seconds:g} s"
                    )
            return value

    return BeatsRequest, StripRequest


class ModelRef(BaseModel):
    version: str
    digest: str = Field(description="sha256 of the bundle's manifest")


class BeatPrediction(BaseModel):
    index: int
    class_code: int = Field(description="0..4 for N, S, V, F, Q")
    class_name: str
    probabilities: dict[str, Probability]


class BeatsResponse(BaseModel):
    model: ModelRef
    predictions: list[BeatPrediction]


class StripBeat(BeatPrediction):
    r_peak: int = Field(description="sample index of the detected R peak in the strip")
    time_s: float = Field(description="time of the R peak from the strip's start")
    rr_prev_s: float | None
    rr_next_s: float | None
    rhythm: str = Field(
        "",
        description="the rhythm context of a record model with the reference measures: `irregular_no_p` where "
        "the preceding beats are irregular and mostly without P waves (atrial fibrillation or flutter), else empty",
    )
    rr_check: str = Field(
        "",
        description="a doubt about the RR interval before this beat, longer than 1.8 times the running RR: "
        "`possible_missed_beat` where QRS-like activity inside it was not taken for a beat (not a pause: "
        "look at the strip), `unusable_signal` where it crosses an unusable stretch; empty otherwise",
    )


class UnusableStretch(BaseModel):
    start_s: float
    end_s: float
    reason: str = Field(description="flat, saturated, noise (no QRS energy) or spike (an artefact, bridged)")


class StripQualitySummary(BaseModel):
    polarity: str = Field(description="`upright`, or `inverted, flipped before measuring` (first lead)")
    qrs_down_up_ratio: float | None = Field(description="median downward / upward QRS deflection, first lead")
    spikes_bridged: int
    unscored_beats: int = Field(description="detected beats in unusable stretches: not classified")
    unusable: list[UnusableStretch]


class StripSummary(BaseModel):
    duration_s: float
    detected_r_peaks: int
    beats: int = Field(
        description="beats classified: detected R peaks in usable stretches (beat-row models: not the last)"
    )
    counts: dict[str, int]
    mean_heart_rate_bpm: float | None
    quality: StripQualitySummary


class UnscoredBeat(BaseModel):
    r_peak: int
    time_s: float
    reason: str


class StripResponse(BaseModel):
    model: ModelRef
    summary: StripSummary
    beats: list[StripBeat]
    unscored: list[UnscoredBeat] = Field(description="detected beats not classified, and why")
    findings: dict[str, Any] = Field(
        description="the strip's findings as a Holter report gives them (heart rate, pauses, ventricular and "
        "supraventricular couplets and runs, bigeminy, atrial fibrillation with a rhythm context, HRV, the "
        "unanalysed stretches): the batch CLI's --findings JSON, keys in reports/findings-schema.md"
    )


# ---------------------------------------------------------------- errors


MAX_ECHO = 120  # characters of client input (a field name, a value) an error message may repeat


def excerpt(text: str, limit: int = MAX_ECHO) -> str:
    """``text``, or its first ``limit`` characters and its length: an error never echoes a large input."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + str(part)
    return excerpt(name) if name else "body"


def error_response(status: int, error: str, message: str, errors: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "message": message, "errors": errors})


def _raw_error_response(
    status: int, error: str, field: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[dict[str, Any], bytes]:
    body = json.dumps(
        {"error": error, "message": message, "errors": [{"field": field, "message": message, "type": error}]}
    ).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        + (headers or []),
    }
    return start, body


@dataclasses.dataclass
class Lane:
    """Admission for one kind of heavy request: ``workers`` at once, ``queue`` more waiting, the rest 503.

    Only requests whose body is in take a place, so every place is a request being scored or ready to be.
    """

    workers: int
    queue: int
    kind: tuple[str, str] = ("request", "requests")  # singular and plural, for the 503 message
    waiting: int = 0
    running: int = 0
    semaphore: asyncio.Semaphore = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.workers)

    @property
    def full(self) -> bool:
        return self.waiting + self.running >= self.workers + self.queue

    def state(self) -> str:
        """What holds the lane, e.g. ``1 strip is being scored and 8 more are queued``."""
        one, many = self.kind
        running = f"{self.running} {one} is" if self.running == 1 else f"{self.running} {many} are"
        return f"{running} being scored and {self.waiting} more {'is' if self.waiting == 1 else 'are'} queued"


@dataclasses.dataclass
class ReceivingBudget:
    """Body bytes held by the requests still sending their body, every lane together.

    Bodies are read before a request takes a place in its lane; this bounds their memory instead.
    """

    limit: int
    held: int = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True


@dataclasses.dataclass
class Progress:
    """How far a request with a body got, for the one line a shutdown logs when it cancels it."""

    stage: str = "checked"  # receiving, queued (for a worker), in_app (being scored or answered)
    received: int = 0
    expected: int | None = None  # the declared content-length
    answered: bool = False  # the response has started

    def describe(self) -> str:
        if self.stage == "receiving":
            of = f" of {self.expected}" if self.expected is not None else ""
            return f"while its body was arriving ({self.received}{of} bytes received)"
        if self.stage == "queued":
            return "while it waited for a worker"
        if self.stage == "in_app":
            return "while it was being scored" if not self.answered else "while its answer was being sent"
        return "before its body was read"


TRIM_AFTER_BYTES = 1_000_000  # after a body this large, give freed memory back to the OS


def _release_free_memory() -> None:
    """glibc keeps freed memory in its arenas; a large strip would otherwise stay in the RSS for good."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class InputGuard:
    """Pure ASGI middleware: admission control, JSON content type, a cap and a deadline on the body.

    A request with a body to any other path (``/health``, ``/``, ``/viewer``: nothing else takes one) gets
    405 before its body is read, and its connection is closed, so no body is held for it.

    A classify request's body is read here first (up to the cap, within ``body_timeout`` seconds, its
    bytes counted against ``receiving``: beyond that budget, 503) and replayed to the app, so a chunked
    upload without a Content-Length is held to the same limits. Only then does the request take a worker
    of its lane (strips and beat batches have their own, so a 30-minute strip does not hold up one-beat
    requests), so a slow upload holds no worker and no queue place. When the lane's workers and queue
    are full the request gets 503 with ``Retry-After``: at once if they are full when its headers arrive,
    before its body is read, else once its body is in.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, body_timeout: float, lanes: dict[str, Lane], retry_after: int,
        metrics: ServiceMetrics, receiving: ReceivingBudget,
    ) -> None:  # fmt: skip
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.lanes = lanes
        self.retry_after = retry_after
        self.metrics = metrics
        self.receiving = receiving

    async def _reject(
        self, send: Send, path: str, status: int, reason: str, field: str, message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:  # fmt: skip
        self.metrics.reject(path if path in JSON_PATHS else "other", reason, field, KNOWN_FIELDS)
        start, body = _raw_error_response(status, reason, field, message, headers)
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        progress = Progress()

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress.answered = True
            await send(message)

        try:
            await self._guarded(scope, receive, tracked, progress)
        except asyncio.CancelledError:
            await self._cancelled(scope, send, progress)

    async def _cancelled(self, scope: Scope, send: Send, progress: Progress) -> None:
        """A request cancelled by a shutdown (uvicorn cancels those still in flight after the graceful
        timeout): one line in the log and, if nothing was sent yet, a 503 telling the client to retry,
        instead of a traceback and a 500 for each."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # the cancellation is handled here: the request ends now
        path = scope.get("path", "")
        log.warning("shutting down: %s %s cancelled %s", scope["method"], excerpt(path), progress.describe())
        if progress.answered:
            return
        start, body = _raw_error_response(
            503, "shutting_down", "request", f"the service is shutting down; retry in {self.retry_after} s",
            [(b"retry-after", str(self.retry_after).encode()), (b"connection", b"close")],
        )  # fmt: skip
        with contextlib.suppress(Exception):  # the client may be gone already
            await send(start)
            await send({"type": "http.response.body", "body": body})

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, progress: Progress) -> None:
        path = scope.get("path", "")
        if path not in JSON_PATHS:  # nothing else takes a body: refused before a byte of it is read
            await self._reject(
                send, path, 405, "method_not_allowed", "method",
                f"{scope['method']} is not accepted here; only {' and '.join(sorted(JSON_PATHS))} take a body",
                [(b"allow", b"GET, HEAD"), (b"connection", b"close")],
            )  # fmt: skip
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path in JSON_PATHS:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            accepted = MEDIA_TYPES.get(path, ("application/json",))
            if media not in accepted:
                await self._reject(
                    send, path, 415, "content_type", "content-type",
                    f"content-type must be {' or '.join(accepted)}, got {media or 'none'!r}",
                )  # fmt: skip
                return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._reject(send, path, 400, "bad_request", "content-length", "content-length is not a number")
                return
            if int(declared) > self.max_body_bytes:
                await self._reject(
                    send, path, 413, "body_too_large", "body",
                    f"the body is {int(declared)} bytes; at most {self.max_body_bytes} are accepted",
                )  # fmt: skip
                return
        lane = self.lanes.get(path)
        if lane is not None and lane.full:  # refused before the client sends a body it would send in vain
            await self._lane_full(send, path, lane)
            return
        progress.expected = int(declared) if declared is not None else None
        body = await self._receive_body(receive, send, path, progress)
        if body is None:
            return  # answered already, or the client left
        size = len(body)
        await self._admit(scope, receive, send, path, lane, body, progress)
        del body
        if size > TRIM_AFTER_BYTES:
            await anyio.to_thread.run_sync(_release_free_memory)

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send, path: str, lane: Lane | None, body: bytes,
        progress: Progress,
    ) -> None:  # fmt: skip
        progress.stage = "in_app"
        if lane is None:
            await self._replayed(scope, receive, send, body)
            return
        if lane.full:
            await self._lane_full(send, path, lane)
            return
        lane.waiting += 1
        progress.stage = "queued"
        try:
            await lane.semaphore.acquire()
        finally:
            lane.waiting -= 1
        progress.stage = "in_app"
        lane.running += 1
        try:
            await self._replayed(scope, receive, send, body)
        finally:
            lane.running -= 1
            lane.semaphore.release()

    async def _lane_full(self, send: Send, path: str, lane: Lane) -> None:
        await self._reject(
            send, path, 503, "overloaded", "request",
            f"{lane.state()}, the most accepted; retry in {self.retry_after} s",
            [(b"retry-after", str(self.retry_after).encode())],
        )  # fmt: skip

    async def _receive_body(self, receive: Receive, send: Send, path: str, progress: Progress) -> bytes | None:
        """The whole body, or None once the request is answered (413, 408, 503) or the client has left."""
        chunks: list[bytes] = []
        size = 0
        progress.stage = "receiving"
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    if size + len(chunk) > self.max_body_bytes:
                        await self._reject(
                            send, path, 413, "body_too_large", "body",
                            f"the body is over {self.max_body_bytes} bytes, the most accepted",
                        )  # fmt: skip
                        return None
                    if not self.receiving.take(len(chunk)):
                        await self._reject(
                            send, path, 503, "overloaded", "body",
                            f"requests whose bodies are being received hold {self.receiving.held} bytes, the most "
                            f"accepted at once; retry in {self.retry_after} s",
                            [(b"retry-after", str(self.retry_after).encode()), (b"connection", b"close")],
                        )  # fmt: skip
                        return None
                    size += len(chunk)
                    progress.received = size
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._reject(
                send, path, 408, "request_timeout", "body",
                f"the body was not complete after {self.body_timeout:g} s ({size} bytes received)",
                [(b"connection", b"close")],
            )  # fmt: skip
            return None
        finally:
            self.receiving.held -= size  # from here a lane bounds the bodies held (its workers and queue)
        return b"".join(chunks)

    async def _replayed(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        """The app, given the body already read."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---------------------------------------------------------------- the app


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def beats_response(scorer: Scorer, predictions: Predictions) -> Response:
    """The ``BeatsResponse`` of ``predictions``, encoded by orjson (no response-model pass: the values
    are the model's own, and tests/api/test_fast_path.py checks the body against the model)."""
    names = predictions.class_names
    body = {
        "model": {"version": scorer.version, "digest": scorer.digest},
        "predictions": [
            {
                "index": i,
                "class_code": code,
                "class_name": names[code],
                "probabilities": dict(zip(names, row, strict=True)),
            }
            for i, (code, row) in enumerate(
                zip(predictions.codes.tolist(), predictions.probabilities.tolist(), strict=True)
            )
        ],
    }
    return Response(orjson.dumps(body), media_type="application/json")


def score_beat_arrays(scorer: Scorer, beats: BeatArrays) -> Predictions:
    return scorer.score_arrays(beats.samples, lengths=beats.lengths, rr=beats.rr)


def beats_route(
    fast: Callable[[Request], Coroutine[Any, Any, Response | None]],
) -> type[APIRoute]:
    """A route whose handler first tries ``fast`` and, when it returns None, runs the endpoint as FastAPI
    does: the request model validates the body (and words any 422) before the endpoint scores it."""

    class FastBeatsRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            validated = super().get_route_handler()

            async def handler(request: Request) -> Response:
                response = await fast(request)
                return response if response is not None else await validated(request)

            return handler

    return FastBeatsRoute


def _probabilities(predictions: Predictions) -> list[dict[str, float]]:
    names = predictions.class_names
    return [{names[j]: float(row[j]) for j in range(len(names))} for row in predictions.probabilities]


def _load_test_metrics(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    # clients see the file's name and hash, never the server's paths or OS error text (those go to the log)
    try:
        raw = path.read_bytes()
    except OSError as err:  # reported, not fatal: the model itself is fine
        log.warning("cannot read the test metrics %s: %s", path, err)
        return {"source": path.name, "error": "the test metrics file cannot be read"}
    try:
        return {"source": path.name, "sha256": hashlib.sha256(raw).hexdigest(), "metrics": json.loads(raw)}
    except ValueError as err:
        log.warning("the test metrics %s are not JSON: %s", path, err)
        return {"source": path.name, "error": "the test metrics file is not valid JSON"}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for ``settings`` (default: from the ``ECGBEATS_*`` environment variables)."""
    settings = settings or Settings()
    BeatsRequest, StripRequest = request_models(settings)  # noqa: N806 (classes)
    metrics = ServiceMetrics(list(CLASS_DESCRIPTIONS))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            bundle = load_bundle(settings.model_dir, settings.model_digest)  # the pin is checked first
        except BundleError as err:
            log.error("refusing to start: %s", err)
            raise
        if bundle.reference is not None:
            metrics.enable_drift(bundle.reference, window=settings.drift_window, min_beats=settings.drift_min_beats)
        else:
            log.warning("the bundle has no reference profile (reference.json): drift gauges are disabled")
        scorer = Scorer(
            bundle, version=settings.model_version, observers=[metrics.observe], num_threads=settings.predict_threads
        )
        metrics.class_names = scorer.class_names
        workers = StripWorkers(scorer, settings.model_dir, settings.model_digest, settings.strip_workers)
        await anyio.to_thread.run_sync(workers.warm_up)  # ready means strips can be scored too
        app.state.strip_workers = workers
        app.state.scorer = scorer
        app.state.test_metrics = _load_test_metrics(settings.test_metrics)
        metrics.model_info.info(
            {"version": scorer.version, "digest": scorer.digest, "protocol": str(bundle.meta.get("protocol"))}
        )
        metrics.model_loaded.set(1)
        # the libraries, the model and the app live as long as the process: taken out of the collector's
        # reach, a full collection no longer walks them (on this machine one took 128 ms in 3,000 one-beat
        # requests, the slowest request by far; reports/deployment.md)
        gc.collect()
        gc.freeze()
        log.info("serving model %s (digest %s) from %s", scorer.version, scorer.digest, settings.model_dir)
        yield
        metrics.model_loaded.set(0)
        app.state.scorer = None
        workers.close()

    app = FastAPI(
        title="ecgbeats",
        version=ecgbeats.__version__,
        summary="Classifies single ECG heartbeats into the AAMI classes N, S, V, F, Q",
        description=(
            (
                "Access control is off (`ECGBEATS_AUTH=off`): every endpoint is open. "
                if settings.auth == "off"
                else "Every endpoint but `/health`, `/ready` and the viewer needs `Authorization: Bearer <key>` "
                "(401 without a known key, 403 with a key of the other scope). "
            )
            + "Limits (`GET /v1/model` → `limits`): request headers "
            f"within {settings.header_timeout:g} s and the body within {settings.body_timeout:g} s, else 408; "
            f"an idle kept-alive connection is closed after {settings.keep_alive_timeout:g} s; "
            f"at most {settings.max_connections} open connections (beyond, idle ones are closed first); "
            f"bodies still being received hold at most {settings.max_receiving_bytes} bytes together; "
            f"strips ({settings.strip_workers} at once) and beat batches ({settings.beat_workers} at once), "
            f"once their body is in, each queue at most {settings.max_queued} more; beyond any of these limits "
            f"the answer is 503 with `Retry-After: {settings.retry_after}`."
        ),
        lifespan=lifespan,
    )
    app.state.scorer = None
    app.state.settings = settings
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # never echo the input back: it may hold NaN (not JSON) or megabytes of samples
        raw = exc.errors()
        errors = [
            {
                "field": "body" if e.get("type") == "json_invalid" else _field_name(e.get("loc", ())),
                "message": excerpt(str(e.get("msg", ""))),
                "type": str(e.get("type", "")),
            }
            for e in raw[:MAX_REPORTED_ERRORS]
        ]
        endpoint = request.url.path if request.url.path in JSON_PATHS else "other"
        metrics.reject(endpoint, "validation", errors[0]["field"] if errors else "body", KNOWN_FIELDS)
        more = f" (the first {MAX_REPORTED_ERRORS} listed)" if len(raw) > MAX_REPORTED_ERRORS else ""
        first = f"{errors[0]['field']}: {errors[0]['message']}" if errors else "invalid request"
        return error_response(422, "invalid_input", f"{len(raw)} invalid field(s){more}; {first}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own 400 for a body it cannot decode (e.g. not UTF-8), 404, 405: the same JSON shape
        field = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "request")
        if exc.status_code == 400:
            endpoint = request.url.path if request.url.path in JSON_PATHS else "other"
            metrics.reject(endpoint, "bad_request", field, KNOWN_FIELDS)
        message = str(exc.detail)
        response = error_response(
            exc.status_code, "http_error", message, [{"field": field, "message": message, "type": "http_error"}]
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(WorkerLost)
    async def _worker_lost(request: Request, exc: WorkerLost) -> JSONResponse:
        log.error("%s", exc)
        answer = error_response(503, "worker_lost", f"{exc}; retry in {settings.retry_after} s", [])
        answer.headers["Retry-After"] = str(settings.retry_after)
        return answer

    @app.exception_handler(ScoringError)
    async def _unscorable(request: Request, exc: ScoringError) -> JSONResponse:
        endpoint = request.url.path if request.url.path in JSON_PATHS else "other"
        metrics.reject(endpoint, "unscorable", exc.field, KNOWN_FIELDS)
        return error_response(
            422,
            "unscorable",
            f"{exc.field}: {exc.message}",
            [{"field": exc.field, "message": exc.message, "type": "unscorable"}],
        )

    def scorer_of(request: Request) -> Scorer:
        scorer = request.app.state.scorer
        if scorer is None:  # only between start-up and lifespan, which uvicorn does not serve
            raise RuntimeError("the model is not loaded")
        return scorer

    @app.get("/health", tags=["ops"], summary="The process is alive")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    keys = key_ring(settings)

    @app.get(
        "/ready",
        tags=["ops"],
        summary="The model is loaded",
        description='200 `{"status": "ready"}` or 503 `{"status": "not ready"}`, open to load balancers; with '
        "access control on, the served model's version and digest and the reason for not being ready are "
        "added only for a caller with a key (client or metrics)",
        responses={503: {"description": "not ready"}},
    )
    def ready(request: Request) -> JSONResponse:
        # an open probe tells no stranger which model (and so which known weaknesses) is served
        known = keys.authenticated(request.scope)
        scorer = request.app.state.scorer
        if scorer is None:
            return JSONResponse(status_code=503, content={"status": "not ready"})
        workers = getattr(request.app.state, "strip_workers", None)
        if workers is not None and workers.replacing:
            reason = {"reason": "a strip worker is being replaced"} if known else {}
            return JSONResponse(status_code=503, content={"status": "not ready"} | reason)
        if not known:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "ready", "model_version": scorer.version, "model_digest": scorer.digest})

    @app.get("/v1/model", tags=["model"], summary="Version, provenance and metrics of the served model")
    def model_info(request: Request) -> dict[str, Any]:
        scorer = scorer_of(request)
        meta = scorer.bundle.meta
        # read only when drift is enabled, which lifespan does only for a bundle with a reference profile
        reference = cast(dict[str, Any], scorer.bundle.reference)
        return {
            "version": scorer.version,
            "digest": scorer.digest,
            "service_version": ecgbeats.__version__,
            "protocol": meta.get("protocol"),
            "classes": [
                {"code": i, "name": name, "description": CLASS_DESCRIPTIONS.get(name, "")}
                for i, name in enumerate(scorer.class_names)
            ],
            "preprocessing": (
                dataclasses.asdict(scorer.bundle.preprocessing)
                if scorer.representation == "beat"
                else meta["preprocessing"]
            ),
            "patient_context": meta.get("patient_context"),
            "rhythm_rules": meta.get("rhythm_rules"),
            "expected_on_new_patients": meta.get("expected_on_new_patients"),
            "features": {"groups": meta["features"]["groups"], "count": len(meta["features"]["columns"])},
            "provenance": meta.get("provenance"),
            "training": meta.get("training"),
            "validation": meta.get("validation"),
            "test": request.app.state.test_metrics,
            "drift": None
            if metrics.drift is None
            else {
                "reference": {k: reference.get(k) for k in ("source", "n_beats", "thresholds")},
                "features": metrics.drift.features,
                "window": metrics.drift.window,
                "min_beats": metrics.drift.min_beats,
            },
            "limits": {
                "max_batch_beats": settings.max_batch_beats,
                "max_body_bytes": settings.max_body_bytes,
                "fs_hz": [settings.min_fs, settings.max_fs],
                "strip_seconds": [settings.min_strip_seconds, settings.max_strip_seconds],
                "max_abs_mv": settings.max_abs_mv,
                "value_tolerance": VALUE_TOLERANCE,
                # beyond these a client gets 408 or 503 with Retry-After (README, "Limits under load")
                "header_timeout_s": settings.header_timeout,
                "body_timeout_s": settings.body_timeout,
                "keep_alive_timeout_s": settings.keep_alive_timeout,
                "max_connections": settings.max_connections,
                "max_receiving_bytes": settings.max_receiving_bytes,
                "strip_workers": settings.strip_workers,
                "beat_workers": settings.beat_workers,
                "max_queued": settings.max_queued,
                "retry_after_s": settings.retry_after,
            },
        }

    def beats_refused(scorer: Scorer) -> ScoringError:
        return ScoringError(
            "beats",
            f"the served model measures beats on the raw ECG around them (representation "
            f"{scorer.representation!r}); send the strip to {ECG_PATH}",
        )

    async def classify_beats_fast(request: Request) -> Response | None:
        """Valid beats straight to arrays and the scorer; None leaves the request to the request model."""
        scorer = scorer_of(request)
        npy = request.headers.get("content-type", "").split(";")[0].strip().lower() == NPY_TYPE
        if scorer.representation != "beat":
            if npy:
                raise beats_refused(scorer)
            return None  # JSON: validated first, then refused, as always
        body = await request.body()
        if npy:
            try:
                beats = npy_beats(body, settings.max_batch_beats)
            except BeatsInputError as err:
                raise RequestValidationError(err.errors) from None
        else:
            found = json_beats(body, settings.max_batch_beats)
            if found is None:
                return None
            beats = found
        if len(beats) <= INLINE_BEATS:
            predictions = score_beat_arrays(scorer, beats)
        else:
            predictions = await anyio.to_thread.run_sync(score_beat_arrays, scorer, beats)
        return beats_response(scorer, predictions)

    def classify_beats(body: BeatsRequest, request: Request) -> Response:  # type: ignore[valid-type]
        # reached only with a body the fast path left to the request model: it is valid here
        scorer = scorer_of(request)
        if scorer.representation != "beat":
            raise beats_refused(scorer)
        beats = body.beats  # type: ignore[attr-defined]
        arrays = BeatArrays(
            samples=np.array([b.samples for b in beats], dtype=np.float64),
            lengths=np.array([np.nan if b.length is None else b.length for b in beats], dtype=np.float64),
            rr={
                col: np.array([np.nan if getattr(b, col) is None else getattr(b, col) for b in beats], dtype=float)
                for col in ("rr_prev", "rr_next", "rr_local")
            },
        )
        return beats_response(scorer, score_beat_arrays(scorer, arrays))

    app.router.add_api_route(
        BEATS_PATH,
        classify_beats,
        methods=["POST"],
        route_class_override=beats_route(classify_beats_fast),
        tags=["classify"],
        summary="Classify a batch of Kaggle-format beats",
        description="The body is JSON (`BeatsRequest`), or a NumPy `.npy` float32/float64 array "
        f"(`content-type: {NPY_TYPE}`) of shape (n, 187), the samples, or (n, 191): the samples, then `length`, "
        "`rr_prev`, `rr_next`, `rr_local`, NaN where unknown. The same rules apply to both; errors name the "
        "fields of the JSON form (`beats[3].samples[12]`).",
        response_model=BeatsResponse,
        responses={413: {"description": "body too large"}, 415: {"description": "neither JSON nor .npy"}},
        openapi_extra={
            "requestBody": {
                "content": {NPY_TYPE: {"schema": {"type": "string", "format": "binary", "description": "a .npy array"}}}
            }
        },
    )

    @app.post(
        ECG_PATH,
        tags=["classify"],
        summary="Detect, measure and classify the beats of a raw ECG strip (one lead, or two)",
        description="R peaks are detected on `signal`. A record model (`/v1/model` → `preprocessing.representation` "
        "`record`) measures each beat on the strip around it: its features use up to "
        "`patient_context.history_seconds` of signal before the beat (the first beats of a shorter strip get a "
        "shorter patient context), and a beat's class is final once the next R peak and "
        "`patient_context.latency_seconds_after_r` after its own R peak are in the strip; the last beat has no "
        "next RR interval. A beat-row model cuts Kaggle beats from `signal` (every beat but the last).",
        response_model=StripResponse,
        responses={413: {"description": "body too large"}, 415: {"description": "not JSON"}},
    )
    async def classify_ecg(body: StripRequest, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]
        scorer = scorer_of(request)
        signal = np.asarray(body.signal, dtype=np.float64)  # type: ignore[attr-defined]
        second = body.second_lead  # type: ignore[attr-defined]
        fs = float(body.fs)  # type: ignore[attr-defined]
        leads = signal if second is None else np.column_stack([signal, np.asarray(second, dtype=np.float64)])
        result = await request.app.state.strip_workers.score_strip(leads, fs)  # in a worker process
        beats = result.beats
        probabilities = _probabilities(result.predictions)
        names = result.predictions.names
        summary = result.summary()
        summary["duration_s"] = len(signal) / fs
        # RR intervals around each classified beat, among every detected peak (unscored ones too)
        at = np.searchsorted(result.peaks, beats["r_peak"].to_numpy())
        rr_prev = np.diff(result.peaks, prepend=np.nan)[at] / fs
        rr_next = np.diff(result.peaks, append=np.nan)[at] / fs
        rhythm = beats["rhythm"].to_numpy() if "rhythm" in beats else None
        rr_check = beats["rr_check"].to_numpy()
        findings = recording_findings(
            beats.assign(class_name=names), len(signal) / fs, unanalysed_stretches(result.quality.unusable, fs)
        )
        return {
            "model": {"version": scorer.version, "digest": scorer.digest},
            "summary": summary,
            "beats": [
                {
                    "index": i,
                    "r_peak": int(beats["r_peak"].iat[i]),
                    "time_s": float(beats["time_s"].iat[i]),
                    "rr_prev_s": _finite_or_none(float(rr_prev[i])),
                    "rr_next_s": _finite_or_none(float(rr_next[i])),
                    "class_code": int(code),
                    "class_name": names[i],
                    "probabilities": probabilities[i],
                    "rhythm": str(rhythm[i]) if rhythm is not None else "",
                    "rr_check": str(rr_check[i]),
                }
                for i, code in enumerate(result.predictions.codes)
            ],
            "unscored": [
                {"r_peak": int(r), "time_s": float(t), "reason": str(why)}
                for r, t, why in result.unscored[["r_peak", "time_s", "reason"]].itertuples(index=False)
            ],
            "findings": findings,
        }

    lanes = {
        ECG_PATH: Lane(settings.strip_workers, settings.max_queued, ("strip", "strips")),
        BEATS_PATH: Lane(settings.beat_workers, settings.max_queued, ("beat batch", "beat batches")),
    }
    app.add_middleware(
        InputGuard, max_body_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout, lanes=lanes,
        retry_after=settings.retry_after, metrics=metrics, receiving=ReceivingBudget(settings.max_receiving_bytes),
    )  # fmt: skip
    # outside the input guard: a request without a valid key is refused before its body is read
    app.add_middleware(
        AccessGuard, keys=keys,
        on_refusal=lambda path, reason: metrics.reject(
            path if path in JSON_PATHS else "other", reason, "authorization", KNOWN_FIELDS
        ),
    )  # fmt: skip
    # added last, so outermost: requests the guard rejects are counted and timed too
    Instrumentator(registry=metrics.registry, excluded_handlers=["/metrics"]).instrument(
        app, latency_lowr_buckets=LATENCY_BUCKETS
    ).expose(
        app, include_in_schema=True, tags=["ops"], summary="Prometheus metrics",
        response_class=PlainTextResponse,  # declared as the text it is, not the default JSON
        responses={200: {"description": "the Prometheus text exposition format, version 0.0.4"}},
    )  # fmt: skip
    include_viewer(app)  # the /viewer page and / (ecgbeats/serving/viewer.py)
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory ecgbeats.serving.api:app_from_env``: settings from the environment."""
    return create_app(Settings())
