"""Process entry point shared by the four services: settings, clock, tracing, logging, run."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from shared.clock import SystemClock
from shared.logs import RateLimitFilter
from shared.runtime import ServiceRuntime
from shared.settings import get_settings
from shared.telemetry import make_tracer_provider


def build_runtime(name: str, wire: Callable[[ServiceRuntime], ServiceRuntime]) -> ServiceRuntime:
    settings = get_settings()
    provider = make_tracer_provider(f"switchboard-{name}", settings.otel_exporter)
    runtime = ServiceRuntime(name, settings, SystemClock(settings.clock_speed), provider)
    return wire(runtime)


def run_service(name: str, wire: Callable[[ServiceRuntime], ServiceRuntime]) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # a broker restart makes aiokafka log every failed attempt: one line per kind per 10 s
    for handler in logging.getLogger().handlers:
        handler.addFilter(RateLimitFilter(every_seconds=10.0))
    runtime = build_runtime(name, wire)
    quiet_collector()
    asyncio.run(runtime.app().run())


# Objects allocated since the last young collection before the collector runs again (Python's
# default: 700). A service allocates thousands of short-lived objects per batch (records,
# models, events), nearly all freed by reference counting before a collection would see them.
YOUNG_THRESHOLD = 10_000


def quiet_collector() -> None:
    """Keep Python's cycle collector off what lives as long as the process: everything built at
    start (modules, contracts, policies, the router's classifier) is frozen out of the
    collector's generations, so full collections no longer walk it; and young collections run
    less often. perf under saturation put the collector at 8-9 % of the router's, SLA's and
    escalation's CPU with the defaults."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
