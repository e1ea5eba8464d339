# Every target creates the virtualenv and installs the project on first use.
# The virtualenv's interpreter: the system's CPython where it is 3.11 or later and can make a
# virtualenv, else the first python3 on PATH. Distribution builds are optimized (PGO, LTO,
# libpython linked into the executable); a source build with a shared libpython, pyenv's
# default, ran the order path about 12 % slower (docs/performance.md). PYTHON=... overrides.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	$$p -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; exit 0; }; done; echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install wrk bench-http chromium haproxy screenshot run test faults lint typecheck check format bench bench-reads bench-soak bench-soak-http bench-wrk simulate audit clean cluster-up cluster-down cluster-status cluster-test cluster-bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# mysqlclient, the faster MariaDB driver, builds against Debian's libmariadb-dev; where it
	@# cannot be built, `mysql://` URLs fall back to PyMySQL (docs/performance.md).
	@{ command -v pkg-config >/dev/null && pkg-config --exists libmariadb; } || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq libmariadb-dev pkg-config >/dev/null; } || true
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,mysqlclient]' || \
		echo "mysqlclient could not be built here: MariaDB runs on PyMySQL"
	touch $(STAMP)

install: $(STAMP)

## Migrate, seed demo data once, and serve on http://127.0.0.1:5000 (SQLite unless DATABASE_URL).
run: install
	$(BIN)/pedidos init-db
	$(BIN)/pedidos seed --if-empty --clientes 1000 --produtos 200 --pedidos 5000 --seed 1
	$(BIN)/pedidos serve

## Debian's Chromium for the browser tests (test tools' own browser downloads are not used).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed and cannot be installed here: browser tests will skip"

## Debian's HAProxy, the buffering proxy that the slow-client fault tests put in front.
haproxy:
	@command -v haproxy >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } || \
		echo "haproxy is not installed and cannot be installed here"

## The test suite on SQLite and MariaDB, browser tests included (MariaDB and browser tests skip
## locally when they cannot run, and fail under CI=true). Fault injection is `make faults`.
test: install chromium
	$(BIN)/pytest

## The README's dashboard screenshot, from a seeded SQLite database and a simulation.
screenshot: install chromium
	$(BIN)/python -m tests.browser.screenshot docs/dashboard.png

## Fault injection on MariaDB (kill -9, database restart, killed connections, floods...): about
## 5 minutes. A complete, passing run rewrites docs/guarantees.md from its figures.
faults: install haproxy
	PEDIDOS_FAULTS_RESULTS=1 $(BIN)/pytest -m faults tests/faults
	$(BIN)/python benchmarks/guarantees.py

## A local cluster: 3 instances behind HAProxy on a 3-node Galera cluster (docs/deploy.md).
## CLUSTER_MODE=multi for multi-primary.
cluster-up: install
	deploy/cluster.sh up $(CLUSTER_MODE)

cluster-down:
	deploy/cluster.sh down

cluster-status:
	deploy/cluster.sh status

## The cluster under load with a killed instance and a stopped node, both modes (~3 min).
cluster-test: install
	$(BIN)/pytest -m cluster tests/cluster

## Throughput, p99 and conflict retries: 1-3 instances x single/multi-primary x spread/hot.
cluster-bench: install
	bash benchmarks/cluster.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

## The benchmark: scenarios x modes x concurrency on MariaDB and SQLite; table, JSON and chart
## under benchmarks/results/. BENCH_ARGS passes options, e.g. BENCH_ARGS="--orders 300".
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/pedidos bench matrix $(BENCH_ARGS)

## Read latency with 1,000,000 orders on MariaDB: report pages, filters, summary, status.
bench-reads: install
	$(BIN)/pedidos bench reads $(BENCH_ARGS)

## Memory over a 1,000,000-order run through the batched processor (RSS sampled), ~20 min.
bench-soak: install
	$(BIN)/pedidos bench soak $(BENCH_ARGS)

## Memory of gunicorn's workers over a long wrk run (BENCH_SECONDS, default 600).
bench-soak-http: install
	bash benchmarks/soak_http.sh

## Debian's wrk, the HTTP load generator of the benchmarks.
wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
		{ echo "wrk is not installed and cannot be installed here" >&2; exit 1; }

## Orders over HTTP, Pedidos against a minimal raw-SQL Flask app, under gunicorn and granian,
## spread and hot (~3 min; docs/performance.md). BENCH_ARGS="--database pedidos_bench_x".
bench-http: install wrk
	$(BIN)/python benchmarks/bench_http.py $(BENCH_ARGS)

## Server-side HTTP throughput with wrk (Debian package), gunicorn and MariaDB.
bench-wrk: install wrk
	bash benchmarks/wrk.sh

## The simulator over HTTP on MariaDB at concurrency 1, 16 and 64.
simulate: install
	bash benchmarks/simulate.sh

## Security lint. B311 (random) is skipped: random picks backoff jitter, counter shards and
## demo data here, never secrets or tokens.
audit: install
	$(BIN)/bandit -q -r src --skip B311

clean:
	rm -rf $(VENV) instance .mypy_cache .ruff_cache .pytest_cache
