"""ENI attach/detach/delete/terminate, tags, filters, VPC secondary CIDRs."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, run_instance


def _eni(ec2, subnet: str, **kwargs) -> str:
    return ec2.create_network_interface(SubnetId=subnet, **kwargs)["NetworkInterface"]["NetworkInterfaceId"]


def _describe(ec2, eni_id: str) -> dict:
    return ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]


def test_eni_limit_device_index_and_in_use(ec2, net):
    inst = run_instance(ec2, net.subnet, "m5.large")  # 3 ENIs
    iid = inst["InstanceId"]
    a, b, c = (_eni(ec2, net.subnet) for _ in range(3))
    ec2.attach_network_interface(NetworkInterfaceId=a, InstanceId=iid, DeviceIndex=1)
    with pytest.raises(ClientError) as exc:
        ec2.attach_network_interface(NetworkInterfaceId=b, InstanceId=iid, DeviceIndex=1)
    assert error_code(exc) == "InvalidParameterValue"
    assert "device index" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        ec2.attach_network_interface(NetworkInterfaceId=a, InstanceId=iid, DeviceIndex=2)
    assert error_code(exc) == "InvalidNetworkInterface.InUse"
    ec2.attach_network_interface(NetworkInterfaceId=b, InstanceId=iid, DeviceIndex=2)
    with pytest.raises(ClientError) as exc:
        ec2.attach_network_interface(NetworkInterfaceId=c, InstanceId=iid, DeviceIndex=3)
    assert error_code(exc) == "AttachmentLimitExceeded"
    attached = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    assert sorted(e["Attachment"]["DeviceIndex"] for e in attached["NetworkInterfaces"]) == [0, 1, 2]
    assert _describe(ec2, c)["Status"] == "available"


def test_attach_needs_same_availability_zone(ec2, net):
    inst = run_instance(ec2, net.subnet)
    other = ec2.create_subnet(VpcId=net.vpc, CidrBlock=_cidr(ec2, net, 50), AvailabilityZone="us-west-2b")
    eni = _eni(ec2, other["Subnet"]["SubnetId"])
    with pytest.raises(ClientError) as exc:
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=inst["InstanceId"], DeviceIndex=1)
    assert error_code(exc) == "InvalidParameterCombination"


def test_delete_detach_and_not_found(ec2, net):
    inst = run_instance(ec2, net.subnet)
    eni = _eni(ec2, net.subnet)
    att = ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=inst["InstanceId"], DeviceIndex=1)
    assert _describe(ec2, eni)["Status"] == "in-use"
    with pytest.raises(ClientError) as exc:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
    assert error_code(exc) == "InvalidNetworkInterface.InUse"
    with pytest.raises(ClientError) as exc:  # the primary ENI cannot be detached
        ec2.detach_network_interface(AttachmentId=inst["NetworkInterfaces"][0]["Attachment"]["AttachmentId"])
    assert error_code(exc) == "OperationNotPermitted"
    ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
    described = _describe(ec2, eni)
    assert described["Status"] == "available" and "Attachment" not in described
    ec2.delete_network_interface(NetworkInterfaceId=eni)
    with pytest.raises(ClientError) as exc:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
    assert error_code(exc) == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(ClientError) as exc:
        ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
    assert error_code(exc) == "InvalidAttachmentID.NotFound"


def test_delete_on_termination(ec2, net):
    inst = run_instance(ec2, net.subnet)
    iid = inst["InstanceId"]
    primary = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert inst["NetworkInterfaces"][0]["Attachment"]["DeleteOnTermination"] is True
    keep, drop = _eni(ec2, net.subnet), _eni(ec2, net.subnet)
    ec2.attach_network_interface(NetworkInterfaceId=keep, InstanceId=iid, DeviceIndex=1)
    att = ec2.attach_network_interface(NetworkInterfaceId=drop, InstanceId=iid, DeviceIndex=2)
    assert _describe(ec2, drop)["Attachment"]["DeleteOnTermination"] is False
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=drop, Attachment={"AttachmentId": att["AttachmentId"], "DeleteOnTermination": True}
    )
    assert _describe(ec2, drop)["Attachment"]["DeleteOnTermination"] is True
    with pytest.raises(ClientError) as exc:
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=keep, Attachment={"AttachmentId": att["AttachmentId"], "DeleteOnTermination": True}
        )
    assert error_code(exc) == "InvalidAttachmentID.NotFound"

    ec2.terminate_instances(InstanceIds=[iid])
    left = {
        e["NetworkInterfaceId"]: e["Status"]
        for e in ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [net.subnet]}])[
            "NetworkInterfaces"
        ]
    }
    assert left == {keep: "available"}
    assert primary not in left and drop not in left
    state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "terminated"
    ec2.delete_network_interface(NetworkInterfaceId=keep)


def test_tags_description_filters_and_default_group(ec2, net):
    inst = run_instance(ec2, net.subnet)
    iid = inst["InstanceId"]
    sg = ec2.create_security_group(GroupName="pods", Description="pods", VpcId=net.vpc)["GroupId"]
    default_sg = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [net.vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]
    # The default group admits its own members (as in EC2).
    pairs = [p["GroupId"] for perm in default_sg["IpPermissions"] for p in perm.get("UserIdGroupPairs", [])]
    assert default_sg["GroupId"] in pairs

    tagged = ec2.create_network_interface(
        SubnetId=net.subnet,
        Description=f"aws-K8S-{iid}",
        Groups=[sg],
        TagSpecifications=[
            {
                "ResourceType": "network-interface",
                "Tags": [
                    {"Key": "node.k8s.amazonaws.com/instance_id", "Value": iid},
                    {"Key": "cluster.k8s.amazonaws.com/name", "Value": "test"},
                ],
            }
        ],
    )["NetworkInterface"]
    plain = ec2.create_network_interface(SubnetId=net.subnet)["NetworkInterface"]
    assert [g["GroupId"] for g in plain["Groups"]] == [default_sg["GroupId"]]
    assert {t["Key"] for t in tagged["TagSet"]} == {
        "node.k8s.amazonaws.com/instance_id",
        "cluster.k8s.amazonaws.com/name",
    }

    def ids(*filters):
        return sorted(
            e["NetworkInterfaceId"]
            for e in ec2.describe_network_interfaces(Filters=list(filters))["NetworkInterfaces"]
        )

    vpc = {"Name": "vpc-id", "Values": [net.vpc]}
    t_id = tagged["NetworkInterfaceId"]
    assert ids(vpc, {"Name": "tag-key", "Values": ["node.k8s.amazonaws.com/instance_id"]}) == [t_id]
    assert ids(vpc, {"Name": "tag:node.k8s.amazonaws.com/instance_id", "Values": [iid]}) == [t_id]
    assert ids(vpc, {"Name": "description", "Values": ["aws-K8S-*"]}) == [t_id]
    assert ids(vpc, {"Name": "status", "Values": ["available"]}) == sorted([t_id, plain["NetworkInterfaceId"]])
    assert ids(vpc, {"Name": "status", "Values": ["in-use"]}) == [inst["NetworkInterfaces"][0]["NetworkInterfaceId"]]
    assert ids(vpc, {"Name": "private-ip-address", "Values": [plain["PrivateIpAddress"]]}) == [
        plain["NetworkInterfaceId"]
    ]

    # Security groups of an attached ENI stay its own.
    ec2.attach_network_interface(NetworkInterfaceId=t_id, InstanceId=iid, DeviceIndex=1)
    assert [g["GroupId"] for g in _describe(ec2, t_id)["Groups"]] == [sg]

    with pytest.raises(ClientError) as exc:
        ec2.create_network_interface(SubnetId=net.subnet, Groups=["sg-0123456789abcdef0"])
    assert error_code(exc) == "InvalidGroup.NotFound"


def test_secondary_vpc_cidr_and_instance_types(ec2, net):
    ec2.associate_vpc_cidr_block(VpcId=net.vpc, CidrBlock="100.64.0.0/16")
    vpc = ec2.describe_vpcs(VpcIds=[net.vpc])["Vpcs"][0]
    blocks = [a["CidrBlock"] for a in vpc["CidrBlockAssociationSet"]]
    assert "100.64.0.0/16" in blocks and len(blocks) == 2
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock="100.64.0.0/19", AvailabilityZone=net.az)["Subnet"]
    assert subnet["AvailableIpAddressCount"] == 8192 - 5
    eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Ipv4PrefixCount=1)["NetworkInterface"]
    assert eni["PrivateIpAddress"].startswith("100.64.")
    types = ec2.describe_instance_types(InstanceTypes=["m5.large"])["InstanceTypes"][0]
    assert types["NetworkInfo"]["MaximumNetworkInterfaces"] == 3
    assert types["NetworkInfo"]["Ipv4AddressesPerInterface"] == 10


def _cidr(ec2, net, third_octet: int) -> str:
    import ipaddress

    vpc_cidr = ipaddress.IPv4Network(ec2.describe_vpcs(VpcIds=[net.vpc])["Vpcs"][0]["CidrBlock"])
    return f"{vpc_cidr.network_address + third_octet * 256}/24"


def test_subnet_and_group_in_use_cannot_be_deleted(ec2, net):
    subnet = ec2.create_subnet(VpcId=net.vpc, CidrBlock=_cidr(ec2, net, 60), AvailabilityZone=net.az)["Subnet"]
    sg = ec2.create_security_group(GroupName="in-use", Description="x", VpcId=net.vpc)["GroupId"]
    eni = _eni(ec2, subnet["SubnetId"], Groups=[sg])
    with pytest.raises(ClientError) as exc:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    assert error_code(exc) == "DependencyViolation"
    with pytest.raises(ClientError) as exc:
        ec2.delete_security_group(GroupId=sg)
    assert error_code(exc) == "DependencyViolation"
    ec2.delete_network_interface(NetworkInterfaceId=eni)
    ec2.delete_security_group(GroupId=sg)
    ec2.delete_subnet(SubnetId=subnet["SubnetId"])
