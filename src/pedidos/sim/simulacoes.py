"""Simulations started from the dashboard: random orders through this process's processor.

Each simulation runs on a background thread with `concorrencia` simulated users, publishes
its progress to the database while it runs, and ends with throughput, latency percentiles,
outcomes and an invariant check of the whole database. The database holds every
simulation's state, so any instance answers for any simulation, and its unique `ativa`
column lets one run at a time across all instances.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.batches import Job
from pedidos.orders.invariants import check_after_load, take_ledger
from pedidos.orders.processor import Overloaded, PedidoProcessor, ShuttingDown
from pedidos.orders.transaction import (
    RANDOM_PEDIDO,
    ItemRequest,
    PedidoRejeitado,
    PedidoRequest,
    random_pedido_request,
)
from pedidos.sim.http_users import SimulationResult
from pedidos.storage.models import Produto, Simulacao, utc_now

log = logging.getLogger(__name__)

KEPT = 100  # simulations whose results stay in the database
LISTED = 10  # the latest ones that GET /simulacoes lists
RESULT_TIMEOUT = 120.0
PUBLISH_SECONDS = 0.5
# A running simulation not heard from for this long belongs to an instance that died.
STALE = timedelta(seconds=15)


class SimulationRunning(Exception):
    """Another simulation is still running, in this instance or another."""


@dataclass(frozen=True)
class SimulationPlan:
    pedidos: int
    concorrencia: int
    quente_pct: int  # share of orders that buy the hot produto (the one with most estoque)


@dataclass
class Simulation:
    """One simulation's plan, live progress, and (once done) result and invariant check."""

    id: int
    plan: SimulationPlan
    result: SimulationResult
    running: bool = True
    violations: list[str] | None = None
    error: str | None = None  # why the simulation itself could not finish
    started: float = field(default_factory=time.perf_counter)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def done(self) -> int:
        return len(self.result.latencies_ms)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started if self.running else self.result.seconds


class Simulations:
    """Start a simulation, read any instance's simulation, stop this instance's on shutdown."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        read_sessions: sessionmaker[Session],
        processor: PedidoProcessor,
        render: Callable[[Simulation], str],
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._processor = processor
        self._render = render  # a simulation's published state, as a JSON document
        self._running: dict[int, Simulation] = {}
        self._lock = threading.Lock()

    def start(self, plan: SimulationPlan) -> Simulation:
        """Start a simulation in the background; SimulationRunning if one is running."""
        try:
            with self._sessions.begin() as session:
                # A run whose instance died would otherwise hold the slot for ever.
                session.execute(
                    update(Simulacao)
                    .where(Simulacao.ativa == 1, Simulacao.atualizado_em < utc_now() - STALE)
                    .values(ativa=None)
                )
                now = utc_now()
                row = Simulacao(ativa=1, estado="{}", criado_em=now, atualizado_em=now)
                session.add(row)
                session.flush()
                simulation_id = row.id
                simulation = Simulation(
                    simulation_id, plan, SimulationResult(plan.pedidos, plan.concorrencia)
                )
                session.execute(
                    update(Simulacao)
                    .where(Simulacao.id == simulation_id)
                    .values(estado=self._render(simulation))
                )
                session.execute(
                    delete(Simulacao).where(
                        Simulacao.id <= simulation_id - KEPT, Simulacao.ativa.is_(None)
                    )
                )
        except IntegrityError:
            raise SimulationRunning() from None
        with self._lock:
            self._running[simulation.id] = simulation
        simulation._thread = threading.Thread(
            target=self._run, args=(simulation,), name=f"simulation-{simulation.id}", daemon=True
        )
        simulation._thread.start()
        return simulation

    def get(self, simulation_id: int) -> dict[str, Any] | None:
        """The simulation's latest published state, from whichever instance runs it."""
        found = self._states(Simulacao.id == simulation_id, limit=1)
        return found[0] if found else None

    def recent(self) -> list[dict[str, Any]]:
        """The latest simulations' states, newest first, from every instance."""
        return self._states(limit=LISTED)

    def _states(self, *where: Any, limit: int) -> list[dict[str, Any]]:
        with self._read_sessions.begin() as session:
            rows = session.execute(
                select(Simulacao.ativa, Simulacao.estado, Simulacao.atualizado_em)
                .where(*where)
                .order_by(Simulacao.id.desc())
                .limit(limit)
            ).all()
        states: list[dict[str, Any]] = []
        for row in rows:
            state: dict[str, Any] = json.loads(row.estado)
            stale = row.ativa is None or row.atualizado_em < utc_now() - STALE
            if state.get("running") and stale:
                state.update(running=False, error="the instance running it stopped")
            states.append(state)
        return states

    def stop(self, timeout: float = 30.0) -> None:
        """Stop running simulations from sending, and wait for them to end (on shutdown)."""
        with self._lock:
            running = list(self._running.values())
        for simulation in running:
            simulation._stop.set()
        deadline = time.monotonic() + timeout
        for simulation in running:
            if simulation._thread is not None:
                simulation._thread.join(max(0.0, deadline - time.monotonic()))

    def _publish(self, simulation: Simulation, final: bool = False) -> None:
        values: dict[str, Any] = {
            "estado": self._render(simulation),
            "atualizado_em": utc_now(),
        }
        if final:
            values["ativa"] = None
        with self._sessions.begin() as session:
            session.execute(update(Simulacao).where(Simulacao.id == simulation.id).values(**values))

    def _run(self, simulation: Simulation) -> None:
        publisher = threading.Thread(target=self._keep_publishing, args=(simulation,), daemon=True)
        publisher.start()
        try:
            self._simulate(simulation)
        except Exception as error:  # a background thread: record it, never die silently
            log.exception("simulation %d failed", simulation.id)
            simulation.error = f"{type(error).__name__} (see the service log)"
        finally:
            simulation.running = False
            publisher.join()
            try:
                self._publish(simulation, final=True)
            except Exception:
                # Left active, the row goes stale and frees the slot after STALE.
                log.exception("simulation %d: could not publish its result", simulation.id)
            with self._lock:
                self._running.pop(simulation.id, None)

    def _keep_publishing(self, simulation: Simulation) -> None:
        """Progress for every instance to read, and the heartbeat that keeps the slot."""
        while simulation.running:
            try:
                self._publish(simulation)
            except Exception:  # the next round tries again; the run itself goes on
                log.warning("simulation %d: progress not published", simulation.id)
            time.sleep(PUBLISH_SECONDS)

    def _simulate(self, simulation: Simulation) -> None:
        plan, result = simulation.plan, simulation.result
        with self._read_sessions.begin() as session:
            before = take_ledger(session)
            hot = session.execute(
                select(Produto.id).order_by(Produto.estoque.desc(), Produto.id).limit(1)
            ).scalar_one_or_none()
        remaining = itertools.count(plan.pedidos, -1)
        lock = threading.Lock()
        rng = random.Random()

        def take_one() -> bool:
            with lock:
                return next(remaining) > 0 and not simulation._stop.is_set()

        def user() -> None:
            while take_one():
                started = time.perf_counter()
                status, detail = self._place(plan, hot, rng)
                elapsed_ms = (time.perf_counter() - started) * 1000
                with lock:
                    result.statuses[status] += 1
                    result.latencies_ms.append(elapsed_ms)
                    if isinstance(detail, int):
                        result.acknowledged.append(detail)
                    elif detail:
                        result.reasons[detail] += 1
                if status == "sobrecarga":
                    time.sleep(0.01)  # a refused user waits a moment, as a client honouring 429/503

        simulation.started = time.perf_counter()  # after the ledger read: users only
        users = [threading.Thread(target=user) for _ in range(plan.concorrencia)]
        for thread in users:
            thread.start()
        for thread in users:
            thread.join()
        result.seconds = time.perf_counter() - simulation.started
        with self._read_sessions.begin() as session:
            simulation.violations = check_after_load(session, before, result.acknowledged)

    def _pick(self, plan: SimulationPlan, hot: int | None, rng: random.Random) -> Job:
        """A random order, or one that buys the hot produto."""
        if hot is None or rng.randrange(100) >= plan.quente_pct:
            return RANDOM_PEDIDO
        with self._read_sessions.begin() as session:
            cliente_id = random_pedido_request(session, rng).cliente_id
        return PedidoRequest(cliente_id, (ItemRequest(hot, 1),))

    def _place(
        self, plan: SimulationPlan, hot: int | None, rng: random.Random
    ) -> tuple[str, int | str | None]:
        """One order's outcome and its detail: the pedido id, the rejection reason or error."""
        try:
            job = self._pick(plan, hot, rng)
            return "concluido", self._processor.submit(job).result(timeout=RESULT_TIMEOUT).id
        except PedidoRejeitado as rejection:
            return "rejeitado", rejection.reason
        except Overloaded:
            return "sobrecarga", None
        except ShuttingDown:
            return "desligando", None
        except Exception as error:  # counted and shown, like any other outcome
            return "falhou", type(error).__name__
