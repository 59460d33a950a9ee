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
  is closed. Room is made only for a new connection whose first bytes (read within ``FRESH_SECONDS``;
  ``PROBATION`` connections at most wait for them) are a complete request head; if none can make room,
  a request answered at once (a GET or HEAD without a body, such as a health probe) gets in even so.
  Any other new connection gets the ``503``. A connection opened under ``FRESH_SECONDS`` ago that has
  sent nothing yet, or whose complete request head is waiting to be read, is never closed for another.

Under a flood of clients that stall and re-dial as soon as they are closed, this keeps ``/health`` and
``/ready`` answering: the flood's new connections are refused instead of evicting each other, a probe
is neither closed before its request is read nor refused for the flood's stalled connections, and
making room costs the same whatever the number of connections.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import math
import socket
import weakref
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from ecgbeats.serving.settings import Settings, load_settings

log = logging.getLogger(__name__)

PEEK_BYTES = 16 * 1024  # h11's limit on a request head
# a new connection that has sent nothing is not closed to make room for another this long after it opened:
# the time a client needs to send its request once connected (a probe, say), far less than any stall
FRESH_SECONDS = 0.2
SCAN = 64  # connections looked at, oldest first, to find one to close when making room
# connections beyond the cap waiting for their first bytes (a probe's request), at most; when more come, the
# one waiting longest is refused: a probe's request follows its connection within milliseconds, and is read
# before this many more connections that have sent nothing are accepted
PROBATION = 256
WARN_EVERY = 10.0  # seconds between two warnings about refused connections


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


class _Registry:
    """The guarded connections of one server, kept in the orders eviction needs, so making room costs
    the same with ten connections open as with ten thousand: a reconnecting flood makes room hundreds
    of times a second, and a scan of every connection each time held the event loop."""

    def __init__(self) -> None:
        self.open: set[GuardedH11Protocol] = set()  # counted against the cap
        self.idle: dict[GuardedH11Protocol, None] = {}  # kept alive between requests, longest idle first
        self.waiting: dict[GuardedH11Protocol, None] = {}  # waiting for request headers, longest first
        self.on_probation: dict[GuardedH11Protocol, None] = {}  # beyond the cap until their first bytes, oldest first
        self.refused = 0  # connections refused since the last warning
        self.warned_at = -math.inf

    def forget(self, connection: GuardedH11Protocol) -> None:
        self.open.discard(connection)
        self.idle.pop(connection, None)
        self.waiting.pop(connection, None)
        self.on_probation.pop(connection, None)

    def count_refusal(self, now: float) -> None:
        """One warning every ``WARN_EVERY`` seconds at most: a flood refused thousands of times a second
        would otherwise fill the log."""
        self.refused += 1
        if now - self.warned_at >= WARN_EVERY:
            log.warning(
                "refused %d connection(s) beyond the cap of %d open connections since the last such warning "
                "(one every %g s at most)", self.refused, limits_from_env().max_connections, WARN_EVERY,
            )  # fmt: skip
            self.refused = 0
            self.warned_at = now


_registries: weakref.WeakKeyDictionary[ServerState, _Registry] = weakref.WeakKeyDictionary()


def _registry(state: ServerState) -> _Registry:
    registry = _registries.get(state)
    if registry is None:
        registry = _registries[state] = _Registry()
    return registry


def unread(transport: asyncio.BaseTransport, keep: bool = True) -> bytes:
    """The bytes the client has sent that the server has not read yet (up to ``PEEK_BYTES``), left unread
    unless ``keep`` is false."""
    raw = transport.get_extra_info("socket")
    if raw is None:
        return b""
    sock = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.fileno())
    try:
        return sock.recv(PEEK_BYTES, (socket.MSG_PEEK if keep else 0) | socket.MSG_DONTWAIT)
    except OSError:  # nothing sent yet (EAGAIN), or the connection is gone
        return b""
    finally:
        sock.detach()  # the transport owns the descriptor


def request_head(data: bytes) -> tuple[bytes, dict[bytes, bytes]] | None:
    """The method and headers of the request whose head ``data`` starts with, if the head is complete."""
    head, found, _ = data.partition(b"\r\n\r\n")
    if not found:
        return None
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].split(b" ", 1)[0].upper(), headers


def bodiless(data: bytes) -> bool:
    """Whether ``data`` holds a complete GET or HEAD request without a body (a probe, say): it is
    answered as soon as it is read and holds its connection no longer."""
    parsed = request_head(data)
    if parsed is None:
        return False
    method, headers = parsed
    return (
        method in (b"GET", b"HEAD")
        and b"transfer-encoding" not in headers
        and headers.get(b"content-length", b"0") == b"0"
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with an idle timeout, a header deadline and a connection cap.

    Run uvicorn with ``http="ecgbeats.serving.connections:GuardedH11Protocol"``; the limits are the
    ``ECGBEATS_*`` settings of the environment.
    """

    _header_deadline: asyncio.TimerHandle | None = None
    _probation: asyncio.TimerHandle | None = None
    _heard = False  # a byte has been read from the client

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.limits = limits_from_env()
        # uvicorn arms its keep-alive timer with this after each response
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self.registry = _registry(self.server_state)
        self._opened = self.loop.time()
        self.registry.open.add(self)
        if len(self.registry.open) > self.limits.max_connections:
            first = unread(transport)
            if not first:
                # its request may be a moment behind the connection: judged on its first bytes
                if len(self.registry.on_probation) >= PROBATION:
                    next(iter(self.registry.on_probation))._refuse()
                self.registry.on_probation[self] = None
                self._probation = self.loop.call_later(FRESH_SECONDS, self._refuse)
                return
            if not self._let_in(first):
                return
        self._arm()

    def _let_in(self, first: bytes) -> bool:
        """Whether a connection beyond the cap whose first bytes are ``first`` is let in (else it is refused).

        Only a client with a complete request head makes room, so a flood of clients that stall from their
        first byte is refused at once instead of evicting the stalled connections already in, over and over;
        a request answered at once (a health probe) gets in even when no connection can make room.
        """
        if request_head(first) is not None and (self._make_room() or bodiless(first)):
            return True
        self._refuse()
        return False

    def _refuse(self) -> None:
        self._end_probation()
        if not self.transport.is_closing():
            self.registry.count_refusal(self.loop.time())
            unread(self.transport, keep=False)  # closed with unread bytes, the socket would reset, not answer
            self._close(self.limits.overloaded())

    def _end_probation(self) -> None:
        if self._probation is not None:
            self._probation.cancel()
            self._probation = None
        self.registry.on_probation.pop(self, None)

    def _make_room(self) -> bool:
        """Close one connection doing nothing, to let a new one in: the one idle longest between requests,
        else the one that has waited longest for its request headers.

        Idle and stalled clients are the ones a cap fills up with; a fresh client (a health probe) still
        gets in. Never closed for it: a connection in a request; one whose complete request head has
        arrived but is not read yet; one opened under ``FRESH_SECONDS`` ago that has sent nothing yet.
        Under a flood of new connections the event loop accepts hundreds at once, and a probe among
        them would otherwise be closed before its request could be read.
        """
        now = self.loop.time()
        for queue in (self.registry.idle, self.registry.waiting):
            for victim in list(itertools.islice(queue, SCAN)):
                if victim.transport.is_closing():
                    del queue[victim]
                    continue
                pending = unread(victim.transport)
                if request_head(pending) is not None:
                    del queue[victim]  # about to be in a request
                    continue
                if not pending and not victim._heard and now - victim._opened < FRESH_SECONDS:
                    continue  # it has not had the time to send its request
                del queue[victim]
                if queue is self.registry.idle:
                    # closed as the idle timeout would close it: an idle connection may be closed at any
                    # time (RFC 9112), and its client reconnects
                    victim.timeout_keep_alive_handler()
                else:
                    victim._disarm()
                    victim._close(self.limits.overloaded())
                return True
        return False

    def _close(self, answer: bytes) -> None:
        self.transport.write(answer)
        self.transport.close()
        self.registry.forget(self)  # no longer counted, though the socket closes a moment later

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._probation is not None:
            self._end_probation()
            if len(self.registry.open) > self.limits.max_connections and not self._let_in(data):
                return
        if self._header_deadline is None and self._between_requests() and not self.transport.is_closing():
            self._arm()  # the first byte of a further request on a kept-alive connection
        super().data_received(data)
        if not self._between_requests():
            self._disarm()  # the headers are in: the app's body deadline takes over

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()
        if self._idle() and not self.transport.is_closing():
            self.registry.idle[self] = None

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self.registry.forget(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_probation()
        self._disarm()
        self.registry.forget(self)
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _idle(self) -> bool:
        """Kept alive after a response, with no byte of a further request yet."""
        return self.cycle is not None and self._between_requests() and self._header_deadline is None

    def _arm(self) -> None:
        self._disarm()
        self.registry.idle.pop(self, None)
        self.registry.waiting[self] = None
        self._header_deadline = self.loop.call_later(self.limits.header_timeout, self._on_header_deadline)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        self.registry.waiting.pop(self, None)

    def _on_header_deadline(self) -> None:
        self._header_deadline = None
        self.registry.waiting.pop(self, None)
        if self.transport.is_closing() or not self._between_requests():
            return  # the headers arrived: the app's body deadline takes over
        self._close(self.limits.too_slow())
