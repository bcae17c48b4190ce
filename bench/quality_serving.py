"""bench/model_quality.py's serving half: a candidate's archive in its own TorchServe, loaded by keep-alive clients
at a few concurrencies, then its workers' memory."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from food_rotation import MODEL_NAME
from operations.torchserve_process import ROOT, TorchServe

CONCURRENCY = (1, 4)


@dataclass(frozen=True)
class Served:
    measured: dict[int, tuple[float, float, int]]  # concurrency -> (images/s, p50 ms, failed)
    rss: list[float]  # MiB per worker
    pss: list[float]


def load(url: str, headers: dict[str, str], photos: Sequence[bytes], concurrency: int,
         seconds: float) -> tuple[float, float, int]:
    """(images/s, p50 ms, failed): `concurrency` clients, each with its own keep-alive session, for `seconds`."""
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> tuple[list[float], int]:
        latencies, failed, index = [], 0, offset
        with requests.Session() as session:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                answer = session.post(url, data=photos[index % len(photos)], headers=headers, timeout=60)
                if answer.ok:
                    latencies.append((time.perf_counter() - began) * 1000)
                else:
                    failed += 1
                index += concurrency
        return latencies, failed

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(client, range(concurrency)))
    latencies = [latency for lat, _ in results for latency in lat]
    return (len(latencies) / (time.perf_counter() - began), statistics.median(latencies) if latencies else 0.0,
            sum(failed for _, failed in results))


def worker_memory(server: TorchServe) -> tuple[list[float], list[float]]:
    """(RSS, PSS) MiB of each worker process: PSS splits the pages workers share, so its sum is what they cost."""
    headers = server.keys.headers("management")
    workers = requests.get(f"{server.management_url}/models/{MODEL_NAME}", headers=headers, timeout=10).json()
    info = [psutil.Process(worker["pid"]).memory_full_info() for worker in workers[0]["workers"]]
    return [i.rss / 2**20 for i in info], [i.pss / 2**20 for i in info]


def serve(name: str, weights: Path, config: Path, photos: Sequence[bytes], seconds: float, workers: int) -> Served:
    """Archive, start TorchServe on free ports, load it, measure, stop; logs are kept if anything fails."""
    base = Path(tempfile.mkdtemp(prefix=f"model-quality-{name}-"))
    (base / "tmp").mkdir()
    shutil.copy(config, base / "model-config.yaml")
    build = subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version",
                            "1.0", "--export-path", str(base / "model_store"), "--config",
                            str(base / "model-config.yaml")], capture_output=True, text=True,
                           env={**os.environ, "TMPDIR": str(base / "tmp")}, timeout=300)
    if build.returncode != 0:
        raise RuntimeError(f"archive.sh failed for {name}: {build.stderr or build.stdout}")
    server = TorchServe.on_free_ports(base / "torchserve", base / "model_store")
    try:
        server.start()
        server.wait_ready(min_workers=workers, timeout=300)
        url = f"{server.inference_url}/predictions/{MODEL_NAME}"
        headers = {**server.keys.headers("inference"), "Content-Type": "image/jpeg"}
        load(url, headers, photos, max(CONCURRENCY), min(2.0, seconds))  # warm every worker
        measured = {c: load(url, headers, photos, c, seconds) for c in CONCURRENCY}
        rss, pss = worker_memory(server)
    except Exception:
        print(f"serving {name} failed; logs kept in {base}", file=sys.stderr)
        raise
    finally:
        server.stop()
    shutil.rmtree(base, ignore_errors=True)
    return Served(measured, rss, pss)
