"""A TCP proxy that delays every byte by a fixed time in each direction: a broker far away
(a 3 s round trip is 1.5 s each way), for the uplink's bounded-connect test.

Use: ``with SlowProxy(target_port, one_way_s=1.5) as p: ... p.port``. Each connection gets a
thread per direction; bytes keep their order and are released one_way_s after they arrived.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque


class SlowProxy:
    def __init__(self, target_port: int, one_way_s: float, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.delay = one_way_s
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((host, 0))
        self._srv.listen(4)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                a, _ = self._srv.accept()
            except OSError:
                continue
            b = socket.create_connection(self.target)
            self._socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        pending: deque[tuple[float, bytes]] = deque()
        lock = threading.Condition()
        done = [False]

        def sender() -> None:
            while True:
                with lock:
                    while not pending and not done[0]:
                        lock.wait(0.2)
                    if not pending:
                        if done[0]:
                            try:
                                dst.shutdown(socket.SHUT_WR)
                            except OSError:
                                pass
                            return
                        continue
                    due, data = pending[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                with lock:
                    pending.popleft()
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=sender, daemon=True).start()
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with lock:
                if not data:
                    done[0] = True
                    lock.notify()
                    return
                pending.append((time.monotonic() + self.delay, data))
                lock.notify()

    def close(self) -> None:
        self._stop.set()
        for s in [self._srv, *self._socks]:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> SlowProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
