"""Read-only views of moto's EC2 state: instance lookup and the network
snapshot served by ``GET /_testbed/network``.  Callers hold state.LOCK."""

from __future__ import annotations

from typing import Any, Iterator

from moto.ec2.models import ec2_backends


def backends() -> Iterator[Any]:
    for _account, _region, backend in ec2_backends.iter_backends():
        yield backend


def find_instance(instance_id: str) -> Any | None:
    for backend in backends():
        for reservation in backend.reservations.values():
            for instance in reservation.instances:
                if instance.id == instance_id:
                    return instance
    return None


# Mutating actions whose effect on instance metadata stays with the instance the ENI named by
# NetworkInterfaceId is attached to after the call (none, for an ENI attached to nothing).
_ENI_SCOPED = {
    "AttachNetworkInterface",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "ModifyNetworkInterfaceAttribute",
}


def instances_touched(action: str, params: dict[str, list[str]]) -> set[str] | None:
    """Instances whose metadata a successful ``action`` may have changed; None when it may be any
    (every action not known to be confined). A new ENI is attached to nothing."""
    if action == "CreateNetworkInterface":
        return set()
    if action not in _ENI_SCOPED:
        return None
    eni_id = (params.get("NetworkInterfaceId") or [""])[0]
    for backend in backends():
        eni = backend.enis.get(eni_id)
        if eni is not None:
            return {eni.instance.id} if eni.instance is not None else set()
    return None


def live_instances() -> list[Any]:
    """Instances that exist (not terminated), in every region."""
    out = []
    for backend in backends():
        for reservation in backend.reservations.values():
            for instance in reservation.instances:
                if instance.state != "terminated":
                    out.append(instance)
    return out


def vpc_cidrs(backend: Any, vpc_id: str) -> list[str]:
    vpc = backend.vpcs.get(vpc_id)
    if vpc is None:
        return []
    cidrs = []
    for assoc in vpc.cidr_block_association_set:
        if assoc.get("cidr_block") and assoc.get("cidr_block_state", {}).get("state", "associated") == "associated":
            cidrs.append(assoc["cidr_block"])
    return cidrs or [vpc.cidr_block]


def eni_view(eni: Any) -> dict[str, Any]:
    attached = eni.instance is not None
    return {
        "id": eni.id,
        "mac": eni.mac_address,
        "device_index": eni.device_index if attached else None,
        "attachment_id": eni.attachment_id if attached else None,
        "instance_id": eni.instance.id if attached else None,
        "status": eni.status,
        "subnet_id": eni.subnet.id,
        "vpc_id": eni.subnet.vpc_id,
        "groups": [g.id for g in eni._group_set],
        "primary_ip": eni.private_ip_address,
        "private_ips": [a["PrivateIpAddress"] for a in eni.private_ip_addresses],
        "prefixes": [p["Ipv4Prefix"] for p in getattr(eni, "ipv4_prefixes", [])],
        "delete_on_termination": bool(eni.delete_on_termination) if attached else False,
        "source_dest_check": bool(eni.source_dest_check),
        "description": eni.description,
    }


def _rule_view(rule: Any) -> dict[str, Any]:
    cidrs = [v for k, v in (rule.ip_range or {}).items() if k in ("CidrIp", "CidrIpv6")]
    groups = [rule.source_group["GroupId"]] if (rule.source_group or {}).get("GroupId") else []
    return {
        "protocol": rule.ip_protocol,
        "from_port": rule.from_port,
        "to_port": rule.to_port,
        "cidrs": cidrs,
        "groups": groups,
    }


def network_snapshot(version: int) -> dict[str, Any]:
    """The VPC world for the testbed's hypervisor and router.

    moto creates a default VPC in every region it touches; those (and
    everything in them) are left out, the testbed never uses them.
    """
    vpcs: list[dict[str, Any]] = []
    subnets: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    available: list[dict[str, Any]] = []
    for backend in backends():
        keep = set()
        for vpc in backend.vpcs.values():
            if vpc.is_default:
                continue
            keep.add(vpc.id)
            vpcs.append({"id": vpc.id, "cidrs": vpc_cidrs(backend, vpc.id), "region": backend.region_name})
        for subnet in _all_subnets(backend):
            if subnet.vpc_id in keep:
                subnets.append(
                    {
                        "id": subnet.id,
                        "vpc_id": subnet.vpc_id,
                        "az": subnet.availability_zone,
                        "cidr": subnet.cidr_block,
                    }
                )
        for vpc_id, by_id in backend.groups.items():
            if vpc_id not in keep:
                continue
            for group in by_id.values():
                groups.append(
                    {
                        "id": group.id,
                        "vpc_id": vpc_id,
                        "name": group.name,
                        "ingress": [_rule_view(r) for r in group.ingress_rules],
                        "egress": [_rule_view(r) for r in group.egress_rules],
                    }
                )
        for reservation in backend.reservations.values():
            for inst in reservation.instances:
                if inst.vpc_id not in keep:
                    continue
                enis = [eni_view(inst.nics[i]) for i in sorted(inst.nics)]
                instances.append(
                    {
                        "id": inst.id,
                        "type": inst.instance_type,
                        "az": inst.placement.zone,
                        "subnet_id": inst.subnet_id,
                        "vpc_id": inst.vpc_id,
                        "state": inst.state,
                        "enis": enis,
                    }
                )
        for eni in backend.enis.values():
            if eni.instance is None and eni.subnet.vpc_id in keep:
                available.append(eni_view(eni))
    return {
        "version": version,
        "vpcs": vpcs,
        "subnets": subnets,
        "security_groups": groups,
        "instances": instances,
        "available_enis": available,
    }


def _all_subnets(backend: Any) -> list[Any]:
    out = []
    for by_id in backend.subnets.values():
        out.extend(by_id.values())
    return out
