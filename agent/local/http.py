"""A small read-only HTTP/1.1 server on asyncio streams, bounded against slow and many clients.

One request per connection (`Connection: close`), which keeps the state per client to a buffer
and a timer. Bounds, each answered with a clear status rather than a hang:

- connections at once: `max_clients`; one more gets `503` at once and is closed;
- the request head: `MAX_HEAD` bytes (`431`), `MAX_HEADERS` lines; a body is refused (`413`):
  nothing here takes input beyond the URL;
- time: the head must arrive within `idle_timeout` (`408`), and the answer must be taken by the
  client within it too (a reader that stalls is cut off);
- methods: GET and HEAD (`405` with `Allow`); a bad request line is `400`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

MAX_HEAD = 8192
MAX_HEADERS = 64
REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    peer: str = ""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"status": status, "message": message}}).encode()
    return Response(status, body, headers=dict(headers or {}))


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Counters:
    served: int = 0
    refused_busy: int = 0
    timeouts: int = 0
    bad_requests: int = 0


class Server:
    def __init__(self, handler: Handler, *, max_clients: int, idle_timeout: float) -> None:
        self.handler = handler
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.active = 0
        self.counters = Counters()

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._client, host, port, limit=MAX_HEAD,
                                          backlog=self.max_clients)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        if self.active >= self.max_clients:
            self.counters.refused_busy += 1
            await self._send(writer, error_response(503, "too many clients; try again shortly",
                                                    {"Retry-After": "5"}), head_only=False)
            return
        self.active += 1
        try:
            response, head_only = await self._answer(reader, peer)
            await self._send(writer, response, head_only)
        finally:
            self.active -= 1

    async def _answer(self, reader: asyncio.StreamReader, peer: str) -> tuple[Response, bool]:
        try:
            async with asyncio.timeout(self.idle_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            self.counters.timeouts += 1
            return error_response(408, f"the request did not arrive within "
                                       f"{self.idle_timeout:g}s"), False
        except asyncio.LimitOverrunError:
            self.counters.bad_requests += 1
            return error_response(431, f"request head over {MAX_HEAD} bytes"), False
        except (asyncio.IncompleteReadError, ConnectionError):
            return error_response(400, "connection closed before the end of the request"), False
        try:
            request = parse(head, peer)
        except HttpError as exc:
            self.counters.bad_requests += 1
            return error_response(exc.status, exc.message, exc.headers), False
        try:
            response = await self.handler(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except Exception:  # the isolation boundary: a bug in a view must not stop the agent
            log.exception("local page: %s %s failed", request.method, request.path)
            response = error_response(500, "internal error (see the gateway log)")
        self.counters.served += 1
        return response, request.method == "HEAD"

    async def _send(self, writer: asyncio.StreamWriter, response: Response,
                    head_only: bool) -> None:
        headers = {"Content-Type": response.content_type,
                   "Content-Length": str(len(response.body)), "Connection": "close",
                   "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                   **response.headers}
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            writer.write(data if head_only else data + response.body)
            async with asyncio.timeout(self.idle_timeout):
                await writer.drain()
        except TimeoutError:
            self.counters.timeouts += 1
            writer.transport.abort()  # a client that does not read: drop it, do not wait
            return
        except ConnectionError:
            pass
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


def parse(head: bytes, peer: str = "") -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable request") from None
    request_line, *header_lines = text.rstrip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line; expected e.g. GET /api/v1/points HTTP/1.1")
    method, target, _ = parts
    if len(header_lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"bad header line {line[:40]!r}")
        headers[name.lower()] = value.strip()
    if method not in ("GET", "HEAD"):
        raise HttpError(405, f"{method[:16]} is not allowed: this API is read-only (GET, HEAD)",
                        {"Allow": "GET, HEAD"})
    if headers.get("transfer-encoding") or headers.get("content-length", "0") != "0":
        raise HttpError(413, "a request body is not accepted: this API is read-only")
    if not target.startswith("/"):
        raise HttpError(400, "the request target must be a path starting with /")
    split = urlsplit(target)
    query = {key: values[-1] for key, values in parse_qs(split.query).items()}
    return Request(method, unquote(split.path), query, headers, peer)
