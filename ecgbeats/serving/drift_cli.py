"""Compare a batch of beats with a model bundle's reference profile: a JSON drift report and a figure.

    python -m ecgbeats.serving.drift_cli BEATS --model DIR --out report.json [--figure fig.png]
        [--fail-on-drift] [--moderate 0.1] [--major 0.25] [--name LABEL]

BEATS is a beat-table parquet or a Kaggle-format CSV (the batch CLI's readers). Malformed rows are
skipped and counted (the report says how many); the good ones are scored by the bundle through
``Scorer`` (the API's code path) for the predicted class mix, and their key features
(``ecgbeats.operations.drift.key_features``) are compared with the bundle's ``reference.json``: PSI and KS per
feature, PSI and chi-square for the predicted class mix.

Exit codes: 0 done (and, with ``--fail-on-drift``, no major drift); 1 major drift found with
``--fail-on-drift`` (any key feature or the class mix at PSI >= the major threshold); 2 bad input,
bad model, or a bundle without a reference profile.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.io import atomic_path, write_json
from ecgbeats.modelling.bundle import BundleError, load_bundle
from ecgbeats.operations import drift
from ecgbeats.serving.batch import (
    PROBLEM,
    BatchInputError,
    detect_format,
    read_csv_chunks,
    read_parquet_chunks,
)
from ecgbeats.serving.scoring import Scorer, frame_to_beats, row_problems
from ecgbeats.serving.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

CHUNK = 5000
EXIT_DRIFT = 1
EXIT_ERROR = 2


def read_batch(path: Path, scorer: Scorer, chunk_size: int = CHUNK) -> tuple[pd.DataFrame, np.ndarray, int, int]:
    """Key features and predicted class codes of the good rows of ``path``; also rows read and skipped."""
    if not path.is_file():
        raise BatchInputError(f"{path}: no such file")
    fmt = detect_format(path)
    if fmt == "parquet":
        chunks = read_parquet_chunks(path, chunk_size)
    elif fmt == "csv":
        chunks = read_csv_chunks(path, chunk_size)
    else:
        raise BatchInputError(f"{path}: the drift CLI reads a beat-table parquet or a CSV, not {fmt}")
    keys: list[pd.DataFrame] = []
    codes: list[np.ndarray] = []
    rows = skipped = 0
    for chunk in chunks:
        problems = chunk[PROBLEM].where(chunk[PROBLEM] != "", row_problems(chunk))
        bad = (problems != "").to_numpy()
        rows += len(chunk)
        skipped += int(bad.sum())
        good = chunk[~bad].reset_index(drop=True)
        if len(good) == 0:
            continue
        beats = frame_to_beats(good)
        codes.append(scorer.score_beats(beats).codes)
        keys.append(drift.key_features(beats))
    if not keys:
        raise BatchInputError(f"{path}: no scorable beats ({rows} row(s) read, {skipped} malformed)")
    return pd.concat(keys, ignore_index=True), np.concatenate(codes), rows, skipped


def drift_figure(report: dict[str, Any], profile: dict[str, Any], keys: pd.DataFrame, title: str):  # noqa: ANN201
    """PSI per key feature and for the class mix (with the thresholds), the class mix, and the CDFs."""
    from matplotlib.figure import Figure  # the figure only: the service never imports matplotlib

    names = list(report["features"])
    n_cdf = len(names)
    cols = 4
    rows = 1 + int(np.ceil(n_cdf / cols))
    fig = Figure(figsize=(4 * cols, 3.2 * rows))
    grid = fig.add_gridspec(rows, cols)
    ax = fig.add_subplot(grid[0, :2])
    labels = [*names, "class_mix"]
    values = [report["features"][n]["psi"] for n in names] + [report["class_mix"]["psi"]]
    colors = ["#c44e52" if v >= report["thresholds"]["psi_major"] else "#dd8452"
              if v >= report["thresholds"]["psi_moderate"] else "#4c72b0" for v in values]  # fmt: skip
    ax.barh(labels, values, color=colors)
    for threshold, style in ((report["thresholds"]["psi_moderate"], ":"), (report["thresholds"]["psi_major"], "--")):
        ax.axvline(threshold, color="k", linestyle=style, linewidth=1)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.invert_yaxis()
    ax.set_xlabel("PSI (dotted 0.1 moderate, dashed 0.25 major)")
    ax.set_title("population stability against the training reference")
    ax = fig.add_subplot(grid[0, 2:])
    classes = list(report["class_mix"]["shares"])
    x = np.arange(len(classes))
    ax.bar(x - 0.2, [report["class_mix"]["reference_shares"][c] for c in classes], 0.4, label="reference (train)")
    ax.bar(x + 0.2, [report["class_mix"]["shares"][c] for c in classes], 0.4, label="this batch")
    ax.set_xticks(x, classes)
    ax.set_yscale("log")
    ax.set_ylabel("share of predicted beats")
    ax.set_title(f"predicted class mix (PSI {report['class_mix']['psi']:.3f})")
    ax.legend(fontsize=8)
    probs = np.linspace(0, 1, drift.N_QUANTILES)
    for i, name in enumerate(names):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        ref_q = np.asarray(profile["features"][name]["quantiles"])
        values_ = np.sort(keys[name].dropna().to_numpy())
        lo, hi = np.quantile(np.concatenate([ref_q[1:-1], values_]), [0.005, 0.995]) if len(values_) else (0, 1)
        ax.plot(ref_q, probs, label="reference", color="#4c72b0")
        if len(values_):
            ax.plot(values_, np.arange(1, len(values_) + 1) / len(values_), label="batch", color="#c44e52")
        ax.set_xlim(lo, hi if hi > lo else lo + 1)
        feature = report["features"][name]
        ax.set_title(f"{name}: PSI {feature['psi']:.3f}, KS {feature['ks']:.3f}", fontsize=9)
        ax.set_ylabel("CDF")
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecgbeats.serving.drift_cli", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[-1],
    )  # fmt: skip
    parser.add_argument("beats", type=Path, help="a beat-table parquet or a Kaggle-format CSV")
    parser.add_argument("--model", type=Path, default=Path("models/kaggle"), help="the model bundle directory")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report to write")
    parser.add_argument("--figure", type=Path, help="a PNG figure to write")
    parser.add_argument("--name", help="a label for the batch in the report and the figure (default: the file)")
    parser.add_argument("--moderate", type=float, help="PSI of a moderate shift (default: the profile's, 0.1)")
    parser.add_argument("--major", type=float, help="PSI of a major shift, i.e. drift (default: the profile's, 0.25)")
    parser.add_argument("--fail-on-drift", action="store_true", help=f"exit {EXIT_DRIFT} when major drift is found")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        bundle = load_bundle(args.model, load_settings().model_digest)  # ECGBEATS_MODEL_DIGEST pins it here too
    except (BundleError, SettingsError) as err:
        print(f"drift: {err}", file=sys.stderr)
        return EXIT_ERROR
    if bundle.reference is None:
        print(f"drift: model bundle {args.model} has no reference profile (reference.json); retrain it",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    scorer = Scorer(bundle)
    try:
        keys, codes, rows, skipped = read_batch(args.beats, scorer)
    except BatchInputError as err:
        print(f"drift: {err}", file=sys.stderr)
        return EXIT_ERROR
    report = drift.compare(bundle.reference, keys, codes, moderate=args.moderate, major=args.major)
    name = args.name or args.beats.name
    report = {
        "batch": {"name": name, "path": str(args.beats), "rows": rows, "skipped_rows": skipped},
        "model": {"path": str(args.model), "version": scorer.version, "digest": scorer.digest},
        **report,
    }
    write_json(report, args.out)
    if args.figure:
        fig = drift_figure(report, bundle.reference, keys, f"{name} against {scorer.version}")
        with atomic_path(args.figure) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    worst, mix = report["worst"], report["class_mix"]["psi"]
    print(f"{name}: {report['n_beats']} beats, level {report['level']}, drift {report['drift']} "
          f"(worst: {worst['name']} PSI {worst['psi']:.3f}; class mix PSI {mix:.3f})")  # fmt: skip
    return EXIT_DRIFT if args.fail_on_drift and report["drift"] else 0


if __name__ == "__main__":
    sys.exit(main())
