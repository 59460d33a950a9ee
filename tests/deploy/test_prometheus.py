"""Prometheus for real: the alert rules checked and unit-tested with promtool, then a real Prometheus
on loopback scraping a real ecgbeats server, which sees the drift alert go pending then firing when
drifted beats are sent; and every metric the rules and the Grafana dashboard use is really exported.

Needs Debian's ``prometheus`` package (``prometheus`` and ``promtool``): skipped without it, failed
without it when ``ECGBEATS_REQUIRE_TOOLS=1`` (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.bundle import save_bundle
from ecgbeats.modelling.model import predict_proba
from ecgbeats.operations import drift
from tests.api.conftest import free_port, running_server
from tests.conftest import ROOT
from tests.model.conftest import bundle_meta, fixture_model, fixture_split  # noqa: F401 (fixtures)

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "ecgbeats.json"

JOB = "ecgbeats"
INTERVAL = "1s"  # scrape and rule evaluation in the live test
TEST_FOR = 5  # seconds: every rule's `for:` in the live test (the real ones are minutes)
WINDOW, MIN_BEATS, BATCH = 200, 100, 50  # the server's drift window; beats per request
DRIFT_RATE = 50  # drifted beats per second: one request of BATCH beats a second
STARTUP_SECONDS = 60.0
ALERT_WAIT_SECONDS = 90.0


def tool(name: str) -> str:
    """The path of a Debian binary; skip without it, or fail when ECGBEATS_REQUIRE_TOOLS=1."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package prometheus)"
        if os.environ.get("ECGBEATS_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{message}, and ECGBEATS_REQUIRE_TOOLS=1")
        pytest.skip(message)
    return path


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------- promtool


def test_the_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_the_rule_unit_tests_pass():
    result = promtool("test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_unit_tests_that_fire_and_that_do_not():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - firing == set(), "alerts without a firing case"
    assert alerts - silent == set(), "alerts without a non-firing case"


def test_a_broken_rule_fails_the_unit_tests(tmp_path):
    """The unit tests can fail: a major-drift threshold of 0.35 instead of 0.25 is caught."""
    (tmp_path / "rules.yml").write_text(
        RULES.read_text().replace("ecgbeats_drift_psi >= 0.25", "ecgbeats_drift_psi >= 0.35")
    )
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yml")
    result = promtool("test", "rules", tmp_path / "rules_test.yml")
    assert result.returncode != 0 and "alertname: EcgbeatsInputDriftMajor" in result.stdout + result.stderr


def test_the_example_config_is_valid_with_and_without_a_bearer_token(tmp_path):
    assert promtool("check", "config", CONFIG).returncode == 0
    # the commented-out authorization block, switched on with a real key file
    key = tmp_path / "metrics.key"
    key.write_text("a-metrics-key\n")
    text = CONFIG.read_text()
    block = re.search(r"^( *)# authorization:\n\1#   type: Bearer\n\1#   credentials_file: (\S+)\n", text, re.M)
    assert block, "prometheus.yml has no commented-out bearer-token block"
    indent = block.group(1)
    enabled = f"{indent}authorization:\n{indent}  type: Bearer\n{indent}  credentials_file: {key}\n"
    (tmp_path / "prometheus.yml").write_text(text.replace(block.group(0), enabled))
    shutil.copy(RULES, tmp_path / "rules.yml")
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["authorization"] == {"type": "Bearer", "credentials_file": str(key)}
    result = promtool("check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- a real Prometheus


def live_rules(path: Path) -> Path:
    """rules.yml with every `for:` set to TEST_FOR seconds; expressions, labels and annotations unchanged."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{TEST_FOR}s"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def live_config(path: Path, rules: Path, targets: list[str]) -> Path:
    """prometheus.yml with 1 s intervals, the live rules and the given targets (the job unchanged)."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL}
    config["rule_files"] = [str(rules)]
    (job,) = [c for c in config["scrape_configs"] if c["job_name"] == JOB]
    job["scrape_timeout"] = INTERVAL
    job["static_configs"] = [{"targets": targets}]
    config["scrape_configs"] = [job]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Stack:
    service: str  # the ecgbeats server's base URL
    prometheus: str  # Prometheus's base URL
    dead_target: str  # a second target with nothing listening (a replica that is down)
    val: pd.DataFrame  # undrifted beats (the fixture validation split, shuffled)
    shifted: pd.DataFrame  # the same beats with noise SD 0.1 (a major drift of unpadded_mean)

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
        return body["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]


def beat_payload(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "beats": [
            {"samples": row[SAMPLE_COLUMNS].astype(float).tolist(), "length": int(row["length"])}
            | {c: float(row[c]) for c in ("rr_prev", "rr_next", "rr_local") if 0 < row[c] <= 10}
            for _, row in frame.iterrows()
        ]
    }


def post_beats(base: str, frame: pd.DataFrame) -> None:
    for start in range(0, len(frame), BATCH):
        response = httpx.post(
            f"{base}/v1/beats:classify", json=beat_payload(frame.iloc[start : start + BATCH]), timeout=30
        )
        assert response.status_code == 200, response.text


def wait_for(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def drift_bundle(tmp_path_factory, fixture_model, fixture_split) -> Path:  # noqa: F811
    """The fixture beat-row model with a reference profile of its training split (drift gauges on)."""
    booster, groups, columns = fixture_model
    train, _ = fixture_split
    predicted = predict_proba(booster, build_features(train, groups)).argmax(axis=1)
    path = tmp_path_factory.mktemp("prometheus-bundle") / "bundle"
    save_bundle(
        path, booster, bundle_meta(groups, columns), reference=drift.build_profile(train, predicted, list("NSVFQ"))
    )
    return path


@pytest.fixture(scope="module")
def stack(drift_bundle, fixture_split, tmp_path_factory) -> Iterator[Stack]:  # noqa: F811
    """A real ecgbeats server (drift window of 200 beats) scraped every second by a real Prometheus
    on loopback, after a window of undrifted traffic and one rejected request."""
    prometheus = tool("prometheus")
    tool("promtool")
    work = tmp_path_factory.mktemp("prometheus")
    _, val = fixture_split
    val = val.sample(frac=1.0, random_state=0).reset_index(drop=True)  # val is sorted by record
    assert len(val) >= WINDOW
    shifted = drift.synthetic_shift(val, "noise", 0.1, seed=1)
    with ExitStack() as stack:
        service = stack.enter_context(
            running_server(
                work / "server.log", model_dir=drift_bundle, auth="off", max_batch_beats=BATCH,
                drift_window=WINDOW, drift_min_beats=MIN_BEATS,
            )
        )  # fmt: skip
        dead_target = f"127.0.0.1:{free_port()}"
        config = live_config(
            work / "prometheus.yml", live_rules(work / "rules.yml"), [service[len("http://") :], dead_target]
        )
        port = free_port()
        log = (work / "prometheus.log").open("w")
        stack.callback(log.close)
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

        stack.callback(stop)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{(work / 'prometheus.log').read_text()}")
            try:
                return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("prometheus to be ready", ready, STARTUP_SECONDS)
        live = Stack(service, base, dead_target, val, shifted)
        wait_for("the first scrape of the service", lambda: live.query(f'up{{job="{JOB}"}} == 1'), STARTUP_SECONDS)
        # undrifted traffic fills the window; one request with a wrong field is rejected
        post_beats(service, val.iloc[:WINDOW])
        assert httpx.post(f"{service}/v1/beats:classify", json={"beats": [{"samples": [1.0]}]}).status_code == 422
        wait_for("the drift gauges in Prometheus", lambda: live.query("ecgbeats_drift_psi"), STARTUP_SECONDS)
        yield live


def alert_states(alerts: list[dict[str, Any]], name: str) -> dict[str, str]:
    """``{feature or instance: state}`` of the alerts called ``name``."""
    return {
        a["labels"].get("feature", a["labels"].get("instance", "")): a["state"]
        for a in alerts
        if a["labels"]["alertname"] == name
    }


@pytest.mark.slow  # a real server and a real Prometheus
def test_undrifted_traffic_raises_no_drift_alert(stack, capsys):
    time.sleep(TEST_FOR + 2)  # longer than the `for:` of the live rules
    psi = {r["metric"]["feature"]: float(r["value"][1]) for r in stack.query("ecgbeats_drift_psi")}
    assert set(psi) == set(drift.KEY_FEATURES)
    with capsys.disabled():
        worst = max(psi, key=psi.get)
        print(f"\nundrifted window of {WINDOW} beats: largest feature PSI {psi[worst]:.3f} ({worst})")
    alerts = stack.alerts()
    assert alert_states(alerts, "EcgbeatsInputDriftMajor") == {}, psi
    assert alert_states(alerts, "EcgbeatsServiceDown") == {stack.dead_target: "firing"}  # the live one is up
    assert alert_states(alerts, "EcgbeatsModelNotLoaded") == {}


@pytest.mark.slow  # a real server and a real Prometheus
def test_drifted_beats_take_the_drift_alert_to_pending_then_firing(stack, capsys):
    major = "EcgbeatsInputDriftMajor"
    start = time.monotonic()
    sent = 0
    seen: dict[str, float] = {}
    beats_at: dict[str, int] = {}
    while "firing" not in seen:
        if time.monotonic() - start > ALERT_WAIT_SECONDS:
            pytest.fail(f"{major} was not firing {ALERT_WAIT_SECONDS:.0f} s after the first drifted request: {seen}")
        # steady drifted traffic (DRIFT_RATE beats/s), and a look at the alerts every 0.25 s
        if sent < (time.monotonic() - start) * DRIFT_RATE + BATCH:
            chunk = stack.shifted.iloc[sent % len(stack.shifted) :].iloc[:BATCH]
            post_beats(stack.service, chunk)
            sent += len(chunk)
        for state in alert_states(stack.alerts(), major).values():
            if state not in seen:
                seen[state] = time.monotonic() - start
                beats_at[state] = sent
        time.sleep(0.25)
    features = {k for k, v in alert_states(stack.alerts(), major).items() if v == "firing"}
    timeline = {
        "alert": major,
        "features_firing": sorted(features),
        "scrape_and_evaluation_interval": INTERVAL,
        "for": f"{TEST_FOR}s",
        "drift_window_beats": WINDOW,
        "drifted_beats_per_second": DRIFT_RATE,
        "seconds_to_pending": round(seen.get("pending", float("nan")), 1),
        "seconds_to_firing": round(seen["firing"], 1),
        "drifted_beats_sent_at_pending": beats_at.get("pending"),
        "drifted_beats_sent_at_firing": beats_at["firing"],
    }
    with capsys.disabled():
        print(f"\nalert timeline: {json.dumps(timeline)}")
    assert "pending" in seen, "the alert went to firing without being seen pending"
    assert "unpadded_mean" in features  # the noise moves the amplitude distribution (reports/deployment.md)
    # firing only after `for:` of pending (less one evaluation interval of polling slack)
    assert seen["firing"] - seen["pending"] >= TEST_FOR - 1.5


# ---------------------------------------------------------------- metric names of rules and dashboard

# what a PromQL expression may contain that is not a metric name
PROMQL_WORDS = {
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "absent",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "clamp_min",
    "clamp_max",
    "topk",
    "bottomk",
    "label_replace",
    "vector",
    "scalar",
    "time",
    "offset",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "last_over_time",
    "changes",
    "resets",
    "delta",
    "deriv",
    "sort",
    "abs",
}
NOT_EXPORTED = {"up"}  # made by Prometheus for every target


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, strings, durations
    and Grafana variables that are not functions, keywords or `by (...)` label lists."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors (with $__rate_interval)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    tokens = set(re.findall(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr))
    return tokens - PROMQL_WORDS


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_metric_names_are_parsed_from_promql():
    expr = (
        'histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket{handler=~"/v1/.+"}'
        "[$__rate_interval]))) / ignoring(class_name) group_left sum(ecgbeats_predicted_beats_total) or "
        'absent(up{job="ecgbeats"}) > 0.5'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "ecgbeats_predicted_beats_total", "up"}


def exported_names(metrics_text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (histogram buckets, sums, counts included)."""
    return {line.split("{")[0].split(" ")[0] for line in metrics_text.splitlines() if line and not line.startswith("#")}


@pytest.mark.slow  # a real server and a real Prometheus
def test_every_metric_of_the_rules_and_the_dashboard_is_exported(stack):
    exported = exported_names(httpx.get(f"{stack.service}/metrics", timeout=10).text)
    used = {name for expr in rule_exprs() + dashboard_exprs() for name in metric_names(expr)}
    assert used - NOT_EXPORTED - exported == set(), "used in rules.yml or the dashboard, not exported by /metrics"
    # the parse finds what it should: the drift, class, rejection and latency metrics
    assert {"ecgbeats_drift_psi", "ecgbeats_predicted_beats_total", "ecgbeats_rejected_inputs_total"} <= used
    assert "http_request_duration_seconds_bucket" in used


@pytest.mark.slow  # a real server and a real Prometheus
def test_every_dashboard_query_runs_and_returns_data(stack):
    """Each panel query, with Grafana's variables set ($__rate_interval 1m, every replica), is valid
    PromQL for a real Prometheus and returns series after traffic (rates need two scrapes: wait a bit)."""
    queries = [expr.replace("$__rate_interval", "1m").replace("$instance", ".+") for expr in dashboard_exprs()]
    deadline = time.monotonic() + 30
    while empty := [q for q in queries if not stack.query(q)]:
        if time.monotonic() > deadline:
            pytest.fail(f"dashboard queries without data after traffic: {empty}")
        time.sleep(1)


def test_the_dashboard_is_provisioned_with_its_datasource():
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "ecgbeats.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert providers["providers"][0]["type"] == "file" and providers["providers"][0]["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    uids = {p["datasource"]["uid"] for p in panels if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in panels for t in p.get("targets", [])}
    assert uids == {source["uid"]}, "panels must use the provisioned datasource's uid"
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("latency", "throughput", "class mix", "psi", "rejected", "model loaded"):
        assert topic in titles, f"no panel about {topic}"
