"""The proxy streaming prediction bodies to TorchServe against reading them whole first, side by side in one run.

One TorchServe with the shipped model; two gateways in front of it on one token and routing database: the default
(bodies of announced length sent on while they arrive) and one with PROXY_STREAMED_UPLOADS=0 (read whole first,
as before); and TorchServe called directly. At each size and concurrency the three paths take turns in
interleaved rounds of `ab -k`, so a drift of the machine falls on all of them alike. Prints a Markdown table.

    .venv/bin/python bench/streamed_uploads.py [--seconds 8] [--rounds 3] [--concurrency 1 4]
"""

from __future__ import annotations

import argparse
import sys

import yaml
from bench_instruments import Measure, against_direct, credentials_of, interleaved_cells, make_images, scratch
from run_bench import WEIGHTS, build_archives

from food_rotation import MODEL_NAME
from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import ROOT, TorchServe

CONFIG = ROOT / "handler" / "model-config.yaml"


def paths_of(server: TorchServe, streamed: Proxy, buffered: Proxy) -> dict[str, tuple[str, str | None]]:
    """Each path's URL and the credential it takes: a TorchServe key kind, or None for the gateway's token."""
    return {"TorchServe direct": (f"{server.inference_url}/predictions/{MODEL_NAME}", "inference"),
            "proxy, streamed (now)": (f"{streamed.url}/predictions/{MODEL_NAME}", None),
            "proxy, read whole first (before)": (f"{buffered.url}/predictions/{MODEL_NAME}", None)}


def measure(sizes: tuple[str, ...], concurrencies: list[int], seconds: float, rounds: int
            ) -> dict[tuple[str, int], dict[str, Measure]]:
    workers = yaml.safe_load(CONFIG.read_text())["minWorkers"]
    images = make_images(sizes)
    with scratch("bench-streamed-") as base:
        build_archives(base / "model_store", CONFIG, WEIGHTS)
        server = TorchServe.on_free_ports(base / "torchserve", base / "model_store", load_models=f"{MODEL_NAME}.mar")
        streamed_port, buffered_port = free_ports(2)
        streamed = Proxy(home=base / "streamed", url=f"http://127.0.0.1:{streamed_port}", torchserve=server)
        buffered = Proxy(home=base / "buffered", url=f"http://127.0.0.1:{buffered_port}", torchserve=server,
                         extra_env={"PROXY_STREAMED_UPLOADS": "0", "PROXY_CONTROL_PLANE": "false",
                                    "PROXY_TOKEN_DB": str(streamed.token_db)})
        try:
            server.start()
            server.wait_ready(model=MODEL_NAME, min_workers=workers, timeout=300)
            streamed.start()
            streamed.wait_ready()  # the control plane has registered the version before the second gateway reads it
            token = streamed.saved_token("bench_token", "bench", ["predict"])
            buffered.start()
            buffered.wait_ready()
            results, _ = interleaved_cells(paths_of(server, streamed, buffered), credentials_of(server, token),
                                           images, concurrencies, seconds, rounds)
        finally:
            buffered.stop()
            streamed.stop()
            server.stop()
    return results


def table(results: dict[tuple[str, int], dict[str, Measure]]) -> list[str]:
    return against_direct(results, "TorchServe direct")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="per path, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--sizes", nargs="+", default=["12 MP", "1 MP"])
    args = parser.parse_args(argv)
    print("\n".join(table(measure(tuple(args.sizes), args.concurrency, args.seconds, args.rounds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
