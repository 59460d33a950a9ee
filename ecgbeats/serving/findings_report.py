"""A recording's findings as a page a person reads: one self-contained HTML file (no script, no CDN).

The page holds the summary table, the trends (heart rate per minute; ventricular and supraventricular
beats per hour, or per five minutes for a recording under two hours), one strip per kind of finding
(the longest ventricular run, the first couplet, bigeminy, the longest supraventricular run, the
longest pause, the first atrial fibrillation episode: 10 s of the first lead with every beat's class
over it) and the list of every event with its time. The figures are PNG images inside the page.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.modelling.findings import breaks_at, heart_rate_windows

CLASS_COLORS = {"N": "#15803d", "S": "#2563eb", "V": "#dc2626", "F": "#9333ea", "Q": "#b45309"}
STRIP_S = 10.0
BEFORE_S = 2.0  # a strip starts this long before its finding


def clock(seconds: float) -> str:
    """``h:mm:ss`` from the recording's start."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def strips_to_show(found: dict[str, Any]) -> list[tuple[str, float]]:
    """(title, start time) of one strip per kind of finding present."""
    out: list[tuple[str, float]] = []
    v, s = found["ventricular"], found["supraventricular"]
    if v["runs"]:
        run = max(v["runs"], key=lambda r: r["beats"])
        out.append((f"Longest ventricular run: {run['beats']} beats at {run['rate_bpm']:.0f} bpm", run["start_s"]))
    if v["couplets"]:
        out.append(("First ventricular couplet", v["first_couplet_s"]))
    if v["bigeminy"]:
        out.append((f"Ventricular bigeminy: {v['bigeminy'][0]['cycles']} cycles", v["bigeminy"][0]["start_s"]))
    if v["trigeminy"]:
        out.append((f"Ventricular trigeminy: {v['trigeminy'][0]['cycles']} cycles", v["trigeminy"][0]["start_s"]))
    if s["runs"]:
        run = max(s["runs"], key=lambda r: r["beats"])
        out.append((f"Longest supraventricular run: {run['beats']} beats at {run['rate_bpm']:.0f} bpm",
                    run["start_s"]))  # fmt: skip
    if found["pauses"]:
        pause = max(found["pauses"], key=lambda p: p["length_s"])
        doubt = f" (the detector doubts it: {pause['doubt'].replace('_', ' ')})" if pause["doubt"] else ""
        out.append((f"Longest pause: {pause['length_s']:.2f} s{doubt}", pause["start_s"]))
    af = found["atrial_fibrillation"]
    if af and af["episodes"]:
        first = af["episodes"][0]
        out.append((f"Atrial fibrillation or flutter: {clock(first['start_s'])} to {clock(first['end_s'])}",
                    first["start_s"] + BEFORE_S))  # fmt: skip
    return out


def _strip_figure(title: str, start_s: float, beats: pd.DataFrame, read: Callable[[int, int], np.ndarray],
                  fs: float, duration_s: float) -> str:  # fmt: skip
    from matplotlib.figure import Figure

    lo = max(start_s - BEFORE_S, 0.0)
    hi = min(lo + STRIP_S, duration_s)
    signal = read(int(round(lo * fs)), int(round(hi * fs)))
    lead = signal[:, 0] if signal.ndim == 2 else signal
    t = lo + np.arange(len(lead)) / fs
    figure = Figure(figsize=(11, 2.2))
    ax = figure.subplots()
    ax.plot(t, lead, color="#111", linewidth=0.8)
    here = beats[(beats["time_s"] >= lo) & (beats["time_s"] < hi)]
    top = float(np.max(lead)) if len(lead) else 1.0
    for time_s, name in zip(here["time_s"], here["class_name"], strict=True):
        ax.axvline(time_s, color=CLASS_COLORS.get(name, "#555"), alpha=0.25, linewidth=3)
        ax.text(time_s, top, name, color=CLASS_COLORS.get(name, "#555"), ha="center", va="bottom", fontsize=9,
                fontweight="bold")  # fmt: skip
    ax.set_title(f"{title} — {clock(lo)} to {clock(hi)}", fontsize=10, loc="left")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("s from the start")
    ax.set_ylabel("mV")
    ax.grid(alpha=0.3)
    return _png(figure)


def _trend_figure(found: dict[str, Any], beats: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    duration = found["duration_s"]
    times = beats["time_s"].to_numpy(dtype=np.float64)
    breaks = breaks_at(times, [(u["start_s"], u["end_s"]) for u in found["unanalysed"]])
    rate = heart_rate_windows(times, breaks, duration, found["config"]["window_s"])["rate_bpm"].to_numpy()
    n_min = len(rate)
    step = 3600.0 if duration > 7200.0 else 300.0
    bins = np.floor(times / step).astype(int)
    n_bins = max(int(np.ceil(duration / step)), 1)
    classes = beats["class_name"].astype(str).to_numpy()
    figure = Figure(figsize=(11, 4.2))
    ax1, ax2 = figure.subplots(2, 1, sharex=True)
    ax1.plot(np.arange(n_min) * found["config"]["window_s"] / 3600.0, rate, color="#111", linewidth=1)
    ax1.set_ylabel("heart rate (bpm)")
    ax1.set_title("Heart rate per minute", fontsize=10, loc="left")
    ax1.grid(alpha=0.3)
    width = step / 3600.0
    for k, name in enumerate(("V", "S")):
        per_bin = np.bincount(bins[classes == name], minlength=n_bins)[:n_bins]
        ax2.bar(np.arange(n_bins) * width + (k - 0.5) * width * 0.4, per_bin, width=width * 0.4, align="edge",
                color=CLASS_COLORS[name], label=name)  # fmt: skip
    ax2.set_ylabel(f"beats per {'hour' if step == 3600.0 else '5 min'}")
    ax2.set_xlabel("hours from the start")
    ax2.set_title("Ectopic beats", fontsize=10, loc="left")
    ax2.legend(loc="upper right")
    ax2.grid(alpha=0.3)
    return _png(figure)


def _row(label: str, value: object) -> str:
    return f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"


def _summary(found: dict[str, Any]) -> str:
    hr, v, s, af, hrv = (found["heart_rate"], found["ventricular"], found["supraventricular"],
                         found["atrial_fibrillation"], found["hrv"])  # fmt: skip
    by_class = ", ".join(f"{c} {n:,}" for c, n in found["beats"]["by_class"].items())
    nsvt = [r for r in v["runs"] if not r.get("sustained")]
    rows = [
        _row("Recording", f"{found['recording']['name']}, {clock(found['duration_s'])} "
                          f"({found['recording']['fs']:g} Hz, {', '.join(found['recording']['leads'])})"),
        _row("Analysed", f"{clock(found['analysed_s'])}; not analysed "
                         f"{clock(found['duration_s'] - found['analysed_s'])} "
                         f"in {len(found['unanalysed'])} stretch(es)"),
        _row("Beats", f"{found['beats']['total']:,} ({by_class})"),
        _row("Heart rate", f"mean {hr['mean_bpm']} bpm; minimum {hr['min_bpm']} bpm at {clock(hr['min_at_s'] or 0)}; "
                           f"maximum {hr['max_bpm']} bpm at {clock(hr['max_at_s'] or 0)} (1-minute windows)"),
        _row("Pauses ≥ {:g} s".format(found["config"]["pause_s"]),
             f"{len(found['pauses'])}" + (f"; longest {max(p['length_s'] for p in found['pauses']):.2f} s; "
                                          f"{sum(1 for p in found['pauses'] if p['doubt'])} doubted by the detector"
                                          if found["pauses"] else "")),
        _row("Ventricular ectopy", f"{v['beats']:,} beats: {v['isolated']:,} isolated, {v['couplets']:,} couplets, "
                                   f"{len(v['runs'])} runs of 3 or more ({len(nsvt)} non-sustained); "
                                   f"{len(v['bigeminy'])} bigeminy, {len(v['trigeminy'])} trigeminy episodes"),
        _row("Supraventricular ectopy", f"{s['beats']:,} beats: {s['isolated']:,} isolated, {s['couplets']:,} "
                                        f"couplets, {len(s['runs'])} runs of 3 or more"),
        _row("Atrial fibrillation / flutter", "not assessed by this model (no rhythm context)" if af is None else
             f"{len(af['episodes'])} episode(s), {clock(af['total_s'])} in all, burden {100 * af['burden']:.1f} %"),
        _row("Heart-rate variability (N-N)", "too few N-N intervals" if hrv is None else
             f"SDNN {hrv['sdnn_ms']} ms, RMSSD {hrv['rmssd_ms']} ms, pNN50 {hrv['pnn50_percent']} % "
             f"({hrv['nn_intervals']:,} intervals)"),
        _row("Model", f"{found['model']['version']} (sha256 {found['model']['digest'][:12]})"),
    ]  # fmt: skip
    return "<table class='summary'>" + "".join(rows) + "</table>"


def _events(found: dict[str, Any]) -> str:
    rows = []
    for run in found["ventricular"]["runs"]:
        kind = "sustained VT" if run["sustained"] else "ventricular run (NSVT)"
        rows.append(
            (run["start_s"], kind, f"{run['beats']} beats, {run['duration_s']:.1f} s, {run['rate_bpm']:.0f} bpm")
        )
    for key, kind in (("bigeminy", "ventricular bigeminy"), ("trigeminy", "ventricular trigeminy")):
        for e in found["ventricular"][key]:
            rows.append((e["start_s"], kind, f"{e['cycles']} cycles, to {clock(e['end_s'])}"))
    for run in found["supraventricular"]["runs"]:
        rows.append((run["start_s"], "supraventricular run", f"{run['beats']} beats, {run['rate_bpm']:.0f} bpm"))
    for p in found["pauses"]:
        rows.append(
            (
                p["start_s"],
                "pause",
                f"{p['length_s']:.2f} s" + (f" ({p['doubt'].replace('_', ' ')})" if p["doubt"] else ""),
            )
        )
    if found["atrial_fibrillation"]:
        for e in found["atrial_fibrillation"]["episodes"]:
            rows.append((e["start_s"], "atrial fibrillation / flutter", f"to {clock(e['end_s'])}"))
    for u in found["unanalysed"]:
        rows.append((u["start_s"], "not analysed", f"to {clock(u['end_s'])} ({u['reason']})"))
    if not rows:
        return "<p>No event.</p>"
    body = "".join(f"<tr><td>{clock(t)}</td><td>{html.escape(k)}</td><td>{html.escape(d)}</td></tr>"
                   for t, k, d in sorted(rows))  # fmt: skip
    return f"<table class='events'><tr><th>time</th><th>event</th><th>detail</th></tr>{body}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #111; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 0.25em 0.8em; vertical-align: top; }
table.summary th { width: 16em; } tr:nth-child(even) { background: #f4f4f5; }
img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
"""


def render_report(found: dict[str, Any], beats: pd.DataFrame, read: Callable[[int, int], np.ndarray], fs: float) -> str:
    """The HTML page of one recording's findings (``found``: ``recording_findings`` plus its ``recording``
    and ``model``); ``beats``: time_s and class_name of the classified beats; ``read(start, stop)``:
    the signal (samples, leads) in mV, for the strips."""
    strips = "".join(
        f"<img alt='{html.escape(title)}' src='{_strip_figure(title, start, beats, read, fs, found['duration_s'])}'>"
        for title, start in strips_to_show(found)
    )
    name = html.escape(found["recording"]["name"])
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Findings: {name}</title><style>{STYLE}</style></head><body>"
        f"<h1>Findings: {name}</h1>"
        "<p class='note'>Computed by ecgbeats from the beats it detected and classified; a finding is a prompt "
        "for a reader of the ECG, not a diagnosis. Definitions: <code>ecgbeats/modelling/findings.py</code>.</p>"
        f"<h2>Summary</h2>{_summary(found)}"
        f"<h2>Trends</h2><img alt='trends' src='{_trend_figure(found, beats)}'>"
        f"<h2>Strips</h2>{strips or '<p>No finding to show.</p>'}"
        f"<h2>Events</h2>{_events(found)}"
        "</body></html>\n"
    )
