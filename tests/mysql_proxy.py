"""A TCP proxy in front of MariaDB that can lose, delay or cut off a COMMIT in flight.

The MySQL protocol sends COMMIT as a COM_QUERY packet (byte 0x03, then the text). When the
proxy is armed, the next COMMIT a client sends is handled as told, which makes the one truly
ambiguous moment of a transaction happen on demand: the client sees its connection drop
while the server commits, rolls back, or is still committing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from enum import Enum

COMMIT_PACKET = b"\x03COMMIT"


class OnCommit(Enum):
    PASS = "pass"
    LOSE = "lose"  # drop the COMMIT and both connections: the server rolls back
    ANSWER_LOST = "answer-lost"  # the server commits; the client never hears back
    LATE = "late"  # the client is cut off at once; the COMMIT reaches the server later


class CommitProxy:
    """Listens on a loopback port and forwards every connection to the database."""

    def __init__(self, upstream_port: int, late_seconds: float = 2.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.late_seconds = late_seconds
        self.on_commit = OnCommit.PASS
        self.commits_seen = 0
        self.handled: list[OnCommit] = []
        self.down = False  # refuse and cut every connection: the database is unreachable
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._late: list[threading.Thread] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, action: OnCommit) -> None:
        with self._lock:
            self.on_commit = action

    def outage(self, down: bool) -> None:
        with self._lock:
            self.down = down
            cut = list(self._open) if down else []
        for sock in cut:
            _close(sock)

    def _take_action(self) -> OnCommit:
        with self._lock:
            self.commits_seen += 1
            action, self.on_commit = self.on_commit, OnCommit.PASS
            if action is not OnCommit.PASS:
                self.handled.append(action)
            return action

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and data[4:].startswith(COMMIT_PACKET):
                    action = self._take_action()
                    if action is OnCommit.LOSE:
                        break
                    if action is OnCommit.ANSWER_LOST:
                        sink.sendall(data)
                        time.sleep(0.2)  # let the server take it before the cut
                        break
                    if action is OnCommit.LATE:
                        _close(source)
                        late = threading.Thread(target=self._send_late, args=(sink, data))
                        late.start()
                        self._late.append(late)
                        return
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)

    def _send_late(self, server: socket.socket, data: bytes) -> None:
        """Hold the transaction open on the server, then let its COMMIT through."""
        time.sleep(self.late_seconds)
        with contextlib.suppress(OSError):
            server.sendall(data)
            server.recv(65536)  # the server's OK: the COMMIT is done
        _close(server)

    def close(self) -> None:
        self._stopped = True
        _close(self._listener)
        for late in self._late:
            late.join(timeout=30)
        with self._lock:
            for sock in self._open:
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def commit_proxy(upstream_port: int, late_seconds: float = 2.0) -> Iterator[CommitProxy]:
    proxy = CommitProxy(upstream_port, late_seconds)
    try:
        yield proxy
    finally:
        proxy.close()
