"""Per-instance-type ENI and address limits, read from the project's CSV.

The CSV (``data/instance-limits.csv`` at the repository root) has, per
instance type, ``eni_limit`` (how many ENIs an instance may have attached) and
``ipv4_per_eni`` (how many IPv4 addresses an ENI may hold, the primary
included; with prefix delegation each /28 prefix takes one of those slots).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_LIMITS_PATH = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "instance-limits.csv")
)


@dataclass(frozen=True)
class TypeLimits:
    eni_limit: int
    ipv4_per_eni: int


class Limits:
    def __init__(self, table: dict[str, TypeLimits] | None = None):
        self.table: dict[str, TypeLimits] = dict(table or {})

    @classmethod
    def load(cls, path: str) -> "Limits":
        table: dict[str, TypeLimits] = {}
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    table[row["instance_type"].strip()] = TypeLimits(
                        int(row["eni_limit"]), int(row["ipv4_per_eni"])
                    )
                except (KeyError, ValueError):
                    continue
        log.info("loaded limits for %d instance types from %s", len(table), path)
        return cls(table)

    def for_type(self, instance_type: str) -> TypeLimits | None:
        """Limits of an instance type; falls back to moto's instance-type data."""
        found = self.table.get(instance_type)
        if found is not None:
            return found
        try:
            from moto.ec2.models.instance_types import INSTANCE_TYPES

            info = INSTANCE_TYPES.get(instance_type, {}).get("NetworkInfo", {})
            enis = int(info["MaximumNetworkInterfaces"])
            ips = int(info["Ipv4AddressesPerInterface"])
            return TypeLimits(enis, ips)
        except Exception:  # unknown type: no limit enforced
            return None

    @property
    def max_ipv4_per_eni(self) -> int:
        """Largest per-ENI address count of any type (cap for unattached ENIs)."""
        return max((t.ipv4_per_eni for t in self.table.values()), default=50)
