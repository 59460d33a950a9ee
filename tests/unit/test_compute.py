"""The compute switch: local (no Dask) or a Dask cluster, on a LocalCluster of 2 workers x 1 thread.

Guarantees: tsfresh features on the cluster (tsfresh's Dask distributor, and per-partition
extraction from a table partitioned by record) are identical to the local path, bit for bit;
``lightgbm.dask`` gives a model whose validation macro-F1 is within ``MACRO_F1_TOLERANCE`` of the
local trainer's on the same data (its bins are found per worker and its bagging draws per worker,
so the trees differ); the after-the-fact early stopping reproduces LightGBM's own curves and best
iteration; the local engine starts no Dask; an unreachable scheduler fails fast, naming its address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from ecgbeats.data.dataset import InputDataError, partitioned_records, read_partitioned, write_partitioned
from ecgbeats.features.groups import build_features
from ecgbeats.features.tsfresh_features import extract, extract_selected, freeze
from ecgbeats.modelling.model import predict_proba, train_booster
from ecgbeats.operations.compute import (
    ComputeConfig,
    SchedulerUnreachableError,
    _weight_lookup,
    best_iteration,
    compute_client,
    evaluation_curves,
    extract_selected_partitioned,
    partitioned_features,
    read_partitioned_dask,
    train_booster_dask,
    tsfresh_distributor,
)

MACRO_F1_TOLERANCE = 0.05  # |macro-F1 (lightgbm.dask) - macro-F1 (local)| on the same validation beats
CALCULATORS = {"mean": None, "maximum": None, "standard_deviation": None, "skewness": None, "abs_energy": None,
               "cid_ce": [{"normalize": True}], "autocorrelation": [{"lag": 3}],
               "fft_coefficient": [{"coeff": 1, "attr": "abs"}, {"coeff": 2, "attr": "angle"}],
               "ratio_beyond_r_sigma": [{"r": 1}], "length": None}  # fmt: skip
TRAIN_PARAMS = {"class_weight": "balanced", "num_boost_round": 300, "early_stopping_rounds": 20, "log_every": 0,
                "num_threads": 1, "learning_rate": 0.1, "num_leaves": 15, "max_depth": -1, "min_child_samples": 20,
                "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l1": 0.0,
                "lambda_l2": 1.0}  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        memory_limit="2GiB",
    ) as local_cluster:  # fmt: skip
        yield local_cluster


@pytest.fixture(scope="module")
def client(cluster):
    with compute_client(ComputeConfig("dask", cluster.scheduler_address, connect_timeout=20)) as connected:
        yield connected


@pytest.fixture(scope="module")
def settings(fixture_beats):
    columns = extract(fixture_beats.iloc[:50], CALCULATORS).columns
    return freeze(list(columns))


@pytest.fixture(scope="module")
def split(fixture_beats):
    x = build_features(fixture_beats, ["samples", "length", "rr"])
    y = fixture_beats["label"].to_numpy(dtype=np.int64)
    return train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- config and connection ---------------------------------------------------------------------


def test_config_from_params_and_validation():
    assert ComputeConfig.from_params(None) == ComputeConfig("local", None)
    config = ComputeConfig.from_params(
        {"engine": "dask", "scheduler": "tcp://10.0.0.5:8786", "connect_timeout": 3, "num_boost_round": 400}
    )
    assert (config.engine, config.scheduler, config.connect_timeout) == ("dask", "tcp://10.0.0.5:8786", 3.0)
    assert config.num_boost_round == 400 and config.shared_dir is None
    assert ComputeConfig.from_params({"shared_dir": "/mnt/shared/ecg"}).shared_dir == "/mnt/shared/ecg"
    with pytest.raises(ValueError, match="num_boost_round"):
        ComputeConfig("local", num_boost_round=0)
    with pytest.raises(ValueError, match="engine"):
        ComputeConfig("spark")
    with pytest.raises(ValueError, match="scheduler"):
        ComputeConfig("dask")
    with pytest.raises(ValueError, match="unknown compute params: workers"):
        ComputeConfig.from_params({"engine": "local", "workers": 4})


def test_local_engine_starts_no_dask():
    """In a fresh interpreter: the local engine and the local extraction never import ``distributed``."""
    code = """
import sys, threading
from ecgbeats.operations.compute import ComputeConfig, compute_client
assert not [m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")], "compute imported dask"
with compute_client(ComputeConfig.from_params({"engine": "local"})) as client:
    assert client is None
    import numpy as np, pandas as pd
    from ecgbeats.data.dataset import SAMPLE_COLUMNS
    from ecgbeats.features.tsfresh_features import extract_selected, freeze
    beats = pd.DataFrame(np.random.default_rng(0).random((5, 187)), columns=SAMPLE_COLUMNS).assign(length=150)
    assert extract_selected(beats, freeze(["beat__mean"])).shape == (5, 1)
assert "distributed" not in sys.modules, "the local path imported distributed"
names = [t.name for t in threading.enumerate()]
assert set(names) <= {"MainThread", "tqdm_monitor"}, names  # no Dask event loop, profiler or executor threads
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_unreachable_scheduler_fails_fast_and_names_the_address():
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    with (
        pytest.raises(SchedulerUnreachableError, match=address.replace(".", r"\.")) as caught,
        compute_client(ComputeConfig("dask", address, connect_timeout=1)),
    ):
        pass  # pragma: no cover
    assert isinstance(caught.value, ConnectionError)
    assert time.monotonic() - start < 15


# --- partitioned beat tables -------------------------------------------------------------------


def test_partition_round_trip(tmp_path, fixture_beats):
    directory = tmp_path / "beats"
    records = write_partitioned(fixture_beats, directory)
    assert records == partitioned_records(directory) == sorted(fixture_beats["record"].unique())
    assert sorted(p.parent.name for p in directory.glob("record=*/*.parquet")) == [f"record={r}" for r in records]
    pd.testing.assert_frame_equal(read_partitioned(directory), fixture_beats)
    some = ["213", "124"]
    expected = fixture_beats[fixture_beats["record"].isin(some)].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_partitioned(directory, some), expected)
    with pytest.raises(InputDataError, match="999"):
        read_partitioned(directory, ["999"])
    kaggle_like = fixture_beats.head(3).assign(record=pd.array([None] * 3, dtype="string"))
    with pytest.raises(InputDataError, match="no record"):
        write_partitioned(kaggle_like, tmp_path / "kaggle")


def test_dask_reads_only_the_requested_partitions(tmp_path, fixture_beats):
    directory = tmp_path / "beats"
    write_partitioned(fixture_beats, directory)
    frame = read_partitioned_dask(directory)
    assert frame.npartitions == fixture_beats["record"].nunique()  # one file, one task per record
    some = read_partitioned_dask(directory, ["124", "213"], columns=["record", "label"]).compute(scheduler="sync")
    assert sorted(some["record"].unique()) == ["124", "213"]
    assert len(some) == fixture_beats["record"].isin(["124", "213"]).sum()


# --- tsfresh on the cluster --------------------------------------------------------------------


@pytest.mark.dask
def test_tsfresh_distributor_gives_identical_features(client, fixture_beats, settings):
    beats = fixture_beats.iloc[::2]
    local = extract_selected(beats, settings, n_jobs=0)
    # several chunks: the distributor (and its client) must survive tsfresh's close() after each
    on_cluster = extract_selected(beats, settings, distributor=tsfresh_distributor(client), chunk_beats=250)
    pd.testing.assert_frame_equal(on_cluster, local, check_exact=True)
    assert client.status == "running"


@pytest.mark.dask
def test_partitioned_extraction_gives_identical_features(tmp_path, client, fixture_beats, settings):
    directory = tmp_path / "beats"
    write_partitioned(fixture_beats, directory)
    frame = partitioned_features(directory, settings)
    assert frame.npartitions == fixture_beats["record"].nunique()
    got = client.compute(frame).result().sort_values(["record", "beat_index"]).reset_index(drop=True)
    keys = fixture_beats[["record", "beat_index", "label"]]
    expected = pd.concat([keys, extract_selected(fixture_beats, settings)], axis=1)
    expected = expected.sort_values(["record", "beat_index"]).reset_index(drop=True)
    assert list(got.columns) == ["record", "beat_index", "label", *settings.columns]
    pd.testing.assert_frame_equal(got[settings.columns], expected[settings.columns], check_exact=True)
    assert got["beat_index"].tolist() == expected["beat_index"].tolist()


@pytest.mark.dask
def test_partitioned_path_returns_the_rows_in_the_tables_order(tmp_path, client, fixture_beats, settings):
    beats = fixture_beats.sample(frac=0.5, random_state=1).reset_index(drop=True)  # records interleaved
    directory = tmp_path / "shared" / "split"
    got = extract_selected_partitioned(client, beats, settings, directory)
    pd.testing.assert_frame_equal(got, extract_selected(beats, settings), check_exact=True)
    assert not directory.exists()  # the partitioned copy is scratch
    empty = extract_selected_partitioned(client, beats.iloc[:0], settings, directory)
    assert list(empty.columns) == settings.columns and len(empty) == 0


def _features_stage_inputs(tmp_path, fixture_beats, compute: dict, name: str) -> tuple[list[str], Path]:
    import yaml

    from ecgbeats.data.sampling import stratified_pick

    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        val = stratified_pick(fixture_beats["label"].to_numpy(), 0.25, seed=0)
        fixture_beats[~val].reset_index(drop=True).to_parquet(data / "train.parquet", index=False)
        fixture_beats[val].reset_index(drop=True).to_parquet(data / "val.parquet", index=False)
    tsfresh = {"padding": "unpadded", "seed": 0, "subsample": 150, "fdr_level": 0.05, "top_k": 8, "n_jobs": 0,
               "disable_progressbar": True, "time_calculators_beats": 0,
               "drop_calculators": ["augmented_dickey_fuller", "agg_linear_trend", "partial_autocorrelation",
                                    "ar_coefficient", "friedrich_coefficients", "max_langevin_fixed_point",
                                    "number_cwt_peaks", "cwt_coefficients", "sample_entropy",
                                    "lempel_ziv_complexity", "permutation_entropy", "fourier_entropy",
                                    "benford_correlation", "query_similarity_count", "matrix_profile",
                                    "change_quantiles", "fft_coefficient", "energy_ratio_by_chunks"]}  # fmt: skip
    params = tmp_path / f"{name}.yaml"
    params.write_text(yaml.safe_dump({"features": {"tsfresh": tsfresh}, "compute": compute}))
    out = tmp_path / name
    return ["--protocol", "fixture", "--data", str(data), "--out", str(out),
            "--metrics", str(tmp_path / f"{name}.json"), "--params", str(params)], out  # fmt: skip


@pytest.mark.dask
def test_features_stage_on_the_cluster_reads_record_partitions_and_matches_local(tmp_path, fixture_beats, cluster):
    import json

    from stages import features as features_stage

    local_args, local_out = _features_stage_inputs(tmp_path, fixture_beats, {"engine": "local"}, "local")
    assert features_stage.main(local_args) == 0
    shared = tmp_path / "shared"
    compute = {"engine": "dask", "scheduler": cluster.scheduler_address, "connect_timeout": 20,
               "shared_dir": str(shared)}  # fmt: skip
    dask_args, dask_out = _features_stage_inputs(tmp_path, fixture_beats, compute, "dask")
    assert features_stage.main(dask_args) == 0
    metrics = json.loads((tmp_path / "dask.json").read_text())
    assert metrics["engine"] == "dask" and metrics["dask_workers"] == 2
    assert {v["path"] for v in metrics["extraction"].values()} == {"dask, partitioned by record"}
    assert (dask_out / "tsfresh_settings.json").read_text() == (local_out / "tsfresh_settings.json").read_text()
    for split in ("train", "val"):
        local, on_cluster = (pd.read_parquet(out / f"{split}.parquet") for out in (local_out, dask_out))
        assert len(local) > 0
        pd.testing.assert_frame_equal(on_cluster, local, check_exact=True)
    assert list(shared.iterdir()) == []  # the partitioned copies are removed after use


# --- LightGBM on the cluster -------------------------------------------------------------------


def test_after_the_fact_curves_reproduce_lightgbm_early_stopping(split):
    """The curves and best iteration the Dask trainer computes equal what LightGBM records locally."""
    x_train, x_val, y_train, y_val = split
    booster, history = train_booster(x_train, y_train, x_val, y_val, TRAIN_PARAMS, seed=1)
    kept = booster.current_iteration()  # lgb.train keeps the trees up to the best iteration
    assert kept == booster.best_iteration < len(history["val"]["multi_logloss"])
    val = evaluation_curves(booster, x_val, y_val)
    np.testing.assert_allclose(val["multi_logloss"], history["val"]["multi_logloss"][:kept], rtol=1e-6)
    np.testing.assert_allclose(val["macro_f1"], history["val"]["macro_f1"][:kept], rtol=1e-12)
    counts = np.bincount(y_train, minlength=5)
    train = evaluation_curves(booster, x_train, y_train, weights=_weight_lookup(counts, "balanced"))
    np.testing.assert_allclose(train["multi_logloss"], history["train"]["multi_logloss"][:kept], rtol=1e-6)
    patience = TRAIN_PARAMS["early_stopping_rounds"]
    assert best_iteration(history["val"]["multi_logloss"], patience) == booster.best_iteration


def test_best_iteration_follows_the_patience_rule():
    assert best_iteration([5, 4, 3, 3.5, 3.2, 2.9], patience=3) == 6
    assert best_iteration([5, 4, 3, 3.5, 3.2, 3.1, 1.0], patience=3) == 3  # stopped before the late dip
    assert best_iteration([1.0], patience=3) == 1


@pytest.mark.dask
def test_lightgbm_dask_model_is_comparable_to_local(client, split):
    x_train, x_val, y_train, y_val = split
    local, local_history = train_booster(x_train, y_train, x_val, y_val, TRAIN_PARAMS, seed=1)
    rounds = len(local_history["val"]["multi_logloss"])  # the local stop point: best iteration + patience
    booster, history = train_booster_dask(
        client, x_train, y_train, x_val, y_val, TRAIN_PARAMS, seed=1, num_boost_round=rounds
    )
    assert isinstance(booster, lgb.Booster) and booster.current_iteration() == rounds
    assert len(history["val"]["multi_logloss"]) == len(history["train"]["macro_f1"]) == rounds
    assert 1 <= booster.best_iteration <= rounds
    text = booster.model_to_string(num_iteration=booster.best_iteration)
    for setting in ("[feature_fraction: 0.5]", "[bagging_fraction: 0.8]", "[min_data_in_leaf: 20]",
                    "[lambda_l2: 1]", "[num_leaves: 15]", "[num_class: 5]"):  # fmt: skip
        assert setting in text, setting  # the local trainer's parameters reached the workers
    reloaded = lgb.Booster(model_str=text)  # what save_bundle writes and the service loads
    proba = reloaded.predict(x_val)
    assert proba.shape == (len(x_val), 5)
    np.testing.assert_allclose(proba, predict_proba(booster, x_val), rtol=1e-12)
    f1_local = f1_score(y_val, predict_proba(local, x_val).argmax(axis=1), average="macro")
    f1_dask = f1_score(y_val, proba.argmax(axis=1), average="macro")
    assert abs(f1_dask - f1_local) <= MACRO_F1_TOLERANCE, (f1_local, f1_dask)
    assert f1_dask > 0.8


@pytest.mark.dask
def test_lightgbm_dask_refuses_a_missing_class(client, split):
    x_train, x_val, y_train, y_val = split
    keep = y_train != 4
    with pytest.raises(ValueError, match="class\\(es\\) Q"):
        train_booster_dask(client, x_train[keep], y_train[keep], x_val, y_val, TRAIN_PARAMS, seed=1,
                           num_boost_round=5)  # fmt: skip


# --- the stages on the engine switch -----------------------------------------------------------


def _stage_inputs(tmp_path, fixture_beats, compute: dict) -> list[str]:
    import yaml

    from ecgbeats.data.sampling import stratified_pick

    data = tmp_path / "data"
    data.mkdir()
    val = stratified_pick(fixture_beats["label"].to_numpy(), 0.25, seed=0)
    fixture_beats[~val].reset_index(drop=True).to_parquet(data / "train.parquet", index=False)
    fixture_beats[val].reset_index(drop=True).to_parquet(data / "val.parquet", index=False)
    params = {"ingest": {"local_rr_beats": 10}, "compute": compute,
              "train": {**TRAIN_PARAMS, "seed": 0, "features": ["samples", "length", "rr"]}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["--protocol", "fixture", "--data", str(data), "--model", str(tmp_path / "model"),
            "--metrics", str(tmp_path / "train.json"), "--plots", str(tmp_path / "plots"),
            "--params", str(tmp_path / "params.yaml")]  # fmt: skip


@pytest.mark.dask
def test_train_stage_on_the_cluster_writes_an_ordinary_bundle(tmp_path, fixture_beats, cluster):
    import json

    from ecgbeats.modelling.bundle import load_bundle
    from stages import train as train_stage

    compute = {"engine": "dask", "scheduler": cluster.scheduler_address, "connect_timeout": 20, "num_boost_round": 60}
    assert train_stage.main(_stage_inputs(tmp_path, fixture_beats, compute)) == 0
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["engine"] == "dask" and 1 <= summary["best_iteration"] <= 60
    bundle = load_bundle(tmp_path / "model")
    assert bundle.meta["provenance"]["params"]["compute"]["engine"] == "dask"
    assert bundle.predict_proba(fixture_beats.iloc[:5]).shape == (5, 5)
    curve = tmp_path / "plots" / "live" / "plots" / "metrics" / "val" / "multi_logloss.tsv"
    assert len(curve.read_text().splitlines()) == 60 + 1  # one row per round, after the header


def test_train_stage_names_an_unreachable_scheduler(tmp_path, fixture_beats):
    from stages import train as train_stage

    address = f"tcp://127.0.0.1:{_free_port()}"
    compute = {"engine": "dask", "scheduler": address, "connect_timeout": 1, "num_boost_round": 10}
    with pytest.raises(SchedulerUnreachableError, match=address.replace(".", r"\.")):
        train_stage.main(_stage_inputs(tmp_path, fixture_beats, compute))
