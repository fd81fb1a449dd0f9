"""Requests to the BOSS API emulator as the tests make them, and checks of its error bodies."""

from __future__ import annotations

import pytest
import requests
from requests import HTTPError


def http_error(call, *args, **kwargs) -> requests.Response:
    """The response of the HTTPError that intern raises for ``call``."""
    with pytest.raises(HTTPError) as info:
        call(*args, **kwargs)
    return info.value.response


def boss_error(response: requests.Response, status: int, code: int) -> str:
    """The message of the BOSS's JSON error body (boss django/bosscore/error.py
    ``BossHTTPError``), after checking its keys, status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["status", "code", "message"] and body["status"] == status
    assert body["code"] == code, body
    return body["message"]


def api(boss, method: str, path: str, **kwargs) -> requests.Response:
    """A request to the emulator's ``/v1/{path}`` with the token, as intern sends it."""
    headers = {"Authorization": f"Token {boss.token}", "Content-Type": "application/json"}
    return requests.request(method, f"{boss.url}/v1/{path}", headers=headers, timeout=30, **kwargs)
