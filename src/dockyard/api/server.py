"""The Docker Engine API server: asyncio for the sockets, h11 for HTTP/1.1.

One coroutine serves each connection (``Server.handle_connection``). h11
turns the received bytes into a ``Request``, whose body (chunked or not) is
read in full into a spooled temporary file. The route's handler runs in a
thread because the engine blocks, and the server sends what it returns:

- ``Response``: a complete body with a Content-Length;
- ``Stream``: a chunked body produced by a blocking generator or writer in a
  thread (pull progress, logs, stats, exports, wait);
- ``Hijack``: the connection leaves HTTP (attach, exec start). The server
  sends the handshake itself (``101 UPGRADED`` when the client asked for
  ``Upgrade: tcp``, else ``200 OK``), hands a blocking duplicate of the
  socket to the handler's ``run`` in a thread and closes the asyncio
  transport, whose socket no longer matters.

Blocking work runs in daemon threads (``run_blocking``), not in a bounded
pool: an idle thread from an earlier call is reused, and a new one starts
when none is idle. A call such as ``wait`` or a followed log can block for as
long as a container runs, and must neither starve other requests nor keep
the process alive at exit.

With an idle timeout the server stops once no request has been in progress
for that many seconds; idle keep-alive connections do not count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable

import h11

from dockyard import __version__
from dockyard.api import errors as api_errors
from dockyard.api import versions
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.engine import Engine

log = logging.getLogger(__name__)
access_log = logging.getLogger("dockyard.api.access")

READ_SIZE = 65536
# Request bodies up to this size stay in memory; larger ones (image loads, archives) go to a temporary file.
BODY_MEMORY_LIMIT = 8 * 1024 * 1024
# Chunks a stream's producer thread may run ahead of a slow client.
STREAM_QUEUE_SIZE = 16
SERVER_HEADER = f"dockyard/{__version__} (linux)"


# -- requests -----------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request, with the API version prefix split off its path."""

    method: str
    target: str                      # as received, with the query string
    path: str                        # without the version prefix and the query string
    version: tuple[int, int]
    query: dict[str, list[str]]
    headers: dict[str, str]          # lower-case names; repeated headers joined with ", "
    body: BinaryIO
    params: dict[str, str] = field(default_factory=dict)   # from the route's path pattern
    status: int = 0                  # of the response sent, for the access log

    def arg(self, name: str, default: str | None = None) -> str | None:
        """Return the last value of a query parameter, or ``default``."""
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """Return a boolean query parameter: Docker treats "", "0", "false" and "no" as false."""
        value = self.arg(name)
        if value is None:
            return default
        return value.strip().lower() not in ("", "0", "false", "no")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for query parameter {name}: {value!r} is not an integer") from None

    def json(self, default: Any = None) -> Any:
        """Return the JSON body; an empty body gives ``default`` (an empty dict unless given)."""
        self.body.seek(0)
        data = self.body.read()
        if not data.strip():
            return {} if default is None else default
        try:
            return json.loads(data)
        except ValueError as error:
            raise InvalidArgument(f"invalid JSON in the request body: {error}") from None

    def filters(self) -> dict[str, list[str]]:
        """Return the ``filters`` parameter as ``{key: [values]}``.

        Docker accepts both ``{"key": ["value"]}`` and the older
        ``{"key": {"value": true}}``.
        """
        text = self.arg("filters")
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InvalidArgument(f"invalid filters {text!r}: {error}") from None
        if not isinstance(data, dict):
            raise InvalidArgument(f"invalid filters {text!r}: expected a JSON object")
        result: dict[str, list[str]] = {}
        for key, values in data.items():
            if isinstance(values, dict):
                result[key] = [value for value, enabled in values.items() if enabled]
            elif isinstance(values, list):
                result[key] = [str(value) for value in values]
            else:
                result[key] = [str(values)]
        return result


def parse_target(target: str) -> tuple[str, dict[str, list[str]]]:
    """Split a request target into its decoded path and its query parameters."""
    parts = urllib.parse.urlsplit(target)
    path = urllib.parse.unquote(parts.path) or "/"
    return path, urllib.parse.parse_qs(parts.query, keep_blank_values=True)


# -- what handlers return -------------------------------------------------------------


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    # Compact separators, as dockerd writes JSON: smaller bodies, and a little faster to encode.
    return Response(status, json.dumps(data, separators=(",", ":")).encode() + b"\n", "application/json",
                    headers or [])


def empty_response(status: int = 204) -> Response:
    return Response(status, b"", None)


@dataclass
class Stream:
    """A chunked response whose body a blocking producer creates in a thread.

    Give either ``chunks`` (an iterable of bytes) or ``write`` (a function
    that writes the body to the file object it is given). Unless
    ``headers_first``, the server waits for the first chunk before it sends
    the headers, so an error raised before any output becomes an ordinary
    error response with its status.
    """

    chunks: Iterable[bytes] | None = None
    write: Callable[[BinaryIO], None] | None = None
    content_type: str = "application/json"
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    headers_first: bool = False


@dataclass
class Hijack:
    """A response that turns the connection into a raw byte stream.

    ``run(sock, received)`` runs in a thread after the handshake was sent.
    It gets a blocking socket and the bytes the client sent after its
    request. The server closes the socket when ``run`` returns.
    """

    run: Callable[[socket.socket, bytes], None]
    content_type: str = "application/vnd.docker.raw-stream"
    # A complete response head to send instead of ``handshake``'s, and its
    # status, for a protocol with its own handshake (WebSocket).
    head: bytes | None = None
    status: int = 0


Handler = Callable[["Api", Request], "Response | Stream | Hijack"]


def runs_inline(when: Callable[[Request], bool] = lambda request: True) -> Callable[[Handler], Handler]:
    """Mark a route handler to run on the event loop's thread for the requests where ``when`` is true.

    Only for handlers that finish in well under a millisecond and block on
    nothing but a read of the state database, because every other connection
    waits while one runs. In exchange it skips the two hand-offs between
    threads that a worker call costs. On a 2-CPU virtual machine those
    hand-offs took longer than listing 20 containers.
    """
    def mark(handler: Handler) -> Handler:
        handler.inline_when = when  # type: ignore[attr-defined]
        return handler

    return mark


class Api:
    """The context of every route handler: the engine and the server's own state."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.started = time.time()
        # Started exec sessions of this process, by exec ID, for /exec/{id}/resize.
        self.exec_sessions: dict[str, Any] = {}
        # Terminal sizes requested for execs whose session has not started yet, by exec ID.
        self.exec_pending_sizes: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()


# -- blocking calls -------------------------------------------------------------------


class _Workers:
    """Daemon threads for blocking calls, started on demand and reused while idle.

    A call never waits for a free thread: when none is idle, a new one starts,
    so a call that blocks for a container's lifetime (wait, attach, a followed
    log) cannot starve the others. Reuse matters for speed because each
    thread keeps its own connection to the state database, with a warm page
    cache, between calls. A thread exits after ``idle_seconds`` without work.

    The counter ``_idle`` is the number of waiting threads minus the calls
    queued for them, so a call queued while ``_idle`` was positive always
    finds a thread that will take it.
    """

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, call: Callable[[], None], name: str) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._calls.put(call)
                return
        threading.Thread(target=self._work, args=(call,), daemon=True, name=name).start()

    def _work(self, call: Callable[[], None]) -> None:
        while True:
            call()
            with self._lock:
                self._idle += 1
            try:
                call = self._calls.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        return
                # A call was queued for this thread between the timeout and the lock.
                call = self._calls.get()


# Seconds a worker thread waits for another call before it exits.
WORKER_IDLE_SECONDS = 10.0
# Seconds without a request after which the server calls malloc_trim(), later
# than the idle worker threads exit, so that their SQLite connections' memory
# is freed by then. After the load of bench/api.py this lowered the RSS by
# about 2 MiB.
TRIM_AFTER_IDLE_SECONDS = WORKER_IDLE_SECONDS + 5.0
TRIM_CHECK_SECONDS = 5.0
_workers = _Workers(WORKER_IDLE_SECONDS)


def run_blocking(func: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
    """Run ``func(*args)`` in a worker thread and return a future for its result.

    The thread is an idle one from earlier calls if there is one, else a new
    daemon thread (see ``_Workers``).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(error: BaseException | None, result: Any) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def call() -> None:
        try:
            result = func(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome: tuple[BaseException | None, Any] = (error, None)
        else:
            outcome = (None, result)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            # The loop closed while the call ran because the server is exiting, so no coroutine awaits the result.
            pass

    _workers.submit(call, getattr(func, "__name__", "blocking"))
    return future


class _QueueWriter:
    """A write-only file object whose writes become chunks of a ``Stream``."""

    def __init__(self, put: Callable[[bytes], None]) -> None:
        self._put = put

    def write(self, data: bytes) -> int:
        if data:
            self._put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class StreamCancelled(Exception):
    """The client of a stream went away; raised inside the producer thread to stop it."""


# -- the handshake of a hijacked connection ---------------------------------------------------


def _reason(status: int) -> bytes:
    import http

    try:
        return http.HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b""


def common_headers() -> list[tuple[str, str]]:
    return [
        ("Api-Version", versions.text(versions.MAX_VERSION)),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
        ("Server", SERVER_HEADER),
    ]


def wants_upgrade(headers: dict[str, str]) -> bool:
    """Tell whether the client asked to switch the connection to a raw TCP stream."""
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    return "upgrade" in tokens and headers.get("upgrade", "").strip().lower() == "tcp"


def handshake(headers: dict[str, str], content_type: str) -> bytes:
    """Return the response head that starts a hijacked stream.

    A client that sent ``Connection: Upgrade`` and ``Upgrade: tcp`` gets
    ``101 UPGRADED``, as from dockerd; any other gets ``200 OK`` and the
    stream right after the head.
    """
    if wants_upgrade(headers):
        lines = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {content_type}", "Connection: Upgrade", "Upgrade: tcp"]
    else:
        lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in common_headers()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- the server ---------------------------------------------------------------------------------


class Server:
    """Serves the routes of ``dockyard.api.routes`` for one engine."""

    def __init__(self, engine: "Engine", idle_timeout: float = 0) -> None:
        from dockyard.api import routes

        self.api = Api(engine)
        self.router = routes.Router(routes.ROUTES)
        self.idle_timeout = idle_timeout
        self.active = 0
        self.last_activity = time.monotonic()
        self._stopped: asyncio.Event | None = None

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def serve(self, servers: list[asyncio.AbstractServer]) -> None:
        """Serve until ``stop`` is called or the idle timeout passes."""
        self._stopped = asyncio.Event()
        watchdog = asyncio.create_task(self._watch_idle()) if self.idle_timeout > 0 else None
        trimmer = asyncio.create_task(self._trim_when_idle())
        try:
            await self._stopped.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            trimmer.cancel()
            for server in servers:
                server.close()

    async def _trim_when_idle(self) -> None:
        """Return freed heap memory to the kernel once per idle period of ``TRIM_AFTER_IDLE_SECONDS``."""
        trim = malloc_trim_function()
        if trim is None:
            return
        trimmed_at = 0.0
        while True:
            await asyncio.sleep(TRIM_CHECK_SECONDS)
            now = time.monotonic()
            if self.active == 0 and now - self.last_activity >= TRIM_AFTER_IDLE_SECONDS \
                    and trimmed_at < self.last_activity:
                trim(0)
                trimmed_at = now
                log.debug("idle for %.0f s: returned freed heap memory to the kernel", now - self.last_activity)

    async def _watch_idle(self) -> None:
        interval = min(1.0, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            if self.active == 0 and time.monotonic() - self.last_activity >= self.idle_timeout:
                log.info("no request for %g s: stopping", self.idle_timeout)
                self.stop()
                return

    # -- one connection ----------------------------------------------------------------

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        hijacked = False
        try:
            while True:
                request = await self._read_request(connection, reader, writer)
                if request is None:
                    break
                self.active += 1
                started = time.monotonic()
                try:
                    outcome = await self._dispatch(request)
                    if isinstance(outcome, Hijack):
                        request.status = outcome.status or (101 if wants_upgrade(request.headers) else 200)
                        hijacked = True
                        await self._hijack(connection, writer, request, outcome)
                        return
                    await self._send(connection, reader, writer, request, outcome)
                finally:
                    request.body.close()
                    self.active -= 1
                    self.last_activity = time.monotonic()
                    access_log.info('"%s %s" %d %.3fs', request.method, request.target, request.status,
                                    time.monotonic() - started)
                if connection.our_state is h11.MUST_CLOSE or connection.their_state is h11.MUST_CLOSE:
                    break
                connection.start_next_cycle()
        except h11.RemoteProtocolError as error:
            log.info("bad HTTP request, closing the connection: %s", error)
            await self._send_protocol_error(connection, writer, error)
        except (ConnectionError, BrokenPipeError) as error:
            log.debug("the client closed the connection: %s", error)
        finally:
            if not hijacked:
                writer.close()

    async def _read_request(self, connection: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> Request | None:
        head: h11.Request | None = None
        body: BinaryIO = tempfile.SpooledTemporaryFile(max_size=BODY_MEMORY_LIMIT)
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                if head is not None and connection.client_is_waiting_for_100_continue:
                    writer.write(connection.send(h11.InformationalResponse(status_code=100, headers=[])))
                data = await reader.read(READ_SIZE)
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body.write(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                body.close()
                return None
        assert head is not None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        target = head.target.decode("latin-1")
        path, query = parse_target(target)
        body.seek(0)
        return Request(head.method.decode("ascii"), target, path, versions.MAX_VERSION, query, headers, body)

    async def _dispatch(self, request: Request) -> "Response | Stream | Hijack":
        try:
            request.version, request.path = versions.split_version(request.path)
            handler, request.params = self.router.match(request.method, request.path)
            inline = getattr(handler, "inline_when", None)
            if inline is not None and inline(request):
                return handler(self.api, request)
            return await run_blocking(handler, self.api, request)
        except Exception as error:  # noqa: BLE001 - every failure becomes an error response
            return self.error_response(request, error)

    def error_response(self, request: Request, error: BaseException) -> Response:
        status = api_errors.status_for(error)
        if isinstance(error, DockyardError):
            log.info("%s %s failed with %d: %s", request.method, request.path, status, error)
        else:
            log.error("%s %s failed with an unexpected error", request.method, request.path, exc_info=error)
        return Response(status, api_errors.body_for(error), "application/json")

    def _head(self, request: Request, status: int, content_type: str | None,
              extra: list[tuple[str, str]], length: int | None) -> h11.Response:
        headers = common_headers() + list(extra)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        if length is not None:
            headers.append(("Content-Length", str(length)))
        request.status = status
        return h11.Response(status_code=status, headers=headers, reason=_reason(status))

    async def _send(self, connection: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: Request, outcome: "Response | Stream") -> int:
        if isinstance(outcome, Stream):
            return await self._send_stream(connection, reader, writer, request, outcome)
        # One write, so the response goes out in one send() and wakes the client once.
        parts = [connection.send(self._head(request, outcome.status, outcome.content_type, outcome.headers,
                                            len(outcome.body)))]
        if outcome.body and request.method != "HEAD":
            parts.append(connection.send(h11.Data(data=outcome.body)))
        parts.append(connection.send(h11.EndOfMessage()))
        writer.write(b"".join(part for part in parts if part is not None))
        await writer.drain()
        return outcome.status

    async def _send_stream(self, connection: h11.Connection, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter, request: Request, stream: Stream) -> int:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(STREAM_QUEUE_SIZE)
        cancelled = threading.Event()

        def put(kind: str, value: Any) -> None:
            if cancelled.is_set() and kind == "data":
                raise StreamCancelled()
            operation = queue.put((kind, value))
            try:
                future = asyncio.run_coroutine_threadsafe(operation, loop)
            except RuntimeError:
                # The event loop closed because the server is exiting, so no coroutine reads this stream.
                operation.close()
                return
            while True:
                try:
                    future.result(timeout=1.0)
                    return
                except TimeoutError:
                    if loop.is_closed():
                        return

        def produce() -> None:
            chunks: Iterable[bytes] | None = stream.chunks
            try:
                if stream.write is not None:
                    stream.write(_QueueWriter(lambda data: put("data", data)))  # type: ignore[arg-type]
                else:
                    assert chunks is not None
                    for chunk in chunks:
                        if cancelled.is_set():
                            raise StreamCancelled()
                        if chunk:
                            put("data", chunk)
            except StreamCancelled:
                pass
            except BaseException as error:  # noqa: BLE001 - reported by the coroutine
                put("error", error)
                return
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            put("end", None)

        async def drain_queue() -> None:
            # Unblocks a producer waiting on a full queue after the client left.
            while True:
                kind, _ = await queue.get()
                if kind != "data":
                    return

        threading.Thread(target=produce, daemon=True, name="stream").start()
        pending: tuple[str, Any] | None = None
        if not stream.headers_first:
            pending = await queue.get()
            if pending[0] == "error":
                response = self.error_response(request, pending[1])
                return await self._send(connection, reader, writer, request, response)
        writer.write(connection.send(self._head(request, stream.status, stream.content_type, stream.headers, None)))
        # Reading while the stream runs notices a client that left even when no chunk is due.
        # Clients send nothing else before the response ends, but anything they do send is kept for h11.
        client_read = asyncio.ensure_future(reader.read(READ_SIZE))
        try:
            await writer.drain()
            while True:
                if pending is None:
                    next_item = asyncio.ensure_future(queue.get())
                    while not next_item.done():
                        await asyncio.wait({next_item, client_read}, return_when=asyncio.FIRST_COMPLETED)
                        if client_read.done():
                            received = client_read.result()
                            if not received:
                                next_item.cancel()
                                raise ConnectionResetError("the client closed the connection during a stream")
                            connection.receive_data(received)
                            client_read = asyncio.ensure_future(reader.read(READ_SIZE))
                    pending = next_item.result()
                kind, value = pending
                pending = None
                if kind == "data":
                    writer.write(connection.send(h11.Data(data=value)))
                    await writer.drain()
                    continue
                if kind == "error":
                    status = api_errors.status_for(value)
                    log.warning("%s %s failed after its response began (%d): %s", request.method, request.path,
                                status, value, exc_info=value if status == api_errors.INTERNAL_ERROR else None)
                break
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
        except (ConnectionError, BrokenPipeError):
            cancelled.set()
            asyncio.create_task(drain_queue())
            raise
        finally:
            await self._finish_read(connection, client_read)
        return stream.status

    @staticmethod
    async def _finish_read(connection: h11.Connection, client_read: "asyncio.Future[bytes]") -> None:
        """Stop the read that watched for the client leaving; what it read (if anything) goes to h11."""
        client_read.cancel()
        try:
            received = await client_read
        except (asyncio.CancelledError, ConnectionError):
            return
        if received and connection.their_state is not h11.CLOSED:
            connection.receive_data(received)

    async def _hijack(self, connection: h11.Connection, writer: asyncio.StreamWriter, request: Request,
                      hijack: Hijack) -> None:
        received, _ = connection.trailing_data
        transport_socket = writer.get_extra_info("socket")
        writer.transport.pause_reading()
        raw = socket.socket(fileno=os.dup(transport_socket.fileno()))
        raw.setblocking(True)
        # The transport's own descriptor closes here; the connection lives on in the duplicate.
        writer.transport.abort()

        def run() -> None:
            try:
                raw.sendall(hijack.head if hijack.head is not None else handshake(request.headers, hijack.content_type))
                hijack.run(raw, bytes(received))
            except OSError as error:
                log.debug("hijacked connection for %s ended: %s", request.path, error)
            except Exception:  # noqa: BLE001 - the connection has no other way to report it
                log.exception("hijacked connection for %s failed", request.path)
            finally:
                raw.close()

        await run_blocking(run)

    async def _send_protocol_error(self, connection: h11.Connection, writer: asyncio.StreamWriter,
                                   error: h11.RemoteProtocolError) -> None:
        if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = api_errors.body_for(error)
        try:
            writer.write(connection.send(h11.Response(status_code=error.error_status_hint, reason=_reason(error.error_status_hint), headers=[
                *common_headers(), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])))
            writer.write(connection.send(h11.Data(data=body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
        except (h11.LocalProtocolError, ConnectionError):
            pass


# -- listening --------------------------------------------------------------------------------------


def parse_host(host: str) -> tuple[str, str | tuple[str, int]]:
    """Parse ``unix:///path`` or ``tcp://127.0.0.1:2375`` into ``("unix", path)`` or ``("tcp", (address, port))``.

    TCP is accepted only on a loopback address, because the API has no
    authentication and any client that connects controls the machine.
    """
    import ipaddress

    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid host {host!r}: the socket path must be absolute, as in unix:///run/dockyard/dockyard.sock")
        return "unix", path
    if host.startswith("tcp://"):
        parts = urllib.parse.urlsplit(host)
        if parts.hostname is None or parts.port is None:
            raise InvalidArgument(f"invalid host {host!r}: expected tcp://ADDRESS:PORT")
        address = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidArgument(f"invalid host {host!r}: only loopback addresses are allowed for tcp://, "
                                  "because the API has no authentication")
        return "tcp", (address, parts.port)
    raise InvalidArgument(f"invalid host {host!r}: use unix:///PATH or tcp://127.0.0.1:PORT")


def _prepare_unix_socket(path: Path) -> None:
    """Create the socket's directory and remove a stale socket file; raise InvalidArgument if a server still listens on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        log.debug("removing the stale socket %s", path)
        path.unlink()
        return
    finally:
        probe.close()
    raise InvalidArgument(f"another server is already listening on {path}")


async def _listen(server: Server, kind: str, address: Any, mode: int) -> asyncio.AbstractServer:
    if kind == "unix":
        path = Path(address)
        _prepare_unix_socket(path)
        listener = await asyncio.start_unix_server(server.handle_connection, path=str(path))
        os.chmod(path, mode)
        return listener
    host, port = address
    return await asyncio.start_server(server.handle_connection, host=host, port=port)


# glibc's mallopt() parameter for the maximum number of malloc arenas, from <malloc.h>.
M_ARENA_MAX = -8
# The service's malloc arenas. By default glibc gives threads up to 8 arenas
# per CPU, and an arena keeps its freed memory after its thread exits. After
# the load of bench/api.py, the arenas of exited worker threads still held
# about 2.5 MiB each and raised the idle RSS by about 9 MiB. The threads
# mostly wait for the GIL, so sharing arenas costs little.
MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int) -> None:
    """Set the maximum number of glibc malloc arenas of this process; do nothing on another C library."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("the C library has no mallopt(): the number of malloc arenas stays the default")
        return
    if mallopt(M_ARENA_MAX, count) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) failed: the number of malloc arenas stays the default", count)


def malloc_trim_function() -> Callable[[int], int] | None:
    """Return glibc's malloc_trim(), or None on a C library without it."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        log.debug("the C library has no malloc_trim(): freed heap memory stays with the process")
        return None


def serve(engine: "Engine", hosts: list[str], idle_timeout: float = 0, socket_mode: int = 0o660,
          ready: Callable[[], None] | None = None) -> None:
    """Listen on ``hosts`` and serve the API until SIGTERM, SIGINT or the idle timeout; removes unix sockets at exit."""
    import signal

    parsed = [parse_host(host) for host in hosts]
    server = Server(engine, idle_timeout)
    limit_malloc_arenas(MALLOC_ARENAS)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, server.stop)
        listeners = []
        # Only sockets this server created are removed at exit, never one another server listens on.
        created: list[str] = []
        try:
            for kind, address in parsed:
                listeners.append(await _listen(server, kind, address, socket_mode))
                if kind == "unix":
                    created.append(address)
                log.info("API listening on %s", f"unix://{address}" if kind == "unix" else "tcp://%s:%d" % address)
            if ready is not None:
                ready()
            await server.serve(listeners)
        finally:
            for listener in listeners:
                listener.close()
            for path in created:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        log.info("API server stopped")

    asyncio.run(main())


__all__ = [
    "Api", "Hijack", "Request", "Response", "Server", "Stream", "empty_response", "handshake", "json_response",
    "parse_host", "parse_target", "run_blocking", "serve",
]
