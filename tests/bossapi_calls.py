"""Requests to the BOSS API emulator as the tests make them, and checks of its error bodies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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


class EmulatorProcess:
    """The emulator's command in a process of its own, its output in a file, never left
    running: `stop` terminates it (killing it if it lingers), also when the start fails."""

    def __init__(self, *flags: str, token: str, log: Path, command: Sequence[str] = (),
                 timeout: float = 60.0):
        command = list(command) or [sys.executable, "-m", "ndframework.bossemu"]
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [*command, "--port", "0", *flags], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "NDFRAMEWORK_BOSS_TOKEN": token},
            )
        deadline = time.monotonic() + timeout
        while (match := re.search(r"http://(127\.0\.0\.1:\d+)", log.read_text())) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the emulator did not start:\n{log.read_text()}")
            time.sleep(0.02)
        self.host = match.group(1)
        """``127.0.0.1:<port>``, where it serves."""

    @property
    def banner(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
