"""Both of TorchServe's expiring keys are renewed through its token API, by the gateway and by blocking clients
alike: before they expire, and when TorchServe refuses a key the file still holds (its clock said it expired)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from auth_plugin.torchserve_keys import BlockingTorchServeKeys, Keys, TorchServeKeys
from tests.unit.proxy.conftest import FakeTorchServe


@pytest.fixture
async def torchserve(tmp_path, aiohttp_server):
    fake = FakeTorchServe(tmp_path / "key_file.json")
    server = await aiohttp_server(fake.app())
    yield fake, str(server.make_url("")).rstrip("/")


async def test_the_gateway_renews_the_management_key_before_it_expires(torchserve):
    fake, url = torchserve
    fake.renew("infer001", management="mgmt0001", management_expires_in_s=30)  # 30 s left of an hour's life
    keys = TorchServeKeys(fake.key_file, url, 300, settle_s=0.1)
    async with aiohttp.ClientSession() as session:
        assert await keys.management(session) == "mgmt0002"
        assert await keys.inference(session) == "infer001"  # an hour left: not renewed
        assert await keys.management(session) == "mgmt0002"  # renewed once, not on every call
    assert fake.renewed == ["management"]


async def test_a_refused_key_that_the_file_still_holds_is_renewed(torchserve):
    """TorchServe's clock, not the file's stamp, decides expiry: a refusal of the current key is a renewal."""
    fake, url = torchserve
    keys = TorchServeKeys(fake.key_file, url, 300, settle_s=0.1)
    async with aiohttp.ClientSession() as session:
        assert await keys.management(session, refused="mgmt0001") == "mgmt0002"
        assert await keys.inference(session, refused="stale123") == "infer001"  # not the file's key: reread only
    assert fake.renewed == ["management"]


async def test_concurrent_callers_share_one_renewal(torchserve):
    fake, url = torchserve
    fake.renew("infer001", expires_in_s=10, management_expires_in_s=10)
    fake.written_an_hour_ago()
    keys = TorchServeKeys(fake.key_file, url, 300, settle_s=0.1)
    async with aiohttp.ClientSession() as session:
        got = await asyncio.gather(*(keys.management(session) for _ in range(20)))
    assert set(got) == {"mgmt0002"} and fake.renewed == ["management"]


def test_short_lived_keys_are_renewed_at_half_their_life_not_on_every_call():
    keys = Keys("i", "m", "a", expires_at={"inference": 160.0, "management": 160.0}, written_at=100.0)
    assert not keys.due("management", 300, now=125.0)  # a one-minute key, 35 s left: the margin is 30 s
    assert keys.due("management", 300, now=131.0)
    hour = Keys("i", "m", "a", {"inference": 3700.0, "management": 400.0}, 100.0)  # management issued at 100 - 3300
    assert not hour.due("inference", 300, 3300.0) and hour.due("management", 300, 150.0)


async def test_blocking_clients_renew_an_expired_management_key_and_retry_a_refusal(torchserve):
    """`make serve`'s readiness check, the benches, the tests: the same rules without an event loop."""
    fake, url = torchserve
    fake.renew("infer001", management_expires_in_s=-5)  # expired five seconds ago
    keys = BlockingTorchServeKeys(fake.key_file, url, settle_s=0.1)
    answer = await asyncio.to_thread(keys.request, "GET", f"{url}/models/food_rotation", "management")
    assert answer.status_code == 200 and fake.renewed == ["management"]
    fake.management = "renewed9"  # TorchServe refuses the file's key (another process renewed it; the file lags)
    answer = await asyncio.to_thread(keys.request, "GET", f"{url}/models/food_rotation", "management")
    assert answer.status_code == 200 and fake.renewed == ["management", "management"]
    assert fake.described == 2
