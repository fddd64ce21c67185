"""Private addresses, prefixes, subnet exhaustion and per-ENI limits."""

from __future__ import annotations

import ipaddress

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, run_instance


def _addresses(eni: dict) -> list[str]:
    return [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]]


def _available(ec2, subnet: str) -> int:
    return ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]


def test_addresses_unique_across_40_enis_and_never_reserved(ec2, net):
    subnet_net = ipaddress.IPv4Network(
        ec2.describe_subnets(SubnetIds=[net.subnet])["Subnets"][0]["CidrBlock"]
    )
    reserved = {str(subnet_net.network_address + i) for i in range(4)} | {str(subnet_net.broadcast_address)}
    inst = run_instance(ec2, net.subnet)
    seen = [inst["PrivateIpAddress"]]
    for _ in range(40):
        eni = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=4)["NetworkInterface"]
        seen += _addresses(eni)
    assert len(seen) == 201
    assert len(set(seen)) == len(seen), "an address was handed out twice"
    assert not set(seen) & reserved, "a reserved address was handed out"
    assert all(ipaddress.IPv4Address(ip) in subnet_net for ip in seen)
    # Every address of the subnet is visible in DescribeNetworkInterfaces too.
    described = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [net.subnet]}])
    listed = [ip for e in described["NetworkInterfaces"] for ip in _addresses(e)]
    assert sorted(listed) == sorted(seen)
    assert _available(ec2, net.subnet) == 256 - 5 - 201


def test_explicit_address_in_use_or_reserved_is_refused(ec2, net):
    eni = ec2.create_network_interface(SubnetId=net.subnet)["NetworkInterface"]
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=net.subnet, PrivateIpAddress=eni["PrivateIpAddress"])
    assert error_code(exc) == "InvalidIPAddress.InUse"
    base = ipaddress.IPv4Network(ec2.describe_subnets(SubnetIds=[net.subnet])["Subnets"][0]["CidrBlock"])
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=net.subnet, PrivateIpAddress=str(base.network_address + 1))
    assert error_code(exc) == "InvalidParameterValue"


def test_small_subnet_runs_out(ec2, net):
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock=_sibling(ec2, net, 28, 200), AvailabilityZone=net.az)[
        "Subnet"
    ]
    assert subnet["AvailableIpAddressCount"] == 11
    first = ec2.create_network_interface(SubnetId=subnet["SubnetId"], SecondaryPrivateIpAddressCount=7)
    assert len(_addresses(first["NetworkInterface"])) == 8
    assert _available(ec2, subnet["SubnetId"]) == 3
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=subnet["SubnetId"], SecondaryPrivateIpAddressCount=3)
    assert error_code(exc) == "InsufficientFreeAddressesInSubnet"
    with pytest.raises(ClientError) as exc:
        ec2.assign_private_ip_addresses(
            NetworkInterfaceId=first["NetworkInterface"]["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=4
        )
    assert error_code(exc) == "InsufficientFreeAddressesInSubnet"
    ec2.create_network_interface(SubnetId=subnet["SubnetId"], SecondaryPrivateIpAddressCount=2)
    assert _available(ec2, subnet["SubnetId"]) == 0
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=subnet["SubnetId"])
    assert error_code(exc) == "InsufficientFreeAddressesInSubnet"
    assert _available(ec2, subnet["SubnetId"]) == 0


def test_instances_get_unique_primary_addresses(ec2, net):
    cidr = _sibling(ec2, net, 28, 201)
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock=cidr, AvailabilityZone=net.az)["Subnet"]["SubnetId"]
    ips = [ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["PrivateIpAddress"] for _ in range(5)]
    ips += [run_instance(ec2, subnet)["PrivateIpAddress"] for _ in range(6)]
    assert len(set(ips)) == 11
    with pytest.raises(ClientError) as exc:
        run_instance(ec2, subnet)
    assert error_code(exc) == "InsufficientFreeAddressesInSubnet"


def test_address_limit_per_eni_on_m5_large(ec2, net):
    inst = run_instance(ec2, net.subnet, "m5.large")  # 10 addresses per ENI
    eni = ec2.create_network_interface(SubnetId=net.subnet)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=inst["InstanceId"], DeviceIndex=1)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=9)
    with pytest.raises(ClientError) as exc:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=1)
    assert error_code(exc) == "PrivateIpAddressLimitExceeded"
    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert len(described["PrivateIpAddresses"]) == 10

    # The primary ENI too, and prefixes take a slot each.
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock=_sibling(ec2, net, 24, 204), AvailabilityZone=net.az)
    inst = run_instance(ec2, subnet["Subnet"]["SubnetId"], "m5.large")
    primary = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.assign_private_ip_addresses(NetworkInterfaceId=primary, Ipv4PrefixCount=9)
    with pytest.raises(ClientError) as exc:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=primary, Ipv4PrefixCount=1)
    assert error_code(exc) == "PrivateIpAddressLimitExceeded"


def test_attach_refuses_eni_holding_more_than_the_type_allows(ec2, net):
    inst = run_instance(ec2, net.subnet, "t3.small")  # 4 addresses per ENI
    eni = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=4)["NetworkInterface"]
    with pytest.raises(ClientError) as exc:
        ec2.attach_network_interface(
            NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=inst["InstanceId"], DeviceIndex=1
        )
    assert error_code(exc) == "PrivateIpAddressLimitExceeded"
    # Unattached ENIs are only capped by the largest per-ENI limit of any type (64).
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=64)
    assert error_code(exc) == "PrivateIpAddressLimitExceeded"


def test_prefix_delegation(ec2, net):
    subnet_net = ipaddress.IPv4Network(
        ec2.describe_subnets(SubnetIds=[net.subnet])["Subnets"][0]["CidrBlock"]
    )
    before = _available(ec2, net.subnet)
    eni = ec2.create_network_interface(SubnetId=net.subnet, Ipv4PrefixCount=2)["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    prefixes = [p["Ipv4Prefix"] for p in eni["Ipv4Prefixes"]]
    assert len(prefixes) == 2
    assigned = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4PrefixCount=1)
    new = [p["Ipv4Prefix"] for p in assigned["AssignedIpv4Prefixes"]]
    assert len(new) == 1 and "AssignedPrivateIpAddresses" not in assigned
    prefixes += new
    nets = [ipaddress.IPv4Network(p) for p in prefixes]  # strict: must be aligned
    reserved = {subnet_net.network_address + i for i in range(4)} | {subnet_net.broadcast_address}
    primary = ipaddress.IPv4Address(eni["PrivateIpAddress"])
    for n in nets:
        assert n.prefixlen == 28 and n.subnet_of(subnet_net)
        assert primary not in n
        assert not any(r in n for r in reserved)
    assert len({str(n) for n in nets}) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert _available(ec2, net.subnet) == before - 1 - 48

    # Addresses handed out later never fall inside a prefix.
    others = ec2.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=40)["NetworkInterface"]
    for ip in _addresses(others):
        assert not any(ipaddress.IPv4Address(ip) in n for n in nets)

    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert sorted(p["Ipv4Prefix"] for p in described["Ipv4Prefixes"]) == sorted(prefixes)
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4Prefixes=[prefixes[0]])
    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert sorted(p["Ipv4Prefix"] for p in described["Ipv4Prefixes"]) == sorted(prefixes[1:])
    with pytest.raises(ClientError) as exc:
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4Prefixes=[prefixes[0]])
    assert error_code(exc) == "InvalidParameterValue"


def test_prefix_needs_a_free_aligned_block(ec2, net):
    cidr = _sibling(ec2, net, 28, 202)
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock=cidr, AvailabilityZone=net.az)["Subnet"]["SubnetId"]
    # A /28 subnet's only block holds the reserved addresses.
    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=subnet, Ipv4PrefixCount=1)
    assert error_code(exc) == "InsufficientCidrBlocks"
    # A /26: the first block holds .0-.3, the last the broadcast address, so
    # only the two middle blocks can be delegated.
    cidr = _sibling(ec2, net, 26, 203)
    base = ipaddress.IPv4Network(cidr).network_address
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock=cidr, AvailabilityZone=net.az)["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=str(base + 4), Ipv4PrefixCount=2)[
        "NetworkInterface"
    ]
    assert sorted(p["Ipv4Prefix"] for p in eni["Ipv4Prefixes"]) == [f"{base + 16}/28", f"{base + 32}/28"]
    with pytest.raises(ClientError) as exc:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert error_code(exc) == "InsufficientCidrBlocks"
    # Plain addresses still fit around the prefixes.
    ec2.create_network_interface(SubnetId=subnet, SecondaryPrivateIpAddressCount=3)


def test_secondary_addresses_assign_and_unassign(ec2, net):
    eni = ec2.create_network_interface(SubnetId=net.subnet)["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    assigned = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=3)
    new = [a["PrivateIpAddress"] for a in assigned["AssignedPrivateIpAddresses"]]
    assert len(new) == 3 and eni["PrivateIpAddress"] not in new  # only the new ones
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=new[:2])
    left = _addresses(ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0])
    assert sorted(left) == sorted([eni["PrivateIpAddress"], new[2]])
    with pytest.raises(ClientError) as exc:
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=[new[0]])
    assert error_code(exc) == "InvalidParameterValue"
    # A released address can be handed out again.
    again = ec2.create_network_interface(SubnetId=net.subnet, PrivateIpAddress=new[0])["NetworkInterface"]
    assert again["PrivateIpAddress"] == new[0]


def _sibling(ec2, net, prefixlen: int, third_octet: int) -> str:
    vpc_cidr = ipaddress.IPv4Network(ec2.describe_vpcs(VpcIds=[net.vpc])["Vpcs"][0]["CidrBlock"])
    base = vpc_cidr.network_address + third_octet * 256
    return f"{base}/{prefixlen}"


def test_concurrent_creates_stay_unique(ec2, emu, net):
    import threading

    import boto3

    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        client = boto3.client(
            "ec2", endpoint_url=emu.url, region_name="us-west-2",
            aws_access_key_id="t", aws_secret_access_key="t",
        )
        try:
            for _ in range(8):
                eni = client.create_network_interface(SubnetId=net.subnet, SecondaryPrivateIpAddressCount=3)
                with lock:
                    results.extend(_addresses(eni["NetworkInterface"]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4 * 8 * 4 and len(set(results)) == len(results)
