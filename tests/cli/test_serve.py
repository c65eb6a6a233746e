"""`outbound serve`, the installed console script in a subprocess: it answers
on a real socket with DEBUG off, static files included, runs a worker with
--with-worker, and stops cleanly on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_probes import _latest_migration
from tests.cli.conftest import SCRIPT, Run
from tests.dburl import database_url

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own server
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "OUTBOUND_DEBUG": "0",
        "OUTBOUND_POLL_INTERVAL": "0.1",
    }


def test_serve_with_worker_answers_health_and_static_then_stops_on_sigterm(
    transactional_db: None,
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port), "--with-worker"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status, body, _ = _get(f"{base}/api/v1/healthz")
            except OSError:
                time.sleep(0.2)
                continue
            health = json.loads(body)
            # 503 until the worker child has written its first heartbeat.
            if status == 200 and health["workers_alive"] >= 1:
                break
            time.sleep(0.2)
        assert health.get("ok") is True, health
        assert health["database"] is True

        status, css, headers = _get(f"{base}/static/outbound/console.css")
        assert status == 200
        assert b".topbar" in css
        assert headers["Content-Type"].startswith("text/css")
        source = Path(__file__).resolve().parents[2] / "outbound/static/outbound/console.css"
        assert css == source.read_bytes()

        # DEBUG is off: an unknown page is the plain 404, not Django's debug page.
        status, body, _ = _get(f"{base}/api/v1/no-such-thing")
        assert status == 404 and json.loads(body)["code"] == "not_found"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            pytest.fail(f"serve did not stop on SIGTERM: {err}")
    assert proc.returncode == 0, err
    assert "Database schema up to date." in err
    assert f"serving on {base}/" in err and "with a worker" in err
    assert "Outbound stopped." in err
    # The worker child stopped too: it says so when it ends cleanly.
    assert "stopped:" in err
    with pytest.raises(OSError):
        _get(f"{base}/api/v1/healthz")


def test_serve_bad_usage_exits_2(cli: Callable[..., Run]) -> None:
    for args in (["--port", "0"], ["--port", "http"], ["--threads", "0"], ["--bogus"]):
        run = cli("serve", *args)
        assert run.code == 2, (args, run.err)
        assert run.err.strip()


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {**_env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    proc = subprocess.run(
        [str(SCRIPT), "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "run `outbound migrate` first" in proc.stderr


def test_worker_bad_concurrency_is_bad_usage(cli: Callable[..., Run]) -> None:
    run = cli("worker", "--concurrency", "0")
    assert run.code == 2
    assert "--concurrency must be between 1 and 256" in run.err


def _without_keys(**extra: str) -> dict[str, str]:
    env = _env()
    env.pop("DJANGO_SECRET_KEY", None)
    env.pop("OUTBOUND_SECRET_KEYS", None)
    return {**env, **extra}


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--port", "0"],
        ["worker"],
        ["backends", "list"],
        ["rotate-secrets"],
        ["test-backend", "Relay"],
    ],
)
def test_with_debug_off_a_command_refuses_to_start_on_the_default_keys(
    transactional_db: None, command: list[str]
) -> None:
    # A stored password: the worker, a test and a rotation would read it.
    _backend_with_a_password()
    # --port 0 would be refused as bad usage; the key check comes first.
    if command[0] == "serve":
        command = ["serve", "--port", str(_free_port())]
    proc = subprocess.run(
        [str(SCRIPT), *command],
        env=_without_keys(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "(outbound.E002) DJANGO_SECRET_KEY is not set" in proc.stderr
    assert "(outbound.E003) OUTBOUND_SECRET_KEYS is not set" in proc.stderr
    assert "outbound generate-keys" in proc.stderr
    assert "serving on" not in proc.stderr


def _backend_with_a_password(*, is_default: bool = True) -> None:
    from outbound import secrets
    from outbound.models import Backend

    Backend.objects.create(
        name="Relay",
        host="127.0.0.1",
        port=_free_port(),
        from_address="noreply@example.com",
        is_default=is_default,
        secret=secrets.encrypt("s3cret-password"),
    )


def _run_without_keys(*command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *command],
        env=_without_keys(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_with_no_secret_stored_a_worker_and_a_passwordless_backend_need_no_keys(
    transactional_db: None, smtp_server: Any
) -> None:
    """Nothing for a key to protect: a backend without a password is set and
    tested and a worker sends through it with DEBUG off and no keys (as the
    speed kit does), while storing a password, or serving the pages, is still
    refused, and so is the worker once a password is stored."""
    from outbound.models import Message
    from outbound.services.intake import queue_email

    created = _run_without_keys(
        "backends", "set", "Plain", "--create", "--host", smtp_server.host,
        "--port", str(smtp_server.port), "--security", "none",
        "--from", "noreply@example.com", "--default",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    tested = _run_without_keys("backends", "test", "Plain")
    assert tested.returncode == 0, tested.stderr
    message = queue_email(to="ann@example.com", subject="No key needed", text="Hello")
    worker = _run_without_keys("worker", "--once", "--concurrency", "1")
    assert worker.returncode == 0, worker.stderr
    assert Message.objects.get(pk=message.pk).status == "sent"
    assert len(smtp_server.messages) == 1

    with_password = _run_without_keys(
        "backends", "set", "Plain", "--password-stdin", stdin="s3cret-password\n"
    )
    assert with_password.returncode == 1
    assert "(outbound.E003) OUTBOUND_SECRET_KEYS is not set" in with_password.stderr
    assert "s3cret" not in with_password.stderr

    _backend_with_a_password(is_default=False)
    refused = _run_without_keys("worker", "--once")
    assert refused.returncode == 1
    assert "(outbound.E003)" in refused.stderr


def test_commands_that_touch_no_secret_and_migrations_run_before_keys_are_set(
    transactional_db: None,
) -> None:
    for command in (["status"], ["makemigrations", "--check", "--dry-run"]):
        proc = subprocess.run(
            [str(SCRIPT), *command],
            env=_without_keys(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, (command, proc.stderr)


def test_a_wsgi_server_on_config_wsgi_refuses_the_default_keys_too() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        env=_without_keys(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 1
    assert "ImproperlyConfigured" in proc.stderr and "(outbound.E002)" in proc.stderr


def test_the_default_django_key_is_refused_even_when_named_and_a_missing_fernet_key_alone(
    transactional_db: None,
) -> None:
    _backend_with_a_password()
    env = _without_keys(DJANGO_SECRET_KEY="dev-only-insecure-key-change-me")
    proc = subprocess.run(
        [str(SCRIPT), "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    assert "outbound.E002" in proc.stderr and "outbound.E003" in proc.stderr

    env = _without_keys(DJANGO_SECRET_KEY="a-deployment-key-" + "x7" * 20)
    proc = subprocess.run(
        [str(SCRIPT), "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    assert "outbound.E002" not in proc.stderr and "outbound.E003" in proc.stderr


def test_generate_keys_works_on_the_refused_setup_and_its_keys_let_serve_start(
    transactional_db: None,
) -> None:
    made = subprocess.run(
        [str(SCRIPT), "generate-keys"],
        env=_without_keys(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    keys = dict(line.split("=", 1) for line in made.stdout.split())
    assert set(keys) == {"DJANGO_SECRET_KEY", "OUTBOUND_SECRET_KEYS"}
    port = _free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port)],
        env=_without_keys(**keys),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _, _ = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.2)
        assert status in (200, 503), proc.poll()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert "outbound.E00" not in err and proc.returncode == 0, err


def _keys() -> dict[str, str]:
    made = subprocess.run(
        [str(SCRIPT), "generate-keys"],
        env=_without_keys(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(line.split("=", 1) for line in made.stdout.split())


def test_check_deploy_fails_on_the_defaults_naming_each_problem_and_passes_in_production(
    transactional_db: None,
) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "check", "--deploy"],
        env=_without_keys(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    for problem in ("outbound.E002", "outbound.E003", "W004", "W008", "W012", "W016"):
        assert f"{problem})" in proc.stderr, problem

    # The README's production settings: both keys, OUTBOUND_HTTPS and the host.
    production = _without_keys(
        **_keys(), OUTBOUND_HTTPS="1", OUTBOUND_ALLOWED_HOSTS="outbound.example.com"
    )
    proc = subprocess.run(
        [str(SCRIPT), "check", "--deploy"],
        env=production,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "System check identified no issues (0 silenced)." in proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr


def _raw_get(
    port: int, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], list[str]]:
    """One request, redirects not followed, every Set-Cookie kept."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        cookies = response.headers.get_all("Set-Cookie") or []
        return response.status, dict(response.headers), cookies
    finally:
        connection.close()


def test_behind_a_tls_proxy_serve_redirects_http_and_sends_hsts_and_secure_cookies(
    transactional_db: None,
) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port)],
        env={**_env(), "OUTBOUND_HTTPS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers, _ = _raw_get(port, "/accounts/login/", {})
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        # Plain http is sent to https.
        assert status == 301
        assert headers["Location"] == f"https://127.0.0.1:{port}/accounts/login/"
        # What the proxy forwards after it ended TLS.
        status, headers, cookies = _raw_get(
            port, "/accounts/login/", {"X-Forwarded-Proto": "https"}
        )
        assert status == 200
        assert headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains; preload"
        )
        csrf = [c for c in cookies if c.startswith("csrftoken=")]
        assert csrf and "Secure" in csrf[0], cookies
        # Probes on the host itself are answered over plain http.
        status, _, _ = _raw_get(port, "/healthz", {})
        assert status in (200, 503)
        for probe in ("/livez", "/readyz"):
            status, _, _ = _raw_get(port, probe, {})
            assert status == 200, probe
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_serve_readyz_follows_the_applied_migrations_while_livez_stays_200(
    tmp_path: Path,
) -> None:
    env = {**_env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}"}

    def migrate(*target: str) -> None:
        done = subprocess.run(
            [str(SCRIPT), "migrate", *target],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def probe(path: str) -> tuple[int, dict[str, Any]]:
        status, body, _ = _get(f"http://127.0.0.1:{port}{path}")
        return status, json.loads(body)

    latest, before = _latest_migration()
    migrate()
    port = _free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = probe("/livez")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        assert (status, body) == (200, {"live": True})
        assert probe("/readyz") == (
            200,
            {"ready": True, "database": True, "pending_migrations": []},
        )
        # No worker runs: monitoring hears of it, the probes do not.
        status, body = probe("/healthz")
        assert status == 503 and body["workers_alive"] == 0

        # The schema falls behind the running code (a restored backup, a
        # rollback): not ready, yet alive, so it is not restarted in a loop.
        migrate("outbound", before)
        assert probe("/readyz") == (
            503,
            {
                "ready": False,
                "database": True,
                "pending_migrations": [f"outbound.{latest}"],
            },
        )
        assert probe("/livez") == (200, {"live": True})

        migrate()
        assert probe("/readyz")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
