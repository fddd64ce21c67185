"""python -m vpcemu --listen 127.0.0.1:PORT [--sock-dir DIR] [--limits CSV]"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:5000")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    from .limits import DEFAULT_LIMITS_PATH

    parser = argparse.ArgumentParser(prog="vpcemu", description="EC2 + instance metadata emulator (moto based)")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 5000), help="HOST:PORT of the EC2 and control endpoint (port 0 = any)")
    parser.add_argument("--sock-dir", help="serve ec2.sock and imds-<instance-id>.sock in this directory")
    parser.add_argument("--limits", default=DEFAULT_LIMITS_PATH, help="instance limits CSV (default: %(default)s)")
    parser.add_argument("--throttle", action="store_true", help="enable EC2 throttling from the start")
    parser.add_argument("--ip-allocation", choices=("random", "lowest"), default="random", help="how free addresses and prefixes are picked")
    parser.add_argument("--seed", type=int, help="seed for random address allocation")
    parser.add_argument("--warm-region", action="append", default=None, help="create the EC2 backend of this region at start (default: us-west-2)")
    parser.add_argument("--log-level", default=os.environ.get("VPCEMU_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s vpcemu %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log = logging.getLogger("vpcemu")

    # moto settings must be in place before moto is imported.
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.moto_server.werkzeug_app import create_backend_app

    from . import patches
    from .app import EmulatorApp
    from .limits import Limits
    from .servers import MetadataListeners, stop, tcp_server, unix_server
    from .state import Emulator

    started = time.monotonic()
    try:
        limits = Limits.load(args.limits)
    except OSError as exc:
        log.error("cannot read instance limits %s: %s", args.limits, exc)
        return 2
    patches.install(limits, mode=args.ip_allocation, seed=args.seed)

    moto_app = create_backend_app("ec2")
    for region in args.warm_region or ["us-west-2"]:
        ec2_backends[DEFAULT_ACCOUNT_ID][region]

    emu = Emulator()
    if args.throttle:
        emu.throttle.configure(True)
    if args.sock_dir:
        os.makedirs(args.sock_dir, exist_ok=True)
    listeners = MetadataListeners(args.sock_dir, version=emu.version)
    app = EmulatorApp(moto_app, emu, listeners)

    host, port = args.listen
    try:
        tcp = tcp_server(host, port, app, "ec2-tcp")
    except SystemExit:
        log.error("cannot listen on %s:%d", host, port)
        return 2
    servers = [(tcp, None)]
    log.info("EC2 endpoint on http://%s:%d (control under /_testbed/)", host, tcp.port)
    if args.sock_dir:
        path = os.path.join(args.sock_dir, "ec2.sock")
        servers.append((unix_server(path, app, "ec2-unix"), path))
        log.info("EC2 endpoint on unix socket %s", path)
    log.info("ready in %.2f s", time.monotonic() - started)

    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(3600):
        pass

    listeners.close_all()
    for server, path in servers:
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
