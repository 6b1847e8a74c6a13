"""Start moto (the local AWS) for stacksetd's end-to-end tests, with a few patches toward AWS's behaviour.

Usage: python tests/moto/launcher.py [--port N] [--no-stdin-watch]

Listens on 127.0.0.1 only, on port N (default 0: a free port the kernel picks), and prints exactly one line
`READY <port>` on stdout once the server answers HTTP. It runs until its standard input closes (the test harness
holds the other end, so the server dies with the test process even if that process is killed) or until
SIGTERM/SIGINT. `--no-stdin-watch` ignores standard input, so a detached server (scripts/local-aws.sh, started
with stdin on /dev/null) runs until SIGTERM/SIGINT alone.

The patches live in `patches.py` beside this file; each is documented in tests/moto/README.md. They make moto
more like AWS, never stacksetd more like moto.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

# The only address the server may listen on: tests never expose it beyond this machine.
LISTEN_ADDRESS = "127.0.0.1"
# How long the server may take to answer its first request before the launcher gives up.
READY_TIMEOUT_SECONDS = 60.0
READY_POLL_SECONDS = 0.05

# moto's own supported range: the patches reach into 5.2.x internals.
SUPPORTED_MOTO_PREFIX = "5.2."
MINIMUM_PATCH_LEVEL = 5


def check_moto_version() -> None:
    """Refuse a moto the patches were not written for (5.2.1 lacks idempotent CreateStackInstances)."""
    import moto

    version = moto.__version__
    parts = version.split(".")
    ok = version.startswith(SUPPORTED_MOTO_PREFIX) and len(parts) >= 3 and parts[2].isdigit()
    if not ok or int(parts[2]) < MINIMUM_PATCH_LEVEL:
        sys.exit(
            f"moto {version} is not supported (need 5.2.{MINIMUM_PATCH_LEVEL} or a later 5.2.x): "
            "run scripts/setup-moto.sh"
        )


def wait_until_answering(port: int) -> None:
    """Poll moto's own API until the server answers, so READY means requests will be served."""
    url = f"http://{LISTEN_ADDRESS}:{port}/moto-api/"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is serving
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"moto did not answer on {url} within {READY_TIMEOUT_SECONDS}s")
            time.sleep(READY_POLL_SECONDS)


def check_port_free(port: int) -> None:
    """Refuse a taken port up front: moto's ThreadedMotoServer.start() would wait forever for a server whose
    bind failed in its thread. Binds as werkzeug does (SO_REUSEADDR), so a port left in TIME_WAIT counts as free."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((LISTEN_ADDRESS, port))
    except OSError as e:
        sys.exit(f"cannot listen on {LISTEN_ADDRESS}:{port}: {e.strerror or e}")
    finally:
        probe.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start moto, patched toward AWS, on 127.0.0.1.")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="the port to listen on (default 0: a free port the kernel picks)",
    )
    parser.add_argument(
        "--no-stdin-watch",
        action="store_true",
        help="do not exit when standard input closes; run until SIGTERM/SIGINT (a detached server)",
    )
    args = parser.parse_args()
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port (0-65535)")
    return args


def main() -> None:
    args = parse_args()
    check_moto_version()
    # The patches module sits next to this file.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import patches

    patches.apply_all()

    # One line per request would drown the test output; errors still reach stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    if args.port != 0:
        check_port_free(args.port)

    server = ThreadedMotoServer(ip_address=LISTEN_ADDRESS, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    if host != LISTEN_ADDRESS:
        sys.exit(f"moto bound {host}, expected {LISTEN_ADDRESS}")
    wait_until_answering(port)
    print(f"READY {port}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def watch_stdin() -> None:
        # EOF on stdin means the test process is gone.
        sys.stdin.read()
        stop.set()

    if not args.no_stdin_watch:
        threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
