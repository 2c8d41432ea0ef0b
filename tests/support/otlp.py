"""Receiving traces for real: the OpenTelemetry Collector, and what it exports.

`collector()` runs a real OpenTelemetry Collector (core 0.165.0, built from its Go modules:
tests/support/otelcol) with an OTLP/HTTP receiver; the services export to it with their real
exporter (OTEL_EXPORTER=otlp and the standard OTEL_EXPORTER_OTLP_* variables). The Collector
exports everything it received over OTLP/HTTP to `otlp_receiver()`, a small server that decodes
`POST /v1/traces` (protobuf, gzip or not) with `opentelemetry-proto` into plain span records for
the assertions.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str  # 32 hex digits
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace id, span id)
    scope: str


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


class Receiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()

    def accept(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            service = str(resource.get("service.name", ""))
            received += [ReceivedSpan(
                service=service, name=span.name, trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(), parent_span_id=span.parent_span_id.hex(),
                kind=span.kind,
                attributes={kv.key: _value(kv.value) for kv in span.attributes},
                links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                scope=scope_spans.scope.name,
            ) for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
        with self._lock:
            self.spans += received
            self.requests += 1

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


@contextmanager
def otlp_receiver() -> Iterator[tuple[Receiver, str]]:
    """A running receiver on loopback and its endpoint (for OTEL_EXPORTER_OTLP_ENDPOINT)."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(415)
                return
            receiver.accept(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


COLLECTOR_DIR = Path(__file__).resolve().parent / "otelcol"


def collector_binary() -> Path:
    """The test Collector (tests/support/otelcol: OpenTelemetry Collector 0.165.0 core modules,
    `otlp` receiver and `otlp_http` exporter), built once per go.sum into the user's cache."""
    digest = hashlib.sha256((COLLECTOR_DIR / "go.sum").read_bytes()
                            + (COLLECTOR_DIR / "main.go").read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("SWITCHBOARD_TOOLS_CACHE",
                                Path.home() / ".cache" / "switchboard")) / "bin"
    exe = cache / f"switchboard-otelcol-{digest}"
    if not exe.is_file():
        go = shutil.which("go")
        if go is None:
            raise RuntimeError("building the test's OpenTelemetry Collector needs Go")
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([go, "build", "-o", str(exe), "."], cwd=COLLECTOR_DIR,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"go build of the Collector failed:\n{done.stderr[-3000:]}")
    return exe


@contextmanager
def collector(forward_to: str, log: Path) -> Iterator[str]:
    """A real OpenTelemetry Collector on loopback that receives OTLP/HTTP and exports every
    trace it received to `forward_to` (OTLP/HTTP); its OTLP endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = log.with_suffix(".yaml")
    config.write_text(
        "receivers:\n  otlp:\n    protocols:\n      http:\n"
        f"        endpoint: 127.0.0.1:{port}\n"
        f"exporters:\n  otlp_http:\n    endpoint: {forward_to}\n"
        "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n"
        "      exporters: [otlp_http]\n"
        "  telemetry:\n    metrics:\n      level: none\n    logs:\n      level: info\n")
    with log.open("ab") as out:
        proc = subprocess.Popen([str(collector_binary()), f"--config={config}"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the Collector exited ({proc.returncode}); see {log}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Collector did not listen on {port}; see {log}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
