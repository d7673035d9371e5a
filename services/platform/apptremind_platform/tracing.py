"""OpenTelemetry tracing setup and W3C trace context for Kafka headers.

A real SDK tracer provider is installed even when nothing is exported, so every request gets a trace id that
logs, event envelopes and Kafka headers can carry; the exporter only decides where finished spans go.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from .logs import get_logger

KafkaHeaders = Sequence[tuple[str, bytes | str | None]]

_log = get_logger("apptremind.tracing")


def configure_tracing(service_name: str, exporter: str = "none") -> TracerProvider:
    """Install the global tracer provider for this process.

    `exporter` is "none", "console", or an OTLP endpoint URL (gRPC, or HTTP when it ends in /v1/traces).
    OpenTelemetry lets a process set its provider once, so later calls return the provider already installed.
    """
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        return installed
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    span_exporter = _exporter(exporter)
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return provider


def _exporter(spec: str) -> SpanExporter | None:
    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return None
    if spec.lower() == "console":
        return ConsoleSpanExporter()
    # The OTLP exporters are an optional install; a process without them still runs, just without export.
    module_name = (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter"
        if spec.rstrip("/").endswith("/v1/traces")
        else "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
    )
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        _log.warning("otlp_exporter_unavailable", endpoint=spec, missing=module_name)
        return None
    otlp_exporter: SpanExporter = module.OTLPSpanExporter(endpoint=spec)
    return otlp_exporter


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[KafkaHeaders]):
    def get(self, carrier: KafkaHeaders, key: str) -> list[str] | None:
        # Kafka header names are case-sensitive but W3C field names are not; producers vary in casing.
        key = key.lower()
        values = [
            value.decode(errors="replace") if isinstance(value, bytes) else value
            for name, value in carrier
            if name.lower() == key and value is not None
        ]
        return values or None

    def keys(self, carrier: KafkaHeaders) -> list[str]:
        return [name for name, _ in carrier]


_SETTER = _HeaderSetter()
_GETTER = _HeaderGetter()


def inject_headers(context: otel_context.Context | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers (`traceparent`, `tracestate`, ...) for the current (or given) trace context."""
    headers: list[tuple[str, bytes]] = []
    propagate.inject(headers, context=context, setter=_SETTER)
    return headers


def extract_context(headers: KafkaHeaders | None) -> otel_context.Context:
    """The trace context carried by Kafka headers, for use as the parent of the consumer's span."""
    return propagate.extract(list(headers or ()), getter=_GETTER)


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or "" outside any recorded span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def tracer(name: str) -> trace.Tracer:
    """A tracer from the global provider (a no-op until `configure_tracing` runs)."""
    return trace.get_tracer(name)
