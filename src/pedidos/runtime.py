"""What one running app owns: settings, the engine, its session factory and the processor."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pedidos.config import Settings
from pedidos.processor import PedidoProcessor


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    processor: PedidoProcessor

    def close(self) -> None:
        """Finish accepted orders, then release every database connection."""
        self.processor.shutdown()
        self.engine.dispose()
