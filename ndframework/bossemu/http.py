"""The emulator's HTTP layer: requests and responses, token authentication, the array
formats of the cutout service, and a threaded server on loopback.

What a BOSS client meets before any view runs is Django REST framework's (the BOSS pins
DRF 3.11, requirements.txt), and is reproduced here:

- authentication: ``Authorization: Token <key>`` (``rest_framework.authentication.
  TokenAuthentication``, the BOSS's ``DEFAULT_AUTHENTICATION_CLASSES`` in
  django/boss/settings/base.py); a missing or malformed header is answered 401 with DRF's
  ``{"detail": ...}`` body and ``WWW-Authenticate: Token``;
- content negotiation, before authentication as in DRF's ``APIView.initial``: the cutout
  view's renderers (django/bossspatialdb/views.py, renderers.py: ``application/blosc``
  first, then ``application/blosc-python``, ``application/npygz``, ``image/jpeg``, JSON and
  the browsable API) and parsers (parsers.py: the three array types); other views render
  JSON. No ``Accept`` or ``*/*`` gets the first renderer, an ``Accept`` no renderer offers
  is 406, a body of another type 415, each with DRF's own texts.

Requests are logged to the ``ndframework.bossemu`` logger at DEBUG (request line and
status only: never headers, so never the token).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import socket
import threading
import zlib
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import attrs
import blosc
import numpy as np

from .errors import BossError, ErrorPage, drf_error_page

__all__ = [
    "logger",
    "Request",
    "DRFError",
    "Response",
    "authenticate",
    "ARRAY_MEDIA_TYPES",
    "JSON_RENDERERS",
    "CUTOUT_RENDERERS",
    "negotiate",
    "media_type",
    "encode_array",
    "decode_array",
    "Application",
    "EmulatorServer",
]

logger = logging.getLogger("ndframework.bossemu")

ARRAY_MEDIA_TYPES = ("application/blosc", "application/blosc-python", "application/npygz")
"""The cutout service's array formats, in the order of its renderers and parsers."""
JSON_RENDERERS = ("application/json", "text/html")
"""DRF's default renderers: ``JSONRenderer`` and the browsable API."""
CUTOUT_RENDERERS = (*ARRAY_MEDIA_TYPES, "image/jpeg", *JSON_RENDERERS)
"""The cutout view's renderers, in order (``Cutout.renderer_classes``,
django/bossspatialdb/views.py)."""


@attrs.frozen
class Request:
    """One HTTP request, as the views see it."""

    method: str
    """HTTP verb."""
    path: str
    """URL path without the query, e.g. ``/v1/coord/cf/``."""
    query: Mapping[str, Sequence[str]] = attrs.field(factory=dict)
    """Query parameters, each with its values in order."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """Headers; a case-insensitive mapping when it comes from the HTTP layer."""
    body: bytes = b""
    """Request body."""
    params: Mapping[str, str] = attrs.field(factory=dict)
    """Path parameters, filled in by the router."""
    accepted: str = "application/json"
    """The media type content negotiation chose for the answer."""

    def query_value(self, name: str) -> str | None:
        """The last value of a query parameter, as Django's ``QueryDict[name]``; None if
        absent."""
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (an empty body is ``{}``); DRF's 400 if it is not JSON."""
        try:
            return json.loads(self.body or b"{}")
        except ValueError as error:
            raise DRFError(400, f"JSON parse error - {error}") from None


class DRFError(Exception):
    """An error DRF answers itself, with ``{"detail": ...}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.page = drf_error_page(status, detail)


@attrs.frozen
class Response:
    """One HTTP response."""

    status: int
    """HTTP status."""
    body: bytes = b""
    """Response body."""
    content_type: str | None = None
    """Content-Type of a non-empty body."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers."""

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(data).encode(), "application/json")

    @classmethod
    def error(cls, error: BossError) -> Response:
        """The BOSS's JSON error response (``BossHTTPError``)."""
        return cls(error.status, error.to_json(), "application/json")

    @classmethod
    def page(cls, page: ErrorPage, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """A response that is not the BOSS's JSON error body (`ErrorPage`)."""
        return cls(page.status, page.body, page.content_type, headers)


# -- authentication ----------------------------------------------------------------------------


def authenticate(headers: Mapping[str, str], token: str) -> Response | None:
    """None if ``headers`` carry ``token`` as DRF's ``TokenAuthentication`` wants it, else
    DRF's 401.

    The comparison takes constant time; no answer quotes what was sent.

    >>> authenticate({"Authorization": "Token abc"}, "abc") is None
    True
    >>> authenticate({"Authorization": "Token xyz"}, "abc").body
    b'{"detail": "Invalid token."}'
    >>> authenticate({}, "abc").body
    b'{"detail": "Authentication credentials were not provided."}'
    """
    words = (headers.get("Authorization") or "").split()
    if not words or words[0].lower() != "token":
        # Not a token header: DRF leaves the request anonymous, and IsAuthenticated refuses.
        detail = "Authentication credentials were not provided."
    elif len(words) == 1:
        detail = "Invalid token header. No credentials provided."
    elif len(words) > 2:
        detail = "Invalid token header. Token string should not contain spaces."
    elif hmac.compare_digest(words[1].encode(), token.encode()):
        return None
    else:
        detail = "Invalid token."
    return Response.page(drf_error_page(401, detail), (("WWW-Authenticate", "Token"),))


# -- array formats -----------------------------------------------------------------------------


def media_type(header: str | None) -> str:
    """The media type of a ``Content-Type`` header, lower case, parameters dropped."""
    return (header or "").split(";")[0].strip().lower()


def negotiate(accept: str | None, offered: Sequence[str]) -> str | None:
    """The first of ``offered`` that ``accept`` allows, as DRF picks a renderer; None if
    none. DRF tries the client's types by precedence and the renderers in order for each.

    >>> negotiate(None, ARRAY_MEDIA_TYPES), negotiate("application/npygz", ARRAY_MEDIA_TYPES)
    ('application/blosc', 'application/npygz')
    >>> negotiate("image/png", ARRAY_MEDIA_TYPES) is None
    True
    """
    wanted = [media_type(item) for item in (accept or "*/*").split(",") if item.strip()]
    for item in sorted(wanted, key=lambda t: t.count("*")):  # specific types first
        for candidate in offered:
            if item in ("*/*", candidate) or (
                item.endswith("/*") and candidate.startswith(item[:-1])
            ):
                return candidate
    return None


def encode_array(media: str, array: np.ndarray) -> bytes:
    """``array`` in one of `ARRAY_MEDIA_TYPES`, as the cutout renderers write it.

    >>> a = np.arange(6, dtype=np.uint16).reshape(1, 2, 3)
    >>> [decode_array(t, encode_array(t, a), a.dtype).ravel().tolist() == list(range(6))
    ...  for t in ARRAY_MEDIA_TYPES]
    [True, True, True]
    """
    array = np.ascontiguousarray(array)
    if media == "application/blosc":
        return blosc.compress(array, typesize=array.dtype.itemsize)  # type: ignore[no-any-return]
    if media == "application/blosc-python":
        return blosc.pack_array(array)  # type: ignore[no-any-return]
    if media == "application/npygz":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return zlib.compress(buffer.getvalue())
    raise ValueError(f"media must be one of {ARRAY_MEDIA_TYPES}, got {media!r}")


def decode_array(media: str, body: bytes, dtype: np.dtype | str) -> np.ndarray:
    """The array in a body of one of `ARRAY_MEDIA_TYPES`: flat with ``dtype`` for
    ``application/blosc`` (which carries no shape), as sent for the others.

    Raises ValueError (or EOFError, as the parsers meet it) if the body is not one.
    """
    if media == "application/blosc":
        try:
            raw = blosc.decompress(body)
        except Exception as error:  # blosc raises a bare Exception on bad input
            raise ValueError(f"not blosc data: {error}") from None
        return np.frombuffer(raw, dtype=dtype)
    if media == "application/blosc-python":
        try:
            return blosc.unpack_array(body)  # type: ignore[no-any-return]
        except EOFError:
            raise
        except Exception as error:
            raise ValueError(f"not a blosc-packed array: {error}") from None
    if media == "application/npygz":
        try:
            return np.load(io.BytesIO(zlib.decompress(body)), allow_pickle=False)
        except EOFError:
            raise
        except Exception as error:
            raise ValueError(f"not a gzipped npy array: {error}") from None
    raise ValueError(f"media must be one of {ARRAY_MEDIA_TYPES}, got {media!r}")


# -- the server --------------------------------------------------------------------------------


class Application(Protocol):
    """What the server serves (`ndframework.bossemu.routes.BossApi`)."""

    @property
    def frozen(self) -> bool:
        """Whether requests are to be held unanswered."""

    def body_refusal(self, length: int) -> Response | None:
        """The answer to a request whose body of ``length`` bytes is not to be read."""

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Answer one request; ``target`` is the request line's URL (path and query)."""

    def count_unanswered(self) -> None:
        """Count a request held and never answered."""


# Seconds between looks at whether a frozen emulator has thawed or is stopping.
_FROZEN_POLL = 0.02


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as intern's requests.Session expects
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "BossEmulator/2"
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

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        app = self.server.app
        if app.frozen:
            self._hold()
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            self._send(Response.page(drf_error_page(400, "Invalid Content-Length header.")))
            return
        refusal = app.body_refusal(length)
        if refusal is not None:
            self.close_connection = True  # the unread body must not be taken for a request
            self._send(refusal)
            return
        body = self.rfile.read(length) if length else b""
        self._send(app.handle(self.command, self.path, self.headers, body))

    def _hold(self) -> None:
        """Never answer: wait, without reading the body, until the emulator thaws or stops,
        then drop the connection as a hung server's would be."""
        app = self.server.app
        app.count_unanswered()
        logger.debug("BOSS emulator: frozen, holding %s %s", self.command, self.path)
        while app.frozen and not self.server.stopping.wait(_FROZEN_POLL):
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
    """A `ThreadingHTTPServer` serving an `Application`, one thread per connection.

    `close_connections` ends idle keep-alive connections so that a stop does not wait for
    clients to hang up.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 drops connections of concurrent clients

    def __init__(self, address: tuple[str, int], app: Application) -> None:
        self.app = app
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
