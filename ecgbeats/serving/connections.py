"""Connection limits uvicorn does not have: a deadline for request headers and a cap on open connections.

uvicorn closes idle keep-alive connections, but a client that connects and never finishes its request
headers holds a socket (and a file descriptor) for ever, and enough of them starve the process of file
descriptors. :class:`GuardedH11Protocol` is uvicorn's h11 protocol with two additions:

- a connection whose request headers are not complete ``header_timeout`` seconds after its first byte
  (or after it opened) gets ``408`` and is closed; the body has its own deadline in the app
  (``InputGuard``);
- beyond ``max_connections`` open connections, the one that has waited longest for its request headers
  gets ``503`` with ``Retry-After`` and is closed to make room; if every connection is in a request,
  the new one gets that answer instead.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol

from ecgbeats.serving.settings import Settings, load_settings

log = logging.getLogger(__name__)


def raw_response(status: int, reason: str, error: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, in the service's error shape."""
    body = json.dumps(
        {"error": error, "message": message, "errors": [{"field": "connection", "message": message, "type": error}]}
    ).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int
    retry_after: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout, settings.max_connections, settings.retry_after)

    def overloaded(self) -> bytes:
        return raw_response(
            503, "Service Unavailable", "overloaded",
            f"the service has {self.max_connections} open connections, the most it keeps; retry later",
            self.retry_after,
        )  # fmt: skip

    def too_slow(self) -> bytes:
        return raw_response(
            408, "Request Timeout", "request_timeout", f"the request headers took over {self.header_timeout:g} s"
        )


@functools.cache
def limits_from_env() -> ConnectionLimits:
    # each uvicorn worker process imports this protocol by name and reads the same environment
    return ConnectionLimits.from_settings(load_settings())


class GuardedH11Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with a header deadline and a connection cap.

    Run uvicorn with ``http="ecgbeats.serving.connections:GuardedH11Protocol"``; the limits are the
    ``ECGBEATS_*`` settings of the environment.
    """

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.limits = limits_from_env()
        if len(self.connections) > self.limits.max_connections and not self._evict_slowest():
            log.warning("refused a connection: %d open, at most %d", len(self.connections), self.limits.max_connections)
            transport.write(self.limits.overloaded())
            transport.close()
            return
        self._arm()

    def _evict_slowest(self) -> bool:
        """Close the connection that has waited longest for its request headers, to make room.

        Stalled clients are the ones a cap fills up with; a fresh client (a health probe) still gets in.
        """
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c is not self and c._header_deadline and c._between_requests()
        ]
        if not waiting:
            return False  # every other connection is in a request: refuse the new one
        oldest = min(waiting, key=lambda c: c._waiting_since)
        oldest._disarm()
        oldest.transport.write(self.limits.overloaded())
        oldest.transport.close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and self._between_requests() and not self.transport.is_closing():
            self._arm()  # the first byte of a further request on a kept-alive connection
        super().data_received(data)
        if not self._between_requests():
            self._disarm()  # the headers are in: the app's body deadline takes over

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._waiting_since = self.loop.time()
        self._header_deadline = self.loop.call_later(self.limits.header_timeout, self._on_header_deadline)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _on_header_deadline(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or not self._between_requests():
            return  # the headers arrived: the app's body deadline takes over
        self.transport.write(self.limits.too_slow())
        self.transport.close()
