"""Two pods, each a TorchServe and its gateway on loopback ports, on one real PostgreSQL, behind a small load
balancer of the test's own (round robin over the pods whose /readyz says ready; a refused connection is tried
on the next pod, as Kubernetes' Service proxies and Envoy do), under constant load (issue 15):

- a canary deployed through one pod is loaded by the other pod's reconciler before any traffic goes to it, and
  both pods serve the mix; promoted through the other pod, then rolled back: not one request fails, and each
  TorchServe ends up holding only the default;
- kill -9 of one pod (its TorchServe, workers and gateway) during a canary: only what was in flight on it fails;
  started again, it loads and gates both versions before it reports ready, then serves the same mix;
- kill -9 of the gateway driving a promotion, half done: the other pod takes the driver's lock over and finishes
  it, and only what was in flight on the dead gateway fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest
import requests
import yaml
from aiohttp import web

from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import TorchServe
from tests.conftest import ROOT
from tests.integration.load import CLIENTS, Load
from tests.photos import CLEAR_SCENES, encode, rotated, scene
from tests.stack import ISSUED, build_archive

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow (CI: .ci/run)
PHOTO = encode(rotated(scene(CLEAR_SCENES[1]), 90), "JPEG")


def one_worker_config(folder: Path) -> Path:
    """Two TorchServes share two cores here: one worker each, every guess applied (the demo weights)."""
    config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    config.update(minWorkers=1, maxWorkers=1)
    config["handler"]["min_confidence"] = 0.0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-config.yaml").write_text(yaml.safe_dump(config))
    return folder / "model-config.yaml"


@dataclass
class Pod:
    name: str
    torchserve: TorchServe
    gateway: Proxy

    def start(self) -> None:
        self.torchserve.start()
        self.torchserve.wait_ready(timeout=240)
        self.gateway.start()
        self.gateway.wait_ready(timeout=240)

    def stop(self) -> None:
        self.gateway.stop()
        self.torchserve.stop()

    def kill(self) -> None:
        """kill -9 of everything the pod runs: the gateway, TorchServe's frontend and its workers."""
        frontend = psutil.Process(self.torchserve.pid())
        victims = [psutil.Process(self.gateway.pid()), frontend, *frontend.children(recursive=True)]
        for victim in victims:
            os.kill(victim.pid, signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)

    def versions(self, token: str) -> dict[str, dict]:
        answer = requests.get(f"{self.gateway.url}/admin/models/food_rotation", timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        return {row["version"]: row for row in answer.json()["versions"]}

    def served(self, token: str, count: int) -> set[str]:
        """The versions this pod's own gateway answers `count` predictions with."""
        answers = [requests.post(f"{self.gateway.url}/predictions/food_rotation", data=PHOTO, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) for _ in range(count)]
        assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers if not a.ok]
        return {answer.json()["model_version"] for answer in answers}


class Balancer:
    """Round robin over the pods whose /readyz answered 200 at the last probe (every 0.3 s); a connection refused
    before anything was sent goes to the next pod. Runs its own event loop in a thread."""

    def __init__(self, pods: list[Pod]) -> None:
        self.pods = pods
        self.ready: list[Pod] = list(pods)
        self.url = f"http://127.0.0.1:{free_ports(1)[0]}"
        self._turn = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", int(self.url.rsplit(":", 1)[1])).start()
        self._probe = asyncio.create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while True:
            ready = []
            for pod in self.pods:
                try:
                    async with self._session.get(f"{pod.gateway.url}/readyz",
                                                 timeout=aiohttp.ClientTimeout(total=1)) as answer:
                        if answer.status == 200:
                            ready.append(pod)
                except (aiohttp.ClientError, TimeoutError):
                    pass
            self.ready = ready
            await asyncio.sleep(0.3)

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name: value for name, value in request.headers.items() if name.lower() in
                   ("authorization", "content-type")}
        pods = self.ready or self.pods
        self._turn += 1
        first = self._turn  # each request tries the pods in order from its own turn, whatever others do meanwhile
        for pod in (pods[(first + i) % len(pods)] for i in range(len(pods))):
            try:
                async with self._session.request(request.method, pod.gateway.url + request.path_qs, data=body,
                                                 headers=headers) as answer:
                    return web.Response(status=answer.status, body=await answer.read(),
                                        content_type=answer.content_type)
            except aiohttp.ClientConnectorError:
                continue  # nothing reached that pod: the next one
            except aiohttp.ClientError as exc:  # the pod went away with the request
                return web.json_response({"error": "pod_lost", "detail": repr(exc)}, status=502)
        return web.json_response({"error": "no_pod"}, status=502)

    def close(self) -> None:
        async def stop() -> None:
            self._probe.cancel()
            await self._runner.cleanup()
            await self._session.close()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)


@dataclass
class Cluster:
    pods: list[Pod]
    balancer: Balancer
    admin_token: str
    user_token: str
    stopped: list[Pod] = field(default_factory=list)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, demo_weights, postgres) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("pods")
    store, config = base / "model_store", one_worker_config(base / "config")
    build_archive(demo_weights, "1.0", store, config=config)
    build_archive(demo_weights, "2.0", store, "food_rotation-v2.0", config=config)
    url = postgres.database()
    pods = []
    for name in ("pod-a", "pod-b"):
        torchserve = TorchServe.on_free_ports(base / name / "torchserve", store)
        gateway = Proxy(home=base / name / "gateway", url=f"http://127.0.0.1:{free_ports(1)[0]}",
                        torchserve=torchserve,
                        extra_env={"PROXY_DATABASE_URL": url, "PROXY_POD_NAME": name,
                                   "PROXY_RECONCILE_INTERVAL_S": "1", "PROXY_DEPLOY_WORKERS": "1",
                                   "PROXY_DATASETS_DIR": str(base / "datasets"),
                                   # the generated samples only (each pod gates every version it loads): the real-photo
                                   # set (make real-data links it) is scored by test_rollout
                                   "PROXY_GATE_REAL_DIR": str(base / "no-real-photos")})
        pods.append(Pod(name, torchserve, gateway))
    with ExitStack() as stack:
        for pod in pods:  # both TorchServes start at once: their Java and worker start-ups overlap
            stack.callback(pod.stop)
            pod.torchserve.start()
        for pod in pods:
            pod.torchserve.wait_ready(timeout=240)
            pod.gateway.start()
        for pod in pods:
            pod.gateway.wait_ready(timeout=240)
        balancer = Balancer(pods)
        stack.callback(balancer.close)
        yield Cluster(pods, balancer, issue_token(url, "admin,predict"), issue_token(url, "predict"))


def issue_token(database_url: str, scopes: str) -> str:
    """Through the CLI on the shared database: one token for every pod."""
    issued = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "issue", "--user", "ops", "--scopes",
                             scopes, "--ttl", "1h"], cwd=ROOT, env={**os.environ, "PROXY_DATABASE_URL": database_url},
                            capture_output=True, text=True, timeout=60)
    assert issued.returncode == 0, issued.stderr
    ISSUED.append(issued.stdout.strip())
    return issued.stdout.strip()


def admin(pod: Pod, token: str, action: str, body: dict) -> requests.Response:
    return requests.post(f"{pod.gateway.url}/admin/models/food_rotation/{action}", json=body, timeout=600,
                         headers={"Authorization": f"Bearer {token}"})


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(every_s)


def loaded(pod: Pod) -> set[str]:
    headers = pod.torchserve.keys.headers("management")
    answer = requests.get(f"{pod.torchserve.management_url}/models/food_rotation/all", headers=headers, timeout=10)
    return {entry["modelVersion"] for entry in answer.json()} if answer.ok else set()


def test_a_rollout_through_any_pod_reaches_every_pod_and_fails_no_request(cluster):
    a, b = cluster.pods
    with Load(cluster.balancer, cluster.user_token) as load:
        time.sleep(1)
        deployed = admin(a, cluster.admin_token, "deploy", {"archive": "food_rotation-v2.0.mar", "canary": 50})
        assert deployed.status_code == 201, deployed.text
        assert "2.0" in loaded(b)  # the other pod's reconciler loaded it before any traffic was routed to it
        for pod in (a, b):
            wait_until(lambda pod=pod: pod.served(cluster.user_token, 12) == {"1.0", "2.0"}, 30,
                       f"{pod.name} serving both versions")

        promoted = admin(b, cluster.admin_token, "promote", {"version": "2.0"})  # any pod may drive
        assert promoted.status_code == 200, promoted.text
        for pod in (a, b):
            assert pod.served(cluster.user_token, 6) == {"2.0"}
            wait_until(lambda pod=pod: loaded(pod) == {"2.0"}, 60, f"{pod.name} unloading 1.0")

        rolled_back = admin(a, cluster.admin_token, "rollback", {})
        assert rolled_back.status_code == 200 and rolled_back.json()["default"] == "1.0", rolled_back.text
        for pod in (a, b):
            assert pod.served(cluster.user_token, 6) == {"1.0"}
            wait_until(lambda pod=pod: loaded(pod) == {"1.0"}, 60, f"{pod.name} unloading 2.0")
    assert load.failures() == [] and len(load.answers) > 50
    assert set(load.versions_since(0)) == {"1.0", "2.0"}


def test_kill_9_of_a_pod_mid_rollout_fails_only_its_requests_in_flight_and_it_rejoins_converged(cluster):
    """pod-b dies while 2.0 is a canary; started again (a new pod, as far as the table knows), it loads and gates
    both versions before /readyz lets the balancer send it anything."""
    a, b = cluster.pods
    default = next(version for version, row in a.versions(cluster.admin_token).items() if row["default"])
    deployed = admin(a, cluster.admin_token, "deploy", {"archive": "food_rotation-v2.0.mar", "canary": 30})
    assert deployed.status_code == 201, deployed.text
    with Load(cluster.balancer, cluster.user_token) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        b.kill()
        time.sleep(2)
        assert cluster.balancer.ready == [a]
        b.start()  # the same ports and model store: TorchServe loads food_rotation.mar, the gateway reconciles
        assert loaded(b) == {default, "2.0"}  # ready only once converged to the table
        wait_until(lambda: cluster.balancer.ready == [a, b], 60, "pod-b in the balancer again")
        back_at = time.monotonic()
        time.sleep(2)
    failures = [answer for answer in load.failures() if answer[0] >= killed_at - 1]
    assert load.failures() == failures and len(failures) <= CLIENTS, failures  # what was in flight on pod-b
    assert all(status == 200 for _, status, _ in load.since(killed_at + 2))
    assert set(load.versions_since(back_at)) == {default, "2.0"}
    assert b.served(cluster.user_token, 12) == {default, "2.0"}
    retired = admin(b, cluster.admin_token, "retire", {"version": "2.0"})
    assert retired.status_code == 200, retired.text


def test_kill_9_of_the_gateway_driving_a_promotion_lets_the_other_pod_finish_it(cluster):
    """pod-a's gateway dies after its promotion of 2.0 switched the default, while it waits for every pod to reread
    the table before it drains the old default: PostgreSQL frees the driver's lock with the dead connection, pod-b's
    recovery finds the abandoned promotion and finishes it (the old default drained and unloaded)."""
    a, b = cluster.pods
    old = next(version for version, row in b.versions(cluster.admin_token).items() if row["default"])
    for pod in (a, b):  # what an earlier test retired is unloaded everywhere first
        wait_until(lambda pod=pod: loaded(pod) == {old}, 60, f"{pod.name} holding only {old}")
    deployed = admin(a, cluster.admin_token, "deploy", {"archive": "food_rotation-v2.0.mar", "canary": 30})
    assert deployed.status_code == 201, deployed.text
    with Load(cluster.balancer, cluster.user_token) as load, concurrent.futures.ThreadPoolExecutor(1) as pool:
        time.sleep(1)
        promotion = pool.submit(admin, a, cluster.admin_token, "promote", {"version": "2.0"})
        wait_until(lambda: a.versions(cluster.admin_token)["2.0"]["default"], 20, "pod-a switching the default",
                   every_s=0.05)  # it then waits 2 s for every pod to reread the table: the kill lands in there
        killed_at = time.monotonic()
        gateway = psutil.Process(a.gateway.pid())
        gateway.kill()
        gateway.wait(10)
        with pytest.raises(requests.ConnectionError):
            promotion.result(timeout=30)  # the driver died before it answered
        wait_until(lambda: loaded(b) == {"2.0"} and old not in b.versions(cluster.admin_token), 60,
                   f"pod-b finishing the promotion: {old} drained and unloaded")
        finished_at = time.monotonic()
        time.sleep(1)
    recovered = requests.get(f"{b.gateway.url}/admin/audit", headers={"Authorization": f"Bearer {cluster.admin_token}"},
                             timeout=30).json()
    assert any(entry["action"] == "recover promote" and "pod-b" in entry["actor"] for entry in recovered["entries"]), \
        recovered
    failures = load.failures()
    assert all(at >= killed_at - 1 for at, _, _ in failures) and len(failures) <= CLIENTS, failures  # in flight on a
    assert set(load.versions_since(finished_at)) == {"2.0"}
    print(f"\npromotion finished by pod-b {finished_at - killed_at:.1f} s after its driver died")
