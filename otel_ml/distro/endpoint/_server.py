"""The embedded endpoint's HTTP server: bounded, fork-safe, IPv4 or IPv6.

A training program must not be hurt by whoever connects to its metrics port.
One event-loop thread accepts connections and reads each request head, so a
connection that never sends one costs a socket, not a thread; the WSGI app
runs on a small fixed pool of threads. The limits:

- a listen backlog of :data:`BACKLOG`, so a burst of scrapes is queued, not refused;
- at most :data:`MAX_HELD` connections held: one more closes the oldest that
  has not sent its request yet, so idle or half-open connections never block
  a scrape nor take the program's file descriptors;
- :data:`REQUEST_TIMEOUT` seconds to send the request head and to take the answer;
- :data:`WORKERS` threads for the app, whatever the number of connections.

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
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from otel_ml.distro.endpoint._http import environ_from, response

_LOG = logging.getLogger(__name__)

BACKLOG = 1024
MAX_HELD = 256
REQUEST_TIMEOUT = 10.0
WORKERS = 4
_MAX_HEAD = 16 * 1024
_App = Callable[..., Iterable[bytes]]


class EmbeddedServer:
    """The endpoint's server; ``start`` never raises into the program."""

    def __init__(self, host: str, port: int, app: _App) -> None:
        self.host = host
        self.port = port
        self._app = app
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # connection -> its task while it has not sent its request, then None
        self._held: dict[socket.socket, asyncio.Task[None] | None] = {}
        self._held_lock = threading.Lock()

    def start(self) -> bool:
        """Bind and serve in a daemon thread; a failure to bind is one clear log line, not an error."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family, backlog=BACKLOG)
        except OSError as exc:
            hint = " (IPv6: is it enabled on this host?)" if family == socket.AF_INET6 else ""
            _LOG.error(
                "otel_ml: cannot serve /metrics on %s (%s%s). The program continues without the embedded endpoint; "
                "choose another address with OTEL_EXPORTER_PROMETHEUS_HOST or port with OTEL_EXPORTER_PROMETHEUS_PORT.",
                self.url[len("http://") : -len("/metrics")],
                os.strerror(exc.errno) if exc.errno else exc,
                hint,
            )
            return False
        sock.setblocking(False)
        self._sock, self.port = sock, sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()  # made here, so that a stop() right after start() is not missed
        # asyncio reports stray errors on its own logger, i.e. on the program's stderr: keep them ours, quiet.
        self._loop.set_exception_handler(lambda _, context: _LOG.debug("otel_ml: endpoint: %s", context.get("message")))
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="otel_ml-metrics-app")
        self._thread = threading.Thread(target=self._run, args=(self._loop,), name="otel_ml-metrics", daemon=True)
        self._thread.start()
        _servers.add(self)
        return True

    def stop(self) -> None:
        """Stop serving and release the port (waits at most a few seconds)."""
        loop, stopped, thread = self._loop, self._stopped, self._thread
        self._loop = None
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if thread is not None:
            thread.join(REQUEST_TIMEOUT)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self._close_sockets()

    @property
    def running(self) -> bool:
        """Whether the server is bound and serving."""
        return self._loop is not None

    @property
    def url(self) -> str:
        """The ``/metrics`` URL, with the port actually bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def _after_fork_in_child(self) -> None:
        """Forget the parent's thread and loop, and close this process's copies of its sockets."""
        self._loop = self._stopped = self._thread = self._pool = None
        self._held_lock = threading.Lock()  # another thread may have held it at the fork
        self._close_sockets()

    def _close_sockets(self) -> None:
        with self._held_lock:
            held, self._held = list(self._held), {}
        for conn in held:
            conn.close()
        if self._sock is not None:
            self._sock.close()

    # --- the event-loop thread -----------------------------------------------------------

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
        while self._sock is not None:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # e.g. out of file descriptors: wait, do not spin
                _LOG.debug("otel_ml: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve_one(conn))
            # Also when the task is cancelled before it starts: the connection is released and closed.
            task.add_done_callback(functools.partial(self._release, conn))
            self._hold(conn, task)
            await asyncio.sleep(0)  # let the connections' tasks run between accepts

    def _release(self, conn: socket.socket, _task: object = None) -> None:
        with self._held_lock:
            self._held.pop(conn, None)
        conn.close()  # a no-op when the transport closed it already

    def _hold(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        """Hold ``conn``; past :data:`MAX_HELD`, drop the oldest connections still without a request."""
        evicted: list[asyncio.Task[None]] = []
        with self._held_lock:
            self._held[conn] = task
            excess = len(self._held) - MAX_HELD
            for held, waiting in list(self._held.items()):
                if excess <= len(evicted):
                    break
                if waiting is not None and held is not conn:
                    evicted.append(waiting)
                    del self._held[held]
        for waiting in evicted:
            waiting.cancel()  # its done callback closes the connection

    async def _serve_one(self, conn: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=_MAX_HEAD)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            with self._held_lock:
                if conn in self._held:
                    self._held[conn] = None
            environ = environ_from(head, self.host, self.port)
            loop = asyncio.get_running_loop()
            if environ is None:
                answer = response("400 Bad Request", [], b"bad request\n")
            else:
                answer = await loop.run_in_executor(self._pool, self._call_app, environ)
            writer.write(answer)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away, was too slow or sent garbage: nothing to tell the program
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT)  # the answer is flushed

    def _call_app(self, environ: dict[str, Any]) -> bytes:
        """Run the WSGI app on a pool thread; its failures are a 500 and one DEBUG line."""
        started: list[Any] = []
        try:
            body = b"".join(
                self._app(environ, lambda status, headers, exc_info=None: started.extend((status, headers)))
            )
        except Exception as exc:  # noqa: BLE001 - never a traceback on the program's stderr
            _LOG.debug("otel_ml: the endpoint failed to answer %s: %s", environ.get("PATH_INFO"), exc, exc_info=exc)
            return response("500 Internal Server Error", [], b"internal error\n")
        status, headers = started if started else ("500 Internal Server Error", [])
        return response(status, headers, b"" if environ["REQUEST_METHOD"] == "HEAD" else body)


_servers: weakref.WeakSet[EmbeddedServer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for server in list(_servers):
        server._after_fork_in_child()
    _servers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
