"""Where the token proxy's own CPU goes per request: the real app (uvloop, real tokens in SQLite) in front of a
stand-in TorchServe that answers at once, loaded by `ab` from another process, under cProfile.

    .venv/bin/python bench/profile_proxy.py [--requests 400] [--size 1MP|12MP] [--top 25]

Prints the proxy's CPU ms per request (process time over the run) and the functions that take it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvloop
from aiohttp import web
from bench_instruments import SIZES, make_images

from auth_plugin.app import create_app
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore
from operations.processes import free_ports


def stand_in_torchserve(key_file: Path) -> web.Application:
    """Answers every prediction at once with a prediction-sized JSON body, and its keys as TorchServe writes them."""
    key_file.write_text(json.dumps({key: {"key": "k" * 8, "expiration time": "2099-01-01T00:00:00Z"}
                                    for key in ("management", "inference", "API")}))
    answer = json.dumps({"model_degree": 90, "confidence": 0.99, "model_version": "1.0"}).encode()

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    async def describe(request: web.Request) -> web.Response:
        return web.json_response([{"modelVersion": "1.0", "modelUrl": "food_rotation.mar",
                                   "workers": [{"status": "READY"}]}])

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/predictions/{model}", predict)
    app.router.add_post("/predictions/{model}/{version}", predict)
    app.router.add_get("/models/{model}", describe)
    app.router.add_get("/models/{model}/all", describe)
    return app


class Server(threading.Thread):
    """`app` on its own uvloop in a thread; `measure` is set around the measured load, and `profile` then holds
    this thread's functions by the CPU time they took (thread time: the other server's work is not in it)."""

    def __init__(self, app: web.Application, port: int, profiled: bool) -> None:
        super().__init__(daemon=True)
        self.app, self.port, self.profiled = app, port, profiled
        self.ready, self.measure, self.done, self.stop = (threading.Event() for _ in range(4))
        self.profile = cProfile.Profile(time.thread_time)
        self.cpu_s = 0.0

    def run(self) -> None:
        async def main() -> None:
            runner = web.AppRunner(self.app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.ready.set()
            while not self.measure.is_set():
                await asyncio.sleep(0.01)
            started = time.thread_time()
            if self.profiled:
                self.profile.enable()
            while not self.stop.is_set():
                await asyncio.sleep(0.01)
            if self.profiled:
                self.profile.disable()
            self.cpu_s = time.thread_time() - started
            self.done.set()
            await runner.cleanup()
        uvloop.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--size", choices=[label.replace(" ", "") for label in SIZES], default="1MP")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true",
                        help="count the proxy's CPU without the profiler's own cost (no function table)")
    args = parser.parse_args(argv)
    photo = make_images((args.size[:-2] + " MP",))[args.size[:-2] + " MP"][0]
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        upstream_port, proxy_port = free_ports(2)
        store = TokenStore(home / "tokens.sqlite3")
        token, _ = store.issue("bench", ["predict"], 3600)
        store.close()
        settings = ProxySettings(port=proxy_port, inference_url=f"http://127.0.0.1:{upstream_port}",
                                 management_url=f"http://127.0.0.1:{upstream_port}",
                                 torchserve_key_file=home / "key_file.json", token_db=home / "tokens.sqlite3",
                                 datasets_dir=home / "datasets", model_store=home)
        upstream = Server(stand_in_torchserve(home / "key_file.json"), upstream_port, profiled=False)
        proxy = Server(create_app(settings), proxy_port, profiled=not args.no_profile)
        for server in (upstream, proxy):
            server.start()
            server.ready.wait(10)
        url = f"http://127.0.0.1:{proxy_port}/predictions/food_rotation"
        command = ["ab", "-q", "-k", "-c", str(args.concurrency), "-p", str(photo), "-T", "image/jpeg",
                   "-H", f"Authorization: Bearer {token}"]
        subprocess.run([*command, "-n", "20", url], check=True, capture_output=True)  # warm
        for server in (upstream, proxy):
            server.measure.set()
        result = subprocess.run([*command, "-n", str(args.requests), url], check=True, capture_output=True,
                                text=True)
        for server in (upstream, proxy):
            server.stop.set()
            server.done.wait(10)
    profiled = "without the profiler" if args.no_profile else "under the profiler"
    failed = [line for line in result.stdout.splitlines() if "Failed requests" in line or "Non-2xx" in line]
    print(f"{args.requests} requests of {photo.stat().st_size / 1e6:.2f} MB: the proxy's thread took "
          f"{proxy.cpu_s / args.requests * 1000:.2f} ms CPU per request ({profiled}; the stand-in "
          f"TorchServe {upstream.cpu_s / args.requests * 1000:.2f} ms); {'; '.join(failed)}")
    if not args.no_profile:
        pstats.Stats(proxy.profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
