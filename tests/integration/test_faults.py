"""Faults under load, on a TorchServe + proxy of their own: what is lost, and how fast the service is back.

Marked slow (each waits for restarts): `make test-slow` and CI run them. They stop and kill TorchServe, so it is
theirs alone. Figures go to test-artifacts/faults.json, from which tests/resilience/REPORT.md quotes the last run.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from operations.torchserve_process import ROOT
from tests.integration.load import CLIENTS, Load
from tests.photos import CLEAR_SCENES, encode, scene
from tests.stack import build_archive, issue_token, running_proxy, running_torchserve, worker_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIGURES = ROOT / "test-artifacts" / "faults.json"


def record(name: str, **figures: float) -> None:
    FIGURES.parent.mkdir(exist_ok=True)
    document = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    document[name] = figures
    FIGURES.write_text(json.dumps(document, indent=2) + "\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, demo_weights):
    base = tmp_path_factory.mktemp("faults")
    build_archive(demo_weights, "1.0", base / "model_store")
    build_archive(demo_weights, "2.0", base / "model_store", "food_rotation-v2.0")
    with running_torchserve(base / "torchserve", base / "model_store") as torchserve:
        with running_proxy(base / "proxy", torchserve, PROXY_RECONCILE_INTERVAL_S="1") as proxy:
            yield torchserve, proxy


def wait_until(condition, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


def test_kill_9_of_a_worker_loses_only_what_was_in_flight_on_it(stack):
    torchserve, proxy = stack
    token = issue_token(proxy, "--user", "load")[1]
    with Load(proxy, token) as load:
        time.sleep(2)
        victim = worker_pids(torchserve)[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        recovered = wait_until(lambda: len(worker_pids(torchserve)) == 2 and victim not in worker_pids(torchserve),
                               timeout=60)
        time.sleep(2)
    failures = [answer for answer in load.failures() if answer[0] >= killed_at - 1]
    after = [answer for answer in load.since(killed_at + 10)]
    record("kill -9 of a worker", requests=len(load.answers), failed=len(failures),
           worker_back_s=round(recovered, 1))
    assert len(failures) <= CLIENTS  # at most what was in flight on the killed worker
    assert load.failures() == failures  # nothing failed before the kill
    assert all(status == 200 for _, status, _ in after) and len(load.since(killed_at)) > len(failures)


def test_torchserve_down_means_fast_503s_and_recovery_without_help(stack):
    torchserve, proxy = stack
    token = issue_token(proxy, "--user", "outage")[1]
    photo = encode(scene(CLEAR_SCENES[0]), "JPEG")
    headers = {"Authorization": f"Bearer {token}"}
    with Load(proxy, token) as load:
        time.sleep(1)
        stopped_at = time.monotonic()  # before stop(): it returns only once the process has exited
        torchserve.stop()
        time.sleep(1)
        durations = []
        for _ in range(5):
            started = time.monotonic()
            answer = requests.post(f"{proxy.url}/predictions/food_rotation", data=photo, headers=headers, timeout=10)
            durations.append(time.monotonic() - started)
            assert answer.status_code == 503, answer.text
        torchserve.start()
        torchserve.wait_ready(min_workers=1, timeout=120)
        ready_at = time.monotonic()
        back = wait_until(lambda: requests.post(f"{proxy.url}/predictions/food_rotation", data=photo,
                                                headers=headers, timeout=30).status_code == 200, timeout=30)
        time.sleep(1)
    record("TorchServe stopped under load", requests=len(load.answers), failed_while_down=len(load.failures()),
           slowest_503_s=round(max(durations), 3), proxy_back_after_torchserve_ready_s=round(back, 1),
           outage_s=round(ready_at - stopped_at + back, 1))
    assert max(durations) < 1.0
    recovered_at = ready_at + back + 0.5
    outside = [(round(at - stopped_at, 2), status, text[:80]) for at, status, text in load.failures()
               if not stopped_at - 1 <= at <= recovered_at]
    assert outside == [], (round(recovered_at - stopped_at, 2), outside[:5])  # failures only during the outage
    assert {status for _, status, _ in load.failures()} <= {500, 502, 503, 504}  # answered, never hung
    assert all(status == 200 for _, status, _ in load.since(recovered_at))


def test_proxy_restart_keeps_tokens_and_routing(stack):
    _, proxy = stack
    token = issue_token(proxy, "--user", "before-restart")[1]
    admin = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    listing = requests.get(f"{proxy.url}/admin/models/food_rotation", headers={"Authorization": f"Bearer {admin}"},
                           timeout=30).json()
    proxy.stop()
    started = time.monotonic()
    proxy.start()
    proxy.wait_ready()
    record("proxy restarted", back_s=round(time.monotonic() - started, 1))
    answer = requests.post(f"{proxy.url}/predictions/food_rotation", data=encode(scene(CLEAR_SCENES[1]), "JPEG"),
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200
    again = requests.get(f"{proxy.url}/admin/models/food_rotation", headers={"Authorization": f"Bearer {admin}"},
                         timeout=30).json()
    assert [(v["version"], v["default"]) for v in again["versions"]] == [
        (v["version"], v["default"]) for v in listing["versions"]]


def test_restart_of_torchserve_and_proxy_restores_the_default(stack):
    """2.0 promoted, then both processes restarted: TorchServe comes back serving 1.0 (its load_models), and the
    gateway's routing table makes 2.0 the default again and takes 1.0 out."""
    torchserve, proxy = stack
    admin = {"Authorization": f"Bearer {issue_token(proxy, '--user', 'ops', '--scopes', 'admin')[1]}"}
    url = f"{proxy.url}/admin/models/food_rotation"
    deployed = requests.post(f"{url}/deploy", json={"archive": "food_rotation-v2.0.mar", "canary": 10},
                             headers=admin, timeout=600)
    assert deployed.status_code == 201, deployed.text
    promoted = requests.post(f"{url}/promote", json={"version": "2.0"}, headers=admin, timeout=600)
    assert promoted.status_code == 200, promoted.text
    proxy.stop()
    torchserve.stop()
    torchserve.start()
    torchserve.wait_ready(min_workers=2)  # TorchServe alone serves 1.0 again (load_models)
    proxy.start()
    proxy.wait_ready(timeout=120)
    versions = {row["version"]: row for row in requests.get(url, headers=admin, timeout=30).json()["versions"]}
    assert set(versions) == {"2.0"} and versions["2.0"]["default"] and versions["2.0"]["workers"] >= 1
    user = issue_token(proxy, "--user", "after-restart")[1]
    answer = requests.post(f"{proxy.url}/predictions/food_rotation", data=encode(scene(CLEAR_SCENES[0]), "JPEG"),
                           headers={"Authorization": f"Bearer {user}"}, timeout=60)
    assert answer.status_code == 200 and answer.json()["model_version"] == "2.0"
