"""``python -m ecgbeats.serving``: check the model bundle, then serve it with uvicorn.

Settings come from ``ECGBEATS_*`` environment variables (see ``ecgbeats.serving.settings``).
A missing or tampered bundle, a bundle other than the pinned ``ECGBEATS_MODEL_DIGEST``, a bundle whose
JSON or model text is malformed (``check_bundle``), or a bad setting stops here with a one-line message and
exit code 2, before uvicorn and before LightGBM parses the model; so do unreadable or malformed API key
files. Connections get the limits of ``ecgbeats.serving.connections``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import sys
from typing import Any

import uvicorn

from ecgbeats.modelling.bundle import BundleError, check_bundle
from ecgbeats.serving.api import create_app
from ecgbeats.serving.connections import PROBATION
from ecgbeats.serving.security import KeyFileError, key_ring
from ecgbeats.serving.settings import SettingsError, load_settings

PROTOCOL = "ecgbeats.serving.connections:GuardedH11Protocol"
# file descriptors beyond the connection cap: the model, logs, the listening socket, and the new connections
# beyond the cap awaiting their first bytes (ecgbeats.serving.connections)
FD_HEADROOM = 64 + PROBATION


def _raise_fd_limit(needed: int) -> None:
    """Raise the soft file-descriptor limit towards the hard one, so the connection cap is reached first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        logging.getLogger(__name__).warning(
            "the file-descriptor limit is %d, below ECGBEATS_MAX_CONNECTIONS + %d = %d", soft, FD_HEADROOM, needed
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecgbeats.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--timeout-keep-alive", type=float,
        help="seconds an idle kept-alive connection stays open (ECGBEATS_KEEP_ALIVE_TIMEOUT, default 5); behind a "
        "load balancer, longer than its idle timeout",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.timeout_keep_alive is not None:
        # the setting itself, so the connection guard and every uvicorn worker process read the same value
        os.environ["ECGBEATS_KEEP_ALIVE_TIMEOUT"] = str(args.timeout_keep_alive)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        check_bundle(settings.model_dir, settings.model_digest)  # the pin before anything reads the model
        key_ring(settings)  # key files readable and well-formed
    except (BundleError, SettingsError, KeyFileError) as err:
        print(f"ecgbeats: refusing to start: {err}", file=sys.stderr)
        return 2
    if settings.auth == "off":
        logging.getLogger(__name__).warning("ECGBEATS_AUTH=off: every endpoint is open to anyone who can connect")
    _raise_fd_limit(settings.max_connections + FD_HEADROOM)
    options: dict[str, Any] = dict(
        host=args.host, port=args.port, log_level=args.log_level, http=PROTOCOL, server_header=False,
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout),  # the guard applies the exact value
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
    )  # fmt: skip
    if args.workers > 1:  # each worker builds its own app from the same environment
        uvicorn.run("ecgbeats.serving.api:app_from_env", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
