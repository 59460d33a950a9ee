# syntax=docker/dockerfile:1
# The ecgbeats service: one immutable image per (code, model bundle).
#
#   make image                          # podman/buildah; MODEL_DIGEST is the bundle's manifest sha256
#   make image IMAGE_MODEL=models/interpatient
#   docker build --format docker ...    # any engine; see `make -n image` for the full command
#
# Dependencies come from requirements.txt pinned by constraints.txt (the lock file), exactly as
# `make install` builds .venv. Built and started by `make image-test` (scripts/image_test.py); where
# no registry is reachable the base is a local stand-in of the same name (scripts/container_base.sh).
# Build with the docker format (`--format docker`): the OCI format drops HEALTHCHECK.

ARG PYTHON=3.11-slim-bookworm

# ---- build: a virtual environment with the pinned dependencies and the package
FROM python:${PYTHON} AS build
# the package index pip uses (a mirror where PyPI is not reachable); build stage only, not in the image
ARG PIP_INDEX_URL=https://pypi.org/simple
# pip_ca: an optional build secret with the CA bundle of a TLS-intercepting proxy (the host's
# /etc/ssl/certs/ca-certificates.crt where pip there trusts it); mounted for the pip steps only
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.txt constraints.txt ./
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    pip install -r requirements.txt -c constraints.txt
COPY pyproject.toml README.md ./
COPY ecgbeats ./ecgbeats
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    pip install --no-deps . && pip check

# ---- runtime: the environment, the model bundle, a non-root user
FROM python:${PYTHON} AS runtime
# LightGBM needs the OpenMP runtime (already in the stand-in base; the official slim image lacks it)
RUN (dpkg -s libgomp1 >/dev/null 2>&1 || (apt-get update \
        && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*)) \
    && useradd --system --uid 10001 --no-create-home ecgbeats \
    && install -d -o ecgbeats -g ecgbeats /var/cache/ecgbeats/numba
COPY --from=build /opt/venv /opt/venv
ARG MODEL=models/record-reference
ARG MODEL_VERSION=""
ARG MODEL_DIGEST=""
# the bundle is copied with its manifest; the service checks every file's sha256 (and the pinned
# digest, when set) before it reads the model, and refuses to start otherwise
COPY --chown=root:root ${MODEL} /app/model
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ECGBEATS_MODEL_DIR=/app/model \
    ECGBEATS_MODEL_VERSION=${MODEL_VERSION} \
    ECGBEATS_MODEL_DIGEST=${MODEL_DIGEST} \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=1 \
    KEEP_ALIVE_SECONDS=75 \
    NUMBA_CACHE_DIR=/var/cache/ecgbeats/numba
LABEL org.opencontainers.image.title="ecgbeats" \
      org.opencontainers.image.description="AAMI heartbeat classification service (research use, not a medical device)" \
      ecgbeats.model.version="${MODEL_VERSION}" \
      ecgbeats.model.digest="${MODEL_DIGEST}"
USER ecgbeats
WORKDIR /app
# the detector's and the record measurement's compiled kernels, cached in the image (numba recompiles
# into the same writable directory on a host whose CPU differs), so the first strip does not wait
RUN python -c "from ecgbeats.modelling.bundle import load_bundle; from ecgbeats.serving.scoring import Scorer; \
Scorer(load_bundle('/app/model')).warm_up()"
EXPOSE 8000
# PORT and HOST: where the server listens (with host networking, the test picks a free loopback port)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "exec python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/ready', timeout=2)\""]
# One worker per container: scale by replicas (one per core). Keep-alive above the load balancer's
# idle timeout (60 s on most), else the balancer reuses connections the server just closed
# (reports/deployment.md, load test). A missing, tampered or wrongly pinned bundle stops the start
# with a one-line refusal on stderr and exit code 2, before uvicorn starts.
CMD ["sh", "-c", "exec python -m ecgbeats.serving --host \"$HOST\" --port \"$PORT\" --workers \"$WORKERS\" --timeout-keep-alive \"$KEEP_ALIVE_SECONDS\""]
