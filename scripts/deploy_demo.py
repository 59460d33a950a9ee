"""Push, two replicas behind a load balancer, a rolling update and a rollback by digest, on loopback.

    python -m scripts.deploy_demo --v1 localhost/ecgbeats:TAG-record --v2 localhost/ecgbeats:TAG-interpatient

The production path of reports/deployment.md (section 9) in miniature, with real parts: Debian's
`docker-registry` (the CNCF distribution registry) on a loopback port, `podman push` of both images
and `podman run` of each replica **by digest** from that registry, HAProxy in front of two replicas
(health check on /ready, retries and redispatch), and a client sending strips through the balancer
the whole time. Phases: v1 on both replicas; rolling update to v2 (one replica at a time); rollback
to v1 by its digest (one replica at a time). Prints, per phase, the requests, the non-200 answers and
the bundle digests that answered. Needs root, podman, docker-registry and haproxy
(`apt-get install podman buildah runc docker-registry haproxy`); not part of CI.

Exit status: 0 no request failed, 1 a request failed or a replica served the wrong digest, 2 cannot run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.image_test import Engine, free_port, last_line, strip_request, wait_ready

REGISTRY_CONFIG = """version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""
# keep-alive of the replicas (75 s) above the balancer's idle timeouts, as section 3 found
HAPROXY_CONFIG = """global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    retries 3
    option redispatch
    option http-server-close
frontend ecgbeats
    bind 127.0.0.1:{lb_port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /ready
    default-server inter 500ms fall 1 rise 2
    server a 127.0.0.1:{port_a} check
    server b 127.0.0.1:{port_b} check
"""


class Traffic(threading.Thread):
    """Strips through the balancer, one after another, each answer tagged with the current phase."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.phase = "start"
        self.stopping = threading.Event()
        self.log: list[tuple[str, int, str]] = []  # phase, status, digest or error

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopping.is_set():
                phase = self.phase
                try:
                    answer = client.post(self.url, json=self.body)
                    digest = answer.json().get("model", {}).get("digest", "") if answer.status_code == 200 else ""
                    self.log.append((phase, answer.status_code, digest or answer.text[:80]))
                except httpx.HTTPError as err:
                    self.log.append((phase, 0, f"{type(err).__name__}"))

    def summary(self) -> dict[str, dict[str, Any]]:
        phases: dict[str, dict[str, Any]] = {}
        for phase, status, what in self.log:
            row = phases.setdefault(phase, {"requests": 0, "failed": 0, "digests": collections.Counter()})
            row["requests"] += 1
            if status == 200:
                row["digests"][what[:12]] += 1
            else:
                row["failed"] += 1
                row.setdefault("errors", collections.Counter())[f"{status} {what}"] += 1
        return phases


def push(engine: Engine, image: str, registry: str, name: str) -> str:
    """Push ``image`` as registry/ecgbeats:name; return the reference by digest."""
    with tempfile.NamedTemporaryFile() as digest_file:
        target = f"{registry}/ecgbeats:{name}"
        engine("push", "--tls-verify=false", "--digestfile", digest_file.name, image, target, timeout=600)
        digest = Path(digest_file.name).read_text().strip()
    return f"{registry}/ecgbeats@{digest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v1", required=True, help="the image deployed first (and rolled back to)")
    parser.add_argument("--v2", required=True, help="the image rolled out, then rolled back")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds of traffic in each steady phase")
    parser.add_argument("--run-args", default=os.environ.get("CONTAINER_RUN_ARGS", "--runtime runc --ulimit host"))
    args = parser.parse_args(argv)
    for tool in ("docker-registry", "haproxy"):
        if shutil.which(tool) is None:
            print(f"deploy demo cannot run: {tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 2
    engine = Engine("podman", shlex.split(args.run_args))
    work = Path(tempfile.mkdtemp(prefix="ecgbeats-deploy-"))
    procs: list[subprocess.Popen[bytes]] = []
    tag = f"ecgbeats-deploy-{os.getpid()}"
    stack = contextlib.ExitStack()
    try:
        # a registry on loopback, and both images pushed to it; replicas run from it by digest only
        reg_port = free_port()
        (work / "registry.yml").write_text(REGISTRY_CONFIG.format(root=work / "registry", port=reg_port))
        log = stack.enter_context(open(work / "services.log", "w"))  # noqa: SIM115 (closed by the stack)
        procs.append(subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")], stdout=log, stderr=log))
        registry = f"127.0.0.1:{reg_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{registry}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the registry did not start: {last_line((work / 'services.log').read_text())}")
            time.sleep(0.2)
        t0 = time.monotonic()
        v1, v2 = push(engine, args.v1, registry, "v1"), push(engine, args.v2, registry, "v2")
        print(f"pushed to {registry} in {time.monotonic() - t0:.1f} s:\n  v1 {v1}\n  v2 {v2}", flush=True)
        for ref in (v1, v2):  # a fresh pull, as a production node would
            engine("pull", "--tls-verify=false", "--quiet", ref, timeout=600)
        pins = {ref: json.loads(engine("image", "inspect", ref).stdout)[0]["Config"]["Labels"] for ref in (v1, v2)}

        ports = {"a": free_port(), "b": free_port()}
        lb_port = free_port()

        def start(replica: str, ref: str) -> None:
            name = f"{tag}-{replica}"
            env = {"HOST": "127.0.0.1", "PORT": str(ports[replica]), "ECGBEATS_AUTH": "off"}
            engine.run(name, ref, env)
            wait_ready(engine, name, f"http://127.0.0.1:{ports[replica]}")

        def replace(replica: str, ref: str) -> None:
            name = f"{tag}-{replica}"
            engine("stop", "-t", "20", name)  # SIGTERM: uvicorn finishes the request in flight
            engine("rm", name)
            engine.started.remove(name)
            start(replica, ref)

        for replica in ports:
            start(replica, v1)
        config = HAPROXY_CONFIG.format(lb_port=lb_port, port_a=ports["a"], port_b=ports["b"])
        (work / "haproxy.cfg").write_text(config)
        procs.append(subprocess.Popen(["haproxy", "-db", "-f", str(work / "haproxy.cfg")], stdout=log, stderr=log))
        time.sleep(2)  # two health checks
        body, _, _ = strip_request()
        traffic = Traffic(f"http://127.0.0.1:{lb_port}/v1/ecg:classify", body)
        traffic.phase = "v1 on a and b"
        traffic.start()
        time.sleep(args.hold)
        timeline = []
        for label, ref in (("rolling update to v2", v2), ("rollback to v1 by digest", v1)):
            traffic.phase = label
            t0 = time.monotonic()
            for replica in ports:
                replace(replica, ref)
                time.sleep(1.5)  # the balancer's rise: 2 checks 500 ms apart
            timeline.append(f"{label}: {time.monotonic() - t0:.1f} s")
            traffic.phase = f"after {label}"
            time.sleep(args.hold)
        traffic.stopping.set()
        traffic.join(timeout=60)

        failed = 0
        print(" ; ".join(timeline))
        for phase, row in traffic.summary().items():
            digests = ", ".join(f"{d} x{n}" for d, n in row["digests"].items())
            errors = f"; errors {dict(row['errors'])}" if row.get("errors") else ""
            print(f"{phase}: {row['requests']} requests, {row['failed']} failed; answered by {digests}{errors}")
            failed += row["failed"]
        final = {d for p, s, d in traffic.log if p == "after rollback to v1 by digest" and s == 200}
        v1_digest = pins[v1].get("ecgbeats.model.digest", "")
        ok = failed == 0 and final == {v1_digest}
        verdict = "PASS" if ok else "FAIL"
        print(
            f"deploy demo: {verdict}: {len(traffic.log)} requests through the balancer, {failed} failed; "
            f"after the rollback, answers came from bundle(s) {sorted(d[:12] for d in final)} (v1: {v1_digest[:12]})"
        )
        return 0 if ok else 1
    finally:
        engine.remove_started()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
