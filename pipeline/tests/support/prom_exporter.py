"""A scrape target with known series, made with the Python prometheus-client; runs until killed.

usage: prom_exporter.py PORT

shop_orders_total{shop="sN"} = N + 1 and shop_queue_depth{shop="sN"} = 10 N for N in 0..4;
shop_order_seconds (buckets 0.1 and 1) observed 0.05, 0.5 and 2.
"""

import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

registry = CollectorRegistry()
orders = Counter("shop_orders", "Orders taken.", ["shop"], registry=registry)
depth = Gauge("shop_queue_depth", "Orders waiting.", ["shop"], registry=registry)
latency = Histogram("shop_order_seconds", "Time to take an order.", buckets=[0.1, 1], registry=registry)
for n in range(5):
    orders.labels(shop=f"s{n}").inc(n + 1)
    depth.labels(shop=f"s{n}").set(10 * n)
for value in (0.05, 0.5, 2):
    latency.observe(value)
start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=registry)
while True:
    time.sleep(3600)
