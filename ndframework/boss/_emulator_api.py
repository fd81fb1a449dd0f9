"""The BOSS emulator's request handling, independent of sockets: routes, auth, faults, stats.

`BossApi.handle` takes a parsed HTTP request and returns a `Response`; the HTTP layer
(`_emulator_http`) only moves bytes. The routing table lists every endpoint served, each a
small handler over the `Store`.
"""

from __future__ import annotations

import collections
import hmac
import http
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from ..errors import ConfigError
from ._emulator_cutout import delete_region, read_cutout, write_cutout
from ._emulator_model import ApiError, ErrorCode
from ._emulator_store import Store

__all__ = ["BossApi", "EmulatorStats", "Faults", "Request", "Response", "ROUTES"]

logger = logging.getLogger("ndframework.boss.emulator")

FAULT_STATUSES = (429, 500, 502, 503, 504)


def _check_rate(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"error_rate must be between 0 and 1, got {value!r}", value)


def _check_fault_status(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value not in FAULT_STATUSES:
        raise ConfigError(f"status must be one of {FAULT_STATUSES}, got {value!r}", value)


def _check_latency(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value >= 0.0:
        raise ConfigError(f"latency must be a number of seconds >= 0, got {value!r}", value)


def _as_window(value: object) -> object:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value)


def _check_window(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not (isinstance(value, float) and value > 0.0):
        raise ConfigError(
            f"error_window must be a number of seconds > 0, or None for no end, got {value!r}",
            value,
        )


def _check_frozen(instance: object, attribute: attrs.Attribute, value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"frozen must be True or False, got {value!r}", value)


@attrs.frozen
class Faults:
    """Faults the emulator injects, for testing retries and timeouts.

    >>> Faults(error_rate=0.2, status=429)
    Faults(error_rate=0.2, status=429, latency=0.0, seed=0, error_window=None, frozen=False)

    An outage that passes: half of all cutouts fail for two seconds from the first cutout
    request after the faults are set, then none do.

    >>> Faults(error_rate=0.5, error_window=2.0).error_window
    2.0
    """

    error_rate: float = attrs.field(default=0.0, converter=float, validator=_check_rate)
    """Fraction of cutout requests (GET, POST, to-black PUT) answered with ``status``."""
    status: int = attrs.field(default=503, validator=_check_fault_status)
    """HTTP status of an injected fault: 503 (unavailable), 429 (throttled), 500, 502, 504."""
    latency: float = attrs.field(default=0.0, converter=float, validator=_check_latency)
    """Seconds added to every request before it is answered."""
    seed: int | None = 0
    """Seed of the draw deciding which requests fail; None draws from the OS."""
    error_window: float | None = attrs.field(
        default=None, converter=_as_window, validator=_check_window
    )
    """Seconds during which ``error_rate`` applies, counted from the first cutout request
    made under these faults (so that a client's start-up time does not count); None: for
    as long as they are set."""
    frozen: bool = attrs.field(default=False, validator=_check_frozen)
    """Accept every connection and never answer, as a hung server does: requests (of any
    kind) are held until the faults change or the emulator stops, then the connection is
    closed without an answer."""


@attrs.frozen
class EmulatorStats:
    """Counts of the requests the emulator has answered since it started (or was reset)."""

    requests: int = 0
    """Requests answered."""
    succeeded: int = 0
    """Requests answered with a status below 400."""
    failed: int = 0
    """Requests answered with a status of 400 or more, injected faults included."""
    injected: int = 0
    """Requests answered with an injected fault."""
    by_status: Mapping[int, int] = attrs.field(factory=dict)
    """Requests answered, by HTTP status."""
    unanswered: int = 0
    """Requests received while the emulator was frozen, never answered (not in the rest)."""


@attrs.frozen
class Request:
    """One HTTP request, as the handlers see it."""

    method: str
    """HTTP verb."""
    path: str
    """URL path without the query, slashes stripped at both ends, e.g. 'v1/coord/cf'."""
    query: Mapping[str, list[str]] = attrs.field(factory=dict)
    """Query parameters."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """Headers; a case-insensitive mapping when it comes from the HTTP layer."""
    body: bytes = b""
    """Request body."""
    params: Mapping[str, str] = attrs.field(factory=dict)
    """Path parameters, filled in by the router."""

    @property
    def args(self) -> tuple[str, ...]:
        """Path parameters in URL order."""
        return tuple(self.params.values())

    def json(self) -> dict[str, Any]:
        """The body parsed as a JSON object; 400 if it is not one."""
        try:
            data = json.loads(self.body or b"{}")
        except ValueError as error:
            raise ApiError(
                400, ErrorCode.INVALID_POST_ARGUMENT, f"Body is not JSON: {error}"
            ) from None
        if not isinstance(data, dict):
            raise ApiError(400, ErrorCode.INVALID_POST_ARGUMENT, "Body must be a JSON object.")
        return data


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
    def json(cls, status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(data).encode(), "application/json", headers)

    @classmethod
    def error(cls, error: ApiError, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """The BOSS's JSON error response for ``error``."""
        return cls.json(error.status, error.body(), headers)


Handler = Callable[["BossApi", Request], Response]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + r"\Z")


@attrs.frozen
class Route:
    """One endpoint: a method, a path template with ``{name}`` parameters, and its handler."""

    method: str
    """HTTP verb."""
    template: str
    """Path template, e.g. 'v1/coord/{name}'."""
    handler: Handler = attrs.field(eq=False)
    """Function answering the request."""
    cutout: bool = False
    """Whether this is a cutout endpoint (subject to fault injection)."""
    pattern: re.Pattern[str] = attrs.field(init=False, eq=False, repr=False)

    @pattern.default
    def _pattern(self) -> re.Pattern[str]:
        return _compile(self.template)


# -- handlers ----------------------------------------------------------------------------------


def _resource_routes(kind: str, list_key: str, list_path: str, item_path: str) -> list[Route]:
    """The list, get, create, update and delete endpoints of one resource kind."""

    def call(method: str, api: BossApi, request: Request, *body: dict[str, Any]) -> Any:
        # Store methods take the URL's names in order, then the JSON body if any.
        return getattr(api.store, method)(*request.args, *body)

    def list_all(api: BossApi, request: Request) -> Response:
        return Response.json(200, {list_key: call(f"list_{kind}s", api, request)})

    def get(api: BossApi, request: Request) -> Response:
        return Response.json(200, call(f"get_{kind}", api, request))

    def create(api: BossApi, request: Request) -> Response:
        return Response.json(201, call(f"create_{kind}", api, request, request.json()))

    def update(api: BossApi, request: Request) -> Response:
        return Response.json(200, call(f"update_{kind}", api, request, request.json()))

    def delete(api: BossApi, request: Request) -> Response:
        call(f"delete_{kind}", api, request)
        return Response(204)

    return [
        Route("GET", list_path, list_all),
        Route("GET", item_path, get),
        Route("POST", item_path, create),
        Route("PUT", item_path, update),
        Route("DELETE", item_path, delete),
    ]


def _get_cutout(api: BossApi, request: Request) -> Response:
    return Response(200, read_cutout(api.store, request, api.max_cutout_bytes), "application/blosc")


def _post_cutout(api: BossApi, request: Request) -> Response:
    write_cutout(api.store, request, api.max_cutout_bytes)
    return Response(201)


def _cutout_to_black(api: BossApi, request: Request) -> Response:
    delete_region(api.store, request, api.max_cutout_bytes)
    return Response(200)


_COLLECTION = "v1/collection/{collection}"
_EXPERIMENT = _COLLECTION + "/experiment/{experiment}"
_CUTOUT = "v1/cutout/{collection}/{experiment}/{channel}/{resolution}/{x}/{y}/{z}"
_TO_BLACK = "v1/cutout/to_black/{collection}/{experiment}/{channel}/{resolution}/{x}/{y}/{z}"

ROUTES: tuple[Route, ...] = (
    *_resource_routes("collection", "collections", "v1/collection", _COLLECTION),
    *_resource_routes("coord_frame", "coords", "v1/coord", "v1/coord/{name}"),
    *_resource_routes("experiment", "experiments", _COLLECTION + "/experiment", _EXPERIMENT),
    *_resource_routes(
        "channel", "channels", _EXPERIMENT + "/channel", _EXPERIMENT + "/channel/{channel}"
    ),
    Route("GET", _CUTOUT, _get_cutout, cutout=True),
    Route("GET", _CUTOUT + "/{t}", _get_cutout, cutout=True),
    Route("POST", _CUTOUT, _post_cutout, cutout=True),
    Route("POST", _CUTOUT + "/{t}", _post_cutout, cutout=True),
    Route("PUT", _TO_BLACK, _cutout_to_black, cutout=True),
    Route("PUT", _TO_BLACK + "/{t}", _cutout_to_black, cutout=True),
)
"""Every endpoint the emulator serves."""


# -- the application ---------------------------------------------------------------------------


def _route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed = []
    for route in ROUTES:
        match = route.pattern.match(path)
        if match is None:
            continue
        if route.method == method:
            return route, {k: unquote(v) for k, v in match.groupdict().items()}
        allowed.append(route.method)
    if allowed:
        raise ApiError(
            405,
            ErrorCode.INVALID_URL,
            f"Method {method} is not allowed on /{path}/; use {', '.join(allowed)}.",
        )
    raise ApiError(404, ErrorCode.INVALID_URL, f"The emulator serves no BOSS endpoint at /{path}/.")


@attrs.define
class BossApi:
    """The emulator's request handling: authentication, fault injection, routing, counting."""

    store: Store
    """Resources and voxel data."""
    _token: str = attrs.field(alias="token", repr=False)
    max_cutout_bytes: int
    """Largest cutout (uncompressed bytes) a GET or POST may move; larger ones get 413."""
    _faults: Faults = attrs.field(alias="faults", factory=Faults)
    _rng: random.Random = attrs.field(init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _by_status: collections.Counter[int] = attrs.field(factory=collections.Counter, init=False)
    _injected: int = attrs.field(default=0, init=False)
    _unanswered: int = attrs.field(default=0, init=False)
    _window_start: float | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self._faults.seed)

    @property
    def faults(self) -> Faults:
        """The faults injected now."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults instance, got {faults!r}")
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._window_start = None

    def stats(self) -> EmulatorStats:
        """A snapshot of the request counters."""
        with self._lock:
            by_status = dict(sorted(self._by_status.items()))
            injected, unanswered = self._injected, self._unanswered
        total = sum(by_status.values())
        succeeded = sum(n for status, n in by_status.items() if status < 400)
        return EmulatorStats(total, succeeded, total - succeeded, injected, by_status, unanswered)

    def reset_stats(self) -> None:
        """Set every request counter back to zero."""
        with self._lock:
            self._by_status.clear()
            self._injected = 0
            self._unanswered = 0

    def count_unanswered(self) -> None:
        """Count a request the HTTP layer held, frozen, and never answered."""
        with self._lock:
            self._unanswered += 1

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request: ``target`` is the request line's URL (path and query)."""
        faults = self._faults
        if faults.latency:
            time.sleep(faults.latency)
        url = urlsplit(target)
        path = url.path.strip("/")
        injected = False
        try:
            route, params = _route(method, path)
            if route.cutout and self._draw_fault(faults):
                injected = True
                response = self._fault_response(faults.status)
            else:
                self._authenticate(headers)
                request = Request(method, path, parse_qs(url.query), headers, body, params)
                response = route.handler(self, request)
        except ApiError as error:
            response = Response.error(error, self._error_headers(error))
        except Exception as error:  # the client gets a 500, as from the real BOSS
            logger.exception("BOSS emulator: unhandled error in %s /%s/", method, path)
            response = Response.error(
                ApiError(500, ErrorCode.UNHANDLED_EXCEPTION, f"{type(error).__name__}: {error}")
            )
        self._count(response.status, injected)
        return response

    def reject(self, error: ApiError) -> Response:
        """Answer (and count) a request the HTTP layer refuses before reading its body."""
        self._count(error.status, injected=False)
        return Response.error(error)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        value = headers.get("Authorization")
        if not value:
            raise ApiError(
                401, ErrorCode.UNAUTHENTICATED, "Authentication credentials were not provided."
            )
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(
            token.strip().encode(), self._token.encode()
        ):
            raise ApiError(401, ErrorCode.UNAUTHENTICATED, "Invalid token.")

    @staticmethod
    def _error_headers(error: ApiError) -> tuple[tuple[str, str], ...]:
        return (("WWW-Authenticate", "Token"),) if error.status == 401 else ()

    def _draw_fault(self, faults: Faults) -> bool:
        if faults.error_rate <= 0.0:
            return False
        with self._lock:
            window = faults.error_window
            if window is not None:
                now = time.monotonic()
                if self._window_start is None:
                    self._window_start = now
                if now - self._window_start >= window:
                    return False
            return self._rng.random() < faults.error_rate

    @staticmethod
    def _fault_response(status: int) -> Response:
        phrase = http.HTTPStatus(status).phrase
        return Response.error(
            ApiError(
                status, ErrorCode.INJECTED_FAULT, f"{phrase} (fault injected by the BOSS emulator)."
            )
        )

    def _count(self, status: int, injected: bool) -> None:
        with self._lock:
            self._by_status[status] += 1
            self._injected += injected
