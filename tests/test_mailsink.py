"""The development mail catcher stores what it receives and lists it back."""

from __future__ import annotations

import io
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from outbound.devtools.mailsink import MailSink, list_messages


def mail(subject: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "noreply@example.test"
    message["To"] = "someone@example.test"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Hello.\n")
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_mailsink_stores_each_message_and_lists_it(tmp_path: Path) -> None:
    directory = tmp_path / "sink"  # does not exist yet
    sink = MailSink(port=0, directory=directory)
    with sink, smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.send_message(mail("Première", "<one@example.test>"))
        client.send_message(
            mail("Second", "<two@example.test>"),
            to_addrs=["a@example.test", "b@example.test"],
        )

    listing = list_messages(directory)

    assert [entry["subject"] for entry in listing] == ["Première", "Second"]
    assert [entry["message_id"] for entry in listing] == [
        "<one@example.test>",
        "<two@example.test>",
    ]
    assert listing[0]["mail_from"] == "noreply@example.test"
    assert listing[1]["rcpt_tos"] == ["a@example.test", "b@example.test"]
    assert all(entry["time"] for entry in listing)
    stored = Path(listing[1]["path"])
    assert stored.parent == directory
    assert stored.suffix == ".eml"
    assert b"Subject: Second" in stored.read_bytes()


def test_list_messages_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert list_messages(tmp_path / "nothing-here") == []


def test_list_messages_skips_a_torn_index_line(tmp_path: Path) -> None:
    (tmp_path / "index.jsonl").write_text(
        '{"file": "a.eml", "subject": "kept"}\n{"file": "b.e\n', encoding="utf-8"
    )

    assert [entry["subject"] for entry in list_messages(tmp_path)] == ["kept"]


def test_run_mailsink_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    code = (
        "from outbound.devtools.mailsink import run_mailsink; "
        f"run_mailsink('127.0.0.1', {port}, {str(tmp_path)!r})"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with client:
            client.send_message(mail("Via run_mailsink", "<run@example.test>"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert [entry["subject"] for entry in list_messages(tmp_path)] == ["Via run_mailsink"]


def test_the_command_lists_the_var_directorys_catch_from_anywhere(
    tmp_path: Path, settings: Any, monkeypatch: Any
) -> None:
    from django.core.management import call_command

    settings.VAR_DIR = tmp_path / "var"
    sink = MailSink(port=0, directory=tmp_path / "var" / "mailsink")
    with sink, smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.send_message(mail("Caught", "<caught@example.test>"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = io.StringIO()
    call_command("mailsink", "--list", stdout=out)
    assert "Caught" in out.getvalue()
    assert f"1 message(s) in {tmp_path / 'var' / 'mailsink'}" in out.getvalue()
