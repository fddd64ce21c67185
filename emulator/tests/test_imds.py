"""Instance metadata: per instance, IMDSv2 only, live, on loopback and unix sockets."""

from __future__ import annotations

import json
import os
import time

from conftest import Imds, http_request, run_instance


def _loopback(emu, instance_id: str) -> Imds:
    first = emu.control("POST", "/_testbed/imds", {"instance_id": instance_id})
    again = emu.control("POST", "/_testbed/imds", {"instance_id": instance_id})
    assert first["endpoint"] == again["endpoint"]  # idempotent
    assert first["endpoint"].startswith("http://127.0.0.1:")
    return Imds(first["endpoint"])


def test_two_instances_have_their_own_metadata(ec2, emu, net):
    a = run_instance(ec2, net.subnet, "m5.large")
    b = run_instance(ec2, net.subnet, "t3.small")
    seen = []
    for inst in (a, b):
        md = _loopback(emu, inst["InstanceId"])
        primary = inst["NetworkInterfaces"][0]
        assert md.text("meta-data/instance-id") == inst["InstanceId"]
        assert md.text("meta-data/instance-type") == inst["InstanceType"]
        assert md.text("meta-data/placement/availability-zone") == net.az
        assert md.text("meta-data/placement/region") == "us-west-2"
        assert md.text("meta-data/mac") == primary["MacAddress"]
        assert md.text("meta-data/local-ipv4") == inst["PrivateIpAddress"]
        doc = json.loads(md.text("dynamic/instance-identity/document"))
        assert doc["instanceId"] == inst["InstanceId"] and doc["region"] == "us-west-2"
        assert doc["privateIp"] == inst["PrivateIpAddress"] and doc["accountId"]
        seen.append((md.text("meta-data/instance-id"), md.text("meta-data/mac"), md.text("meta-data/local-ipv4")))
    assert len({s[0] for s in seen}) == len({s[1] for s in seen}) == len({s[2] for s in seen}) == 2
    assert emu.control("GET", "/_testbed/imds")[a["InstanceId"]]["endpoint"]


def test_token_is_required(ec2, emu, net):
    inst = run_instance(ec2, net.subnet)
    endpoint = emu.control("POST", "/_testbed/imds", {"instance_id": inst["InstanceId"]})["endpoint"]
    assert http_request(endpoint, "GET", "/latest/meta-data/instance-id")[0] == 401
    status, _ = http_request(endpoint, "GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": "bogus"})
    assert status == 401
    assert http_request(endpoint, "PUT", "/latest/api/token")[0] == 400  # TTL header missing
    md = Imds(endpoint)
    md.get_token(ttl=1)
    assert md.get("meta-data/instance-id")[0] == 200
    time.sleep(1.2)
    assert md.get("meta-data/instance-id")[0] == 401  # expired
    # A token of another instance is no good here.
    other = run_instance(ec2, net.subnet)
    other_md = _loopback(emu, other["InstanceId"])
    md.token = other_md.get_token()
    assert md.get("meta-data/instance-id")[0] == 401
    md.get_token()
    assert md.get("meta-data/no-such-key")[0] == 404
    assert md.get("meta-data/network/interfaces/macs/00:00:00:00:00:00/")[0] == 404


def test_metadata_follows_attach_and_detach(ec2, emu, net):
    ec2.associate_vpc_cidr_block(VpcId=net.vpc, CidrBlock="100.64.0.0/16")
    pods = ec2.create_subnet(VpcId=net.vpc, CidrBlock="100.64.0.0/24", AvailabilityZone=net.az)["Subnet"]
    sg = ec2.create_security_group(GroupName="pods", Description="pods", VpcId=net.vpc)["GroupId"]
    inst = run_instance(ec2, net.subnet)
    md = _loopback(emu, inst["InstanceId"])
    primary_mac = inst["NetworkInterfaces"][0]["MacAddress"]
    assert md.text("meta-data/network/interfaces/macs/") == primary_mac + "/"

    eni = ec2.create_network_interface(
        SubnetId=pods["SubnetId"], Groups=[sg], SecondaryPrivateIpAddressCount=2
    )["NetworkInterface"]
    att = ec2.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=inst["InstanceId"], DeviceIndex=1
    )
    assert md.text("meta-data/network/interfaces/macs/").split("\n") == [primary_mac + "/", eni["MacAddress"] + "/"]
    base = f"meta-data/network/interfaces/macs/{eni['MacAddress']}/"
    keys = md.text(base).split("\n")
    for key in ("device-number", "interface-id", "subnet-id", "vpc-id", "security-group-ids", "local-ipv4s",
                "subnet-ipv4-cidr-block", "vpc-ipv4-cidr-blocks"):
        assert key in keys
    assert md.text(base + "device-number") == "1"
    assert md.text(base + "interface-id") == eni["NetworkInterfaceId"]
    assert md.text(base + "subnet-id") == pods["SubnetId"]
    assert md.text(base + "vpc-id") == net.vpc
    assert md.text(base + "security-group-ids") == sg
    assert md.text(base + "subnet-ipv4-cidr-block") == "100.64.0.0/24"
    assert set(md.text(base + "vpc-ipv4-cidr-blocks").split("\n")) == {
        f"10.{_second_octet(ec2, net)}.0.0/16",
        "100.64.0.0/16",
    }
    ips = md.text(base + "local-ipv4s").split("\n")
    assert ips[0] == eni["PrivateIpAddress"] and len(ips) == 3
    assert md.get(base + "ipv4-prefix")[0] == 404  # no prefixes yet

    added = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert md.text(base + "ipv4-prefix") == added["AssignedIpv4Prefixes"][0]["Ipv4Prefix"]

    ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
    assert md.text("meta-data/network/interfaces/macs/") == primary_mac + "/"
    assert md.get(base + "device-number")[0] == 404


def test_unix_socket_per_instance(ec2, emu, net):
    inst = run_instance(ec2, net.subnet)
    path = os.path.join(emu.sock_dir, f"imds-{inst['InstanceId']}.sock")
    assert os.path.exists(path)
    md = Imds(path)
    assert md.text("meta-data/instance-id") == inst["InstanceId"]
    assert md.text("meta-data/local-ipv4") == inst["PrivateIpAddress"]
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    assert not os.path.exists(path)


def _second_octet(ec2, net) -> str:
    cidr = ec2.describe_vpcs(VpcIds=[net.vpc])["Vpcs"][0]["CidrBlock"]
    return cidr.split(".")[1]


def _counted_tree_builds(monkeypatch):
    """The emulator's modules, in this process, with every metadata tree build recorded."""
    import sys

    from conftest import EMULATOR_DIR

    sys.path.insert(0, EMULATOR_DIR)
    from vpcemu import imds, state, world

    builds = []
    real = imds._tree
    monkeypatch.setattr(imds, "_tree", lambda inst: builds.append(inst.id) or real(inst))
    return imds, state, world, builds


def test_a_tree_is_built_once_per_state_version(monkeypatch):
    """A fleet's start reads metadata thousands of times: between mutating calls the tree is
    reused, and a mutating call (the version moves) makes the next read see the change."""
    import boto3
    from moto import mock_aws

    imds, state, _, builds = _counted_tree_builds(monkeypatch)
    version = state.Version()
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-west-2")
        iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large")[
            "Instances"
        ][0]["InstanceId"]
        status, token, _ = imds.handle(
            iid, "PUT", "/latest/api/token", {imds.TOKEN_TTL_HEADER: "60"}, version
        )
        assert status == 200
        get = lambda path: imds.handle(iid, "GET", path, {imds.TOKEN_HEADER: token}, version)  # noqa: E731
        for _ in range(5):
            assert get("/latest/meta-data/instance-type")[:2] == (200, "m5.large")
        assert builds == [iid]
        ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m5.xlarge"})
        assert get("/latest/meta-data/instance-type")[1] == "m5.large", "no version bump: cached"
        version.bump()
        assert get("/latest/meta-data/instance-type")[:2] == (200, "m5.xlarge")
        assert builds == [iid, iid]
        # Without a version (callers that do not know it), every read builds.
        imds.handle(iid, "GET", "/latest/meta-data/instance-type", {imds.TOKEN_HEADER: token})
        assert builds == [iid, iid, iid]


def test_a_change_to_one_instance_leaves_the_other_trees_cached(monkeypatch):
    """While a fleet starts, every node's ENI calls mutate EC2: a new ENI, or an ENI attached to
    or changed on one instance, rebuilds that instance's tree alone; an action not known to be
    confined to one instance rebuilds every tree."""
    import boto3
    from moto import mock_aws

    imds, state, world, builds = _counted_tree_builds(monkeypatch)
    version = state.Version()
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-west-2")
        a, b = (
            i["InstanceId"]
            for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="m5.large")[
                "Instances"
            ]
        )
        subnet = ec2.describe_instances(InstanceIds=[b])["Reservations"][0]["Instances"][0]["SubnetId"]

        def getter(iid):
            token = imds.handle(iid, "PUT", "/latest/api/token", {imds.TOKEN_TTL_HEADER: "60"}, version)[1]
            return lambda path: imds.handle(iid, "GET", path, {imds.TOKEN_HEADER: token}, version)

        get_a, get_b = getter(a), getter(b)
        macs = "/latest/meta-data/network/interfaces/macs/"
        assert len(get_a(macs)[1].split()) == 1 and len(get_b(macs)[1].split()) == 1
        assert builds == [a, b]

        def done(action, **params):
            version.bump(world.instances_touched(action, {k: [v] for k, v in params.items()}))

        eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        done("CreateNetworkInterface", SubnetId=subnet)
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=b, DeviceIndex=1)
        done("AttachNetworkInterface", NetworkInterfaceId=eni, InstanceId=b)
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=2)
        done("AssignPrivateIpAddresses", NetworkInterfaceId=eni)
        assert len(get_b(macs)[1].split()) == 2, "b's new ENI is missing from its metadata"
        assert len(get_a(macs)[1].split()) == 1
        assert builds == [a, b, b], "a's tree was rebuilt for b's ENI"
        done("AssociateVpcCidrBlock", VpcId="vpc-any")
        get_a(macs)
        assert builds == [a, b, b, a], "an action that may concern every instance left a's tree cached"
