"""Helpers of scripts/bench: emulator call counts, the concurrent burst, process start times and
the final table. Standard library only (runs with the system python3)."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request

# The testbed's own EC2 calls while seeding (crates/testbed/src/seed.rs); everything else that
# mutates comes from ipamd.
SEEDER_ACTIONS = {"CreateVpc", "AssociateVpcCidrBlock", "CreateSubnet", "CreateSecurityGroup",
                  "AuthorizeSecurityGroupIngress", "RunInstances"}


def read_only(action):
    return action.startswith(("Describe", "Get", "List"))


def calls(endpoint):
    with urllib.request.urlopen(f"{endpoint}/_testbed/calls", timeout=10) as r:
        return {a: c["ok"] + c["error"] for a, c in json.load(r).items()}


def ipamd_calls(endpoint):
    """Calls signed by the nodes' ipamd (access keys `testbed-<node>`), the seeder's left out."""
    with urllib.request.urlopen(f"{endpoint}/_testbed/calls?by=caller", timeout=10) as r:
        by_caller = json.load(r)
    out = {}
    for caller, actions in by_caller.items():
        if caller.startswith("testbed-"):
            for a, c in actions.items():
                out[a] = out.get(a, 0) + c["ok"] + c["error"]
    return out


def cmd_calls(endpoint, which):
    """Prints `total breakdown` of the emulator's counts: all calls, ipamd's, or ipamd's
    mutating ones."""
    counts = calls(endpoint)
    if which == "ipamd-mutating":
        counts = {a: n for a, n in counts.items() if not read_only(a) and a not in SEEDER_ACTIONS}
    elif which == "ipamd-all":
        counts = ipamd_calls(endpoint)
    elif which != "all":
        sys.exit(f"calls: {which!r} is not all, ipamd-all or ipamd-mutating")
    print(sum(counts.values()), ",".join(f"{a}={n}" for a, n in sorted(counts.items())) or "none")


def cmd_reset_calls(endpoint):
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/_testbed/calls", method="DELETE"),
                           timeout=10).read()


def cmd_settle(endpoint, quiet, limit):
    """Waits until ipamd's mutating calls stay unchanged for `quiet` seconds (at most `limit`)."""
    def mutating():
        return sum(n for a, n in calls(endpoint).items()
                   if not read_only(a) and a not in SEEDER_ACTIONS)
    start, last, since = time.monotonic(), mutating(), time.monotonic()
    while time.monotonic() - since < float(quiet):
        if time.monotonic() - start > float(limit):
            sys.exit(f"settle: EC2 calls still changing after {limit} s")
        time.sleep(0.2)
        now = mutating()
        if now != last:
            last, since = now, time.monotonic()


def started_at(pid):
    """Wall clock (epoch seconds) at which process `pid` started, to a clock tick (10 ms).

    /proc/<pid>/stat gives the start in ticks since boot; /proc/stat's `btime` is whole seconds,
    so `btime + start` is off by up to a second (what made an earlier first-address figure read
    ~1 s). The boot-time clock, read now next to the wall clock, gives the offset exactly."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    since_boot = ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


def cmd_started(pid):
    """Wall clock (epoch seconds) at which process `pid` started."""
    print(f"{started_at(int(pid)):.3f}")


def cmd_rss(pid):
    """VmRSS of `pid` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        print(next(line.split()[1] for line in f if line.startswith("VmRSS:")))


def run_plugin(plugin, conf, node_ns, command, pod, cni_path):
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": pod,
           "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0", "CNI_PATH": cni_path,
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=burst;K8S_POD_NAME={pod}"}
    p = subprocess.run(["nsenter", f"--net=/run/netns/{node_ns}", plugin], input=conf, env=env,
                       capture_output=True)
    return p.returncode, p.stdout.decode(errors="replace").strip()


def cmd_burst(plugin, conf_path, node_ns, pod_prefix, count):
    """ADD (then DEL) of `count` pods at once, one process each, as a runtime would fire them:
    prints `ok=N failed=M wall_ms=W del_failed=D` and the first failure."""
    count = int(count)
    conf = open(conf_path, "rb").read()
    cni_path = os.path.dirname(plugin)
    pods = [f"{pod_prefix}{i}" for i in range(count)]
    for pod in pods:
        subprocess.run(["ip", "netns", "add", pod], check=True)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
            start = time.monotonic()
            added = list(pool.map(lambda p: run_plugin(plugin, conf, node_ns, "ADD", p, cni_path),
                                  pods))
            wall = time.monotonic() - start
            deleted = list(pool.map(lambda p: run_plugin(plugin, conf, node_ns, "DEL", p, cni_path),
                                    pods))
    finally:
        for pod in pods:
            subprocess.run(["ip", "netns", "del", pod], check=False)
    failures = [out for rc, out in added if rc != 0]
    del_failed = sum(1 for rc, _ in deleted if rc != 0)
    print(f"ok={count - len(failures)} failed={len(failures)} wall_ms={wall * 1000:.0f} "
          f"del_failed={del_failed}")
    if failures:
        print(f"first failure: {failures[0]}", file=sys.stderr)


def cmd_table(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
    head = ("what", "target", "measured", "met?")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    for r in [head, ["-" * w for w in widths]] + rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


COMMANDS = {"calls": cmd_calls, "reset-calls": cmd_reset_calls, "settle": cmd_settle,
            "started": cmd_started, "rss": cmd_rss, "burst": cmd_burst, "table": cmd_table}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: bench_tools.py {'|'.join(COMMANDS)} ARGS…")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
