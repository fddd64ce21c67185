"""Control endpoint: throttling, injected faults and latency, call counts,
the network long-poll, the EC2 error document and the unix-socket endpoint."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ec2_client, error_code, http_request, run_instance, signed_ec2_request


def test_throttling_after_the_burst(emu, net):
    """DescribeVpcs has the non-mutating bucket: 100 burst, 20 per second."""
    emu.control("POST", "/_testbed/throttle", {"enabled": True})
    headers, body = signed_ec2_request({"Action": "DescribeVpcs", "VpcId.1": net.vpc})
    lock = threading.Lock()
    seen = {"ok": 0, "throttled": 0, "other": 0}
    last_error = []
    started = time.monotonic()

    def worker() -> None:
        while time.monotonic() - started < 30:
            status, data = http_request(emu.url, "POST", "/", headers, body)
            with lock:
                if status == 200:
                    seen["ok"] += 1
                elif status == 503 and b"<Code>RequestLimitExceeded</Code>" in data:
                    seen["throttled"] += 1
                    last_error.append(data)
                    return
                else:
                    seen["other"] += 1
                if seen["throttled"]:
                    return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert seen["throttled"] >= 1 and seen["other"] == 0, seen
    assert 100 <= seen["ok"] <= 100 + 20 * elapsed + 4, (seen, elapsed)
    assert b"<Errors><Error><Code>RequestLimitExceeded</Code>" in last_error[0]
    # Another action has its own bucket; switching off lets everything through.
    status, _ = http_request(emu.url, "POST", "/", *signed_ec2_request({"Action": "DescribeSubnets"}))
    assert status == 200
    emu.control("POST", "/_testbed/throttle", {"enabled": False})
    for _ in range(3):
        assert http_request(emu.url, "POST", "/", headers, body)[0] == 200


def test_throttling_bucket_override(ec2, emu, net):
    emu.control(
        "POST",
        "/_testbed/throttle",
        {"enabled": True, "buckets": {"CreateNetworkInterface": {"burst": 3, "rate": 0.1}}},
    )
    for _ in range(3):
        ec2.create_network_interface(SubnetId=net.subnet)
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=net.subnet)
    assert error_code(exc) == "RequestLimitExceeded"


def test_injected_error_count_and_status(ec2, emu, net):
    emu.control(
        "POST",
        "/_testbed/faults",
        {"action": "CreateNetworkInterface", "error_code": "UnauthorizedOperation", "rate": 1.0, "count": 2},
    )
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            ec2.create_network_interface(SubnetId=net.subnet)
        assert error_code(exc) == "UnauthorizedOperation"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    ec2.create_network_interface(SubnetId=net.subnet)  # count exhausted
    ec2.describe_vpcs()  # other actions unaffected

    emu.control("POST", "/_testbed/faults", {"action": "*", "error_code": "InternalError", "http_status": 500})
    with pytest.raises(ClientError) as exc:
        ec2.describe_subnets()
    assert error_code(exc) == "InternalError"
    emu.control("DELETE", "/_testbed/faults")
    ec2.describe_subnets()


def test_injected_latency(ec2, emu):
    ec2.describe_vpcs()
    emu.control("POST", "/_testbed/faults", {"action": "DescribeVpcs", "latency_ms": 400})
    started = time.monotonic()
    ec2.describe_vpcs()
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    ec2.describe_subnets()
    assert time.monotonic() - started < 0.4


def test_late_answer_after_the_action(ec2, emu, net):
    """after_ms: EC2 does the action, then the answer is late (count times): a client that
    timed out must find the action done."""
    eni = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=2)
    eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]
    secondary = [a["PrivateIpAddress"] for a in eni["NetworkInterface"]["PrivateIpAddresses"] if not a["Primary"]]
    emu.control("POST", "/_testbed/faults", {"action": "UnassignPrivateIpAddresses", "after_ms": 600, "count": 1})
    started = time.monotonic()
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=secondary[:1])
    assert time.monotonic() - started >= 0.6
    left = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert secondary[0] not in [a["PrivateIpAddress"] for a in left["PrivateIpAddresses"]]
    # The count is spent: the next answer is on time.
    started = time.monotonic()
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=secondary[1:])
    assert time.monotonic() - started < 0.6
    emu.control("DELETE", "/_testbed/faults")


def test_an_error_after_the_action_was_done(ec2, emu, net):
    """done: EC2 does the action and still answers with the injected error."""
    eni = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=1)
    eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]
    secondary = [a["PrivateIpAddress"] for a in eni["NetworkInterface"]["PrivateIpAddresses"] if not a["Primary"]]
    emu.control("POST", "/_testbed/faults", {"action": "UnassignPrivateIpAddresses", "error_code": "InvalidParameterValue", "done": True, "count": 1})
    with pytest.raises(ClientError) as exc:
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=secondary)
    assert error_code(exc) == "InvalidParameterValue"
    left = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert secondary[0] not in [a["PrivateIpAddress"] for a in left["PrivateIpAddresses"]]
    emu.control("DELETE", "/_testbed/faults")


def test_call_counts(ec2, emu, net):
    emu.control("DELETE", "/_testbed/calls")
    ec2.create_network_interface(SubnetId=net.subnet)
    ec2.create_network_interface(SubnetId=net.subnet)
    with pytest.raises(ClientError):
        ec2.delete_network_interface(NetworkInterfaceId="eni-0000000000000000f")
    calls = emu.control("GET", "/_testbed/calls")
    assert calls["CreateNetworkInterface"]["ok"] == 2 and calls["CreateNetworkInterface"]["error"] == 0
    assert calls["DeleteNetworkInterface"] == {
        "ok": 0,
        "error": 1,
        "error_codes": {"InvalidNetworkInterfaceID.NotFound": 1},
    }
    emu.control("DELETE", "/_testbed/calls")
    assert emu.control("GET", "/_testbed/calls") == {}


def test_call_counts_by_caller(ec2, emu, net):
    """Each signing access key is a caller: a fleet whose nodes sign with their own keys is
    counted per node, throttled calls included."""
    emu.control("DELETE", "/_testbed/calls")
    node = ec2_client(emu, "testbed-node-7")
    node.describe_subnets(SubnetIds=[net.subnet])
    emu.control(
        "POST",
        "/_testbed/throttle",
        {"enabled": True, "buckets": {"DescribeVpcs": {"burst": 1, "rate": 0.01}}},
    )
    node.describe_vpcs(VpcIds=[net.vpc])
    with pytest.raises(ClientError) as exc:
        node.describe_vpcs(VpcIds=[net.vpc])
    assert error_code(exc) == "RequestLimitExceeded"
    ec2.describe_subnets(SubnetIds=[net.subnet])
    by_caller = emu.control("GET", "/_testbed/calls?by=caller")
    node_calls = by_caller["testbed-node-7"]
    assert node_calls["DescribeSubnets"] == {"ok": 1, "error": 0, "error_codes": {}}
    throttled = node_calls["DescribeVpcs"]
    assert throttled["ok"] == 1 and throttled["error"] >= 1, throttled
    assert throttled["error_codes"] == {"RequestLimitExceeded": throttled["error"]}
    assert by_caller["testing"]["DescribeSubnets"]["ok"] == 1
    # The totals are unchanged by the split.
    assert emu.control("GET", "/_testbed/calls")["DescribeSubnets"]["ok"] == 2
    emu.control("DELETE", "/_testbed/calls")
    assert emu.control("GET", "/_testbed/calls?by=caller") == {}


def test_error_document_shape(emu):
    headers, body = signed_ec2_request({"Action": "DeleteNetworkInterface", "NetworkInterfaceId": "eni-0000000000000000f"})
    status, data = http_request(emu.url, "POST", "/", headers, body)
    assert status == 400
    text = data.decode()
    assert re.search(r"<Response[^>]*><Errors><Error><Code>InvalidNetworkInterfaceID.NotFound</Code><Message>", text)
    assert "</Errors><RequestID>" in text

    emu.control("POST", "/_testbed/faults", {"action": "DescribeVpcs", "error_code": "RequestLimitExceeded"})
    headers, body = signed_ec2_request({"Action": "DescribeVpcs"})
    status, data = http_request(emu.url, "POST", "/", headers, body)
    assert status == 503
    assert data.decode().count("<Code>RequestLimitExceeded</Code>") == 1
    assert "</Errors><RequestID>" in data.decode()


def test_ec2_on_unix_socket(emu, net):
    headers, body = signed_ec2_request({"Action": "DescribeSubnets", "SubnetId.1": net.subnet})
    status, data = http_request(os.path.join(emu.sock_dir, "ec2.sock"), "POST", "/", headers, body)
    assert status == 200, data
    assert net.subnet.encode() in data and b"<availableIpAddressCount>251<" in data


def test_network_long_poll(ec2, emu, net):
    snap = emu.control("GET", "/_testbed/network")
    version = snap["version"]
    assert any(v["id"] == net.vpc for v in snap["vpcs"])
    assert any(s["id"] == net.subnet and s["cidr"].endswith("/24") for s in snap["subnets"])

    # Times out without a change.
    started = time.monotonic()
    same = emu.control("GET", f"/_testbed/network?after={version}&timeout=0.5")
    assert same["version"] == version and time.monotonic() - started >= 0.5

    # Returns as soon as something changes.
    result: dict = {}

    def poll() -> None:
        t0 = time.monotonic()
        result["snap"] = emu.control("GET", f"/_testbed/network?after={version}&timeout=20")
        result["took"] = time.monotonic() - t0

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    inst = run_instance(ec2, net.subnet)
    eni = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=2)["NetworkInterface"]
    thread.join(timeout=20)
    assert result["took"] < 5
    assert result["snap"]["version"] > version

    att = ec2.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=inst["InstanceId"], DeviceIndex=1
    )
    snap = emu.control("GET", "/_testbed/network")
    node = next(i for i in snap["instances"] if i["id"] == inst["InstanceId"])
    assert node["type"] == "m5.large" and node["az"] == net.az and node["state"] == "running"
    assert [e["device_index"] for e in node["enis"]] == [0, 1]
    second = node["enis"][1]
    assert second["id"] == eni["NetworkInterfaceId"]
    assert second["mac"] == eni["MacAddress"]
    assert second["attachment_id"] == att["AttachmentId"]
    assert second["primary_ip"] == eni["PrivateIpAddress"]
    assert sorted(second["private_ips"]) == sorted(a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"])
    assert second["status"] == "in-use" and second["delete_on_termination"] is False
    assert not any(e["id"] == eni["NetworkInterfaceId"] for e in snap["available_enis"])
    group = next(g for g in snap["security_groups"] if g["id"] == second["groups"][0])
    assert group["vpc_id"] == net.vpc and group["name"] == "default"
    assert {"protocol": "-1", "from_port": None, "to_port": None, "cidrs": [], "groups": [group["id"]]} in group[
        "ingress"
    ]


def test_control_errors(emu):
    with pytest.raises(Exception) as exc:
        emu.control("GET", "/_testbed/nothing")
    assert getattr(exc.value, "code", None) == 404
    with pytest.raises(Exception) as exc:
        emu.control("POST", "/_testbed/faults", {"error_code": "X"})
    assert getattr(exc.value, "code", None) == 400
    assert emu.control("GET", "/_testbed/health")["ok"] is True


def test_clean_exit_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import EMULATOR_DIR

    sock_dir = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpcemu", "--listen", "127.0.0.1:0", "--sock-dir", str(sock_dir)],
        cwd=EMULATOR_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (sock_dir / "ec2.sock").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.05)
        status, _ = http_request(str(sock_dir / "ec2.sock"), "GET", "/_testbed/health")
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not (sock_dir / "ec2.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
