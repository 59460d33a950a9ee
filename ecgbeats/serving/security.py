"""Access control: bearer API keys, stored only as their sha256, in two scopes.

- ``client`` keys open the classify endpoints and ``/v1/model`` (``ECGBEATS_API_KEYS_FILE`` or
  ``ECGBEATS_API_KEYS``);
- ``metrics`` keys open ``/metrics`` and the API docs (``ECGBEATS_METRICS_KEYS_FILE`` or
  ``ECGBEATS_METRICS_KEYS``), so a scraper's key cannot classify and a client's key cannot read the
  service's metrics.

``/health``, ``/ready`` and the viewer page's static files are open (``/ready`` names the served model only
to a caller with a key). A key file holds one hash per line,
``sha256:<64 hex digits>``, optionally followed by a name; ``#`` starts a comment. ``python -m
ecgbeats.serving.security`` makes a new key and prints its line. Keys are 256-bit random tokens, so a
plain sha256 (not a slow password hash) is enough to keep the file useless to a reader.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from ecgbeats.serving.settings import Settings

CLIENT = "client"
METRICS = "metrics"
OPEN_PATHS = frozenset({"/", "/health", "/ready", "/favicon.ico"})
OPEN_PREFIXES = ("/viewer", "/static/")
METRICS_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
REALM = 'Bearer realm="ecgbeats"'

_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


class KeyFileError(ValueError):
    """A key setting or key file that cannot be used; the message is one line."""


def hash_key(key: str) -> str:
    """The line a key file stores for ``key``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def parse_hashes(text: str, source: str) -> dict[str, str]:
    """``{hex digest: name}`` from a key file's text (or a comma-separated setting)."""
    hashes: dict[str, str] = {}
    for number, raw in enumerate(re.split(r"[\n,]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token, _, name = line.partition(" ")
        match = _HASH.match(token.lower())
        if match is None:
            shown = token if len(token) <= 20 else token[:12] + "…"
            raise KeyFileError(
                f"{source}, entry {number}: {shown!r} is not 'sha256:<64 hex digits>' "
                "(store the key's hash, made by `python -m ecgbeats.serving.security`, never the key)"
            )
        hashes[match.group(1)] = name.strip() or f"key {number}"
    return hashes


def load_hashes(inline: str | None, path: Path | None, setting: str) -> dict[str, str]:
    """The hashes of one scope, from the inline setting and the file together."""
    hashes = parse_hashes(inline, f"ECGBEATS_{setting}") if inline else {}
    if path is not None:
        try:
            text = path.read_text()
        except OSError as err:
            raise KeyFileError(f"ECGBEATS_{setting}_FILE: cannot read {path}: {err.strerror or err}") from None
        hashes.update(parse_hashes(text, f"ECGBEATS_{setting}_FILE {path}"))
    return hashes


@dataclass(frozen=True)
class KeyRing:
    """Who may call what. ``enabled=False`` (``ECGBEATS_AUTH=off``) opens everything."""

    enabled: bool
    client: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    metrics_public: bool = False

    def scope_of(self, path: str) -> str | None:
        """The scope a path needs, or None for an open path."""
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        if path in METRICS_PATHS:
            return None if self.metrics_public else METRICS
        return CLIENT

    def check(self, token: str) -> set[str]:
        """The scopes ``token`` opens (empty for an unknown key)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        scopes = set()
        for scope, hashes in ((CLIENT, self.client), (METRICS, self.metrics)):
            # compare against every stored hash, so the time taken does not tell which one matched
            if any(hmac.compare_digest(digest, known) for known in hashes):
                scopes.add(scope)
        return scopes

    def authenticated(self, scope: Scope) -> bool:
        """Whether the request carries a key of either scope (every request, with access control off)."""
        if not self.enabled:
            return True
        token = _bearer(scope)
        return bool(token and self.check(token))


def key_ring(settings: Settings) -> KeyRing:
    """The keys ``settings`` name, read and checked (a one-line :class:`KeyFileError` if unusable)."""
    if settings.auth == "off":
        return KeyRing(enabled=False)
    if not (settings.api_keys or settings.api_keys_file):
        raise KeyFileError(
            "ECGBEATS_AUTH is 'keys' but no client keys are given: set ECGBEATS_API_KEYS_FILE (or "
            "ECGBEATS_API_KEYS), or ECGBEATS_AUTH=off for local use"
        )
    client = load_hashes(settings.api_keys, settings.api_keys_file, "API_KEYS")
    if not client:
        raise KeyFileError("ECGBEATS_API_KEYS_FILE: it holds no key hashes; add one, or set ECGBEATS_AUTH=off")
    metrics = load_hashes(settings.metrics_keys, settings.metrics_keys_file, "METRICS_KEYS")
    return KeyRing(enabled=True, client=client, metrics=metrics, metrics_public=settings.metrics_public)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else ""
    return None


class AccessGuard:
    """Pure ASGI middleware: 401 without a known key, 403 with a key of the other scope.

    It runs before the body is read, so an unauthenticated client costs the service no parsing,
    no scoring and no drift observation.
    """

    def __init__(self, app: ASGIApp, keys: KeyRing, on_refusal: Callable[[str, str], None]) -> None:
        self.app = app
        self.keys = keys
        self.on_refusal = on_refusal  # (path, reason): counted as rejected input

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        needed = self.keys.scope_of(scope.get("path", ""))
        if needed is None or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await self._refuse(send, scope, 401, REALM, "an API key is required: send 'Authorization: Bearer <key>'")
            return
        granted = self.keys.check(token) if token else set()
        if not granted:
            await self._refuse(
                send, scope, 401, f'{REALM}, error="invalid_token"', "the API key is not valid for this service"
            )
            return
        if needed not in granted:
            await self._refuse(
                send, scope, 403, f'{REALM}, error="insufficient_scope", scope="{needed}"',
                f"this key does not open {needed} endpoints",
            )  # fmt: skip
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, scope: Scope, status: int, challenge: str, message: str) -> None:
        reason = "unauthorized" if status == 401 else "forbidden"
        self.on_refusal(scope.get("path", ""), reason)
        error = {"field": "authorization", "message": message, "type": reason}
        body = json.dumps({"error": reason, "message": message, "errors": [error]}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecgbeats.serving.security",
        description="Make a new API key: prints the key (give it to the client, once) to stdout and the line "
        "for the key file to stderr.",
    )
    parser.add_argument("--name", default="", help="a name stored beside the hash (who holds the key)")
    args = parser.parse_args(argv)
    key = secrets.token_urlsafe(32)
    print(key)
    print(f"{hash_key(key)} {args.name}".rstrip(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
