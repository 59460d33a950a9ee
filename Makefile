# ecgbeats: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# dvc.yaml runs `python -m stages...`: that must be the environment's python
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install repro studies test test-fast lint format fixtures dag clean gate serve reproduce bench bench-strip bench-detectors bench-holter bench-abuse eval-quality eval-device bench-tsfresh bench-dask load-test drift image image-test

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(INSTALLED): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt ruff mypy types-PyYAML -e . -c constraints.txt
	touch $@

install: $(INSTALLED) ## create .venv and install the pinned dependencies

repro: $(INSTALLED) ## run the product pipeline (dvc repro); set MITDB_MIRROR to work offline
	$(BIN)/dvc repro

studies: $(INSTALLED) ## run the studies on the product's outputs (dvc repro studies/dvc.yaml): EDA, ablations, reports
	$(BIN)/dvc repro studies/dvc.yaml

test: $(INSTALLED) ## run the test suite (unit, data, api, model, end-to-end dvc repro on the fixtures), on 2 workers
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(INSTALLED) ## the test suite without the slow tests (end-to-end pipeline, Dask clusters)
	$(BIN)/python -m pytest -m "not slow and not dask"

lint: $(INSTALLED) ## check style with ruff and types with mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED) ## format the code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

gate: $(INSTALLED) ## fail on a stale dvc.lock, a metric regression, or a breached or lowered floor (gate.yaml)
	$(BIN)/python scripts/metric_gate.py --check-lock

reproduce: $(INSTALLED) ## clone HEAD to a scratch dir, dvc repro --force, compare every metric with the committed ones
	$(BIN)/python -m scripts.reproduce

comma := ,

# the served model: the record model on each recording's own sinus reference, fitted on every non-paced
# record; its expected figures on new patients are the DS1-only model's DS2 holdout
# (metrics/record-reference/holdout.json). SERVE_MODEL=models/record: the mV record model
SERVE_MODEL ?= models/record-reference
SERVE_METRICS ?= metrics/$(notdir $(SERVE_MODEL))/holdout.json
# the beat-row model the beat benchmarks use
MODEL ?= models/kaggle
HOST ?= 127.0.0.1
PORT ?= 8000

# `make serve` is for this machine: access control off unless SERVE_AUTH=keys (with ECGBEATS_API_KEYS_FILE)
SERVE_AUTH ?= off
serve: $(INSTALLED) ## serve SERVE_MODEL (default models/record-reference) on http://$(HOST):$(PORT); SERVE_AUTH=keys to require API keys
	ECGBEATS_MODEL_DIR=$(SERVE_MODEL) ECGBEATS_TEST_METRICS=$(SERVE_METRICS) ECGBEATS_AUTH=$(SERVE_AUTH) \
		$(BIN)/python -m ecgbeats.serving --host $(HOST) --port $(PORT)

bench-strip: $(INSTALLED) ## raw ECG end to end with the served record model: whole records, detection vs the rest
	$(BIN)/python -m benchmarks.bench_strip --model $(SERVE_MODEL) --raw data/raw/mitdb --repeats 3

bench-holter: $(INSTALLED) ## a 24-hour recording (the 48 records end to end, WFDB and EDF) through the batch CLI: streamed vs whole
	$(BIN)/python -m benchmarks.bench_holter --model $(SERVE_MODEL) --mirror $${MITDB_MIRROR:-data/raw/mitdb}

bench-detectors: $(INSTALLED) ## QRS detectors (the service's, XQRS, GQRS, NeuroKit2, sleepecg) on the 48 records at 250/360/500/1000 Hz
	$(BIN)/pip install --quiet sleepecg==0.6.0 neurokit2==0.3.0 -c constraints.txt  # the benchmark's own
	$(BIN)/python -m benchmarks.bench_detectors --raw data/raw/mitdb

bench-abuse: $(INSTALLED) ## the service under abuse on loopback: stalled and flooding connections, heavy strips, mixed load, shutdown
	$(BIN)/python -m benchmarks.bench_abuse --model models/interpatient

eval-quality: $(INSTALLED) ## the strip quality check on the 48 records, clean, noisy and inverted, and on no ECG at all
	$(BIN)/python -m benchmarks.eval_quality --raw data/raw/mitdb --model $(SERVE_MODEL)

eval-device: $(INSTALLED) ## how the record model's classes move under a gain change and other sampling rates (DS1 records)
	$(BIN)/python -m benchmarks.eval_device --raw data/raw/mitdb --model $(SERVE_MODEL)-ds1

# `make bench` measures every served bundle: the beat-row bundles through the service on loopback and the
# served record model on raw strips; `make bench MODEL=...` measures that beat-row bundle alone. Each run
# prints its figures beside a reference workload measured in the same run (benchmarks/common.py).
# BENCH_API_ARGS: more bench_api options, e.g. --single 200 --batches 4 for a shorter run
BENCH_MODELS ?= $(if $(filter command line,$(origin MODEL)),$(MODEL),models/kaggle models/interpatient)
BENCH_STRIP_MODELS ?= $(if $(filter command line,$(origin MODEL)),,$(SERVE_MODEL))
BENCH_REPEATS ?= 3
BENCH_API_ARGS ?=
bench: $(INSTALLED) ## speed of every served bundle: BENCH_MODELS through the service, BENCH_STRIP_MODELS on strips
	@set -e; for model in $(BENCH_MODELS); do \
		echo "== bench_api $$model"; \
		$(BIN)/python -m benchmarks.bench_api --model $$model --beats data/processed/$$(basename $$model)/test.parquet \
			--repeats $(BENCH_REPEATS) $(BENCH_API_ARGS); \
	done; \
	for model in $(BENCH_STRIP_MODELS); do \
		echo "== bench_strip $$model"; \
		$(BIN)/python -m benchmarks.bench_strip --model $$model --raw data/raw/mitdb --repeats $(BENCH_REPEATS); \
	done

bench-tsfresh: $(INSTALLED) ## tsfresh: every calculator alone, full Efficient set vs the frozen kaggle selection, every beat
	$(BIN)/python -m benchmarks.bench_tsfresh --settings data/interim/kaggle/features/tsfresh_settings.json \
		--beats data/processed/beats.parquet --all --calculators 100 \
		--drop $$($(BIN)/python -c "import yaml; print(' '.join(yaml.safe_load(open('params.yaml'))['features']['tsfresh']['drop_calculators']))")

bench-dask: $(INSTALLED) ## tsfresh extraction and training, local vs a 2-worker Dask LocalCluster
	$(BIN)/python -m benchmarks.bench_dask --settings data/interim/kaggle/features/tsfresh_settings.json --n 6000 --repeats 2 --train-beats 40000 --rounds 100

load-test: $(INSTALLED) ## 10,000 requests at concurrency 32, then a restart during load (loopback)
	$(BIN)/python -m benchmarks.load_test --model $(MODEL) --beats data/processed/$(notdir $(MODEL))/test.parquet --keep-alive 75

drift: $(INSTALLED) ## drift report of BEATS (parquet/CSV) against MODEL's reference profile
	@test -n "$(BEATS)" || (echo "set BEATS to a beat parquet or CSV" && exit 1)
	$(BIN)/python -m ecgbeats.serving.drift_cli $(BEATS) --model $(MODEL) --out drift-report.json --figure drift-report.png

.PHONY: alerts-test
alerts-test: ## check and unit-test the Prometheus alert rules and config with promtool (Debian package prometheus)
	promtool check rules deploy/prometheus/rules.yml
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/rules_test.yml

# the README's viewer screenshot: the served model's DS1-only fit on a DS2 record it never saw
VIEWER_MODEL ?= $(SERVE_MODEL)-ds1
VIEWER_RECORD ?= $(or $(MITDB_MIRROR),data/raw/mitdb)/233
.PHONY: viewer-screenshot

viewer-screenshot: $(INSTALLED) ## refresh reports/figures/viewer.png: the /viewer page on VIEWER_RECORD in headless chromium
	$(BIN)/python -m scripts.viewer_screenshot --model $(VIEWER_MODEL) --record $(VIEWER_RECORD) --out reports/figures/viewer.png

FINDINGS_MODEL ?= $(SERVE_MODEL)
FINDINGS_RECORD ?= $(or $(MITDB_MIRROR),data/raw/mitdb)/203

.PHONY: findings-report

findings-report: $(INSTALLED) ## the findings of FINDINGS_RECORD (JSON, HTML page in build/findings) and reports/figures/findings.png
	$(BIN)/python -m scripts.findings_screenshot --model $(FINDINGS_MODEL) --record $(FINDINGS_RECORD) --out-dir build/findings --screenshot reports/figures/findings.png

fixtures: $(INSTALLED) ## regenerate tests/fixtures/mitdb from the mirror in MITDB_MIRROR
	@test -n "$(MITDB_MIRROR)" || (echo "set MITDB_MIRROR to a full MIT-BIH mirror" && exit 1)
	$(BIN)/python scripts/make_fixtures.py --mirror "$(MITDB_MIRROR)" --out tests/fixtures/mitdb

dag: $(INSTALLED) ## print the product pipeline's graph (studies: dvc dag studies/dvc.yaml)
	$(BIN)/dvc dag dvc.yaml

# the container image (podman + buildah, root; `apt-get install podman buildah runc debootstrap`): one
# image per (code, bundle), the bundle's digest pinned in it. IMAGE_MODEL (or MODEL= on the command
# line) picks the bundle, default the served one; image-test also mounts IMAGE_BEAT_MODEL, a beat-row
# bundle, to classify beat rows. Where no registry answers, the base is a local stand-in
# (scripts/container_base.sh). CONTAINER_RUN_ARGS: what this host's podman needs (runc: crun fails on
# its cgroups; --ulimit host: setrlimit is refused).
IMAGE_MODEL ?= $(if $(filter command line,$(origin MODEL)),$(MODEL),$(SERVE_MODEL))
IMAGE_BEAT_MODEL ?= models/interpatient
# the stages that make those two bundles, for a checkout without them (DVC outputs are not in git)
IMAGE_REPRO ?= refit_record@record-reference train@interpatient
IMAGE_NAME ?= localhost/ecgbeats
IMAGE_TAG ?= $(shell git describe --always --dirty --exclude '*')-$(notdir $(IMAGE_MODEL))
IMAGE_BUILD_ARGS ?=
CONTAINER_RUN_ARGS ?= --runtime runc --ulimit host
export CONTAINERS_CONF ?= $(abspath deploy/container/containers.conf)
# the CA bundle pip trusts on this host (a TLS-intercepting proxy's CA), given to the build as a secret
PIP_CA ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt))

image: ## build the container image of IMAGE_MODEL (default models/record-reference; or MODEL=...) with the pinned dependencies
	@test -f $(IMAGE_MODEL)/MANIFEST.sha256 || (echo "image: no model bundle at $(IMAGE_MODEL) (dvc repro or dvc pull it)" && exit 1)
	scripts/container_base.sh python:3.11-slim-bookworm
	@start=$$(date +%s); \
	buildah bud --isolation chroot --format docker --layers \
		$(if $(PIP_CA),--secret id=pip_ca$(comma)src=$(PIP_CA)) $(if $(PIP_INDEX_URL),--build-arg PIP_INDEX_URL=$(PIP_INDEX_URL)) \
		--build-arg MODEL=$(IMAGE_MODEL) --build-arg MODEL_DIGEST=$$(sha256sum $(IMAGE_MODEL)/MANIFEST.sha256 | cut -d' ' -f1) \
		$(IMAGE_BUILD_ARGS) -t $(IMAGE_NAME):$(IMAGE_TAG) . && \
	echo "image: built $(IMAGE_NAME):$(IMAGE_TAG) in $$(( $$(date +%s) - start )) s, $$(podman image inspect --format '{{.Size}}' $(IMAGE_NAME):$(IMAGE_TAG)) bytes"

image-test: $(INSTALLED) ## build the image and test it on loopback: ready, strip and beats classified, non-root, HEALTHCHECK, refusals
	@missing=""; for m in $(IMAGE_MODEL) $(IMAGE_BEAT_MODEL); do test -f $$m/MANIFEST.sha256 || missing="$$missing $$m"; done; \
	if [ -n "$$missing" ]; then \
		echo "image-test: no bundle at$$missing (DVC outputs are not in git): dvc repro $(IMAGE_REPRO)"; \
		start=$$(date +%s); $(BIN)/dvc repro $(IMAGE_REPRO) || exit 1; \
		echo "image-test: bundles reproduced in $$(( $$(date +%s) - start )) s"; \
	fi
	$(MAKE) image IMAGE_MODEL=$(IMAGE_MODEL) IMAGE_TAG=$(IMAGE_TAG)
	$(BIN)/python -m scripts.image_test --image $(IMAGE_NAME):$(IMAGE_TAG) --model $(IMAGE_MODEL) \
		--beat-model $(IMAGE_BEAT_MODEL) --run-args "$(CONTAINER_RUN_ARGS)"

clean: ## remove the virtual environment and caches (not data or the DVC cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache
