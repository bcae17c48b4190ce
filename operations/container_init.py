"""The container's first process: start TorchServe and the gateway, watch both, and stop them in order.

    python -m operations.container_init [--run-dir /srv/run] [--model-store /srv/model_store]

`make serve` starts both and returns; a container needs a process that stays, forwards the orchestrator's SIGTERM
and ends when a part dies (so the container is restarted instead of half-serving). On SIGTERM or SIGINT the
gateway stops first (it finishes the requests in flight), then TorchServe.
As PID 1 it also reaps the processes left to it (TorchServe's launcher leaves the Java server behind).
Settings come from the environment as for `make serve` (PROXY_*, TORCHSERVE_*_PORT).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from auth_plugin.settings import ROOT, ProxySettings
from operations.gateway_process import Proxy
from operations.processes import ServingError
from operations.torchserve_process import TorchServe, profile_proxy_env

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self, server: TorchServe, proxy: Proxy) -> None:
        self.server, self.proxy = server, proxy
        self.stopping = False

    def _stop_requested(self, number: int, _frame: FrameType | None) -> None:
        print(f"container_init: {signal.Signals(number).name}: stopping the gateway, then TorchServe", flush=True)
        self.stopping = True

    def run(self) -> int:
        for number in STOP_SIGNALS:
            signal.signal(number, self._stop_requested)
        code = 0
        try:
            self.server.start()
            self.server.wait_ready()
            self.proxy.start()
            self.proxy.wait_ready(path="/healthz")
            print(f"container_init: serving on {self.proxy.url}", flush=True)
            while not self.stopping:
                _reap()
                dead = [name for name, part in (("TorchServe", self.server), ("the gateway", self.proxy))
                        if part.pid() is None]
                if dead:
                    print(f"container_init: {' and '.join(dead)} exited: stopping", file=sys.stderr, flush=True)
                    code = 1
                    break
                time.sleep(0.5)
        except ServingError as exc:
            print(f"container_init: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            self.proxy.stop(timeout=60)  # the gateway lets requests in flight finish before it exits
            self.server.stop()
            _reap()
        return code


def _reap() -> None:
    """Collect exited children (as PID 1, orphans are ours too)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--model-store", type=Path, default=ROOT / "model_store")
    args = parser.parse_args(argv)
    try:
        server = TorchServe.from_env(args.run_dir.resolve() / "torchserve", args.model_store.resolve(), os.environ)
    except ServingError as exc:
        print(f"container_init: {exc}", file=sys.stderr)
        return 1
    proxy = Proxy(home=args.run_dir.resolve() / "proxy", url=ProxySettings.from_env(os.environ).url(),
                  torchserve=server, extra_env=profile_proxy_env(os.environ))
    return Supervisor(server, proxy).run()


if __name__ == "__main__":
    sys.exit(main())
