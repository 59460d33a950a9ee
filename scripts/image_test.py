"""Start the service's container image on loopback and check it; one PASS/FAIL line per check.

    python -m scripts.image_test --image localhost/ecgbeats:TAG --model models/record-reference \\
        --beat-model models/interpatient

The image serves its baked-in bundle (the record model by default). Checks:
  - the image: non-root USER, a HEALTHCHECK, the pinned bundle digest, its size and base (reported);
  - the container started from the image's own CMD on a free loopback port (host networking):
    /ready names the baked bundle; a fixture record's strip is classified exactly as the library on
    this host classifies it; beat rows refused with 422 by a record bundle (by design), or classified
    as the library classifies them by a beat-row one; the server process runs as the non-root user;
    `podman healthcheck run` passes; a stop (SIGTERM) ends it with exit code 0;
  - the same image with a beat-row bundle mounted read-only over /app/model (and its digest pinned):
    beat rows classified exactly as the library classifies them;
  - refusals: a wrong pinned ECGBEATS_MODEL_DIGEST and a tampered bundle each stop the container
    with exit code 2 and the one-line "ecgbeats: refusing to start: ..." message.

Exit status: 0 every check passed, 1 a check failed, 2 the test could not run (engine, image, input).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mitdb"
STRIP_RECORD = "213"  # 180 s, two leads, N, S, V and F beats
BEATS_SENT = 64
READY_SECONDS = 120.0
REFUSAL = "ecgbeats: refusing to start: "
USER_UID = 10001  # the Dockerfile's `useradd --uid`


class CannotRun(RuntimeError):
    """The test itself cannot run (no engine, no image, no bundle): exit 2."""


@dataclass
class Report:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    def run(self, name: str, body: Callable[[], tuple[bool, str]]) -> bool:
        try:
            ok, detail = body()
        except Exception as err:  # a crashed check is a failed check, with its reason on one line
            ok, detail = False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return self.check(name, ok, detail)

    @property
    def failed(self) -> list[str]:
        return [name for name, ok, _ in self.results if not ok]


class Engine:
    """The podman CLI with the run flags this host needs (see deploy/container/containers.conf)."""

    def __init__(self, binary: str, run_args: list[str]) -> None:
        path = shutil.which(binary)
        if path is None:
            raise CannotRun(f"{binary} is not installed (apt-get install podman buildah runc)")
        self.binary = path
        self.run_args = run_args
        self.started: list[str] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.binary} {' '.join(args[:2])} exited {proc.returncode}: {last_line(proc.stderr)}")
        return proc

    def inspect_image(self, image: str) -> dict[str, Any]:
        proc = self("image", "inspect", image, check=False)
        if proc.returncode != 0:
            raise CannotRun(f"image {image} is not stored ({last_line(proc.stderr)}); run `make image` first")
        return json.loads(proc.stdout)[0]

    def run(
        self,
        name: str,
        image: str,
        env: dict[str, str],
        volumes: Sequence[str] = (),
        detach: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        args = ["run", "--name", name, "--network=host", *self.run_args]
        args += ["-d"] if detach else []
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        for volume in volumes:
            args += ["-v", volume]
        self.started.append(name)
        return self(*args, image, check=detach, timeout=timeout)

    def remove_started(self) -> None:
        for name in self.started:
            self("rm", "-f", "-t", "5", name, check=False)
        self.started.clear()


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and "level=" not in line]
    return lines[-1] if lines else ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manifest_digest(bundle: Path) -> str:
    return hashlib.sha256((bundle / "MANIFEST.sha256").read_bytes()).hexdigest()


def wait_ready(engine: Engine, name: str, base: str) -> float:
    """Seconds until /ready answers 200; raises if the container exits or the deadline passes."""
    start = time.monotonic()
    while time.monotonic() - start < READY_SECONDS:
        state = engine("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
        if state and state[0] in ("exited", "stopped"):
            logs = engine("logs", name, check=False)
            raise RuntimeError(f"the container exited with {state[1]}: {last_line(logs.stderr + logs.stdout)}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"/ready did not answer 200 within {READY_SECONDS:g} s")


@contextmanager
def container(engine: Engine, name: str, image: str, env: dict[str, str], volumes: Sequence[str] = ()) -> Iterator[str]:
    """A detached container of ``image`` on a free loopback port; yields its base URL once ready."""
    port = free_port()
    engine.run(name, image, {"HOST": "127.0.0.1", "PORT": str(port), "ECGBEATS_AUTH": "off", **env}, volumes)
    base = f"http://127.0.0.1:{port}"
    wait_ready(engine, name, base)
    yield base


def strip_request() -> tuple[dict[str, Any], np.ndarray, float]:
    from ecgbeats.data.dataset import read_record_signals

    rec = read_record_signals(FIXTURE_MIRROR, STRIP_RECORD)
    signal = np.round(rec.signal, 6)  # what JSON carries; the library is given the same numbers
    body = {"fs": rec.fs, "signal": signal[:, 0].tolist(), "second_lead": signal[:, 1].tolist()}
    return body, signal, rec.fs


def json_number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # an unknown RR interval is null in the API


def beats_request() -> tuple[dict[str, Any], Any]:
    from ecgbeats.data.dataset import build_beat_table
    from ecgbeats.features.groups import RR_COLUMNS
    from ecgbeats.serving.scoring import beat_frame

    table = build_beat_table(FIXTURE_MIRROR, [STRIP_RECORD], progress=False)
    picked = table.groupby("label", group_keys=False).head(BEATS_SENT // 4).head(BEATS_SENT)
    samples = picked[[c for c in table.columns if c.startswith("s") and c[1:].isdigit()]].to_numpy(np.float64)
    samples = np.round(samples, 6)
    rr = {col: picked[col].to_numpy(np.float64) for col in RR_COLUMNS}
    beats = [
        {"samples": row.tolist(), "length": int(length), **{col: json_number(rr[col][i]) for col in RR_COLUMNS}}
        for i, (row, length) in enumerate(zip(samples, picked["length"], strict=True))
    ]
    lengths = picked["length"].to_numpy(np.float64)
    return {"beats": beats}, beat_frame(samples, lengths=lengths, rr=rr)


def same_predictions(answer: list[dict[str, Any]], expected: Any) -> tuple[bool, str]:
    """The container's classes equal the library's, its probabilities within 1e-9."""
    if len(answer) != len(expected.codes):
        return False, f"{len(answer)} predictions, the library gives {len(expected.codes)}"
    codes = [p["class_code"] for p in answer]
    differ = sum(a != int(b) for a, b in zip(codes, expected.codes, strict=True))
    if differ:
        return False, f"{differ} of {len(codes)} classes differ from the library's"
    got = np.array([[p["probabilities"][n] for n in expected.class_names] for p in answer]).reshape(len(answer), -1)
    gap = float(np.max(np.abs(got - expected.probabilities))) if len(answer) else 0.0
    return gap <= 1e-9, f"same classes as the library on this host, max probability difference {gap:.1e}"


def beats_classified(base_url: str, body: dict[str, Any], frame: Any, bundle: Path, where: str) -> tuple[bool, str]:
    """Beat rows through the container equal the library's answer with ``bundle``, which it serves."""
    from ecgbeats.modelling.bundle import load_bundle
    from ecgbeats.serving.scoring import Scorer

    answer = httpx.post(f"{base_url}/v1/beats:classify", json=body, timeout=60)
    if answer.status_code != 200:
        return False, f"HTTP {answer.status_code}: {answer.text[:200]}"
    payload = answer.json()
    expected = Scorer(load_bundle(bundle)).score_beats(frame)
    ok, detail = same_predictions(payload["predictions"], expected)
    served = payload["model"]["digest"] == manifest_digest(bundle)
    classes = sorted({p["class_name"] for p in payload["predictions"]})
    n = len(payload["predictions"])
    return ok and served, f"{n} beats ({bundle} {where}), classes {classes}; {detail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the image to test, e.g. localhost/ecgbeats:TAG")
    parser.add_argument("--model", type=Path, required=True, help="the bundle baked into the image (host copy)")
    parser.add_argument("--beat-model", type=Path, required=True, help="a beat-row bundle to mount for /v1/beats")
    parser.add_argument("--engine", default="podman")
    parser.add_argument(
        "--run-args",
        default=os.environ.get("CONTAINER_RUN_ARGS", ""),
        help="extra `podman run` flags (this host: --runtime runc --ulimit host)",
    )
    args = parser.parse_args(argv)
    report = Report()
    try:
        return run_checks(args, report)
    except CannotRun as err:
        print(f"image test cannot run: {err}", file=sys.stderr)
        return 2


def run_checks(args: argparse.Namespace, report: Report) -> int:
    from ecgbeats.modelling.bundle import load_bundle
    from ecgbeats.serving.scoring import Scorer

    for bundle in (args.model, args.beat_model):
        if not (bundle / "MANIFEST.sha256").is_file():
            raise CannotRun(f"no model bundle at {bundle} (dvc repro or dvc pull it first)")
    engine = Engine(args.engine, shlex.split(args.run_args))
    info = engine.inspect_image(args.image)
    config = info.get("Config", {})
    labels = config.get("Labels") or {}
    digest = manifest_digest(args.model)
    size_mb = info["Size"] / 1e6
    stand_in = labels.get("ecgbeats.base") == "stand-in"  # the base's labels are inherited
    base = "a STAND-IN built from Debian bookworm (no registry reachable)" if stand_in else "python:3.11-slim-bookworm"
    print(f"image {args.image}: {size_mb:.0f} MB ({info['Size']} bytes), id {info['Id'][:12]}, base {base}")
    report.check("image user", config.get("User") == "ecgbeats", f"USER {config.get('User')!r}")
    health = (info.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test")
    report.check("image healthcheck", bool(health), f"HEALTHCHECK {health}")
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    report.check(
        "image pins its bundle",
        env.get("ECGBEATS_MODEL_DIGEST") == digest,
        f"ECGBEATS_MODEL_DIGEST {env.get('ECGBEATS_MODEL_DIGEST')!r}, {args.model} has {digest}",
    )

    tag = f"ecgbeats-image-test-{os.getpid()}"
    strip_body, strip_signal, fs = strip_request()
    beats_body, beats_frame = beats_request()
    try:
        name = f"{tag}-record"
        start = time.monotonic()
        with container(engine, name, args.image, {}) as base_url:
            print(f"container {name} ready in {time.monotonic() - start:.1f} s at {base_url}", flush=True)

            def ready() -> tuple[bool, str]:
                body = httpx.get(f"{base_url}/ready", timeout=10).json()
                return body.get("model_digest") == digest, f"{body}"

            def strip() -> tuple[bool, str]:
                t0 = time.monotonic()
                answer = httpx.post(f"{base_url}/v1/ecg:classify", json=strip_body, timeout=120)
                seconds = time.monotonic() - t0
                if answer.status_code != 200:
                    return False, f"HTTP {answer.status_code}: {answer.text[:200]}"
                payload = answer.json()
                expected = Scorer(load_bundle(args.model)).score_strip(strip_signal, fs)
                ok, detail = same_predictions(payload["beats"], expected.predictions)
                counts = payload["summary"].get("counts", {})
                return (
                    ok,
                    f"{len(payload['beats'])} beats of record {STRIP_RECORD} in {seconds:.2f} s, {counts}; {detail}",
                )

            def beats_refused() -> tuple[bool, str]:
                answer = httpx.post(f"{base_url}/v1/beats:classify", json=beats_body, timeout=60)
                return answer.status_code == 422, f"HTTP {answer.status_code}: {answer.text[:160]}"

            def beats_baked() -> tuple[bool, str]:
                return beats_classified(base_url, beats_body, beats_frame, args.model, "in the image")

            def user() -> tuple[bool, str]:
                top = engine("top", name, "user", "pid", "args").stdout.strip().splitlines()
                server = [line for line in top[1:] if "ecgbeats.serving" in line]
                uid = engine("exec", name, "id", "-u").stdout.strip()
                ok = bool(server) and all(line.split()[0] == "ecgbeats" for line in server) and uid == str(USER_UID)
                return ok, f"server process {server[0].split()[:2] if server else None}, exec uid {uid}"

            def healthcheck() -> tuple[bool, str]:
                proc = engine("healthcheck", "run", name, check=False)
                status = engine("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
                return proc.returncode == 0 and status == "healthy", f"exit {proc.returncode}, status {status!r}"

            report.run("/ready", ready)
            report.run("strip classified (the image's bundle)", strip)
            if load_bundle(args.model).representation == "record":  # by design: a record model needs the strip
                report.run("beat rows refused by the record bundle", beats_refused)
            else:
                report.run("beat rows classified (the image's bundle)", beats_baked)
            report.run("runs as the non-root user", user)
            report.run("HEALTHCHECK passes", healthcheck)

        def stop() -> tuple[bool, str]:
            t0 = time.monotonic()
            engine("stop", "-t", "20", name)
            code = engine("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
            return code == "0", f"exit code {code} {time.monotonic() - t0:.1f} s after SIGTERM"

        report.run("stops cleanly on SIGTERM", stop)

        beat_digest = manifest_digest(args.beat_model)
        mount = f"{args.beat_model.resolve()}:/app/model:ro"
        name = f"{tag}-beats"
        with container(engine, name, args.image, {"ECGBEATS_MODEL_DIGEST": beat_digest}, [mount]) as base_url:
            report.run(
                "beat rows classified (beat-row bundle)",
                lambda: beats_classified(base_url, beats_body, beats_frame, args.beat_model, "mounted"),
            )

        def refusal(name: str, env: dict[str, str], volumes: list[str], expect: str) -> tuple[bool, str]:
            proc = engine.run(name, args.image, {"PORT": str(free_port()), **env}, volumes, detach=False)
            lines = [line for line in proc.stderr.splitlines() if line.startswith("ecgbeats") or "Traceback" in line]
            ok = proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(REFUSAL) and expect in lines[0]
            return ok, f"exit {proc.returncode}: {lines[0] if lines else last_line(proc.stderr)}"

        wrong = hashlib.sha256(b"another bundle").hexdigest()
        pin = {"ECGBEATS_MODEL_DIGEST": wrong}
        report.run("wrong pinned digest refused", lambda: refusal(f"{tag}-pin", pin, [], "is not the pinned"))
        with tempfile.TemporaryDirectory(prefix="ecgbeats-tampered-") as tmp:
            tampered = Path(tmp) / "bundle"
            shutil.copytree(args.model, tampered)
            with open(tampered / "model.txt", "a") as out:
                out.write("\n")  # one byte: the manifest (and so the pinned digest) still match
            tampered.chmod(0o755)
            mounted = [f"{tampered}:/app/model:ro"]
            report.run("tampered bundle refused", lambda: refusal(f"{tag}-tampered", {}, mounted, "was modified"))
    finally:
        engine.remove_started()

    failed = report.failed
    print(
        f"image test: {len(report.results) - len(failed)} of {len(report.results)} checks passed; image "
        f"{size_mb:.0f} MB" + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
