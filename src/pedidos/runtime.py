"""What one running app owns: settings, the engine, its sessions, processor and recovery."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pedidos.config import Settings
from pedidos.orders.gateway import Gateway
from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.recovery import Recovery
from pedidos.sim.simulacoes import Simulations
from pedidos.storage.engine import database_identity
from pedidos.storage.reads import Reads


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    processor: PedidoProcessor
    simulations: Simulations
    reads: Reads
    recovery: Recovery | None = None
    accepting: bool = True
    _requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    _database_id: str | None = None

    def database_id(self) -> str:
        """The database's fingerprint, read once (it cannot change under a running engine)."""
        if self._database_id is None:
            self._database_id = database_identity(self.engine)
        return self._database_id

    @cached_property
    def gateway(self) -> Gateway:
        """Where the API hands its orders: directly to the processor, or recorded first."""
        return Gateway(
            self.processor,
            self.sessions,
            self.read_sessions,
            request_timeout=self.settings.request_timeout,
            lease=timedelta(seconds=self.settings.lease_seconds),
            idempotency_ttl=timedelta(hours=self.settings.idempotency_ttl_hours),
        )

    def request_started(self) -> None:
        with self._lock:
            self._requests += 1

    def request_finished(self) -> None:
        with self._lock:
            self._requests -= 1

    def drain(self, timeout: float) -> None:
        """Stop accepting orders, finish those accepted, and let their responses go out.

        Solicitacoes still pending are not lost: they stay in the database and recovery
        runs them on the next start (or on another instance).
        """
        self._stop_taking_orders()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._requests <= 0:
                    return
            time.sleep(0.05)

    def close(self) -> None:
        """Finish accepted orders, then release every database connection."""
        if self._closed:
            return
        self._closed = True
        self._stop_taking_orders()
        self.reads.close()
        self.engine.dispose()

    def _stop_taking_orders(self) -> None:
        """Refuse new orders, stop what makes them, and finish those accepted."""
        self.accepting = False
        self.simulations.stop()
        if self.recovery is not None:
            self.recovery.stop()
        self.processor.shutdown()
