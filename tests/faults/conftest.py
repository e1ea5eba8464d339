"""Fault-suite fixtures: a fresh MariaDB database per test, service processes; and the hooks
that print this run's figures and write them to benchmarks/results/faults.json."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from pedidos.storage.engine import make_engine, upgrade_schema
from tests.faults.harness import RUN, ServiceProcess, StartService
from tests.helpers import ROOT, recreate_mariadb_database, sibling_database

RESULTS = ROOT / "benchmarks" / "results" / "faults.json"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and "tests/faults/" in report.nodeid:
        RUN.failed.append(report.nodeid.split("::")[-1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RUN.guarantees and not RUN.failed:
        return
    RUN.guarantees.sort(key=lambda row: row["test"])
    terminalreporter.section("fault-injection figures")
    for row in RUN.guarantees:
        terminalreporter.write_line(f"{row['test']}: {row['figure']}")
    if os.environ.get("PEDIDOS_FAULTS_RESULTS"):
        results = {
            "commit": _git("rev-parse", "HEAD") or "unknown",
            # Uncommitted changes to tracked files (other than what this run writes): the
            # figures are then not those of `commit`.
            "dirty": bool(
                _git(
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":!benchmarks/results/faults.json",
                    ":!docs/guarantees.md",
                )
            ),
            "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(time.time() - RUN.started, 1),
            # Others may share the machine: its load says how far the figures are from idle.
            "load_average": round(os.getloadavg()[1], 1),
            "failed": RUN.failed,
            "guarantees": RUN.guarantees,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


@pytest.fixture
def fault_url(mariadb_url: str) -> str:
    """A fresh, migrated MariaDB database of its own for each fault test."""
    url = sibling_database("faults")
    recreate_mariadb_database(url)
    upgrade_schema(url)
    return url


@pytest.fixture
def fault_engine(fault_url: str) -> Iterator[Engine]:
    engine = make_engine(fault_url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[StartService]:
    """Start `pedidos serve` processes; any still running are killed after the test."""
    started: list[ServiceProcess] = []

    def start(database_url: str, **settings: str) -> ServiceProcess:
        service = ServiceProcess(database_url, tmp_path / f"service-{len(started)}.log", **settings)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
