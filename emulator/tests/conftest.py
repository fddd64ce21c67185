"""Start one emulator process for the test session and talk to it over the wire."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.auth import SigV4Auth
from botocore.credentials import Credentials
from botocore.config import Config

EMULATOR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-west-2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Emu:
    url: str
    sock_dir: str
    proc: subprocess.Popen

    def control(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Emu:
    sock_dir = str(tmp_path_factory.mktemp("sock"))
    port = free_port()
    log_path = os.path.join(sock_dir, "emulator.log")
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONPATH=EMULATOR_DIR)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpcemu", "--listen", f"127.0.0.1:{port}", "--sock-dir", sock_dir],
        cwd=EMULATOR_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {proc.returncode}:\n{open(log_path).read()}")
            try:
                with urllib.request.urlopen(url + "/_testbed/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"emulator did not come up on {url}:\n{open(log_path).read()}")
            time.sleep(0.1)
        yield Emu(url, sock_dir, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ec2_client(emu: Emu, access_key: str = "testing") -> Any:
    """An EC2 client of the emulator signing with `access_key` (the emulator counts calls per
    key), without retries."""
    return boto3.client(
        "ec2",
        endpoint_url=emu.url,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="session")
def ec2(emu: Emu) -> Any:
    return ec2_client(emu)


@pytest.fixture(autouse=True)
def _clean_controls(emu: Emu):
    yield
    emu.control("DELETE", "/_testbed/faults")
    emu.control("POST", "/_testbed/throttle", {"enabled": False, "buckets": {}})


_vpc_numbers = itertools.count(10)


@dataclass
class Net:
    vpc: str
    subnet: str  # a /24 in us-west-2a
    az: str = "us-west-2a"


@pytest.fixture
def net(ec2: Any) -> Net:
    """A fresh VPC (10.x.0.0/16, unique per test) with one /24 subnet."""
    second = next(_vpc_numbers)
    vpc = ec2.create_vpc(CidrBlock=f"10.{second}.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{second}.1.0/24", AvailabilityZone="us-west-2a")[
        "Subnet"
    ]["SubnetId"]
    return Net(vpc, subnet)


def run_instance(ec2: Any, subnet: str, instance_type: str = "m5.large") -> dict[str, Any]:
    return ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType=instance_type, SubnetId=subnet
    )["Instances"][0]


def error_code(exc_info: pytest.ExceptionInfo) -> str:
    return exc_info.value.response["Error"]["Code"]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def http_request(
    target: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    """target: 'http://host:port' or a unix socket path."""
    if target.startswith("http://"):
        hostport = target[len("http://"):]
        conn: http.client.HTTPConnection = http.client.HTTPConnection(hostport, timeout=10)
    else:
        conn = UnixHTTPConnection(target)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def signed_ec2_request(params: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """A SigV4-signed EC2 query request, as an SDK would send it."""
    body = "&".join(f"{k}={v}" for k, v in {**params, "Version": "2016-11-15"}.items())
    req = AWSRequest(
        method="POST",
        url="http://ec2.us-west-2.amazonaws.com/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("testing", "testing"), "ec2", REGION).add_auth(req)
    return dict(req.headers.items()), body.encode()


class Imds:
    """An IMDSv2 client for one endpoint (loopback URL or unix socket)."""

    def __init__(self, target: str):
        self.target = target
        self.token: str | None = None

    def get_token(self, ttl: int = 300) -> str:
        status, body = http_request(
            self.target, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
        )
        assert status == 200, status
        self.token = body.decode()
        return self.token

    def get(self, path: str) -> tuple[int, str]:
        if self.token is None:
            self.get_token()
        status, body = http_request(
            self.target, "GET", "/latest/" + path, {"X-aws-ec2-metadata-token": self.token or ""}
        )
        return status, body.decode()

    def text(self, path: str) -> str:
        status, body = self.get(path)
        assert status == 200, f"{path}: {status}"
        return body
