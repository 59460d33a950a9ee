"""Screenshot of the /viewer page on a real record, and the headless-browser helpers its test shares.

    python -m scripts.viewer_screenshot --model models/record --record data/raw/mitdb/208 \
        --out reports/figures/viewer.png

starts the service on a free loopback port, opens the record's files in Debian's chromium (driven by
Selenium through Debian's chromedriver: nothing downloads a browser), waits for the page to show the
classified beats, moves to the stretch with the most non-N beats, selects one and saves the screenshot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCORE_TIMEOUT_S = 180.0


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    return f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)" if missing else None


@contextmanager
def chromium(width: int = 1440, height: int = 1000, network_log: bool = False) -> Iterator[Any]:
    """A headless Debian chromium with a fresh profile, as a Selenium driver (``network_log``: keep the
    DevTools network events, read with ``driver.get_log("performance")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for a browser online
    profile = tempfile.mkdtemp(prefix="ecgbeats-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument("--force-device-scale-factor=1")
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_viewer(driver: Any, base: str, wait_for_model: bool = True) -> None:
    """Load the page (and wait until it has the served model's description)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/viewer")
    WebDriverWait(driver, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-state") == "idle")
    if wait_for_model:
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return window.ecgViewer.state.model !== null"))


def open_files(driver: Any, paths: list[Path], timeout: float = SCORE_TIMEOUT_S) -> str:
    """Give ``paths`` to the page's file input; wait until it shows beats or an error; returns that state."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.body.dataset.state = 'sent'")
    driver.find_element("id", "files").send_keys("\n".join(str(p.resolve()) for p in paths))
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-state") in ("scored", "error")
    )
    return str(driver.find_element("tag name", "body").get_attribute("data-state"))


def record_files(record: Path) -> list[Path]:
    """``record``'s .hea, .dat and (if present) .atr files."""
    files = [record.with_suffix(".hea"), record.with_suffix(".dat")]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise SystemExit(f"viewer_screenshot: no such file: {', '.join(missing)}")
    atr = record.with_suffix(".atr")
    return files + ([atr] if atr.exists() else [])


def busiest_window(marks: list[dict[str, Any]], fs: float, span_s: float) -> tuple[float, int]:
    """The start (s) of the ``span_s`` window with the most non-N beats, and the non-N beat nearest its middle."""
    ectopic = [i for i, m in enumerate(marks) if m["class_name"] != "N"]
    if not ectopic:
        return 0.0, 0
    times = [marks[i]["r_peak"] / fs for i in ectopic]
    best, best_count, j = 0, 0, 0
    for i, start in enumerate(times):
        while times[j] < start - span_s / 3:
            j += 1
        count = sum(1 for t in times[j:] if t <= start - span_s / 3 + span_s)
        if count > best_count:
            best, best_count = i, count
    start = max(0.0, times[best] - span_s / 3)
    middle = min(ectopic, key=lambda i: abs(marks[i]["r_peak"] / fs - (start + span_s / 2)))
    return start, middle


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(model: Path, log: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGBEATS_")}
    env.update(ECGBEATS_MODEL_DIR=str(model), ECGBEATS_AUTH="off", PYTHONPATH=str(ROOT))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecgbeats.serving", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"viewer_screenshot: the service exited with {proc.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("viewer_screenshot: the service was not ready within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


REDRAW_JS = """
const [span, done] = arguments;
const chart = window.ecgViewer.state.chart;
const rec = window.ecgViewer.state.recording;
const duration = rec.leads[0].values.length / rec.fs;
async function median(windowOf) {
  const times = [];
  for (let k = 0; k < 7; k++) {
    const [min, max] = windowOf(k);
    const t0 = performance.now();
    chart.setScale("x", { min, max });
    await new Promise((resolve) => setTimeout(resolve, 0));  // uPlot redraws in a microtask
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[3];
}
(async () => {
  const all = await median(() => [0, duration]);
  const step = (duration - span) / 7;
  const win = await median((k) => [k * step, k * step + span]);
  done({ all, window: win });
})();
"""


def redraw_ms(driver: Any, span: float) -> dict[str, float]:
    """Median time (ms) the page takes to redraw after moving its window, whole record and ``span`` s."""
    return dict(driver.execute_async_script(REDRAW_JS, span))


def fit_window(driver: Any) -> None:
    """Make the window as tall as the page, so the screenshot shows all of it."""
    width = driver.get_window_size()["width"]
    viewport = driver.execute_script("return window.innerHeight")
    page = driver.execute_script("return document.documentElement.scrollHeight")
    outer = driver.get_window_size()["height"]
    driver.set_window_size(width, outer + page - viewport)
    time.sleep(0.3)  # the resize handler redraws the charts


def screenshot(driver: Any, out: Path) -> None:
    """The page as it is, written atomically to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(driver.get_screenshot_as_png())
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=ROOT / "models/record-reference", help="the model bundle to serve"
    )
    parser.add_argument("--record", type=Path, required=True, help="a WFDB record path without extension")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/figures/viewer.png")
    parser.add_argument("--span", type=float, default=20.0, help="seconds shown")
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"viewer_screenshot: {reason}", file=sys.stderr)
        return 2
    files = record_files(args.record)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(args.model, Path(tmp) / "server.log") as base,
        chromium(1440, 1060) as driver,
    ):
        open_viewer(driver, base)
        started = time.monotonic()
        state = open_files(driver, files)
        elapsed = time.monotonic() - started
        if state != "scored":
            message = driver.find_element("id", "error").text
            raise SystemExit(f"viewer_screenshot: the page shows an error: {message}")
        marks = driver.execute_script("return window.ecgViewer.marks()")
        fs = driver.execute_script("return window.ecgViewer.state.recording.fs")
        redraw = redraw_ms(driver, args.span)
        start, beat = busiest_window(marks, fs, args.span)
        driver.execute_script(f"window.ecgViewer.setWindow({start}, {start + args.span})")
        driver.execute_script(f"window.ecgViewer.selectBeat({beat})")
        fit_window(driver)
        screenshot(driver, args.out)
    print(
        f"{args.out}: {args.record.name}, {len(marks)} beats, scored in {elapsed:.1f} s through the page; "
        f"window {start:.1f}-{start + args.span:.1f} s; median redraw after a pan or zoom: "
        f"{redraw['all']:.0f} ms showing the whole record, {redraw['window']:.0f} ms showing {args.span:g} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
