"""Instance metadata (IMDSv2) for one instance, built from live EC2 state at
request time, as a WSGI application.

Only the token flow is accepted (IMDSv2): ``PUT /latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds`` returns a token; every GET needs
``X-aws-ec2-metadata-token`` (401 otherwise).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any, Callable, Iterable

from . import state, world

TOKEN_TTL_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"
TOKEN_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN"


class Tokens:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, instance_id: str, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Drop expired tokens as we go.
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (instance_id, now + ttl)
        return token

    def valid(self, instance_id: str, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            entry = self._tokens.get(token)
        return entry is not None and entry[0] == instance_id and entry[1] > time.monotonic()


TOKENS = Tokens()


def _lines(items: Iterable[str]) -> str:
    return "\n".join(items)


def _tree(instance: Any) -> dict[str, Any]:
    """The metadata tree: dicts are directories, strings are leaves."""
    backend = instance.ec2_backend
    region = backend.region_name
    az = instance.placement.zone
    primary = instance.nics.get(0)
    vpc_blocks = world.vpc_cidrs(backend, instance.vpc_id) if instance.vpc_id else []
    macs: dict[str, Any] = {}
    for index in sorted(instance.nics):
        eni = instance.nics[index]
        ips = [a["PrivateIpAddress"] for a in eni.private_ip_addresses]
        entry: dict[str, Any] = {
            "device-number": str(index),
            "interface-id": eni.id,
            "local-hostname": _hostname(eni.private_ip_address, region),
            "local-ipv4s": _lines(ips),
            "mac": eni.mac_address,
            "owner-id": backend.account_id,
            "security-group-ids": _lines(g.id for g in eni._group_set),
            "security-groups": _lines(g.name for g in eni._group_set),
            "subnet-id": eni.subnet.id,
            "subnet-ipv4-cidr-block": eni.subnet.cidr_block,
            "vpc-id": eni.subnet.vpc_id,
            "vpc-ipv4-cidr-block": vpc_blocks[0] if vpc_blocks else "",
            "vpc-ipv4-cidr-blocks": _lines(vpc_blocks),
        }
        prefixes = [p["Ipv4Prefix"] for p in getattr(eni, "ipv4_prefixes", [])]
        if prefixes:  # like EC2: the key exists only while prefixes are assigned
            entry["ipv4-prefix"] = _lines(prefixes)
        macs[eni.mac_address] = entry
    local_ip = primary.private_ip_address if primary else ""
    meta: dict[str, Any] = {
        "ami-id": instance.image_id or "",
        "hostname": _hostname(local_ip, region),
        "instance-id": instance.id,
        "instance-life-cycle": "on-demand",
        "instance-type": instance.instance_type,
        "local-hostname": _hostname(local_ip, region),
        "local-ipv4": local_ip or "",
        "mac": primary.mac_address if primary else "",
        "placement": {"availability-zone": az, "region": region},
        "security-groups": _lines(g.name for g in (primary._group_set if primary else [])),
        "services": {"domain": "amazonaws.com", "partition": "aws"},
        "network": {"interfaces": {"macs": macs}},
    }
    identity = {
        "accountId": backend.account_id,
        "architecture": getattr(instance, "architecture", "x86_64") or "x86_64",
        "availabilityZone": az,
        "imageId": instance.image_id,
        "instanceId": instance.id,
        "instanceType": instance.instance_type,
        "pendingTime": instance.launch_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        if hasattr(instance.launch_time, "strftime")
        else str(instance.launch_time),
        "privateIp": local_ip,
        "region": region,
        "version": "2017-09-30",
    }
    return {
        "meta-data": meta,
        "dynamic": {"instance-identity": {"document": json.dumps(identity, indent=2)}},
    }


def _hostname(ip: str | None, region: str) -> str:
    if not ip:
        return ""
    dashed = ip.replace(".", "-")
    if region == "us-east-1":
        return f"ip-{dashed}.ec2.internal"
    return f"ip-{dashed}.{region}.compute.internal"


def _lookup(tree: dict[str, Any], parts: list[str]) -> Any:
    node: Any = tree
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _listing(node: dict[str, Any]) -> str:
    return _lines(k + "/" if isinstance(v, dict) else k for k, v in node.items())


Response = tuple[int, str, dict[str, str]]


_TREES: dict[str, tuple[int, dict[str, Any] | None]] = {}
_TREES_LOCK = threading.Lock()


def _current_tree(instance_id: str, version: state.Version | None) -> dict[str, Any] | None:
    """The instance's tree (None once it is gone). With ``version``, a tree is built once and
    reused until a mutating EC2 call that may concern this instance moves its version
    (:meth:`state.Version.of_instance`; another node's new ENI does not): a fleet starting at once
    sends thousands of metadata reads while its EC2 calls mutate all the time, and every build
    waits for the EC2 lock. The version is read before the build, so a tree can only be labelled
    older than it is (and built again)."""
    seen = version.of_instance(instance_id) if version is not None else None
    if seen is not None:
        with _TREES_LOCK:
            hit = _TREES.get(instance_id)
        if hit is not None and hit[0] == seen:
            return hit[1]
    with state.LOCK:
        instance = world.find_instance(instance_id)
        tree = None if instance is None or instance.state == "terminated" else _tree(instance)
    if seen is not None:
        with _TREES_LOCK:
            _TREES[instance_id] = (seen, tree)
    return tree


def handle(
    instance_id: str, method: str, path: str, headers: dict[str, str], version: state.Version | None = None
) -> Response:
    """Serve one IMDS request; ``headers`` holds WSGI-style HTTP_* keys; ``version`` enables the
    tree cache (:func:`_current_tree`)."""
    if path == "/latest/api/token":
        if method != "PUT":
            return 405, "", {}
        ttl_raw = headers.get(TOKEN_TTL_HEADER)
        try:
            ttl = int(ttl_raw) if ttl_raw is not None else -1
        except ValueError:
            ttl = -1
        if not 1 <= ttl <= 21600:
            return 400, "", {}
        with state.LOCK:
            if world.find_instance(instance_id) is None:
                return 404, "", {}
        token = TOKENS.issue(instance_id, ttl)
        return 200, token, {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
    if method not in ("GET", "HEAD"):
        return 405, "", {}
    if not TOKENS.valid(instance_id, headers.get(TOKEN_HEADER)):
        return 401, "", {}
    if not path.startswith("/latest"):
        return 404, "", {}
    parts = [p for p in path[len("/latest"):].split("/") if p]
    tree = _current_tree(instance_id, version)
    if tree is None:
        return 404, "", {}
    if not parts:
        return 200, _listing(tree), {}
    node = _lookup(tree, parts)
    if node is None:
        return 404, "", {}
    if isinstance(node, dict):
        return 200, _listing(node), {}
    content_type = "application/json" if parts[-1] == "document" else "text/plain"
    return 200, node, {"Content-Type": content_type}


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


def make_app(instance_id: str, version: state.Version | None = None) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        headers = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        status, body, extra = handle(
            instance_id, environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"), headers, version
        )
        data = body.encode()
        out = {"Content-Type": "text/plain", "Content-Length": str(len(data)), "Server": "EC2ws"}
        out.update(extra)
        start_response(f"{status} {_REASONS.get(status, '')}", list(out.items()))
        return [data] if environ.get("REQUEST_METHOD") != "HEAD" else []

    return app
