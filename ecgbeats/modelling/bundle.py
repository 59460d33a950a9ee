"""The model bundle: one directory with the LightGBM text model, what it needs to be used, and a
sha256 manifest that is checked before anything in it is trusted. No pickle anywhere."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import lightgbm as lgb
import numpy as np
import pandas as pd

from ecgbeats.data.beats import BEAT_FS, BEAT_SAMPLES, SOURCE_FS
from ecgbeats.features.groups import FEATURE_GROUPS, build_features
from ecgbeats.features.record import RecordBeatConfig
from ecgbeats.features.tsfresh_features import TsfreshSettings
from ecgbeats.io import atomic_dir
from ecgbeats.modelling.model import predict_proba
from ecgbeats.modelling.model_text import ModelTextError, check_model_text
from ecgbeats.modelling.rhythm_rules import RhythmRules

MODEL_FILE = "model.txt"
META_FILE = "bundle.json"
MANIFEST_FILE = "MANIFEST.sha256"
REFERENCE_FILE = "reference.json"  # the training data's drift profile (ecgbeats.operations.drift.build_profile)
BUNDLE_FILES = (MODEL_FILE, META_FILE)  # required in every bundle
OPTIONAL_FILES = (REFERENCE_FILE,)  # checked against the manifest when present (older bundles lack them)
FORMAT_VERSION = 2  # 2: the preprocessing block is required
REPRESENTATIONS = (
    "beat",
    "record",
)  # Kaggle beat rows (ecgbeats.data.beats), or the raw record (ecgbeats.features.record)


class BundleError(RuntimeError):
    """A bundle that is missing, incomplete or tampered with."""


@dataclass(frozen=True)
class Preprocessing:
    """How a beat is made before the model sees it: the contract between training and every scoring path.

    The beat procedure (``ecgbeats.data.beats``) is fixed by the format; what a model may vary is how
    the patient's recent rhythm is summarised (``rr_local`` averages the RR intervals within
    ``local_rr_beats`` beats on either side) and, for annotated records, where a beat ends
    (``beat_end``: after the next beat, or after the next annotation of any type).
    """

    local_rr_beats: int
    beat_end: str = "next_beat"
    beat_fs: float = BEAT_FS  # Hz of the beat rows
    beat_samples: int = BEAT_SAMPLES  # samples per beat row
    source_fs: int = SOURCE_FS  # Hz the beat procedure is defined at (other rates are resampled to it)

    @classmethod
    def from_meta(cls, block: dict[str, Any], where: Path) -> Preprocessing:
        try:
            return cls(**block)
        except TypeError as err:
            raise BundleError(f"model bundle {where}: {META_FILE} has a malformed preprocessing block: {err}") from None


@dataclass(frozen=True)
class ModelBundle:
    booster: lgb.Booster
    meta: dict[str, Any]
    path: Path
    reference: dict[str, Any] | None = None  # the drift reference profile, if the bundle has one

    @property
    def representation(self) -> str:
        """``beat``: scores Kaggle beat rows; ``record``: needs the raw signal around each beat."""
        return str(self.meta["preprocessing"].get("representation", "beat"))

    @property
    def preprocessing(self) -> Preprocessing:
        """How the beat rows of a ``beat`` bundle are made."""
        if self.representation != "beat":
            raise BundleError(f"model bundle {self.path} scores raw records, not beat rows")
        return Preprocessing.from_meta(self.meta["preprocessing"], self.path)

    @property
    def record_config(self) -> RecordBeatConfig:
        """How a ``record`` bundle measures a beat on the raw signal."""
        if self.representation != "record":
            raise BundleError(f"model bundle {self.path} scores beat rows, not raw records")
        return record_preprocessing(self.meta["preprocessing"], self.path)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.meta["features"]["columns"])

    def features(self, beats: pd.DataFrame) -> pd.DataFrame:
        """The model's inputs for a beat table, in the training column order.

        A ``record`` bundle's table already holds them (``ecgbeats.features.record.record_features``).
        """
        if self.representation == "record":
            return beats.reindex(columns=self.feature_columns)
        frozen = self.meta["features"].get("tsfresh")  # the features stage's selection, when the model uses it
        settings = TsfreshSettings(**frozen) if frozen else None
        frame = build_features(beats, self.meta["features"]["groups"], tsfresh_settings=settings)
        return frame.reindex(columns=self.feature_columns)

    @property
    def rhythm_rules(self) -> RhythmRules:
        """The rhythm interpretation a ``record`` bundle applies over its model (none for older bundles)."""
        return RhythmRules.from_dict(self.meta.get("rhythm_rules"))

    def interpret(self, proba: np.ndarray, beats: pd.DataFrame) -> np.ndarray:
        """``proba`` of ``beats`` with the bundle's rhythm rules applied (as they are, where it has none)."""
        rules = self.rhythm_rules
        if self.representation != "record" or not rules.active:
            return proba
        return rules.apply(proba, beats, self.record_config.reference)

    def predict_proba(self, beats: pd.DataFrame) -> np.ndarray:
        return self.interpret(predict_proba(self.booster, self.features(beats)), beats)


def record_preprocessing(block: dict[str, Any], where: Path) -> RecordBeatConfig:
    """The record measurement of a bundle's preprocessing block."""
    try:
        return RecordBeatConfig.from_params({k: v for k, v in block.items() if k != "representation"})
    except (TypeError, ValueError) as err:
        raise BundleError(f"model bundle {where}: {META_FILE} has a malformed preprocessing block: {err}") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_bundle(
    path: str | Path, booster: lgb.Booster, meta: dict[str, Any], reference: dict[str, Any] | None = None
) -> None:
    """Write the bundle atomically: a reader sees the old bundle or the complete new one.

    ``reference`` (a drift profile from ``ecgbeats.operations.drift.build_profile``) is written to
    ``reference.json`` and covered by the manifest like the model and its metadata.
    """
    with atomic_dir(path) as tmp:
        booster.save_model(tmp / MODEL_FILE, num_iteration=booster.best_iteration or None)
        (tmp / META_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2) + "\n")
        names = list(BUNDLE_FILES)
        if reference is not None:
            (tmp / REFERENCE_FILE).write_text(json.dumps(reference, indent=1, allow_nan=False) + "\n")
            names.append(REFERENCE_FILE)
        manifest = "".join(f"{_sha256(tmp / name)}  {name}\n" for name in names)
        (tmp / MANIFEST_FILE).write_text(manifest)


def bundle_digest(path: str | Path) -> str:
    """A bundle's identity: the sha256 of its manifest (which lists the sha256 of every file)."""
    return _sha256(Path(path) / MANIFEST_FILE)


DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
_MANIFEST_LINE = re.compile(r"([0-9a-f]{64})  (\S+)")


def check_pin(pin: str) -> str:
    """A pinned digest must be the full 64-hex sha256 of the manifest: a prefix could match two bundles."""
    if not DIGEST_PATTERN.fullmatch(pin):
        raise BundleError(f"the pinned digest {pin[:80]!r} is not a full sha256 (64 lowercase hex digits)")
    return pin


def read_manifest(path: Path) -> dict[str, str]:
    """The manifest's file -> sha256, strictly: the bytes on disk in exactly the form ``save_bundle`` writes
    (and ``sha256sum`` prints), one ``<sha256>  <file>`` line per bundle file in the writer's order, LF line
    endings, nothing else. Any other form would give the same files another digest (an extra line, a CRLF
    checkout), so it is refused rather than read leniently."""
    listed: dict[str, str] = {}
    known = (*BUNDLE_FILES, *OPTIONAL_FILES)
    raw = (path / MANIFEST_FILE).read_bytes()
    if b"\r" in raw:
        raise BundleError(
            f"model bundle {path}: {MANIFEST_FILE} has CRLF line endings, which change the bundle's digest; "
            "restore the file as written (LF line endings, e.g. `dos2unix`, or `dvc pull` the bundle again)"
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BundleError(f"model bundle {path}: {MANIFEST_FILE} is not ASCII text") from None
    lines = text.split("\n")
    if lines[-1] != "":
        raise BundleError(f"model bundle {path}: {MANIFEST_FILE} does not end with a newline")
    for number, line in enumerate(lines[:-1], start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            raise BundleError(f"model bundle {path}: {MANIFEST_FILE} line {number} is not '<sha256>  <file>'")
        digest, name = match.groups()
        if name not in known:
            raise BundleError(
                f"model bundle {path}: {MANIFEST_FILE} line {number} lists {name[:80]!r}, not a bundle file"
            )
        if name in listed:
            raise BundleError(f"model bundle {path}: {MANIFEST_FILE} lists {name} twice")
        listed[name] = digest
    order = [name for name in known if name in listed]
    if list(listed) != order:
        raise BundleError(
            f"model bundle {path}: {MANIFEST_FILE} lists {', '.join(listed)}; the writer lists them in the order "
            f"{', '.join(order)} (restore the manifest as written, or `dvc pull` the bundle again)"
        )
    return listed


def verify_bundle(path: str | Path, pin: str | None = None) -> None:
    """Check a bundle before anything reads it: the pinned digest first (``pin``: the full sha256 of the
    manifest, e.g. ``ECGBEATS_MODEL_DIGEST``), then the manifest's format, then every file's sha256."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist (run `dvc repro` or `dvc pull`)")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"model bundle {path} is incomplete: {MANIFEST_FILE} is missing")
    if pin is not None:
        actual = bundle_digest(path)
        if actual != check_pin(pin):
            raise BundleError(
                f"model bundle {path}: digest {actual} is not the pinned ECGBEATS_MODEL_DIGEST {pin} "
                "(wrong version deployed?)"
            )
    listed = read_manifest(path)
    for name in OPTIONAL_FILES:  # a file the manifest does not cover is not trusted
        if name not in listed and (path / name).exists():
            raise BundleError(f"model bundle {path}: {name} is not listed in {MANIFEST_FILE}")
    for name in [*BUNDLE_FILES, *(n for n in OPTIONAL_FILES if n in listed)]:
        if name not in listed:
            raise BundleError(f"model bundle {path}: {MANIFEST_FILE} does not list {name}")
        file = path / name
        if not file.is_file():
            raise BundleError(f"model bundle {path} is incomplete: {name} is missing")
        actual = _sha256(file)
        if actual != listed[name]:
            raise BundleError(
                f"model bundle {path}: {name} has sha256 {actual}, the manifest says {listed[name]} "
                "(the file was modified after the bundle was written)"
            )


def _read_json(path: Path, name: str) -> Any:
    try:
        return json.loads((path / name).read_bytes())
    except OSError as err:
        raise BundleError(f"model bundle {path}: {name} cannot be read: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BundleError(f"model bundle {path}: {name} is not JSON: {_one_line(err)}") from None


def _one_line(err: object, limit: int = 200) -> str:
    return " ".join(str(err).split())[:limit]


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_number_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def _check_meta(meta: Any, path: Path) -> None:
    """The fields of ``bundle.json`` that loading and scoring read, with the types they need."""
    where = f"model bundle {path}: {META_FILE}"
    if not isinstance(meta, dict):
        raise BundleError(f"{where} is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path}: format version {meta.get('format_version')!r:.40}, expected {FORMAT_VERSION}"
        )
    if not isinstance(meta.get("preprocessing"), dict):
        raise BundleError(f"{where} has no preprocessing block")
    representation = meta["preprocessing"].get("representation", "beat")
    if representation not in REPRESENTATIONS:
        raise BundleError(
            f"model bundle {path}: unknown representation {representation!r:.40}; known {REPRESENTATIONS}"
        )
    if representation == "record":
        record_preprocessing(meta["preprocessing"], path)
    else:
        Preprocessing.from_meta(meta["preprocessing"], path)
    names = meta.get("class_names")
    if not _is_str_list(names) or not names or len(set(names)) != len(names):
        raise BundleError(f"{where}: class_names is not a list of distinct class names")
    features = meta.get("features")
    if not isinstance(features, dict):
        raise BundleError(f"{where} has no features block")
    if not _is_str_list(features.get("columns")) or not features["columns"]:
        raise BundleError(f"{where}: features.columns is not a list of column names")
    groups = features.get("groups")
    if not _is_str_list(groups):
        raise BundleError(f"{where}: features.groups is not a list of feature group names")
    if representation == "beat" and not set(groups) <= set(FEATURE_GROUPS):
        raise BundleError(f"{where}: features.groups {groups!r:.80} names groups not in {list(FEATURE_GROUPS)}")
    try:
        if features.get("tsfresh") is not None:
            TsfreshSettings(**features["tsfresh"])
        RhythmRules.from_dict(meta.get("rhythm_rules"))
    except (TypeError, ValueError) as err:
        raise BundleError(f"{where}: malformed tsfresh or rhythm_rules block: {_one_line(err)}") from None
    if not isinstance(meta.get("provenance") or {}, dict):  # the version string reads it with .get()
        raise BundleError(f"{where}: provenance is not a JSON object")


def _check_reference(reference: Any, path: Path, class_names: list[str]) -> None:
    """``reference.json`` as the drift monitor and the drift CLI read it (``ecgbeats.operations.drift``)."""
    where = f"model bundle {path}: {REFERENCE_FILE}"
    if not isinstance(reference, dict):
        raise BundleError(f"{where} is not a JSON object")
    features = reference.get("features")
    if not isinstance(features, dict):
        raise BundleError(f"{where}: features is not an object of feature profiles")
    for name, profile in features.items():
        if not (
            isinstance(profile, dict)
            and all(_is_number_list(profile.get(key)) for key in ("edges", "shares", "quantiles"))
            and len(profile["shares"]) == len(profile["edges"]) + 2  # the bins around the edges, and missing
            and isinstance(profile.get("description", ""), str)
        ):
            raise BundleError(f"{where}: the profile of {name[:40]!r} is malformed (edges, shares, quantiles)")
    mix = reference.get("class_mix")
    if not (
        isinstance(mix, dict)
        and mix.get("class_names") == class_names
        and _is_number_list(mix.get("shares"))
        and len(mix["shares"]) == len(class_names)
    ):
        raise BundleError(f"{where}: class_mix does not give a share for each of the model's classes {class_names}")
    thresholds = reference.get("thresholds", {})
    if not isinstance(thresholds, dict) or not _is_number_list(list(thresholds.values())):
        raise BundleError(f"{where}: thresholds is not an object of numbers")


@dataclass(frozen=True)
class _CheckedBundle:
    meta: dict[str, Any]
    reference: dict[str, Any] | None
    model_text: str


def _check(path: Path, pin: str | None) -> _CheckedBundle:
    verify_bundle(path, pin)
    meta = _read_json(path, META_FILE)
    _check_meta(meta, path)
    reference = _read_json(path, REFERENCE_FILE) if (path / REFERENCE_FILE).is_file() else None
    if reference is not None:
        _check_reference(reference, path, meta["class_names"])
    try:
        data = (path / MODEL_FILE).read_bytes()
    except OSError as err:
        raise BundleError(f"model bundle {path}: {MODEL_FILE} cannot be read: {err.strerror or err}") from None
    try:
        header = check_model_text(data)
        text = data.decode("utf-8")
    except (ModelTextError, UnicodeDecodeError) as err:
        raise BundleError(f"model bundle {path}: {MODEL_FILE} cannot be parsed: {_one_line(err)}") from None
    if header.feature_names != meta["features"]["columns"]:
        raise BundleError(f"model bundle {path}: the model's features differ from {META_FILE}")
    if header.num_class != len(meta["class_names"]):
        raise BundleError(
            f"model bundle {path}: the model has {header.num_class} classes, {META_FILE} names "
            f"{len(meta['class_names'])}"
        )
    return _CheckedBundle(meta=meta, reference=reference, model_text=text)


def check_bundle(path: str | Path, pin: str | None = None) -> None:
    """Everything ``load_bundle`` checks, without loading the model: ``verify_bundle`` (the pin first), then
    ``bundle.json``, ``reference.json`` and the structure of ``model.txt``, so a bundle LightGBM would crash
    on, or whose JSON the service cannot use, is a BundleError before anything starts."""
    _check(Path(path), pin)


def load_bundle(path: str | Path, pin: str | None = None) -> ModelBundle:
    """Check (``check_bundle``, with the pinned digest if given), then load; a bundle that fails any
    check, or whose model LightGBM cannot parse, raises BundleError."""
    path = Path(path)
    checked = _check(path, pin)
    try:
        # the checked bytes, not the file again
        booster = lgb.Booster(model_str=checked.model_text)
    except (lgb.basic.LightGBMError, ValueError, TypeError) as err:  # the Python layer parses the file's tail
        raise BundleError(f"model bundle {path}: {MODEL_FILE} cannot be parsed: {_one_line(err)}") from None
    if booster.feature_name() != checked.meta["features"]["columns"]:
        raise BundleError(f"model bundle {path}: the model's features differ from {META_FILE}")
    return ModelBundle(booster=booster, meta=checked.meta, path=path, reference=checked.reference)
