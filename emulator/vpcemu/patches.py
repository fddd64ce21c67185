"""In-process fixes to moto's EC2 models and response handlers.

moto 5.2.5 returns the real EC2 wire shapes but is not faithful where an ENI
and IP address manager depends on it (see ../README.md for the list).  This
module replaces a handful of methods on moto's classes so that:

* private addresses are unique per subnet (primary and secondary, across all
  ENIs) and never one of the five addresses AWS reserves in every subnet;
* /28 prefixes (prefix delegation) are carved, aligned, from free space;
* subnet exhaustion, ENI-per-instance and address-per-ENI limits raise the
  error codes EC2 raises;
* attach/detach/delete/terminate follow EC2's ENI lifecycle
  (InUse errors, DeleteOnTermination).

Every replacement is installed by :func:`install` and is a plain function
assigned onto moto's class, so the rest of moto keeps working unchanged.
Callers must hold :data:`vpcemu.state.LOCK` (the WSGI layer serialises every
EC2 call), so nothing here is re-entrant on purpose.
"""

from __future__ import annotations

import copy
import fnmatch
import ipaddress
import random
from typing import Any, Iterable

from moto.ec2 import utils as ec2_utils
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.elastic_network_interfaces import (
    NetworkInterface,
    NetworkInterfaceBackend,
)
from moto.ec2.models.instances import Instance
from moto.ec2.models.security_groups import SecurityGroup, SecurityGroupBackend, SecurityGroupRule
from moto.ec2.models.subnets import Subnet, SubnetBackend
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from moto.core.responses import ActionResult, EmptyResult

from .limits import Limits

PREFIX_SIZE = 16  # a /28

# Set by install().
_limits = Limits()
_rng = random.Random()
_mode = "random"  # or "lowest"


def _err(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


# ---------------------------------------------------------------------------
# Address bookkeeping.  The truth is always recomputed from the ENIs of the
# subnet (cheap at testbed sizes), so nothing can drift out of sync.
# ---------------------------------------------------------------------------


def _net(subnet: Subnet) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(subnet.cidr_block)


def _reserved(subnet: Subnet) -> set[int]:
    """The network address, the next three (router, DNS, future) and broadcast."""
    net = _net(subnet)
    first, last = int(net.network_address), int(net.broadcast_address)
    out = {first + i for i in range(4) if first + i <= last}
    out.add(last)
    # Subnet CIDR reservations (CreateSubnetCidrReservation) in moto.
    for ip in getattr(subnet, "_reserved_ips", ()):
        if ip.version == 4:
            out.add(int(ip))
    return out


def _eni_addresses(eni: NetworkInterface) -> list[str]:
    return [a["PrivateIpAddress"] for a in eni.private_ip_addresses if a.get("PrivateIpAddress")]


def _eni_prefixes(eni: NetworkInterface) -> list[str]:
    return [p["Ipv4Prefix"] for p in getattr(eni, "ipv4_prefixes", [])]


def _slots(eni: NetworkInterface) -> int:
    """IPv4 slots an ENI uses: each address and each /28 prefix counts one."""
    return len(eni.private_ip_addresses) + len(getattr(eni, "ipv4_prefixes", []))


def _subnet_enis(backend: Any, subnet: Subnet) -> Iterable[NetworkInterface]:
    return [e for e in backend.enis.values() if e.subnet is not None and e.subnet.id == subnet.id]


def _used(backend: Any, subnet: Subnet) -> set[int]:
    used = _reserved(subnet)
    for eni in _subnet_enis(backend, subnet):
        for ip in _eni_addresses(eni):
            used.add(int(ipaddress.IPv4Address(ip)))
        for prefix in _eni_prefixes(eni):
            base = int(ipaddress.IPv4Network(prefix).network_address)
            used.update(range(base, base + PREFIX_SIZE))
    return used


def _free_count(subnet: Subnet, used: set[int]) -> int:
    net = _net(subnet)
    first, last = int(net.network_address), int(net.broadcast_address)
    taken = sum(1 for u in used if first <= u <= last)
    return max(0, net.num_addresses - taken)


def _pick_ips(subnet: Subnet, used: set[int], n: int) -> list[str]:
    """n free addresses of the subnet (added to ``used``), or InsufficientFree…."""
    if n <= 0:
        return []
    if n > _free_count(subnet, used):
        raise _err(
            "InsufficientFreeAddressesInSubnet",
            f"The specified subnet {subnet.id} does not have enough free addresses to satisfy the request.",
        )
    net = _net(subnet)
    first, last = int(net.network_address), int(net.broadcast_address)
    out: list[int] = []
    if _mode == "lowest":
        cur = first
        while len(out) < n:
            if cur not in used:
                out.append(cur)
                used.add(cur)
            cur += 1
    else:
        for _ in range(n):
            pick = None
            for _attempt in range(32):
                cand = _rng.randint(first, last)
                if cand not in used:
                    pick = cand
                    break
            if pick is None:
                pick = _rng.choice([a for a in range(first, last + 1) if a not in used])
            used.add(pick)
            out.append(pick)
    return [str(ipaddress.IPv4Address(a)) for a in out]


def _pick_prefixes(subnet: Subnet, used: set[int], n: int) -> list[str]:
    """n aligned /28s overlapping no used address (added to ``used``)."""
    if n <= 0:
        return []
    net = _net(subnet)
    first, last = int(net.network_address), int(net.broadcast_address)
    busy_blocks = {u // PREFIX_SIZE for u in used}
    lo = -(-first // PREFIX_SIZE)  # first aligned block starting inside the subnet
    hi = (last + 1) // PREFIX_SIZE  # exclusive
    free = [b for b in range(lo, hi) if b not in busy_blocks]
    if len(free) < n:
        raise _err(
            "InsufficientCidrBlocks",
            f"The specified subnet {subnet.id} does not have enough free cidr blocks to satisfy the request.",
        )
    chosen = free[:n] if _mode == "lowest" else _rng.sample(free, n)
    out = []
    for b in sorted(chosen):
        base = b * PREFIX_SIZE
        used.update(range(base, base + PREFIX_SIZE))
        out.append(f"{ipaddress.IPv4Address(base)}/28")
    return out


def _check_explicit_ip(subnet: Subnet, used: set[int], ip: str) -> int:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise _err("InvalidParameterValue", f"Invalid private IP address {ip}")
    if addr not in _net(subnet):
        raise _err(
            "InvalidParameterValue",
            f"Address {ip} does not fall within the subnet's address range",
        )
    value = int(addr)
    if value in _reserved(subnet):
        raise _err(
            "InvalidParameterValue",
            f"Address {ip} is in subnet's reserved address range",
        )
    if value in used:
        raise _err("InvalidIPAddress.InUse", f"The specified address {ip} is already in use.")
    used.add(value)
    return value


def _check_explicit_prefix(subnet: Subnet, used: set[int], prefix: str) -> str:
    try:
        net = ipaddress.IPv4Network(prefix)
    except ValueError:
        raise _err("InvalidParameterValue", f"Invalid IPv4 prefix {prefix}")
    if net.prefixlen != 28 or not net.subnet_of(_net(subnet)):
        raise _err(
            "InvalidParameterValue",
            f"The prefix {prefix} must be a /28 within the subnet's range",
        )
    base = int(net.network_address)
    block = set(range(base, base + PREFIX_SIZE))
    if block & used:
        raise _err("InvalidParameterValue", f"The prefix {prefix} overlaps addresses in use.")
    used.update(block)
    return str(net)


def _limit_for_eni(eni: NetworkInterface) -> int:
    if eni.instance is not None:
        lim = _limits.for_type(eni.instance.instance_type)
        if lim is not None:
            return lim.ipv4_per_eni
    return _limits.max_ipv4_per_eni


def _address_limit_error(eni_id: str | None, limit: int) -> EC2ClientError:
    where = f" on interface {eni_id}" if eni_id else ""
    return _err(
        "PrivateIpAddressLimitExceeded",
        f"Number of private addresses will exceed limit{where} (at most {limit}).",
    )


def subnet_available_count(subnet: Subnet) -> int:
    return _free_count(subnet, _used(subnet.ec2_backend, subnet))


def _get_subnet(backend: Any, subnet: Any) -> Subnet:
    if isinstance(subnet, str):
        return backend.get_subnet(subnet)
    return subnet


def _unique_mac(backend: Any) -> str:
    taken = {e.mac_address for e in backend.enis.values()}
    while True:
        mac = ec2_utils.random_mac_address()
        if mac not in taken:
            return mac


# ---------------------------------------------------------------------------
# Backend replacements.
# ---------------------------------------------------------------------------

_orig_eni_init = NetworkInterface.__init__


def _eni_init(self: NetworkInterface, *args: Any, **kwargs: Any) -> None:
    self.ipv4_prefixes = []
    _orig_eni_init(self, *args, **kwargs)
    self.mac_address = _unique_mac(self.ec2_backend)


_orig_create_eni = NetworkInterfaceBackend.create_network_interface


def _create_network_interface(
    self: Any,
    subnet: Any,
    private_ip_address: Any,
    private_ip_addresses: list[Any] | None = None,
    group_ids: list[str] | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    delete_on_termination: bool | None = False,
    **kwargs: Any,
) -> NetworkInterface:
    """CreateNetworkInterface (also used by RunInstances for its ENIs)."""
    subnet = _get_subnet(self, subnet)
    secondary_count = int(kwargs.pop("secondary_ips_count", None) or 0)
    prefix_count = int(kwargs.pop("ipv4_prefix_count", None) or 0)
    explicit_prefixes = list(kwargs.pop("ipv4_prefixes", None) or [])

    # Explicit addresses: a primary and/or a list of {Primary, PrivateIpAddress}.
    if isinstance(private_ip_address, list):
        private_ip_address = private_ip_address[0] if private_ip_address else None
    primary = private_ip_address or None
    secondaries: list[str] = []
    for item in private_ip_addresses or []:
        if isinstance(item, str):
            ip, is_primary = item, False
        else:
            ip, is_primary = item.get("PrivateIpAddress"), bool(item.get("Primary"))
        if not ip:
            continue
        if is_primary and primary is None:
            primary = ip
        elif ip != primary:
            secondaries.append(ip)

    if secondary_count < 0 or prefix_count < 0:
        raise _err("InvalidParameterValue", "Counts must not be negative")
    if (secondary_count or secondaries) and (prefix_count or explicit_prefixes):
        raise _err(
            "InvalidParameterCombination",
            "You cannot specify both secondary private IP addresses and IPv4 prefixes.",
        )
    # Unattached ENIs are capped by the largest per-ENI limit of any type;
    # the instance type's own limit is enforced on attach and on assign.
    slots = 1 + len(secondaries) + secondary_count + len(explicit_prefixes) + prefix_count
    if slots > _limits.max_ipv4_per_eni:
        raise _address_limit_error(None, _limits.max_ipv4_per_eni)

    # Security groups must exist and be in the subnet's VPC (moto invents them).
    groups: list[str] = []
    for gid in group_ids or []:
        if gid in groups:
            continue
        group = self.get_security_group_from_id(gid)
        if group is None:
            raise _err("InvalidGroup.NotFound", f"The security group '{gid}' does not exist")
        if group.vpc_id != subnet.vpc_id:
            raise _err(
                "InvalidParameter",
                f"Security group {gid} and subnet {subnet.id} belong to different networks.",
            )
        groups.append(gid)

    used = _used(self, subnet)
    if primary is not None:
        _check_explicit_ip(subnet, used, primary)
    for ip in secondaries:
        _check_explicit_ip(subnet, used, ip)
    prefixes = [_check_explicit_prefix(subnet, used, p) for p in explicit_prefixes]
    if primary is None:
        primary = _pick_ips(subnet, used, 1)[0]
    prefixes += _pick_prefixes(subnet, used, prefix_count)
    secondaries += _pick_ips(subnet, used, secondary_count)

    addresses = [{"Primary": True, "PrivateIpAddress": primary}] + [
        {"Primary": False, "PrivateIpAddress": ip} for ip in secondaries
    ]
    eni = _orig_create_eni(
        self,
        subnet,
        primary,
        addresses,
        group_ids=groups,
        description=description,
        tags=tags,
        delete_on_termination=delete_on_termination,
        **kwargs,
    )
    eni.ipv4_prefixes = [{"Ipv4Prefix": p} for p in prefixes]
    return eni


def _delete_network_interface(self: Any, eni_id: str) -> None:
    eni = self.enis.get(eni_id)
    if eni is None:
        raise _err(
            "InvalidNetworkInterfaceID.NotFound",
            f"The networkInterface ID '{eni_id}' does not exist",
        )
    if eni.instance is not None:
        raise _err(
            "InvalidNetworkInterface.InUse",
            f"The network interface '{eni_id}' is currently in use.",
        )
    del self.enis[eni_id]


def _attach_network_interface(self: Any, eni_id: str, instance_id: str, device_index: Any) -> Any:
    eni = self.get_network_interface(eni_id)
    instance = self.get_instance(instance_id)
    if device_index is None:
        raise _err("MissingParameter", "The request must contain the parameter deviceIndex")
    device_index = int(device_index)
    if instance.state == "terminated" or instance.state == "shutting-down":
        raise _err(
            "IncorrectInstanceState",
            f"The instance '{instance_id}' is not in a valid state for this operation.",
        )
    if eni.instance is not None:
        raise _err(
            "InvalidNetworkInterface.InUse",
            f"Interface: [{eni_id}] in use.",
        )
    if eni.subnet.availability_zone != instance.placement.zone:
        raise _err(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the same availability zone",
        )
    if eni.subnet.vpc_id != instance.vpc_id:
        raise _err(
            "InvalidParameterValue",
            f"The network interface {eni_id} and instance {instance_id} are not in the same VPC.",
        )
    if device_index in instance.nics:
        raise _err(
            "InvalidParameterValue",
            f"Instance '{instance_id}' already has an interface attached at device index '{device_index}'.",
        )
    lim = _limits.for_type(instance.instance_type)
    if lim is not None:
        if len(instance.nics) + 1 > lim.eni_limit:
            raise _err(
                "AttachmentLimitExceeded",
                f"Interface count {len(instance.nics) + 1} exceeds the limit for {instance.instance_type}",
            )
        if _slots(eni) > lim.ipv4_per_eni:
            raise _err(
                "PrivateIpAddressLimitExceeded",
                f"Number of private addresses ({_slots(eni)}) on {eni_id} exceeds the limit "
                f"for {instance.instance_type} ({lim.ipv4_per_eni}).",
            )
    instance.attach_eni(eni, device_index)
    # A new attachment made through the API starts with DeleteOnTermination=false.
    eni.delete_on_termination = False
    return eni.attachment


def _detach_network_interface(self: Any, attachment_id: str) -> None:
    for eni in self.enis.values():
        if eni.attachment_id == attachment_id:
            if eni.device_index == 0:
                raise _err(
                    "OperationNotPermitted",
                    "The network interface at device index 0 and networkCard index 0 cannot be detached.",
                )
            eni.instance.detach_eni(eni)
            eni.delete_on_termination = False
            return
    raise _err(
        "InvalidAttachmentID.NotFound",
        f"The network interface attachment ID '{attachment_id}' does not exist",
    )


def _assign_private_ip_addresses(
    self: Any,
    eni_id: str,
    private_ip_addresses: list[str] | None = None,
    secondary_ips_count: int | None = None,
    ipv4_prefix_count: int | None = None,
    ipv4_prefixes: list[str] | None = None,
    allow_reassignment: bool = False,
) -> tuple[NetworkInterface, list[str], list[str]]:
    """Returns the ENI and only the newly assigned addresses and prefixes."""
    eni = self.get_network_interface(eni_id)
    subnet = eni.subnet
    explicit = [ip for ip in (private_ip_addresses or []) if ip not in _eni_addresses(eni)]
    count = int(secondary_ips_count or 0)
    pcount = int(ipv4_prefix_count or 0)
    pexplicit = [p for p in (ipv4_prefixes or []) if p not in _eni_prefixes(eni)]
    if (count or explicit) and (pcount or pexplicit):
        raise _err(
            "InvalidParameterCombination",
            "You cannot specify both secondary private IP addresses and IPv4 prefixes.",
        )
    wanted = len(explicit) + count + len(pexplicit) + pcount
    limit = _limit_for_eni(eni)
    if _slots(eni) + wanted > limit:
        raise _address_limit_error(eni_id, limit)

    if allow_reassignment and explicit:
        # Move the addresses from whichever ENI of the subnet holds them.
        for other in _subnet_enis(self, subnet):
            if other is eni:
                continue
            for item in list(other.private_ip_addresses):
                if item["PrivateIpAddress"] in explicit and not item.get("Primary"):
                    other.private_ip_addresses.remove(item)
    used = _used(self, subnet)
    for ip in explicit:
        _check_explicit_ip(subnet, used, ip)
    new_prefixes = [_check_explicit_prefix(subnet, used, p) for p in pexplicit]
    new_prefixes += _pick_prefixes(subnet, used, pcount)
    new_ips = explicit + _pick_ips(subnet, used, count)

    eni.private_ip_addresses.extend({"Primary": False, "PrivateIpAddress": ip} for ip in new_ips)
    eni.ipv4_prefixes.extend({"Ipv4Prefix": p} for p in new_prefixes)
    return eni, new_ips, new_prefixes


def _unassign_private_ip_addresses(
    self: Any,
    eni_id: str,
    private_ip_address: list[str] | None = None,
    ipv4_prefixes: list[str] | None = None,
) -> NetworkInterface:
    eni = self.get_network_interface(eni_id)
    addresses = list(private_ip_address or [])
    prefixes = list(ipv4_prefixes or [])
    secondaries = {a["PrivateIpAddress"] for a in eni.private_ip_addresses if not a.get("Primary")}
    missing = [ip for ip in addresses if ip not in secondaries]
    if missing:
        raise _err(
            "InvalidParameterValue",
            f"Some of the specified addresses are not assigned to interface {eni_id}",
        )
    held = set(_eni_prefixes(eni))
    missing = [p for p in prefixes if p not in held]
    if missing:
        raise _err(
            "InvalidParameterValue",
            f"Some of the specified prefixes are not assigned to interface {eni_id}",
        )
    eni.private_ip_addresses = [
        a for a in eni.private_ip_addresses if a["PrivateIpAddress"] not in addresses
    ]
    eni.ipv4_prefixes = [p for p in eni.ipv4_prefixes if p["Ipv4Prefix"] not in prefixes]
    return eni


def _eni_group_set(self: NetworkInterface) -> list[Any]:
    # moto merges the instance's groups into every attached ENI; EC2 does not:
    # an ENI carries exactly its own groups.
    return list(self._group_set)


_orig_eni_filter = NetworkInterface.get_filter_value


def _eni_get_filter_value(self: NetworkInterface, filter_name: str, method_name: str | None = None) -> Any:
    if filter_name in ("private-ip-address", "addresses.private-ip-address"):
        return _eni_addresses(self)
    if filter_name == "mac-address":
        return self.mac_address
    if filter_name == "status":
        return self.status
    if filter_name == "attachment.status":
        return "attached" if self.instance is not None else None
    if filter_name == "attachment.device-index":
        return self.device_index if self.instance is not None else None
    if filter_name == "attachment.delete-on-termination":
        return bool(self.delete_on_termination) if self.instance is not None else None
    if filter_name == "ipv4-prefix":
        return _eni_prefixes(self)
    if filter_name == "group-name":
        return [g.name for g in self._group_set]
    if filter_name == "interface-type":
        return self.interface_type
    if filter_name == "owner-id":
        return self.owner_id
    if filter_name == "requester-managed":
        return self.requester_managed
    if filter_name == "source-dest-check":
        return self.source_dest_check
    return _orig_eni_filter(self, filter_name, method_name)


_orig_is_filter_matching = ec2_utils.is_filter_matching


def _is_filter_matching(obj: Any, _filter: str, filter_value: Any) -> bool:
    """EC2 semantics for multi-valued attributes: any element matches any value."""
    value = obj.get_filter_value(_filter)
    if isinstance(value, (list, tuple, set)) and filter_value is not None:
        patterns = filter_value if isinstance(filter_value, list) else [filter_value]
        return any(fnmatch.fnmatchcase(str(v), str(p)) for v in value for p in patterns)
    return _orig_is_filter_matching(obj, _filter, filter_value)


# --- Subnets ---------------------------------------------------------------


def _subnet_available_ip_address_count(self: Subnet) -> int:
    return subnet_available_count(self)


def _subnet_get_available_subnet_ip(self: Subnet, instance: Any) -> str:
    # Used by RunInstances for the primary ENI's address.
    return _pick_ips(self, _used(self.ec2_backend, self), 1)[0]


def _subnet_request_ip(self: Subnet, ip: str, instance: Any) -> None:
    # RunInstances with an explicit PrivateIpAddress.
    _check_explicit_ip(self, _used(self.ec2_backend, self), ip)


_orig_delete_subnet = SubnetBackend.delete_subnet


def _delete_subnet(self: Any, subnet_id: str) -> Any:
    if any(e.subnet is not None and e.subnet.id == subnet_id for e in self.enis.values()):
        raise _err(
            "DependencyViolation",
            f"The subnet '{subnet_id}' has dependencies and cannot be deleted.",
        )
    return _orig_delete_subnet(self, subnet_id)


_orig_delete_sg = SecurityGroupBackend._delete_security_group


def _delete_security_group(self: Any, vpc_id: str | None, group_id: str) -> None:
    if any(any(g.id == group_id for g in e._group_set) for e in self.enis.values()):
        raise _err("DependencyViolation", f"resource {group_id} has a dependent object")
    _orig_delete_sg(self, vpc_id, group_id)


# --- Instances -------------------------------------------------------------

_orig_prep_nics = Instance.prep_nics


def _prep_nics(self: Instance, nic_spec: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
    _orig_prep_nics(self, nic_spec, *args, **kwargs)
    # ENIs that RunInstances creates are deleted with the instance unless the
    # request said otherwise (moto defaults them to false).
    by_index = {int(n.get("DeviceIndex", 0)): n for n in nic_spec or []}
    for index, eni in self.nics.items():
        spec = by_index.get(index, {})
        if spec.get("NetworkInterfaceId"):
            continue
        eni.delete_on_termination = spec.get("DeleteOnTermination") is not False


_orig_terminate = Instance.terminate


def _terminate(self: Instance) -> Any:
    if self._state.name == "terminated":
        return copy.copy(self._state)
    for index in sorted(self.nics):
        eni = self.nics[index]
        eni.stop()
        delete = bool(eni.delete_on_termination)
        self.detach_eni(eni)
        eni.delete_on_termination = False
        if delete:
            self.ec2_backend.enis.pop(eni.id, None)
    self.nics = {}
    return _orig_terminate(self)


def _primary_attr(attr: str) -> property:
    def getter(self: Instance) -> Any:
        eni = self.nics.get(0)
        return getattr(eni, attr) if eni is not None else None

    return property(getter)


def _private_dns_name(self: Instance) -> str:
    ip = self.private_ip
    if not ip:
        return ""
    formatted = ip.replace(".", "-")
    if self.region_name == "us-east-1":
        return f"ip-{formatted}.ec2.internal"
    return f"ip-{formatted}.{self.region_name}.compute.internal"


# --- Security groups -------------------------------------------------------

_orig_sg_init = SecurityGroup.__init__


def _sg_init(self: SecurityGroup, *args: Any, **kwargs: Any) -> None:
    _orig_sg_init(self, *args, **kwargs)
    # A VPC's default group lets in all traffic from its own members
    # (moto creates it with no ingress rule).
    if self.is_default and self.vpc_id:
        self.ingress_rules.append(
            SecurityGroupRule(
                self.ec2_backend,
                "-1",
                self.id,
                None,
                None,
                None,
                {"GroupId": self.id, "UserId": self.ec2_backend.account_id},
                is_egress=False,
            )
        )


# --- Response handlers -----------------------------------------------------


def _resp_create_network_interface(self: ElasticNetworkInterfaces) -> ActionResult:
    from moto.ec2.utils import add_tag_specification

    subnet = self.ec2_backend.get_subnet(self._get_param("SubnetId"))
    tags = add_tag_specification(self._get_param("TagSpecifications", []))
    self.error_on_dryrun()
    eni = self.ec2_backend.create_network_interface(
        subnet,
        self._get_param("PrivateIpAddress"),
        self._get_param("PrivateIpAddresses", []),
        self._get_param("Groups", []),
        self._get_param("Description"),
        tags,
        secondary_ips_count=self._get_int_param("SecondaryPrivateIpAddressCount", 0),
        ipv4_prefix_count=self._get_int_param("Ipv4PrefixCount", 0),
        ipv4_prefixes=[p["Ipv4Prefix"] for p in self._get_param("Ipv4Prefixes", []) if p.get("Ipv4Prefix")],
        ipv6_addresses=[i["Ipv6Address"] for i in self._get_param("Ipv6Addresses", [])],
        ipv6_address_count=self._get_int_param("Ipv6AddressCount", 0),
    )
    return ActionResult({"NetworkInterface": eni})


def _resp_assign_private_ip_addresses(self: ElasticNetworkInterfaces) -> ActionResult:
    eni, ips, prefixes = self.ec2_backend.assign_private_ip_addresses(
        self._get_param("NetworkInterfaceId"),
        self._get_param("PrivateIpAddresses", []),
        self._get_int_param("SecondaryPrivateIpAddressCount", 0),
        ipv4_prefix_count=self._get_int_param("Ipv4PrefixCount", 0),
        ipv4_prefixes=self._get_param("Ipv4Prefixes", []),
        allow_reassignment=bool(self._get_param("AllowReassignment", False)),
    )
    result: dict[str, Any] = {"NetworkInterfaceId": eni.id}
    if ips:
        result["AssignedPrivateIpAddresses"] = [{"PrivateIpAddress": ip} for ip in ips]
    if prefixes:
        result["AssignedIpv4Prefixes"] = [{"Ipv4Prefix": p} for p in prefixes]
    return ActionResult(result)


def _resp_unassign_private_ip_addresses(self: ElasticNetworkInterfaces) -> ActionResult:
    self.ec2_backend.unassign_private_ip_addresses(
        self._get_param("NetworkInterfaceId"),
        self._get_param("PrivateIpAddresses", []),
        ipv4_prefixes=self._get_param("Ipv4Prefixes", []),
    )
    return EmptyResult()


def _resp_modify_network_interface_attribute(self: ElasticNetworkInterfaces) -> ActionResult:
    eni_id = self._get_param("NetworkInterfaceId")
    self.error_on_dryrun()
    eni = self.ec2_backend.get_network_interface(eni_id)
    attachment = self._get_param("Attachment")
    if attachment:
        if eni.attachment_id is None or attachment.get("AttachmentId") != eni.attachment_id:
            raise _err(
                "InvalidAttachmentID.NotFound",
                f"The network interface attachment ID '{attachment.get('AttachmentId')}' does not exist",
            )
        if attachment.get("DeleteOnTermination") is not None:
            eni.delete_on_termination = bool(attachment["DeleteOnTermination"])
    group_ids = self._get_param("Groups", [])
    for gid in group_ids:
        group = self.ec2_backend.get_security_group_from_id(gid)
        if group is None:
            raise _err("InvalidGroup.NotFound", f"The security group '{gid}' does not exist")
        if group.vpc_id != eni.subnet.vpc_id:
            raise _err(
                "InvalidParameter",
                f"Security group {gid} and interface {eni_id} belong to different networks.",
            )
    self.ec2_backend.modify_network_interface_attribute(
        eni_id,
        group_ids,
        self._get_param("SourceDestCheck.Value"),
        self._get_param("Description.Value"),
    )
    return EmptyResult()


_installed = False


def install(limits: Limits, mode: str = "random", seed: int | None = None) -> None:
    """Apply every patch (idempotent) and set the limit table."""
    global _limits, _mode, _installed
    _limits = limits
    _mode = mode
    if seed is not None:
        _rng.seed(seed)
    if _installed:
        return
    _installed = True

    NetworkInterface.__init__ = _eni_init  # type: ignore[method-assign]
    NetworkInterface.group_set = property(_eni_group_set)  # type: ignore[assignment]
    NetworkInterface.get_filter_value = _eni_get_filter_value  # type: ignore[method-assign]
    ec2_utils.is_filter_matching = _is_filter_matching

    NetworkInterfaceBackend.create_network_interface = _create_network_interface  # type: ignore[method-assign]
    NetworkInterfaceBackend.delete_network_interface = _delete_network_interface  # type: ignore[method-assign]
    NetworkInterfaceBackend.attach_network_interface = _attach_network_interface  # type: ignore[method-assign]
    NetworkInterfaceBackend.detach_network_interface = _detach_network_interface  # type: ignore[method-assign]
    NetworkInterfaceBackend.assign_private_ip_addresses = _assign_private_ip_addresses  # type: ignore[method-assign]
    NetworkInterfaceBackend.unassign_private_ip_addresses = _unassign_private_ip_addresses  # type: ignore[method-assign]

    Subnet.available_ip_address_count = property(_subnet_available_ip_address_count)  # type: ignore[assignment]
    Subnet.get_available_subnet_ip = _subnet_get_available_subnet_ip  # type: ignore[method-assign]
    Subnet.request_ip = _subnet_request_ip  # type: ignore[method-assign]

    SubnetBackend.delete_subnet = _delete_subnet  # type: ignore[method-assign]
    SecurityGroupBackend._delete_security_group = _delete_security_group  # type: ignore[method-assign]

    Instance.prep_nics = _prep_nics  # type: ignore[method-assign]
    Instance.terminate = _terminate  # type: ignore[method-assign]
    for attr, eni_attr in (
        ("private_ip", "private_ip_address"),
        ("private_ip_address", "private_ip_address"),
        ("public_ip", "public_ip"),
        ("public_ip_address", "public_ip"),
    ):
        setattr(Instance, attr, _primary_attr(eni_attr))
    Instance.private_dns_name = property(_private_dns_name)  # type: ignore[assignment]

    SecurityGroup.__init__ = _sg_init  # type: ignore[method-assign]

    R = ElasticNetworkInterfaces
    R.create_network_interface = _resp_create_network_interface  # type: ignore[method-assign]
    R.assign_private_ip_addresses = _resp_assign_private_ip_addresses  # type: ignore[method-assign]
    R.unassign_private_ip_addresses = _resp_unassign_private_ip_addresses  # type: ignore[method-assign]
    R.modify_network_interface_attribute = _resp_modify_network_interface_attribute  # type: ignore[method-assign]
