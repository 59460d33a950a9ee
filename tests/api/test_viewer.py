"""The /viewer page in headless Debian chromium against a real server: what it draws is the API's answer.

Skipped where chromium or chromedriver is missing, unless ECGBEATS_REQUIRE_TOOLS=1 (CI), where that fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import wfdb

from ecgbeats.data.aami import SYMBOL_TO_CLASS
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.serving.security import hash_key
from scripts.viewer_screenshot import browser_missing, chromium, open_files, open_viewer, record_files, screenshot
from tests.api.conftest import running_server
from tests.api.test_record_model import record_bundle  # noqa: F401 (fixture: a record bundle on the fixtures)
from tests.conftest import FIXTURE_MIRROR

WebDriverWait = pytest.importorskip("selenium.webdriver.support.ui").WebDriverWait

RECORD = "213"
CLIENT_KEY = "viewer-key-0123456789-abcdefghijklmnopqrstuvwxyz"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing()
    if reason:
        if os.environ.get("ECGBEATS_REQUIRE_TOOLS") == "1":
            pytest.fail(f"ECGBEATS_REQUIRE_TOOLS=1 but {reason}")
        pytest.skip(reason)
    with chromium(1400, 1000, network_log=True) as driver:
        yield driver


@pytest.fixture(scope="module")
def record_server(record_bundle, tmp_path_factory):  # noqa: F811
    log = tmp_path_factory.mktemp("viewer") / "server.log"
    with running_server(log, model_dir=record_bundle, auth="off") as base:
        yield base


@pytest.fixture(scope="module")
def beat_server(bundle_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("viewer-beats") / "server.log"
    with running_server(log, model_dir=bundle_dir, auth="off", max_batch_beats=16) as base:
        yield base


def post(base: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, timeout=120)


def page_text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def chip_counts(driver) -> dict[str, int]:
    chips = driver.find_elements("css selector", "#s-counts .chip")
    return {
        c.get_attribute("data-class"): int(c.find_element("class name", "chip-count").text.replace(",", ""))
        for c in chips
    }


def strip_body(signal: np.ndarray, fs: float, second: np.ndarray | None) -> dict:
    body = {"fs": fs, "signal": signal.tolist()}
    if second is not None:
        body["second_lead"] = second.tolist()
    return body


def test_a_record_shows_the_apis_beats_classes_and_counts(browser, record_server, tmp_path):
    model = httpx.get(f"{record_server}/v1/model").json()
    open_viewer(browser, record_server)
    assert open_files(browser, record_files(FIXTURE_MIRROR / RECORD)) == "scored", page_text(browser, "error")

    # the page read the record exactly as wfdb does
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD))
    for k in range(rec.n_sig):
        np.testing.assert_array_equal(
            np.array(browser.execute_script(f"return window.ecgViewer.lead({k})")), rec.p_signal[:, k]
        )
    ann = wfdb.rdann(str(FIXTURE_MIRROR / RECORD), "atr")
    beats = np.isin(ann.symbol, list(SYMBOL_TO_CLASS))  # the beats with an AAMI class
    reference = browser.execute_script(
        "return window.ecgViewer.state.recording.reference.map(r => [r.sample, r.symbol])"
    )
    assert reference == [[int(s), y] for s, y in zip(ann.sample[beats], np.asarray(ann.symbol)[beats], strict=True)]

    # what it drew is what the API answers for that strip with its second lead (the detector checks against it)
    answer = post(record_server, "/v1/ecg:classify", strip_body(rec.p_signal[:, 0], rec.fs, rec.p_signal[:, 1]))
    assert answer.status_code == 200, answer.text
    expected = answer.json()
    marks = browser.execute_script("return window.ecgViewer.marks()")
    assert len(marks) == len(expected["beats"]) > 100
    assert marks == [{"r_peak": b["r_peak"], "class_name": b["class_name"]} for b in expected["beats"]]
    counts = expected["summary"]["counts"]
    assert chip_counts(browser) == {name: counts.get(name, 0) for name in model_class_names(model)}
    assert page_text(browser, "s-beats") == f"{expected['summary']['beats']:,}"
    assert page_text(browser, "s-hr") == f"{round(expected['summary']['mean_heart_rate_bpm'])} bpm"
    assert page_text(browser, "model-digest") == f"sha256 {model['digest']}"
    assert f"model {model['version']}" in page_text(browser, "model")
    # the agreement with the reference annotations: each reference beat against the nearest detected beat
    peaks = np.array([b["r_peak"] for b in expected["beats"]])
    nearest = [int(np.argmin(np.abs(peaks - s))) for s in ann.sample[beats]]
    matched = [
        (SYMBOL_TO_CLASS[y], expected["beats"][i]["class_name"])
        for s, y, i in zip(ann.sample[beats], np.asarray(ann.symbol)[beats], nearest, strict=True)
        if abs(peaks[i] - s) <= 0.15 * rec.fs
    ]
    agree = sum(a == b for a, b in matched)
    assert (
        f"{int(beats.sum())} reference beats, {len(matched)} matched by a classified beat within 150 ms, "
        f"{agree} of those ({100 * agree / len(matched):.1f}%) with the same class"
    ) in page_text(browser, "reference-agreement")
    screenshot(browser, tmp_path / "viewer-213.png")
    assert (tmp_path / "viewer-213.png").stat().st_size > 20_000


def model_class_names(model: dict) -> list[str]:
    return [c["name"] for c in model["classes"]]


def test_hover_and_click_show_the_beats_probabilities(browser, record_server):
    open_viewer(browser, record_server)
    assert open_files(browser, record_files(FIXTURE_MIRROR / RECORD)) == "scored"
    beats = browser.execute_script("return window.ecgViewer.state.beats")
    i = next(k for k, b in enumerate(beats) if b["class_name"] != "N" and k > 3)
    browser.execute_script(f"window.ecgViewer.setWindow({beats[i]['time_s'] - 5}, {beats[i]['time_s'] + 5})")
    over = browser.find_element("css selector", "#chart .u-over")
    x = browser.execute_script(f"return window.ecgViewer.state.chart.valToPos({beats[i]['time_s']}, 'x')")
    from selenium.webdriver.common.action_chains import ActionChains

    # Selenium offsets are from the element's centre
    ActionChains(browser).move_to_element_with_offset(over, round(x - over.size["width"] / 2), 0).perform()
    tooltip = browser.find_element("id", "tooltip")
    assert tooltip.is_displayed()
    expected = {name: f"{100 * p:.1f}%" for name, p in beats[i]["probabilities"].items()}
    shown = {e.get_attribute("data-class"): e.text for e in tooltip.find_elements("class name", "bar-value")}
    assert shown == expected
    assert beats[i]["class_name"] in tooltip.find_element("class name", "tag").text
    ActionChains(browser).click().perform()
    panel = browser.find_element("id", "beat-panel")
    assert panel.is_displayed() and panel.get_attribute("data-index") == str(i)
    assert {e.get_attribute("data-class"): e.text for e in panel.find_elements("class name", "bar-value")} == expected


def test_a_csv_strip_is_scored_like_the_same_json(browser, record_server, tmp_path):
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD))
    csv = tmp_path / "strip.csv"
    lines = ["# fs=360", "MLII,V1"] + [f"{a!r},{b!r}" for a, b in rec.p_signal[:7200].tolist()]
    csv.write_text("\n".join(lines) + "\n")
    open_viewer(browser, record_server)
    assert open_files(browser, [csv]) == "scored", page_text(browser, "error")
    expected = post(record_server, "/v1/ecg:classify", strip_body(rec.p_signal[:7200, 0], 360, rec.p_signal[:7200, 1]))
    marks = browser.execute_script("return window.ecgViewer.marks()")
    assert marks == [{"r_peak": b["r_peak"], "class_name": b["class_name"]} for b in expected.json()["beats"]]


def write_strip(path: Path, signal: np.ndarray) -> Path:
    path.write_text("# fs=360\n" + "\n".join(repr(v) for v in np.round(signal, 4).tolist()) + "\n")
    return path


def test_unusable_stretches_and_unscored_beats_are_shown_as_the_api_says(browser, record_server, tmp_path):
    clean = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD), channels=[0], sampto=360 * 60).p_signal[:, 0]
    noisy = clean.copy()
    noisy[360 * 20 : 360 * 30] = np.random.default_rng(3).normal(0, 1.0, 3600)  # as in test_service_live
    open_viewer(browser, record_server)
    assert open_files(browser, [write_strip(tmp_path / "noisy.csv", noisy)]) == "scored", page_text(browser, "error")
    answer = post(record_server, "/v1/ecg:classify", {"fs": 360.0, "signal": np.round(noisy, 4).tolist()}).json()
    quality = answer["summary"]["quality"]
    assert quality["unscored_beats"] > 0
    assert browser.execute_script("return window.ecgViewer.state.unusable") == quality["unusable"]
    assert browser.execute_script("return window.ecgViewer.unscoredMarks()") == [
        b["r_peak"] for b in answer["unscored"]
    ]
    assert f"{quality['unscored_beats']} detected beats in them are not classified" in page_text(browser, "notice")
    assert "(1 noise)" in page_text(browser, "notice")
    assert f"{len(answer['unscored'])} not classified" in page_text(browser, "s-peaks")

    assert open_files(browser, [write_strip(tmp_path / "inverted.csv", -clean)]) == "scored"
    assert "inverted" in page_text(browser, "notice")


def test_a_dropped_file_is_read_like_an_opened_one(browser, record_server):
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD))
    text = "# fs=360\n" + "\n".join(repr(v) for v in rec.p_signal[:5400, 0].tolist()) + "\n"
    open_viewer(browser, record_server)
    browser.execute_script(
        """
        document.body.dataset.state = "sent";
        const data = new DataTransfer();
        data.items.add(new File([arguments[0]], "dropped.csv", { type: "text/csv" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        """,
        text,
    )
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-state") in ("scored", "error")
    )
    assert browser.find_element("tag name", "body").get_attribute("data-state") == "scored", page_text(browser, "error")
    expected = post(record_server, "/v1/ecg:classify", {"fs": 360.0, "signal": rec.p_signal[:5400, 0].tolist()}).json()
    marks = browser.execute_script("return window.ecgViewer.marks()")
    assert marks == [{"r_peak": b["r_peak"], "class_name": b["class_name"]} for b in expected["beats"]]
    assert page_text(browser, "s-name") == "dropped"


def test_the_api_error_is_shown_for_unscorable_input(browser, record_server, tmp_path):
    short = tmp_path / "short.csv"
    signal = np.round(np.sin(np.arange(1800) / 20), 3)  # 5 s at 360 Hz: below the 10 s minimum
    short.write_text("\n".join(repr(v) for v in signal.tolist()) + "\n")
    open_viewer(browser, record_server)
    assert open_files(browser, [short]) == "error"
    for element in ("summary", "plot-area"):  # nothing from an earlier recording
        assert not browser.find_element("id", element).is_displayed(), element
    refused = post(record_server, "/v1/ecg:classify", {"fs": 360.0, "signal": signal.tolist()})
    assert refused.status_code == 422
    assert "HTTP 422" in page_text(browser, "error")
    assert browser.find_element("class name", "error-message").text == refused.json()["message"]
    assert "10 s" in refused.json()["message"]

    # beat rows sent to a record model: the service's own refusal, word for word
    rows = tmp_path / "beats.csv"
    rows.write_text("\n".join(",".join(["0.5"] * 187) for _ in range(3)) + "\n")
    assert open_files(browser, [rows]) == "error"
    refused = post(record_server, "/v1/beats:classify", {"beats": [{"samples": [0.5] * 187}] * 3})
    assert browser.find_element("class name", "error-message").text == refused.json()["message"]


def test_unreadable_files_are_named_in_the_message(browser, record_server, tmp_path):
    open_viewer(browser, record_server)
    assert open_files(browser, [FIXTURE_MIRROR / f"{RECORD}.dat"]) == "error"
    assert "needs its header" in page_text(browser, "error")
    assert open_files(browser, [FIXTURE_MIRROR / f"{RECORD}.hea"]) == "error"
    assert f"names the signal file {RECORD}.dat" in page_text(browser, "error")
    odd = tmp_path / "odd.hea"
    odd.write_text("odd 1 360 1000\nodd.dat 311 200 12 0 0 0 0 I\n")
    assert open_files(browser, [odd, FIXTURE_MIRROR / f"{RECORD}.dat"]) == "error"
    assert "format 311" in page_text(browser, "error")
    wide = tmp_path / "wide.csv"
    wide.write_text("1,2,3\n4,5,6\n")
    assert open_files(browser, [wide]) == "error"
    assert "3 columns" in page_text(browser, "error")


def test_beat_rows_are_scored_in_batches_and_drawn(browser, beat_server, fixture_beats, tmp_path):
    rows = fixture_beats.groupby("label").head(8).reset_index(drop=True)  # 40 rows: 3 requests of at most 16
    samples = rows[SAMPLE_COLUMNS].astype(float).to_numpy()
    csv = tmp_path / "beats.csv"
    lines = [
        ",".join(repr(v) for v in r) + f",{float(y)!r}" for r, y in zip(samples.tolist(), rows["label"], strict=True)
    ]
    csv.write_text("\n".join(lines) + "\n")
    open_viewer(browser, beat_server)
    assert open_files(browser, [csv]) == "scored", page_text(browser, "error")
    names = []
    for start in range(0, len(samples), 16):  # the server's max_batch_beats
        chunk = samples[start : start + 16].tolist()
        answer = post(beat_server, "/v1/beats:classify", {"beats": [{"samples": r} for r in chunk]})
        assert answer.status_code == 200, answer.text
        names += [p["class_name"] for p in answer.json()["predictions"]]
    marks = browser.execute_script("return window.ecgViewer.marks()")
    assert [m["class_name"] for m in marks] == names
    assert [m["r_peak"] for m in marks] == [187 * i for i in range(len(rows))]
    assert chip_counts(browser) == {n: names.count(n) for n in ("N", "S", "V", "F", "Q")}


def requests_sent(driver) -> list[dict]:
    """The requests the page made since the last call (DevTools network log)."""
    messages = (json.loads(e["message"])["message"] for e in driver.get_log("performance"))
    return [m["params"]["request"] for m in messages if m["method"] == "Network.requestWillBeSent"]


def test_with_access_control_the_key_is_sent_and_a_refusal_is_explained(browser, record_bundle, tmp_path):  # noqa: F811
    keys = tmp_path / "client.keys"
    keys.write_text(f"{hash_key(CLIENT_KEY)} viewer\n")
    with running_server(tmp_path / "server.log", model_dir=record_bundle, auth="keys", api_keys_file=keys) as base:
        open_viewer(browser, base, wait_for_model=False)  # the page and its assets are open
        WebDriverWait(browser, 30).until(lambda d: "HTTP 401" in page_text(d, "model"))
        assert open_files(browser, record_files(FIXTURE_MIRROR / RECORD)) == "error"
        assert "HTTP 401" in page_text(browser, "error") and "API key" in page_text(browser, "error")

        requests_sent(browser)  # drop what came before
        key = browser.find_element("id", "api-key")
        key.send_keys(CLIENT_KEY)
        browser.execute_script("document.getElementById('api-key').dispatchEvent(new Event('change'))")
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return window.ecgViewer.state.model !== null"))
        assert open_files(browser, record_files(FIXTURE_MIRROR / RECORD)) == "scored", page_text(browser, "error")
        assert browser.execute_script("return sessionStorage.getItem('ecgbeats.apiKey')") == CLIENT_KEY
        sent = requests_sent(browser)
        for path in ("/v1/model", "/v1/ecg:classify"):
            request = next(r for r in sent if r["url"] == f"{base}{path}")
            assert request["headers"].get("Authorization") == f"Bearer {CLIENT_KEY}", path

        # a reload keeps the key for this tab; every request stays on the service's origin (no CDN)
        browser.refresh()
        open_viewer(browser, base)
        urls = {r["url"] for r in requests_sent(browser)}
        assert any(u.endswith("uPlot.iife.min.js") for u in urls)
        assert all(u.startswith(base) for u in urls), urls
        browser.execute_script("sessionStorage.clear()")


def test_the_landing_page_links_the_viewer(record_server):
    page = httpx.get(f"{record_server}/")
    assert page.status_code == 200 and 'href="/viewer"' in page.text
    viewer = httpx.get(f"{record_server}/viewer")
    assert viewer.status_code == 200 and "default-src 'self'" in viewer.headers["content-security-policy"]
    assert "http" not in viewer.text.replace("http-equiv", "")  # every asset is served by the service
    assert httpx.get(f"{record_server}/viewer/static/vendor/uplot/LICENSE").status_code == 200
    assert "/viewer" not in httpx.get(f"{record_server}/openapi.json").json()["paths"]


def test_assets_ship_with_the_package():
    from ecgbeats.serving.viewer import STATIC_DIR

    for name in (
        "viewer.html",
        "viewer.js",
        "wfdb.js",
        "viewer.css",
        "vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/LICENSE",
    ):
        assert (STATIC_DIR / name).is_file(), name
    html = (STATIC_DIR / "viewer.html").read_text()
    assert "//" not in html.replace("<!--", "").split("<body>")[0].replace("/viewer/static/", ""), "a non-local asset"
    assert Path(STATIC_DIR / "vendor/uplot/LICENSE").read_text().startswith("The MIT License")


def test_the_findings_report_shows_every_figure_without_the_network(browser, record_bundle, tmp_path):  # noqa: F811
    from ecgbeats.serving import batch
    from ecgbeats.serving.findings_report import strips_to_show

    out, report, findings = tmp_path / "beats.parquet", tmp_path / "report.html", tmp_path / "findings.json"
    args = [str(FIXTURE_MIRROR / "208"), str(out), "--model", str(record_bundle), "--report", str(report)]
    assert batch.main([*args, "--findings", str(findings), "--no-progress"]) == 0
    browser.get_log("performance")  # earlier pages' requests
    browser.get(report.as_uri())
    images = browser.execute_script(
        "return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0, i.naturalWidth])"
    )
    assert len(images) >= 3 and all(ok for _, ok, _ in images), images
    expected = [title for title, _ in strips_to_show(json.loads(findings.read_text()))]
    assert [alt for alt, _, _ in images] == ["trends", *expected] and len(expected) >= 2
    summary = browser.find_element("css selector", "table.summary").text
    assert "Ventricular ectopy" in summary and "Heart rate" in summary
    requests = [e for e in browser.get_log("performance") if '"Network.requestWillBeSent"' in e["message"]]
    assert all(json.loads(e["message"])["message"]["params"]["request"]["url"].startswith(("file:", "data:"))
               for e in requests)  # fmt: skip
    screenshot(browser, tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 20_000


def test_the_findings_are_listed_and_a_click_shows_their_strip(browser, record_server):
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD))
    answer = post(record_server, "/v1/ecg:classify", strip_body(rec.p_signal[:, 0], rec.fs, rec.p_signal[:, 1]))
    findings = answer.json()["findings"]
    v, s = findings["ventricular"], findings["supraventricular"]
    expected = (len(v["runs"]) + (v["first_couplet_s"] is not None) + len(v["bigeminy"]) + len(v["trigeminy"])
                + len(s["runs"]) + len(findings["pauses"]))  # fmt: skip
    open_viewer(browser, record_server)
    assert open_files(browser, record_files(FIXTURE_MIRROR / RECORD)) == "scored"
    buttons = browser.find_elements("css selector", "#findings-list .finding")
    assert len(buttons) == expected > 0
    starts = [float(b.get_attribute("data-start")) for b in buttons]
    assert starts == sorted(starts)
    k = next(i for i, t in enumerate(starts) if 2 < t < len(rec.p_signal) / rec.fs - 8)  # a 10-s window fits
    buttons[k].click()
    low, high = browser.execute_script("const x = window.ecgViewer.state.chart.scales.x; return [x.min, x.max]")
    assert abs(low - (starts[k] - 2)) < 0.05 and abs(high - (starts[k] + 8)) < 0.05
