// Readers for the files the viewer opens: WFDB headers, signal files (formats 212, 16, 80) and MIT
// annotation files, CSV strips and Kaggle beat CSVs. Pure functions; each throws an Error whose message
// names the file and what is wrong with it. Physical values follow WFDB (and wfdb-python's rdrecord):
// (digital - baseline) / gain, in mV.
"use strict";

(function (global) {
  const SUPPORTED_FORMATS = { 212: "12-bit packed", 16: "16-bit", 80: "8-bit offset" };
  const INVALID_SAMPLE = { 212: -2048, 16: -32768, 80: -128 }; // WFDB's "no value" codes

  // MIT annotation codes (ecgcodes.h) of the beat symbols, and their AAMI classes
  const ANN_SYMBOLS = {
    1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E", 11: "j", 12: "/",
    13: "Q", 34: "e", 38: "f",
  };
  const AAMI = {
    N: "N", L: "N", R: "N", e: "N", j: "N", A: "S", a: "S", J: "S", S: "S", V: "V", E: "V", F: "F",
    "/": "Q", f: "Q", Q: "Q",
  };

  function baseName(name) {
    return name.replace(/^.*[\\/]/, "");
  }

  function parseHeader(text, fileName) {
    const lines = text.split(/\r?\n/);
    const comments = [];
    const content = [];
    for (const raw of lines) {
      const hash = raw.indexOf("#");
      if (hash >= 0) {
        const comment = raw.slice(hash + 1).trim();
        if (comment) comments.push(comment);
      }
      const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
      if (line) content.push(line);
    }
    if (!content.length) throw new Error(`${fileName}: no record line; is it a WFDB header?`);
    const rec = content[0].split(/\s+/);
    if (rec[0].includes("/")) {
      throw new Error(`${fileName}: a multi-segment record (${rec[0]}); open one of its segments`);
    }
    const nsig = Number(rec[1]);
    if (!Number.isInteger(nsig) || nsig < 1) {
      throw new Error(`${fileName}: the record line "${content[0].slice(0, 60)}" has no signal count`);
    }
    const fs = rec.length > 2 ? parseFloat(rec[2]) : 250; // WFDB's default rate
    if (!(fs > 0)) throw new Error(`${fileName}: sampling frequency "${rec[2]}" is not a positive number`);
    const nsamp = rec.length > 3 ? Number(rec[3]) : null;
    if (content.length < 1 + nsig) {
      throw new Error(`${fileName}: the record has ${nsig} signal(s) but ${content.length - 1} signal line(s)`);
    }
    const signals = [];
    for (let i = 0; i < nsig; i++) {
      const tok = content[1 + i].split(/\s+/);
      const fmt = /^(\d+)(x\d+)?(:\d+)?(\+\d+)?$/.exec(tok[1] || "");
      if (!fmt) throw new Error(`${fileName}: signal ${i} has no valid format ("${tok[1] || ""}")`);
      const format = Number(fmt[1]);
      if (!(format in SUPPORTED_FORMATS)) {
        throw new Error(
          `${fileName}: signal ${i} is in WFDB format ${format}; the viewer reads formats ` +
            `${Object.keys(SUPPORTED_FORMATS).join(", ")} (convert it with wfdb's wrsamp)`,
        );
      }
      if ((fmt[2] && fmt[2] !== "x1") || (fmt[3] && fmt[3] !== ":0")) {
        throw new Error(`${fileName}: signal ${i} uses multiple samples per frame or skew (${tok[1]}), not supported`);
      }
      const gainSpec = /^([-+]?[\d.]+(?:[eE][-+]?\d+)?)?(?:\(([-+]?\d+)\))?(?:\/(\S+))?$/.exec(tok[2] || "");
      if (!gainSpec) throw new Error(`${fileName}: signal ${i} has an unreadable gain "${tok[2]}"`);
      const adcZero = tok.length > 4 ? Number(tok[4]) : 0;
      let gain = gainSpec[1] ? parseFloat(gainSpec[1]) : 200;
      if (gain === 0) gain = 200; // WFDB: 0 means uncalibrated, default gain
      const baseline = gainSpec[2] !== undefined ? Number(gainSpec[2]) : adcZero;
      const units = gainSpec[3] || "mV";
      const toMv = { mV: 1, uV: 0.001, V: 1000 }[units];
      if (toMv === undefined) {
        throw new Error(`${fileName}: signal ${i} is in ${units}; the viewer needs an ECG in mV, uV or V`);
      }
      signals.push({
        file: tok[0],
        format,
        offset: fmt[4] ? Number(fmt[4].slice(1)) : 0,
        gain,
        baseline,
        units,
        toMv,
        checksum: tok.length > 6 ? Number(tok[6]) : null,
        description: tok.length > 8 ? tok.slice(8).join(" ") : `signal ${i}`,
      });
    }
    return { name: rec[0], nsig, fs, nsamp: Number.isInteger(nsamp) && nsamp > 0 ? nsamp : null, signals, comments };
  }

  // every sample of a signal file, in file order (frames of the file's signals, interleaved)
  function decodeSamples(bytes, format, count) {
    const out = new Int32Array(count);
    if (format === 212) {
      for (let k = 0, b = 0; k < count; k += 2, b += 3) {
        const b1 = bytes[b + 1];
        const s0 = bytes[b] | ((b1 & 0x0f) << 8);
        out[k] = s0 > 2047 ? s0 - 4096 : s0;
        if (k + 1 < count) {
          const s1 = bytes[b + 2] | ((b1 & 0xf0) << 4);
          out[k + 1] = s1 > 2047 ? s1 - 4096 : s1;
        }
      }
    } else if (format === 16) {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let k = 0; k < count; k++) out[k] = view.getInt16(2 * k, true);
    } else {
      for (let k = 0; k < count; k++) out[k] = bytes[k] - 128;
    }
    return out;
  }

  function samplesIn(byteLength, format) {
    return format === 212 ? Math.floor((byteLength * 2) / 3) : format === 16 ? Math.floor(byteLength / 2) : byteLength;
  }

  // header: parseHeader's result; files: {baseName: ArrayBuffer}. Returns {leads: [{name, values, ...}], warnings}
  function readSignals(header, files) {
    const groups = new Map(); // signal file -> indices of its signals, in header order
    header.signals.forEach((s, i) => {
      if (!groups.has(s.file)) groups.set(s.file, []);
      groups.get(s.file).push(i);
    });
    const leads = new Array(header.nsig);
    const warnings = [];
    let length = header.nsamp;
    for (const [file, indices] of groups) {
      const buffer = files[file];
      if (!buffer) {
        throw new Error(
          `the header ${header.name}.hea names the signal file ${file}: open it together with the .hea ` +
            "(select or drop both files at once)",
        );
      }
      const { format, offset } = header.signals[indices[0]];
      if (indices.some((i) => header.signals[i].format !== format)) {
        throw new Error(`${file}: its signals have different formats, not supported`);
      }
      const bytes = new Uint8Array(buffer, Math.min(offset, buffer.byteLength));
      const frames = Math.floor(samplesIn(bytes.byteLength, format) / indices.length);
      if (length === null) length = frames;
      if (frames < length) {
        throw new Error(`${file} holds ${frames} samples per signal; the header says ${length} (a truncated file?)`);
      }
      const raw = decodeSamples(bytes, format, length * indices.length);
      indices.forEach((sig, j) => {
        const s = header.signals[sig];
        const values = new Float64Array(length);
        let invalid = 0;
        let sum = 0;
        for (let t = 0; t < length; t++) {
          const d = raw[t * indices.length + j];
          sum += d;
          if (d === INVALID_SAMPLE[format]) invalid++;
          values[t] = ((d - s.baseline) / s.gain) * s.toMv;
        }
        if (s.checksum !== null && header.nsamp !== null && ((sum % 65536) + 65536) % 65536 !== ((s.checksum % 65536) + 65536) % 65536) {
          warnings.push(`${s.description}: the checksum does not match the header (a damaged file?)`);
        }
        leads[sig] = { name: s.description, values, invalid };
      });
    }
    return { leads, length, warnings };
  }

  // MIT-format annotations (.atr): [{sample, symbol, aami}] for the beat annotations
  function readAnnotations(buffer) {
    const bytes = new Uint8Array(buffer);
    const out = [];
    let sample = 0;
    let pending = 0; // SKIP intervals, added to the next annotation's time
    let i = 0;
    while (i + 1 < bytes.length) {
      const word = bytes[i] | (bytes[i + 1] << 8);
      const code = word >> 10;
      const value = word & 0x3ff;
      i += 2;
      if (code === 0 && value === 0) break; // end of file
      if (code === 59) {
        // SKIP: a 32-bit interval follows, high 16-bit word first
        if (i + 3 >= bytes.length) break;
        const high = bytes[i] | (bytes[i + 1] << 8);
        const low = bytes[i + 2] | (bytes[i + 3] << 8);
        pending += ((high << 16) | low) | 0;
        i += 4;
      } else if (code === 63) {
        i += value + (value & 1); // AUX string, padded to an even length
      } else if (code === 60 || code === 61 || code === 62) {
        // NUM, SUB, CHN: fields of the previous annotation
      } else {
        sample += value + pending;
        pending = 0;
        const symbol = ANN_SYMBOLS[code];
        if (symbol) out.push({ sample, symbol, aami: AAMI[symbol] });
      }
    }
    return out;
  }

  // a CSV of numbers: {rows: number[][], fs: number|null, header: string[]|null}
  function parseCsv(text, fileName) {
    let fs = null;
    let header = null;
    const rows = [];
    let width = null;
    const lines = text.split(/\r?\n/);
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n].trim();
      if (!line) continue;
      if (line.startsWith("#")) {
        const m = /\bfs\s*[=:]\s*([\d.]+)/i.exec(line);
        if (m) fs = parseFloat(m[1]);
        continue;
      }
      const cells = line.split(/\s*[,;\t]\s*|\s+/);
      const values = cells.map(Number);
      if (values.some((v) => !Number.isFinite(v) || cells.some((c) => c === ""))) {
        if (!rows.length && header === null) {
          header = cells;
          continue;
        }
        const bad = cells.find((c) => c === "" || !Number.isFinite(Number(c)));
        throw new Error(`${fileName}, line ${n + 1}: "${String(bad).slice(0, 20)}" is not a number`);
      }
      if (width === null) width = values.length;
      else if (values.length !== width) {
        throw new Error(`${fileName}, line ${n + 1}: ${values.length} values where the first row has ${width}`);
      }
      rows.push(values);
    }
    if (!rows.length) throw new Error(`${fileName}: no rows of numbers`);
    return { rows, fs, header, width };
  }

  global.EcgFiles = { parseHeader, readSignals, readAnnotations, parseCsv, baseName, AAMI };
})(window);
