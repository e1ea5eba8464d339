"""HTTP API of simulations: start one (an administrative operation) and follow it."""

from __future__ import annotations

from flask import Blueprint, Response

from pedidos.sim.simulacoes import Simulation, SimulationPlan, SimulationRunning
from pedidos.web.access import require_admin
from pedidos.web.api import json_response
from pedidos.web.current import current_runtime
from pedidos.web.inputs import read_json_body
from pedidos.web.openapi import Operation, operation
from pedidos.web.problems import Problem
from pedidos.web.schemas import MAX_ID, LatencyOut, SimulacaoIn, SimulacaoList, SimulacaoOut

simulacoes_api = Blueprint("simulacoes_api", __name__)


def simulacao_out(simulation: Simulation) -> SimulacaoOut:
    result, seconds = simulation.result, simulation.seconds
    plan = simulation.plan
    return SimulacaoOut(
        id=simulation.id,
        running=simulation.running,
        pedidos=plan.pedidos,
        concorrencia=plan.concorrencia,
        quente_pct=plan.quente_pct,
        done=simulation.done,
        seconds=round(seconds, 3),
        orders_per_second=round(simulation.done / seconds, 1) if seconds else 0.0,
        committed_per_second=round(result.committed / seconds, 1) if seconds else 0.0,
        latency_ms=LatencyOut(
            **{f"p{p}": round(result.percentile(p), 2) for p in (50, 95, 99)},
            max=round(result.percentile(100), 2),
        ),
        outcomes=dict(result.statuses),
        reasons=dict(result.reasons),
        invariants_ok=None if simulation.violations is None else not simulation.violations,
        violations=simulation.violations or [],
        error=simulation.error,
    )


@simulacoes_api.post("/simulacoes")
@operation(
    Operation(
        summary="Start a simulation (administrative)",
        tag="simulacoes",
        description="Random orders from simulated users through this instance's order "
        "processor; quente_pct of them buy the produto with most estoque. One runs at a time "
        "across every instance sharing the database, and any instance reports on it. Needs "
        "the admin scope in production; in development, `Authorization: Bearer "
        "<PEDIDOS_ADMIN_TOKEN>` when that token is configured.",
        body=SimulacaoIn,
        body_required=False,
        responses={202: SimulacaoOut, 401: None, 403: None, 409: None, 415: None, 422: None},
        headers={202: ["Location"]},
    )
)
def start_simulacao() -> Response:
    runtime = current_runtime()
    require_admin(runtime.settings)
    wanted = read_json_body(SimulacaoIn, what="the simulation") or SimulacaoIn()
    try:
        simulation = runtime.simulations.start(
            SimulationPlan(wanted.pedidos, wanted.concorrencia, wanted.quente_pct)
        )
    except SimulationRunning:
        raise Problem(
            409,
            "simulacao-em-andamento",
            "A simulation is running",
            "Wait for the running simulation to finish.",
        ) from None
    response = json_response(simulacao_out(simulation), 202)
    response.headers["Location"] = f"/simulacoes/{simulation.id}"
    return response


@simulacoes_api.get("/simulacoes")
@operation(
    Operation(
        summary="Recent simulations, newest first (running ones included)",
        tag="simulacoes",
        responses={200: SimulacaoList},
    )
)
def list_simulacoes() -> Response:
    recent = current_runtime().simulations.recent()
    return json_response(
        SimulacaoList(simulacoes=[SimulacaoOut.model_validate(state) for state in recent])
    )


@simulacoes_api.get("/simulacoes/<int:simulacao_id>")
@operation(
    Operation(
        summary="A simulation's progress, and its figures once done",
        tag="simulacoes",
        responses={200: SimulacaoOut, 404: None},
    )
)
def get_simulacao(simulacao_id: int) -> Response:
    state = current_runtime().simulations.get(simulacao_id) if simulacao_id <= MAX_ID else None
    if state is None:
        raise Problem(
            404,
            "simulacao-nao-encontrada",
            "Not found",
            f"simulation {simulacao_id} does not exist",
        )
    return json_response(SimulacaoOut.model_validate(state))
