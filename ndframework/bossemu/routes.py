"""The URL table and the request pipeline: authentication, fault injection, routing, the
resource service and the metadata service (the volume and downsample services are in
`ndframework.bossemu.volume` and `ndframework.bossemu.downsampling`; groups, permissions and
users in `ndframework.bossemu.groups`, `ndframework.bossemu.permissions` and
`ndframework.bossemu.users`).

Each route is the regular expression of the BOSS's own URL configuration: boss
django/boss/urls.py includes django/bosscore/urls/resource_urls.py, coord_urls.py,
group-urls.py and permission-urls.py, django/bossmeta/urls.py, django/bossspatialdb/urls.py,
urls_to_black.py and urls_downsample.py, django/sso/urls/user-urls.py, and
django/bossobject/urls/reserve_urls.py, ids_urls.py and boundingbox_urls.py. One route is
not the BOSS's: Keycloak's token endpoint, so that users can log in (`ndframework.bossemu.
users`). So a cutout range must be ``\\d+:\\d+`` and a resolution one digit: a
URL that no pattern matches (a negative range, say) gets Django's 404 page, and a method the
view lacks DRF's 405.

The resource views are `ndframework.bossemu.resources.ResourceTree`'s methods (boss
django/bosscore/views/views_resource.py); the metadata view is boss django/bossmeta/views.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import attrs

from . import downsampling, groups, permissions, users, volume
from .datarequest import Backend
from .errors import BossError, ErrorCodes, ErrorPage, ServerError, drf_error_page
from .faults import Faults, FaultInjector
from .http import (
    CUTOUT_RENDERERS,
    JSON_RENDERERS,
    DRFError,
    Request,
    Response,
    authenticate,
    logger,
    negotiate,
)
from .paths import ResourcePath

__all__ = ["Route", "ROUTES", "BossApi", "not_found_page"]

Handler = Callable[[Backend, Request], Response]



@attrs.frozen
class Route:
    """One URL pattern and the view serving it: a handler per method.

    Matched as Django matches an ``include``d pattern: the path (without its leading slash)
    must start with ``prefix`` (the top-level pattern of boss/urls.py), and ``pattern`` is
    *searched* in the rest, so that a pattern without ``^`` or ``$`` may match part of it.
    """

    prefix: str
    """The top-level prefix, e.g. ``'v1/collection/'``."""
    pattern: str
    """The included pattern, a regular expression with named groups."""
    handlers: Mapping[str, Handler] = attrs.field(eq=False)
    """Method to handler."""
    cutout: bool = False
    """Whether faults hit it by default (the cutout service)."""
    renders: tuple[str, ...] = JSON_RENDERERS
    """The media types its view can render, in order."""
    drf: bool = True
    """Whether Django REST framework serves it (content negotiation, token authentication);
    False for the Keycloak stand-in (`ndframework.bossemu.users`)."""
    regex: re.Pattern[str] = attrs.field(init=False, eq=False, repr=False)

    @regex.default
    def _regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` matches, else None."""
        if not path.startswith(self.prefix):
            return None
        found = self.regex.search(path[len(self.prefix) :])
        if found is None:
            return None
        return {k: unquote(v) for k, v in found.groupdict().items() if v is not None}


# -- the resource service ----------------------------------------------------------------------


def _path(params: Mapping[str, str]) -> ResourcePath:
    return ResourcePath(**params)


def _resource_view(backend: Backend, request: Request) -> Response:
    tree, path = backend.resources, _path(request.params)
    if request.method == "GET":
        return Response.json(200, tree.get(path))
    if request.method == "DELETE":
        tree.delete(path)
        return Response(204)
    body = request.json()
    if not isinstance(body, dict):
        raise DRFError(400, "Invalid data. Expected a dictionary, but got list.")
    if request.method == "POST":
        return Response.json(201, tree.create(path, body))
    return Response.json(200, tree.update(path, body))


def _list_view(kind: str) -> Handler:
    def view(backend: Backend, request: Request) -> Response:
        parent = _path(request.params) if request.params else None
        return Response.json(200, backend.resources.list(kind, parent))

    return view


_RESOURCE = dict.fromkeys(("GET", "POST", "PUT", "DELETE"), _resource_view)


# -- the metadata service (django/bossmeta/views.py) ------------------------------------------


def _meta_view(backend: Backend, request: Request) -> Response:
    key, value = request.query_value("key"), request.query_value("value")
    method = request.method
    if method in ("POST", "PUT") and (key is None or value is None):
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, "Missing optional argument key/value in the request"
        )
    if method == "DELETE" and key is None:
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, "Missing optional argument key in the request"
        )
    tree = backend.resources
    lookup_key = tree.resolve(_path(request.params)).lookup_key
    if method == "GET":
        if key is None:
            return Response.json(200, {"keys": tree.meta_keys(lookup_key)})
        stored = tree.meta_get(lookup_key, key)
        if stored is None:
            raise BossError(
                ErrorCodes.INVALID_POST_ARGUMENT,
                f"Invalid request. Key {key} Not found in the database",
            )
        return Response.json(200, {"key": key, "value": stored})
    if method == "DELETE":
        if not tree.meta_delete(lookup_key, key):  # type: ignore[arg-type]
            raise BossError(ErrorCodes.INVALID_POST_ARGUMENT, f"[ERROR]- Key {key} not found ")
        return Response(204)
    exists = tree.meta_get(lookup_key, key) is not None  # type: ignore[arg-type]
    if method == "POST" and exists:
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, f"Invalid request. The key {key} already exists"
        )
    if method == "PUT" and not exists:
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, f"Invalid request. The key {key} does not exists"
        )
    tree.meta_set(lookup_key, key, value)  # type: ignore[arg-type]
    return Response(201 if method == "POST" else 200)


_META = dict.fromkeys(("GET", "POST", "PUT", "DELETE"), _meta_view)

# -- the table ---------------------------------------------------------------------------------

_N = r"[\w_-]+"
_CHANNEL = rf"(?P<collection>{_N})/(?P<experiment>{_N})/(?P<channel>{_N})"
_REGION = r"(?P<resolution>\d)/(?P<x_range>\d+:\d+)/(?P<y_range>\d+:\d+)/(?P<z_range>\d+:\d+)"
_CUTOUT = {"GET": volume.get_cutout, "POST": volume.post_cutout}
_TO_BLACK = {"PUT": volume.cutout_to_black}
_DOWNSAMPLE = {
    "GET": downsampling.get_downsample,
    "POST": downsampling.start_downsample,
    "DELETE": downsampling.cancel_downsample,
}
_C = "v1/collection/"
_PERMISSION_METHODS = ("GET", "POST", "PATCH", "DELETE")
_GROUP = dict.fromkeys(("GET", "POST", "DELETE"), groups.group_view)
_USER = dict.fromkeys(("GET", "POST", "DELETE"), users.user_view)

ROUTES: tuple[Route, ...] = (
    # boss/urls.py's order; within each prefix, its urls module's order
    Route("v1/meta/", rf"{_CHANNEL}/?", _META),  # bossmeta/urls.py
    Route("v1/meta/", rf"(?P<collection>{_N})/(?P<experiment>{_N})/?", _META),
    Route("v1/meta/", rf"(?P<collection>{_N})/?$", _META),
    # boss/urls.py's r'^v1/permissions/?' over bosscore/urls/permission-urls.py's r'^'
    Route("v1/permissions", r"^", dict.fromkeys(_PERMISSION_METHODS, permissions.permission_view)),
    # bosscore/urls/group-urls.py
    Route("v1/groups/", rf"(?P<group_name>{_N})/maintainers/?(?P<user_name>{_N})?/?",
          dict.fromkeys(("GET", "POST", "DELETE"), groups.maintainer_view)),
    Route("v1/groups/", rf"(?P<group_name>{_N})/members/?(?P<user_name>{_N})?/?",
          dict.fromkeys(("GET", "POST", "DELETE"), groups.member_view)),
    Route("v1/groups/", rf"(?P<group_name>{_N})/?", _GROUP),
    Route("v1/groups/", r"^", _GROUP),
    # bossspatialdb/urls.py (v1/cutout/ is tried before v1/cutout/to_black/)
    Route("v1/cutout/", rf"^{_CHANNEL}/{_REGION}/(?P<t_range>\d+:\d+?)/?$", _CUTOUT, True,
          CUTOUT_RENDERERS),
    Route("v1/cutout/", rf"^{_CHANNEL}/{_REGION}/?$", _CUTOUT, True, CUTOUT_RENDERERS),
    # bossspatialdb/urls_to_black.py
    Route("v1/cutout/to_black/", rf"^{_CHANNEL}/{_REGION}/(?P<t_range>\d+:\d+?)/?$", _TO_BLACK,
          True),
    Route("v1/cutout/to_black/", rf"^{_CHANNEL}/{_REGION}/?$", _TO_BLACK, True),
    Route("v1/downsample/", rf"^{_CHANNEL}/?$", _DOWNSAMPLE),  # urls_downsample.py
    # bosscore/urls/resource_urls.py
    Route(_C, rf"(?P<collection>{_N})/experiment/(?P<experiment>{_N})/channel/(?P<channel>{_N})/?",
          _RESOURCE),
    Route(_C, rf"(?P<collection>{_N})/experiment/(?P<experiment>{_N})/channel/?",
          {"GET": _list_view("channel")}),
    Route(_C, rf"(?P<collection>{_N})/experiment/(?P<experiment>{_N})/?", _RESOURCE),
    Route(_C, rf"(?P<collection>{_N})/experiment/?", {"GET": _list_view("experiment")}),
    Route(_C, r"(?P<collection>[\w-]+)/?", _RESOURCE),
    Route(_C, r"^", {"GET": _list_view("collection")}),
    # bosscore/urls/coord_urls.py
    Route("v1/coord/", rf"(?P<coord>{_N})/?$", _RESOURCE),
    Route("v1/coord/", r"^$", {"GET": _list_view("coord")}),
    Route("v1/sso/user/", rf"(?P<user_name>{_N})/?", _USER),  # sso/urls/user-urls.py
    # bossobject/urls/
    Route("v1/reserve/", rf"{_CHANNEL}/(?P<num_ids>\d+)/?$", {"GET": volume.reserve_ids}),
    Route("v1/ids/", rf"^{_CHANNEL}/{_REGION}/?(?P<t_range>\d+:\d+?)?/?$",
          {"GET": volume.ids_in_region}),
    Route("v1/boundingbox/", rf"{_CHANNEL}/(?P<resolution>\d)/(?P<id>\d+)/?$",
          {"GET": volume.bounding_box}),
    # not the BOSS's: Keycloak's token endpoint, for logging users in
    Route(users.TOKEN_PATH, r"^/?$", {"POST": users.token_view}, drf=False),
)
"""Every endpoint served, in the order Django tries them."""


def not_found_page() -> ErrorPage:
    """Django's 404 page with ``DEBUG = False`` and no ``404.html``: a URL no pattern matches.

    >>> not_found_page().status
    404
    """
    body = b"<h1>Not Found</h1><p>The requested resource was not found on this server.</p>"
    return ErrorPage(404, "text/html", body)


def _route(path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        params = route.match(path)
        if params is not None:
            return route, params
    return None


# -- the application ---------------------------------------------------------------------------

# A compressed body can exceed its raw size by blosc's header and a little slack.
_BODY_SLACK = 1 << 20


@attrs.define
class BossApi:
    """The emulator's request pipeline: authentication, faults, routing, counting."""

    backend: Backend
    """What the views work on."""
    _token: str = attrs.field(alias="token", repr=False)
    injector: FaultInjector = attrs.field(factory=FaultInjector)
    """Faults in force and request counters."""

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.injector.faults

    @property
    def frozen(self) -> bool:
        """Whether requests are held unanswered."""
        return self.injector.faults.frozen

    def count_unanswered(self) -> None:
        """Count a request held and never answered."""
        self.injector.count_unanswered()

    def body_refusal(self, length: int) -> Response | None:
        """413 for a body no cutout may have (uint64 cutouts may be four times the limit,
        ``is_too_large``, django/bossspatialdb/parsers.py)."""
        if length <= 4 * self.backend.max_cutout_bytes + _BODY_SLACK:
            return None
        error = BossError(
            ErrorCodes.REQUEST_TOO_LARGE,
            "Cutout request is over 500MB when uncompressed. Reduce cutout dimensions.",
        )
        response = Response.error(error)
        self.injector.count(response.status)
        return response

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Answer one request; ``target`` is the request line's URL (path and query)."""
        faults = self.injector.faults
        if faults.latency:
            time.sleep(faults.latency)
        url = urlsplit(target)
        path = url.path.lstrip("/")
        injected = False
        try:
            routed = _route(path)
            fault = self.injector.draw(routed is not None and routed[0].cutout)
            if fault is not None:
                injected = True
                response = Response.page(fault)
            elif routed is None:
                response = Response.page(not_found_page())
            else:
                response = self._dispatch(routed, method, url, headers, body)
        except Exception as error:  # the client gets Django's 500, as from the real BOSS
            logger.exception("BOSS emulator: unhandled error in %s %s", method, url.path)
            response = Response.page(ServerError(type(error).__name__).page)
        self.injector.count(response.status, injected)
        return response

    def _dispatch(
        self,
        routed: tuple[Route, dict[str, str]],
        method: str,
        url: SplitResult,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        route, params = routed
        # DRF's APIView.initial: content negotiation, then authentication; the method after
        accepted = negotiate(headers.get("Accept"), route.renders) if route.drf else "*/*"
        if accepted is None:
            refused = drf_error_page(406, "Could not satisfy the request Accept header.")
            return Response.page(refused)
        refusal = authenticate(headers, self._token) if route.drf else None
        # a Keycloak token logs its user in (bossoidc2), then acts as the emulator's one user
        if refusal is not None and not self.backend.accounts.bearer_login(
            headers.get("Authorization")
        ):
            return refusal
        handler = route.handlers.get(method)
        if handler is None:
            return Response.page(drf_error_page(405, f'Method "{method}" not allowed.'))
        request = Request(method, url.path, parse_qs(url.query), headers, body, params, accepted)
        try:
            return handler(self.backend, request)
        except BossError as error:
            return Response.error(error)
        except ServerError as error:
            logger.debug("BOSS emulator: %s answers 500 as the BOSS would: %s", method,
                         error.reason)
            return Response.page(error.page)
        except DRFError as error:
            return Response.page(error.page)
