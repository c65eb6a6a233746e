"""The console and in-memory SMS transports."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from outbound.errors import PermanentTransportError, TransientTransportError
from outbound.transports import locmem
from outbound.transports.console import ConsoleSmsTransport
from outbound.transports.locmem import LocmemSmsTransport
from outbound.transports.sms_base import SmsEnvelope, SmsTransport


def envelope(body: str = "Hello from Outbound", **fields: str) -> SmsEnvelope:
    fields.setdefault("to", "+4915112345678")
    fields.setdefault("sender", "Outbound")
    fields.setdefault("message_id", "<m1@outbound.test>")
    return SmsEnvelope(body=body, **fields)


@pytest.fixture(autouse=True)
def _empty_outbox() -> Iterator[None]:
    locmem.reset()
    yield
    locmem.reset()


def test_console_prints_recipient_sender_segments_and_body() -> None:
    stream = io.StringIO()
    calls: list[int] = []
    result = ConsoleSmsTransport(stream).send(
        envelope("€ " + "a" * 200), before_data=lambda: calls.append(1)
    )
    printed = stream.getvalue()
    assert "SMS to +4915112345678 from Outbound" in printed
    assert "2 segments, GSM-7, 203 characters" in printed
    assert "€ " + "a" * 200 in printed
    assert result.queue_id.startswith("CONSOLE-") and len(result.queue_id) == len("CONSOLE-") + 16
    assert result.queue_id in printed
    assert result.recipients[0].accepted
    assert calls == [1]


def test_console_defaults_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleSmsTransport().send(envelope("Grüße 😀"))
    out = capsys.readouterr().out
    assert "1 segment, UCS-2, 8 characters" in out
    assert "Grüße 😀" in out


def test_console_ids_differ_and_probe_is_ok() -> None:
    transport = ConsoleSmsTransport(io.StringIO())
    assert transport.send(envelope()).queue_id != transport.send(envelope()).queue_id
    assert transport.probe().ok
    assert isinstance(transport, SmsTransport)


def test_locmem_keeps_envelopes_in_the_outbox() -> None:
    transport = LocmemSmsTransport()
    first = transport.send(envelope("one"))
    second = transport.send(envelope("two"))
    assert [sms.body for sms in locmem.outbox] == ["one", "two"]
    assert first.queue_id.startswith("LOCMEM-")
    assert int(second.queue_id.removeprefix("LOCMEM-")) == int(first.queue_id[7:]) + 1
    assert transport.probe().ok
    assert isinstance(transport, SmsTransport)


def test_locmem_calls_before_data_before_storing() -> None:
    seen: list[int] = []
    LocmemSmsTransport().send(envelope(), before_data=lambda: seen.append(len(locmem.outbox)))
    assert seen == [0]
    assert len(locmem.outbox) == 1


def test_locmem_can_fail_the_next_sends() -> None:
    locmem.fail_next(
        PermanentTransportError("refused", phase="data", reason="invalid_number"), times=2
    )
    transport = LocmemSmsTransport()
    for _ in range(2):
        with pytest.raises(PermanentTransportError):
            transport.send(envelope())
    assert transport.send(envelope()).queue_id.startswith("LOCMEM-")
    assert len(locmem.outbox) == 1


def test_locmem_interruption_runs_before_data_first() -> None:
    locmem.fail_next(TransientTransportError("lost", phase="data", reason="interrupted"))
    connect_failure = TransientTransportError("refused", reason="connection_refused")
    locmem.fail_next(connect_failure)
    calls: list[str] = []
    transport = LocmemSmsTransport()
    with pytest.raises(TransientTransportError):
        transport.send(envelope(), before_data=lambda: calls.append("data"))
    with pytest.raises(TransientTransportError):
        transport.send(envelope(), before_data=lambda: calls.append("connect"))
    assert calls == ["data"]
    assert locmem.outbox == []
