"""Users: the BOSS's user service (``/v1/sso/user/<name>``, boss django/sso/views/views_user.py,
``BossUser``; URLs django/sso/urls/user-urls.py) and a stand-in for the Keycloak it drives.

The BOSS keeps its users in Keycloak (boss-tools bossutils/src/bossutils/keycloak.py,
``KeyCloakClient``); a user is known to the BOSS's own views (groups, permissions) only once
they have logged in: their first request with a Keycloak token creates the Django user
(`ndframework.bossemu.accounts.Accounts.log_in`). So that clients can do that against the
emulator as intern's group suite does, it also answers Keycloak's password grant at
``/auth/realms/BOSS/protocol/openid-connect/token`` (the path intern derives from the API's
host). A request carrying such a token logs its user in, and is then answered as every other
request is, as bossadmin's. No password policy is enforced.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from .accounts import ADMIN_USER
from .datarequest import Backend
from .errors import KeycloakError, ServerError
from .http import Request, Response

__all__ = ["user_view", "token_view", "TOKEN_PATH"]

TOKEN_PATH = "auth/realms/BOSS/protocol/openid-connect/token"
"""Keycloak's token endpoint for the BOSS realm (``OIDC_OP_TOKEN_ENDPOINT``, boss
django/boss/settings/keycloak.py), without its leading slash."""
_ACCESS_LIFETIME = 300  # seconds: Keycloak's default access token lifespan


def user_view(backend: Backend, request: Request) -> Response:
    """``BossUser``: a user's Keycloak data (200), a new user (201), a user deleted (204)."""
    accounts, name = backend.accounts, request.params["user_name"]
    if request.method == "GET":
        user = accounts.keycloak_user(name)
        if user is None:
            raise KeycloakError(f"Error getting user '{name}' from Keycloak", 404,
                                {"error": "User not found"})
        body = {"id": user["id"], "username": user["username"], "enabled": True}
        for field, key in (("firstName", "first_name"), ("lastName", "last_name"),
                           ("email", "email")):
            if user[key] is not None:  # Keycloak leaves out what is unset
                body[field] = user[key]
        # filter_roles keeps the BOSS's roles only; bossadmin has admin (bosscore/test/setup_db.py)
        body["realmRoles"] = ["admin"] if name == ADMIN_USER else []
        return Response.json(200, body)
    if request.method == "POST":
        data = request.json()
        if not isinstance(data, dict):
            raise ServerError(f"'{type(data).__name__}' object has no attribute 'get'")
        taken = accounts.add_keycloak_user(
            name, data.get("first_name"), data.get("last_name"), data.get("email"),
            data.get("password"),
        )
        if taken is not None:
            raise KeycloakError(f"Error addng user '{name}' to Keycloak", 409,
                                {"errorMessage": taken})
        return Response(201)
    if name == ADMIN_USER:  # outside any Keycloak error: RESP_CODES' 500
        raise KeycloakError(f"Cannot delete user {ADMIN_USER} from Keycloak")
    if not accounts.delete_keycloak_user(name):
        raise KeycloakError(f"Error deleting user '{name}' from Keycloak", 404,
                            {"error": "User not found"})
    return Response(204)


def token_view(backend: Backend, request: Request) -> Response:
    """Keycloak's token endpoint, password grant for the ``endpoint`` client only: the
    access token (200), or Keycloak's OAuth error body (400 or 401)."""
    form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "password":
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
    if form.get("client_id") != "endpoint":
        return _oauth_error(401, "invalid_client", "Invalid client credentials")
    token = backend.accounts.issue_token(form.get("username", ""), form.get("password", ""))
    if token is None:
        return _oauth_error(401, "invalid_grant", "Invalid user credentials")
    return Response.json(200, {
        "access_token": token,
        "expires_in": _ACCESS_LIFETIME,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "email profile",
    })


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Response(status, body, "application/json")
