"""Each worker of the production servers on a core of its own: claimed once, whole process
and later threads included, handed on when a worker ends, waited for while none is free."""

from __future__ import annotations

import os
import signal
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
from pedidos.web.cores import CLAIMS_VARIABLE
from tests.helpers import ROOT, free_port, wait_until, worker_pids

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="cores are claimed where Linux lets a process"
)

# A worker's start as far as cores go: a thread before the claim, the claim, a thread after;
# then the core and both threads' cores. It holds its claim until its stdin closes. The cores
# it may run on come as its argument, as a server's workers inherit them.
WORKER = """
import os, sys, threading
os.sched_setaffinity(0, {int(core) for core in sys.argv[1].split(",")})
from pedidos.web.cores import claim_core
wait = threading.Event()
before = threading.Thread(target=wait.wait, daemon=True)
before.start()
core = claim_core(sys.argv[2])
after = threading.Thread(target=wait.wait, daemon=True)
after.start()
print(core, *(sorted(os.sched_getaffinity(t.native_id)) for t in (before, after)), sep="|")
sys.stdout.flush()
if sys.argv[3] == "fork":  # a worker forked from this one, as a preloading server makes
    child = os.fork()
    if child == 0:
        print(claim_core(sys.argv[2]), sorted(os.sched_getaffinity(0)), sep="|", flush=True)
        os._exit(0)
    os.waitpid(child, 0)
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


def start_worker(
    folder: Path, cores: set[int], executor: str = "thread", then: str = "wait"
) -> tuple[subprocess.Popen[str], str]:
    """A process as a server starts a worker (on `cores`); its first line."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, ",".join(map(str, cores)), executor, then],
        env={**os.environ, CLAIMS_VARIABLE: str(folder)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    return worker, worker.stdout.readline().strip()


def affinities(pid: int) -> set[str]:
    """The cores each thread of `pid` may run on, as /proc lists them ("0", "0-1")."""
    found: set[str] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended
        found.add(status.split("Cpus_allowed_list:")[1].split()[0])
    return found


def test_each_worker_claims_a_free_core_with_every_thread(tmp_path: Path) -> None:
    cores = cores_of_this_test()
    with killed_at_end() as started:
        lines = []
        for _ in cores:
            worker, line = start_worker(tmp_path, cores)
            started.append(worker)
            lines.append(line.split("|"))
    # One core each, and the threads started before and after the claim run on it too.
    assert sorted(int(core) for core, _, _ in lines) == sorted(cores)
    for core, before, after in lines:
        assert before == after == f"[{core}]"


def test_a_worker_without_a_free_core_takes_the_first_that_comes_free(tmp_path: Path) -> None:
    cores = cores_of_this_test()
    with killed_at_end() as started:
        holders = [start_worker(tmp_path, cores) for _ in cores]
        started += [worker for worker, _ in holders]
        # More workers than cores (or new ones while a reload's old ones drain): it runs
        # where it may, like any process, and waits for a core.
        waiting, line = start_worker(tmp_path, cores)
        started.append(waiting)
        everywhere = str(sorted(cores))
        assert line == f"None|{everywhere}|{everywhere}"
        # A worker that ends lets go of its core: the waiting one moves onto it.
        (first, first_line) = holders[0]
        freed = first_line.split("|")[0]
        stop(first)
        wait_until(lambda: affinities(waiting.pid) == {freed}, 10, "the freed core taken")


def test_a_worker_forked_from_a_claimant_claims_a_core_of_its_own(tmp_path: Path) -> None:
    cores = cores_of_this_test()
    if len(cores) < 2:
        pytest.skip("one core: a forked worker has none left to claim")  # not on CI machines
    with killed_at_end() as started:
        parent, line = start_worker(tmp_path, cores, then="fork")
        started.append(parent)
        assert parent.stdout is not None
        child_core, child_cores = parent.stdout.readline().strip().split("|")
    parent_core = line.split("|")[0]
    assert child_core != parent_core
    assert child_cores == f"[{child_core}]"


@pytest.mark.parametrize(
    ("variable", "executor"),
    [(False, "thread"), ("missing folder", "thread"), (True, "process")],
)
def test_no_core_is_claimed_where_it_should_not_be(
    tmp_path: Path, variable: bool | str, executor: str
) -> None:
    # Not asked; a folder that is not there (the worker serves on, looking no further); the
    # process executor, whose order processes would all inherit the one core.
    env = {k: v for k, v in os.environ.items() if k != CLAIMS_VARIABLE}
    if variable:
        env[CLAIMS_VARIABLE] = str(
            tmp_path / "missing" if variable == "missing folder" else tmp_path
        )
    probe = (
        "import threading; from pedidos.web.cores import claim_core;"
        f" print(claim_core({executor!r}), [t.name for t in threading.enumerate()][1:])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None []"


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
    tmp_path: Path, server: str, *options: str, pin: str = "on"
) -> Iterator[subprocess.Popen[bytes]]:
    """`server` with two workers on a SQLite file, each having run requests on threads."""
    url = f"sqlite:///{tmp_path / 'cores.sqlite3'}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PEDIDOS_RECOVERY_INTERVAL": "0",
        "PEDIDOS_EXECUTOR": "thread",
        "PEDIDOS_GUNICORN_WORKERS": "2",
        "PEDIDOS_PIN": pin,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    env.pop(CLAIMS_VARIABLE, None)
    (tmp_path / "metrics").mkdir()
    pedidos = str(Path(sys.executable).with_name("pedidos"))
    subprocess.run([pedidos, "init-db"], env=env, check=True, capture_output=True)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*server_command(server, port), *options],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base) or process.poll() is not None, 30, "the server")
        if process.poll() is None:
            wait_until(lambda: len(worker_pids(process.pid)) == 2, 10, "two workers")
            # Requests at once, so that the workers start threads to run them.
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda _: httpx.get(f"{base}/healthz", timeout=10), range(64)))
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def each_on_its_own_core(server: int) -> bool:
    """Every thread of each worker on one core, and not the other worker's (given two)."""
    claimed = [affinities(pid) for pid in worker_pids(server)]
    single = [next(iter(cores)) for cores in claimed if len(cores) == 1]
    return (
        len(single) == len(claimed) == 2
        and all(core.isdigit() for core in single)
        and (len(set(single)) == min(2, len(os.sched_getaffinity(0))))
    )


@pytest.mark.parametrize(
    ("server", "options"), [("granian", []), ("gunicorn", []), ("gunicorn", ["--preload"])]
)
def test_the_workers_run_on_cores_of_their_own(
    tmp_path: Path, server: str, options: list[str]
) -> None:
    with serving(tmp_path, server, *options) as process:
        wait_until(lambda: each_on_its_own_core(process.pid), 10, "each worker on its core")


@pytest.mark.parametrize(
    ("server", "options", "pin"), [("granian", ["--no-pin"], "on"), ("gunicorn", [], "off")]
)
def test_turned_off_the_workers_run_where_the_system_puts_them(
    tmp_path: Path, server: str, options: list[str], pin: str
) -> None:
    with serving(tmp_path, server, *options, pin=pin) as process:
        tasks = [affinities(pid) for pid in worker_pids(process.pid)]
    mine = Path("/proc/self/status").read_text().split("Cpus_allowed_list:")[1].split()[0]
    assert tasks == [{mine}, {mine}]


def test_gunicorn_refuses_a_pin_setting_it_cannot_read(tmp_path: Path) -> None:
    with serving(tmp_path, "gunicorn", pin="sometimes") as process:
        assert process.wait(timeout=30) != 0
    log = (tmp_path / "serve.log").read_text()
    assert "PEDIDOS_PIN must be on or off, got 'sometimes'" in log


def test_the_gunicorn_settings_load_nothing_of_the_app() -> None:
    # Loaded in gunicorn's master before PROMETHEUS_MULTIPROC_DIR is set: an import of the
    # app there would give every forked worker metrics of its own, which /metrics never sums.
    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('pedidos', 'prometheus_client', 'flask', 'sqlalchemy')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "gunicorn.conf.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_no_pin_needs_the_production_server(app: Flask) -> None:
    result = CliRunner().invoke(cli, ["serve", "--no-pin"], obj=CliState(app=app))
    assert result.exit_code == 2
    assert "--no-pin needs --production" in result.output
