"""Threaded HTTP/1.1 WSGI servers on TCP and unix sockets, and the registry of
per-instance metadata listeners.

``http.server.HTTPServer.server_bind`` calls ``socket.getfqdn`` on the bind
address, a reverse DNS lookup that stalls inside an isolated network namespace
(no resolver).  :class:`Server` skips it; werkzeug's request handler logs the
peer's numeric address, never a resolved name.
"""

from __future__ import annotations

import logging
import os
import socketserver
import threading
from typing import Any, Callable

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from . import imds, state, world

log = logging.getLogger(__name__)


class Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # never a reverse lookup
        addr = self.client_address
        if isinstance(addr, tuple) and addr:
            return str(addr[0])
        return "unix"

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        log.debug("%s %s %s", self.command, self.path, code)


class Server(ThreadedWSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        if isinstance(self.server_address, tuple):
            self.server_name = str(self.server_address[0])
            self.server_port = int(self.server_address[1])
        else:
            self.server_name, self.server_port = "localhost", 0


def _serve(server: Server, name: str) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True)
    thread.start()
    return thread


def tcp_server(host: str, port: int, app: Callable[..., Any], name: str) -> Server:
    server = Server(host, port, app, handler=Handler)
    _serve(server, name)
    return server


def unix_server(path: str, app: Callable[..., Any], name: str) -> Server:
    if os.path.exists(path):
        os.unlink(path)
    server = Server("unix://" + path, 0, app, handler=Handler)
    os.chmod(path, 0o666)
    _serve(server, name)
    return server


def stop(server: Server, unlink: str | None = None) -> None:
    """Stop a server: the socket file goes at once, the loop in the background."""
    if unlink:
        try:
            os.unlink(unlink)
        except FileNotFoundError:
            pass

    def _down() -> None:
        server.shutdown()
        server.server_close()

    threading.Thread(target=_down, daemon=True).start()


class MetadataListeners:
    """One IMDS unix socket per live instance (with --sock-dir) and, on demand,
    one loopback TCP listener per instance."""

    def __init__(
        self, sock_dir: str | None, tcp_host: str = "127.0.0.1", version: state.Version | None = None
    ) -> None:
        self.sock_dir = sock_dir
        self.tcp_host = tcp_host
        # With the state version, an instance's metadata tree is cached until a mutating call that
        # may concern that instance (imds.py, state.Version.of_instance).
        self.version = version
        self._lock = threading.Lock()
        self._unix: dict[str, tuple[Server, str]] = {}
        self._tcp: dict[str, Server] = {}

    def socket_path(self, instance_id: str) -> str | None:
        if not self.sock_dir:
            return None
        return os.path.join(self.sock_dir, f"imds-{instance_id}.sock")

    def reconcile(self) -> None:
        """Open listeners for new instances, close those of terminated ones."""
        with state.LOCK:
            live = {i.id for i in world.live_instances()}
        with self._lock:
            if self.sock_dir:
                for iid in sorted(live - set(self._unix)):
                    path = self.socket_path(iid)
                    assert path is not None
                    try:
                        self._unix[iid] = (unix_server(path, imds.make_app(iid, self.version), f"imds-{iid}"), path)
                        log.info("instance metadata for %s on %s", iid, path)
                    except OSError as exc:
                        log.error("cannot serve metadata for %s on %s: %s", iid, path, exc)
                for iid in sorted(set(self._unix) - live):
                    server, path = self._unix.pop(iid)
                    stop(server, unlink=path)
                    log.info("instance metadata for %s removed", iid)
            for iid in sorted(set(self._tcp) - live):
                stop(self._tcp.pop(iid))

    def tcp_endpoint(self, instance_id: str) -> str | None:
        """Loopback listener for an instance (idempotent); None if unknown."""
        with state.LOCK:
            instance = world.find_instance(instance_id)
            if instance is None or instance.state == "terminated":
                return None
        with self._lock:
            server = self._tcp.get(instance_id)
            if server is None:
                server = tcp_server(self.tcp_host, 0, imds.make_app(instance_id, self.version), f"imds-tcp-{instance_id}")
                self._tcp[instance_id] = server
                log.info("instance metadata for %s on http://%s:%d", instance_id, self.tcp_host, server.port)
            return f"http://{self.tcp_host}:{server.port}"

    def endpoints(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for iid, (_server, path) in self._unix.items():
                out.setdefault(iid, {})["socket"] = path
            for iid, server in self._tcp.items():
                out.setdefault(iid, {})["endpoint"] = f"http://{self.tcp_host}:{server.port}"
            return out

    def close_all(self) -> None:
        with self._lock:
            for server, path in self._unix.values():
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                server.server_close()
            for server in self._tcp.values():
                server.server_close()
            self._unix.clear()
            self._tcp.clear()

