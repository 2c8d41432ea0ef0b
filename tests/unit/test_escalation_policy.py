"""Escalation policies are checked when loaded: each error names the file, line and field.

Before, these were accepted and failed at delivery time, on every tick, for ever.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from services.escalation import addresses, policy
from shared.policy_files import PolicyFileError

ENV = {"HOOK_SECRET": "s3cret"}


def with_sink(**sink: Any) -> dict[str, Any]:
    base = {"type": "webhook", "url": "https://hooks.example.com/switchboard",
            "secret_env": "HOOK_SECRET"}
    return {
        "version": "t",
        "targets": {"leads": {"kind": "supervisor_group", "sinks": ["hook"]}},
        "sinks": {"hook": {**base, **sink}},
        "rules": [{"name": "breach", "trigger": "sla.breached",
                   "levels": [{"targets": ["leads"], "ack_timeout": "10m"}]}],
    }


def error_of(doc: dict[str, Any], environ: dict[str, str] | None = None,
             allow: list[str] | None = None) -> tuple[str, str]:
    """The error message, and the text it was loaded from (indented: one key per line)."""
    text = json.dumps(doc, indent=2)
    with pytest.raises(PolicyFileError) as err:
        policy.load_text(text, "esc.json", environ=ENV if environ is None else environ,
                         allow_networks=allow or [])
    return str(err.value), text


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("timeout", "five seconds", "'five seconds' is not a timeout like 500ms, 5s or 1m"),
    ("timeout", "1h", "timeout '1h' is outside 0.1s to 60s"),
    ("timeout", "50ms", "timeout '50ms' is outside 0.1s to 60s"),
    ("url", "http://h:80x/", "the URL's port is not a number from 1 to 65535"),
    ("url", "http://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
    ("url", "http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
    ("url", "http://localhost/hook", "localhost is a loopback name"),
    ("url", "http://[::ffff:10.1.2.3]/hook", "is a private address"),
    ("url", "https://user:pw@hooks.example.com/", "must not carry credentials"),
    ("url", "ftp://hooks.example.com/", "scheme must be http or https"),
    ("url", "https://hooks.example.com/a b", "a space or a control character"),
    ("allow_networks", ["10.0.0.0/33"], "'10.0.0.0/33' is not a network"),
    ("secret_env", "MISSING_SECRET",
     "environment variable MISSING_SECRET (the webhook's secret) is not set"),
])
def test_a_bad_webhook_sink_is_refused_naming_file_line_and_field(
    field: str, value: Any, problem: str
) -> None:
    message, text = error_of(with_sink(**{field: value}))
    line = line_of(text, f'"{field}"')
    assert f"esc.json:{line}: sinks.hook.webhook.{field}: " in message, message
    assert problem in message, message


def test_an_email_sink_with_a_newline_in_an_address_is_refused() -> None:
    doc = with_sink()
    doc["sinks"]["mail"] = {"type": "email", "to": ["leads@example.com\nBcc: x@evil"],
                            "sender": "sb@example.com", "timeout": "2h"}
    message, text = error_of(doc)
    to_line = line_of(text, '"to"')
    assert f"esc.json:{to_line}: sinks.mail.email.to:" in message
    assert "is not a plain address" in message
    assert f"esc.json:{line_of(text, '2h')}: sinks.mail.email.timeout:" in message


def test_a_digest_interval_that_is_not_a_duration_is_refused() -> None:
    doc = with_sink()
    doc["rules"].append({"name": "warn", "trigger": "sla.warning", "digest": True})
    doc["digest"] = {"every": "soon", "targets": ["leads"]}
    message, text = error_of(doc)
    assert f"esc.json:{line_of(text, 'soon')}: digest.every:" in message


def test_a_good_policy_loads_with_its_secret_and_an_allow_list_admits_an_internal_hook() -> None:
    loaded = policy.load_text(json.dumps(with_sink()), environ=ENV)
    assert loaded.secrets == {"hook": b"s3cret"}
    sink = loaded.spec.sinks["hook"]
    assert isinstance(sink, policy.WebhookSink) and sink.timeout_seconds == 5.0
    internal = with_sink(url="http://10.1.2.3:8080/hook", timeout="500ms")
    error_of(internal)  # refused without an allow-list ...
    by_setting = policy.load_text(json.dumps(internal), environ=ENV,
                                  allow_networks=["10.1.0.0/16"])  # ... the service's setting
    assert by_setting.spec.sinks["hook"].timeout_seconds == 0.5  # type: ignore[union-attr]
    by_sink = with_sink(url="http://10.1.2.3:8080/hook", allow_networks=["10.1.2.3"])
    assert policy.load_text(json.dumps(by_sink), environ=ENV).spec.sinks["hook"]


@pytest.mark.parametrize(("address", "refused"), [
    ("8.8.8.8", False), ("2606:4700:4700::1111", False),
    ("127.0.0.1", True), ("10.0.0.1", True), ("172.16.5.4", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("::1", True), ("fe80::1", True), ("fd00::1", True), ("::", True),
    ("::ffff:169.254.169.254", True),  # IPv4-mapped
    ("2002:a9fe:a9fe::1", True),  # 6to4 around 169.254.169.254
    ("64:ff9b::a9fe:a9fe", True),  # NAT64 around 169.254.169.254
    ("64:ff9b::808:808", False),  # NAT64 around 8.8.8.8
])
def test_the_address_guard(address: str, refused: bool) -> None:
    assert (addresses.refusal(address) is not None) is refused


def test_an_allow_list_admits_exactly_its_networks() -> None:
    allowed = addresses.networks(["127.0.0.1/32", "10.9.0.0/16"])
    assert addresses.refusal("127.0.0.1", allowed) is None
    assert addresses.refusal("::ffff:127.0.0.1", allowed) is None
    assert addresses.refusal("10.9.200.1", allowed) is None
    assert addresses.refusal("127.0.0.2", allowed) is not None
    assert addresses.refusal("10.8.0.1", allowed) is not None
    assert addresses.refusal(ipaddress.ip_address("169.254.169.254"), allowed) is not None


def test_the_packaged_policy_and_the_documented_example_load() -> None:
    from pathlib import Path

    assert policy.load().spec.rules
    doc = Path(__file__).resolve().parents[2] / "docs" / "escalation.md"
    example = doc.read_text().split("```json\n", 1)[1].split("```", 1)[0]
    loaded = policy.load_text(example, environ={"OPS_HOOK_SECRET": "x"})
    assert set(loaded.spec.sinks) == {"ops-hook", "leads-mail"}
