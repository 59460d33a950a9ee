"""Connection limits uvicorn does not have: a deadline for request headers and a cap on open connections.

A client that connects and never finishes its request headers holds a socket (and a file descriptor)
for ever, and enough of them starve the process of file descriptors; so do clients that send one request
and keep the connection open without another. :class:`GuardedH11Protocol` is uvicorn's h11 protocol with
these additions:

- a kept-alive connection idle ``keep_alive_timeout`` seconds after its last response is closed
  (the setting, whatever uvicorn was told);
- a connection whose request headers are not complete ``header_timeout`` seconds after its first byte
  (or after it opened) gets ``408`` and is closed; the body has its own deadline in the app
  (``InputGuard``);
- beyond ``max_connections`` open connections, room is made for the new one: the kept-alive connection
  idle the longest is closed (as its idle timeout would: nothing is sent, and its client reconnects),
  else the one that has waited longest for its request headers gets ``503`` with ``Retry-After`` and
  is closed; if every connection is in a request, the new one gets that answer instead.
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
    keep_alive_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout, settings.max_connections, settings.retry_after, settings.keep_alive_timeout)

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
    """uvicorn's ``H11Protocol`` with an idle timeout, a header deadline and a connection cap.

    Run uvicorn with ``http="ecgbeats.serving.connections:GuardedH11Protocol"``; the limits are the
    ``ECGBEATS_*`` settings of the environment.
    """

    _header_deadline: asyncio.TimerHandle | None = None
    _idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.limits = limits_from_env()
        # uvicorn arms its keep-alive timer with this after each response
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        opened = sum(not c.transport.is_closing() for c in self.connections)  # evicted ones are on their way out
        if opened > self.limits.max_connections and not self._make_room():
            log.warning("refused a connection: %d open, at most %d", opened, self.limits.max_connections)
            transport.write(self.limits.overloaded())
            transport.close()
            return
        self._arm()

    def _make_room(self) -> bool:
        """Close one connection doing nothing, to let a new one in: the one idle longest between requests,
        else the one that has waited longest for its request headers.

        Idle and stalled clients are the ones a cap fills up with; a fresh client (a health probe) still
        gets in, and a connection in a request is never closed for it.
        """
        others = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c is not self and not c.transport.is_closing()
        ]
        idle = [c for c in others if c._idle()]
        if idle:
            # closed as the idle timeout would close it: an idle connection may be closed at any time (RFC 9112)
            min(idle, key=lambda c: c._idle_since).timeout_keep_alive_handler()
            return True
        waiting = [c for c in others if c._header_deadline and c._between_requests()]
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
        self._idle_since = self.loop.time()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _idle(self) -> bool:
        """Kept alive after a response, with no byte of a further request yet."""
        return self.cycle is not None and self._between_requests() and self._header_deadline is None

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
