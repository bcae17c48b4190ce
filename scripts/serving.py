"""Start, wait for, and stop a TorchServe of this project; used by `make serve` / `make stop` and by the tests.

Each instance lives in its own home folder: its effective config, key_file.json, pid file (TorchServe keeps it
under $TMPDIR, so TMPDIR points there) and logs. Two instances never share state, so tests can run while
`make serve` is up.

    python -m scripts.serving start      # .run/torchserve, ports from config.properties
    python -m scripts.serving stop
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "food_rotation"
DEFAULT_HOME = ROOT / ".run" / "torchserve"
SAMPLE_PHOTO = "samples/rotated_scene.jpg"


class ServingError(Exception):
    """TorchServe did not start, or did not become ready in time."""


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


@dataclass(frozen=True)
class TorchServe:
    home: Path
    model_store: Path
    base_config: Path = ROOT / "config.properties"
    overrides: Mapping[str, str] | None = None

    @property
    def config(self) -> dict[str, str]:
        config = read_properties(self.base_config)
        config.update({"model_store": str(self.model_store), "allowed_urls": allowed_urls_for(self.model_store)})
        config.update(self.overrides or {})
        return config

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

    def keys(self) -> dict[str, str]:
        """TorchServe's current keys: {"inference": ..., "management": ..., "API": ...}."""
        document = json.loads((self.home / "key_file.json").read_text())
        return {kind: entry["key"] for kind, entry in document.items()}

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        if self.pid() is not None:
            raise ServingError(f"TorchServe already runs from {self.home} (pid {self.pid()}); stop it first")
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        (self.home / "key_file.json").unlink(missing_ok=True)
        config_file = self.home / "config.properties"
        config_file.write_text("".join(f"{key}={value}\n" for key, value in self.config.items()))
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
                headers = {"Authorization": f"Bearer {self.keys()['management']}"}
                answer = requests.get(f"{self.management_url}/models/{model}", headers=headers, timeout=2)
                if answer.ok:
                    workers = answer.json()[0]["workers"]
                    ready = sum(worker["status"] == "READY" for worker in workers)
                    if ready >= min_workers:
                        return
                    last = f"{ready}/{len(workers)} workers ready"
                else:
                    last = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except (OSError, ValueError, KeyError, requests.RequestException) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ServingError(f"{model} not ready after {timeout:.0f}s ({last}); see {self.home / 'logs'}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop gracefully, then kill; True if something was running."""
        pid = self.pid()
        if pid is None:
            return False
        subprocess.run(["torchserve", "--stop"], cwd=self.home, env=self._env(), capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        (self.home / "key_file.json").unlink(missing_ok=True)
        return True


def curl_example(server: TorchServe) -> str:
    key = server.keys()["inference"]
    return (f'curl -H "Authorization: Bearer {key}" -H "Content-Type: image/jpeg" '
            f"--data-binary @{SAMPLE_PHOTO} {server.inference_url}/predictions/{MODEL_NAME}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--model-store", type=Path, default=ROOT / "model_store")
    args = parser.parse_args(argv)
    server = TorchServe(home=args.home.resolve(), model_store=args.model_store.resolve())
    try:
        if args.command == "stop":
            print("TorchServe stopped." if server.stop() else "TorchServe was not running.")
            return 0
        if args.command == "start" and server.pid() is None:
            server.start()
        elif server.pid() is None:
            print("TorchServe is not running.")
            return 1
        server.wait_ready()
    except ServingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    host = urlsplit(server.inference_url)
    print(f"TorchServe is serving {MODEL_NAME} on {host.netloc} (logs: {server.home / 'logs'}). Try:\n")
    print(f"  {curl_example(server)}\n")
    print("TorchServe's keys expire after token_expiration_min (config.properties); "
          f"current ones: {server.home / 'key_file.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
