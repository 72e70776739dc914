"""Sends known metrics with the OpenTelemetry Python SDK over OTLP/HTTP, then exits.

usage: otel_sender.py ENDPOINT SERVICE_NAME USERS ROUTES

For user u and route r: counter `shop.requests` += u % 7 + 1; histogram `shop.latency` records
(u % 5) / 10 once. The test computes the same totals on its own.
"""

import sys

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

endpoint, service, users, routes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
# A long interval: the one export that counts is the flush at shutdown.
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
meter = provider.get_meter("phoenix.test")
requests = meter.create_counter("shop.requests")
latency = meter.create_histogram("shop.latency", unit="s")
for u in range(users):
    for r in range(routes):
        attributes = {"user_id": f"u{u}", "route": f"/r{r}"}
        requests.add(u % 7 + 1, attributes)
        latency.record((u % 5) / 10, attributes)
if not provider.force_flush(timeout_millis=30_000):
    sys.exit("force_flush failed")
provider.shutdown()
