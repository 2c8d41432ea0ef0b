"""Kafka client settings from the environment: every client gets the same security options."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import SecretStr

from shared.infra import tls
from shared.kafka import bootstrap_list, broker_security, client_options, make_broker
from shared.settings import Settings
from shared.telemetry import consume_attributes
from shared.topics_admin import replication_for


def test_plaintext_by_default_adds_nothing() -> None:
    assert client_options(Settings(kafka_security_protocol="PLAINTEXT")) == {}
    assert broker_security(Settings(kafka_security_protocol="PLAINTEXT")) is None


def test_sasl_ssl_with_scram_512_and_a_ca_file(tmp_path: Path) -> None:
    ca = tls.ensure(tmp_path).ca
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc",
                 kafka_sasl_password=SecretStr("pw"), kafka_ssl_cafile=str(ca))
    options = client_options(s)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "pw")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    security = broker_security(s)
    assert isinstance(security, SASLScram512) and security.use_ssl
    assert security.username == "svc"


def test_other_mechanisms_and_tls_only() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                 kafka_sasl_username="u", kafka_sasl_password=SecretStr("p"))
    assert "ssl_context" not in client_options(s)
    security = broker_security(s)
    assert isinstance(security, SASLScram256) and not security.use_ssl
    only_tls = broker_security(Settings(kafka_security_protocol="SSL"))
    assert type(only_tls) is BaseSecurity and only_tls.use_ssl


def test_sasl_without_a_user_is_refused() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        client_options(Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username=""))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "switchboard")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "secret")
    s = Settings()
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_password.get_secret_value() == "secret"
    assert "secret" not in repr(s)  # never printed with the settings


def test_a_cluster_bootstrap_list_reaches_faststream_as_a_list() -> None:
    assert bootstrap_list("a:1, b:2,,c:3") == ["a:1", "b:2", "c:3"]
    broker = make_broker("127.0.0.1:1,127.0.0.1:2", client_id="t",
                         settings=Settings(kafka_security_protocol="PLAINTEXT"))
    assert broker._connection_kwargs["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:2"]


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)),
                                                   (5, (3, 2))])
def test_replication_follows_the_cluster(brokers: int, expected: tuple[int, int]) -> None:
    assert replication_for(brokers) == expected


def test_replication_overrides_are_checked() -> None:
    assert replication_for(5, 5, 3) == (5, 3)
    with pytest.raises(ValueError, match="needs 3 brokers"):
        replication_for(1, 3)
    with pytest.raises(ValueError, match="more than the replication factor"):
        replication_for(3, 2, 3)


def test_consume_attributes_follow_the_messaging_conventions() -> None:
    class Record:
        topic, partition, offset, key, value = "cases.events", 4, 17, b"case-1", b"{}"
        headers = (("ce_id", b"id-1"), ("traceparent", b"00-x"))

    attributes = consume_attributes(Record(), "switchboard-sla")
    assert attributes == {
        "messaging.system": "kafka", "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": "cases.events",
        "messaging.destination.partition.id": "4", "messaging.kafka.offset": 17,
        "messaging.message.body.size": 2, "messaging.consumer.group.name": "switchboard-sla",
        "messaging.kafka.message.key": "case-1", "messaging.message.id": "id-1"}


def test_telemetry_middleware_only_when_spans_are_recorded() -> None:
    """With no exporter nothing samples: FastStream's per-batch telemetry (trace links and baggage
    read from every record) is left out; with one, it is there."""
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    from shared.telemetry import make_tracer_provider

    def telemetry(exporter: str) -> bool:
        broker = make_broker("127.0.0.1:1", client_id="t",
                             tracer_provider=make_tracer_provider("t", exporter),
                             settings=Settings(kafka_security_protocol="PLAINTEXT"))
        return any(isinstance(m, KafkaTelemetryMiddleware)
                   for m in broker.config.broker_middlewares)

    assert not telemetry("none")
    assert telemetry("console")
