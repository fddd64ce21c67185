"""The fleet's floor: how soon N nodes can be network-ready at the pace EC2's token buckets
allow, from each action's call count. Used by `make fleet` (scripts/fleet) for the measured run
and, from the per-node call profile that run measured, for fleets this machine cannot hold.

EC2 gives an account one bucket per action: `burst` tokens to start with, refilled at `rate` per
second; a call takes one token, a call that finds none is throttled (and takes none). C calls of
one action therefore need at least max(0, C - burst) / rate seconds, whatever the callers do; the
fleet's floor is the largest of these over its actions (the binding bucket). The bucket sizes are
the emulator's (emulator/vpcemu/state.py), which are EC2's published ones.

    python3 scripts/fleet_model.py --profile calls.json --nodes 100 1000 5000 [--ratio 1.2]

`calls.json` holds calls per node by action (`{"AttachNetworkInterface": 1, ...}`); `--ratio`,
the measured time over the floor at the size that was run, gives an expected time next to each
floor. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "emulator"))
from vpcemu.state import MUTATING, NON_MUTATING, SPECIAL_BUCKETS, is_mutating  # noqa: E402


def bucket(action: str) -> tuple[float, float]:
    """(burst, refill per second) of the action's bucket."""
    if action in SPECIAL_BUCKETS:
        return SPECIAL_BUCKETS[action]
    return MUTATING if is_mutating(action) else NON_MUTATING


def action_floor(action: str, calls: float) -> float:
    """Seconds one action's bucket needs to let `calls` calls through, starting full."""
    burst, rate = bucket(action)
    return max(0.0, calls - burst) / rate


@dataclass
class Floor:
    seconds: float
    binding: str | None
    by_action: dict[str, float]


def floor(calls: dict[str, float]) -> Floor:
    """The floor of a fleet that makes `calls` (total calls by action)."""
    by_action = {a: action_floor(a, n) for a, n in sorted(calls.items()) if n > 0}
    binding = max(by_action, key=lambda a: (by_action[a], a), default=None)
    if binding is not None and by_action[binding] == 0.0:
        binding = None
    return Floor(by_action[binding] if binding else 0.0, binding, by_action)


def fleet_calls(per_node: dict[str, float], nodes: int) -> dict[str, float]:
    return {a: n * nodes for a, n in per_node.items()}


def describe_share_at_rest(calls_per_node_hour: float, nodes: int, action: str) -> float:
    """The fraction of `action`'s refill a fleet at rest takes."""
    _, rate = bucket(action)
    return calls_per_node_hour * nodes / 3600.0 / rate


@dataclass
class Row:
    nodes: int
    total_calls: float
    floor: Floor
    expected: float | None


def model(per_node: dict[str, float], sizes: list[int], ratio: float | None = None) -> list[Row]:
    rows = []
    for n in sizes:
        calls = fleet_calls(per_node, n)
        f = floor(calls)
        rows.append(Row(n, sum(calls.values()), f, f.seconds * ratio if ratio else None))
    return rows


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min ({s:.0f} s)"


def render(per_node: dict[str, float], rows: list[Row], ratio: float | None) -> str:
    actions = sorted(per_node)
    head = ["nodes", "calls"] + [f"{a} floor" for a in actions] + ["floor", "binding bucket"]
    if ratio:
        head.append(f"expected (x{ratio:.2f})")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        cells = [str(r.nodes), f"{r.total_calls:.0f}"]
        cells += [fmt_seconds(r.floor.by_action.get(a, 0.0)) for a in actions]
        cells += [fmt_seconds(r.floor.seconds), r.floor.binding or "none (within the bursts)"]
        if ratio:
            cells.append(fmt_seconds(r.expected or 0.0))
        lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


def render_rest(per_node_hour: dict[str, float], sizes: list[int]) -> str:
    """At rest: each action's calls per second for the fleet, as a share of its bucket's refill."""
    head = ["nodes"] + [f"{a} ({per_node_hour[a]:g}/node/h)" for a in sorted(per_node_hour)]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for n in sizes:
        cells = [str(n)]
        for a in sorted(per_node_hour):
            per_s = per_node_hour[a] * n / 3600.0
            cells.append(f"{per_s:.2f}/s = {describe_share_at_rest(per_node_hour[a], n, a) * 100:.1f} % of the refill")
        lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, help="JSON: calls per node by action")
    p.add_argument("--nodes", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--ratio", type=float, help="measured time / floor at the size that was run")
    p.add_argument("--rest", metavar="JSON",
                   help="calls per node per hour at rest by action: prints each bucket's share of its refill")
    args = p.parse_args(argv)
    with open(args.profile) as f:
        per_node = {a: float(n) for a, n in json.load(f).items()}
    if any(n < 0 or math.isnan(n) for n in per_node.values()):
        p.error("calls per node must be non-negative numbers")
    if any(n <= 0 for n in args.nodes):
        p.error("--nodes takes positive numbers")
    print("buckets (burst, refill/s): " + ", ".join(f"{a} {bucket(a)[0]:.0f}/{bucket(a)[1]:g}" for a in sorted(per_node)))
    print(render(per_node, model(per_node, args.nodes, args.ratio), args.ratio))
    if args.rest:
        with open(args.rest) as f:
            rest = {a: float(n) for a, n in json.load(f).items()}
        if any(n < 0 or math.isnan(n) for n in rest.values()):
            p.error("calls per node per hour must be non-negative numbers")
        print()
        print(render_rest(rest, args.nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
