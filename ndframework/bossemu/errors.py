"""The BOSS's errors: its error codes, their HTTP statuses and the bodies it sends.

Follows the BOSS's own source, jhuapl-boss/boss:

- ``django/bosscore/error.py``: ``ErrorCodes``, ``RESP_CODES`` and ``BossHTTPError``, whose
  JSON body is ``{"status": <http status>, "code": <error code>, "message": <text>}``;
  a code missing from ``RESP_CODES`` answers 400 (``BossError.__init__``).
- ``django/bosscore/views/views_resource.py``, ``django/bosscore/request.py`` and
  ``django/bosscore/privileges.py``: the texts of the common cases.
- ``django/bosscore/renderer_helper.py``: the 403 and 429 bodies of the cutout and tile
  renderers, which carry code 3004 whatever the cause.
- Django REST framework: ``{"detail": ...}`` bodies for what the BOSS leaves to it (a bad
  token); Django: the bare HTML page of an unhandled exception (``DEBUG = False`` in
  ``django/boss/settings/production.py`` and no ``500.html`` template).

Validation failures of a create or update are one 400 with code 1003 whose message is the
Python text of Django REST framework's error dict (``"{}".format(serializer.errors)``), as
`validation_error` renders it:

>>> err = validation_error({"name": [FieldError("Invalid Name.", "invalid")]})
>>> err.status, int(err.code)
(400, 1003)
>>> err.message
"{'name': [ErrorDetail(string='Invalid Name.', code='invalid')]}"
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "ErrorCodes",
    "RESP_CODES",
    "BossError",
    "FieldError",
    "ErrorPage",
    "ServerError",
    "status_for",
    "validation_error",
    "resource_not_found",
    "marked_for_deletion",
    "data_resource_not_found",
    "data_marked_for_deletion",
    "in_use",
    "group_not_found",
    "user_not_found",
    "KeycloakError",
    "permission_denied",
    "missing_role",
    "admin_only",
    "throttled",
    "access_denied",
    "drf_error_page",
    "server_error_page",
    "gateway_error_page",
]


class ErrorCodes(enum.IntEnum):
    """Every error code the BOSS sends, by its own names (bosscore/error.py)."""

    # URL validation
    INVALID_URL = 1000
    INVALID_CUTOUT_ARGS = 1001
    TYPE_ERROR = 1002
    INVALID_POST_ARGUMENT = 1003
    UNABLE_TO_VALIDATE = 1004
    INVALID_ARGUMENT = 1005
    BAD_REQUEST = 1006
    # Request validation
    REQUEST_TOO_LARGE = 2000
    DATATYPE_DOES_NOT_MATCH = 2001
    DATA_DIMENSION_MISMATCH = 2002
    DATATYPE_NOT_SUPPORTED = 2003
    INVALID_REQUEST = 2004
    UNSUPPORTED_4D = 2005
    INVALID_STATE = 2006
    # Unauthorized
    MISSING_ROLE = 3000
    MISSING_PERMISSION = 3001
    UNRECOGNIZED_PERMISSION = 3002
    INGEST_NOT_CREATOR = 3003
    ACCESS_DENIED_UNKNOWN = 3004
    # Database errors
    RESOURCE_NOT_FOUND = 4000
    GROUP_NOT_FOUND = 4001
    USER_NOT_FOUND = 4002
    INTEGRITY_ERROR = 4003
    OBJECT_NOT_FOUND = 4004
    RESOURCE_MARKED_FOR_DELETION = 4005
    # IO errors
    IO_ERROR = 5000
    UNSUPPORTED_TRANSPORT_FORMAT = 5001
    SERIALIZATION_ERROR = 5002
    DESERIALIZATION_ERROR = 5003
    # Already exists
    GROUP_EXISTS = 6001
    RESOURCE_EXISTS = 6002
    # SSO errors
    KEYCLOAK_EXCEPTION = 7001
    INVALID_ROLE = 7002
    # To be implemented
    FUTURE = 9000
    BOSS_SYSTEM_ERROR = 9001
    UNHANDLED_EXCEPTION = 9002
    UNSUPPORTED_VERSION = 9003


_E = ErrorCodes
RESP_CODES: Mapping[ErrorCodes, int] = {
    _E.INVALID_URL: 400,
    _E.INVALID_CUTOUT_ARGS: 400,
    _E.TYPE_ERROR: 400,
    _E.INVALID_POST_ARGUMENT: 400,
    _E.INVALID_ARGUMENT: 400,
    _E.BAD_REQUEST: 400,
    _E.UNABLE_TO_VALIDATE: 400,
    _E.REQUEST_TOO_LARGE: 413,
    _E.DATATYPE_DOES_NOT_MATCH: 400,
    _E.DATA_DIMENSION_MISMATCH: 400,
    _E.DATATYPE_NOT_SUPPORTED: 400,
    _E.UNSUPPORTED_4D: 400,
    _E.INVALID_STATE: 409,
    _E.INVALID_REQUEST: 404,
    _E.MISSING_ROLE: 403,
    _E.MISSING_PERMISSION: 403,
    _E.UNRECOGNIZED_PERMISSION: 404,
    _E.INGEST_NOT_CREATOR: 403,
    _E.RESOURCE_NOT_FOUND: 404,
    _E.GROUP_NOT_FOUND: 404,
    _E.USER_NOT_FOUND: 404,
    _E.INTEGRITY_ERROR: 400,
    _E.OBJECT_NOT_FOUND: 404,
    _E.RESOURCE_MARKED_FOR_DELETION: 404,
    _E.IO_ERROR: 404,
    _E.UNSUPPORTED_TRANSPORT_FORMAT: 404,
    _E.SERIALIZATION_ERROR: 404,
    _E.DESERIALIZATION_ERROR: 404,
    _E.GROUP_EXISTS: 404,
    _E.RESOURCE_EXISTS: 404,
    _E.KEYCLOAK_EXCEPTION: 500,
    _E.INVALID_ROLE: 403,
    _E.FUTURE: 404,
    _E.BOSS_SYSTEM_ERROR: 400,
    _E.UNHANDLED_EXCEPTION: 500,
    _E.UNSUPPORTED_VERSION: 400,
}
"""The HTTP status of each code (``RESP_CODES``, bosscore/error.py). ``ACCESS_DENIED_UNKNOWN``
(3004) is absent there, as in the BOSS: it is only sent by the renderers, with 403 or 429."""
del _E


def status_for(code: int) -> int:
    """The HTTP status the BOSS sends with `code`: its ``RESP_CODES`` entry, else 400.

    >>> status_for(ErrorCodes.RESOURCE_NOT_FOUND), status_for(ErrorCodes.INVALID_STATE)
    (404, 409)
    >>> status_for(ErrorCodes.ACCESS_DENIED_UNKNOWN)
    400
    """
    return RESP_CODES.get(code, 400)  # type: ignore[call-overload]


class BossError(Exception):
    """An error the BOSS answers with its JSON body (``BossError``/``BossHTTPError``).

    Parameters
    ----------
    code
        One of `ErrorCodes` (a plain int is converted).
    message
        The text of the body's ``message``.
    status
        The HTTP status; by default the code's (`status_for`). Only the renderers' 403 and
        429 bodies (code 3004) need another.

    Examples
    --------
    >>> err = BossError(ErrorCodes.RESOURCE_NOT_FOUND, "col1 does not exist.")
    >>> err.status
    404
    >>> err.body()
    {'status': 404, 'code': 4000, 'message': 'col1 does not exist.'}
    >>> err.to_json()
    b'{"status": 404, "code": 4000, "message": "col1 does not exist."}'
    """

    def __init__(self, code: int, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCodes(code)
        self.message = message
        self.status = status_for(self.code) if status is None else status

    def body(self) -> dict[str, Any]:
        """The JSON body, keys in the BOSS's order: status, code, message."""
        return {"status": self.status, "code": int(self.code), "message": self.message}

    def to_json(self) -> bytes:
        """The body as the bytes of a JSON document."""
        return json.dumps(self.body()).encode()

    def __repr__(self) -> str:
        return f"BossError({self.code.name}, {self.message!r}, status={self.status})"


@attrs.frozen
class FieldError:
    """One Django REST framework ``ErrorDetail``: a field's error text and its code."""

    string: str
    """The text, e.g. ``'This field is required.'``."""
    code: str
    """DRF's code, e.g. ``'required'``, ``'invalid'``, ``'unique'``."""

    def __repr__(self) -> str:
        # DRF 3.11 (the BOSS's pin in requirements.txt): ErrorDetail.__repr__.
        return f"ErrorDetail(string={self.string!r}, code={self.code!r})"


def validation_error(errors: Mapping[str, Sequence[FieldError | str]]) -> BossError:
    """The 400 (code 1003) the BOSS answers when a serializer rejects a create or update.

    Its message is ``"{}".format(serializer.errors)`` (bosscore/views/views_resource.py):
    the dict's Python text, each DRF ``ErrorDetail`` in its repr; plain strings stay strings
    (the update serializers' ``'fields'`` error in bosscore/serializers.py).
    """
    text = "{" + ", ".join(f"{key!r}: {list(value)!r}" for key, value in errors.items()) + "}"
    return BossError(ErrorCodes.INVALID_POST_ARGUMENT, text)


def resource_not_found(name: str) -> BossError:
    """404, 4000: a resource view found no row (``BossResourceNotFoundError``)."""
    return BossError(ErrorCodes.RESOURCE_NOT_FOUND, f"{name} does not exist.")


def marked_for_deletion() -> BossError:
    """404, 4005: a resource GET on a soft-deleted row (bosscore/views/views_resource.py)."""
    return BossError(
        ErrorCodes.RESOURCE_MARKED_FOR_DELETION,
        "Invalid Request. This Resource has been marked for deletion",
    )


def data_resource_not_found(kind: str, name: str) -> BossError:
    """404, 4000: a data service (cutout, reserve, meta...) found no row (bosscore/request.py).

    >>> data_resource_not_found("Channel", "ch1").message
    'Channel ch1 not found'
    """
    return BossError(ErrorCodes.RESOURCE_NOT_FOUND, f"{kind} {name} not found")


def data_marked_for_deletion(name: str) -> BossError:
    """404, 4005: a data service on a soft-deleted resource (bosscore/request.py)."""
    return BossError(
        ErrorCodes.RESOURCE_MARKED_FOR_DELETION,
        f"Invalid Request. This resource {name} has been marked for deletion",
    )


_IN_USE = {
    "collection": "Collection {} has experiments that reference it and cannot be deleted."
    "Please delete the experiments first.",
    "coord": " Coordinate frame {} has experiments that reference it and cannot be deleted."
    "Please delete the experiments first.",
    "experiment": " Experiment {} has channels that reference it and cannot be deleted."
    "Please delete the channels first.",
    "channel": "Channel {} is the source channel of other channels and cannot be deleted",
}


def in_use(kind: str, name: str) -> BossError:
    """400, 4003: deleting a resource that live resources still reference.

    The texts are the BOSS's, missing spaces and leading spaces included
    (bosscore/views/views_resource.py, each ``delete``).

    >>> in_use("collection", "col1").message
    'Collection col1 has experiments that reference it and cannot be deleted.Please delete the experiments first.'
    """
    return BossError(ErrorCodes.INTEGRITY_ERROR, _IN_USE[kind].format(name))


def group_not_found(name: object) -> BossError:
    """404, 4001: no group of that name (``BossGroupNotFoundError``, bosscore/error.py).

    >>> group_not_found("foo").body()
    {'status': 404, 'code': 4001, 'message': 'foo does not exist.'}
    """
    return BossError(ErrorCodes.GROUP_NOT_FOUND, f"{name} does not exist.")


def user_not_found(name: object) -> BossError:
    """404, 4002: no (logged in) user of that name (``BossUserNotFoundError``,
    bosscore/error.py); the BOSS knows a user only once they have logged in."""
    return BossError(
        ErrorCodes.USER_NOT_FOUND, f"{name} does not exist. Ensure that the user has logged in"
    )


class KeycloakError(BossError):
    """``BossKeycloakError`` (bosscore/error.py): code 7001 with the status Keycloak answered
    (500 when no Keycloak error is being handled), and Keycloak's own error keys merged
    into the body.

    >>> KeycloakError("Error deleting user 'x'", 404, {"error": "User not found"}).body()
    {'status': 404, 'code': 7001, 'message': "Error deleting user 'x'", 'error': 'User not found'}
    """

    def __init__(
        self, message: str, status: int | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(ErrorCodes.KEYCLOAK_EXCEPTION, message, status=status)
        self.data = dict(data or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: status, code, message, then Keycloak's keys."""
        return {**super().body(), **self.data}


def permission_denied(permission: str, name: str) -> BossError:
    """403, 3001: the user lacks a permission on a resource (``BossPermissionError``)."""
    return BossError(
        ErrorCodes.MISSING_PERMISSION, f"Missing {permission} permissions on the resource {name}"
    )


def missing_role(user: str, role: str) -> BossError:
    """403, 3000: a create or delete without the role (``check_role``, bosscore/privileges.py)."""
    return BossError(ErrorCodes.MISSING_ROLE, f"{user} does not have the required role {role}")


def admin_only(what: str) -> BossError:
    """403, 3001: a channel's bucket, cv_path or storage_type set by a non-admin.

    `what` is the rest of the BOSS's sentence (bosscore/views/views_resource.py,
    ``ChannelDetail.post``/``put``): ``"set bucket name"``, ``"set cv_path"`` or
    ``"change storage_type after creation"``.
    """
    return BossError(ErrorCodes.MISSING_PERMISSION, f"Only admins can {what}")


_THROTTLED = {
    "user": "User is throttled. Expected available tomorrow.",
    "api": "API is throttled. Expected available tomorrow.",
    "system": "System is throttled. Expected available tomorrow.",
}


def throttled(scope: str = "user") -> BossError:
    """429 from a throttled cutout or tile request.

    The text is ``BossThrottle``'s for `scope` (``"user"``, ``"api"`` or ``"system"``,
    django/boss/throttling.py); the body is ``check_for_429``'s, code 3004
    (bosscore/renderer_helper.py). The BOSS sends no ``Retry-After``: its limits reset daily.

    >>> throttled().body()
    {'status': 429, 'code': 3004, 'message': 'User is throttled. Expected available tomorrow.'}
    """
    return BossError(ErrorCodes.ACCESS_DENIED_UNKNOWN, _THROTTLED[scope], status=429)


def access_denied() -> BossError:
    """403 from the cutout and tile renderers, whatever the cause (``check_for_403``)."""
    return BossError(
        ErrorCodes.ACCESS_DENIED_UNKNOWN, "Access denied, are you logged in?", status=403
    )


@attrs.frozen
class ErrorPage:
    """A response the BOSS sends that is not its JSON error body."""

    status: int
    """The HTTP status."""
    content_type: str
    """The ``Content-Type`` header."""
    body: bytes
    """The bytes of the body."""


class ServerError(Exception):
    """An exception the BOSS leaves unhandled, answered with Django's 500 page.

    The emulator raises it where the BOSS's view would raise (e.g. listing the experiments
    of a missing collection: ``ExperimentList.list`` does not catch ``DoesNotExist``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.page = server_error_page()


def drf_error_page(status: int, detail: str) -> ErrorPage:
    """Django REST framework's own error body, ``{"detail": ...}``.

    The BOSS leaves authentication to DRF (django/boss/settings/keycloak.py,
    ``boss.authentication.TokenAuthentication``): a bad token is answered
    ``drf_error_page(401, "Invalid token.")``; no token on a write,
    ``drf_error_page(401, "Authentication credentials were not provided.")``.

    >>> drf_error_page(401, "Invalid token.").body
    b'{"detail": "Invalid token."}'
    """
    return ErrorPage(status, "application/json", json.dumps({"detail": detail}).encode())


def server_error_page() -> ErrorPage:
    """Django's page for an unhandled exception with ``DEBUG = False`` and no template.

    >>> server_error_page().body
    b'<h1>Server Error (500)</h1>'
    """
    return ErrorPage(500, "text/html", b"<h1>Server Error (500)</h1>")


_GATEWAY_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}


def gateway_error_page(status: int) -> ErrorPage:
    """The HTML page the load balancer in front of the BOSS answers when the API is down or
    slow (502, 503, 504): no JSON, so a client must not expect ``code`` or ``message``.

    >>> gateway_error_page(502).body.splitlines()[0]
    b'<html>'
    """
    reason = _GATEWAY_REASONS[status]
    title = f"{status} {reason}"
    html = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return ErrorPage(status, "text/html", html.encode())
