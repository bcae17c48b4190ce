"""The whole stack's memory and throughput, default profile against PROFILE=small (and small with glibc's malloc
arenas capped), side by side in one run.

    .venv/bin/python bench/small_profile.py [--requests 2000] [--out bench/SMALL_PROFILE.md]

Each profile: the shipped archive (one worker for small: archive.sh --workers 1), TorchServe with the profile's
config.properties overrides and the gateway with its proxy.env, on free loopback ports, as `PROFILE=... make serve`
would run them. The small profile runs pinned to one core (sched_setaffinity, inherited by every process it
starts) to stand for a 1 vCPU node; the default gets both cores. PSS (proportional set size: shared pages split
between the processes that map them, so the sum is what the stack costs) of the Java frontend, the workers and the
gateway, idle and after --requests 1 MP JPEGs through the gateway from 2 keep-alive clients.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_instruments import make_images  # bench/ is not a package: its modules import by name
from quality_serving import load

from auth_plugin.token_store import TokenStore
from food_rotation import MODEL_NAME
from food_rotation.training.archive import build_archive
from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import ROOT, TorchServe, profile_proxy_env

# label -> (PROFILE, cores, workers the archive asks for, environment of every process started)
VARIANTS = {"default": ("default", {0, 1}, None, {}), "small": ("small", {0}, 1, {}),
            "small, MALLOC_ARENA_MAX=2": ("small", {0}, 1, {"MALLOC_ARENA_MAX": "2"})}


def stack_pss(server: TorchServe, proxy: Proxy) -> dict[str, float]:
    """MiB of PSS: the Java frontend, its workers (its child processes), the gateway."""
    java = psutil.Process(server.pid())
    workers = java.children(recursive=True)
    mib = lambda process: process.memory_full_info().pss / 2**20  # noqa: E731
    return {"java": mib(java), "workers": sum(mib(w) for w in workers), "gateway": mib(psutil.Process(proxy.pid())),
            "worker_count": len(workers)}


def measure(label: str, requests_n: int, photos: list[bytes]) -> dict[str, object]:
    profile, cores, workers, extra = VARIANTS[label]
    os.sched_setaffinity(0, cores)
    os.environ.update(extra)  # inherited by TorchServe, its workers and the gateway
    base = Path(tempfile.mkdtemp(prefix=f"profile-{profile}-"))
    build_archive(ROOT / "weights" / "food_rotation_lite0.pth", "1.0", export_path=base / "model_store",
                  workers=workers)
    ports = free_ports(6)
    env = {"PROFILE": profile, **{f"TORCHSERVE_{api}_PORT": str(port) for api, port in zip(
        ("INFERENCE", "MANAGEMENT", "METRICS", "GRPC_INFERENCE", "GRPC_MANAGEMENT"), ports[1:], strict=True)}}
    server = TorchServe.from_env(base / "torchserve", base / "model_store", env)
    proxy = Proxy(home=base / "proxy", url=f"http://127.0.0.1:{ports[0]}", torchserve=server,
                  extra_env={**profile_proxy_env(env), "PROXY_DATASETS_DIR": str(base / "datasets")})
    try:
        server.start()
        server.wait_ready(min_workers=workers or 2, timeout=300)
        proxy.start()
        proxy.wait_ready()
        store = TokenStore(proxy.token_db)
        token, _ = store.issue("bench", ["predict"], 3600)
        store.close()
        url = f"{proxy.url}/predictions/{MODEL_NAME}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
        load(url, headers, photos, 2, 3.0)  # warm up
        time.sleep(5)
        idle = stack_pss(server, proxy)
        began, done, failed = time.perf_counter(), 0, 0
        while done < requests_n:
            rate, _, bad = load(url, headers, photos, 2, 10.0)
            done += round(rate * 10.0)
            failed += bad
        elapsed = time.perf_counter() - began
        return {"profile": label, "cores": len(cores), "idle": idle, "after": stack_pss(server, proxy),
                "requests": done, "images_s": done / elapsed, "failed": failed}
    finally:
        proxy.stop()
        server.stop()
        os.sched_setaffinity(0, {0, 1})
        for key in extra:
            del os.environ[key]


def table(rows: list[dict[str, object]], requests_n: int) -> str:
    def total(part: dict) -> float:
        return part["java"] + part["workers"] + part["gateway"]

    lines = ["| profile | cores | workers | PSS idle: Java + workers + gateway = total MiB | PSS after "
             f"~{requests_n} requests, total MiB | images/s through the gateway (c=2) | failed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        idle, after = row["idle"], row["after"]
        lines.append(f"| {row['profile']} | {row['cores']} | {idle['worker_count']} | {idle['java']:.0f} + "
                     f"{idle['workers']:.0f} + {idle['gateway']:.0f} = **{total(idle):.0f}** | "
                     f"{total(after):.0f} ({row['requests']} requests) | {row['images_s']:.1f} | {row['failed']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--variant", action="append", choices=list(VARIANTS),
                        help="measure only these (repeatable; default: every variant)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "SMALL_PROFILE.md")
    args = parser.parse_args()
    variants = args.variant or list(VARIANTS)
    photos = [path.read_bytes() for path in make_images(("1 MP",))["1 MP"]]
    rows = [measure(label, args.requests, photos) for label in variants]
    chosen = "".join(f" --variant '{label}'" for label in args.variant or ())
    text = (f"# The small-node profile against the default: memory and throughput\n\nReproduce: `.venv/bin/python "
            f"bench/small_profile.py --requests {args.requests}{chosen}` with nothing else running. "
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.\n\n"
            + (__doc__ or "").split("\n\n", 2)[2].strip() + "\n\n" + table(rows, args.requests) + "\n")
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
