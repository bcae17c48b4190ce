"""How much the token proxy adds: the same photo to TorchServe directly and through the proxy, interleaved.

Needs `make serve` running. Prints a Markdown table (the README keeps one):

    .venv/bin/python bench/proxy_overhead.py --requests 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from bench_instruments import make_images

from auth_plugin.control.models_cli import default_url
from food_rotation import MODEL_NAME
from operations.serving import RUN_DIR
from operations.torchserve_process import ROOT, TorchServe


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    server = TorchServe(home=RUN_DIR / "torchserve", model_store=ROOT / "model_store")
    token = (RUN_DIR / "proxy" / "demo_token").read_text().strip()
    photo = make_images(("1 MP",))["1 MP"][0].read_bytes()
    targets = {
        "TorchServe direct": (f"{server.inference_url}/predictions/{MODEL_NAME}",
                              lambda: server.keys.headers("inference")),
        "through the proxy": (f"{default_url()}/predictions/{MODEL_NAME}",
                              lambda: {"Authorization": f"Bearer {token}"}),
    }
    sessions = {name: requests.Session() for name in targets}
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(20):  # warm both paths
        for name, (url, headers) in targets.items():
            sessions[name].post(url, data=photo, headers={**headers(), "Content-Type": "image/jpeg"}, timeout=30)
    for _ in range(args.requests):  # interleaved, so drift on the machine hits both alike
        for name, (url, headers) in targets.items():
            started = time.perf_counter()
            answer = sessions[name].post(url, data=photo, headers={**headers(), "Content-Type": "image/jpeg"},
                                         timeout=30)
            latencies[name].append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    throughput = {}
    for name, (url, headers) in targets.items():
        def one(_: int, url: str = url, headers=headers) -> None:
            requests.post(url, data=photo, headers={**headers(), "Content-Type": "image/jpeg"},
                          timeout=30).raise_for_status()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.requests)))
        throughput[name] = args.requests / (time.perf_counter() - started)
    print(f"| path (1 MP JPEG, {args.requests} requests) | p50 ms | p95 ms | mean ms | req/s at concurrency "
          f"{args.concurrency} |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in latencies.items():
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} | "
              f"{statistics.fmean(values):.1f} | {throughput[name]:.1f} |")
    added = statistics.median(latencies["through the proxy"]) - statistics.median(latencies["TorchServe direct"])
    print(f"\nadded p50 latency: {added:.1f} ms; throughput ratio proxy/direct: "
          f"{throughput['through the proxy'] / throughput['TorchServe direct']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
