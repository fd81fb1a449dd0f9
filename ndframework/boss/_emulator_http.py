"""The BOSS emulator's HTTP layer: a threading server that hands each request to `BossApi`.

Requests are logged to the ``ndframework.boss.emulator`` logger at DEBUG (request line and
status only: never headers, so never the token), instead of BaseHTTPRequestHandler's stderr.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._emulator_api import BossApi, Response, logger
from ._emulator_model import ApiError, ErrorCode

__all__ = ["EmulatorServer"]

# A compressed cutout can exceed its raw size by blosc's header and a little slack.
_BODY_SLACK = 1 << 20
# Seconds between looks at whether a frozen emulator has thawed or is stopping.
_FROZEN_POLL = 0.02


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as intern's requests.Session expects
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "BossEmulator/1"
    sys_version = ""
    server: EmulatorServer

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's naming)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        api = self.server.api
        if api.faults.frozen:
            self._hold()
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            error = ApiError(400, ErrorCode.INVALID_ARGUMENT, "Invalid Content-Length header.")
            self._send(api.reject(error))
            return
        if length > api.max_cutout_bytes + _BODY_SLACK:
            self.close_connection = True  # the unread body must not be taken for a request
            error = ApiError(
                413,
                ErrorCode.REQUEST_TOO_LARGE,
                f"Request body of {length} bytes is over the limit of "
                f"{api.max_cutout_bytes} bytes.",
            )
            self._send(api.reject(error))
            return
        body = self.rfile.read(length) if length else b""
        self._send(api.handle(self.command, self.path, self.headers, body))

    def _hold(self) -> None:
        """Never answer: wait, without reading the body, until the emulator thaws or stops,
        then drop the connection as a hung server's would be."""
        api = self.server.api
        api.count_unanswered()
        logger.debug("BOSS emulator: frozen, holding %s %s", self.command, self.path)
        while api.faults.frozen and not self.server.stopping.wait(_FROZEN_POLL):
            pass
        self.close_connection = True

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        logger.debug("%s - " + format, self.address_string(), *args)


class EmulatorServer(ThreadingHTTPServer):
    """A `ThreadingHTTPServer` serving `BossApi`, one thread per connection.

    `close_connections` ends idle keep-alive connections so that a stop does not wait for
    clients to hang up.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 drops connections of concurrent clients

    def __init__(self, address: tuple[str, int], api: BossApi) -> None:
        self.api = api
        self.stopping = threading.Event()  # releases requests held while frozen
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def shutdown(self) -> None:
        """Stop serving; requests held by a frozen emulator are let go (unanswered)."""
        self.stopping.set()
        super().shutdown()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is routine; keep tracebacks off stderr.
        logger.debug("BOSS emulator: error serving %s", client_address, exc_info=True)
