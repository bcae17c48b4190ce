"""TorchServe as a process: its effective config (config.properties, the model store, a PROFILE's overrides, free
ports for tests), started in a home folder of its own, waited for, stopped.

Each instance lives in its own home folder: TorchServe's effective config, key_file.json, pid file (TorchServe
keeps it under $TMPDIR, so TMPDIR points there) and logs. Two instances never share state, so the tests can run
while `make serve` is up.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import requests

from auth_plugin.torchserve_keys import BlockingTorchServeKeys, KeysUnavailable
from food_rotation import MODEL_NAME
from operations.processes import ServingError, free_ports, running_pid, stop_recorded

ROOT = Path(__file__).resolve().parents[1]


def read_properties(path: Path) -> dict[str, str]:
    """The key=value lines of a Java .properties file (as TorchServe's config uses them: no continuations)."""
    properties = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def allowed_urls_for(model_store: Path) -> str:
    """Only archives directly inside this model store may be registered by URL (ShellTorch, CVE-2023-43654).

    Backslashes are doubled because .properties files treat a single one as an escape.
    """
    return "^file://" + re.escape(str(model_store)).replace("\\", "\\\\") + "/[A-Za-z0-9._-]+\\\\.mar$"


PROFILES = ROOT / "deploy" / "profiles"


def profile_dir(environ: Mapping[str, str]) -> Path | None:
    """deploy/profiles/<PROFILE> (`PROFILE=small make serve`), None for the default; ServingError for an unknown
    profile."""
    name = environ.get("PROFILE", "")
    if name in ("", "default"):
        return None
    if not re.fullmatch(r"[a-z0-9_-]+", name) or not (PROFILES / name).is_dir():
        known = ", ".join(sorted(p.name for p in PROFILES.iterdir() if p.is_dir()))
        raise ServingError(f"PROFILE={name!r} is not one of: default, {known}")
    return PROFILES / name


def profile_proxy_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The profile's gateway settings (its proxy.env), each unless the environment sets it."""
    folder = profile_dir(environ)
    if folder is None or not (folder / "proxy.env").is_file():
        return {}
    return {key: value for key, value in read_properties(folder / "proxy.env").items() if key not in environ}


@dataclass(frozen=True)
class TorchServe:
    home: Path
    model_store: Path
    base_config: Path = ROOT / "config.properties"
    overrides: Mapping[str, str] | None = None

    @classmethod
    def on_free_ports(cls, home: Path, model_store: Path, **overrides: str) -> TorchServe:
        """An instance on six unused loopback ports (REST, gRPC, the first worker's), for tests and the bench."""
        inference, management, metrics, grpc_inference, grpc_management, workers = free_ports(6)
        return cls(home=home, model_store=model_store, overrides={
            "initial_worker_port": str(workers),  # the workers' socket names start here
            "inference_address": f"http://127.0.0.1:{inference}",
            "management_address": f"http://127.0.0.1:{management}",
            "metrics_address": f"http://127.0.0.1:{metrics}",
            "grpc_inference_port": str(grpc_inference),
            "grpc_management_port": str(grpc_management),
            **overrides,
        })

    @classmethod
    def from_env(cls, home: Path, model_store: Path, environ: Mapping[str, str]) -> TorchServe:
        """The instance `make serve` runs: config.properties, under the PROFILE's overrides (deploy/profiles/),
        with TORCHSERVE_<API>_PORT moving a port (always on loopback: only the gateway is public)."""
        folder = profile_dir(environ)
        overrides = read_properties(folder / "config.properties") if folder else {}
        for api, key in (("INFERENCE", "inference_address"), ("MANAGEMENT", "management_address"),
                         ("METRICS", "metrics_address"), ("GRPC_INFERENCE", "grpc_inference_port"),
                         ("GRPC_MANAGEMENT", "grpc_management_port")):
            port = environ.get(f"TORCHSERVE_{api}_PORT", "")
            if port:
                if not port.isdigit() or not 0 < int(port) < 65536:
                    raise ServingError(f"TORCHSERVE_{api}_PORT must be a port number, got {port!r}")
                overrides[key] = port if key.startswith("grpc") else f"http://127.0.0.1:{port}"
        return cls(home=home, model_store=model_store, overrides=overrides)

    @property
    def config(self) -> dict[str, str]:
        config = read_properties(self.base_config)
        config.update({"model_store": str(self.model_store), "allowed_urls": allowed_urls_for(self.model_store)})
        config.update(self.overrides or {})
        return config

    @property
    def launch_config(self) -> dict[str, str]:
        """`config` as this instance starts with it. TorchServe puts its workers' sockets in java.io.tmpdir (/tmp,
        whatever TMPDIR says) named by port alone: two instances on one host would share them, so each gets its
        own folder (issue 33). A container, alone in its /tmp, runs `config` as it is (deploy/kubernetes)."""
        config = self.config
        config["vmargs"] = f"{config.get('vmargs', '')} -Djava.io.tmpdir={self.socket_dir}".strip()
        return config

    @property
    def socket_dir(self) -> Path:
        """home/tmp, or where that path is too long for a Unix socket's name (108 bytes), a short folder named
        after it under /tmp."""
        own = self.home / "tmp"
        if len(str(own / ".ts.sock.65535")) < 100:
            return own
        return Path("/tmp") / f"frs-{hashlib.sha256(str(own).encode()).hexdigest()[:12]}"

    @property
    def inference_url(self) -> str:
        return self.config["inference_address"]

    @property
    def management_url(self) -> str:
        return self.config["management_address"]

    @property
    def pid_file(self) -> Path:
        return self.home / "tmp" / ".model_server.pid"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(TMPDIR=str(self.home / "tmp"), LOG_LOCATION=str(self.home / "logs"),
                   METRICS_LOCATION=str(self.home / "logs"))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    @property
    def key_file(self) -> Path:
        return self.home / "key_file.json"

    @cached_property
    def keys(self) -> BlockingTorchServeKeys:
        """TorchServe's keys for blocking clients, renewed before they expire (auth_plugin.torchserve_keys)."""
        return BlockingTorchServeKeys(self.key_file, self.management_url)

    def pid(self) -> int | None:
        return running_pid(self.pid_file)

    def start(self) -> None:
        if self.pid() is not None:
            raise ServingError(f"TorchServe already runs from {self.home} (pid {self.pid()}); stop it first")
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        config_file = self.home / "config.properties"
        config_file.write_text("".join(f"{key}={value}\n" for key, value in self.launch_config.items()))
        launcher_log = self.home / "logs" / "launcher.log"
        with launcher_log.open("w") as log:  # not a pipe: the Java server inherits it and outlives the launcher
            result = subprocess.run(
                ["torchserve", "--start", "--ncs", "--ts-config", str(config_file),
                 "--model-store", str(self.model_store)],
                cwd=self.home, env=self._env(), stdout=log, stderr=subprocess.STDOUT, timeout=60,
            )
        if result.returncode != 0:
            raise ServingError(f"torchserve --start failed: {launcher_log.read_text()[-2000:]}")

    def wait_ready(self, model: str = MODEL_NAME, min_workers: int = 1, timeout: float = 120.0) -> None:
        """Until the key file exists and `model` has `min_workers` READY workers (the model-level health)."""
        started = time.monotonic()
        last = "no answer yet"
        while time.monotonic() - started < timeout:
            if self.pid() is None and time.monotonic() - started > 5:  # the launcher writes the pid file late
                raise ServingError(f"TorchServe exited; see {self.home / 'logs'}")
            try:
                answer = self.keys.request("GET", f"{self.management_url}/models/{model}", "management", timeout=2)
                if answer.ok:
                    workers = answer.json()[0]["workers"]
                    ready = sum(worker["status"] == "READY" for worker in workers)
                    if ready >= min_workers:
                        return
                    last = f"{ready}/{len(workers)} workers ready"
                else:
                    last = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except (OSError, ValueError, KeyError, KeysUnavailable, requests.RequestException) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ServingError(f"{model} not ready after {timeout:.0f}s ({last}); see {self.home / 'logs'}")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (what `torchserve --stop` sends), then SIGKILL; True if something was running."""
        self.key_file.unlink(missing_ok=True)
        return stop_recorded(self.pid_file, timeout)
