"""Background recovery: requests left behind by a crash or a stuck worker are run again."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.batches import SolicitacaoRef
from pedidos.orders.processor import Overloaded, PedidoProcessor
from pedidos.orders.solicitacoes import claim_due

log = logging.getLogger(__name__)

CLAIM_BATCH = 200


class Recovery:
    """Claims overdue requests (SKIP LOCKED, so instances share the work) and submits them."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        processor: PedidoProcessor,
        *,
        interval: float,
        lease: timedelta,
        max_attempts: int,
    ) -> None:
        self._sessions = sessions
        self._processor = processor
        self._interval = interval
        self._lease = lease
        self._max_attempts = max_attempts
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pedidos-recovery", daemon=True)
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start the loop once; later calls, and calls after stop(), do nothing."""
        if self._thread.ident is not None or self._stopped.is_set():
            return  # the cheap check: this runs before every request
        with self._starting:
            if self._thread.ident is None and not self._stopped.is_set():
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self) -> int:
        """Claim what this instance has room for and submit it; return how many."""
        room = min(self._processor.free_slots(), CLAIM_BATCH)
        if room <= 0:
            return 0
        with self._sessions.begin() as session:
            claimed = claim_due(session, self._lease, self._max_attempts, room)
        for solicitacao_id in claimed:
            try:
                self._processor.submit(SolicitacaoRef(solicitacao_id), count_refusal=False)
            except Overloaded:
                break  # still claimed: its lease expires and the next round takes it
        if claimed:
            log.info("recovery claimed %d pending requests", len(claimed))
        return len(claimed)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as error:
                log.warning("recovery round failed, retrying later: %s", error)
            except Exception:  # never let the loop die silently: log it and go on
                log.exception("recovery round failed unexpectedly")
            self._stopped.wait(self._interval)
