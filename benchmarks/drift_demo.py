"""Does the drift detector flag shifted beats and stay quiet on unshifted ones? Prints a table.

    python -m benchmarks.drift_demo --model /tmp/bundles/interpatient --data data/processed/interpatient \
        --out /tmp/drift-demo

Runs the ``drift`` CLI (``ecgbeats.serving.drift_cli``) on: the in-patient test split (same patients
as training: must not be flagged), the DS2 holdout (other patients), and synthetic shifts of the
in-patient test split (``ecgbeats.operations.drift.synthetic_shift``). Each run writes ``<name>.json`` and
``<name>.png`` to ``--out``. Then the PSI noise floor: the largest PSI over the key features and the
class mix of random windows of the in-patient test split, per window size (what an alert threshold
must stay above to not fire on sampling noise alone).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from benchmarks.common import beat_payloads, load_beats, server
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.operations import drift
from ecgbeats.serving import drift_cli
from ecgbeats.serving.scoring import Scorer, frame_to_beats, row_problems

SHIFTED = [
    ("noise_0.02", "noise", 0.02),
    ("noise_0.05", "noise", 0.05),
    ("noise_0.10", "noise", 0.10),
    ("wander_0.2", "baseline_wander", 0.2),
    ("wander_0.5", "baseline_wander", 0.5),
    ("gain_x1.5", "gain", 1.5),
    ("gain_x0.5", "gain", 0.5),
    ("fixed_scale_0.7", "fixed_scale", 0.7),
]
WINDOWS = (200, 500, 1000, 2000)
DRAWS = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the interpatient split directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    test = pd.read_parquet(args.data / "test.parquet")
    sets = {"in_patient_test": args.data / "test.parquet", "ds2_holdout": args.data / "holdout.parquet"}
    for name, kind, strength in SHIFTED:
        path = args.out / f"{name}.parquet"
        drift.synthetic_shift(test, kind, strength, seed=args.seed).to_parquet(path)
        sets[name] = path
    rows = []
    for name, path in sets.items():
        outputs = ["--out", str(args.out / f"{name}.json"), "--figure", str(args.out / f"{name}.png")]
        code = drift_cli.main([str(path), "--model", str(args.model), *outputs, "--name", name, "--fail-on-drift"])
        report = json.loads((args.out / f"{name}.json").read_text())
        rows.append({
            "set": name, "beats": report["n_beats"], "exit": code, "level": report["level"],
            **{f: report["features"][f]["psi"] for f in report["features"]},
            "class_mix": report["class_mix"]["psi"],
            "pred_S": report["class_mix"]["shares"]["S"], "pred_V": report["class_mix"]["shares"]["V"],
        })  # fmt: skip
    table = pd.DataFrame(rows).set_index("set")
    pd.set_option("display.width", 250)
    print("\nPSI per key feature and for the predicted class mix (exit 1 = drift flagged):")
    print(table.round(3).to_string())
    table.to_csv(args.out / "summary.csv")

    # noise floor: random windows of the unshifted in-patient test split
    bundle = load_bundle(args.model)
    scorer = Scorer(bundle)
    good = test[row_problems(test).to_numpy() == ""].reset_index(drop=True)
    beats = frame_to_beats(good)
    keys = drift.key_features(beats)
    codes = scorer.score_beats(beats).codes
    rng = np.random.default_rng(args.seed)
    floor = []
    for window in WINDOWS:
        worst = []
        for _ in range(DRAWS):
            pick = rng.choice(len(keys), size=window, replace=False)
            scores = drift.score(bundle.reference, keys.iloc[pick].reset_index(drop=True), codes[pick])
            worst.append(max(max(scores.psi.values()), scores.class_mix["psi"]))
        worst = np.array(worst)
        floor.append({
            "window": window, "median_max_psi": np.median(worst), "p95_max_psi": np.quantile(worst, 0.95),
            "p99_max_psi": np.quantile(worst, 0.99), "share_ge_0.1": np.mean(worst >= 0.1),
            "share_ge_0.25": np.mean(worst >= 0.25),
            "expected_psi_one_feature": drift.psi_noise_floor(drift.N_BINS + 1, bundle.reference["n_beats"], window),
        })  # fmt: skip
    floor = pd.DataFrame(floor).set_index("window")
    print(f"\nNo-drift noise floor: largest PSI over {len(keys.columns)} features and the class mix, "
          f"{DRAWS} random windows of the in-patient test split:")  # fmt: skip
    print(floor.round(4).to_string())
    floor.to_csv(args.out / "noise_floor.csv")
    service_gauges(args)
    return 0


def service_gauges(args: argparse.Namespace) -> None:
    gauges = {}
    with server(args.model, args.out / "server.log") as (base, _), httpx.Client(base_url=base, timeout=30) as client:
        for name in ("test", "holdout"):
            beats = beat_payloads(load_beats(args.data / f"{name}.parquet", 2000, seed=args.seed))
            for start in range(0, len(beats), 50):
                client.post("/v1/beats:classify", json={"beats": beats[start : start + 50]}).raise_for_status()
            lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith("ecgbeats_drift_")]
            gauges[name] = dict(line.rsplit(" ", 1) for line in lines)
    table = pd.DataFrame(gauges).astype(float)
    table.columns = ["after 2,000 in-patient test beats", "after 2,000 DS2 holdout beats"]
    print("\nThe service's drift gauges (GET /metrics), window 2,000 beats:")
    print(table.round(3).to_string())
    table.to_csv(args.out / "service_gauges.csv")


if __name__ == "__main__":
    sys.exit(main())
