"""The embedded endpoint's HTTP server: bounded, fork-safe, IPv4 or IPv6.

A training program must not be hurt by whoever connects to its metrics port.
One event-loop thread accepts connections and reads each request head, so a
connection that never sends one costs a socket, not a thread; the WSGI app
runs on a few daemon threads. The limits, whatever the clients do:

- at most :data:`MAX_HELD` connections held, *whatever their state* (reading
  the request, waiting for an answer, writing it): at the bound, the oldest
  that has sent no request is closed to make room, and when every held one
  has sent its request the server stops accepting until one is done (the next
  wait in the kernel's listen backlog of :data:`BACKLOG`, which costs the
  program no descriptor);
- at most :data:`MAX_QUEUED` requests waiting for an app thread: one more is
  answered ``503 Service Unavailable`` with ``Retry-After: 1`` at once;
- :data:`REQUEST_TIMEOUT` seconds to send the request head (16 KiB at most, else ``431``) and to take the answer;
- :data:`WORKERS` daemon threads for the app, never joined: a queue of
  requests whose clients have gone cannot hold the program's exit;
- a request whose client has already closed the connection is dropped unanswered:
  a pile of scrapes that timed out costs neither a render nor a queue slot;
- ``GET``/``HEAD /metrics`` (and the live page's ``/page/data``) within
  :data:`CACHE_SECONDS` of the last rendering get that rendering (as
  ``prometheus_client`` users do with a cache): scrapes that arrive together
  share one collection, and a scraper in a loop cannot make the program render
  more than once a second. The cache key keeps only what changes the answer
  (the ``name[]`` filter, ``Accept``, ``Accept-Encoding``; nothing for the
  page's JSON), and at most :data:`_MAX_CACHE_KEYS` kinds are rendered per
  :data:`CACHE_SECONDS`: one more is a ``503``, so a client that varies the
  query string or ``Accept`` in a loop cannot render on every request either;
- at most :data:`ANSWERS_PER_SECOND` answers a second (after a burst of
  :data:`ANSWER_BURST`), far above what Prometheus servers ask: 8 clients scraping in a tight loop cost the training
  loop a bounded share of the interpreter, not most of it.

Requests whose ``Host`` header names neither the bound address, this
machine's host name, a loopback name nor an IP literal are refused (``403``): a web page the user opens cannot
read ``/metrics`` or ``/slow-steps`` through DNS rebinding.
``OTEL_ML_ENDPOINT_ALLOWED_HOSTS`` names others (``*`` for any).

A forked child (``os.fork()``, ``multiprocessing`` with fork) does not serve:
it closes its copies of the listening and connected sockets at once, so the
port stays the parent's and closes with it, and its exit never waits for a
server thread that does not exist there. A child that wants its own endpoint
builds its own providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import queue
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from otel_ml.distro.endpoint._http import environ_from, host_allowed, host_name, response

_LOG = logging.getLogger(__name__)

BACKLOG = 1024
MAX_HELD = 256
MAX_QUEUED = 64
REQUEST_TIMEOUT = 10.0
WORKERS = 4
CACHE_SECONDS = 1.0
ANSWERS_PER_SECOND = 50.0
ANSWER_BURST = 200
_STOP_WAIT = 2.0
_IDLE_GRACE = 0.1
_EVICT_BATCH = 16  # idle connections dropped at once when full: a flood of them is cleared 16 times faster
_CACHED_PATHS = frozenset({"/metrics", "/page/data"})
_MAX_CACHE_KEYS = 8  # kinds of cached request (format, compression, name[] filter) rendered per CACHE_SECONDS
_MAX_HEAD = 16 * 1024
_TOO_LARGE = b"request head over 16 KiB\n"
_FORBIDDEN = b"host not allowed: use the endpoint's address, or name this host in OTEL_ML_ENDPOINT_ALLOWED_HOSTS\n"
_App = Callable[..., Iterable[bytes]]
_Key = tuple[str, str, str, str]
_HOST_HELP = (
    "OTEL_EXPORTER_PROMETHEUS_HOST accepts an IPv4 address, an IPv6 address (bracketed or not: [::1] or ::1) "
    "or a host name this machine resolves"
)


class EndpointUnavailable(RuntimeError):
    """The endpoint cannot serve, inside :func:`serving_only`; ``str(exc)`` is the one line to print."""


_serving_command: str | None = None


@contextlib.contextmanager
def serving_only(command: str) -> Iterator[None]:
    """For a command whose only job is to serve: an endpoint that cannot bind raises :class:`EndpointUnavailable`.

    In a training program a taken port is one ERROR line and training goes on
    without the endpoint; ``otel-ml gpu`` or ``otel-ml tensorboard`` would run
    forever serving nothing, so they build their providers inside this block,
    print the exception's one line and exit non-zero.
    """
    global _serving_command
    previous, _serving_command = _serving_command, command
    try:
        yield
    finally:
        _serving_command = previous


class EmbeddedServer:
    """The endpoint's server; ``start`` never raises into the program (see :func:`serving_only`)."""

    def __init__(self, host: str, port: int, app: _App, allowed_hosts: Iterable[str] = ()) -> None:
        self.host = host
        self.port = port
        self._app = app
        # host_name: an entry with a port (``trainer.ml.svc:9464``) names the host, as a Host header does.
        self._allowed = frozenset(filter(None, (host_name(name) for name in allowed_hosts)))
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[Any] | None = None
        # connection -> its task while it has not sent its request, then None
        self._held: dict[socket.socket, asyncio.Task[None] | None] = {}
        self._since: dict[socket.socket, float] = {}  # when each held connection was accepted
        self._held_lock = threading.Lock()
        self._queued = 0  # requests given to the app threads and not answered yet (event-loop thread only)
        self._cache: dict[_Key, tuple[float, bytes, bytes]] = {}
        self._inflight: dict[_Key, asyncio.Future[tuple[bytes, bytes]]] = {}
        self._tokens = float(ANSWER_BURST)
        self._pace_lock: asyncio.Lock | None = None  # made in the loop's thread, at the first request
        self._tokens_at = 0.0

    def _resolve(self) -> tuple[socket.AddressFamily, str]:
        """The family and numeric address of ``self.host``: brackets stripped, names resolved (IPv4 first)."""
        host = self.host.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
        return family, str(address[0])

    def start(self) -> bool:
        """Bind and serve in a daemon thread; a failure to bind is one clear log line, not an error."""
        name = self.host
        try:
            family, address = self._resolve()
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            return self._cannot_serve(f"{name!r}: no address nor a name this host resolves ({reason}); {_HOST_HELP}")
        self.host = address
        try:
            sock = socket.create_server((address, self.port), family=family, backlog=BACKLOG)
        except OSError as exc:
            hint = " (IPv6: is it enabled on this host?)" if family == socket.AF_INET6 else ""
            return self._cannot_serve(f"{self.address} ({os.strerror(exc.errno) if exc.errno else exc}{hint})")
        sock.setblocking(False)
        self._sock, self.port = sock, sock.getsockname()[1]
        # This machine's own name too: a scraper configured with it (``gpu-node-1:9464``) is no rebinding page.
        own = socket.gethostname().lower()
        self._allowed |= {address.lower(), name.strip().lower().strip("[]").rstrip("."), own, own.split(".")[0]}
        if not ipaddress.ip_address(address).is_loopback:
            _LOG.warning(
                "otel_ml: /metrics and /slow-steps are served on %s, which other machines can reach: /slow-steps "
                "shows the slow steps' spans (model and run names, timings). Bind 127.0.0.1 unless the endpoint "
                "must be scraped from elsewhere.",
                self.address,
            )
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()  # made here, so that a stop() right after start() is not missed
        self._room = asyncio.Event()
        # asyncio reports stray errors on its own logger, i.e. on the program's stderr: keep them ours, quiet.
        self._loop.set_exception_handler(lambda _, context: _LOG.debug("otel_ml: endpoint: %s", context.get("message")))
        self._jobs = queue.SimpleQueue()
        for index in range(WORKERS):
            # Daemon threads, never joined: interpreter shutdown does not wait for what is queued.
            args = (self._jobs, self._loop)
            threading.Thread(target=self._work, args=args, name=f"otel_ml-metrics-app-{index}", daemon=True).start()
        self._thread = threading.Thread(target=self._run, args=(self._loop,), name="otel_ml-metrics", daemon=True)
        self._thread.start()
        _servers.add(self)
        return True

    def _cannot_serve(self, what: str) -> bool:
        if _serving_command is not None:
            raise EndpointUnavailable(
                f"{_serving_command}: cannot serve /metrics on {what}; choose another address or port "
                "(--host/--port, OTEL_EXPORTER_PROMETHEUS_HOST/OTEL_EXPORTER_PROMETHEUS_PORT)"
            )
        _LOG.error(
            "otel_ml: cannot serve /metrics on %s. The program continues without the embedded endpoint; "
            "choose another address with OTEL_EXPORTER_PROMETHEUS_HOST or port with OTEL_EXPORTER_PROMETHEUS_PORT.",
            what,
        )
        return False

    def stop(self) -> None:
        """Stop serving and release the port (waits at most a couple of seconds)."""
        loop, stopped, thread, jobs = self._loop, self._stopped, self._thread, self._jobs
        self._loop = self._jobs = None
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(stopped.set)
        if jobs is not None:
            for _ in range(WORKERS):
                jobs.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(_STOP_WAIT)
        self._close_sockets()

    @property
    def running(self) -> bool:
        """Whether the server is bound and serving."""
        return self._loop is not None

    @property
    def address(self) -> str:
        """``host:port``, the host bracketed when it is IPv6."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The ``/metrics`` URL, with the port actually bound."""
        return f"http://{self.address}/metrics"

    def _after_fork_in_child(self) -> None:
        """Forget the parent's threads and loop, and close this process's copies of its sockets."""
        self._loop = self._stopped = self._thread = self._jobs = self._room = None
        self._held_lock = threading.Lock()  # another thread may have held it at the fork
        self._close_sockets()

    def _close_sockets(self) -> None:
        with self._held_lock:
            held, self._held, self._since = list(self._held), {}, {}
        for conn in held:
            conn.close()
        if self._sock is not None:
            self._sock.close()

    # --- the app threads --------------------------------------------------------------------

    def _work(self, jobs: queue.SimpleQueue[Any], loop: asyncio.AbstractEventLoop) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            environ, future = job
            answer = self._call_app(environ)
            with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped meanwhile
                loop.call_soon_threadsafe(_settle, future, answer)

    def _call_app(self, environ: dict[str, Any]) -> tuple[bytes, bytes]:
        """Run the WSGI app; its failures are a 500 and one DEBUG line. Returns (GET answer, HEAD answer)."""
        started: list[Any] = []
        try:
            body = b"".join(
                self._app(environ, lambda status, headers, exc_info=None: started.extend((status, headers)))
            )
        except Exception as exc:  # noqa: BLE001 - never a traceback on the program's stderr
            _LOG.debug("otel_ml: the endpoint failed to answer %s: %s", environ.get("PATH_INFO"), exc, exc_info=exc)
            started, body = ["500 Internal Server Error", []], b"internal error\n"
        status, headers = started if started else ("500 Internal Server Error", [])
        return response(status, headers, body), response(status, headers, body, head=True)

    # --- the event-loop thread --------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_until_complete(self._serve())
        except Exception as exc:  # noqa: BLE001 - the endpoint must never take the program down
            _LOG.warning("otel_ml: the embedded endpoint stopped: %s", exc)
        finally:
            loop.close()

    async def _serve(self) -> None:
        if self._stopped is None:
            return
        accepting = asyncio.ensure_future(self._accept())
        await self._stopped.wait()
        accepting.cancel()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sock is not None and self._room is not None:
            self._room.clear()
            room = self._make_room()
            if room is not True:
                # Full: the next connections wait in the kernel's backlog (no descriptor of ours) until
                # one held is done or, having sent nothing for a while, is dropped.
                if room:  # some were dropped: their closing makes room
                    await self._room.wait()
                else:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._room.wait(), _IDLE_GRACE)
                continue
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # e.g. out of file descriptors: wait, do not spin
                _LOG.debug("otel_ml: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve_one(conn))
            # Also when the task is cancelled before it starts: the connection is released and closed.
            task.add_done_callback(functools.partial(self._release, conn))
            with self._held_lock:
                self._held[conn] = task
                self._since[conn] = loop.time()
            await asyncio.sleep(0)  # let the connections' tasks run between accepts

    def _make_room(self) -> bool | int:
        """Whether one more connection may be held; at :data:`MAX_HELD`, drops the oldest ones that sent nothing.

        A dropped connection counts until its socket is closed, so the bound is
        on descriptors, not on bookkeeping; one that was accepted less than
        :data:`_IDLE_GRACE` ago is given the time to send its request. Returns
        True when there is room, else how many were dropped to make some.
        """
        victims: list[asyncio.Task[None]] = []
        with self._held_lock:
            if len(self._held) < MAX_HELD:
                return True
            now = self._loop.time() if self._loop is not None else 0.0
            for conn, task in self._held.items():  # oldest first
                if task is not None and now - self._since.get(conn, now) >= _IDLE_GRACE:
                    self._held[conn] = None
                    victims.append(task)
                    if len(victims) == _EVICT_BATCH:
                        break
        for victim in victims:
            victim.cancel()  # its done callback closes the connection and makes room
        return len(victims)

    def _release(self, conn: socket.socket, _task: object = None) -> None:
        with self._held_lock:
            self._held.pop(conn, None)
            self._since.pop(conn, None)
        conn.close()  # a no-op when the transport closed it already
        if self._room is not None:
            self._room.set()

    async def _serve_one(self, conn: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=_MAX_HEAD)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except asyncio.LimitOverrunError:  # a clear answer rather than a silent close
                writer.write(response("431 Request Header Fields Too Large", [], _TOO_LARGE))
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
                return
            with self._held_lock:
                if conn in self._held:
                    self._held[conn] = None
            if reader.at_eof() or _gone(conn):
                return  # the client sent its request and left: nobody to answer, nothing to queue or render
            answer = await self._answer(environ_from(head, self.host, self.port), conn)
            if answer is None:
                return  # the client left while waiting for its turn
            writer.write(answer)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away, was too slow or sent garbage: nothing to tell the program
        except asyncio.CancelledError:
            if writer is not None:
                writer.transport.abort()  # stopping: never wait for a client that does not read
            raise
        finally:
            if writer is not None and not writer.transport.is_closing():
                writer.close()
            if writer is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT)  # the answer is flushed

    async def _answer(self, environ: dict[str, Any] | None, conn: socket.socket) -> bytes | None:
        if environ is None:
            return response("400 Bad Request", [], b"bad request\n")
        if not (host_allowed(environ.get("HTTP_HOST"), self._allowed)):
            return response("403 Forbidden", [], _FORBIDDEN)
        if not await self._pace(conn):
            return None
        head = environ["REQUEST_METHOD"] == "HEAD"
        if head:
            environ["REQUEST_METHOD"] = "GET"  # the app answers GET; the body is left out here
        key = _cache_key(environ) if environ["REQUEST_METHOD"] == "GET" else None
        loop = asyncio.get_running_loop()
        if key is not None:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > loop.time():
                return hit[2] if head else hit[1]
        future = self._inflight.get(key) if key is not None else None
        if future is None:
            if key is not None and not self._may_render(loop.time()):
                return response("503 Service Unavailable", [("Retry-After", "1")], b"busy: retry in a second\n")
            future = self._submit(environ, key)
            if future is None:
                return response("503 Service Unavailable", [("Retry-After", "1")], b"busy: retry in a second\n")
        get, head_answer = await asyncio.shield(future)  # one waiter cancelled leaves the others their answer
        return head_answer if head else get

    def _submit(self, environ: dict[str, Any], key: _Key | None) -> asyncio.Future[tuple[bytes, bytes]] | None:
        """Queue ``environ`` for an app thread, or None when :data:`MAX_QUEUED` are waiting already."""
        if self._jobs is None or self._queued >= MAX_QUEUED:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bytes, bytes]] = loop.create_future()
        self._queued += 1
        future.add_done_callback(functools.partial(self._answered, key))
        if key is not None:
            self._inflight[key] = future
        self._jobs.put((environ, future))
        return future

    def _answered(self, key: _Key | None, future: asyncio.Future[tuple[bytes, bytes]]) -> None:
        self._queued -= 1
        if key is None:
            return
        self._inflight.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        get, head = future.result()
        if get.startswith(b"HTTP/1.1 200 "):
            self._cache[key] = (asyncio.get_running_loop().time() + CACHE_SECONDS, get, head)

    def _may_render(self, now: float) -> bool:
        """Whether one more kind of cached request may be rendered now: fewer than :data:`_MAX_CACHE_KEYS` are fresh.

        Without this bound a client varying its query string or ``Accept`` in a
        loop would miss the cache every time and render on every request.
        """
        for old in [key for key, (until, _, _) in self._cache.items() if until <= now]:
            del self._cache[old]
        return len(self._cache.keys() | self._inflight.keys()) < _MAX_CACHE_KEYS

    async def _pace(self, conn: socket.socket) -> bool:
        """Wait for one of :data:`ANSWERS_PER_SECOND` (a token bucket of :data:`ANSWER_BURST`), first come first served.

        One waiter sleeps at a time (the lock is fair): eight clients in a loop
        do not wake eight tasks for every token. False, without taking a token,
        when the client left while it waited: a pile of clients that gave up
        does not delay the next real scrape.
        """
        if self._pace_lock is None:
            self._pace_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self._pace_lock:
            while True:
                now = loop.time()
                self._tokens = min(float(ANSWER_BURST), self._tokens + (now - self._tokens_at) * ANSWERS_PER_SECOND)
                self._tokens_at = now
                if _gone(conn):
                    return False
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return True
                await asyncio.sleep((1.0 - self._tokens) / ANSWERS_PER_SECOND)


def _cache_key(environ: dict[str, Any]) -> _Key | None:
    """What a cached path's answer depends on, and nothing else (None: not cached).

    ``/metrics``: the ``name[]`` filter (the only query prometheus_client
    reads), ``Accept`` (the format) and ``Accept-Encoding`` (gzip); the page's
    JSON depends on nothing in the request.
    """
    path = environ["PATH_INFO"]
    if path not in _CACHED_PATHS:
        return None
    if path != "/metrics":
        return (path, "", "", "")
    names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]", [])
    accept, encoding = environ.get("HTTP_ACCEPT", ""), environ.get("HTTP_ACCEPT_ENCODING", "")
    return (path, "\0".join(sorted(set(names))), accept, encoding)


def _gone(conn: socket.socket) -> bool:
    """Whether the client closed its side (or reset): one non-blocking peek, no data consumed."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # still connected, nothing more sent: the usual case
    except OSError:
        return True


def _settle(future: asyncio.Future[tuple[bytes, bytes]], answer: tuple[bytes, bytes]) -> None:
    if not future.done():
        future.set_result(answer)


_servers: weakref.WeakSet[EmbeddedServer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for server in list(_servers):
        server._after_fork_in_child()
    _servers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
