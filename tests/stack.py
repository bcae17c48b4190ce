"""Real TorchServe and proxy processes for the integration and browser tests: real .mar files from
scripts/archive.sh, free loopback ports, tokens issued through the CLI. Plain helpers; the fixtures over them are in
tests/conftest.py (the session's TorchServe) and tests/integration/conftest.py.

The session starts one TorchServe. A module whose tests change what is served (rollouts, retraining, the admin page)
takes a model of its own on it (`model_of_its_own`: its archives under its own model name, a gateway of its own in
front of it, all of it unregistered when the module ends), the way TorchServe serves several models side by side.
Only modules that need a TorchServe of another make start their own: a short key life, killed or restarted
TorchServes, several pods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import torch
import yaml

from food_rotation import MODEL_NAME
from food_rotation.rotation_model import RotationNet
from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import ROOT, TorchServe


def build_archive(weights: Path, version: str, store: Path, archive_name: str = MODEL_NAME,
                  config: Path | None = None, model: str = MODEL_NAME, workers: int | None = None) -> Path:
    """`workers` replaces the config's minWorkers and maxWorkers (archive.sh --workers)."""
    build = subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version", version,
                            "--name", model, "--archive-name", archive_name, "--export-path", str(store),
                            *(["--config", str(config)] if config else []),
                            *(["--workers", str(workers)] if workers is not None else [])],
                           capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stderr
    return store / f"{archive_name}.mar"


def every_guess_config(folder: Path) -> Path:
    """handler/model-config.yaml with min_confidence 0: the demo weights are not calibrated, so the shipped bar
    (chosen for the shipped model's calibrated confidence) means nothing for them; every guess is applied."""
    return config_with_min_confidence(folder, 0.0)


def config_with_min_confidence(folder: Path, min_confidence: float) -> Path:
    """A copy of handler/model-config.yaml in `folder` whose handler takes `min_confidence`."""
    config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    config["handler"]["min_confidence"] = min_confidence
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-config.yaml").write_text(yaml.safe_dump(config))
    return folder / "model-config.yaml"


def build_untrained_archive(folder: Path, version: str, store: Path, model: str = MODEL_NAME,
                            workers: int | None = None) -> Path:
    """A model that loads and answers, but guesses: the smoke gate must see it and refuse it."""
    weights = folder / "untrained.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(RotationNet("mobilenet_v3_small").state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"arch": "mobilenet_v3_small", "image_size": 224,
                                                        "classes": [0, 90, 180, 270]}))
    return build_archive(weights, version, store, f"{model}-v{version}", model=model, workers=workers)


@contextmanager
def running_torchserve(home: Path, store: Path, **config: str) -> Iterator[TorchServe]:
    """TorchServe on free loopback ports, loading food_rotation.mar from `store` (`config` overrides lines of
    config.properties); stopped on exit."""
    server = TorchServe.on_free_ports(home, store, **config)
    try:
        server.start()
        server.wait_ready(min_workers=2, timeout=180)
        yield server
    finally:
        server.stop()


@contextmanager
def model_of_its_own(torchserve: TorchServe, model: str, home: Path, workers: int = 2, **env: str) -> Iterator[Proxy]:
    """`model` (its `model`.mar already in the TorchServe's store) registered as TorchServe registers it at start,
    and a gateway of its own serving it (its own routing table, tokens and datasets under `home`; `env` its
    settings). `workers`: what the first version is registered with and the gateway deploys each next one with
    (PROXY_DEPLOY_WORKERS); 1 is the small-node profile's and half the CPU of starting a version. An archive's own
    minWorkers wins over both, so build the module's archives with the same `workers`. At the end the gateway stops
    and every version of `model` is unregistered: the next module finds the TorchServe as it was."""
    answer = torchserve.keys.request("POST", f"{torchserve.management_url}/models", "management", timeout=200,
                                     params={"url": f"{model}.mar", "initial_workers": workers, "synchronous": "true"})
    assert answer.ok, answer.text
    try:
        with running_proxy(home, torchserve, PROXY_MODEL_NAME=model, PROXY_DEPLOY_WORKERS=str(workers),
                           **env) as proxy:
            yield proxy
    finally:
        unregister_every_version(torchserve, model)


def unregister_every_version(server: TorchServe, model: str) -> None:
    """The default last: TorchServe refuses to remove a default version while others are registered."""
    url = f"{server.management_url}/models/{model}"
    default = server.keys.request("GET", url, "management")
    if default.status_code == 404:
        return
    default.raise_for_status()
    listed = server.keys.request("GET", f"{url}/all", "management")
    listed.raise_for_status()
    versions = [entry["modelVersion"] for entry in listed.json()]
    default_version = default.json()[0]["modelVersion"]
    for version in sorted(versions, key=lambda version: version == default_version):
        gone = server.keys.request("DELETE", f"{url}/{version}", "management", timeout=60)
        assert gone.ok or gone.status_code == 404, gone.text


@contextmanager
def running_proxy(home: Path, torchserve: TorchServe, **env: str) -> Iterator[Proxy]:
    (port,) = free_ports(1)
    scheme = "https" if env.get("PROXY_TLS_CERT_FILE") else "http"
    server = Proxy(home=home, url=f"{scheme}://127.0.0.1:{port}", torchserve=torchserve,
                   extra_env={"PROXY_DATASETS_DIR": str(home / "datasets"), **env})
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def worker_pids(server: TorchServe, model: str = MODEL_NAME) -> list[int]:
    answer = server.keys.request("GET", f"{server.management_url}/models/{model}", "management")
    answer.raise_for_status()
    return sorted(worker["pid"] for worker in answer.json()[0]["workers"] if worker["status"] == "READY")


def issue_token(proxy: Proxy, *args: str) -> tuple[int, str]:
    """Through the CLI, as an operator would: (token id, token)."""
    result = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "issue", *args], cwd=ROOT,
                            env={**os.environ, "PROXY_TOKEN_DB": str(proxy.token_db)}, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    token_id = int(result.stderr.split("# id ")[1].split(",")[0])
    ISSUED.append(result.stdout.strip())
    return token_id, result.stdout.strip()


ISSUED: list[str] = []  # every token the suite handed out, to look for in the logs at the end


def torchserve_predictions(server: TorchServe) -> float:
    """TorchServe's own count of inference requests (its Prometheus metrics, on its loopback metrics port)."""
    text = requests.get(f"{server.config['metrics_address']}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ts_inference_requests_total"))
