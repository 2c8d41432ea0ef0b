"""Process entry point shared by the four services: settings, clock, tracing, logging, run."""

from __future__ import annotations

import asyncio
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
    asyncio.run(build_runtime(name, wire).app().run())
