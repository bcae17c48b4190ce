"""make bench: the serving path against its limit and its peers, side by side in one run -> bench/RESULTS.md.

For phone-size 12 MP and 1 MP JPEGs (generated here, kept in bench/.cache), at concurrency 1, 4 and 16:
  limit      an in-process loop doing exactly the handler's decode + preprocess + forward, same workers,
             threads and batch size (what 2 cores can do with no serving at all)
  direct     TorchServe with our handler, called with TorchServe's key
  proxy      the same through the token proxy
  stock      TorchServe's stock image_classifier (a two-line topk=4 subclass) on the same weights and settings
  noop       a handler that does nothing: TorchServe's own ceiling
HTTP load comes from `ab -k` (C, light on the client side); then `ab -n 10000 -c 16` (no keep-alive) through the
proxy, with the worker RSS before and after.

    .venv/bin/python bench/run_bench.py [--seconds 8] [--out bench/RESULTS.md]
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import torch
import yaml
from PIL import Image

from scripts.make_demo_data import render_scene
from scripts.serving import ROOT, Proxy, TorchServe, free_ports

WEIGHTS = ROOT / "weights" / "food_rotation_demo.pth"
CACHE = ROOT / "bench" / ".cache"
CONCURRENCY = (1, 4, 16)
SIZES = {"12 MP": (4000, 3000), "1 MP": (1152, 864)}


@dataclass(frozen=True)
class Measure:
    rate: float  # images (requests) per second
    p50: float
    p95: float
    p99: float
    failed: int = 0


def make_images() -> dict[str, list[Path]]:
    """Three photo-like JPEGs per size: a scene, upscaled, with sensor-like noise so it compresses like a photo."""
    CACHE.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    rng = np.random.default_rng(0)
    for label, (width, height) in SIZES.items():
        files[label] = []
        for index in range(3):
            path = CACHE / f"{label.replace(' ', '').lower()}_{index}.jpg"
            if not path.exists():
                base = render_scene(9000 + index).resize((width, height), Image.Resampling.BICUBIC)
                pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)
            files[label].append(path)
    return files


def _limit_worker(paths: list[str], handler_config: dict, batch: int, threads: int, seconds: float, start,
                  out) -> None:
    torch.set_num_threads(threads)
    from handler_settings import HandlerSettings
    from photo_io import load_upright
    from rotation_model import RotationNet, as_batch, for_inference, to_pixels

    metadata = json.loads(WEIGHTS.with_suffix(".json").read_text())
    settings = HandlerSettings.from_archive(metadata, handler_config)
    model = RotationNet(metadata["arch"])
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
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


def limit(paths: list[Path], handler_config: dict, workers: int, threads: int, max_batch: int, concurrency: int,
          seconds: float) -> Measure:
    """`concurrency` requests spread over the workers, each worker batching what it holds (as TorchServe does)."""
    active = min(workers, concurrency)
    batch = min(max_batch, -(-concurrency // active))
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(active), ctx.Queue()
    procs = [ctx.Process(target=_limit_worker, args=([str(p) for p in paths], handler_config, batch, threads,
                                                       seconds, start, out)) for _ in range(active)]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    latencies = sorted(latency for _, _, lat in results for latency in lat)
    rate = sum(done / elapsed for done, elapsed, _ in results)
    return Measure(rate, *(latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in (0.5, 0.95, 0.99)))


def ab(url: str, photo: Path, concurrency: int, headers: dict[str, str], seconds: float | None = None,
       requests_total: int | None = None, keepalive: bool = True) -> Measure:
    with tempfile.NamedTemporaryFile(suffix=".csv") as csv:
        command = ["ab", "-q", "-c", str(concurrency), "-p", str(photo), "-T", "image/jpeg", "-e", csv.name, "-s", "60"]
        command += ["-t", str(seconds), "-n", "1000000"] if seconds else ["-n", str(requests_total)]
        command += ["-k"] if keepalive else []
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        result = subprocess.run([*command, url], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"ab failed: {result.stderr or result.stdout}")
        percent = dict(line.split(",") for line in Path(csv.name).read_text().splitlines()[1:])
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", result.stdout).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", result.stdout).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", result.stdout)
    return Measure(rate, float(percent["50"]), float(percent["95"]), float(percent["99"]),
                   failed + (int(non_2xx.group(1)) if non_2xx else 0))


def build_archives(store: Path, config: Path) -> None:
    archiver = str(Path(sys.executable).parent / "torch-model-archiver")
    subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(WEIGHTS), "--version", "1.0",
                    "--export-path", str(store), "--config", str(config)], check=True, capture_output=True)
    for name, handler, extra in (("stock_rotation", ROOT / "bench" / "handlers" / "stock_rotation.py",
                                  ["--model-file", str(ROOT / "handler" / "rotation_model.py"),
                                   "--serialized-file", str(WEIGHTS)]),
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


def preprocess_ms(paths: list[Path], stock: bool) -> float:
    """Median time per image of the handler's decode + preprocess (or the stock handler's), one thread."""
    from ts.torch_handler.image_classifier import ImageClassifier

    from photo_io import load_upright
    from rotation_model import to_pixels

    torch.set_num_threads(1)
    images = [p.read_bytes() for p in paths]
    times = []
    for _ in range(5):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="per HTTP measurement")
    parser.add_argument("--config", type=Path, default=ROOT / "handler" / "model-config.yaml")
    parser.add_argument("--ab-requests", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    if shutil.which("ab") is None:
        raise SystemExit("ab not found: install Debian's apache2-utils (make bench does)")
    config = yaml.safe_load(args.config.read_text())
    workers, batch = config["minWorkers"], config["batchSize"]
    threads = config.get("handler", {}).get("torch_threads", 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the stock handler's workers get the same threads as ours
    images = make_images()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    base = Path(tempfile.mkdtemp(prefix="bench-"))
    store = base / "model_store"
    build_archives(store, args.config)
    server = TorchServe.on_free_ports(base / "torchserve", store,
                                      load_models="food_rotation.mar,stock_rotation.mar,noop.mar")
    (port,) = free_ports(1)
    proxy = Proxy(home=base / "proxy", url=f"http://127.0.0.1:{port}", torchserve=server)
    results: dict[tuple[str, str, int], Measure] = {}
    try:
        server.start()
        for model in ("food_rotation", "stock_rotation", "noop"):
            server.wait_ready(model=model, min_workers=workers, timeout=300)
        proxy.start()
        proxy.wait_ready()
        token = proxy.saved_token("bench_token", "bench", ["predict"])
        key = {"Authorization": f"Bearer {server.keys()['inference']}"}
        targets = {
            "direct": (f"{server.inference_url}/predictions/food_rotation", lambda: key),
            "proxy": (f"{proxy.url}/predictions/food_rotation", lambda: {"Authorization": f"Bearer {token}"}),
            "stock": (f"{server.inference_url}/predictions/stock_rotation", lambda: key),
            "noop": (f"{server.inference_url}/predictions/noop", lambda: key),
        }
        for label, paths in images.items():
            for concurrency in CONCURRENCY:
                results[("limit", label, concurrency)] = limit(paths, config.get("handler", {}), workers, threads,
                                                               batch, concurrency, args.seconds)
                for name, (url, headers) in targets.items():
                    key = {"Authorization": f"Bearer {server.keys()['inference']}"}  # TorchServe may renew it
                    ab(url, paths[0], 4, headers(), requests_total=16)  # warm
                    results[(name, label, concurrency)] = ab(url, paths[0], concurrency, headers(), args.seconds)
                print(f"{label} c={concurrency}: " + ", ".join(
                    f"{n} {results[(n, label, concurrency)].rate:.1f}/s" for n in ("limit", *targets)), flush=True)
        rss_before = worker_rss_mb(server, "food_rotation")
        soak = ab(f"{proxy.url}/predictions/food_rotation", images["1 MP"][0], 16,
                  {"Authorization": f"Bearer {token}"}, requests_total=args.ab_requests, keepalive=False)
        rss_after = worker_rss_mb(server, "food_rotation")
        prep = {label: (preprocess_ms(paths, False), preprocess_ms(paths, True)) for label, paths in images.items()}
    except Exception:
        print(f"bench failed; logs kept in {base}", file=sys.stderr)
        raise
    finally:
        proxy.stop()
        server.stop()
    shutil.rmtree(base, ignore_errors=True)

    say("# Benchmark: the serving path against its limit and its peers")
    say()
    say("Reproduce: `make bench` (= `.venv/bin/python bench/run_bench.py"
        + (f" --seconds {args.seconds:g}" if args.seconds != 8 else "") + "`), with nothing else running.")
    say()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import ts

    say(f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"TorchServe {ts.__version__}. Settings (handler/model-config.yaml): {workers} workers x {threads} torch "
        f"thread(s), batch size {batch}, max batch delay {config['maxBatchDelay']} ms. Load from `ab -k` on the same "
        f"2 cores, {args.seconds:g} s per cell; latencies in ms.")
    for label in images:
        say()
        say(f"## {label} JPEGs ({SIZES[label][0]}x{SIZES[label][1]})")
        for concurrency in CONCURRENCY:
            say()
            say(f"Concurrency {concurrency}:")
            say()
            say("| path | images/s | p50 | p95 | p99 |")
            say("| --- | --- | --- | --- | --- |")
            for name, title in (("limit", "(1) limit: in-process decode + preprocess + forward"),
                                ("direct", "(2) TorchServe direct"), ("proxy", "(3) through the token proxy"),
                                ("stock", "(4) stock image_classifier, same settings"),
                                ("noop", "TorchServe ceiling: no-op handler")):
                say(row(title, results[(name, label, concurrency)]))
    say()
    say("## Ratios (images/s)")
    say()
    say("| | " + " | ".join(f"{label} c={c}" for label in images for c in CONCURRENCY) + " |")
    say("| --- | " + " | ".join("---" for _ in images for _ in CONCURRENCY) + " |")
    for a, b, title in (("proxy", "limit", "(3)/(1) proxy / limit"), ("proxy", "direct", "(3)/(2) proxy / direct"),
                        ("proxy", "stock", "(3)/(4) proxy / stock"), ("direct", "noop", "(2) / no-op ceiling")):
        say(f"| {title} | " + " | ".join(f"{results[(a, label, c)].rate / results[(b, label, c)].rate:.2f}"
                                        for label in images for c in CONCURRENCY) + " |")
    say()
    say("Added p50 latency of the proxy (ms): " + ", ".join(
        f"{label} c={c}: {results[('proxy', label, c)].p50 - results[('direct', label, c)].p50:+.1f}"
        for label in images for c in CONCURRENCY))
    say()
    say("## Preprocessing per image (one thread, median)")
    say()
    say("| JPEG | ours: draft decode + EXIF + resize | stock: full decode + Resize(256) + CenterCrop |")
    say("| --- | --- | --- |")
    for label, (ours, stock) in prep.items():
        say(f"| {label} | {ours:.1f} ms | {stock:.1f} ms |")
    say()
    say(f"## `ab -n {args.ab_requests} -c 16` through the proxy (no keep-alive, 1 MP JPEG, valid token)")
    say()
    growth = (sum(rss_after) - sum(rss_before)) / sum(rss_before) * 100
    say(f"{soak.rate:.1f} requests/s, **{soak.failed} failed**, p50 {soak.p50:.1f} ms, p99 {soak.p99:.1f} ms. "
        f"Worker RSS before: {', '.join(f'{r:.0f}' for r in rss_before)} MB; after: "
        f"{', '.join(f'{r:.0f}' for r in rss_after)} MB ({growth:+.1f} %).")
    say()
    say("## Targets")
    say()
    c16 = ("1 MP", 16)
    checks = [
        ("through the proxy >= 0.85 x the limit, 1 MP c=16",
         results[("proxy", *c16)].rate / results[("limit", *c16)].rate, 0.85, True),
        ("through the proxy >= 0.95 x TorchServe direct, 1 MP c=16",
         results[("proxy", *c16)].rate / results[("direct", *c16)].rate, 0.95, True),
        ("proxy adds <= 2 ms p50, 1 MP c=1 (ms)",
         results[("proxy", "1 MP", 1)].p50 - results[("direct", "1 MP", 1)].p50, 2.0, False),
        ("proxy adds <= 2 ms p50, 1 MP c=16 (ms)",
         results[("proxy", *c16)].p50 - results[("direct", *c16)].p50, 2.0, False),
        (">= 2 x the stock handler, 12 MP c=16",
         results[("proxy", "12 MP", 16)].rate / results[("stock", "12 MP", 16)].rate, 2.0, True),
        ("12 MP preprocess <= 25 ms per image", prep["12 MP"][0], 25.0, False),
        (f"ab {args.ab_requests} requests: 0 failed", soak.failed, 0, False),
        ("worker RSS growth < 5 % (%)", growth, 5.0, False),
    ]
    say("| target | measured | met |")
    say("| --- | --- | --- |")
    for title, value, bound, at_least in checks:
        met = value >= bound if at_least else value <= bound
        say(f"| {title} | {value:.2f} | {'yes' if met else '**no**'} |")
    extra = args.out.with_name("TUNING.md")
    if extra.exists():
        say()
        say(extra.read_text().strip())
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
