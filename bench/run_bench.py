"""make bench: the serving path against its limit and its peers, side by side in one run -> bench/RESULTS.md.

The model is the one `make serve` ships (--weights to measure another). For phone-size 12 MP and 1 MP JPEGs
(generated here, kept in bench/.cache), at concurrency 1, 4 and 16:
  limit      an in-process loop doing exactly the handler's decode + preprocess + forward, same workers,
             threads and batch size (what 2 cores can do with no serving at all)
  direct     TorchServe with our handler, called with TorchServe's key
  proxy      the same through the token proxy
  stock      TorchServe's stock image_classifier (a two-line topk=4 subclass) on the same weights and settings
  noop       a handler that does nothing: TorchServe's own ceiling
HTTP load comes from `ab -k` (C, light on the client side); then `ab -n 1000 -c 16` (no keep-alive) through the
proxy, with the worker RSS before and after. Where the time of one request goes (at c=1 and c=4) is split from
these measurements and TorchServe's own counters (queue and in-server time, from its metrics API).

    .venv/bin/python bench/run_bench.py [--seconds 15] [--config FILE] [--out bench/RESULTS.md]
    .venv/bin/python bench/run_bench.py --quick --out /tmp/r.md    (seconds, one size: make test runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import yaml
from bench_instruments import (
    LimitPool,
    Measure,
    Sample,
    ServerTime,
    ab,
    cpu_seconds,
    credentials_of,
    make_images,
    preprocess_ms,
    scratch,
    server_counters,
    worker_pids,
    worker_rss_mb,
)
from bench_report import QUICK, Cell, Plan, Run, report

from food_rotation import MODEL_NAME
from food_rotation.training.archive import staged_library
from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import ROOT, TorchServe

WEIGHTS = ROOT / "weights" / "food_rotation_lite0.pth"  # the shipped default (Makefile SHIPPED_WEIGHTS)


def stock_model_file(weights: Path, folder: Path) -> Path:
    """The model file the stock handler instantiates with no arguments: the weights' network, built as served."""
    metadata = json.loads(weights.with_suffix(".json").read_text())
    path = folder / "stock_model.py"
    path.write_text("from food_rotation.rotation_model import RotationNet\n\n\nclass StockRotationNet(RotationNet):\n"
                    "    def __init__(self):\n"
                    f"        super().__init__({metadata['arch']!r}, {bool(metadata.get('turn_averaging'))})\n")
    return path


def build_archives(store: Path, config: Path, weights: Path) -> None:
    archiver = str(Path(sys.executable).parent / "torch-model-archiver")
    subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version", "1.0",
                    "--export-path", str(store), "--config", str(config)], check=True, capture_output=True)
    model_file = stock_model_file(weights, store.parent)
    for name, handler, extra in (("stock_rotation", ROOT / "bench" / "handlers" / "stock_rotation.py",
                                  ["--model-file", str(model_file), "--serialized-file", str(weights),
                                   "--extra-files", str(staged_library(store.parent))]),
                                 ("noop", ROOT / "bench" / "handlers" / "noop_handler.py", [])):
        with tempfile.TemporaryDirectory() as archiver_tmp:
            subprocess.run([archiver, "--model-name", name, "--version", "1.0", "--handler", str(handler),
                            "--config-file", str(config), "--export-path", str(store), *extra], check=True,
                           env={**os.environ, "TMPDIR": archiver_tmp})


@dataclass
class CellResult:
    results: dict[str, Measure]
    server: ServerTime
    cpu_ms: dict[str, float]


def measure_cell(plan: Plan, cell: Cell, paths: list[Path], targets: dict[str, tuple[str, str | None]],
                 server: TorchServe, proxy: Proxy, token: str, own_limit: Callable[[float], Sample]) -> CellResult:
    """Every path at one (size, concurrency), in `plan.rounds` interleaved rounds, pooled per path; TorchServe's
    counters over the direct calls, and each process's CPU over the proxied ones."""
    samples: dict[str, list[Sample]] = defaultdict(list)
    counted = [0.0, 0.0, 0.0]
    cpu: dict[str, float] = defaultdict(float)
    credentials = credentials_of(server, token)

    for url, kind in targets.values():
        ab(url, paths[0], 4, credentials(kind), requests_total=8)  # warm
    slice_s = plan.seconds / plan.rounds
    for _ in range(plan.rounds):
        samples["limit"].append(own_limit(slice_s))
        processes = {"token proxy": [proxy.pid()], "TorchServe frontend (Java)": [server.pid()],
                     "TorchServe workers": worker_pids(server, "food_rotation")}  # a round's CPU, counted once
        for name, (url, kind) in targets.items():
            before, cpu_before = server_counters(server, MODEL_NAME), {
                part: cpu_seconds(pids) for part, pids in processes.items()}
            samples[name].append(ab(url, paths[0], cell[1], credentials(kind), slice_s))
            # ab stops at the deadline with up to `concurrency` requests still queued in TorchServe: let them
            # finish (none takes longer than the slowest one seen), or the next path would pay for them.
            time.sleep(max(samples[name][-1].latencies, default=0) / 1000)
            if name == "direct":
                counted = [total + after - first for total, after, first in
                           zip(counted, server_counters(server, MODEL_NAME), before, strict=True)]
            if name == "proxy":
                for part, pids in processes.items():
                    cpu[part] += cpu_seconds(pids) - cpu_before[part]
    proxied = sum(sample.count for sample in samples["proxy"])
    return CellResult({name: Measure.of(parts) for name, parts in samples.items()}, ServerTime.of(tuple(counted)),
                      {part: seconds / proxied * 1000 for part, seconds in cpu.items()})


def measure(plan: Plan, config_file: Path, weights: Path) -> Run:
    config = yaml.safe_load(config_file.read_text())
    workers, batch = config["minWorkers"], config["batchSize"]
    threads = config.get("handler", {}).get("torch_threads", 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the stock peer's workers get the same threads as ours
    images = make_images(plan.sizes)
    with scratch("bench-") as base:
        store = base / "model_store"
        build_archives(store, config_file, weights)
        peers = ("stock_rotation", "noop") if plan.peers else ()
        server = TorchServe.on_free_ports(base / "torchserve", store,
                                          load_models=",".join(f"{model}.mar" for model in (MODEL_NAME, *peers)))
        (port,) = free_ports(1)
        proxy = Proxy(home=base / "proxy", url=f"http://127.0.0.1:{port}", torchserve=server)
        results: dict[tuple[str, str, int], Measure] = {}
        server_times: dict[Cell, ServerTime] = {}
        cpu_ms: dict[Cell, dict[str, float]] = {}
        pool: LimitPool | None = None
        try:
            server.start()
            for model in (MODEL_NAME, *peers):
                server.wait_ready(model=model, min_workers=workers, timeout=300)
            proxy.start()
            proxy.wait_ready()
            token = proxy.saved_token("bench_token", "bench", ["predict"])
            pool = LimitPool(weights, config.get("handler", {}), workers, threads)
            targets = {
                "direct": (f"{server.inference_url}/predictions/food_rotation", "inference"),
                "proxy": (f"{proxy.url}/predictions/food_rotation", None),
            }
            if plan.peers:
                targets["stock"] = (f"{server.inference_url}/predictions/stock_rotation", "inference")
                targets["noop"] = (f"{server.inference_url}/predictions/noop", "inference")
            for label, paths in images.items():
                for concurrency in plan.concurrency:
                    cell = (label, concurrency)
                    measured = measure_cell(plan, cell, paths, targets, server, proxy, token,
                                            partial(pool.run, paths, batch, concurrency))
                    results.update({(name, *cell): measure for name, measure in measured.results.items()})
                    server_times[cell], cpu_ms[cell] = measured.server, measured.cpu_ms
                    print(f"{label} c={concurrency}: " + ", ".join(
                        f"{n} {results[(n, label, concurrency)].rate:.1f}/s" for n in ("limit", *targets)),
                        flush=True)
            soak_image = images["1 MP" if "1 MP" in images else next(iter(images))][0]
            rss_before = worker_rss_mb(server, MODEL_NAME)
            soak = Measure.of([ab(f"{proxy.url}/predictions/food_rotation", soak_image, 16,
                                  {"Authorization": f"Bearer {token}"}, requests_total=plan.soak_requests,
                                  keepalive=False)])
            rss_after = worker_rss_mb(server, MODEL_NAME)
            prep = {label: (preprocess_ms(paths, False, plan.preprocess_rounds),
                            preprocess_ms(paths, True, plan.preprocess_rounds)) for label, paths in images.items()}
        finally:
            if pool is not None:
                pool.close()
            proxy.stop()
            server.stop()
    return Run(plan, images, results, server_times, soak, rss_before, rss_after, prep, cpu_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, help="per HTTP measurement (default 15; --quick 1.5)")
    parser.add_argument("--config", type=Path, default=ROOT / "handler" / "model-config.yaml")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the .pth (with its .json) to serve")
    parser.add_argument("--ab-requests", type=int, help="requests of the no-keep-alive soak (default 1000)")
    parser.add_argument("--quick", action="store_true", help="1 MP only, c=1 and 4, short cells: checks it runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    if shutil.which("ab") is None:
        raise SystemExit("ab not found: install Debian's apache2-utils (make bench does)")
    plan = QUICK if args.quick else Plan()
    plan = replace(plan, seconds=args.seconds or plan.seconds, soak_requests=args.ab_requests or plan.soak_requests)
    config = yaml.safe_load(args.config.read_text())
    lines = report(measure(plan, args.config, args.weights), args.weights, args.config, config)
    tuning = ROOT / "bench" / "TUNING.md"
    if not args.quick and args.out == ROOT / "bench" / "RESULTS.md" and tuning.exists():
        lines += ["", tuning.read_text().strip()]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
