"""A short-lived cache of whole public availability answers at the edge (docs/adr/0015).

Many customers looking at the same calendar send the same `availability(...)` operation with the same
variables; for `ttl_s` (default 1 s) the edge answers repeats with the response body it sent last, without
GraphQL execution or a service call. Only that answer is cached, and only when nothing else could change it:
a POST of JSON with exactly `query`, `variables` and `operationName` (no `extensions`, no URL query), no
`Authorization` or `Cookie` header, and an operation that selects nothing but one `availability` field. The
key is the operation text, the operation name and the variables. Answers with errors (unknown business,
bad input, a service down, rate limited) are never stored. A hit still counts against the caller's per-IP
limit for public operations, exactly as the resolver would. Identical requests that arrive while the answer
is being fetched wait for that fetch rather than all executing.

An answer can be up to `ttl_s` older than the booking-service's: a slot booked meanwhile may still be shown
as free. The booking itself is never served from here (BookAppointment re-checks the slot), so a stale
answer costs a customer at most a `slot_taken` error, never a double booking.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .rate_limit import SlidingWindow

CACHED_FIELD = "availability"
# Upper bound on the bytes of all stored bodies; a 62-day calendar of a large business is ~1 MB.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
_BODY_KEYS = frozenset({"query", "variables", "operationName"})
_SKIP_HEADERS = (b"authorization", b"cookie")
# RFC 9211 Cache-Status, so a client (or a test) can tell a reused answer from a fresh one.
_HIT = (b"cache-status", b"apptremind-edge; hit")
_MISS = (b"cache-status", b"apptremind-edge; fwd=miss")


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    body: bytes
    content_type: bytes


@functools.lru_cache(maxsize=256)
def _only_availability(query: str) -> bool:
    """True when the text is one query operation selecting exactly one `availability` field (any alias),
    with no directives or fragments that could make the answer depend on anything but the variables."""
    try:
        document = parse(query)
    except GraphQLError:
        return False
    if len(document.definitions) != 1:
        return False
    operation = document.definitions[0]
    if not isinstance(operation, OperationDefinitionNode) or operation.operation != OperationType.QUERY:
        return False
    if operation.directives:
        return False
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return False
    field = selections[0]
    return field.name.value == CACHED_FIELD and not field.directives


def cache_key(body: bytes) -> tuple[str, str, str] | None:
    """(operation, operation name, variables as canonical JSON), or None when the request is not the
    public availability operation alone."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not payload.keys() <= _BODY_KEYS:
        return None
    query, variables, name = payload.get("query"), payload.get("variables"), payload.get("operationName")
    if (
        not isinstance(query, str)
        or not isinstance(variables, dict | None)
        or not isinstance(name, str | None)
    ):
        return None
    if not _only_availability(query):
        return None
    return query, name or "", json.dumps(variables or {}, sort_keys=True, separators=(",", ":"))


class AvailabilityMicroCache:
    """ASGI wrapper around the GraphQL app; `ttl_s <= 0` passes every request straight through."""

    def __init__(
        self,
        app: ASGIApp,
        ttl_s: float,
        public_per_ip: SlidingWindow,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.ttl_s = ttl_s
        self._public_per_ip = public_per_ip
        self._max_bytes = max_bytes
        self.clock = clock
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._bytes = 0
        # Keys being fetched right now: identical requests meanwhile wait for that answer instead of all
        # executing (after each expiry a busy calendar would otherwise send one request per waiting client).
        self._inflight: dict[tuple[str, str, str], asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._eligible(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # The client left.
        replay = _replayer(body, receive)
        key = cache_key(body)
        if key is None:
            await self.app(scope, replay, send)
            return
        if await self._answered(scope, send, key):
            return
        fetching = self._inflight.get(key)
        if fetching is not None:
            await fetching.wait()
            if await self._answered(scope, send, key):
                return
            await self.app(scope, replay, send)  # The answer was not stored (an error): execute it.
            return
        self._inflight[key] = done = asyncio.Event()
        try:
            await self._forward_and_store(scope, replay, send, key)
        finally:
            del self._inflight[key]
            done.set()

    async def _answered(self, scope: Scope, send: Send, key: tuple[str, str, str]) -> bool:
        """Sends the stored answer if there is a fresh one and the caller is within the per-IP limit."""
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self.clock():
            return False
        client = scope.get("client")
        # Over the limit: the resolver refuses it with its RATE_LIMITED error (hit() records nothing when it
        # refuses, so the attempt is not counted twice).
        if self._public_per_ip.hit(client[0] if client else "unknown") is not None:
            return False
        await _send_body(send, entry)
        return True

    def _eligible(self, scope: Scope) -> bool:
        if self.ttl_s <= 0 or scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            return False
        json_body = False
        for name, value in scope["headers"]:
            if name in _SKIP_HEADERS:
                return False
            if name == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        return json_body

    async def _forward_and_store(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str, str]
    ) -> None:
        status = 0
        content_type = b""
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                message = {**message, "headers": [*headers, _MISS]} if status == 200 else message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        started = self.clock()
        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        # Only complete answers without errors; the check on the bytes can only err towards not storing.
        if status == 200 and body.startswith(b'{"data"') and b'"errors"' not in body:
            # The TTL counts from when the answer was asked for, so no answer outlives it.
            self._store(key, _Entry(started + self.ttl_s, body, content_type))

    def _store(self, key: tuple[str, str, str], entry: _Entry) -> None:
        if len(entry.body) > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        if self._bytes + len(entry.body) > self._max_bytes:
            now = self.clock()
            for stale in [k for k, e in self._entries.items() if e.expires <= now]:
                self._bytes -= len(self._entries.pop(stale).body)
            # Still full: drop the oldest (insertion order), they expire first.
            while self._entries and self._bytes + len(entry.body) > self._max_bytes:
                self._bytes -= len(self._entries.pop(next(iter(self._entries))).body)
        self._entries[key] = entry
        self._bytes += len(entry.body)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replayer(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_body(send: Send, entry: _Entry) -> None:
    headers: list[tuple[bytes, bytes]] = [(b"content-length", str(len(entry.body)).encode()), _HIT]
    if entry.content_type:
        headers.append((b"content-type", entry.content_type))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": entry.body})
