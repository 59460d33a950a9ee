"""Where the heavy work runs: in this process (``local``) or on a Dask cluster (``dask``).

The ``compute`` params of a stage become a ``ComputeConfig``; ``compute_client`` turns it into
nothing (local: no Dask process is started and neither this module nor the local path imports
``distributed``) or a connected ``distributed.Client``. With a client:

- tsfresh extraction goes through tsfresh's own Dask distributor (``tsfresh_distributor``; pass it
  as ``distributor=`` to ``ecgbeats.features.tsfresh_features.extract_selected``), or, for beat tables stored
  partitioned by record (``ecgbeats.data.dataset.write_partitioned``), each worker reads its records
  and extracts their features where they are (``partitioned_features``;
  ``extract_selected_partitioned`` writes the partitions to ``ComputeConfig.shared_dir`` first);
- LightGBM trains through ``lightgbm.dask`` (``train_booster_dask``) with the parameters of the
  local trainer (``ecgbeats.modelling.model.lightgbm_params``, ``sample_weights``) and returns a plain
  ``lgb.Booster``, so bundles keep their format.

Early stopping: ``lightgbm.dask`` accepts ``eval_set`` but not early stopping (LightGBM issues
#3712, #4189; setting ``early_stopping_rounds`` is known to hang workers, #6351, #7009). The Dask
trainer therefore runs a fixed number of rounds and then applies the local rule after the fact:
the validation multi-logloss of every iteration is computed exactly (the trees' raw scores summed
iteration by iteration, on the workers when the data is a Dask collection), and the best iteration
is the one ``lgb.early_stopping(patience, first_metric_only=True)`` would have kept.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.modelling.model import lightgbm_params, sample_weights

if TYPE_CHECKING:  # pragma: no cover
    import dask.dataframe as dd
    from distributed import Client

    from ecgbeats.features.tsfresh_features import TsfreshSettings

log = logging.getLogger(__name__)

ENGINES = ("local", "dask")
DEFAULT_CONNECT_TIMEOUT = 10.0
# LightGBM's multi_logloss floor on a probability (kEpsilon in src/metric/multiclass_metric.hpp)
_LOGLOSS_EPSILON = 1e-15
# parameters that belong to one machine, not to the cluster: each Dask worker uses its own threads
_PER_MACHINE_PARAMS = ("num_threads",)


class SchedulerUnreachableError(ConnectionError):
    """The Dask scheduler named in the compute params did not answer within the connect timeout."""


@dataclass(frozen=True)
class ComputeConfig:
    """The ``compute`` params.

    ``engine``: local | dask; ``scheduler``: the scheduler address for dask (``tcp://host:8786``);
    ``connect_timeout``: seconds to reach it; ``num_boost_round``: the rounds ``lightgbm.dask``
    trains, having no early stopping (None: ``train.num_boost_round``); ``shared_dir``: a directory
    the stage writes and every worker reads (local disk for one machine, a shared mount for a
    cluster), where beat tables are put partitioned by record so each worker reads its records only
    (None: beats travel from the client through tsfresh's distributor).
    """

    engine: str = "local"
    scheduler: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    num_boost_round: int | None = None
    shared_dir: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"compute.engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "dask" and not self.scheduler:
            raise ValueError("compute.engine is dask but compute.scheduler (e.g. tcp://host:8786) is not set")
        if not self.connect_timeout > 0:
            raise ValueError(f"compute.connect_timeout must be positive seconds, got {self.connect_timeout!r}")
        if self.num_boost_round is not None and self.num_boost_round < 1:
            raise ValueError(f"compute.num_boost_round must be a positive count, got {self.num_boost_round!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ComputeConfig:
        """From the ``compute`` section of params.yaml (absent or empty: local)."""
        params = dict(params or {})
        unknown = sorted(set(params) - {"engine", "scheduler", "connect_timeout", "num_boost_round", "shared_dir"})
        if unknown:
            raise ValueError(f"unknown compute params: {', '.join(unknown)}")
        timeout, rounds = params.get("connect_timeout"), params.get("num_boost_round")
        return cls(
            engine=params.get("engine") or "local",
            scheduler=params.get("scheduler"),
            connect_timeout=DEFAULT_CONNECT_TIMEOUT if timeout is None else float(timeout),
            num_boost_round=None if rounds is None else int(rounds),
            shared_dir=params.get("shared_dir") or None,
        )


@contextlib.contextmanager
def compute_client(config: ComputeConfig) -> Iterator[Client | None]:
    """``None`` for the local engine; for dask, a client connected to ``config.scheduler``, closed on exit.

    An unreachable scheduler raises ``SchedulerUnreachableError`` (a ``ConnectionError``) naming
    the address, after at most ``connect_timeout`` seconds.
    """
    if config.engine == "local":
        yield None
        return
    from distributed import Client

    try:
        client = Client(config.scheduler, timeout=config.connect_timeout)
    except (OSError, TimeoutError) as err:
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler at {config.scheduler} within {config.connect_timeout:g} s "
            f"(compute.scheduler; is the scheduler running and the port open?): {err}"
        ) from err
    try:
        log.info("Dask scheduler %s: %d workers", config.scheduler, len(client.scheduler_info()["workers"]))
        yield client
    finally:
        client.close()


def tsfresh_distributor(client: Client):
    """tsfresh's ``ClusterDaskDistributor`` on ``client``, for ``extract_selected(..., distributor=...)``.

    tsfresh's own class opens a client of its own (with no connect timeout) and closes it after a
    single ``extract_features`` call; ``extract`` calls it once per chunk of beats. This subclass
    reuses the open client and leaves closing it to ``compute_client``.
    """
    from tsfresh.utilities.distribution import ClusterDaskDistributor

    class _OpenClientDistributor(ClusterDaskDistributor):
        def __init__(self, open_client: Client) -> None:  # no super().__init__: it would connect again
            self.client = open_client

        def close(self) -> None:
            pass

    return _OpenClientDistributor(client)


def read_partitioned_dask(
    directory: str | Path, records: Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> dd.DataFrame:
    """A partitioned beat table (``ecgbeats.data.dataset.write_partitioned``) as a Dask DataFrame.

    Each task reads the files of its records only; ``records`` restricts the table to those
    partitions (a partition filter, the other files are never opened).
    """
    import dask.dataframe as dd

    from ecgbeats.data.dataset import PARTITION_COLUMN, record_partitioning

    filters = [(PARTITION_COLUMN, "in", list(records))] if records is not None else None
    return dd.read_parquet(
        str(directory),
        columns=list(columns) if columns is not None else None,
        filters=filters,
        dataset={"partitioning": record_partitioning()},
    )


def _features_part(beats: pd.DataFrame, settings: TsfreshSettings, keep: Sequence[str]) -> pd.DataFrame:
    from ecgbeats.features.tsfresh_features import extract_selected

    features = extract_selected(beats, settings, n_jobs=0)
    ids = beats[list(keep)].reset_index(drop=True)
    return pd.concat([ids, features], axis=1)


def partitioned_features(
    directory: str | Path,
    settings: TsfreshSettings,
    *,
    records: Sequence[str] | None = None,
    keep: Sequence[str] = ("record", "beat_index", "label"),
) -> dd.DataFrame:
    """The frozen tsfresh features of a partitioned beat table, extracted where each partition is read.

    Lazy: one task per partition reads its records' beats and runs ``extract_selected`` in the
    worker (``n_jobs=0``: the worker's thread is the unit of parallelism). The ``keep`` columns come
    first so the rows can be joined back; then the settings' columns in training order. Compute it
    with the client (``client.compute(frame).result()``) or write it (``frame.to_parquet(...)``).
    """
    beats = read_partitioned_dask(directory, records)
    meta = _features_part(beats._meta, settings, keep)
    return beats.map_partitions(_features_part, settings, list(keep), meta=meta)


ROW_COLUMN = "row"  # a beat's position in the table it came from, carried through the partitions


def extract_selected_partitioned(
    client: Client, beats: pd.DataFrame, settings: TsfreshSettings, directory: str | Path
) -> pd.DataFrame:
    """``extract_selected(beats, settings)`` on the cluster, every worker reading only its own records.

    ``beats`` is written to ``directory`` partitioned by record, with its row positions (the
    directory is replaced as a whole, and removed afterwards); one task per record reads that
    record's file and extracts its beats in the worker. Every worker must be able to read
    ``directory``. The features come back in ``beats``' row order, identical to the local path.
    """
    import shutil

    from ecgbeats.data.dataset import write_partitioned
    from ecgbeats.features.tsfresh_features import extract_selected

    if len(beats) == 0:
        return extract_selected(beats, settings)
    positions = pd.Series(np.arange(len(beats)), name=ROW_COLUMN)
    write_partitioned(pd.concat([beats.reset_index(drop=True), positions], axis=1), directory)
    try:
        frame = client.compute(partitioned_features(directory, settings, keep=(ROW_COLUMN,))).result()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    frame = frame.sort_values(ROW_COLUMN, kind="stable")
    if not np.array_equal(frame[ROW_COLUMN].to_numpy(), np.arange(len(beats))):
        raise RuntimeError(f"{directory}: the workers returned {len(frame)} rows for {len(beats)} beats")
    return frame[settings.columns].reset_index(drop=True)


# --- LightGBM on Dask --------------------------------------------------------------------------


def _as_dask(client: Client, x: Any, y: Any, npartitions: int | None) -> tuple[Any, Any]:
    """Features and labels as aligned Dask collections (pandas input is split into one part per worker)."""
    import dask.dataframe as dd

    if isinstance(x, dd.DataFrame):
        return x, y
    label = "__label__"
    frame = pd.concat([x.reset_index(drop=True), pd.Series(np.asarray(y, dtype=np.int64), name=label)], axis=1)
    # rows in a seeded random order: beat tables are sorted by record, and a worker whose part lacks a
    # class crashes LightGBM's distributed multiclass training (SIGSEGV on the fixtures)
    frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))].reset_index(drop=True)
    parts = npartitions or max(1, len(client.scheduler_info()["workers"]))
    frame = dd.from_pandas(frame, npartitions=parts, sort=True)
    return frame.drop(columns=label), frame[label]


def _weight_lookup(counts: np.ndarray, scheme: str) -> np.ndarray | None:
    """Per-class weights of ``sample_weights`` for these global class counts (one value per class).

    ``sample_weights`` needs the labels themselves; it gets one label array rebuilt from the counts
    (one byte per beat, once, on the client), so the weighting rule lives in ``ecgbeats.modelling.model`` only.
    """
    labels = np.repeat(np.arange(len(counts), dtype=np.int8), counts)
    weights = sample_weights(labels, scheme)
    if weights is None:
        return None
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lookup = np.zeros(len(counts))
    present = counts > 0
    lookup[present] = weights[first[present]]
    return lookup


def _map_weights(labels: pd.Series, lookup: np.ndarray) -> pd.Series:
    return pd.Series(lookup[labels.to_numpy(dtype=np.int64)], index=labels.index, dtype=np.float64)


def _curve_sums(
    booster: lgb.Booster, x: pd.DataFrame, y: Any, lookup: np.ndarray | None, rounds: int
) -> tuple[np.ndarray, float, np.ndarray]:
    """Per iteration: weighted multi-logloss sum and confusion matrix of ``x``; and the weight sum."""
    y = np.asarray(y, dtype=np.int64)
    k = len(CLASS_NAMES)
    w = lookup[y] if lookup is not None else np.ones(len(y))
    raw = np.zeros((len(y), k))
    loss = np.zeros(rounds)
    confusion = np.zeros((rounds, k, k), dtype=np.int64)
    values = x.to_numpy(dtype=np.float64)
    for i in range(rounds):
        step = booster.predict(values, raw_score=True, start_iteration=i, num_iteration=1)
        raw += cast(np.ndarray, step).reshape(len(y), k)  # dense input: an ndarray
        shifted = raw - raw.max(axis=1, keepdims=True)
        proba = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        truth = proba[np.arange(len(y)), y]
        loss[i] = float(np.sum(w * -np.log(np.maximum(truth, _LOGLOSS_EPSILON))))
        confusion[i] = np.bincount(y * k + proba.argmax(axis=1), minlength=k * k).reshape(k, k)
    return loss, float(w.sum()), confusion


def _macro_f1(confusion: np.ndarray) -> float:
    """Macro-F1 over the classes in the truth or the predictions (sklearn's ``f1_score`` default)."""
    tp = np.diag(confusion).astype(np.float64)
    present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    fp, fn = confusion.sum(axis=0) - tp, confusion.sum(axis=1) - tp
    return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))


def evaluation_curves(
    booster: lgb.Booster, x: Any, y: Any, *, weights: np.ndarray | None = None, client: Client | None = None
) -> dict[str, list[float]]:
    """``multi_logloss`` and ``macro_f1`` after every iteration, as ``lgb.record_evaluation`` records them.

    ``weights`` are per-class (LightGBM weighs the loss of a weighted dataset). ``x`` and ``y`` are
    pandas/numpy, or aligned Dask collections (then each partition is scored on its worker and only
    the per-iteration sums travel).
    """
    rounds = booster.current_iteration()
    if client is None or isinstance(x, pd.DataFrame):
        parts = [_curve_sums(booster, x, y, weights, rounds)]
    else:
        from dask import delayed

        tasks = [
            delayed(_curve_sums)(booster, xp, yp, weights, rounds)
            for xp, yp in zip(x.to_delayed(), y.to_delayed(), strict=True)
        ]
        parts = client.gather(client.compute(tasks))
    # parts is never empty, so the sums are arrays (not sum's start value 0)
    loss = cast(np.ndarray, sum(p[0] for p in parts) / sum(p[1] for p in parts))
    confusion = cast(np.ndarray, sum(p[2] for p in parts))
    return {"multi_logloss": [float(v) for v in loss], "macro_f1": [_macro_f1(c) for c in confusion]}


def best_iteration(curve: Sequence[float], patience: int) -> int:
    """The iteration (1-based) ``lgb.early_stopping(patience)`` keeps for a metric to minimise."""
    best, best_at = np.inf, 0
    for i, value in enumerate(curve):
        if value < best:
            best, best_at = value, i
        elif i - best_at >= patience:
            break
    return best_at + 1


def dask_lightgbm_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The local trainer's LightGBM parameters less the per-machine ones (threads: each worker's own)."""
    return {k: v for k, v in lightgbm_params(params, seed).items() if k not in _PER_MACHINE_PARAMS}


def train_booster_dask(
    client: Client,
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    params: dict[str, Any],
    *,
    seed: int,
    num_boost_round: int | None = None,
    npartitions: int | None = None,
    train_curve: bool = True,
) -> tuple[lgb.Booster, dict[str, dict[str, list[float]]]]:
    """``train_booster`` on a Dask cluster: ``lightgbm.dask.DaskLGBMClassifier``, then early stopping after the fact.

    ``x_*``/``y_*``: pandas/numpy (shuffled, then split into ``npartitions`` parts, default one per
    worker) or aligned Dask collections, whose every partition must hold every class (LightGBM's
    distributed multiclass training crashes otherwise): shuffle record-partitioned data first.
    Trains ``num_boost_round`` rounds (default ``params["num_boost_round"]``;
    no early stopping in lightgbm.dask), scores every iteration on the training and validation data,
    and sets ``best_iteration`` by the local rule (``params["early_stopping_rounds"]`` patience on
    the validation multi-logloss). Returns a plain ``lgb.Booster`` and the curves in the shape of
    ``train_booster``'s ``history``. Scoring the training data costs about one more pass over it per
    round; ``train_curve=False`` skips it (``history`` then has ``val`` only).
    """
    from lightgbm.dask import DaskLGBMClassifier

    rounds = int(num_boost_round or params["num_boost_round"])
    x_train, y_train = _as_dask(client, x_train, y_train, npartitions)
    counts = client.compute(y_train.value_counts()).result()
    counts = np.bincount(counts.index.to_numpy(dtype=np.int64), weights=counts.to_numpy(), minlength=len(CLASS_NAMES))
    counts = counts.astype(np.int64)
    if (counts == 0).any():
        absent = [name for name, n in zip(CLASS_NAMES, counts, strict=True) if n == 0]
        raise ValueError(
            f"no training beats of class(es) {', '.join(absent)}: lightgbm.dask's classifier re-encodes the "
            "labels it sees, so the booster would not have the bundle's class order"
        )
    lookup = _weight_lookup(counts, params["class_weight"])
    weights = None if lookup is None else y_train.map_partitions(_map_weights, lookup, meta=("weight", "f8"))
    model = DaskLGBMClassifier(client=client, n_estimators=rounds, **dask_lightgbm_params(params, seed))
    with warnings.catch_warnings():  # the sklearn wrapper always passes n_jobs; lightgbm.dask uses each worker's
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(x_train, y_train, sample_weight=weights)
    booster = model.booster_
    history = {"val": evaluation_curves(booster, x_val, y_val, client=client)}
    if train_curve:
        history["train"] = evaluation_curves(booster, x_train, y_train, weights=lookup, client=client)
    booster.best_iteration = best_iteration(history["val"]["multi_logloss"], int(params["early_stopping_rounds"]))
    log.info("lightgbm.dask: %d rounds, best iteration %d (validation multi-logloss, after the fact)", rounds,
             booster.best_iteration)  # fmt: skip
    return booster, history
