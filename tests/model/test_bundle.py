from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from ecgbeats.modelling.bundle import (
    MANIFEST_FILE,
    META_FILE,
    MODEL_FILE,
    BundleError,
    bundle_digest,
    load_bundle,
    save_bundle,
)
from tests.model.conftest import bundle_meta


def test_round_trip_gives_identical_predictions(tmp_path, fixture_model, fixture_beats):
    booster, groups, columns = fixture_model
    save_bundle(tmp_path / "bundle", booster, bundle_meta(groups, columns))
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.class_names == ["N", "S", "V", "F", "Q"]
    assert bundle.feature_columns == columns
    np.testing.assert_allclose(bundle.predict_proba(fixture_beats), booster.predict(bundle.features(fixture_beats)))
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == sorted([MODEL_FILE, META_FILE, MANIFEST_FILE])


@pytest.fixture
def saved(tmp_path, fixture_model):
    booster, groups, columns = fixture_model
    save_bundle(tmp_path / "bundle", booster, bundle_meta(groups, columns))
    return tmp_path / "bundle"


def test_tampered_model_is_refused(saved):
    text = (saved / MODEL_FILE).read_text()
    (saved / MODEL_FILE).write_text(text.replace("learning_rate", "learning_rate ", 1))
    with pytest.raises(BundleError, match=r"model\.txt has sha256 .* the manifest says"):
        load_bundle(saved)


def test_tampered_metadata_is_refused(saved):
    meta = json.loads((saved / META_FILE).read_text())
    meta["class_names"] = ["Q", "F", "V", "S", "N"]
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="bundle.json has sha256"):
        load_bundle(saved)


@pytest.mark.parametrize("missing", [MODEL_FILE, MANIFEST_FILE])
def test_incomplete_bundle_is_refused(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(BundleError, match=f"incomplete: {missing.replace('.', '[.]')} is missing"):
        load_bundle(saved)


def test_missing_bundle_says_how_to_get_one(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nothing")


def test_failed_save_keeps_the_previous_bundle(saved, fixture_model):
    booster, groups, columns = fixture_model
    before = (saved / MANIFEST_FILE).read_text()
    with pytest.raises(TypeError):
        save_bundle(saved, booster, {"unserialisable": object(), **bundle_meta(groups, columns)})
    assert (saved / MANIFEST_FILE).read_text() == before
    load_bundle(saved)
    shutil.rmtree(saved)


def test_bundle_carries_the_tsfresh_selection_and_scores_like_training(tmp_path, fixture_split):
    """The train stage with the tsfresh group: the bundle holds the frozen selection, and scoring raw
    beats (the service's path, extraction on the fly) gives the values the model was trained on."""
    import yaml

    from ecgbeats.features.tsfresh_features import SETTINGS_FILE, extract, extract_selected, freeze, select
    from stages import train as train_stage
    from tests.model.conftest import FIXTURE_TRAIN_PARAMS

    train, val = fixture_split
    data, features = tmp_path / "data", tmp_path / "features"
    data.mkdir()
    features.mkdir()
    train.to_parquet(data / "train.parquet", index=False)
    val.to_parquet(data / "val.parquet", index=False)
    small = {"maximum": None, "standard_deviation": None, "abs_energy": None, "skewness": None}
    selected, _ = select(extract(train, small), train["label"].to_numpy(), fdr_level=0.05, top_k=3)
    settings = freeze(selected)
    settings.to_json(features / SETTINGS_FILE)
    for name, frame in (("train", train), ("val", val)):
        extract_selected(frame, settings).to_parquet(features / f"{name}.parquet", index=False)
    groups = ["length", "rr", "tsfresh"]
    params = {
        "ingest": {"local_rr_beats": 10},
        "train": {**FIXTURE_TRAIN_PARAMS, "seed": 0, "features": {"fixture": groups}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["--protocol", "fixture", "--data", str(data), "--model", str(tmp_path / "model"),
            "--metrics", str(tmp_path / "train.json"), "--plots", str(tmp_path / "plots"),
            "--params", str(tmp_path / "params.yaml")]  # fmt: skip
    with pytest.raises(ValueError, match="--tsfresh"):  # the tsfresh group, no features stage directory
        train_stage.main(args)
    assert train_stage.main([*args, "--tsfresh", str(features)]) == 0

    bundle = load_bundle(tmp_path / "model")
    assert bundle.meta["features"]["tsfresh"]["columns"] == settings.columns
    assert bundle.feature_columns[-len(settings.columns) :] == settings.columns
    trained_on = extract_selected(val, settings)
    np.testing.assert_allclose(bundle.features(val)[settings.columns].to_numpy(), trained_on.to_numpy(), rtol=1e-6)
    batch = bundle.predict_proba(val)
    one = bundle.predict_proba(val.iloc[[3]])
    np.testing.assert_allclose(one[0], batch[3], rtol=1e-6)


@pytest.mark.parametrize(
    ("block", "message"),
    [(None, "has no preprocessing block"), ({"local_rr_beats": 10, "window": 3}, "malformed preprocessing block")],
)
def test_a_bundle_without_a_valid_preprocessing_contract_is_refused(tmp_path, fixture_model, block, message):
    booster, groups, columns = fixture_model
    meta = bundle_meta(groups, columns)
    meta.pop("preprocessing")
    if block is not None:
        meta["preprocessing"] = block
    save_bundle(tmp_path / "bundle", booster, meta)  # a consistent manifest: only the contract is wrong
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "bundle")


def test_the_preprocessing_contract_is_typed(saved):
    contract = load_bundle(saved).preprocessing
    assert (contract.local_rr_beats, contract.beat_end, contract.beat_samples) == (10, "next_beat", 187)


# ---------------------------------------------------------------- the manifest, byte for byte


def test_a_crlf_manifest_is_refused_and_says_how_to_restore_it(saved):
    canonical = bundle_digest(saved)
    (saved / MANIFEST_FILE).write_bytes((saved / MANIFEST_FILE).read_bytes().replace(b"\n", b"\r\n"))
    assert bundle_digest(saved) != canonical  # what the service would report
    with pytest.raises(BundleError, match="CRLF line endings.*dos2unix"):
        load_bundle(saved)


def test_manifest_lines_out_of_the_writers_order_are_refused(saved):
    lines = (saved / MANIFEST_FILE).read_text().splitlines(keepends=True)
    (saved / MANIFEST_FILE).write_text("".join(reversed(lines)))
    with pytest.raises(BundleError, match="the writer lists them in the order model.txt, bundle.json"):
        load_bundle(saved)


def test_the_manifest_is_what_sha256sum_prints(saved):
    """The canonical form is the writer's, which is also `sha256sum model.txt bundle.json`'s output."""
    expected = "".join(
        f"{hashlib.sha256((saved / n).read_bytes()).hexdigest()}  {n}\n" for n in (MODEL_FILE, META_FILE)
    )
    assert (saved / MANIFEST_FILE).read_bytes() == expected.encode()
    load_bundle(saved)
