"""The report of `make fleet` (scripts/fleet), read from a fleet testbed that `vpc-testbed up`
has just brought up: per node, when its ipamd started (/proc/<pid>/stat) and when it became
network-ready (the mtime of the CNI config ipamd writes at that moment); the emulator's EC2 calls
by action and by node (each node signs with its own access key); the floor the buckets allow
(scripts/fleet_model.py); a pod ADD on every node; what a node costs in memory.

    python3 scripts/fleet_report.py PREFIX VPC_TESTBED_BINARY MEM_AVAILABLE_KIB_BEFORE_UP

Standard library only.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import statistics
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_model  # noqa: E402
from bench_tools import started_at  # noqa: E402

THROTTLED = {"RequestLimitExceeded", "Throttling"}
TARGETS = {"ratio": 1.3, "calls per node": 5}


def proc_kib(pid: int, path: str, key: str) -> int:
    with open(f"/proc/{pid}/{path}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = [head, tuple("-" * w for w in widths)] + rows
    return "\n".join(" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)


def pod_add(testbed: str, prefix: str, node: str) -> tuple[str, bool, str]:
    p = subprocess.run(
        [testbed, "--prefix", prefix, "pod", "add", node, "probe"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (p.stderr or p.stdout).strip().splitlines()
    return node, p.returncode == 0, lines[-1] if lines else ""


def throttling_errors_in_log(path: str) -> int:
    """Lines of ipamd's log at error level that name throttling: throttling that got past the
    SDK's retries and the shared back-off to the pool manager."""
    n = 0
    try:
        with open(path) as f:
            for line in f:
                if '"ERROR"' in line and any(t in line for t in THROTTLED):
                    n += 1
    except FileNotFoundError:
        pass
    return n


def identity_at(path: str) -> float | None:
    """Wall clock of the node's "instance identity" log line: where its instance-metadata phase
    ends and its EC2 calls begin."""
    try:
        with open(path) as f:
            for line in f:
                if '"instance identity"' in line:
                    stamp = json.loads(line)["timestamp"]
                    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return None


def main(prefix: str, testbed: str, mem_before_kib: str) -> int:
    state = f"/run/vpc-testbed/{prefix}"
    status = json.load(open(f"{state}/status.json"))
    endpoint = status["ec2_endpoint"]
    # The calls first, before anything else can add to them.
    by_caller = get_json(f"{endpoint}/_testbed/calls?by=caller")
    nodes = status["nodes"]
    n = len(nodes)
    starts, readies, per_node_ok, per_node_all, per_node_throttled = {}, {}, {}, {}, {}
    totals: dict[str, dict[str, int]] = {}
    for node in nodes:
        name = node["name"]
        starts[name] = started_at(node["ipamd_pid"])
        conflist = f"{state}/nodes/{name}/net.d/10-aws.conflist"
        readies[name] = os.stat(conflist).st_mtime if os.path.exists(conflist) else None
        calls = by_caller.get(f"testbed-{name}", {})
        per_node_ok[name] = sum(c["ok"] for c in calls.values())
        per_node_all[name] = sum(c["ok"] + c["error"] for c in calls.values())
        per_node_throttled[name] = sum(
            k for c in calls.values() for code, k in c["error_codes"].items() if code in THROTTLED
        )
        for action, c in calls.items():
            t = totals.setdefault(action, {"ok": 0, "error": 0, "throttled": 0})
            t["ok"] += c["ok"]
            t["error"] += c["error"]
            t["throttled"] += sum(k for code, k in c["error_codes"].items() if code in THROTTLED)

    ready = [r for r in readies.values() if r is not None]
    launched = min(starts.values())
    spawn_spread = max(starts.values()) - launched
    all_ready = len(ready) == n
    wall = (max(ready) - launched) if ready else float("nan")
    per_node_times = sorted(readies[k] - starts[k] for k in readies if readies[k] is not None)
    ok_calls = {a: t["ok"] for a, t in totals.items()}
    floor = fleet_model.floor(ok_calls)
    ratio = wall / floor.seconds if floor.seconds > 0 else float("nan")

    # Memory and CPU of every ipamd, now that the fleet is warm.
    pids = [node["ipamd_pid"] for node in nodes]
    rss = [proc_kib(p, "status", "VmRSS") for p in pids]
    anon = [proc_kib(p, "status", "RssAnon") for p in pids]
    pss = [proc_kib(p, "smaps_rollup", "Pss") for p in pids]
    cpu = [cpu_seconds(p) for p in pids]
    with open("/proc/meminfo") as f:
        mem_after = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    per_node_system = (int(mem_before_kib) - mem_after) / n

    print()
    print(f"-- {n} nodes: ipamd started over {spawn_spread * 1000:.0f} ms; "
          f"network-ready: {len(ready)}/{n} --")
    if per_node_times:
        print(f"   one node, ipamd start to network-ready: median {statistics.median(per_node_times):.2f} s, "
              f"max {per_node_times[-1]:.2f} s")
    # Where the time goes: instance metadata (the testbed's, one Python process for the whole
    # fleet; on EC2 each host answers its own) until each node knows its identity, then EC2.
    identities = sorted(t - launched for t in
                        (identity_at(f"{state}/nodes/{name}/ipamd.log") for name in starts) if t is not None)
    if identities and ready:
        last_ready = max(ready) - launched
        print(f"   identity from instance metadata, after the first ipamd start: median {statistics.median(identities):.2f} s, "
              f"last {identities[-1]:.2f} s; EC2 phase (first identity to the last network-ready) "
              f"{last_ready - identities[0]:.1f} s against the floor's {floor.seconds:.1f} s")
    print()
    print("EC2 calls during the warm-up, by action (every node's, the testbed's own seeding left out):")
    rows = []
    for action in sorted(totals):
        t = totals[action]
        burst, rate = fleet_model.bucket(action)
        rows.append((action, str(t["ok"]), str(t["throttled"]), str(t["error"] - t["throttled"]),
                     f"{t['ok'] / n:.2f}", f"{burst:.0f} + {rate:g}/s",
                     f"{floor.by_action.get(action, 0.0):.1f} s"))
    rows.append(("total", str(sum(t["ok"] for t in totals.values())),
                 str(sum(t["throttled"] for t in totals.values())),
                 str(sum(t["error"] - t["throttled"] for t in totals.values())),
                 f"{sum(t['ok'] for t in totals.values()) / n:.2f}", "", ""))
    print(table(rows, ("action", "calls", "throttled", "other errors", "per node", "bucket", "floor")))
    print()
    worst = max(per_node_ok, key=lambda k: per_node_ok[k])
    most_attempts = max(per_node_all.values())
    print(f"per node: calls median {statistics.median(per_node_ok.values()):.0f}, max {per_node_ok[worst]} ({worst}); "
          f"attempts (throttled ones included) median {statistics.median(per_node_all.values()):.0f}, max {most_attempts}")

    # The profile for the model, and the model itself.
    profile = {a: t["ok"] / n for a, t in totals.items()}
    with open(f"{state}/fleet-profile.json", "w") as f:
        json.dump(profile, f, indent=1, sort_keys=True)
    print()
    print(f"model from this run's per-node calls ({state}/fleet-profile.json), expected = floor x {ratio:.2f}:")
    print(fleet_model.render(profile, fleet_model.model(profile, [n, 1000, 5000], ratio if ratio == ratio else None),
                             ratio if ratio == ratio else None))

    throttle_errors = {name: throttling_errors_in_log(f"{state}/nodes/{name}/ipamd.log") for name in starts}
    pool_errors = sum(1 for v in throttle_errors.values() if v)

    # A pod on every node: the ADD is served from the pool, whatever EC2 is doing meanwhile.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        pods = list(pool.map(lambda name: pod_add(testbed, prefix, name), sorted(starts)))
    pods_ok = sum(1 for _, ok, _ in pods if ok)
    failed = [(name, msg) for name, ok, msg in pods if not ok]

    print()
    print("memory per node (every ipamd, warm):")
    print(f"   ipamd VmRSS median {statistics.median(rss) / 1024:.1f} MiB (RssAnon {statistics.median(anon) / 1024:.1f} MiB), "
          f"PSS median {statistics.median(pss) / 1024:.1f} MiB (code pages shared by all)")
    print(f"   MemAvailable before up minus after, per node (namespaces, relays, emulator state, ipamd): "
          f"{per_node_system / 1024:.1f} MiB; {n} nodes: {(int(mem_before_kib) - mem_after) / 1024 / 1024:.2f} GiB")
    print(f"   ipamd CPU during the warm-up: median {statistics.median(cpu) * 1000:.0f} ms, total {sum(cpu):.1f} s")

    summary = [
        ("nodes network-ready", f"all {n}", f"{len(ready)}/{n}", "yes" if all_ready else "NO"),
        ("time until every node is network-ready", "", f"{wall:.1f} s", ""),
        ("floor from the buckets", "", f"{floor.seconds:.1f} s ({floor.binding or 'no bucket binds'})", ""),
        ("ratio", f"<= {TARGETS['ratio']}", f"{ratio:.2f}", "yes" if ratio <= TARGETS["ratio"] else "NO"),
        ("EC2 calls per node during the warm-up (max)", f"<= {TARGETS['calls per node']}",
         f"{per_node_ok[worst]} (median {statistics.median(per_node_ok.values()):.0f})",
         "yes" if per_node_ok[worst] <= TARGETS["calls per node"] else "NO"),
        ("throttled calls", "", str(sum(per_node_throttled.values())), ""),
        ("nodes whose pool manager saw a throttling error", "0", str(pool_errors), "yes" if pool_errors == 0 else "NO"),
        ("pod ADD on every node", f"{n}/{n}", f"{pods_ok}/{n}", "yes" if pods_ok == n else "NO"),
        ("memory per node (ipamd PSS; system)", "", f"{statistics.median(pss) / 1024:.1f} MiB; {per_node_system / 1024:.1f} MiB", ""),
    ]
    print()
    print("== summary ==")
    print(table(summary, ("what", "target", "measured", "met?")))
    for name, msg in failed[:5]:
        print(f"pod ADD on {name} failed: {msg}")
    return 0 if all_ready and pods_ok == n else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
