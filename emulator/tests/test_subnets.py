"""DescribeSubnets as subnet discovery reads it: tag filters, free counts that move, and a
fragmented subnet that has single addresses but no aligned /28."""

from __future__ import annotations

import ipaddress

import pytest
from botocore.exceptions import ClientError

from conftest import error_code

ROLE = "kubernetes.io/role/cni"


def _subnet(ec2, net, cidr: str, tags: dict[str, str] | None = None, az: str | None = None) -> str:
    args = {"VpcId": net.vpc, "CidrBlock": cidr, "AvailabilityZone": az or net.az}
    if tags:
        args["TagSpecifications"] = [
            {"ResourceType": "subnet", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return ec2.create_subnet(**args)["Subnet"]["SubnetId"]


def _base(ec2, net) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Network(ec2.describe_vpcs(VpcIds=[net.vpc])["Vpcs"][0]["CidrBlock"]).network_address


def _ids(ec2, filters: list[dict]) -> set[str]:
    return {s["SubnetId"] for s in ec2.describe_subnets(Filters=filters)["Subnets"]}


def _available(ec2, subnet: str) -> int:
    return ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]


def test_tag_filters_as_subnet_discovery_uses_them(ec2, net):
    base = _base(ec2, net)
    tagged = _subnet(ec2, net, f"{base + 10 * 256}/24", {ROLE: "1"})
    opted_out = _subnet(ec2, net, f"{base + 11 * 256}/24", {ROLE: "0"})
    other_zone = _subnet(ec2, net, f"{base + 12 * 256}/24", {ROLE: "1"}, az="us-west-2b")
    # The tags given at creation are on the subnet.
    described = ec2.describe_subnets(SubnetIds=[tagged])["Subnets"][0]
    assert {t["Key"]: t["Value"] for t in described["Tags"]} == {ROLE: "1"}
    zone = [
        {"Name": "vpc-id", "Values": [net.vpc]},
        {"Name": "availability-zone", "Values": [net.az]},
    ]
    assert _ids(ec2, zone) == {net.subnet, tagged, opted_out}
    assert _ids(ec2, zone + [{"Name": "tag-key", "Values": [ROLE]}]) == {tagged, opted_out}
    assert _ids(ec2, zone + [{"Name": f"tag:{ROLE}", "Values": ["1"]}]) == {tagged}
    assert _ids(ec2, [{"Name": "vpc-id", "Values": [net.vpc]}, {"Name": f"tag:{ROLE}", "Values": ["1"]}]) == {
        tagged,
        other_zone,
    }
    # A subnet tagged later is found by the same filters at once.
    ec2.create_tags(Resources=[net.subnet], Tags=[{"Key": ROLE, "Value": "1"}])
    assert _ids(ec2, zone + [{"Name": f"tag:{ROLE}", "Values": ["1"]}]) == {tagged, net.subnet}
    # Filtering by subnet-id leaves unknown ids out instead of failing the call.
    assert _ids(ec2, [{"Name": "subnet-id", "Values": [tagged, "subnet-0000000000000dead"]}]) == {tagged}


def test_available_count_moves_with_addresses_and_prefixes(ec2, net):
    assert _available(ec2, net.subnet) == 251
    eni = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=4)["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    assert _available(ec2, net.subnet) == 246
    assigned = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=2)
    assert _available(ec2, net.subnet) == 244
    ec2.unassign_private_ip_addresses(
        NetworkInterfaceId=eni_id,
        PrivateIpAddresses=[a["PrivateIpAddress"] for a in assigned["AssignedPrivateIpAddresses"]],
    )
    assert _available(ec2, net.subnet) == 246
    pd = ec2.create_network_interface(SubnetId=net.subnet, Ipv4PrefixCount=2)["NetworkInterface"]
    assert _available(ec2, net.subnet) == 246 - 1 - 32
    ec2.delete_network_interface(NetworkInterfaceId=pd["NetworkInterfaceId"])
    ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    assert _available(ec2, net.subnet) == 251


def test_a_fragmented_subnet_has_addresses_but_no_free_prefix(ec2, net):
    # A /26 has four /28s: the first holds the reserved .0-.3, the last the broadcast address;
    # one address in each middle block fragments it.
    cidr = f"{_base(ec2, net) + 20 * 256}/26"
    base = ipaddress.IPv4Network(cidr).network_address
    subnet = _subnet(ec2, net, cidr)
    for offset in (20, 40):
        ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=str(base + offset))
    assert _available(ec2, subnet) == 64 - 5 - 2
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=subnet, Ipv4PrefixCount=1)
    assert error_code(exc) == "InsufficientCidrBlocks"
    # Single addresses still fit: what prefix delegation falls back to.
    eni = ec2.create_network_interface(SubnetId=subnet, SecondaryPrivateIpAddressCount=9)["NetworkInterface"]
    assert len(eni["PrivateIpAddresses"]) == 10
    assert _available(ec2, subnet) == 64 - 5 - 2 - 10
