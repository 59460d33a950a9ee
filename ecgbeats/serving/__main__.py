"""``python -m ecgbeats.serving``: check the model bundle, then serve it with uvicorn.

Settings come from ``ECGBEATS_*`` environment variables (see ``ecgbeats.serving.settings``).
A missing or tampered bundle, a bundle other than the pinned ``ECGBEATS_MODEL_DIGEST``, or a bad setting
stops here with a one-line message and exit code 2, before uvicorn and before the model is parsed.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from ecgbeats.modelling.bundle import BundleError, verify_bundle
from ecgbeats.serving.api import create_app
from ecgbeats.serving.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecgbeats.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="info")
    # longer than uvicorn's 5 s default: busy clients reuse a connection before the server drops it
    parser.add_argument("--timeout-keep-alive", type=int, default=75, help="seconds an idle connection stays open")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        verify_bundle(settings.model_dir, settings.model_digest)  # the pin before anything reads the model
    except (BundleError, SettingsError) as err:
        print(f"ecgbeats: refusing to start: {err}", file=sys.stderr)
        return 2
    if args.workers > 1:  # each worker builds its own app from the same environment
        uvicorn.run(
            "ecgbeats.serving.api:app_from_env", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_level=args.log_level, timeout_keep_alive=args.timeout_keep_alive,
        )  # fmt: skip
    else:
        uvicorn.run(
            create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
            timeout_keep_alive=args.timeout_keep_alive,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
