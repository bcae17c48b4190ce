"""`make serve` and `make stop`: TorchServe and the token gateway started (whichever is not running), waited for, and
the one working call printed; or both stopped.

    python scripts/serving.py start      # .run/torchserve + .run/proxy, ports from config.properties
    python scripts/serving.py stop
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from auth_plugin.control.smoke_gate import upright_photos
from auth_plugin.settings import ProxySettings
from food_rotation import MODEL_NAME
from operations.gateway_process import Proxy
from operations.processes import ServingError
from operations.torchserve_process import ROOT, TorchServe, profile_proxy_env

RUN_DIR = ROOT / ".run"
SAMPLE_PHOTO = "samples/rotated_scene.jpg"


def ensure_running(server: TorchServe, proxy: Proxy) -> list[str]:
    """Start whichever of the two is not running and wait until both answer. Run again on a healthy stack it
    starts nothing, whatever the age of TorchServe's keys (the readiness check renews them); on a half-dead one
    it starts the missing part. Returns what it did, a line each."""
    actions = []
    if server.pid() is None:
        server.start()
        actions.append("TorchServe was not running: started it")
    server.wait_ready()
    if proxy.pid() is None:
        proxy.start()
        actions.append("the token gateway was not running: started it")
    proxy.wait_ready()
    return actions or ["TorchServe and the token gateway were already running: nothing to start"]


def fix_example(proxy_url: str, token: str, folder: str = "PHOTOS/", out: str = "FIXED/") -> str:
    """A folder of photos through the gateway: the environment names `food-rotation fix` reads."""
    return (f"FOOD_ROTATION_URL={proxy_url} FOOD_ROTATION_TOKEN={token} .venv/bin/food-rotation fix {folder} "
            f"--out {out}")


def curl_example(proxy_url: str, token: str) -> str:
    return (f'curl -H "Authorization: Bearer {token}" --data-binary @{SAMPLE_PHOTO} '
            f"{proxy_url}/predictions/{MODEL_NAME}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    parser.add_argument("--model-store", type=Path, default=ROOT / "model_store")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    try:
        server = TorchServe.from_env(run_dir / "torchserve", args.model_store.resolve(), os.environ)
    except ServingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    chosen = ProxySettings.from_env(os.environ)  # PROXY_HOST and PROXY_PORT move the gateway
    bound, called = chosen.url(), chosen.url(for_callers=True)
    proxy = Proxy(home=run_dir / "proxy", url=bound, torchserve=server, extra_env=profile_proxy_env(os.environ))
    if args.command == "stop":
        stopped = [name for name, part in (("proxy", proxy), ("TorchServe", server)) if part.stop()]
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    try:
        for action in ensure_running(server, proxy):
            print(action)
        token = proxy.saved_token("demo_token", "demo", ["predict"])
        admin = proxy.saved_token("admin_token", "admin", ["admin", "predict"])  # the page, `auth_plugin models`
    except ServingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"TorchServe serves {MODEL_NAME} on {urlsplit(server.inference_url).netloc} (loopback, its own keys); "
          f"the token proxy listens on {urlsplit(bound).netloc}.")
    print(f"Logs: {server.home / 'logs'}, {proxy.log_file}. Stop both with: make stop\n")
    print(f"  {curl_example(called, token)}\n")
    print("That token is a demo token (scope predict, 30 days). Issue your own with\n"
          f"  PROXY_TOKEN_DB={proxy.token_db} .venv/bin/python -m auth_plugin tokens issue --user you "
          "--scopes predict\n"
          "Model versions: .venv/bin/python -m auth_plugin models list (admin token in .run/proxy/admin_token)\n")
    print(f"A folder of photos made upright (copies in FIXED/, a CSV report; JPEGs turned without loss):\n"
          f"  {fix_example(called, token)}\n")
    print(f"Admin page (predict, fix, datasets, versions): open {called}/ and sign in with the admin token\n"
          f"  {admin}\n"
          "Corrections collected there become the next version (a canary) with: make retrain\n"
          "  (every dataset collected so far; DATASET=feedback-1 for one)")
    if not upright_photos(chosen.gate_real_dir, 1):
        print(f"\nNote: new versions are gated on the generated samples only: no real photos in "
              f"{chosen.gate_real_dir}.\n  make real-data fetches them (PROXY_GATE_REAL_DIR names another folder).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
