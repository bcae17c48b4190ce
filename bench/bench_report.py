"""bench/RESULTS.md from one run's measurements: the tables, the ratios, where a request's time goes, targets."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
import ts
from bench_instruments import SIZES, Measure, ServerTime

from operations.torchserve_process import ROOT


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full table, or the quick pass that keeps every code path of it exercised."""

    sizes: tuple[str, ...] = tuple(SIZES)
    concurrency: tuple[int, ...] = (1, 4, 16)
    seconds: float = 15.0  # a turn-averaged photo takes ~0.2 s of a core: shorter cells hold too few requests
    soak_requests: int = 1000
    preprocess_rounds: int = 5
    peers: bool = True  # also the stock handler and the no-op ceiling (bench/tune.py leaves them out)
    rounds: int = 3  # each cell's paths measured in turn, this many times: drift falls on all of them alike


QUICK = Plan(sizes=("1 MP",), concurrency=(1, 4), seconds=1.5, soak_requests=40, preprocess_rounds=1, rounds=1)


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
    cpu_ms: dict[Cell, dict[str, float]]  # CPU ms per request of each process, through the proxy


    @property
    def cells(self) -> list[Cell]:
        return [(label, c) for label in self.images for c in self.plan.concurrency]

    def ratio(self, a: str, b: str, cell: Cell) -> float:
        return self.results[(a, *cell)].rate / self.results[(b, *cell)].rate

    def added_p50(self, cell: Cell) -> float:
        return self.results[("proxy", *cell)].p50 - self.results[("direct", *cell)].p50


def row(name: str, m: Measure) -> str:
    return f"| {name} | {m.rate:.1f} | {m.p50:.1f} | {m.p95:.1f} | {m.p99:.1f} |"


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


def report(run: Run, weights: Path, config_file: Path, config: dict) -> list[str]:
    """The whole of RESULTS.md, section by section."""
    return [*_header(run, weights, config_file, config), *_tables(run), *_ratios(run), *_time_split(run),
            *_cpu(run), *_preprocess_and_soak(run), *_targets(run)]


def _header(run: Run, weights: Path, config_file: Path, config: dict) -> list[str]:
    plan, metadata = run.plan, json.loads(weights.with_suffix(".json").read_text())
    workers, batch = config["minWorkers"], config["batchSize"]
    threads = config.get("handler", {}).get("torch_threads", 1)
    shown = config_file.relative_to(ROOT) if config_file.is_absolute() and config_file.is_relative_to(ROOT) \
        else config_file
    options = (f" --seconds {plan.seconds:g}" if plan.seconds != Plan.seconds else "") + (
        f" --config {shown}" if shown != Path("handler/model-config.yaml") else "")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    turns = ", turn-averaged: 4 forward passes per photo" if metadata.get("turn_averaging") else ""
    return [
        "# Benchmark: the serving path against its limit and its peers", "",
        f"Reproduce: `make bench` (= `.venv/bin/python bench/run_bench.py{options}`), with nothing else running.", "",
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"TorchServe {ts.__version__}. Model: `{weights.name}` ({metadata['arch']}, {metadata['image_size']} px"
        f"{turns}). Settings ({shown}): {workers} workers x {threads} torch thread(s), batch size {batch}, max batch "
        f"delay {config['maxBatchDelay']} ms. Load from `ab -k` on the same cores, {plan.seconds:g} s per cell; "
        "latencies in ms.",
    ]


def _tables(run: Run) -> list[str]:
    lines = []
    for label in run.images:
        lines += ["", f"## {label} JPEGs ({SIZES[label][0]}x{SIZES[label][1]})"]
        for concurrency in run.plan.concurrency:
            lines += ["", f"Concurrency {concurrency}:", "", "| path | images/s | p50 | p95 | p99 |",
                      "| --- | --- | --- | --- | --- |"]
            lines += [row(title, run.results[(name, label, concurrency)]) for name, title in PATHS
                      if (name, label, concurrency) in run.results]
    return lines


def _ratios(run: Run) -> list[str]:
    lines = ["", "## Ratios (images/s)", "", "| | " + " | ".join(f"{label} c={c}" for label, c in run.cells) + " |",
             "| --- | " + " | ".join("---" for _ in run.cells) + " |"]
    for a, b, title in (("proxy", "limit", "(3)/(1) proxy / limit"), ("proxy", "direct", "(3)/(2) proxy / direct"),
                        ("direct", "limit", "(2)/(1) TorchServe direct / limit: the most a free proxy could keep"),
                        ("proxy", "stock", "(3)/(4) proxy / stock"), ("direct", "noop", "(2) / no-op ceiling")):
        if (b, *run.cells[0]) in run.results:
            lines.append(f"| {title} | " + " | ".join(f"{run.ratio(a, b, cell):.2f}" for cell in run.cells) + " |")
    return [*lines, "", "Added p50 latency of the proxy (ms): " + ", ".join(
        f"{label} c={c}: {run.added_p50((label, c)):+.1f}" for label, c in run.cells)]


def _time_split(run: Run) -> list[str]:
    cells = [cell for cell in run.cells if cell[1] in (1, 4)]
    splits = {cell: time_split(run, cell) for cell in cells}
    lines = ["", "## Where the time of one request goes (mean ms per request)", "",
             "| part | " + " | ".join(f"{label} c={c}" for label, c in cells) + " |",
             "| --- | " + " | ".join("---" for _ in cells) + " |"]
    for index, (title, _) in enumerate(splits[cells[0]]):
        lines.append(f"| {title} | " + " | ".join(f"{splits[cell][index][1]:.1f}" for cell in cells) + " |")
    return [*lines, "| **total through the proxy** | " + " | ".join(
        f"**{run.results[('proxy', *cell)].mean:.1f}**" for cell in cells) + " |"]


def _cpu(run: Run) -> list[str]:
    cells = list(run.cpu_ms)
    parts = list(run.cpu_ms[cells[0]])
    lines = ["", "## CPU per request through the proxy (ms of CPU time, from /proc, over each cell)", "",
             "| process | " + " | ".join(f"{label} c={c}" for label, c in cells) + " |",
             "| --- | " + " | ".join("---" for _ in cells) + " |"]
    lines += [f"| {part} | " + " | ".join(f"{run.cpu_ms[cell][part]:.1f}" for cell in cells) + " |" for part in parts]
    return [*lines, "| (the token proxy's budget for <= 2 ms added p50) | " + " | ".join(
        f"{proxy_cpu_budget(run, cell):.2f}" if cell[1] > 1 else "-" for cell in cells) + " |", "",
        "With more than one request in flight both cores are the workers', so a proxy that takes a share f of the "
        "machine's CPU lengthens the queue by p50 x f / (1 - f) (Little's law): <= 2 ms added p50 allows it at most "
        "2 ms / direct's p50 x the machine's CPU per request (cores / direct's images/s). bench/proxy_floor.py "
        "measures what a bare TCP relay and a minimal aiohttp proxy cost against that."]


def proxy_cpu_budget(run: Run, cell: Cell, added_ms: float = 2.0) -> float:
    """The most CPU ms per request a proxy on the workers' cores may take and add at most `added_ms` to direct's
    p50, when the cores are saturated (bench/TUNING.md, "Session 13")."""
    direct = run.results[("direct", *cell)]
    return added_ms / direct.p50 * (os.cpu_count() or 1) * 1000 / direct.rate


def rss_growth(run: Run) -> float:
    return (sum(run.rss_after) - sum(run.rss_before)) / sum(run.rss_before) * 100


def _preprocess_and_soak(run: Run) -> list[str]:
    lines = ["", "## Preprocessing per image (one thread, median)", "",
             "| JPEG | ours: draft decode + EXIF + resize | stock: full decode + Resize(256) + CenterCrop |",
             "| --- | --- | --- |"]
    lines += [f"| {label} | {ours:.1f} ms | {stock:.1f} ms |" for label, (ours, stock) in run.prep.items()]
    soak = run.soak
    return [*lines, "", f"## `ab -n {run.plan.soak_requests} -c 16` through the proxy (no keep-alive, valid token)", "",
            f"{soak.rate:.1f} requests/s, **{soak.failed} failed**, p50 {soak.p50:.1f} ms, p99 {soak.p99:.1f} ms. "
            f"Worker RSS before: {', '.join(f'{r:.0f}' for r in run.rss_before)} MB; after: "
            f"{', '.join(f'{r:.0f}' for r in run.rss_after)} MB ({rss_growth(run):+.1f} %)."]


def _targets(run: Run) -> list[str]:
    worst_limit, worst_direct = worst_ratio(run, "proxy", "limit"), worst_ratio(run, "proxy", "direct")
    worst_added = max(run.cells, key=run.added_p50)
    largest = (next(iter(run.images)), max(run.plan.concurrency))
    worst_torchserve = worst_ratio(run, "direct", "limit")
    checks = [
        (f"through the proxy >= 0.85 x the limit, every cell (worst: {worst_limit[0]} c={worst_limit[1]})",
         run.ratio("proxy", "limit", worst_limit), 0.85, True),
        (f"(what that needs) TorchServe direct >= 0.85 x the limit, every cell (worst: {worst_torchserve[0]} "
         f"c={worst_torchserve[1]})", run.ratio("direct", "limit", worst_torchserve), 0.85, True),
        (f"through the proxy >= 0.95 x TorchServe direct, every cell (worst: {worst_direct[0]} c={worst_direct[1]})",
         run.ratio("proxy", "direct", worst_direct), 0.95, True),
        (f"proxy adds <= 2 ms p50, every cell (worst: {worst_added[0]} c={worst_added[1]}; ms)",
         run.added_p50(worst_added), 2.0, False),
    ]
    if ("stock", *largest) in run.results:
        checks.append((f">= 2 x the stock handler, {largest[0]} c={largest[1]}",
                       run.ratio("proxy", "stock", largest), 2.0, True))
    if "12 MP" in run.prep:
        checks.append(("12 MP preprocess <= 25 ms per image", run.prep["12 MP"][0], 25.0, False))
    checks += [(f"ab {run.plan.soak_requests} requests: 0 failed", run.soak.failed, 0, False),
               ("worker RSS growth < 5 % (%)", rss_growth(run), 5.0, False)]
    lines = ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for title, value, bound, at_least in checks:
        met = value >= bound if at_least else value <= bound
        lines.append(f"| {title} | {value:.2f} | {'yes' if met else '**no**'} |")
    return lines
