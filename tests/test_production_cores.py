"""Each worker of `pedidos serve --production` on a core of its own: claimed once, whole
process and later threads included, handed on when the worker dies, none when none is left."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask

from pedidos.cli import CliState, cli
from pedidos.web.production import CORES_VARIABLE
from tests.helpers import ROOT, free_port, wait_until

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="cores are claimed where Linux lets a process"
)

# A worker's start as far as cores go: a thread before the claim, the claim, a thread after;
# then the core and both threads' cores, and it holds its claim until stdin closes.
WORKER = """
import os, sys, threading
os.sched_setaffinity(0, {int(core) for core in sys.argv[1].split(",")})  # as if inherited
from pedidos.web.production import claim_core
wait = threading.Event()
before = threading.Thread(target=wait.wait, daemon=True)
before.start()
core = claim_core()
after = threading.Thread(target=wait.wait, daemon=True)
after.start()
print(core, *(sorted(os.sched_getaffinity(t.native_id)) for t in (before, after)), sep="|")
sys.stdout.flush()
sys.stdin.read()
"""


def cores_of_this_test() -> set[int]:
    """At most two of this machine's cores: the claims need no more to be told apart."""
    return set(sorted(os.sched_getaffinity(0))[:2])


@contextmanager
def killed_at_end() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for worker in started:
            stop(worker)


def stop(worker: subprocess.Popen[str]) -> None:
    if worker.returncode is None:
        worker.kill()
        worker.communicate()  # and closes its pipes


def start_worker(folder: Path, cores: set[int]) -> tuple[subprocess.Popen[str], str]:
    """A process as the supervisor starts a worker (on `cores`); its first line."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, ",".join(map(str, cores))],
        env={**os.environ, CORES_VARIABLE: str(folder)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    return worker, worker.stdout.readline().strip()


def test_each_worker_claims_a_free_core_with_every_thread_and_hands_it_on(
    tmp_path: Path,
) -> None:
    cores = cores_of_this_test()
    with killed_at_end() as started:
        lines = []
        for _ in range(len(cores) + 1):
            worker, line = start_worker(tmp_path, cores)
            started.append(worker)
            lines.append(line)
        claimed = [line.split("|") for line in lines[:-1]]
        # One core each, and the threads started before and after the claim run on it too.
        assert sorted(int(core) for core, _, _ in claimed) == sorted(cores)
        for core, before, after in claimed:
            assert before == after == f"[{core}]"
        # More workers than cores: the last runs where it may, like any process.
        everywhere = str(sorted(cores))
        assert lines[-1] == f"None|{everywhere}|{everywhere}"

        # A worker that dies lets go of its core: the next one started takes it.
        freed = claimed[0][0]
        stop(started[0])
        worker, line = start_worker(tmp_path, cores)
        started.append(worker)
        assert line.split("|")[0] == freed


def test_without_the_supervisor_no_core_is_claimed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != CORES_VARIABLE}
    probe = "from pedidos.web.production import claim_core; print(claim_core())"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


def test_a_claim_that_cannot_be_made_leaves_the_worker_serving(tmp_path: Path) -> None:
    env = {**os.environ, CORES_VARIABLE: str(tmp_path / "missing")}
    probe = "from pedidos.web.production import claim_core; print(claim_core())"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


def worker_tasks(server: int) -> dict[int, set[str]]:
    """Each worker process of the server: the cores its threads may run on, as /proc says."""
    found: dict[int, set[str]] = {}
    for child in Path(f"/proc/{server}/task/{server}/children").read_text().split():
        entry = Path("/proc") / child
        try:
            if b"resource_tracker" in (entry / "cmdline").read_bytes():
                continue  # the spawning server's helper, not a worker
            found[int(child)] = {
                line.split()[1]
                for task in (entry / "task").iterdir()
                for line in (task / "status").read_text().splitlines()
                if line.startswith("Cpus_allowed_list")
            }
        except OSError:
            continue
    return found


def server_command(server: str, port: int) -> list[str]:
    """Two workers: `pedidos serve --production`, or gunicorn with the project's settings."""
    if server == "granian":
        pedidos = str(Path(sys.executable).with_name("pedidos"))
        return [pedidos, "serve", "--production", "--port", str(port), "--workers", "2"]
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    conf = str(ROOT / "gunicorn.conf.py")
    return [gunicorn, "-c", conf, "-b", f"127.0.0.1:{port}", "pedidos.wsgi:app"]


@contextmanager
def serving(
    tmp_path: Path, server: str, *options: str, **settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`server` with two workers on a SQLite file, each having run requests on threads."""
    url = f"sqlite:///{tmp_path / 'cores.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "PEDIDOS_RECOVERY_INTERVAL": "0", **settings}
    env["PEDIDOS_GUNICORN_WORKERS"] = "2"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    (tmp_path / "metrics").mkdir()
    pedidos = str(Path(sys.executable).with_name("pedidos"))
    subprocess.run([pedidos, "init-db"], env=env, check=True, capture_output=True)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*server_command(server, port), *options], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base) or process.poll() is not None, 30, "the server")
        if process.poll() is None:
            wait_until(lambda: len(worker_tasks(process.pid)) == 2, 10, "two workers")
            # Requests at once, so that the workers start threads to run them.
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda _: httpx.get(f"{base}/healthz", timeout=10), range(64)))
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_the_workers_run_on_cores_of_their_own(tmp_path: Path, server: str) -> None:
    with serving(tmp_path, server) as process:
        tasks = worker_tasks(process.pid)
    assert len(tasks) == 2
    # Every thread of a worker on one core, and not the other worker's (given two cores).
    assert all(len(allowed) == 1 for allowed in tasks.values()), tasks
    claimed = {next(iter(allowed)) for allowed in tasks.values()}
    assert all(core.isdigit() for core in claimed), tasks
    assert len(claimed) == min(2, len(os.sched_getaffinity(0))), tasks


@pytest.mark.parametrize(
    ("server", "options", "settings"),
    [("granian", ["--no-pin"], {}), ("gunicorn", [], {"PEDIDOS_PIN": "off"})],
)
def test_turned_off_the_workers_run_where_the_system_puts_them(
    tmp_path: Path, server: str, options: list[str], settings: dict[str, str]
) -> None:
    with serving(tmp_path, server, *options, **settings) as process:
        tasks = worker_tasks(process.pid)
    assert len(tasks) == 2
    assert all(len(allowed) == 1 for allowed in tasks.values()), tasks
    where = {next(iter(allowed)) for allowed in tasks.values()}
    mine = Path("/proc/self/status").read_text().split("Cpus_allowed_list:")[1].split()[0]
    assert where == {mine}


def test_gunicorn_refuses_a_pin_setting_it_cannot_read(tmp_path: Path) -> None:
    with serving(tmp_path, "gunicorn", PEDIDOS_PIN="sometimes") as process:
        assert process.wait(timeout=30) != 0
    assert "PEDIDOS_PIN must be on or off, got 'sometimes'" in (tmp_path / "serve.log").read_text()


def test_no_pin_needs_the_production_server(app: Flask) -> None:
    result = CliRunner().invoke(cli, ["serve", "--no-pin"], obj=CliState(app=app))
    assert result.exit_code == 2
    assert "--no-pin needs --production" in result.output
