"""The token gateway (auth_plugin) as a process of its own, for `make serve`, the container's entry point, the
tests and the benches: started with PROXY_* settings pointing at one TorchServe, waited for, stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning

from auth_plugin.settings import ROOT
from food_rotation import MODEL_NAME
from operations.processes import ServingError, running_pid, stop_recorded

if TYPE_CHECKING:
    from operations.torchserve_process import TorchServe

DEMO_TOKEN_TTL_S = 30 * 86400


def answers(url: str, path: str, timeout_s: float) -> bool:
    """Whether the gateway at `url` answers `path` with 200 now. Over HTTPS the certificate names the public host,
    not the loopback address probed here, so it is not verified: the probe sends no secret, and liveness of this
    machine's own gateway is all it asks (wait_ready, the container's HEALTHCHECK)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            return requests.get(f"{url}{path}", timeout=timeout_s, verify=False).status_code == 200
    except requests.RequestException:
        return False


@dataclass(frozen=True)
class Proxy:
    """The token proxy (auth_plugin) as a process of its own, configured by PROXY_* variables."""

    home: Path
    url: str
    torchserve: TorchServe
    extra_env: Mapping[str, str] | None = None  # more PROXY_* settings (JWT, rate limit, ...)

    @property
    def token_db(self) -> Path:
        return self.home / "tokens.sqlite3"

    @property
    def pid_file(self) -> Path:
        return self.home / "proxy.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "proxy.log"

    def environment(self) -> dict[str, str]:
        address = urlsplit(self.url)
        return {**os.environ, "PROXY_HOST": address.hostname or "127.0.0.1", "PROXY_PORT": str(address.port),
                "PROXY_INFERENCE_URL": self.torchserve.inference_url,
                "PROXY_MANAGEMENT_URL": self.torchserve.management_url,
                "PROXY_TORCHSERVE_KEY_FILE": str(self.torchserve.key_file),
                "PROXY_TOKEN_DB": str(self.token_db), "PROXY_MODEL_NAME": MODEL_NAME,
                "PROXY_MODEL_STORE": str(self.torchserve.model_store), **(self.extra_env or {})}

    def pid(self) -> int | None:
        return running_pid(self.pid_file)

    def start(self) -> None:
        if self.pid() is not None:
            raise ServingError(f"the proxy already runs from {self.home} (pid {self.pid()}); stop it first")
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as log:
            process = subprocess.Popen([sys.executable, "-m", "auth_plugin", "serve"], cwd=ROOT,
                                       env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(process.pid))

    def wait_ready(self, timeout: float = 30.0, path: str = "/readyz") -> None:
        """Until `path` answers 200: /readyz (TorchServe's workers too) or /healthz (the proxy alone)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.pid() is None:
                raise ServingError(f"the proxy exited; see {self.log_file}")
            if answers(self.url, path, timeout_s=2):
                return
            time.sleep(0.2)
        raise ServingError(f"the proxy is not ready after {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 10.0) -> bool:
        return stop_recorded(self.pid_file, timeout)

    def saved_token(self, name: str, user: str, scopes: list[str]) -> str:
        """A token kept in home/<name> (mode 600), so re-runs of `make serve` print and use the same one."""
        from auth_plugin.token_store import TokenStore

        saved = self.home / name
        store = TokenStore(self.token_db)
        try:
            if saved.is_file():
                token = saved.read_text().strip()
                record = store.lookup(token)
                if record is not None and not record.revoked and record.expires_at > time.time() + 3600:
                    return token
            token, _ = store.issue(user, scopes, DEMO_TOKEN_TTL_S)
        finally:
            store.close()
        saved.touch(mode=0o600)
        saved.write_text(token + "\n")
        return token
