"""A stretch of a recording with its reference beat and each beat's class: the modelling report's figure.

Each record of ``record.figure.records`` (``RECORD:START_S``) goes whole through the service's strip path
with a DS1-only record model (``Scorer.score_strip``, both leads); the figure shows ``record.figure.seconds``
of its first lead from that start, every
detected beat marked with its class (colour), the reference annotation's class above it, and under it
the beat's RR against the recording's sinus reference (``rr_prev_ref``) and whether its QRS is the
reference's (``ref_qrs_corr`` at least 0.9: a filled marker). The same figures per record go to JSON.

    python -m studies.reference_figure --model models/record-reference-ds1 --raw data/raw/mitdb \\
        --figure plots/record-reference/reference.png --metrics metrics/record-reference/reference.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ecgbeats.analysis.plots import COLORS, save, subplots
from ecgbeats.data.aami import SYMBOL_TO_LABEL
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.io import write_json
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.modelling.ec57 import match_beats
from ecgbeats.serving.scoring import Scorer
from stages.common import load_params

SAME_QRS = 0.9  # ref_qrs_corr at least this: the reference's QRS (the rhythm rules' default)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a record bundle")
    parser.add_argument("--raw", type=Path, required=True, help="MIT-BIH directory")
    parser.add_argument("--figure", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    figure = load_params("record", args.params)["figure"]
    records, seconds = list(figure["records"]), float(figure["seconds"])
    scorer = Scorer(load_bundle(args.model), num_threads=1)
    names = scorer.class_names
    fig, axes = subplots(len(records), 1, figsize=(13, 3.2 * len(records)), squeeze=False)
    summary: dict[str, object] = {}
    for ax, spec in zip(axes[:, 0], records, strict=True):
        record, _, start_s = spec.partition(":")
        rec = read_record_signals(args.raw, record)
        result = scorer.score_strip(rec.signal[:, :2], rec.fs)  # both leads, as the EC57 stage
        beats, codes = result.beats, result.predictions.codes
        symbols = np.asarray(rec.ann_symbols, dtype=object)
        annotated = np.isin(symbols, list(SYMBOL_TO_LABEL))
        truth_at, truth = rec.ann_samples[annotated], np.array([SYMBOL_TO_LABEL[s] for s in symbols[annotated]])
        match = match_beats(truth_at, beats["r_peak"].to_numpy(), rec.fs)
        labels = np.full(len(beats), -1)
        labels[match.detected] = truth[match.reference]
        same_qrs = beats["ref_qrs_corr"].to_numpy() >= SAME_QRS
        summary[record] = {
            "beats": len(beats),
            "reference_sinus_share": round(float((beats["ref_sinus"] == 1).mean()), 4),
            "reference_rr_s_median": round(float(np.nanmedian(beats["ref_rr"])), 4),
            "same_qrs_share": round(float(same_qrs.mean()), 4),
            "by_true_class": {
                names[c]: {
                    "beats": int((labels == c).sum()),
                    "rr_prev_ref_median": round(float(np.nanmedian(beats["rr_prev_ref"][labels == c])), 4),
                    "same_qrs_share": round(float(same_qrs[labels == c].mean()), 4),
                    "called": {names[k]: int(((labels == c) & (codes == k)).sum()) for k in range(len(names))},
                }
                for c in range(len(names))
                if (labels == c).any()
            },
        }
        start = float(start_s or 0.0)
        lo, hi = int(start * rec.fs), int((start + seconds) * rec.fs)
        t = np.arange(lo, hi) / rec.fs
        x = rec.signal[lo:hi, 0]
        ax.plot(t, x, color="0.35", lw=0.8)
        top = float(np.nanmax(x)) if len(x) else 1.0
        for i in np.flatnonzero((beats["r_peak"] >= lo) & (beats["r_peak"] < hi)):
            at = beats["r_peak"].iat[i] / rec.fs
            name = names[codes[i]]
            filled = COLORS[name] if same_qrs[i] else "none"
            ax.scatter([at], [top + 0.15], s=60, edgecolor=COLORS[name], facecolor=filled, marker="o")
            ax.text(at, top + 0.35, names[labels[i]] if labels[i] >= 0 else "-", ha="center", fontsize=8)
            ratio = beats["rr_prev_ref"].iat[i]
            ax.text(at, float(np.nanmin(x)) - 0.25, "" if np.isnan(ratio) else f"{ratio:.2f}", ha="center", fontsize=7)
        ax.set_xlim(start, start + seconds)
        ax.set_ylim(float(np.nanmin(x)) - 0.45, top + 0.6)
        ax.set_ylabel("mV")
        ax.set_title(
            f"record {record}: marker = class called (colour; filled: the reference's QRS), "
            f"letter above = annotated class, number below = RR / sinus reference RR",
            fontsize=9,
        )
        handles = [ax.scatter([], [], color=COLORS[n], label=n) for n in names]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    axes[-1, 0].set_xlabel("s")
    save(fig, args.figure)
    write_json(summary, args.metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
