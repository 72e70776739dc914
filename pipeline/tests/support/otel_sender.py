"""Sends known metrics with the OpenTelemetry Python SDK over OTLP (gRPC or HTTP), then exits.

usage: otel_sender.py grpc|http ENDPOINT SERVICE_NAME USERS ROUTES [SECONDS]

With SECONDS, it keeps exporting (every half second, the same cumulative values) for that long, as
a running service does; without, it exports once at shutdown.

For user u and route r: counter `shop.requests` += u % 7 + 1; histogram `shop.latency` records
(u % 5) / 10 once; gauge `shop.queue.depth` is set to u % 3. The test computes the same totals on its own.
"""

import sys
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

protocol, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
users, routes = int(sys.argv[4]), int(sys.argv[5])
seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 0
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
# Without SECONDS, a long interval: the one export that counts is the flush at shutdown.
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=500 if seconds else 3_600_000)
provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
meter = provider.get_meter("phoenix.test")
requests = meter.create_counter("shop.requests")
latency = meter.create_histogram("shop.latency", unit="s")
depth = meter.create_gauge("shop.queue.depth")
for u in range(users):
    for r in range(routes):
        attributes = {"user_id": f"u{u}", "route": f"/r{r}"}
        requests.add(u % 7 + 1, attributes)
        latency.record((u % 5) / 10, attributes)
        depth.set(u % 3, attributes)
time.sleep(seconds)
if not provider.force_flush(timeout_millis=30_000):
    sys.exit("force_flush failed")
provider.shutdown()
