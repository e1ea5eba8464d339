// The dashboard's behaviour: poll /status for counters and the throughput chart, run
// simulations, place an order by hand, and swap in server-rendered report and catalog pages.
"use strict";

const brl = new Intl.NumberFormat("pt-BR", { style: "currency", currency: "BRL" });
const inteiro = new Intl.NumberFormat("pt-BR");
const decimal = new Intl.NumberFormat("pt-BR", { maximumFractionDigits: 1 });
const POLL_MS = 1000;
const CHART_POINTS = 120;

const $ = (selector) => document.querySelector(selector);

// Portuguese names for the service's keys (rejection reasons, simulation outcomes), rendered
// into the page by the server so that both speak alike.
const ROTULOS = JSON.parse(document.getElementById("rotulos").textContent);
const motivo = (key) => ROTULOS.motivos[key] ?? key.replaceAll("_", " ");
const resultado = (key) => ROTULOS.resultados[key] ?? key.replaceAll("_", " ");
const contagens = (counts, label) =>
  Object.entries(counts).map(([key, n]) => `${label(key)}: ${inteiro.format(n)}`).join(", ");

// Rejections explained in Portuguese from the problem's facts (its detail is in English).
const REJECTIONS = {
  // Without the read scope the saldo itself is not disclosed (production).
  saldo_insuficiente: (p) =>
    p.saldo === undefined
      ? `Saldo insuficiente: o saldo do cliente ${p.cliente_id} não cobre o pedido de ` +
        `${brl.format(Number(p.total))}.`
      : `Saldo insuficiente: o cliente ${p.cliente_id} tem ${brl.format(Number(p.saldo))} ` +
        `e o pedido custa ${brl.format(Number(p.total))}.`,
  estoque_insuficiente: (p) =>
    `Estoque insuficiente: o produto ${p.produto_id} tem ${inteiro.format(p.disponivel)} ` +
    `unidade(s) e o pedido pede ${inteiro.format(p.pedido)}.`,
  cliente_nao_encontrado: (p) => `Cliente ${p.cliente_id} não existe.`,
  produto_nao_encontrado: (p) => `Produto(s) ${p.produto_ids.join(", ")} não existe(m).`,
};

async function problemText(response) {
  // Every API error is RFC 9457 problem+json: explain a rejection, else show title and detail.
  try {
    const problem = await response.json();
    const explain = REJECTIONS[problem.reason];
    return explain ? explain(problem) : `${problem.title}: ${problem.detail}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// ---- counters and throughput -------------------------------------------------------------
// The chart plots committed orders per second as the database counts them (every instance),
// filled from the whole window on load, then topped up with the last few seconds each poll.
const SEGUNDOS = Number($("#vazao").dataset.segundos);
const porSegundo = new Map(); // Unix second -> committed orders in it
let fimJanela = 0; // the end (exclusive) of the newest whole second known

async function loadRates(segundos) {
  const response = await fetch(`/painel/vazao?segundos=${segundos}`);
  if (!response.ok) return;
  const { fim, valores } = await response.json();
  valores.forEach((n, index) => porSegundo.set(fim - valores.length + index, n));
  fimJanela = Math.max(fimJanela, fim);
  for (const second of porSegundo.keys()) {
    if (second < fimJanela - SEGUNDOS) porSegundo.delete(second);
  }
  drawChart();
}

function windowRates() {
  const rates = [];
  for (let second = fimJanela - SEGUNDOS; second < fimJanela; second += 1) {
    rates.push(porSegundo.get(second) ?? 0);
  }
  return rates;
}

function drawChart() {
  const rates = windowRates();
  const canvas = $("#vazao");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const top = Math.max(10, ...rates);
  context.strokeStyle = "#c8ccd2";
  context.fillStyle = "#3b4048";
  context.font = "12px system-ui, sans-serif";
  for (const fraction of [0, 0.5, 1]) {
    const y = height - 16 - fraction * (height - 32);
    context.beginPath();
    context.moveTo(40, y);
    context.lineTo(width, y);
    context.stroke();
    context.fillText(inteiro.format(Math.round(top * fraction)), 2, y + 4);
  }
  context.fillText(`-${SEGUNDOS / 60} min`, 40, height - 2);
  context.fillText("agora", width - 40, height - 2);
  context.strokeStyle = "#0b5cad";
  context.lineWidth = 2;
  context.beginPath();
  rates.forEach((rate, index) => {
    const x = 40 + (index / (rates.length - 1)) * (width - 44);
    const y = height - 16 - (rate / top) * (height - 32);
    if (index === 0) context.moveTo(x, y);
    else context.lineTo(x, y);
  });
  context.stroke();
  context.lineWidth = 1;
  const last = rates[rates.length - 1] ?? 0;
  const average = rates.reduce((a, b) => a + b, 0) / (rates.length || 1);
  $("#vazao-atual").textContent = decimal.format(last);
  $("#vazao-media").textContent = decimal.format(average);
  canvas.setAttribute(
    "aria-label",
    `Pedidos concluídos por segundo nos últimos ${SEGUNDOS / 60} minutos: ` +
      `último segundo ${decimal.format(last)}, média ${decimal.format(average)}`,
  );
}

function showStatus(status) {
  const processor = status.processor;
  // Behind a balancer each poll may reach another instance: name whose counters these are.
  $("#instancia").textContent = `${status.instance.name}, pid ${status.instance.pid}`;
  const rejected = Object.values(processor.rejected).reduce((a, b) => a + b, 0);
  const counters = {
    in_progress: processor.in_progress,
    completed: processor.completed,
    rejected,
    failed: processor.failed,
    overloaded: processor.overloaded,
  };
  for (const [name, value] of Object.entries(counters)) {
    $(`[data-counter="${name}"]`).textContent = inteiro.format(value);
  }
  $("#motivos").textContent = contagens(processor.rejected, motivo) || "nenhuma";
  $('[data-total="pedidos"]').textContent = inteiro.format(status.database.pedidos);
  $('[data-total="rejeitados"]').textContent = inteiro.format(
    status.database.por_estado.REJEITADO ?? 0,
  );
  $('[data-total="unidades"]').textContent = inteiro.format(status.database.unidades);
  $('[data-total="receita"]').textContent = brl.format(Number(status.database.receita));
}

async function poll() {
  try {
    const response = await fetch("/status", { headers: { Accept: "application/json" } });
    if (response.ok) showStatus(await response.json());
    await loadRates(5);
  } catch {
    // The service may be restarting; the next poll tries again.
  }
  setTimeout(poll, POLL_MS);
}

// ---- server-rendered fragments -------------------------------------------------------------
function reportFilters() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#filtros"))) {
    if (value !== "") params.set(name, value);
  }
  return params;
}

async function swap(target, url) {
  const response = await fetch(url);
  const error = $("#relatorio-erro");
  if (!response.ok) {
    error.textContent = await problemText(response);
    return false;
  }
  error.textContent = "";
  $(`#${target}`).innerHTML = await response.text();
  return true;
}

function refreshReport() {
  $("#csv").href = `/relatorio.csv?${reportFilters()}`;
  return swap("relatorio", `/painel/relatorio?${reportFilters()}`);
}

function refreshCatalog() {
  swap("clientes", "/painel/clientes");
  swap("produtos", "/painel/produtos");
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.pagina");
  if (!button) return;
  const target = button.dataset.target;
  if (target === "relatorio") {
    const params = reportFilters();
    params.set("cursor", button.dataset.cursor);
    swap(target, `/painel/relatorio?${params}`);
  } else {
    swap(target, `/painel/${target}?after=${button.dataset.after}`);
  }
});

// ---- simulation ------------------------------------------------------------------------------
function showSimulation(simulation) {
  const progress = $("#simulacao-progresso");
  progress.max = simulation.pedidos;
  progress.value = simulation.done;
  const outcomes = contagens(simulation.outcomes, resultado);
  if (simulation.running) {
    $("#simulacao-estado").textContent =
      `Simulação ${simulation.id}: ${inteiro.format(simulation.done)} de ` +
      `${inteiro.format(simulation.pedidos)} pedidos`;
    return;
  }
  if (simulation.error) {
    $("#simulacao-estado").textContent = `Simulação ${simulation.id} falhou: ${simulation.error}.`;
    return;
  }
  $("#simulacao-estado").textContent = `Simulação ${simulation.id} concluída.`;
  const latency = simulation.latency_ms;
  const rows = [
    ["Pedidos/s", decimal.format(simulation.orders_per_second)],
    ["Concluídos/s", decimal.format(simulation.committed_per_second)],
    ["Latência (ms)", `p50 ${decimal.format(latency.p50)} · p95 ${decimal.format(latency.p95)} · ` +
      `p99 ${decimal.format(latency.p99)} · máx ${decimal.format(latency.max)}`],
    ["Resultados", outcomes || "nenhum"],
    ["Motivos", contagens(simulation.reasons, motivo) || "nenhum"],
    ["Invariantes", simulation.invariants_ok
      ? "OK: dinheiro e estoque conservados, nada negativo"
      : `VIOLADAS: ${simulation.violations.join("; ")}`],
  ];
  const list = $("#simulacao-resultado");
  list.replaceChildren(
    ...rows.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  list.hidden = false;
}

async function followSimulation(location) {
  const response = await fetch(location);
  if (!response.ok) {
    $("#simulacao-estado").textContent = await problemText(response);
    return;
  }
  const simulation = await response.json();
  showSimulation(simulation);
  if (simulation.running) {
    setTimeout(() => followSimulation(location), 500);
  } else {
    $("#simular button").disabled = false;
    refreshReport();
    refreshCatalog();
  }
}

$("#simular").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const headers = { "Content-Type": "application/json" };
  if (form.get("token")) headers.Authorization = `Bearer ${form.get("token")}`;
  const body = {
    pedidos: Number(form.get("pedidos")),
    concorrencia: Number(form.get("concorrencia")),
    quente_pct: Number(form.get("quente_pct")),
  };
  $("#simulacao-resultado").hidden = true;
  const response = await fetch("/simulacoes", { method: "POST", headers, body: JSON.stringify(body) });
  if (!response.ok) {
    $("#simulacao-estado").textContent = await problemText(response);
    return;
  }
  $("#simular button").disabled = true;
  showSimulation(await response.json());
  followSimulation(response.headers.get("Location"));
});

// ---- one order by hand -----------------------------------------------------------------------
$("#pedido").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {
    cliente_id: Number(form.get("cliente_id")),
    itens: [{ produto_id: Number(form.get("produto_id")), quantidade: Number(form.get("quantidade")) }],
  };
  const output = $("#pedido-resultado");
  output.className = "";
  output.textContent = "Enviando…";
  const response = await fetch("/pedido", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status === 201) {
    const pedido = await response.json();
    output.className = "ok";
    output.textContent = `Pedido #${pedido.id} criado: total ${brl.format(Number(pedido.total))}.`;
    refreshReport();
    refreshCatalog();
  } else {
    output.className = "erro";
    output.textContent = `Pedido recusado. ${await problemText(response)}`;
  }
});

// ---- report ----------------------------------------------------------------------------------
$("#filtros").addEventListener("submit", (event) => {
  event.preventDefault();
  $("#resumo").replaceChildren();
  refreshReport();
});

$("#resumo-botao").addEventListener("click", () => {
  swap("resumo", `/painel/resumo?${reportFilters()}`);
});

// The latest simulation, whichever process or page started it, is shown from the start.
async function showLatestSimulation() {
  try {
    const response = await fetch("/simulacoes");
    if (!response.ok) return;
    const [latest] = (await response.json()).simulacoes;
    if (!latest) return;
    showSimulation(latest);
    if (latest.running) {
      $("#simular button").disabled = true;
      followSimulation(`/simulacoes/${latest.id}`);
    }
  } catch {
    // Nothing to show; the form still works.
  }
}

loadRates(SEGUNDOS);
showLatestSimulation();
poll();
