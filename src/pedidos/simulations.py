"""Simulations started from the dashboard: random orders through this process's processor.

Each simulation runs on a background thread with `concorrencia` simulated users, reports its
progress while it runs, and ends with throughput, latency percentiles, outcomes and an
invariant check of the whole database. One runs at a time; the last few are kept.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pedidos.invariants import check_after_load, take_ledger
from pedidos.models import Produto
from pedidos.processor import Overloaded, PedidoProcessor, ShuttingDown
from pedidos.running import Job
from pedidos.service import ItemRequest, PedidoRejeitado, PedidoRequest, random_pedido_request
from pedidos.simulate import SimulationResult

log = logging.getLogger(__name__)

KEPT = 10
RESULT_TIMEOUT = 120.0


class SimulacaoEmAndamento(Exception):
    """Another simulation is still running in this process."""


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
    """The simulations of one process: start one, look one up, stop them on shutdown."""

    def __init__(self, read_sessions: sessionmaker[Session], processor: PedidoProcessor) -> None:
        self._read_sessions = read_sessions
        self._processor = processor
        self._kept: OrderedDict[int, Simulation] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, plan: SimulationPlan) -> Simulation:
        """Start a simulation in the background; SimulacaoEmAndamento if one is running."""
        with self._lock:
            if any(s.running for s in self._kept.values()):
                raise SimulacaoEmAndamento()
            simulation = Simulation(
                next(self._ids), plan, SimulationResult(plan.pedidos, plan.concorrencia)
            )
            self._kept[simulation.id] = simulation
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        simulation._thread = threading.Thread(
            target=self._run, args=(simulation,), name=f"simulation-{simulation.id}", daemon=True
        )
        simulation._thread.start()
        return simulation

    def recent(self) -> list[Simulation]:
        """The simulations kept, newest first."""
        with self._lock:
            return list(reversed(self._kept.values()))

    def get(self, simulation_id: int) -> Simulation | None:
        with self._lock:
            return self._kept.get(simulation_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop running simulations from sending, and wait for them to end (on shutdown)."""
        with self._lock:
            running = list(self._kept.values())
        for simulation in running:
            simulation._stop.set()
        deadline = time.monotonic() + timeout
        for simulation in running:
            if simulation._thread is not None:
                simulation._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, simulation: Simulation) -> None:
        try:
            self._simulate(simulation)
        except Exception as error:  # a background thread: record it, never die silently
            log.exception("simulation %d failed", simulation.id)
            simulation.error = f"{type(error).__name__} (see the service log)"
        finally:
            simulation.running = False

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
        """None lets the processor pick a random order; a hot order buys the hot produto."""
        if hot is None or rng.randrange(100) >= plan.quente_pct:
            return None
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
