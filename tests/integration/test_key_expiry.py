"""TorchServe's keys expire (`token_expiration_min`, an hour by default), and everything that talks to TorchServe
renews them: a real stack whose keys live 18 s is left alone past that, then used by each client in turn: the CLI's
`models list`, a rollout (deploy a canary, promote it), predictions, and `make serve` run again (its readiness check
and the curl it prints), then once more with the gateway gone (it starts it, and says so). None of them may log a
key."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from auth_plugin.torchserve_keys import KeyFile, Keys, KeysUnavailable
from operations.torchserve_process import TorchServe
from tests.conftest import ROOT
from tests.photos import CLEAR_SCENES, encode, scene
from tests.stack import build_archive, issue_token, running_proxy, running_torchserve

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow (CI: .ci/run)

KEY_LIFE_MIN = "0.3"


class KeyWatch:
    """Every key TorchServe's key file ever held while the test ran (read ten times a second: a key lives >= 9 s
    between renewals), to look for in the logs afterwards."""

    def __init__(self, key_file: Path) -> None:
        self._file = KeyFile(key_file)
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def current(self) -> Keys:
        self._file.reload()
        keys = self._file.load()
        self.seen.update((keys.inference, keys.management, keys.api))
        return keys

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.current()
            except KeysUnavailable:  # TorchServe rewrites the file in place: empty for a moment
                pass

    def __enter__(self) -> KeyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_until_expired(torchserve: TorchServe, watch: KeyWatch) -> Keys:
    """Sleep past both keys' expiry, touching nothing; the expired keys, proven refused by TorchServe itself."""
    keys = watch.current()
    time.sleep(max(keys.expires_at.values()) - time.time() + 1.5)
    assert watch.current() == keys  # nothing renewed them meanwhile: what follows meets expired keys
    refused = requests.get(f"{torchserve.management_url}/models", timeout=10,
                           headers={"Authorization": f"Bearer {keys.management}"})
    assert refused.status_code == 400 and "InvalidKeyException" in refused.text
    return keys


@pytest.fixture(scope="module")
def stack(tmp_path_factory, demo_weights) -> Iterator[tuple[Path, TorchServe, object, KeyWatch]]:
    base = tmp_path_factory.mktemp("key_expiry")
    store = base / "model_store"
    build_archive(demo_weights, "1.0", store)
    build_archive(demo_weights, "2.0", store, "food_rotation-v2.0")
    with running_torchserve(base / "torchserve", store, token_expiration_min=KEY_LIFE_MIN) as torchserve:
        with running_proxy(base / "proxy", torchserve, PROXY_RECONCILE_INTERVAL_S="3600") as proxy:
            with KeyWatch(torchserve.key_file) as watch:
                yield base, torchserve, proxy, watch


def test_every_client_of_torchserve_outlives_its_keys(stack):
    base, torchserve, proxy, watch = stack
    # Its workers' sockets are its own (java.io.tmpdir), not /tmp/.ts.sock.<port> shared with every other instance
    assert len(list(torchserve.socket_dir.glob(".ts.sock.*"))) >= 2
    assert torchserve.socket_dir.is_relative_to(base) or torchserve.socket_dir.name.startswith("frs-")
    admin_token = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    user_token = issue_token(proxy, "--user", "cook", "--scopes", "predict")[1]
    admin = {"Authorization": f"Bearer {admin_token}"}
    photo = encode(scene(CLEAR_SCENES[0]))

    expired = wait_until_expired(torchserve, watch)
    listed = subprocess.run([sys.executable, "-m", "auth_plugin", "models", "--url", proxy.url,
                             "--token", admin_token, "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "1.0" in listed.stdout
    deployed = requests.post(f"{proxy.url}/admin/models/food_rotation/deploy", headers=admin, timeout=600,
                             json={"archive": "food_rotation-v2.0.mar", "canary": 10})
    assert deployed.status_code == 201, deployed.text
    promoted = requests.post(f"{proxy.url}/admin/models/food_rotation/promote", headers=admin, timeout=600,
                             json={"version": "2.0"})
    assert promoted.status_code == 200, promoted.text
    answer = requests.post(f"{proxy.url}/predictions/food_rotation", data=photo, timeout=60,
                           headers={"Authorization": f"Bearer {user_token}", "Content-Type": "image/jpeg"})
    assert answer.status_code == 200 and answer.json()["model_version"] == "2.0", answer.text
    assert watch.current().management != expired.management  # renewed, not merely reread

    wait_until_expired(torchserve, watch)  # `make serve` run again by someone who came back later
    ports = {f"TORCHSERVE_{api}_PORT": torchserve.config[key].rsplit(":", 1)[-1] for api, key in (
        ("INFERENCE", "inference_address"), ("MANAGEMENT", "management_address"), ("METRICS", "metrics_address"),
        ("GRPC_INFERENCE", "grpc_inference_port"), ("GRPC_MANAGEMENT", "grpc_management_port"))}
    make_serve_env = {**os.environ, **ports, "PROXY_PORT": proxy.url.rsplit(":", 1)[-1],
                      "PROXY_DATASETS_DIR": str(base / "proxy" / "datasets")}

    def make_serve() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/serving.py", "start", "--run-dir", str(base),
                               "--model-store", str(torchserve.model_store)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=make_serve_env)

    def printed_curl_answers(run: subprocess.CompletedProcess) -> None:
        curl = next(line.strip() for line in run.stdout.splitlines() if line.strip().startswith("curl "))
        called = subprocess.run([*shlex.split(curl), "--silent", "--show-error", "--max-time", "60",
                                 "--write-out", "\n%{http_code}"], cwd=ROOT, capture_output=True, text=True,
                                timeout=90)
        assert called.stdout.rsplit("\n", 1)[-1] == "200", called.stdout + called.stderr
        assert '"model_degree"' in called.stdout

    started = time.monotonic()
    again = make_serve()
    assert again.returncode == 0, again.stdout + again.stderr
    assert time.monotonic() - started < 20
    assert "already running: nothing to start" in again.stdout
    printed_curl_answers(again)

    proxy.stop()  # half dead: the gateway gone, TorchServe alive
    repaired = make_serve()
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "the token gateway was not running: started it" in repaired.stdout
    assert "TorchServe was not running" not in repaired.stdout and proxy.pid() is not None
    printed_curl_answers(repaired)

    logs = "\n".join(path.read_text(errors="replace") for path in base.rglob("*.log"))
    printed = "\n".join(run.stdout + run.stderr for run in (listed, again, repaired))
    assert len(watch.seen) >= 6 and "POST /predictions/food_rotation" in logs
    assert [key for key in watch.seen if key in logs or key in printed] == []
