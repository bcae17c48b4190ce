"""The container's entry point, run outside a container (CI has no container engine; docs/deploying.md shows the
image of deploy/container/Dockerfile built and run with podman): it starts TorchServe and the gateway, serves, passes
the image's HEALTHCHECK command, and on SIGTERM stops the gateway, then TorchServe, and exits 0 with nothing left
running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from operations.processes import alive, free_ports
from tests.conftest import ROOT
from tests.photos import encode, scene
from tests.stack import build_archive

pytestmark = pytest.mark.integration


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK CMD (exec form, on the line after HEALTHCHECK), as the engine runs it."""
    lines = (ROOT / "deploy" / "container" / "Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HEALTHCHECK"))
    return json.loads(lines[start + 1].strip().removeprefix("CMD "))


def test_the_entry_point_serves_and_stops_both_parts_on_sigterm(tmp_path, demo_weights):
    store = tmp_path / "model_store"
    build_archive(demo_weights, "1.0", store)
    gateway, *torchserve = free_ports(6)
    env = {**os.environ, "PROXY_PORT": str(gateway), "PROXY_DATASETS_DIR": str(tmp_path / "datasets"),
           **{f"TORCHSERVE_{api}_PORT": str(port) for api, port in zip(
               ("INFERENCE", "MANAGEMENT", "METRICS", "GRPC_INFERENCE", "GRPC_MANAGEMENT"), torchserve, strict=True)}}
    run = tmp_path / "run"
    init = subprocess.Popen([sys.executable, "-m", "operations.container_init", "--run-dir", str(run),
                             "--model-store", str(store)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{gateway}"
        for _ in range(300):
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        issued = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "issue", "--user", "box"], cwd=ROOT,
                                env={**env, "PROXY_TOKEN_DB": str(run / "proxy" / "tokens.sqlite3")},
                                capture_output=True, text=True, timeout=30)
        token = issued.stdout.strip()
        answer = requests.post(f"{url}/predictions/food_rotation", data=encode(scene()), timeout=60,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
        assert answer.status_code == 200, answer.text
        check = healthcheck_command()  # on the port this gateway was given, as `-e PROXY_PORT=...` would set it
        assert check[0] == "python"
        assert subprocess.run([sys.executable, *check[1:]], cwd=ROOT, env=env, timeout=30).returncode == 0
        java = int((run / "torchserve" / "tmp" / ".model_server.pid").read_text())
        gateway_pid = int((run / "proxy" / "proxy.pid").read_text())
        init.send_signal(signal.SIGTERM)
        output, _ = init.communicate(timeout=120)
    finally:
        if init.poll() is None:
            init.kill()
    assert init.returncode == 0, output
    assert "SIGTERM: stopping the gateway, then TorchServe" in output
    assert not alive(java) and not alive(gateway_pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=2)
