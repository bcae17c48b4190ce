"""What any proxy in front of TorchServe costs on this machine: the token gateway against proxies that do none of
its work, side by side in one run.

One TorchServe with the shipped model and settings; in front of it, each a process of its own: the token gateway,
a minimal aiohttp proxy (its libraries without its features) and a bare TCP relay (bench/floor_proxies.py); and
TorchServe called directly. At each size and concurrency the paths take turns in interleaved rounds of `ab -k`.
Prints a Markdown table: each path's images/s and p50, its share of direct's throughput, the p50 it adds, and the
proxy process's CPU per request (the workers' CPU it takes on these shared cores).

    .venv/bin/python bench/proxy_floor.py [--seconds 8] [--rounds 3] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from bench_instruments import Measure, against_direct, credentials_of, interleaved_cells, make_images, scratch
from run_bench import WEIGHTS, build_archives

from food_rotation import MODEL_NAME
from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import ROOT, TorchServe

CONFIG = ROOT / "handler" / "model-config.yaml"
FLOOR_PROXIES = Path(__file__).with_name("floor_proxies.py")
DIRECT = "TorchServe direct"
PROXIES = {"bare TCP relay": "relay", "minimal aiohttp proxy": "aiohttp"}
GATEWAY = "token gateway"
Cell = tuple[str, int]


def start_floor_proxy(kind: str, upstream_port: int) -> tuple[subprocess.Popen, int]:
    """One of bench/floor_proxies.py's proxies on a free port, once it accepts connections."""
    port = free_ports(1)[0]
    process = subprocess.Popen([sys.executable, str(FLOOR_PROXIES), kind, str(port), str(upstream_port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"floor proxy {kind} did not listen on {port}")


def measure(sizes: tuple[str, ...], concurrencies: list[int], seconds: float, rounds: int
            ) -> tuple[dict[Cell, dict[str, Measure]], dict[Cell, dict[str, float]]]:
    workers = yaml.safe_load(CONFIG.read_text())["minWorkers"]
    images = make_images(sizes)
    floor: list[subprocess.Popen] = []
    with scratch("bench-floor-") as base:
        build_archives(base / "model_store", CONFIG, WEIGHTS)
        server = TorchServe.on_free_ports(base / "torchserve", base / "model_store", load_models=f"{MODEL_NAME}.mar")
        gateway = Proxy(home=base / "gateway", url=f"http://127.0.0.1:{free_ports(1)[0]}", torchserve=server)
        try:
            server.start()
            server.wait_ready(model=MODEL_NAME, min_workers=workers, timeout=300)
            gateway.start()
            gateway.wait_ready()
            token = gateway.saved_token("bench_token", "bench", ["predict"])
            upstream_port = urlsplit(server.inference_url).port
            targets = {DIRECT: (f"{server.inference_url}/predictions/{MODEL_NAME}", "inference")}
            pids = {GATEWAY: gateway.pid()}
            for name, kind in PROXIES.items():
                process, port = start_floor_proxy(kind, upstream_port)
                floor.append(process)
                targets[name] = (f"http://127.0.0.1:{port}/predictions/{MODEL_NAME}", "inference")
                pids[name] = process.pid
            targets[GATEWAY] = (f"{gateway.url}/predictions/{MODEL_NAME}", None)
            results, cpu_ms = interleaved_cells(targets, credentials_of(server, token), images, concurrencies,
                                                seconds, rounds, pids)
        finally:
            for process in floor:
                process.terminate()
                process.wait(timeout=10)
            gateway.stop()
            server.stop()
    return results, cpu_ms


def table(results: dict[Cell, dict[str, Measure]], cpu_ms: dict[Cell, dict[str, float]]) -> list[str]:
    return against_direct(results, DIRECT, cpu_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="per path, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sizes", nargs="+", default=["12 MP", "1 MP"])
    args = parser.parse_args(argv)
    print("\n".join(table(*measure(tuple(args.sizes), args.concurrency, args.seconds, args.rounds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
