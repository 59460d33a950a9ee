// The ECG viewer: reads a recording in the browser, has the service classify it through the public
// API (/v1/ecg:classify for a strip, /v1/beats:classify for Kaggle beat rows) and draws every beat.
"use strict";

(function () {
  const CLASS_COLORS = { N: "#15803d", S: "#2563eb", V: "#dc2626", F: "#9333ea", Q: "#b45309" };
  const KAGGLE_FS = 125; // the Kaggle beats are resampled to 125 Hz
  const KAGGLE_SAMPLES = 187;
  const KAGGLE_LABELS = ["N", "S", "V", "F", "Q"];
  const KEY_STORAGE = "ecgbeats.apiKey";
  const INITIAL_SPAN_S = 20;
  const HOVER_PX = 10;

  const $ = (id) => document.getElementById(id);
  const state = {
    model: null, // GET /v1/model
    recording: null, // {name, kind, fs, leads: [{name, values}], reference, info}
    result: null, // the API's answer (strip) or a strip-shaped summary of the beat rows' answer
    beats: [], // [{index, r_peak, time_s, class_name, probabilities, rr_prev_s, rr_next_s, rhythm, rr_check}]
    times: null, // Float64Array of the beats' times, for the binary searches
    hovered: -1,
    selected: -1,
    scoredUntil: null, // seconds: the end of the scored part when the service's limit cut the strip
    unscored: [], // detected beats the service did not classify: [{r_peak, time_s, reason}]
    unusable: [], // stretches the service judged unusable: [{start_s, end_s, reason}]
    chart: null,
    overview: null,
  };

  // ------------------------------------------------------------------ service calls

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: body === undefined ? "GET" : "POST",
        headers: body === undefined ? authHeaders() : { "Content-Type": "application/json", ...authHeaders() },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new Error(`cannot reach the service: ${err.message}`);
    }
    const text = await response.text();
    let payload = null;
    try {
      payload = JSON.parse(text);
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      const message = payload && payload.message ? payload.message : text.slice(0, 300) || response.statusText;
      const error = new Error(message);
      error.status = response.status;
      error.retryAfter = response.headers.get("Retry-After");
      throw error;
    }
    return payload;
  }

  async function loadModel() {
    const el = $("model");
    try {
      state.model = await api("/v1/model");
      const m = state.model;
      el.replaceChildren();
      const version = document.createElement("span");
      version.className = "version";
      version.textContent = `model ${m.version}`;
      const digest = document.createElement("code");
      digest.className = "digest";
      digest.id = "model-digest";
      digest.textContent = `sha256 ${m.digest}`;
      digest.title = "sha256 of the bundle's manifest: pin it with ECGBEATS_MODEL_DIGEST";
      el.append(version, digest);
      el.classList.remove("bad");
    } catch (err) {
      state.model = null;
      const hint = err.status === 401 || err.status === 403 ? "enter an API key · " : "";
      el.textContent = `model: unavailable (${hint}${err.status ? `HTTP ${err.status}: ` : ""}${err.message})`;
      el.classList.add("bad");
    }
  }

  // ------------------------------------------------------------------ status and errors

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(title, message) {
    const box = $("error");
    box.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = title;
    const detail = document.createElement("span");
    detail.className = "error-message";
    detail.textContent = message;
    box.append(strong, detail);
    box.hidden = false;
    document.body.dataset.state = "error";
  }

  function clearError() {
    $("notice").hidden = true;
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  function apiErrorTitle(err) {
    if (!err.status) return "The service cannot be reached";
    if (err.status === 401 || err.status === 403) return `Not allowed (HTTP ${err.status}): enter a valid API key`;
    if (err.status === 503) return `The service is busy (HTTP 503)${err.retryAfter ? `, retry in ${err.retryAfter} s` : ""}`;
    return `The service cannot score this input (HTTP ${err.status})`;
  }

  // ------------------------------------------------------------------ reading files

  const readText = (file) => file.text();
  const readBuffer = (file) => file.arrayBuffer();
  const extension = (name) => (/\.([^.]+)$/.exec(name) || [, ""])[1].toLowerCase();

  async function readRecording(files) {
    const byExt = (ext) => files.filter((f) => extension(f.name) === ext);
    const headers = byExt("hea");
    if (headers.length > 1) throw new Error(`open one record at a time (${headers.length} .hea files given)`);
    if (headers.length === 1) return readWfdb(headers[0], files);
    const tables = files.filter((f) => ["csv", "txt"].includes(extension(f.name)));
    if (tables.length === 1) return readCsv(tables[0]);
    if (byExt("dat").length) throw new Error("a .dat file needs its header: open the .hea and the .dat together");
    const names = files.map((f) => f.name).join(", ");
    throw new Error(`cannot tell what ${names} is: open a WFDB record (.hea + .dat) or one CSV file`);
  }

  async function readWfdb(headerFile, files) {
    const header = EcgFiles.parseHeader(await readText(headerFile), headerFile.name);
    const buffers = {};
    for (const f of files) if (extension(f.name) === "dat") buffers[EcgFiles.baseName(f.name)] = await readBuffer(f);
    const { leads, length, warnings } = EcgFiles.readSignals(header, buffers);
    for (const lead of leads) {
      if (lead.invalid) {
        throw new Error(
          `${lead.name} has ${lead.invalid.toLocaleString()} missing samples (WFDB's no-value code); ` +
            "the service needs a continuous strip",
        );
      }
    }
    const annotations = files.find((f) => extension(f.name) === "atr");
    let reference = null;
    if (annotations) {
      reference = EcgFiles.readAnnotations(await readBuffer(annotations)).filter((a) => a.sample < length);
    }
    return {
      name: header.name,
      kind: "strip",
      fs: header.fs,
      leads,
      reference,
      info: `WFDB · ${header.fs} Hz · ${leads.map((l) => l.name).join(", ")}`,
      warnings,
    };
  }

  async function readCsv(file) {
    const table = EcgFiles.parseCsv(await readText(file), file.name);
    const name = file.name.replace(/\.[^.]+$/, "");
    if (table.width === KAGGLE_SAMPLES || table.width === KAGGLE_SAMPLES + 1) {
      const labelled = table.width === KAGGLE_SAMPLES + 1;
      const samples = table.rows.map((r) => r.slice(0, KAGGLE_SAMPLES));
      const values = new Float64Array(samples.length * KAGGLE_SAMPLES);
      samples.forEach((r, i) => values.set(r, i * KAGGLE_SAMPLES));
      const reference = labelled
        ? table.rows.map((r, i) => ({ sample: i * KAGGLE_SAMPLES, aami: KAGGLE_LABELS[r[KAGGLE_SAMPLES]] || "?" }))
        : null;
      return {
        name,
        kind: "beats",
        fs: KAGGLE_FS,
        samples,
        leads: [{ name: "beat rows, end to end (scaled 0–1)", values }],
        reference,
        info: `beat CSV · ${samples.length.toLocaleString()} Kaggle rows${labelled ? " with labels" : ""}`,
        warnings: [],
      };
    }
    let columns = table.rows[0].map((_, j) => j);
    let names = columns.map((j) => (table.header ? table.header[j] : `column ${j + 1}`));
    if (table.header && /^(t|time|sec|seconds|s|sample|samples|index)$/i.test(table.header[0]) && table.width > 1) {
      columns = columns.slice(1); // a time or index column is not a lead
      names = names.slice(1);
    }
    if (columns.length > 2) {
      throw new Error(
        `${file.name} has ${table.width} columns: a CSV strip has one or two columns of mV, ` +
          `a beat CSV ${KAGGLE_SAMPLES} values per row (${KAGGLE_SAMPLES + 1} with a label)`,
      );
    }
    const fs = table.fs || parseFloat($("fs").value);
    if (!(fs > 0)) throw new Error("enter the CSV strip's sampling rate (Hz)");
    if (table.fs) $("fs").value = String(table.fs);
    const leads = columns.map((j, k) => ({
      name: names[k],
      values: Float64Array.from(table.rows, (r) => r[j]),
    }));
    return { name, kind: "strip", fs, leads, reference: null, info: `CSV strip · ${fs} Hz · ${names.join(", ")}`, warnings: [] };
  }

  // ------------------------------------------------------------------ scoring

  async function scoreStrip(rec) {
    // a strip longer than the service accepts (an MIT-BIH record is 1805.6 s) is scored up to the limit,
    // and the page says so; the rest is drawn unmarked
    const limits = state.model && state.model.limits;
    const maxSeconds = limits ? limits.strip_seconds[1] : Infinity;
    const n = rec.leads[0].values.length;
    const length = Math.min(n, Math.floor(maxSeconds * rec.fs));
    state.scoredUntil = length < n ? length / rec.fs : null;
    if (length < n) {
      rec.warnings.push(
        `only the first ${formatDuration(length / rec.fs)} of ${formatDuration(n / rec.fs)} are scored ` +
          `(the service accepts strips of at most ${maxSeconds} s)`,
      );
    }
    const body = { fs: rec.fs, signal: Array.from(rec.leads[0].values.subarray(0, length)) };
    // the detector checks its beats against a second lead (and a two-lead model measures on it)
    if (rec.leads.length > 1) body.second_lead = Array.from(rec.leads[1].values.subarray(0, length));
    const answer = await api("/v1/ecg:classify", body);
    return { answer, beats: answer.beats, unscored: answer.unscored || [] };
  }

  async function scoreBeatRows(rec) {
    const chunk = (state.model && state.model.limits && state.model.limits.max_batch_beats) || 1000;
    const predictions = [];
    let answer = null;
    for (let start = 0; start < rec.samples.length; start += chunk) {
      setStatus(`classifying beat rows ${start + 1}–${Math.min(start + chunk, rec.samples.length)} of ${rec.samples.length}…`);
      answer = await api("/v1/beats:classify", { beats: rec.samples.slice(start, start + chunk).map((s) => ({ samples: s })) });
      for (const p of answer.predictions) predictions.push({ ...p, index: start + p.index });
    }
    const counts = {};
    for (const name of classNames()) counts[name] = 0;
    const beats = predictions.map((p) => {
      counts[p.class_name] = (counts[p.class_name] || 0) + 1;
      const r_peak = p.index * KAGGLE_SAMPLES; // a Kaggle row starts at its R peak
      return { ...p, r_peak, time_s: r_peak / KAGGLE_FS, rr_prev_s: null, rr_next_s: null };
    });
    const summary = {
      duration_s: (rec.samples.length * KAGGLE_SAMPLES) / KAGGLE_FS,
      detected_r_peaks: null,
      beats: beats.length,
      counts,
      mean_heart_rate_bpm: null,
    };
    return { answer: { model: answer.model, summary, beats }, beats, unscored: [] };
  }

  function classNames() {
    return state.model ? state.model.classes.map((c) => c.name) : Object.keys(CLASS_COLORS);
  }

  function classDescription(name) {
    const c = state.model && state.model.classes.find((k) => k.name === name);
    return c ? c.description : "";
  }

  async function openFiles(fileList) {
    const files = Array.from(fileList);
    if (!files.length) return;
    clearError();
    // the previous recording goes away: an error below must not look like it belongs to it
    for (const id of ["summary", "plot-area", "beat-panel", "tooltip"]) $(id).hidden = true;
    document.body.dataset.state = "loading";
    setStatus(`reading ${files.map((f) => f.name).join(", ")}…`);
    let rec;
    try {
      rec = await readRecording(files);
    } catch (err) {
      setStatus(`${files.map((f) => f.name).join(", ")}: not scored`);
      showError("Cannot read this file", err.message);
      return;
    }
    if (!state.model) await loadModel();
    const seconds = rec.leads[0].values.length / rec.fs;
    setStatus(`classifying ${rec.name} (${formatDuration(seconds)} of ECG)…`);
    const started = performance.now();
    let scored;
    try {
      state.scoredUntil = null;
      state.unscored = [];
      state.unusable = [];
      scored = rec.kind === "beats" ? await scoreBeatRows(rec) : await scoreStrip(rec);
    } catch (err) {
      setStatus(`${files.map((f) => f.name).join(", ")}: not scored`);
      showError(apiErrorTitle(err), err.message);
      return;
    }
    const elapsed = (performance.now() - started) / 1000;
    state.recording = rec;
    state.result = scored.answer;
    state.beats = scored.beats;
    state.times = Float64Array.from(scored.beats, (b) => b.r_peak / rec.fs);
    state.unscored = scored.unscored;
    const quality = scored.answer.summary.quality;
    state.unusable = quality ? quality.unusable.filter((s) => s.reason !== "spike" || s.end_s > s.start_s) : [];
    if (quality) qualityWarnings(quality, rec);
    state.hovered = -1;
    state.selected = -1;
    if (rec.reference) matchReference(rec);
    render();
    $("notice").textContent = rec.warnings.join("; ");
    $("notice").hidden = !rec.warnings.length;
    setStatus(`${rec.name}: ${scored.beats.length.toLocaleString()} beats classified in ${elapsed.toFixed(1)} s`);
    document.body.dataset.state = "scored";
  }

  // what the service said about the strip's quality, in words
  function qualityWarnings(quality, rec) {
    if (quality.polarity && quality.polarity !== "upright") {
      rec.warnings.push(`${rec.leads[0].name}: ${quality.polarity} (the service's reading of the QRS deflections)`);
    }
    if (quality.unusable.length || quality.unscored_beats) {
      const reasons = {};
      for (const s of quality.unusable) reasons[s.reason] = (reasons[s.reason] || 0) + 1;
      const kinds = Object.entries(reasons).map(([k, n]) => `${n} ${k}`).join(", ");
      rec.warnings.push(
        `unusable stretches (${kinds || "none"}): ${quality.unscored_beats.toLocaleString()} detected ` +
          "beats in them are not classified (grey marks)",
      );
    }
    if (quality.spikes_bridged) rec.warnings.push(`${quality.spikes_bridged} spike(s) bridged before detection`);
  }

  // each reference beat: the class of the detected beat within 150 ms (the EC57 match window), if any
  function matchReference(rec) {
    const tolerance = rec.kind === "beats" ? 0.5 / rec.fs : 0.15;
    for (const ref of rec.reference) {
      const t = ref.sample / rec.fs;
      const i = nearestBeat(t);
      ref.scored = state.scoredUntil === null || t <= state.scoredUntil;
      ref.predicted = i >= 0 && Math.abs(state.times[i] - t) <= tolerance ? state.beats[i].class_name : null;
    }
  }

  // ------------------------------------------------------------------ rendering

  function formatDuration(s) {
    if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    return `${m} min ${Math.round(s - 60 * m)} s`;
  }

  function formatTime(s) {
    const m = Math.floor(s / 60);
    const rest = s - 60 * m;
    return `${m}:${rest < 10 ? "0" : ""}${rest.toFixed(rest % 1 ? 2 : 0)}`;
  }

  function lowerBound(times, t) {
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (times[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function nearestBeat(t) {
    const times = state.times;
    if (!times || !times.length) return -1;
    const i = lowerBound(times, t);
    if (i === 0) return 0;
    if (i === times.length) return times.length - 1;
    return t - times[i - 1] <= times[i] - t ? i - 1 : i;
  }

  function render() {
    const rec = state.recording;
    const summary = state.result.summary;
    $("summary").hidden = false;
    $("plot-area").hidden = false;
    $("s-name").textContent = rec.name;
    $("s-info").textContent = rec.info;
    $("s-beats").textContent = summary.beats.toLocaleString();
    $("s-peaks").textContent =
      summary.detected_r_peaks === null
        ? "one per row"
        : `of ${summary.detected_r_peaks.toLocaleString()} R peaks detected` +
          (state.unscored.length ? ` · ${state.unscored.length.toLocaleString()} not classified` : "");
    $("s-hr").textContent =
      summary.mean_heart_rate_bpm === null ? "—" : `${Math.round(summary.mean_heart_rate_bpm)} bpm`;
    $("s-duration").textContent =
      summary.mean_heart_rate_bpm === null && rec.kind === "beats"
        ? "beat rows carry no rhythm"
        : `over ${formatDuration(summary.duration_s)}${state.scoredUntil !== null ? " (scored part)" : ""}`;
    const chips = $("s-counts");
    chips.replaceChildren();
    for (const name of classNames()) {
      const chip = document.createElement("button");
      chip.className = "chip";
      chip.dataset.class = name;
      chip.style.setProperty("--c", CLASS_COLORS[name] || "#555");
      chip.title = `${classDescription(name)}: jump to the next one`;
      const count = summary.counts[name] || 0;
      const letter = document.createElement("span");
      letter.className = "chip-class";
      letter.textContent = name;
      const value = document.createElement("span");
      value.className = "chip-count";
      value.textContent = count.toLocaleString();
      chip.append(letter, value);
      chip.disabled = count === 0;
      chip.addEventListener("click", () => jumpToClass(name));
      chips.append(chip);
    }
    $("ref-toggle-label").hidden = !rec.reference;
    buildLegend();
    buildCharts();
    buildFindings(state.result.findings);
    $("beat-panel").hidden = true;
  }

  function buildLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    for (const name of classNames()) {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.style.setProperty("--c", CLASS_COLORS[name] || "#555");
      item.textContent = `${name} ${classDescription(name)}`;
      legend.append(item);
    }
    if (state.unscored.length || state.unusable.length) {
      const item = document.createElement("span");
      item.className = "legend-item unscored";
      item.textContent = "– dashed grey: detected, not classified (in an unusable stretch, shaded)";
      legend.append(item);
    }
    if (state.recording.reference) {
      const ref = document.createElement("span");
      ref.className = "legend-item ref";
      const refs = state.recording.reference.filter((r) => r.scored);
      const matched = refs.filter((r) => r.predicted !== null);
      const agree = matched.filter((r) => r.predicted === r.aami).length;
      const within = state.recording.kind === "beats" ? "" : " within 150 ms";
      ref.id = "reference-agreement";
      ref.textContent =
        `letters below: reference annotations, grey where the model agrees, coloured where not · ` +
        `${refs.length.toLocaleString()} reference beats, ${matched.length.toLocaleString()} matched by a classified beat${within}, ` +
        `${agree.toLocaleString()} of those (${((100 * agree) / Math.max(1, matched.length)).toFixed(1)}%) with the same class`;
      legend.append(ref);
    }
  }

  function robustRange(values) {
    // 0.1 and 99.9 percentiles of a sample: one artefact does not squash the trace
    const step = Math.max(1, Math.floor(values.length / 20000));
    const sample = [];
    for (let i = 0; i < values.length; i += step) sample.push(values[i]);
    sample.sort((a, b) => a - b);
    const lo = sample[Math.floor(sample.length * 0.001)];
    const hi = sample[Math.min(sample.length - 1, Math.floor(sample.length * 0.999))];
    const pad = Math.max((hi - lo) * 0.12, 0.05);
    return [lo - pad, hi + pad];
  }

  function buildCharts() {
    const rec = state.recording;
    const n = rec.leads[0].values.length;
    const xs = new Float64Array(n);
    for (let i = 0; i < n; i++) xs[i] = i / rec.fs;
    const duration = n / rec.fs;
    const two = rec.leads.length > 1;
    const r1 = robustRange(rec.leads[0].values);
    // two leads share the plot: lead 1 in the upper part, lead 2 in the lower part
    const range1 = two ? [r1[0] - (r1[1] - r1[0]) * 0.75, r1[1] + (r1[1] - r1[0]) * 0.18] : [r1[0], r1[1] + (r1[1] - r1[0]) * 0.18];
    const r2 = two ? robustRange(rec.leads[1].values) : null;
    const range2 = two ? [r2[0] - (r2[1] - r2[0]) * 0.25, r2[1] + (r2[1] - r2[0]) * 1.6] : null;
    const data = [xs, rec.leads[0].values];
    if (two) data.push(rec.leads[1].values);
    const unit = rec.kind === "beats" ? "" : " mV";

    if (state.chart) state.chart.destroy();
    if (state.overview) state.overview.destroy();
    const chartEl = $("chart");
    const width = chartEl.clientWidth || 1000;
    const series = [
      { label: "time" },
      { label: rec.leads[0].name, stroke: "#111827", width: 1.1, scale: "y", points: { show: false } },
    ];
    if (two) series.push({ label: rec.leads[1].name, stroke: "#94a3b8", width: 1, scale: "y2", points: { show: false } });
    const scales = { x: { time: false }, y: { range: () => range1 } };
    if (two) scales.y2 = { range: () => range2 };
    const span = Math.min(duration, rec.kind === "beats" ? (12 * KAGGLE_SAMPLES) / KAGGLE_FS : INITIAL_SPAN_S);

    state.chart = new uPlot(
      {
        width,
        height: two ? 420 : 340,
        series,
        scales,
        legend: { show: false },
        cursor: { drag: { x: true, y: false, setScale: true }, points: { show: false }, focus: { prox: -1 } },
        axes: [
          { values: (u, splits) => splits.map((s) => formatTime(s)), grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d1d5db" } },
          {
            scale: "y",
            label: `${rec.leads[0].name}${unit}`,
            labelSize: 22,
            grid: { stroke: "#eef0f3" },
            ticks: { stroke: "#d1d5db" },
            size: 52,
            filter: (u, splits) => splits.map((v) => (v >= r1[0] && v <= r1[1] ? v : null)),
          },
          ...(two
            ? [{ scale: "y2", side: 1, label: `${rec.leads[1].name}${unit}`, labelSize: 22, grid: { show: false }, size: 52, stroke: "#94a3b8", filter: (u, splits) => splits.map((v) => (v >= r2[0] && v <= r2[1] ? v : null)) }]
            : []),
        ],
        hooks: {
          draw: [drawBeats],
          setCursor: [onCursor],
          setScale: [(u, key) => key === "x" && state.overview && state.overview.redraw(false)],
        },
        plugins: [wheelZoom(duration)],
      },
      data,
      chartEl,
    );
    state.chart.setScale("x", { min: 0, max: span });

    const overviewEl = $("overview");
    state.overview = new uPlot(
      {
        width,
        height: 78,
        series: [{}, { stroke: "#9ca3af", width: 1, points: { show: false } }],
        scales: { x: { time: false, range: [0, duration] }, y: { range: () => r1 } },
        legend: { show: false },
        axes: [{ show: false }, { show: false }],
        cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false }, y: false },
        select: { show: true },
        hooks: { draw: [drawOverview], setSelect: [onOverviewSelect] },
      },
      [xs, rec.leads[0].values],
      overviewEl,
    );
    state.overview.over.addEventListener("click", (e) => {
      const u = state.overview;
      if (u.select.width > 2) return;
      const t = u.posToVal(e.offsetX, "x");
      const { min, max } = state.chart.scales.x;
      setWindow(t - (max - min) / 2, t + (max - min) / 2);
    });
    state.chart.over.addEventListener("mousedown", (e) => {
      state.downAt = e.clientX;
    });
    state.chart.over.addEventListener("click", (e) => {
      if (state.downAt !== undefined && Math.abs(e.clientX - state.downAt) > 3) return; // a drag-zoom
      if (state.hovered >= 0) selectBeat(state.hovered, false);
    });
    state.chart.over.addEventListener("mouseleave", () => hideTooltip());
  }

  function setWindow(min, max) {
    const rec = state.recording;
    const duration = rec.leads[0].values.length / rec.fs;
    let span = Math.min(max - min, duration);
    span = Math.max(span, 0.5);
    let lo = Math.max(0, Math.min(min, duration - span));
    state.chart.setScale("x", { min: lo, max: lo + span });
  }

  function wheelZoom(duration) {
    return {
      hooks: {
        ready: (u) => {
          u.over.addEventListener(
            "wheel",
            (e) => {
              e.preventDefault();
              const { min, max } = u.scales.x;
              const span = max - min;
              if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
                const delta = (e.shiftKey ? e.deltaY : e.deltaX) > 0 ? 0.2 * span : -0.2 * span;
                setWindow(min + delta, max + delta);
                return;
              }
              const at = u.posToVal(e.offsetX, "x");
              const factor = e.deltaY < 0 ? 0.75 : 1 / 0.75;
              const next = Math.min(duration, Math.max(0.5, span * factor));
              const left = at - ((at - min) / span) * next;
              setWindow(left, left + next);
            },
            { passive: false },
          );
        },
      },
    };
  }

  function visibleRange(u) {
    const { min, max } = u.scales.x;
    return [lowerBound(state.times, min), lowerBound(state.times, max)];
  }

  function drawBeats(u) {
    const ctx = u.ctx;
    const rec = state.recording;
    const { left, top, width, height } = u.bbox;
    const [first, last] = visibleRange(u);
    const count = last - first;
    const pxPerBeat = count ? width / count : width;
    const dpr = devicePixelRatio || 1;
    const values = rec.leads[0].values;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.font = `${Math.round(12 * dpr)}px system-ui, sans-serif`;
    for (let i = first; i < last; i++) {
      const beat = state.beats[i];
      const color = CLASS_COLORS[beat.class_name] || "#555";
      const x = Math.round(u.valToPos(state.times[i], "x", true)) + 0.5;
      const normal = beat.class_name === "N";
      ctx.globalAlpha = i === state.selected ? 0.9 : normal ? 0.18 : 0.45;
      ctx.strokeStyle = color;
      ctx.lineWidth = (i === state.selected ? 3 : normal ? 1 : 1.5) * dpr;
      ctx.beginPath();
      ctx.moveTo(x, top + 18 * dpr);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.globalAlpha = 1;
      const y = u.valToPos(values[beat.r_peak], "y", true);
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(x, y, (i === state.selected || i === state.hovered ? 5 : pxPerBeat > 6 ? 3.2 : 2) * dpr, 0, 2 * Math.PI);
      ctx.fill();
      if (pxPerBeat > 14 || !normal) {
        ctx.font = `${normal ? "" : "bold "}${Math.round(12 * dpr)}px system-ui, sans-serif`;
        ctx.fillText(beat.class_name, x, top + 3 * dpr);
      }
    }
    if (state.scoredUntil !== null) shadeUnscored(u, ctx, dpr, true);
    drawUnusable(u, ctx, dpr, true);
    for (const beat of state.unscored) {
      if (beat.time_s < u.scales.x.min || beat.time_s > u.scales.x.max) continue;
      const x = Math.round(u.valToPos(beat.time_s, "x", true)) + 0.5;
      ctx.strokeStyle = "#94a3b8";
      ctx.fillStyle = "#94a3b8";
      ctx.lineWidth = dpr;
      ctx.setLineDash([3 * dpr, 3 * dpr]);
      ctx.beginPath();
      ctx.moveTo(x, top + 18 * dpr);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.font = `${Math.round(12 * dpr)}px system-ui, sans-serif`;
      if (pxPerBeat > 14) ctx.fillText("–", x, top + 3 * dpr);
    }
    if (rec.reference && $("ref-toggle").checked) {
      const { min, max } = u.scales.x;
      ctx.textBaseline = "bottom";
      for (const ref of rec.reference) {
        const t = ref.sample / rec.fs;
        if (t < min || t > max) continue;
        const agrees = ref.predicted === ref.aami;
        if (agrees && pxPerBeat <= 14) continue;
        const x = u.valToPos(t, "x", true);
        ctx.fillStyle = agrees ? "#9ca3af" : CLASS_COLORS[ref.aami] || "#555";
        ctx.font = `${agrees ? "" : "bold "}${Math.round(11 * dpr)}px system-ui, sans-serif`;
        ctx.fillText(agrees ? ref.aami : `ref ${ref.aami}`, x, top + height - 2 * dpr);
      }
    }
    ctx.restore();
  }

  function drawUnusable(u, ctx, dpr, label) {
    const { left, top, width, height } = u.bbox;
    for (const s of state.unusable) {
      const x0 = Math.max(left, u.valToPos(s.start_s, "x", true));
      const x1 = Math.min(left + width, u.valToPos(s.end_s, "x", true));
      if (x1 <= x0) continue;
      ctx.fillStyle = "rgba(245, 158, 11, 0.14)";
      ctx.fillRect(x0, top, Math.max(x1 - x0, dpr), height);
      if (label && x1 - x0 > 90 * dpr) {
        ctx.fillStyle = "#92400e";
        ctx.textAlign = "left";
        ctx.textBaseline = "top";
        ctx.font = `${Math.round(12 * dpr)}px system-ui, sans-serif`;
        ctx.fillText(`unusable: ${s.reason}`, x0 + 6 * dpr, top + 20 * dpr);
      }
    }
  }

  function shadeUnscored(u, ctx, dpr, label) {
    const { left, top, width, height } = u.bbox;
    const x = Math.max(left, u.valToPos(state.scoredUntil, "x", true));
    if (x >= left + width) return;
    ctx.fillStyle = "rgba(100, 116, 139, 0.16)";
    ctx.fillRect(x, top, left + width - x, height);
    if (label && left + width - x > 160 * dpr) {
      ctx.fillStyle = "#475569";
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      ctx.font = `${Math.round(12 * dpr)}px system-ui, sans-serif`;
      ctx.fillText("not scored: beyond the service's strip limit", x + 6 * dpr, top + 20 * dpr);
    }
  }

  function drawOverview(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const dpr = devicePixelRatio || 1;
    ctx.save();
    for (let i = 0; i < state.beats.length; i++) {
      const name = state.beats[i].class_name;
      if (name === "N") continue;
      ctx.fillStyle = CLASS_COLORS[name] || "#555";
      const x = u.valToPos(state.times[i], "x", true);
      ctx.fillRect(x - dpr / 2, top + height - 12 * dpr, Math.max(1, dpr), 12 * dpr);
    }
    if (state.scoredUntil !== null) shadeUnscored(u, ctx, dpr, false);
    drawUnusable(u, ctx, dpr, false);
    if (state.chart) {
      const { min, max } = state.chart.scales.x;
      const x0 = u.valToPos(min, "x", true);
      const x1 = u.valToPos(max, "x", true);
      ctx.fillStyle = "rgba(37, 99, 235, 0.12)";
      ctx.fillRect(x0, top, Math.max(x1 - x0, 2 * dpr), height);
      ctx.strokeStyle = "rgba(37, 99, 235, 0.7)";
      ctx.lineWidth = dpr;
      ctx.strokeRect(x0, top, Math.max(x1 - x0, 2 * dpr), height);
    }
    ctx.restore();
    void left;
    void width;
  }

  function onOverviewSelect(u) {
    if (u.select.width < 3) return;
    const min = u.posToVal(u.select.left, "x");
    const max = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    setWindow(min, max);
  }

  // ------------------------------------------------------------------ hover, click, navigation

  function onCursor(u) {
    const left = u.cursor.left;
    if (left === undefined || left < 0 || !state.times) {
      setHovered(-1);
      return;
    }
    const i = nearestBeat(u.posToVal(left, "x"));
    const near = i >= 0 && Math.abs(u.valToPos(state.times[i], "x") - left) <= HOVER_PX;
    setHovered(near ? i : -1);
    if (near) showTooltip(i, u);
  }

  function setHovered(i) {
    if (i === state.hovered) return;
    state.hovered = i;
    if (i < 0) hideTooltip();
    state.chart.over.style.cursor = i >= 0 ? "pointer" : "";
    state.chart.redraw(false);
  }

  function hideTooltip() {
    $("tooltip").hidden = true;
  }

  function beatDetails(i, element) {
    const beat = state.beats[i];
    const rec = state.recording;
    element.replaceChildren();
    const head = document.createElement("div");
    head.className = "beat-head";
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.style.setProperty("--c", CLASS_COLORS[beat.class_name] || "#555");
    tag.textContent = beat.class_name;
    const title = document.createElement("span");
    title.textContent = ` ${classDescription(beat.class_name)} · beat ${beat.index + 1}`;
    head.append(tag, title);
    const meta = document.createElement("div");
    meta.className = "beat-meta";
    const parts = [`at ${formatTime(state.times[i])} (sample ${beat.r_peak.toLocaleString()})`];
    if (beat.rr_prev_s !== null && beat.rr_prev_s !== undefined) parts.push(`RR before ${beat.rr_prev_s.toFixed(3)} s`);
    if (beat.rr_next_s !== null && beat.rr_next_s !== undefined) parts.push(`after ${beat.rr_next_s.toFixed(3)} s`);
    if (beat.rhythm === "irregular_no_p") parts.push("in an irregular rhythm without P waves (atrial fibrillation or flutter)");
    if (beat.rr_check === "possible_missed_beat") parts.push("the long RR before it may hide a missed beat, not a pause: check the strip");
    if (beat.rr_check === "unusable_signal") parts.push("the long RR before it crosses an unusable stretch");
    if (rec.reference) {
      const tolerance = rec.kind === "beats" ? 0.5 / rec.fs : 0.15;
      const ref = rec.reference.find((r) => Math.abs(r.sample / rec.fs - state.times[i]) <= tolerance);
      parts.push(ref ? `reference ${ref.aami}${ref.symbol && ref.symbol !== ref.aami ? ` (${ref.symbol})` : ""}` : "no reference beat");
    }
    meta.textContent = parts.join(" · ");
    const bars = document.createElement("div");
    bars.className = "bars";
    for (const name of classNames()) {
      const p = beat.probabilities[name] || 0;
      const row = document.createElement("div");
      row.className = "bar-row";
      row.style.setProperty("--c", CLASS_COLORS[name] || "#555");
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = name;
      const track = document.createElement("span");
      track.className = "bar-track";
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.dataset.class = name;
      value.textContent = `${(100 * p).toFixed(1)}%`;
      row.append(label, track, value);
      bars.append(row);
    }
    element.append(head, meta, bars);
  }

  function showTooltip(i, u) {
    const tip = $("tooltip");
    beatDetails(i, tip);
    tip.hidden = false;
    const rect = u.over.getBoundingClientRect();
    const x = rect.left + window.scrollX + u.valToPos(state.times[i], "x");
    const y = rect.top + window.scrollY + 24;
    const w = tip.offsetWidth;
    tip.style.left = `${Math.min(x + 14, window.scrollX + document.documentElement.clientWidth - w - 8)}px`;
    tip.style.top = `${y}px`;
  }

  function selectBeat(i, center) {
    state.selected = i;
    const panel = $("beat-panel");
    beatDetails(i, panel);
    panel.hidden = false;
    panel.dataset.index = String(i);
    if (center) {
      const { min, max } = state.chart.scales.x;
      const t = state.times[i];
      if (t < min || t > max || center === "always") setWindow(t - (max - min) / 2, t + (max - min) / 2);
    }
    state.chart.redraw(false);
  }

  // the strip's findings (the API's `findings`), one button per event: a click shows 10 s from 2 s before it
  function findingEvents(findings) {
    const events = [];
    const v = findings.ventricular;
    const sv = findings.supraventricular;
    for (const run of v.runs) {
      events.push([run.start_s, `${run.sustained ? "sustained VT" : "ventricular run"}: ${run.beats} beats at ${Math.round(run.rate_bpm)} bpm`]);
    }
    if (v.first_couplet_s !== null) events.push([v.first_couplet_s, `first ventricular couplet (${v.couplets} in all)`]);
    for (const e of v.bigeminy) events.push([e.start_s, `ventricular bigeminy: ${e.cycles} cycles`]);
    for (const e of v.trigeminy) events.push([e.start_s, `ventricular trigeminy: ${e.cycles} cycles`]);
    for (const run of sv.runs) events.push([run.start_s, `supraventricular run: ${run.beats} beats at ${Math.round(run.rate_bpm)} bpm`]);
    for (const p of findings.pauses) {
      events.push([p.start_s, `pause ${p.length_s.toFixed(2)} s${p.doubt ? ` (${p.doubt.replace(/_/g, " ")})` : ""}`]);
    }
    if (findings.atrial_fibrillation) {
      for (const e of findings.atrial_fibrillation.episodes) {
        events.push([e.start_s, `atrial fibrillation or flutter, ${formatDuration(e.end_s - e.start_s)}`]);
      }
    }
    return events.sort((a, b) => a[0] - b[0]);
  }

  function buildFindings(findings) {
    const list = $("findings-list");
    list.replaceChildren();
    $("findings").hidden = !findings;
    if (!findings) return;
    const events = findingEvents(findings);
    if (!events.length) {
      list.textContent = "no pause, ectopic couplet or run, bigeminy or atrial fibrillation";
      return;
    }
    for (const [start, text] of events) {
      const button = document.createElement("button");
      button.className = "finding";
      button.dataset.start = String(start);
      button.textContent = `${formatTime(start)} ${text}`;
      button.addEventListener("click", () => setWindow(start - 2, start + 8));
      list.append(button);
    }
  }

  function jumpToClass(name) {
    if (!state.beats.length) return;
    const { min, max } = state.chart.scales.x;
    const from = state.selected >= 0 ? state.selected + 1 : lowerBound(state.times, (min + max) / 2);
    const n = state.beats.length;
    for (let k = 0; k < n; k++) {
      const i = (from + k) % n;
      if (state.beats[i].class_name === name) {
        selectBeat(i, "always");
        return;
      }
    }
  }

  function pan(direction) {
    if (!state.chart) return;
    const { min, max } = state.chart.scales.x;
    const delta = direction * 0.5 * (max - min);
    setWindow(min + delta, max + delta);
  }

  // ------------------------------------------------------------------ wiring

  function init() {
    const key = $("api-key");
    key.value = sessionStorage.getItem(KEY_STORAGE) || "";
    key.addEventListener("change", () => {
      const value = key.value.trim();
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
      loadModel();
    });
    $("files").addEventListener("change", (e) => {
      openFiles(e.target.files);
      e.target.value = "";
    });
    const drop = $("drop");
    for (const ev of ["dragenter", "dragover"]) {
      drop.addEventListener(ev, (e) => {
        e.preventDefault();
        drop.classList.add("over");
      });
    }
    for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
    drop.addEventListener("keydown", (e) => {
      if (e.target === drop && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        $("files").click();
      }
    });
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      openFiles(e.dataTransfer.files);
    });
    $("pan-left").addEventListener("click", () => pan(-1));
    $("pan-right").addEventListener("click", () => pan(1));
    for (const button of document.querySelectorAll("[data-span]")) {
      button.addEventListener("click", () => {
        if (!state.chart) return;
        const span = Number(button.dataset.span) || Infinity;
        const { min, max } = state.chart.scales.x;
        const center = span === Infinity ? 0 : (min + max) / 2;
        setWindow(center - span / 2, center + span / 2);
      });
    }
    $("ref-toggle").addEventListener("change", () => state.chart && state.chart.redraw(false));
    document.addEventListener("keydown", (e) => {
      if (e.target instanceof HTMLInputElement) return;
      if (e.key === "ArrowLeft") pan(-1);
      if (e.key === "ArrowRight") pan(1);
      if (e.key === "Escape") hideTooltip();
    });
    window.addEventListener("resize", () => {
      if (!state.chart) return;
      const width = $("chart").clientWidth;
      state.chart.setSize({ width, height: state.chart.height });
      state.overview.setSize({ width, height: state.overview.height });
    });
    document.body.dataset.state = "idle";
    loadModel();
  }

  // read by the browser test: what the page drew, to compare with the API's answer
  window.ecgViewer = {
    state,
    marks: () => state.beats.map((b) => ({ r_peak: b.r_peak, class_name: b.class_name })),
    unscoredMarks: () => state.unscored.map((b) => b.r_peak),
    lead: (k) => (state.recording ? Array.from(state.recording.leads[k].values) : null),
    selectBeat: (i) => selectBeat(i, true),
    setWindow: (min, max) => setWindow(min, max),
  };

  init();
})();
