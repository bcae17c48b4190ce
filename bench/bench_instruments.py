"""The bench's instruments: HTTP load from `ab`, the in-process limit (the handler's own work in plain processes),
TorchServe's own time counters, worker memory and preprocessing time. bench/run_bench.py runs them."""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

from food_rotation.training.make_demo_data import render_scene
from operations.torchserve_process import ROOT, TorchServe

CACHE = ROOT / "bench" / ".cache"
SIZES = {"12 MP": (4000, 3000), "1 MP": (1152, 864)}


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for one run's archives and servers: removed when the run ends, kept (and named) when it
    fails, for the servers' logs."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield base
    except Exception:
        print(f"failed; logs kept in {base}", file=sys.stderr)
        raise
    shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Sample:
    """One stretch of load: how many requests completed in how many seconds, and each one's latency (ms)."""

    count: int
    seconds: float
    latencies: list[float]
    failed: int = 0


@dataclass(frozen=True)
class Measure:
    rate: float  # images (requests) per second
    p50: float
    p95: float
    p99: float
    failed: int = 0
    mean: float = 0.0  # ms per request

    @classmethod
    def of(cls, samples: list[Sample]) -> Measure:
        """The samples pooled: a cell measured in interleaved rounds, so that a machine's drift over minutes
        (a shared host speeding up or slowing down) falls on every path alike."""
        latencies = sorted(latency for sample in samples for latency in sample.latencies)
        return cls(sum(s.count for s in samples) / sum(s.seconds for s in samples), *percentiles(latencies),
                   sum(s.failed for s in samples), statistics.fmean(latencies))


@dataclass(frozen=True)
class ServerTime:
    """TorchServe's own view of the requests of one cell (its metrics API): mean ms per request."""

    in_server: float  # from the frontend receiving the request to its answer
    queue: float  # waiting in the model's job queue for a worker

    @classmethod
    def of(cls, counted: tuple[float, float, float]) -> ServerTime:
        """From (requests, in-server us, queue us) counted over the cell."""
        requests_seen = max(1.0, counted[0])
        return cls(counted[1] / requests_seen / 1000, counted[2] / requests_seen / 1000)


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


def _limit_worker(weights: str, handler_config: dict, threads: int, jobs, out) -> None:
    """One worker of the in-process limit: the served model loaded once, then each job's loop until told to stop."""
    torch.set_num_threads(threads)
    from food_rotation.handler_settings import HandlerSettings
    from food_rotation.photo_io import load_upright
    from food_rotation.rotation_model import RotationNet, as_batch, for_inference, to_pixels

    metadata = json.loads(Path(weights).with_suffix(".json").read_text())
    settings = HandlerSettings.from_archive(metadata, handler_config)
    model = RotationNet(settings.arch, settings.turn_averaging)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model = for_inference(model, torch.device("cpu"), settings.channels_last, settings.freeze, settings.image_size)
    out.put("loaded")
    while (job := jobs.get()) is not None:
        paths, batch, seconds, start_at = job
        images = [Path(p).read_bytes() for p in paths]
        time.sleep(max(0.0, start_at - time.time()))  # the active workers start together
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


class LimitPool:
    """The in-process limit's workers, as many as TorchServe's and with its threads, each holding the served model,
    started once for the whole run: a process and a model per measurement cost about 10 s of every cell."""

    def __init__(self, weights: Path, handler_config: dict, workers: int, threads: int) -> None:
        ctx = mp.get_context("spawn")
        self._out = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(workers)]
        self._procs = [ctx.Process(target=_limit_worker, args=(str(weights), handler_config, threads, jobs, self._out),
                                   daemon=True) for jobs in self._jobs]
        for proc in self._procs:
            proc.start()
        for _ in self._procs:
            self._out.get(timeout=300)

    def run(self, paths: list[Path], max_batch: int, concurrency: int, seconds: float) -> Sample:
        """`concurrency` requests spread over the workers, each worker batching what it holds (as TorchServe does)."""
        active = min(len(self._procs), concurrency)
        batch = min(max_batch, -(-concurrency // active))
        start_at = time.time() + 0.2
        for jobs in self._jobs[:active]:
            jobs.put(([str(p) for p in paths], batch, seconds, start_at))
        results = [self._out.get(timeout=seconds + 300) for _ in range(active)]
        return Sample(sum(done for done, _, _ in results), statistics.fmean(elapsed for _, elapsed, _ in results),
                      [latency for _, _, lat in results for latency in lat])

    def close(self) -> None:
        for jobs in self._jobs:
            jobs.put(None)
        for proc in self._procs:
            proc.join(timeout=30)


def ab(url: str, photo: Path, concurrency: int, headers: dict[str, str], seconds: float | None = None,
       requests_total: int | None = None, keepalive: bool = True) -> Sample:
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
    latencies = [float(line.split("\t")[4]) for line in rows]  # ttime: connect + wait + transfer, ms
    count = int(re.search(r"Complete requests:\s+(\d+)", result.stdout).group(1))
    seconds = float(re.search(r"Time taken for tests:\s+([\d.]+)", result.stdout).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", result.stdout).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", result.stdout)
    return Sample(count, seconds, latencies, failed + (int(non_2xx.group(1)) if non_2xx else 0))


Credentials = Callable[[str | None], dict[str, str]]  # a credential kind (a TorchServe key's, or None) -> headers


def credentials_of(server: TorchServe, token: str) -> Credentials:
    """Headers for a TorchServe key kind, or for the gateway's `token` (None); the keys are read each time, as
    TorchServe may renew them during a run."""
    def headers(kind: str | None) -> dict[str, str]:
        return server.keys.headers(kind) if kind else {"Authorization": f"Bearer {token}"}
    return headers


def interleaved_cells(targets: dict[str, tuple[str, str | None]], credentials: Credentials,
                      images: Mapping[str, list[Path]], concurrencies: Sequence[int], seconds: float, rounds: int,
                      pids: Mapping[str, int] | None = None
                      ) -> tuple[dict[tuple[str, int], dict[str, Measure]], dict[tuple[str, int], dict[str, float]]]:
    """`interleaved` at every (size, concurrency), each cell's rates and p50s printed as it ends."""
    results, cpu_ms = {}, {}
    for label, photos in images.items():
        for concurrency in concurrencies:
            cell = (label, concurrency)
            results[cell], cpu_ms[cell] = interleaved(targets, credentials, photos[0], concurrency, seconds, rounds,
                                                      pids)
            print(f"{label} c={concurrency}: " + ", ".join(
                f"{name} {m.rate:.1f}/s p50 {m.p50:.0f}" for name, m in results[cell].items()),
                file=sys.stderr, flush=True)
    return results, cpu_ms


def interleaved(targets: dict[str, tuple[str, str | None]], credentials: Credentials,
                photo: Path, concurrency: int, seconds: float, rounds: int, pids: Mapping[str, int] | None = None
                ) -> tuple[dict[str, Measure], dict[str, float]]:
    """Every path at one cell, in `rounds` rounds taking turns, pooled per path (`targets`: each path's URL and
    credential kind, which `credentials` turns into headers); with the CPU ms per request of `pids`' processes,
    counted over their own path's rounds only."""
    samples: dict[str, list[Sample]] = defaultdict(list)
    cpu: dict[str, float] = defaultdict(float)
    for url, kind in targets.values():
        ab(url, photo, 4, credentials(kind), requests_total=8)  # warm
    for _ in range(rounds):
        for name, (url, kind) in targets.items():
            pid = (pids or {}).get(name)
            before = cpu_seconds([pid]) if pid else 0.0
            samples[name].append(ab(url, photo, concurrency, credentials(kind), seconds))
            time.sleep(max(samples[name][-1].latencies, default=0) / 1000)  # let the queue empty
            if pid:
                cpu[name] += cpu_seconds([pid]) - before
    return ({name: Measure.of(parts) for name, parts in samples.items()},
            {name: seconds_used * 1000 / max(1, sum(s.count for s in samples[name]))
             for name, seconds_used in cpu.items()})


def against_direct(results: Mapping[tuple[str, int], Mapping[str, Measure]], direct: str,
                   cpu_ms: Mapping[tuple[str, int], Mapping[str, float]] | None = None) -> list[str]:
    """A Markdown table of paths measured side by side per cell: each path's images/s and p50, then each other
    path's share of `direct`'s throughput and the p50 it adds (issue 17's goals), then its CPU per request."""
    cells = list(results)
    paths = list(results[cells[0]])
    others = [name for name in paths if name != direct]

    def row(title: str, value: Callable[[tuple[str, int]], str]) -> str:
        return f"| {title} | " + " | ".join(value(cell) for cell in cells) + " |"

    lines = [row("path", lambda cell: f"{cell[0]} c={cell[1]}"), "| --- |" + " --- |" * len(cells)]
    lines += [row(f"{name}: images/s, p50 ms", lambda cell, name=name: f"{results[cell][name].rate:.1f}, "
                                                                      f"{results[cell][name].p50:.0f}")
              for name in paths]
    lines += [row(f"{name} / direct (goal >= 0.95)",
                  lambda cell, name=name: f"{results[cell][name].rate / results[cell][direct].rate:.2f}")
              for name in others]
    lines += [row(f"{name}: added p50 ms (goal <= 2)",
                  lambda cell, name=name: f"{results[cell][name].p50 - results[cell][direct].p50:+.0f}")
              for name in others]
    if cpu_ms is not None:
        lines += [row(f"{name}: CPU ms per request", lambda cell, name=name: f"{cpu_ms[cell].get(name, math.nan):.2f}")
                  for name in others]
    failed = {name: sum(results[cell][name].failed for cell in cells) for name in paths}
    return [*lines, "", "Failed or non-2xx requests: " + ", ".join(f"{name} {count}" for name, count in failed.items())]


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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc, in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / ticks


def worker_pids(server: TorchServe, model: str) -> list[int]:
    headers = server.keys.headers("management")
    workers = requests.get(f"{server.management_url}/models/{model}", headers=headers, timeout=10).json()[0]["workers"]
    return [int(worker["pid"]) for worker in workers]


def worker_rss_mb(server: TorchServe, model: str) -> list[float]:
    return [int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
            for pid in worker_pids(server, model)]


def preprocess_ms(paths: list[Path], stock: bool, rounds: int) -> float:
    """Median time per image of the handler's decode + preprocess (or the stock handler's), one thread."""
    from ts.torch_handler.image_classifier import ImageClassifier

    from food_rotation.photo_io import load_upright
    from food_rotation.rotation_model import to_pixels

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
