"""The WSGI application behind the EC2 endpoint.

* ``/_testbed/...``: the JSON control endpoint (faults, throttling, call
  counts, instance-metadata listeners, network long-poll, health).
* anything else: an EC2 query-protocol call, passed to moto's EC2 Flask app
  after injected latency, throttling and injected errors, under the global
  EC2 lock; counted per action; a successful mutating call bumps the state
  version and refreshes the per-instance metadata sockets.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from typing import Any, Callable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from . import state, world
from .servers import MetadataListeners
from .state import Emulator, Fault, is_mutating

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _status_line(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Error')}"


def ec2_error_body(code: str, message: str) -> bytes:
    """EC2's error document (query protocol)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def caller_of(environ: dict[str, Any]) -> str | None:
    """The access key id of a SigV4-signed request (its Authorization header)."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


def _error_code_of(body: bytes) -> str | None:
    start = body.find(b"<Code>")
    if start < 0:
        return None
    end = body.find(b"</Code>", start)
    return body[start + 6 : end].decode(errors="replace") if end > 0 else None


class EmulatorApp:
    def __init__(self, moto_app: Callable[..., Any], emu: Emulator, listeners: MetadataListeners) -> None:
        self.moto_app = moto_app
        self.emu = emu
        self.listeners = listeners

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/_testbed/"):
            try:
                return self.control(environ, start_response, path)
            except (ValueError, KeyError, TypeError) as exc:
                return self._json(start_response, 400, {"error": str(exc)})
        return self.ec2(environ, start_response)

    # -- EC2 -----------------------------------------------------------------

    def ec2(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        body = _read_body(environ)
        # Give moto a fresh, fully buffered body.
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True

        params = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("REQUEST_METHOD") == "POST":
            try:
                params.update(parse_qs(body.decode("utf-8")))
            except UnicodeDecodeError:
                pass
        action = (params.get("Action") or [""])[0]
        if not action:
            return self._raw(start_response, 400, ec2_error_body("MissingAction", "The request must contain the parameter Action"))

        started = time.monotonic()
        caller = caller_of(environ)
        latency, fault, after = self.emu.faults.decide(action)
        if latency > 0:
            time.sleep(latency)
        if not self.emu.throttle.allow(action):
            self.emu.calls.record(action, False, "RequestLimitExceeded", caller)
            log.info("EC2 %s -> 503 RequestLimitExceeded (throttled)", action)
            return self._raw(start_response, 503, ec2_error_body("RequestLimitExceeded", "Request limit exceeded."))
        if fault is not None and not fault.done:
            return self._injected(start_response, action, fault, caller)

        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            captured["status"] = status
            captured["headers"] = headers
            return lambda _data: None

        with state.LOCK:
            try:
                chunks = self.moto_app(environ, capture)
                try:
                    out = b"".join(chunks)
                finally:
                    close = getattr(chunks, "close", None)
                    if close:
                        close()
            except Exception as exc:  # moto bug: report as EC2 would
                log.exception("EC2 %s failed inside moto", action)
                captured = {"status": "500 Internal Server Error", "headers": []}
                out = ec2_error_body("InternalError", f"{type(exc).__name__}: {exc}")
            code = int(captured["status"].split()[0])
            ok = code < 300
            if ok and is_mutating(action):
                self.emu.version.bump(world.instances_touched(action, params))
        if fault is not None:
            # Done, and yet the caller is told it failed (an answer lost on the way back).
            return self._injected(start_response, action, fault, caller)
        error_code = None if ok else _error_code_of(out)
        self.emu.calls.record(action, ok, error_code, caller)
        if ok and action in ("RunInstances", "TerminateInstances", "StartInstances", "StopInstances"):
            self.listeners.reconcile()
        log.info(
            "EC2 %s -> %d%s (%.0f ms)",
            action,
            code,
            f" {error_code}" if error_code else "",
            (time.monotonic() - started) * 1000,
        )
        if after > 0:
            # Done, but the answer is late: a client with a shorter timeout never sees it.
            time.sleep(after)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        headers.append(("Content-Length", str(len(out))))
        start_response(captured["status"], headers)
        return [out]

    def _injected(
        self, start_response: StartResponse, action: str, fault: Fault, caller: str | None
    ) -> list[bytes]:
        code = fault.error_code or "InternalError"
        message = fault.message or _default_message(code, action)
        self.emu.calls.record(action, False, code, caller)
        log.info("EC2 %s -> %d %s (injected%s)", action, fault.status() or 400, code, ", after doing it" if fault.done else "")
        return self._raw(start_response, fault.status() or 400, ec2_error_body(code, message))

    # -- control endpoint ----------------------------------------------------

    def control(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        route = path[len("/_testbed/"):].rstrip("/")

        if route == "health":
            return self._json(start_response, 200, {"ok": True, "version": self.emu.version.value})

        if route == "faults":
            if method == "GET":
                return self._json(start_response, 200, {"faults": self.emu.faults.list()})
            if method == "POST":
                doc = _read_json(environ)
                for item in doc if isinstance(doc, list) else [doc]:
                    self.emu.faults.set(Fault.from_json(item))
                return self._json(start_response, 200, {"faults": self.emu.faults.list()})
            if method == "DELETE":
                self.emu.faults.clear(query.get("action"))
                return self._json(start_response, 200, {"faults": self.emu.faults.list()})

        if route == "throttle":
            if method == "GET":
                return self._json(start_response, 200, self.emu.throttle.to_json())
            if method == "POST":
                doc = _read_json(environ)
                self.emu.throttle.configure(bool(doc.get("enabled", True)), doc.get("buckets"))
                return self._json(start_response, 200, self.emu.throttle.to_json())

        if route == "calls":
            if method == "GET":
                if query.get("by") == "caller":
                    return self._json(start_response, 200, self.emu.calls.by_caller())
                return self._json(start_response, 200, self.emu.calls.snapshot())
            if method == "DELETE":
                self.emu.calls.reset()
                return self._json(start_response, 200, {})

        if route == "imds":
            if method == "GET":
                return self._json(start_response, 200, self.listeners.endpoints())
            if method == "POST":
                doc = _read_json(environ)
                iid = doc.get("instance_id")
                if not isinstance(iid, str):
                    raise ValueError("'instance_id' is required")
                endpoint = self.listeners.tcp_endpoint(iid)
                if endpoint is None:
                    return self._json(start_response, 404, {"error": f"no live instance {iid}"})
                return self._json(
                    start_response, 200, {"endpoint": endpoint, "socket": self.listeners.socket_path(iid)}
                )

        if route == "network" and method == "GET":
            after = query.get("after")
            if after is not None:
                timeout = min(max(float(query.get("timeout", "30")), 0.0), 600.0)
                self.emu.version.wait_after(int(after), timeout)
            with state.LOCK:
                snap = world.network_snapshot(self.emu.version.value)
            return self._json(start_response, 200, snap)

        return self._json(start_response, 404, {"error": f"no such control route: {method} {path}"})

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _json(start_response: StartResponse, code: int, doc: Any) -> list[bytes]:
        data = json.dumps(doc).encode()
        start_response(
            _status_line(code), [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    @staticmethod
    def _raw(start_response: StartResponse, code: int, body: bytes) -> list[bytes]:
        start_response(_status_line(code), [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(body)))])
        return [body]


def _default_message(code: str, action: str) -> str:
    if code == "UnauthorizedOperation":
        return f"You are not authorized to perform this operation. (ec2:{action})"
    if code == "RequestLimitExceeded":
        return "Request limit exceeded."
    return f"Injected {code} for {action}."


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            return stream.read(int(length))
        except ValueError:
            pass
    if environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return stream.read()
    return b""


def _read_json(environ: dict[str, Any]) -> Any:
    body = _read_body(environ)
    if not body.strip():
        return {}
    return json.loads(body)
