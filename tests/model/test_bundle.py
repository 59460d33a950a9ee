from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ecgbeats.modelling.bundle import (
    MANIFEST_FILE,
    META_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
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


# ---------------------------------------------------------------- files rewritten behind a regenerated manifest


def regenerate_manifest(bundle: Path) -> None:
    names = [line.split("  ", 1)[1] for line in (bundle / MANIFEST_FILE).read_text().splitlines()]
    (bundle / MANIFEST_FILE).write_text(
        "".join(f"{hashlib.sha256((bundle / name).read_bytes()).hexdigest()}  {name}\n" for name in names)
    )


def with_tree_sizes(text: str) -> str:
    """``text`` with the header's tree_sizes recomputed from its tree blocks, as a careful editor would."""
    head, sep, rest = text.partition("\nTree=")
    trees, end, tail = (sep[1:] + rest).partition("end of trees")
    blocks = re.findall(r"Tree=\d+\n.*?\n\n+", trees, flags=re.S)
    assert "".join(blocks) == trees
    head = re.sub(r"^tree_sizes=.*$", "tree_sizes=" + " ".join(str(len(b)) for b in blocks), head, flags=re.M)
    return head + "\n" + trees + end + tail


def edit_first_tree(key: str, change: Callable[[list[str]], list[str]]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        line = re.search(rf"^{key}=.*$", text, flags=re.M)
        values = line[0].split("=", 1)[1].split(" ")
        return text[: line.start()] + f"{key}=" + " ".join(change(values)) + text[line.end() :]

    return edit


MODEL_EDITS = {
    "leaf_value_one_too_many": (edit_first_tree("leaf_value", lambda v: ["0", *v]), "leaf_value has"),
    "leaf_value_one_short": (edit_first_tree("leaf_value", lambda v: v[1:]), "leaf_value has"),
    "leaf_value_not_a_number": (edit_first_tree("leaf_value", lambda v: ["abc", *v[1:]]), "leaf_value is not"),
    "leaf_value_infinite": (edit_first_tree("leaf_value", lambda v: ["inf", *v[1:]]), "leaf_value is not"),
    "threshold_one_short": (edit_first_tree("threshold", lambda v: v[1:]), "threshold has"),
    "left_child_one_short": (edit_first_tree("left_child", lambda v: v[1:]), "left_child has"),
    "split_feature_out_of_range": (edit_first_tree("split_feature", lambda v: ["99999", *v[1:]]), "max_feature_idx"),
    "root_is_its_own_child": (edit_first_tree("left_child", lambda v: ["0", *v[1:]]), "not a later internal node"),
    "a_leaf_reached_twice": (edit_first_tree("right_child", lambda v: [v[0], v[0], *v[2:]]), "node"),
    "num_leaves_not_a_number": (edit_first_tree("num_leaves", lambda v: ["oops"]), "num_leaves"),
}


@pytest.mark.parametrize("case", list(MODEL_EDITS))
def test_a_model_lightgbm_would_abort_on_is_a_bundle_error(saved, case):
    """Each of these makes LightGBM abort the process while parsing, or read out of bounds or loop forever
    when predicting; with tree_sizes kept consistent, only the check of the tree itself can catch it."""
    edit, message = MODEL_EDITS[case]
    text = (saved / MODEL_FILE).read_text()
    (saved / MODEL_FILE).write_text(with_tree_sizes(edit(text)))
    regenerate_manifest(saved)
    with pytest.raises(BundleError, match=f"model[.]txt cannot be parsed: tree 0: .*{message}"):
        load_bundle(saved)


@pytest.mark.parametrize(
    ("old", "new"), [("num_class=5", "num_class=3"), ("num_tree_per_iteration=5", "num_tree_per_iteration=3")]
)
def test_a_class_count_the_trees_do_not_have_is_a_bundle_error(saved, old, new):
    """LightGBM loads this header, then predicting writes past its output (an abort when the process frees it)."""
    (saved / MODEL_FILE).write_text((saved / MODEL_FILE).read_text().replace(old, new, 1))
    regenerate_manifest(saved)
    with pytest.raises(
        BundleError,
        match="cannot be parsed: num_tree_per_iteration=5 with num_class=3|num_tree_per_iteration=3 with num_class=5",
    ):
        load_bundle(saved)


def test_stale_tree_sizes_are_a_bundle_error(saved):
    text = (saved / MODEL_FILE).read_text()
    zeroed = re.sub(r"^leaf_value=.*$", lambda m: "leaf_value=" + " ".join("0" for _ in m[0].split()), text, flags=re.M)
    (saved / MODEL_FILE).write_text(zeroed)
    regenerate_manifest(saved)
    with pytest.raises(BundleError, match="tree 0: tree_sizes gives .* bytes, the block has"):
        load_bundle(saved)


def test_a_consistently_rewritten_model_still_loads(saved, fixture_beats):
    """The check refuses what LightGBM cannot read, not models it has not seen: other leaf values of the
    same shape (and tree_sizes to match) load and score. Only a pinned digest tells such a bundle apart."""
    before = load_bundle(saved).predict_proba(fixture_beats)
    text = (saved / MODEL_FILE).read_text()
    (saved / MODEL_FILE).write_text(with_tree_sizes(edit_first_tree("leaf_value", lambda v: ["3.5"] * len(v))(text)))
    regenerate_manifest(saved)
    after = load_bundle(saved).predict_proba(fixture_beats)
    assert after.shape == before.shape and not np.allclose(after, before)


@pytest.mark.parametrize("params", [{"linear_tree": True}, {"categorical": True}, {"min_data_in_leaf": 10_000}])
def test_models_of_other_shapes_pass_the_check(params):
    """Linear leaves, categorical splits and one-leaf trees are LightGBM models too."""
    import lightgbm as lgb

    from ecgbeats.modelling.model_text import check_model_text

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5))
    x[:, 4] = rng.integers(0, 12, 600)
    y = (x[:, 4] % 3).astype(int)
    categorical = [4] if params.pop("categorical", False) else "auto"
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 7, "num_threads": 1, **params},
        lgb.Dataset(x, y, categorical_feature=categorical),
        num_boost_round=4,
    )
    text = booster.model_to_string()
    if categorical != "auto":
        assert "num_cat=0" not in text  # every tree splits on the category
    if "min_data_in_leaf" in params:
        assert "num_leaves=1\n" in text
    header = check_model_text(text.encode())
    assert (header.num_class, header.num_trees) == (3, booster.num_trees())


META_EDITS = {
    "junk": (lambda path: path.write_bytes(bytes(range(256))), "bundle[.]json is not JSON"),
    "truncated": (lambda path: path.write_text(path.read_text()[:40]), "bundle[.]json is not JSON"),
    "a_list": (lambda path: path.write_text("[]"), "not a JSON object"),
    "class_names_a_string": (
        lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "class_names": "NSVFQ"})),
        "class_names",
    ),
    "no_features": (
        lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "features": None})),
        "no features block",
    ),
    "unknown_group": (
        lambda path: path.write_text(
            json.dumps({**json.loads(path.read_text()), "features": {"groups": ["wavelets"], "columns": ["a"]}})
        ),
        "features.groups",
    ),
    "provenance_a_list": (
        lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "provenance": ["x"]})),
        "provenance",
    ),
    "four_class_names": (
        lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "class_names": list("NSVF")})),
        "the model has 5 classes",
    ),
}


@pytest.mark.parametrize("case", list(META_EDITS))
def test_unusable_metadata_is_a_bundle_error(saved, case):
    edit, message = META_EDITS[case]
    edit(saved / META_FILE)
    regenerate_manifest(saved)
    with pytest.raises(BundleError, match=message):
        load_bundle(saved)


@pytest.fixture
def with_reference(tmp_path, fixture_model):
    booster, groups, columns = fixture_model
    reference = {
        "features": {"qrs_width": {"edges": [1.0, 2.0], "shares": [0.2, 0.3, 0.5, 0.0], "quantiles": [0.0, 3.0]}},
        "class_mix": {"class_names": list("NSVFQ"), "shares": [0.8, 0.1, 0.05, 0.03, 0.02]},
    }
    save_bundle(tmp_path / "bundle", booster, bundle_meta(groups, columns), reference=reference)
    return tmp_path / "bundle"


REFERENCE_EDITS = {
    "junk": lambda r: b"\xff\xfe{",
    "a_string": lambda r: json.dumps("profile").encode(),
    "features_a_list": lambda r: json.dumps({**r, "features": []}).encode(),
    "shares_short": lambda r: json.dumps(
        {**r, "features": {"x": {**r["features"]["qrs_width"], "shares": [1]}}}
    ).encode(),
    "no_class_mix": lambda r: json.dumps({k: v for k, v in r.items() if k != "class_mix"}).encode(),
    "class_mix_short": lambda r: json.dumps(
        {**r, "class_mix": {"class_names": list("NSV"), "shares": [1, 0, 0]}}
    ).encode(),
}


@pytest.mark.parametrize("case", list(REFERENCE_EDITS))
def test_an_unusable_reference_profile_is_a_bundle_error(with_reference, case):
    assert load_bundle(with_reference).reference is not None
    reference = json.loads((with_reference / REFERENCE_FILE).read_text())
    (with_reference / REFERENCE_FILE).write_bytes(REFERENCE_EDITS[case](reference))
    regenerate_manifest(with_reference)
    with pytest.raises(BundleError, match="reference[.]json"):
        load_bundle(with_reference)


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
