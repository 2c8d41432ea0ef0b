"""Metrics and health for every service: `/metrics` (Prometheus text format), `/healthz`,
`/readyz`, on the port `METRICS_PORT` (each service has its own default; -1 turns it off).

- counters and histograms the runtime updates as it works (records consumed and failed by
  topic, handler and batch latency, dead letters by reason, outbox records parked, offers);
- gauges read when scraped: consumer lag by topic and partition (from the consumers' own
  positions and high-water marks), the outbox's backlog and its oldest row, and what a service
  adds (`ServiceRuntime.gauges`: SLA clocks running and due, open escalations, ...);
- `/healthz`: the process answers (its event loop is not stuck); `/readyz`: 200 once the
  service is connected to Kafka and PostgreSQL, consuming, and its lag is below
  `READY_MAX_LAG`; 503 with the reason otherwise (a standby router says so).

A small asyncio HTTP server rather than a framework: three read-only paths, no dependency
beyond prometheus-client, and it runs on the service's own event loop, so a scrape sees the
same state the handlers do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"intake": 9464, "router": 9465, "sla": 9466, "escalation": 9467,
                 "console": 9468}
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
GaugeReader = Callable[[], Awaitable[list[tuple[str, str, dict[str, str], float]]]]


class Metrics:
    """One registry per service process."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter("switchboard_records_consumed", "Records consumed, by topic.",
                                ["service", "topic"], registry=r)
        self.failed = Counter("switchboard_records_failed",
                              "Records that failed: retried (transient), conflict (their batch"
                              " lost a deadlock and went again whole) or dead-lettered.",
                              ["service", "topic", "outcome"], registry=r)
        self.dead_letters = Counter("switchboard_dead_letters", "Dead letters, by reason.",
                                    ["service", "topic", "reason"], registry=r)
        self.handler_seconds = Histogram("switchboard_handler_seconds",
                                         "Time to decide one record (in its batch).",
                                         ["service", "topic"], buckets=_LATENCY_BUCKETS,
                                         registry=r)
        self.batch_seconds = Histogram("switchboard_batch_seconds",
                                       "Time from a batch's arrival to its commit.",
                                       ["service", "topic"], buckets=_LATENCY_BUCKETS,
                                       registry=r)
        self.parked = Counter("switchboard_outbox_parked", "Outbox records Kafka never took.",
                              ["service"], registry=r)
        self.published = Counter("switchboard_outbox_published", "Outbox records published.",
                                 ["service"], registry=r)
        self.decisions = Counter("switchboard_routing_decisions", "Routing decisions.",
                                 ["outcome"], registry=r)
        self.time_to_offer = Histogram("switchboard_time_to_offer_seconds",
                                       "From a case entering its queue to its offer.",
                                       buckets=(0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900,
                                                3600), registry=r)
        self.up = Gauge("switchboard_ready", "1 when the service is ready.", ["service"],
                        registry=r)

    def observe(self, collector: Collector) -> None:
        self.registry.register(collector)


class ScrapedGauges(Collector):
    """Gauges read at scrape time: the readers' results, prepared before `generate_latest`."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, str, dict[str, str], float]] = []

    def collect(self) -> Any:
        families: dict[str, GaugeMetricFamily] = {}
        for name, help_text, labels, value in self.samples:
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, help_text,
                                                            labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], value)
        return list(families.values())


class HealthServer:
    """`/metrics`, `/healthz` and `/readyz` on one port, served from the event loop."""

    def __init__(self, metrics: Metrics, readiness: Callable[[], Awaitable[str | None]],
                 readers: list[GaugeReader]) -> None:
        self.metrics, self.readiness, self.readers = metrics, readiness, readers
        self.scraped = ScrapedGauges()
        metrics.observe(self.scraped)
        self._server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        if port < 0:
            return
        try:
            self._server = await asyncio.start_server(self._serve, "0.0.0.0", port)
            log.info("metrics and health on :%d (/metrics, /healthz, /readyz)", port)
        except OSError as exc:  # a second instance on one host: it runs, unobserved
            log.warning("metrics port %d not available (%s): serving no metrics", port, exc)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b""):
                pass  # headers: not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            status, body, kind = await self._answer(path)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, path: str) -> tuple[str, bytes, str]:
        text = "text/plain; charset=utf-8"
        if path == "/healthz":
            return "200 OK", b"ok\n", text
        if path == "/readyz":
            why = await self.readiness()
            self.metrics.up.labels(self.metrics.service).set(0 if why else 1)
            return ("503 Service Unavailable", f"not ready: {why}\n".encode(), text) if why \
                else ("200 OK", b"ready\n", text)
        if path == "/metrics":
            samples: list[tuple[str, str, dict[str, str], float]] = []
            for read in self.readers:
                try:
                    samples += await asyncio.wait_for(read(), timeout=2.0)
                except Exception as exc:  # a gauge we cannot read is left out, not fatal
                    log.debug("gauge reader failed: %r", exc)
            self.scraped.samples = samples
            why = await self.readiness()
            self.metrics.up.labels(self.metrics.service).set(0 if why else 1)
            return "200 OK", generate_latest(self.metrics.registry), \
                "text/plain; version=0.0.4; charset=utf-8"
        return "404 Not Found", b"not found\n", text
