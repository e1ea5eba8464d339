"""Each worker process of a server on a core of its own.

A worker's Python threads take turns on one interpreter lock, so one core is all they can use
at once. On a core of their own, a request thread that hands its order to the order worker,
and the order worker that hands the outcome back, wake each other on the core they are on
instead of across cores, which on a virtual machine is an interrupt between processors that
the hypervisor relays: measured, a third fewer thread switches and a third less system time
per order (docs/performance.md).

The server names a folder in CLAIMS_VARIABLE; a worker claims a core by locking the file named
after it there, and holds the lock for its life: the kernel releases it when the worker ends,
however it ends, so that a replacement can take the core.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pedidos.config import ExecutorKind

# Set by the server (`pedidos serve --production`, gunicorn.conf.py) for its workers.
CLAIMS_VARIABLE = "PEDIDOS_CORE_CLAIMS"
# While every core is held (a reload starts new workers before the old ones stop), how often
# a worker looks again.
RETRY_SECONDS = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Claim:
    pid: int  # a process forked from the claimant inherits this record, not the claim
    lock: int  # the open lock file
    core: int
    allowed: tuple[int, ...]  # the cores the process could run on before


_claim: _Claim | None = None
_claiming = threading.Lock()
_looking = False  # a thread waits for a core to come free
_refused = False  # the system would not: no use looking again


def claim_core(executor: ExecutorKind = "thread") -> int | None:
    """Move this worker process, its threads and those they start onto a core that no other
    worker of its server holds; return that core. None when the server did not ask, the system
    cannot, or with the process executor (its order processes would all inherit the one core).
    While every core is held, None now, and a thread keeps looking for one that comes free.

    Call it before the server starts its threads, which then start on the core.
    """
    global _looking
    folder = os.environ.get(CLAIMS_VARIABLE)
    if not folder or executor != "thread" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = _forget_inherited() or sorted(os.sched_getaffinity(0))
    core = _claim_or_none(Path(folder), allowed)
    with _claiming:
        if core is not None or _claim is not None or _looking or _refused:
            return core
        _looking = True
    log.info("worker %d waits for a core of its own: every core is held", os.getpid())
    threading.Thread(
        target=_keep_looking, args=(Path(folder), allowed), name="pedidos-core-claim", daemon=True
    ).start()
    return None


def _forget_inherited() -> list[int] | None:
    """In a process forked from one that holds a core (a server that loads the app before it
    forks its workers): drop the parent's record and run where the parent could, before
    claiming a core of its own; the cores it could run on, or None if it inherited nothing."""
    global _claim, _looking
    with _claiming:
        if _claim is None or _claim.pid == os.getpid():
            return None
        inherited, _claim, _looking = _claim, None, False
        with contextlib.suppress(OSError):
            os.close(inherited.lock)  # this copy only: the parent's lock stays
    with contextlib.suppress(OSError):  # if it cannot, it stays on the parent's core
        _move_threads(set(inherited.allowed), set(inherited.allowed))
    return list(inherited.allowed)


def _keep_looking(folder: Path, allowed: list[int]) -> None:
    while _claim is None and not _refused:
        threading.Event().wait(RETRY_SECONDS)
        _claim_or_none(folder, allowed)


def _claim_or_none(folder: Path, allowed: list[int]) -> int | None:
    """This process's core, claimed now if need be; None when none is free or on failure."""
    global _claim, _refused
    with _claiming:
        if _claim is not None:
            return _claim.core
        try:
            _claim = _claim_free(folder, allowed)
        except OSError as error:  # a speed-up only: the worker serves wherever it runs
            log.warning("worker %d claims no core: %s", os.getpid(), error)
            _refused = True
            return None
    if _claim is not None:
        log.info("worker %d runs on core %d", os.getpid(), _claim.core, extra={"core": _claim.core})
        return _claim.core
    return None


def _claim_free(folder: Path, allowed: list[int]) -> _Claim | None:
    import fcntl  # POSIX only, as sched_setaffinity

    for core in allowed:
        lock = os.open(folder / str(core), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _move_threads({core}, set(allowed))
        except BlockingIOError:
            os.close(lock)  # another worker's core
            continue
        except OSError:
            os.close(lock)  # and with it the lock, if taken
            raise
        return _Claim(os.getpid(), lock, core, tuple(allowed))
    return None


def _move_threads(cores: set[int], before: set[int]) -> None:
    """Every thread of this process onto `cores`, those started meanwhile too; on failure
    the ones moved go back to `before`."""
    moved: set[int] = set()
    try:
        while True:
            tasks = {int(task) for task in os.listdir("/proc/self/task")} - moved
            if not tasks:
                return
            for task in tasks:
                with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                    os.sched_setaffinity(task, cores)
            moved |= tasks
    except OSError:
        for task in moved:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(task, before)
        raise
