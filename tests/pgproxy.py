"""A small TCP proxy in front of PostgreSQL that can lose a reply: the
statement reaches the server and commits, and the connection breaks before
its answer gets back, as when a network drops between the two. Used to test
the PostgreSQL store's retries after a lost reply (``tests/postgres``).

``proxy.drop_next_reply()`` arms it: the next connection to send anything
becomes the victim, and the first bytes the server sends back on it are
thrown away and both of its sockets closed. Other connections (a listener
waiting for notifications) pass untouched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class LostReplyProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = False
        self._victim: object | None = None
        self.dropped = 0  # replies lost so far
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (a PostgreSQL URL) through this proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        where = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{where}" if len(netloc) == 2 else where))

    def drop_next_reply(self) -> None:
        with self._lock:
            self._armed, self._victim = True, None

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            pair = (client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, pair, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, ...], to_server: bool) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    if to_server and self._armed and self._victim is None:
                        self._victim = pair
                    drop = not to_server and self._victim is pair
                    if drop:
                        self._armed, self._victim = False, None
                        self.dropped += 1
                if drop:
                    break  # the server answered (it committed); the client never hears it
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
