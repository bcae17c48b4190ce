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

    .venv/bin/python bench/run_bench.py [--seconds 8] [--config FILE] [--out bench/RESULTS.md]
    .venv/bin/python bench/run_bench.py --quick --out /tmp/r.md    (seconds, one size: make test runs it)
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import requests
import torch
import yaml
from PIL import Image

from scripts.make_demo_data import render_scene
from scripts.serving import ROOT, Proxy, TorchServe, free_ports

WEIGHTS = ROOT / "weights" / "food_rotation_lite0.pth"  # the shipped default (Makefile SHIPPED_WEIGHTS)
CACHE = ROOT / "bench" / ".cache"
SIZES = {"12 MP": (4000, 3000), "1 MP": (1152, 864)}


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full table, or the quick pass that keeps every code path of it exercised."""

    sizes: tuple[str, ...] = tuple(SIZES)
    concurrency: tuple[int, ...] = (1, 4, 16)
    seconds: float = 8.0
    soak_requests: int = 1000
    preprocess_rounds: int = 5
    peers: bool = True  # also the stock handler and the no-op ceiling (bench/tune.py leaves them out)


QUICK = Plan(sizes=("1 MP",), concurrency=(1, 4), seconds=1.5, soak_requests=40, preprocess_rounds=1)


@dataclass(frozen=True)
class Measure:
    rate: float  # images (requests) per second
    p50: float
    p95: float
    p99: float
    failed: int = 0
    mean: float = 0.0  # ms per request


@dataclass(frozen=True)
class ServerTime:
    """TorchServe's own view of the requests of one cell (its metrics API): mean ms per request."""

    in_server: float  # from the frontend receiving the request to its answer
    queue: float  # waiting in the model's job queue for a worker


def make_images(sizes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Three photo-like JPEGs per size: a scene, upscaled, with sensor-like noise so it compresses like a photo."""
    CACHE.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    rng = np.random.default_rng(0)
    for label in sizes:
        width, height = SIZES[label]
        files[label] = []
        for index in range(3):
            path = CACHE / f"{label.replace(' ', '').lower()}_{index}.jpg"
            if not path.exists():
                base = render_scene(9000 + index).resize((width, height), Image.Resampling.BICUBIC)
                pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)
            files[label].append(path)
    return files


def _limit_worker(weights: str, paths: list[str], handler_config: dict, batch: int, threads: int, seconds: float,
                  start, out) -> None:
    torch.set_num_threads(threads)
    from handler_settings import HandlerSettings
    from photo_io import load_upright
    from rotation_model import RotationNet, as_batch, for_inference, to_pixels

    metadata = json.loads(Path(weights).with_suffix(".json").read_text())
    settings = HandlerSettings.from_archive(metadata, handler_config)
    model = RotationNet(settings.arch, settings.turn_averaging)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model = for_inference(model, torch.device("cpu"), settings.channels_last)
    images = [Path(p).read_bytes() for p in paths]
    start.wait()
    done, latencies, began, index = 0, [], time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        t0 = time.perf_counter()
        pixels = []
        for _ in range(batch):
            image, _ = load_upright(images[index % len(images)], settings.image_size, settings.max_image_pixels)
            pixels.append(to_pixels(image, settings.image_size))
            index += 1
        with torch.inference_mode():
            model(as_batch(pixels, torch.device("cpu"), settings.channels_last)).softmax(dim=1)
        latencies.extend([(time.perf_counter() - t0) * 1000] * batch)
        done += batch
    out.put((done, time.perf_counter() - began, latencies))


def limit(weights: Path, paths: list[Path], handler_config: dict, workers: int, threads: int, max_batch: int,
          concurrency: int, seconds: float) -> Measure:
    """`concurrency` requests spread over the workers, each worker batching what it holds (as TorchServe does)."""
    active = min(workers, concurrency)
    batch = min(max_batch, -(-concurrency // active))
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(active), ctx.Queue()
    procs = [ctx.Process(target=_limit_worker, args=(str(weights), [str(p) for p in paths], handler_config, batch,
                                                       threads, seconds, start, out)) for _ in range(active)]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    latencies = sorted(latency for _, _, lat in results for latency in lat)
    rate = sum(done / elapsed for done, elapsed, _ in results)
    return Measure(rate, *percentiles(latencies), mean=statistics.fmean(latencies))


def ab(url: str, photo: Path, concurrency: int, headers: dict[str, str], seconds: float | None = None,
       requests_total: int | None = None, keepalive: bool = True) -> Measure:
    """`ab`'s rate, and percentiles computed from its per-request times (-g): its own percentile table (-e) reads
    past its array when a cell has few requests."""
    with tempfile.NamedTemporaryFile(suffix=".tsv") as per_request:
        command = ["ab", "-q", "-c", str(concurrency), "-p", str(photo), "-T", "image/jpeg", "-g", per_request.name,
                   "-s", "60"]
        command += ["-t", str(seconds), "-n", "1000000"] if seconds else ["-n", str(requests_total)]
        command += ["-k"] if keepalive else []
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        result = subprocess.run([*command, url], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"ab failed: {result.stderr or result.stdout}")
        rows = Path(per_request.name).read_text().splitlines()[1:]
    latencies = sorted(float(line.split("\t")[4]) for line in rows)  # ttime: connect + wait + transfer, ms
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", result.stdout).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", result.stdout).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", result.stdout)
    return Measure(rate, *percentiles(latencies), failed + (int(non_2xx.group(1)) if non_2xx else 0),
                   statistics.fmean(latencies))


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 of sorted `latencies` (nearest rank)."""
    return tuple(latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in (0.5, 0.95, 0.99))


def server_counters(server: TorchServe, model: str) -> tuple[float, float, float]:
    """TorchServe's cumulative (requests, in-server us, queue us) for `model`, from its Prometheus metrics API."""
    text = requests.get(f"{server.config['metrics_address']}/metrics", timeout=10).text
    totals = {}
    for name in ("ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds"):
        found = re.findall(rf'^{name}{{[^}}]*model_name="{model}"[^}}]*}} ([\d.eE+-]+)$', text, re.MULTILINE)
        totals[name] = sum(float(value) for value in found)
    return (totals["ts_inference_requests_total"], totals["ts_inference_latency_microseconds"],
            totals["ts_queue_latency_microseconds"])


def server_time(before: tuple[float, float, float], after: tuple[float, float, float]) -> ServerTime:
    count = max(1.0, after[0] - before[0])
    return ServerTime((after[1] - before[1]) / count / 1000, (after[2] - before[2]) / count / 1000)


def stock_model_file(weights: Path, folder: Path) -> Path:
    """The model file the stock handler instantiates with no arguments: the weights' network, built as served."""
    metadata = json.loads(weights.with_suffix(".json").read_text())
    path = folder / "stock_model.py"
    path.write_text("from rotation_model import RotationNet\n\n\nclass StockRotationNet(RotationNet):\n"
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
                                   "--extra-files", str(ROOT / "handler" / "rotation_model.py")]),
                                 ("noop", ROOT / "bench" / "handlers" / "noop_handler.py", [])):
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run([archiver, "--model-name", name, "--version", "1.0", "--handler", str(handler),
                            "--config-file", str(config), "--export-path", str(store), *extra], check=True,
                           env={**os.environ, "TMPDIR": scratch})


def worker_rss_mb(server: TorchServe, model: str) -> list[float]:
    headers = {"Authorization": f"Bearer {server.keys()['management']}"}
    workers = requests.get(f"{server.management_url}/models/{model}", headers=headers, timeout=10).json()[0]["workers"]
    rss = []
    for worker in workers:
        status = Path(f"/proc/{worker['pid']}/status").read_text()
        rss.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
    return rss


def preprocess_ms(paths: list[Path], stock: bool, rounds: int) -> float:
    """Median time per image of the handler's decode + preprocess (or the stock handler's), one thread."""
    from ts.torch_handler.image_classifier import ImageClassifier

    from photo_io import load_upright
    from rotation_model import to_pixels

    torch.set_num_threads(1)
    images = [p.read_bytes() for p in paths]
    times = []
    for _ in range(rounds):
        for data in images:
            t0 = time.perf_counter()
            if stock:
                ImageClassifier.image_processing(Image.open(io.BytesIO(data)))
            else:
                to_pixels(load_upright(data, 224, 100_000_000)[0], 224)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def row(name: str, m: Measure) -> str:
    return f"| {name} | {m.rate:.1f} | {m.p50:.1f} | {m.p95:.1f} | {m.p99:.1f} |"


Cell = tuple[str, int]  # (image size, concurrency)
PATHS = (("limit", "(1) limit: in-process decode + preprocess + forward"), ("direct", "(2) TorchServe direct"),
         ("proxy", "(3) through the token proxy"), ("stock", "(4) stock image_classifier, same settings"),
         ("noop", "TorchServe ceiling: no-op handler"))


@dataclass
class Run:
    """Everything one bench run measured."""

    plan: Plan
    images: dict[str, list[Path]]
    results: dict[tuple[str, str, int], Measure]
    server: dict[Cell, ServerTime]
    soak: Measure
    rss_before: list[float]
    rss_after: list[float]
    prep: dict[str, tuple[float, float]]

    @property
    def cells(self) -> list[Cell]:
        return [(label, c) for label in self.images for c in self.plan.concurrency]

    def ratio(self, a: str, b: str, cell: Cell) -> float:
        return self.results[(a, *cell)].rate / self.results[(b, *cell)].rate

    def added_p50(self, cell: Cell) -> float:
        return self.results[("proxy", *cell)].p50 - self.results[("direct", *cell)].p50


def measure(plan: Plan, config_file: Path, weights: Path) -> Run:
    config = yaml.safe_load(config_file.read_text())
    workers, batch = config["minWorkers"], config["batchSize"]
    threads = config.get("handler", {}).get("torch_threads", 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the stock peer's workers get the same threads as ours
    images = make_images(plan.sizes)
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    store = base / "model_store"
    build_archives(store, config_file, weights)
    peers = ("stock_rotation", "noop") if plan.peers else ()
    server = TorchServe.on_free_ports(base / "torchserve", store,
                                      load_models=",".join(f"{model}.mar" for model in ("food_rotation", *peers)))
    (port,) = free_ports(1)
    proxy = Proxy(home=base / "proxy", url=f"http://127.0.0.1:{port}", torchserve=server)
    results: dict[tuple[str, str, int], Measure] = {}
    server_times: dict[Cell, ServerTime] = {}
    try:
        server.start()
        for model in ("food_rotation", *peers):
            server.wait_ready(model=model, min_workers=workers, timeout=300)
        proxy.start()
        proxy.wait_ready()
        token = proxy.saved_token("bench_token", "bench", ["predict"])
        targets = {
            "direct": (f"{server.inference_url}/predictions/food_rotation", "inference"),
            "proxy": (f"{proxy.url}/predictions/food_rotation", None),
        }
        if plan.peers:
            targets["stock"] = (f"{server.inference_url}/predictions/stock_rotation", "inference")
            targets["noop"] = (f"{server.inference_url}/predictions/noop", "inference")
        for label, paths in images.items():
            for concurrency in plan.concurrency:
                results[("limit", label, concurrency)] = limit(weights, paths, config.get("handler", {}),
                                                               workers, threads, batch, concurrency, plan.seconds)
                for name, (url, key_kind) in targets.items():
                    # TorchServe may renew its key at any time: read it for every cell
                    headers = {"Authorization": f"Bearer {server.keys()[key_kind] if key_kind else token}"}
                    ab(url, paths[0], 4, headers, requests_total=8)  # warm
                    before = server_counters(server, "food_rotation")
                    results[(name, label, concurrency)] = ab(url, paths[0], concurrency, headers, plan.seconds)
                    if name == "direct":
                        server_times[(label, concurrency)] = server_time(before,
                                                                         server_counters(server, "food_rotation"))
                print(f"{label} c={concurrency}: " + ", ".join(
                    f"{n} {results[(n, label, concurrency)].rate:.1f}/s" for n in ("limit", *targets)), flush=True)
        soak_image = images["1 MP" if "1 MP" in images else next(iter(images))][0]
        rss_before = worker_rss_mb(server, "food_rotation")
        soak = ab(f"{proxy.url}/predictions/food_rotation", soak_image, 16, {"Authorization": f"Bearer {token}"},
                  requests_total=plan.soak_requests, keepalive=False)
        rss_after = worker_rss_mb(server, "food_rotation")
        prep = {label: (preprocess_ms(paths, False, plan.preprocess_rounds),
                        preprocess_ms(paths, True, plan.preprocess_rounds)) for label, paths in images.items()}
    except Exception:
        print(f"bench failed; logs kept in {base}", file=sys.stderr)
        raise
    finally:
        proxy.stop()
        server.stop()
    shutil.rmtree(base, ignore_errors=True)
    return Run(plan, images, results, server_times, soak, rss_before, rss_after, prep)


def worst_ratio(run: Run, a: str, b: str) -> Cell:
    """The cell where path `a` keeps the smallest share of path `b`'s images/s."""
    return min(run.cells, key=lambda cell: run.ratio(a, b, cell))


def time_split(run: Run, cell: Cell) -> list[tuple[str, float]]:
    """Where one request's mean time goes, outermost first; each part is a difference of two measurements."""
    proxy, direct, own = (run.results[(name, *cell)] for name in ("proxy", "direct", "limit"))
    server = run.server[cell]
    return [
        ("token proxy (proxy - direct)", proxy.mean - direct.mean),
        ("client + HTTP to TorchServe (direct - TorchServe's in-server time)", direct.mean - server.in_server),
        ("TorchServe job queue (its queue counter)", server.queue),
        ("batch wait + frontend-worker IPC + TorchServe's Python (in-server - queue - handler)",
         server.in_server - server.queue - own.mean),
        ("handler work: decode + preprocess + forward (in-process, same batch)", own.mean),
    ]


def report(run: Run, args: argparse.Namespace, config: dict) -> list[str]:
    lines: list[str] = []
    say = lines.append
    plan, results, images = run.plan, run.results, run.images
    workers, batch = config["minWorkers"], config["batchSize"]
    threads = config.get("handler", {}).get("torch_threads", 1)
    metadata = json.loads(args.weights.with_suffix(".json").read_text())
    say("# Benchmark: the serving path against its limit and its peers")
    say("")
    config_path = args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
    options = (f" --seconds {plan.seconds:g}" if plan.seconds != Plan.seconds else "") + (
        f" --config {config_path}" if config_path != Path("handler/model-config.yaml") else "")
    say(f"Reproduce: `make bench` (= `.venv/bin/python bench/run_bench.py{options}`), with nothing else running.")
    say("")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import ts

    say(f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"TorchServe {ts.__version__}. Model: `{args.weights.name}` ({metadata['arch']}, {metadata['image_size']} px"
        f"{', turn-averaged: 4 forward passes per photo' if metadata.get('turn_averaging') else ''}). "
        f"Settings ({args.config.name}): {workers} workers x {threads} torch thread(s), batch size {batch}, "
        f"max batch delay {config['maxBatchDelay']} ms. Load from `ab -k` on the same cores, {plan.seconds:g} s per "
        "cell; latencies in ms.")
    for label in images:
        say("")
        say(f"## {label} JPEGs ({SIZES[label][0]}x{SIZES[label][1]})")
        for concurrency in plan.concurrency:
            say("")
            say(f"Concurrency {concurrency}:")
            say("")
            say("| path | images/s | p50 | p95 | p99 |")
            say("| --- | --- | --- | --- | --- |")
            for name, title in PATHS:
                say(row(title, results[(name, label, concurrency)]))
    say("")
    say("## Ratios (images/s)")
    say("")
    say("| | " + " | ".join(f"{label} c={c}" for label, c in run.cells) + " |")
    say("| --- | " + " | ".join("---" for _ in run.cells) + " |")
    for a, b, title in (("proxy", "limit", "(3)/(1) proxy / limit"), ("proxy", "direct", "(3)/(2) proxy / direct"),
                        ("proxy", "stock", "(3)/(4) proxy / stock"), ("direct", "noop", "(2) / no-op ceiling")):
        say(f"| {title} | " + " | ".join(f"{run.ratio(a, b, cell):.2f}" for cell in run.cells) + " |")
    say("")
    say("Added p50 latency of the proxy (ms): " + ", ".join(
        f"{label} c={c}: {run.added_p50((label, c)):+.1f}" for label, c in run.cells))
    split_cells = [cell for cell in run.cells if cell[1] in (1, 4)]
    say("")
    say("## Where the time of one request goes (mean ms per request)")
    say("")
    say("| part | " + " | ".join(f"{label} c={c}" for label, c in split_cells) + " |")
    say("| --- | " + " | ".join("---" for _ in split_cells) + " |")
    splits = {cell: time_split(run, cell) for cell in split_cells}
    for index, (title, _) in enumerate(splits[split_cells[0]]):
        say(f"| {title} | " + " | ".join(f"{splits[cell][index][1]:.1f}" for cell in split_cells) + " |")
    say("| **total through the proxy** | " + " | ".join(f"**{results[('proxy', *cell)].mean:.1f}**"
                                                        for cell in split_cells) + " |")
    say("")
    say("## Preprocessing per image (one thread, median)")
    say("")
    say("| JPEG | ours: draft decode + EXIF + resize | stock: full decode + Resize(256) + CenterCrop |")
    say("| --- | --- | --- |")
    for label, (ours, stock) in run.prep.items():
        say(f"| {label} | {ours:.1f} ms | {stock:.1f} ms |")
    say("")
    say(f"## `ab -n {plan.soak_requests} -c 16` through the proxy (no keep-alive, valid token)")
    say("")
    growth = (sum(run.rss_after) - sum(run.rss_before)) / sum(run.rss_before) * 100
    say(f"{run.soak.rate:.1f} requests/s, **{run.soak.failed} failed**, p50 {run.soak.p50:.1f} ms, p99 "
        f"{run.soak.p99:.1f} ms. Worker RSS before: {', '.join(f'{r:.0f}' for r in run.rss_before)} MB; after: "
        f"{', '.join(f'{r:.0f}' for r in run.rss_after)} MB ({growth:+.1f} %).")
    say("")
    say("## Targets")
    say("")
    worst_limit, worst_direct = worst_ratio(run, "proxy", "limit"), worst_ratio(run, "proxy", "direct")
    worst_added = max(run.cells, key=run.added_p50)
    largest = (next(iter(images)), max(plan.concurrency))
    checks = [
        (f"through the proxy >= 0.85 x the limit, every cell (worst: {worst_limit[0]} c={worst_limit[1]})",
         run.ratio("proxy", "limit", worst_limit), 0.85, True),
        (f"through the proxy >= 0.95 x TorchServe direct, every cell (worst: {worst_direct[0]} c={worst_direct[1]})",
         run.ratio("proxy", "direct", worst_direct), 0.95, True),
        (f"proxy adds <= 2 ms p50, every cell (worst: {worst_added[0]} c={worst_added[1]}; ms)",
         run.added_p50(worst_added), 2.0, False),
        (f">= 2 x the stock handler, {largest[0]} c={largest[1]}", run.ratio("proxy", "stock", largest), 2.0, True),
        *((("12 MP preprocess <= 25 ms per image", run.prep["12 MP"][0], 25.0, False),) if "12 MP" in run.prep
          else ()),
        (f"ab {plan.soak_requests} requests: 0 failed", run.soak.failed, 0, False),
        ("worker RSS growth < 5 % (%)", growth, 5.0, False),
    ]
    say("| target | measured | met |")
    say("| --- | --- | --- |")
    for title, value, bound, at_least in checks:
        met = value >= bound if at_least else value <= bound
        say(f"| {title} | {value:.2f} | {'yes' if met else '**no**'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, help="per HTTP measurement (default 8; --quick 1.5)")
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
    lines = report(measure(plan, args.config, args.weights), args, config)
    tuning = ROOT / "bench" / "TUNING.md"
    if not args.quick and args.out == ROOT / "bench" / "RESULTS.md" and tuning.exists():
        lines += ["", tuning.read_text().strip()]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
