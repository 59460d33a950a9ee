# syntax=docker/dockerfile:1
# The ecgbeats service: one immutable image per (code, model version).
#
#   dvc pull models/kaggle            # or: dvc get . models/kaggle --rev kaggle-model@v1.0.0 -o models/kaggle
#   docker build --build-arg MODEL=models/kaggle --build-arg MODEL_VERSION=kaggle-model@v1.0.0 \
#       -t ecgbeats:0.1.0-kaggle-v1.0.0 .
#   docker run --rm -p 8000:8000 ecgbeats:0.1.0-kaggle-v1.0.0
#
# Dependencies come from requirements.txt pinned by constraints.txt (the lock file), exactly as
# `make install` builds .venv. NOT BUILT on the development machine (no Docker engine there).

ARG PYTHON=3.11-slim-bookworm

# ---- build: a virtual environment with the pinned dependencies and the package
FROM python:${PYTHON} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt
COPY pyproject.toml README.md ./
COPY ecgbeats ./ecgbeats
RUN pip install --no-deps .

# ---- runtime: the environment, the model bundle, a non-root user
FROM python:${PYTHON} AS runtime
# LightGBM needs the OpenMP runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ecgbeats
COPY --from=build /opt/venv /opt/venv
ARG MODEL=models/kaggle
ARG MODEL_VERSION=""
ARG MODEL_DIGEST=""
# the bundle is copied with its manifest; the service checks every file's sha256 before serving
COPY --chown=root:root ${MODEL} /app/model
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ECGBEATS_MODEL_DIR=/app/model \
    ECGBEATS_MODEL_VERSION=${MODEL_VERSION} \
    ECGBEATS_MODEL_DIGEST=${MODEL_DIGEST} \
    WORKERS=1
LABEL org.opencontainers.image.title="ecgbeats" \
      org.opencontainers.image.description="AAMI heartbeat classification service (research use, not a medical device)" \
      ecgbeats.model.version="${MODEL_VERSION}"
USER ecgbeats
WORKDIR /app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
# One worker per container: scale by replicas (one per core). Keep-alive above the load balancer's
# idle timeout (60 s on most), else the balancer reuses connections the server just closed
# (reports/deployment.md, load test). A missing, tampered or wrongly pinned bundle still stops the
# start (the app's lifespan raises; uvicorn exits 3). Once `python -m ecgbeats.serving` takes
# --timeout-keep-alive, use it instead: it also prints a one-line refusal and exits 2.
ENV KEEP_ALIVE_SECONDS=75
CMD ["sh", "-c", "exec python -m uvicorn --factory ecgbeats.serving.api:app_from_env --host 0.0.0.0 --port 8000 --workers ${WORKERS} --timeout-keep-alive ${KEEP_ALIVE_SECONDS} --no-server-header"]
