"""The API's rate limits are counted in the database: they hold whatever
happens to Django's (process-local) cache, across processes calling at the
same moment, and the windows that ended are deleted.

The limiter's clock is pinned half a minute into one window, in this process
and in the others, so no test straddles the turn of a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from outbound.api import ratelimit
from outbound.models import RateWindow
from tests.api.conftest import assert_error

WINDOW_NO = 29_166_666
NOW = WINDOW_NO * 60 + 29.5
WAIT = 31  # the 30.5 s left in the window, rounded as the limiter does

# Another process calling the API: it sets itself up on the test database,
# says "ready", waits for a line on stdin, then makes its calls and prints
# their status codes.
OTHER_PROCESS = """
import json, os, sys
from types import SimpleNamespace
from django.conf import settings
settings.DATABASES["default"]["NAME"] = os.environ["RATE_TEST_DB"]
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
from outbound.api import ratelimit
setup_test_environment()
settings.OUTBOUND_API_RATE_LIMITS = {"send_outgoing": int(os.environ["RATE_TEST_LIMIT"])}
ratelimit.time = SimpleNamespace(time=lambda: float(os.environ["RATE_TEST_NOW"]))
client = Client(headers={"Authorization": "Bearer " + os.environ["RATE_TEST_KEY"]})
client.get("/api/v1/overview")
print("ready", flush=True)
sys.stdin.readline()
calls = int(os.environ["RATE_TEST_CALLS"])
print(json.dumps([client.post("/api/v1/send-outgoing").status_code for _ in range(calls)]))
"""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    pinned = SimpleNamespace(now=NOW)
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: pinned.now))
    return pinned


def _run_other_processes(count: int, *, key: str, limit: int, calls: int) -> list[list[int]]:
    """Start ``count`` processes, let them call together once all are up."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "RATE_TEST_DB": str(connection.settings_dict["NAME"]),
        "RATE_TEST_KEY": key,
        "RATE_TEST_LIMIT": str(limit),
        "RATE_TEST_NOW": repr(NOW),
        "RATE_TEST_CALLS": str(calls),
    }
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.django_db
def test_the_limit_holds_when_the_cache_is_cleared(api: Any, settings: Any, clock: Any) -> None:
    settings.OUTBOUND_API_RATE_LIMITS = {"send_outgoing": 3}
    assert api.post("/send-outgoing").status_code == 200
    assert api.post("/send-outgoing").status_code == 200
    cache.clear()
    assert api.post("/send-outgoing").status_code == 200
    cache.clear()
    r = api.post("/send-outgoing")
    body = assert_error(r, 429, "rate_limited")
    assert r.headers["Retry-After"] == str(WAIT)
    assert body["details"] == {"retry_after": WAIT, "limit_per_minute": 3}
    assert body["message"] == (f"At most 3 send outgoing requests a minute; try again in {WAIT} s.")


@pytest.mark.django_db(transaction=True)
def test_processes_calling_at_once_share_one_count(api: Any, settings: Any, clock: Any) -> None:
    settings.OUTBOUND_API_RATE_LIMITS = {"send_outgoing": 6}
    assert api.post("/send-outgoing").status_code == 200
    assert api.post("/send-outgoing").status_code == 200
    # Three other processes, four calls each, at the same moment: four are
    # left of the six, and no call may go uncounted.
    results = _run_other_processes(3, key=api.key, limit=6, calls=4)
    codes = [code for result in results for code in result]
    assert sorted(codes) == [200] * 4 + [429] * 8, results
    r = api.post("/send-outgoing")
    assert_error(r, 429, "rate_limited")
    assert r.headers["Retry-After"] == str(WAIT)
    (window,) = RateWindow.objects.all()
    assert window.count == 2 + 12 + 1


@pytest.mark.django_db
def test_the_windows_that_ended_are_deleted(
    api: Any, api_as: Any, settings: Any, clock: Any
) -> None:
    settings.OUTBOUND_API_RATE_LIMITS = {"send_outgoing": 1}
    other = api_as("write")
    assert api.post("/send-outgoing").status_code == 200
    assert_error(api.post("/send-outgoing"), 429, "rate_limited")
    assert other.post("/send-outgoing").status_code == 200
    assert RateWindow.objects.count() == 2

    clock.now += 60
    # A new window: the caller may call again, and its first call there
    # deletes every window that ended, its own and the other caller's.
    assert api.post("/send-outgoing").status_code == 200
    (window,) = RateWindow.objects.all()
    assert window.key.endswith(f":{WINDOW_NO + 1}")
    assert window.count == 1
    assert_error(api.post("/send-outgoing"), 429, "rate_limited")
    assert RateWindow.objects.count() == 1
