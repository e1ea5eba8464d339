"""Load simulator: many users posting orders over HTTP at the same time."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class SimulationResult:
    """What the simulated users saw: statuses, rejection reasons, latencies, order ids."""

    pedidos: int
    concorrencia: int
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)

    @property
    def committed(self) -> int:
        return len(self.acknowledged)

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    @property
    def committed_per_second(self) -> float:
        return self.committed / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the request latencies, in milliseconds."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]


def run_simulation(
    url: str,
    pedidos: int,
    concorrencia: int,
    timeout: float = 30.0,
    progress: Callable[[int], None] = lambda _done: None,
) -> SimulationResult:
    """Send `pedidos` empty-body POST /pedido (random orders) from `concorrencia` users."""
    result = SimulationResult(pedidos, concorrencia)
    lock = threading.Lock()
    remaining = [pedidos]
    limits = httpx.Limits(max_connections=concorrencia, max_keepalive_connections=concorrencia)

    def take_one() -> bool:
        with lock:
            if remaining[0] == 0:
                return False
            remaining[0] -= 1
            return True

    def user(client: httpx.Client) -> None:
        while take_one():
            started = time.perf_counter()
            try:
                # return=representation: wait for the outcome (201 or a rejection), instead of
                # the immediate 202 a bare bodiless POST gets.
                response = client.post("/pedido", headers={"Prefer": "return=representation"})
                status, body = str(response.status_code), response.json()
            except (httpx.HTTPError, ValueError) as error:
                status, body = "connection_error", {"reason": type(error).__name__}
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                result.statuses[status] += 1
                result.latencies_ms.append(elapsed_ms)
                if status == "201":
                    result.acknowledged.append(int(body["id"]))
                elif isinstance(body, dict):
                    result.reasons[str(body.get("reason") or body.get("title") or status)] += 1
                # Inside the lock, so that the progress shown only ever moves forward.
                progress(1)

    with httpx.Client(base_url=url, timeout=timeout, limits=limits) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(concorrencia, thread_name_prefix="simulated-user") as users:
            for running in [users.submit(user, client) for _ in range(concorrencia)]:
                running.result()
        result.seconds = time.perf_counter() - started
    return result
