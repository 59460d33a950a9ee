"""Strips are scored in worker processes, so a long strip never holds the service's interpreter.

Scoring a 30-minute strip takes a fraction of a second of CPU, some of it Python (the detector's filters and
the feature table): in a thread it holds the GIL, and one-beat requests, ``/health`` and the event
loop wait for it. Each worker process loads the same verified bundle once (the pin checked again) and
runs ``Scorer.score_strip``; the parent gets the result and the features the model saw, and feeds its
own observers (prediction counters, drift), so monitoring sees every beat as before.

A worker that dies (the kernel's out-of-memory killer, a native crash) breaks the pool: the strips in
it fail with :class:`WorkerLost` (the API answers 503), a new pool is started at once and warmed in the
background, and :attr:`StripWorkers.replacing` is true until it is (``/ready`` says not ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.serving.scoring import Scorer, StripResult

_scorer: Scorer | None = None  # the worker process's own


@dataclass(frozen=True)
class ScoredStrip:
    result: StripResult
    features: pd.DataFrame  # what the model saw, for the parent's observers


def _start(model_dir: Path, digest: str | None, version: str | None, threads: int | None) -> None:
    global _scorer
    _scorer = Scorer(load_bundle(model_dir, digest), version=version, num_threads=threads)
    _scorer.warm_up()


def _score(leads: np.ndarray, fs: float) -> ScoredStrip:
    assert _scorer is not None, "the worker was not started"
    seen: list[pd.DataFrame] = []
    _scorer.observers = [lambda features, _: seen.append(features)]
    result = _scorer.score_strip(leads, fs)
    result.quality.signal = np.empty(0)  # the strip itself need not travel back
    with contextlib.suppress(OSError, AttributeError):  # give a large strip's memory back (glibc)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return ScoredStrip(result, seen[0] if seen else pd.DataFrame())


class WorkerLost(RuntimeError):
    """A strip worker stopped while this strip was in the pool; the workers are being replaced."""


class StripWorkers:
    """``processes`` worker processes scoring strips for ``scorer`` (the parent's, for its observers)."""

    def __init__(self, scorer: Scorer, model_dir: Path, digest: str | None, processes: int) -> None:
        self.scorer = scorer
        self.processes = processes
        self._initargs = (model_dir, digest, scorer.version, scorer.num_threads)
        self.pool = self._new_pool()
        self.replacing = False  # a broken pool's successor is starting
        self.replaced = 0  # pools replaced since the start
        self._warming: asyncio.Task[None] | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a fresh interpreter, not a fork of a process with a running event loop and threads
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=self._initargs,
        )

    async def score_strip(self, leads: np.ndarray, fs: float) -> StripResult:
        pool = self.pool
        try:
            scored = await asyncio.get_running_loop().run_in_executor(pool, _score, leads, fs)
        except BrokenProcessPool as err:
            self._replace(pool)
            raise WorkerLost("a strip worker stopped while this strip was being scored; it is being replaced") from err
        if len(scored.result.beats):
            for observe in self.scorer.observers:
                observe(scored.features, scored.result.predictions.probabilities)
        return scored.result

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A new pool for a broken one (once, whichever strip saw it first), warmed in the background."""
        if self.pool is not broken:
            return
        broken.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        self.replaced += 1
        self.replacing = True

        async def warm() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.warm_up)
            finally:
                self.replacing = False

        self._warming = asyncio.get_running_loop().create_task(warm())

    def warm_up(self) -> None:
        """Start every worker now (loading the bundle), not on the first strip."""
        for future in [self.pool.submit(int) for _ in range(self.processes)]:
            future.result()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers: queued strips are cancelled, a strip in hand gets ``timeout`` seconds, then
        its process is terminated. Waiting matters: uvicorn ends the process by raising again the SIGTERM
        it caught, which skips the executor's exit handler, and workers never told to stop outlive it."""
        workers = multiprocessing.active_children()  # the service starts no other processes
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.terminate()
                worker.join(1.0)
