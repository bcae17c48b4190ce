"""The small overlay's pod, run as processes (no cluster or image here): its containers' own commands, environment
and configuration from the rendered manifests, with the volumes moved into a temporary folder, the image's
/srv/app onto the checkout and TorchServe's ports onto free ones. The seed builds the one-worker archive, TorchServe
starts under the container's shell, the gateway under its command; the probes pass, a prediction is served, and the
pod's stop order (the gateway, then TorchServe) leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from operations.processes import alive, free_ports
from tests.kustomize import ROOT, config_map, container, gateway_settings, rendered
from tests.photos import encode, scene
from tests.stack import ISSUED

pytestmark = pytest.mark.integration

TORCHSERVE_PORTS = ("8180", "8181", "8182", "8183", "8184")  # config.properties


def test_the_small_pod_serves_and_stops_in_order(tmp_path: Path) -> None:
    objects = rendered("overlays/small")
    seed, torchserve, gateway = (container(objects, name) for name in ("seed-model-store", "torchserve", "gateway"))
    gateway_port, *ports = free_ports(6)

    places = {"/srv/shared": tmp_path / "shared", "/srv/run": tmp_path / "run", "/etc/food-rotation": tmp_path / "etc",
              "/var/log/torchserve": tmp_path / "logs", "/tmp": tmp_path / "tmp", "/srv/app": ROOT}
    mounted = re.compile("|".join(re.escape(path) + r"(?=/|\b|$)" for path in places))

    def moved(text: str) -> str:
        text = mounted.sub(lambda match: str(places[match.group(0)]), text)  # one pass: tmp_path is under /tmp too
        for port, free in zip(TORCHSERVE_PORTS, ports, strict=True):
            text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}").replace(f"_port={port}", f"_port={free}")
        return text

    for mount in ("shared", "run/torchserve", "run/proxy", "etc/torchserve", "logs", "tmp"):
        (tmp_path / mount).mkdir(parents=True)
    (tmp_path / "etc" / "torchserve" / "config.properties").write_text(
        moved(config_map(objects, "food-rotation-torchserve")["config.properties"]))
    base_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "HOSTNAME": "pod-0", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'handler'}"}

    def env_of(part: dict) -> dict[str, str]:  # literal values only: no Secret (PROXY_DATABASE_URL) here
        return {**base_env, **{v["name"]: moved(v["value"]) for v in part.get("env", []) if "value" in v}}

    seeded = subprocess.run([*seed["command"], moved(seed["args"][0])], cwd=ROOT, env=env_of(seed) | {
        "TMPDIR": str(tmp_path / "tmp")}, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    assert [p.name for p in (tmp_path / "shared" / "model_store").iterdir()] == ["food_rotation.mar"]

    gateway_env = env_of(gateway) | {k: moved(v) for k, v in gateway_settings(objects).items()} | {
        "PROXY_PORT": str(gateway_port)}
    server = subprocess.Popen([*torchserve["command"], moved(torchserve["args"][0])],
                              cwd=moved(torchserve["workingDir"]), env=env_of(torchserve),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    log = (tmp_path / "logs" / "gateway.log").open("w")  # scanned for tokens by test_no_token_in_any_log.py
    try:
        startup = [moved(word) for word in torchserve["startupProbe"]["exec"]["command"]]
        for _ in range(240):
            if subprocess.run(startup).returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail("TorchServe's startup probe never passed")
        proxy = subprocess.Popen(gateway["command"], cwd=ROOT, env=gateway_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{gateway_port}"
        ready = gateway["readinessProbe"]["httpGet"]["path"]
        for _ in range(360):
            try:
                answer = requests.get(url + ready, timeout=3)
                if answer.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        assert answer.json() == {"status": "ready", "workers": 1}  # the small profile's one-worker archive
        assert requests.get(url + gateway["livenessProbe"]["httpGet"]["path"], timeout=3).status_code == 200
        issued = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "issue", "--user", "pod"], cwd=ROOT,
                                env=gateway_env, capture_output=True, text=True, timeout=30)
        ISSUED.append(issued.stdout.strip())  # tests/integration/test_no_token_in_any_log.py looks for it
        predicted = requests.post(f"{url}/predictions/food_rotation", data=encode(scene()), timeout=60,
                                  headers={"Authorization": f"Bearer {issued.stdout.strip()}",
                                           "Content-Type": "image/jpeg"})
        assert predicted.status_code == 200, predicted.text
        java = int((tmp_path / "tmp" / ".model_server.pid").read_text())
        # The pod's stop: the gateway (after its preStop) first; the native sidecar once the gateway has exited.
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=60) == 0
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert not alive(java)
        assert not (tmp_path / "run" / "torchserve" / "key_file.json").exists()
    finally:
        for process in (proxy, server):
            if process is not None and process.poll() is None:
                process.kill()
        log.close()
