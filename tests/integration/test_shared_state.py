"""Two gateway processes in front of the session's TorchServe, sharing one real PostgreSQL (issue 15, step 1): a
token issued once works on both, a revocation reaches both within the token cache's lifetime, and a route written
to the shared table is followed by both within a reread (measured and documented in docs/scale-out.md). The
database URL's password appears in neither gateway's log."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.migrations import open_database
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore
from tests.conftest import ROOT
from tests.photos import CLEAR_SCENES, encode, rotated, scene
from tests.stack import ISSUED, running_proxy

pytestmark = pytest.mark.integration
PHOTO = encode(rotated(scene(CLEAR_SCENES[0]), 90), "JPEG")
CACHE_S = ProxySettings().token_cache_s  # how long a gateway trusts one token lookup (auth_plugin/auth.py)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory, torchserve, postgres):
    url = postgres.database()
    tmp_path = tmp_path_factory.mktemp("shared-state")
    # Predictions only: the control plane (reconciler, rollouts) stays with the suite's own proxy for now.
    shared = {"PROXY_DATABASE_URL": url, "PROXY_CONTROL_PLANE": "false"}
    with running_proxy(tmp_path / "a", torchserve, **shared) as a, running_proxy(tmp_path / "b", torchserve,
                                                                                    **shared) as b:
        yield a, b, url


def _whoami(gateway, token: str) -> requests.Response:
    return requests.get(f"{gateway.url}/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _refused_within(gateways, token: str, limit_s: float) -> float:
    """Seconds from now until every gateway refuses `token` as revoked (polled every 10 ms)."""
    started, waiting = time.monotonic(), set(range(len(gateways)))
    while waiting and time.monotonic() - started < limit_s:
        for index in list(waiting):
            answer = _whoami(gateways[index], token)
            if answer.status_code == 401 and "revoked" in answer.headers.get("WWW-Authenticate", "") + answer.text:
                waiting.discard(index)
        time.sleep(0.01)
    assert not waiting, f"gateways {sorted(waiting)} still accept a token revoked {limit_s:.1f} s ago"
    return time.monotonic() - started


def test_a_token_works_on_every_gateway_and_its_revocation_reaches_them_all(gateways, postgres):
    a, b, url = gateways
    issued = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "issue", "--user", "cook", "--ttl", "1h"],
                            cwd=ROOT, env={**os.environ, "PROXY_DATABASE_URL": url}, capture_output=True, text=True,
                            timeout=60)
    assert issued.returncode == 0, issued.stderr
    token, token_id = issued.stdout.strip(), int(issued.stderr.split("# id ")[1].split(",")[0])
    ISSUED.append(token)
    for gateway in (a, b):
        answer = requests.post(f"{gateway.url}/predictions/food_rotation", data=PHOTO, timeout=30,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
        assert answer.status_code == 200 and answer.json()["model_degree"] == 90, answer.text
    store = TokenStore(open_database(ProxySettings(database_url=url)))
    delays = []
    for attempt in range(3):  # the worst case: both gateways have just cached the token as valid
        if attempt:
            token, record = store.issue("cook", ["predict"], 3600)
            ISSUED.append(token)
            token_id = record.id
        assert all(_whoami(gateway, token).status_code == 200 for gateway in (a, b))
        assert store.revoke(token_id)
        delays.append(_refused_within((a, b), token, limit_s=CACHE_S + 1.0))
    store.close()
    print(f"revocation refused by both gateways after {', '.join(f'{d * 1000:.0f}' for d in delays)} ms "
          f"(token cache {CACHE_S} s)")
    assert max(delays) <= CACHE_S + 0.5
    for gateway in (a, b):
        assert postgres.password not in gateway.log_file.read_text()
        assert "state kept in PostgreSQL postgresql://[redacted]@127.0.0.1" in gateway.log_file.read_text()


def _default_version(gateway) -> str | None:
    """The default version this gateway routes to, as its /metrics gauge reads its routing table."""
    for line in requests.get(f"{gateway.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("proxy_default_version{") and line.endswith(" 1.0"):
            return line.split('version="')[1].split('"')[0]
    return None


def test_a_route_written_to_the_shared_table_is_followed_by_every_gateway(gateways):
    a, b, url = gateways
    refresh_s = ProxySettings().state_refresh_s
    assert _default_version(a) is None and _default_version(b) is None  # nothing routed yet: TorchServe's default
    registry = VersionRegistry(open_database(ProxySettings(database_url=url)))  # as the control plane writes it
    registry.add_version("food_rotation", "1.0", "food_rotation.mar")
    registry.set_route("food_rotation", Route(default="1.0"))
    registry.close()
    started, waiting = time.monotonic(), {0, 1}
    while waiting and time.monotonic() - started < refresh_s + 2.0:
        waiting -= {index for index in waiting if _default_version((a, b)[index]) == "1.0"}
        time.sleep(0.02)
    delay = time.monotonic() - started
    print(f"route followed by both gateways after {delay * 1000:.0f} ms (reread every {refresh_s} s)")
    assert not waiting and delay <= refresh_s + 0.5
    issued = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "issue", "--user", "cook", "--ttl", "1h"],
                            cwd=ROOT, env={**os.environ, "PROXY_DATABASE_URL": url}, capture_output=True, text=True,
                            timeout=60)
    ISSUED.append(issued.stdout.strip())
    for gateway in (a, b):  # now sent to /predictions/food_rotation/1.0 explicitly, as the table says
        answer = requests.post(f"{gateway.url}/predictions/food_rotation", data=PHOTO, timeout=30,
                               headers={"Authorization": f"Bearer {issued.stdout.strip()}"})
        assert answer.status_code == 200, answer.text
