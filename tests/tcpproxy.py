"""A TCP proxy in the test process that can freeze the connections it carries.

Freezing stops forwarding bytes in both directions while keeping every
socket open: to the client it looks like a server stopped with SIGSTOP (the
kernel still accepts and acknowledges, nothing answers), but the real server
keeps running for everybody else. New connections made while frozen are
accepted and hear nothing either.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import typing as t


class FreezableProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; :meth:`freeze` / :meth:`thaw`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._running = threading.Event()
        self._running.set()  # set: forwarding; clear: frozen
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def freeze(self) -> None:
        """Stop forwarding: every connection hangs, sockets stay open."""
        self._running.clear()

    def thaw(self) -> None:
        """Forward again what was held and what comes next."""
        self._running.set()

    def close(self) -> None:
        self._closed = True
        self._running.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(2)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pipe(self, client: socket.socket) -> None:
        self._sockets.append(client)
        self._running.wait()  # frozen: not even connected to the server yet
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        self._sockets.append(server)
        peers = {client: server, server: client}
        try:
            while not self._closed:
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    self._running.wait()
                    if self._closed:
                        return
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def proxy_to(url: str) -> t.Iterator[tuple[FreezableProxy, str]]:
    """A proxy to the server of SQLAlchemy ``url``; yield it and the URL
    that goes through it."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    proxy = FreezableProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        through = parsed.set(host="127.0.0.1", port=proxy.port)
        yield proxy, through.render_as_string(hide_password=False)
    finally:
        proxy.close()
