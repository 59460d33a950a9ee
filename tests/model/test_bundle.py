from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ecgbeats.bundle import MANIFEST_FILE, META_FILE, MODEL_FILE, BundleError, load_bundle, save_bundle
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
