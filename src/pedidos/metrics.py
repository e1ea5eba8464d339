"""Prometheus instruments: orders by outcome, retries, queue, latency, HTTP and the DB pool.

Defined apart from the web layer so that the order processor can count without importing it.
With several server workers, set PROMETHEUS_MULTIPROC_DIR: every process then writes its
samples to files there and `/metrics` sums them across workers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created samples: noise here
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ORDERS = Counter(
    "pedidos_orders", "Orders settled by the processor", ["outcome", "reason"]
)  # outcome: concluido | rejeitado | falhou
OVERLOADED = Counter("pedidos_overloaded", "Orders refused because the processor was full")
RETRIES = Counter("pedidos_retries", "Transaction retries by database error code", ["code"])
ORDER_SECONDS = Histogram(
    "pedidos_order_seconds",
    "From admission to outcome, per order (queue wait included)",
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "pedidos_in_flight", "Orders admitted and not yet settled", multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "pedidos_queue_depth", "Admitted orders waiting for a worker", multiprocess_mode="livesum"
)
POOL_CHECKED_OUT = Gauge(
    "pedidos_db_pool_checked_out",
    "Database connections in use",
    multiprocess_mode="livesum",
)
HTTP_REQUESTS = Counter(
    "pedidos_http_requests", "HTTP requests answered", ["method", "endpoint", "status"]
)
HTTP_SECONDS = Histogram(
    "pedidos_http_request_seconds",
    "HTTP request duration by endpoint",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
