"""The proxy app in-process against a fake TorchServe (an aiohttp app): fast checks of the HTTP contract."""

from __future__ import annotations

import asyncio
import time

import pytest

from auth_plugin.app import create_app
from auth_plugin.app_keys import SIGNALS
from auth_plugin.settings import ProxySettings


async def test_prediction_goes_through_with_torchserve_key_not_the_callers(setup):
    fake, client, auth = setup
    proxy = await client()
    answer = await proxy.post("/predictions/food_rotation", data=b"\xff\xd8jpeg", headers=auth)
    assert answer.status == 200 and (await answer.json())["bytes"] == 6
    sent = fake.seen[-1]
    assert sent["Authorization"] == "Bearer infer001"
    assert sent["Content-Type"] == "application/octet-stream"  # the form-encoded default of curl, fixed
    assert answer.headers["X-Custom"] == "kept" and "keep-alive" not in answer.headers.get("Connection", "")


async def test_refusals_never_reach_torchserve(setup):
    fake, client, _ = setup
    proxy = await client()
    for headers in ({}, {"Authorization": "Bearer frs_nope"}, {"Authorization": "Basic x"}):
        answer = await proxy.post("/predictions/food_rotation", data=b"x", headers=headers)
        assert answer.status == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert fake.seen == []


async def test_request_id_is_kept_or_made(setup):
    fake, client, auth = setup
    proxy = await client()
    kept = await proxy.post("/predictions/food_rotation", data=b"x", headers={**auth, "X-Request-ID": "abc-123"})
    made = await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)
    assert kept.headers["X-Request-ID"] == "abc-123" and fake.seen[0]["X-Request-ID"] == "abc-123"
    assert len(made.headers["X-Request-ID"]) == 32


async def test_hop_by_hop_and_connection_listed_headers_are_stripped(setup):
    fake, client, auth = setup
    proxy = await client()
    await proxy.post("/predictions/food_rotation", data=b"x",
                     headers={**auth, "Connection": "X-Secret", "X-Secret": "1", "TE": "trailers", "Cookie": "c=1"})
    assert not {"X-Secret", "TE", "Cookie", "access_token"} & set(fake.seen[-1])


async def test_body_over_the_limit_is_413(setup):
    fake, client, auth = setup
    proxy = await client(max_body_bytes=1000)
    answer = await proxy.post("/predictions/food_rotation", data=b"x" * 1001, headers=auth)
    assert answer.status == 413 and (await answer.json())["error"] == "body_too_large" and fake.seen == []

    async def chunks():  # no Content-Length: the limit bites while reading
        for _ in range(10):
            yield b"y" * 200

    answer = await proxy.post("/predictions/food_rotation", data=chunks(), headers=auth)
    assert answer.status == 413 and fake.seen == []


@pytest.mark.parametrize("announced", [False, True])
async def test_a_slow_upload_is_timed_out_and_torchserve_never_gets_its_body(setup, announced):
    """Of unannounced length it is read whole first and never reaches TorchServe; announced, it streams there and
    is cut off there too. Either way the next request is served."""
    fake, client, auth = setup
    proxy = await client(body_timeout_s=0.3)

    async def trickle():
        for _ in range(20):
            yield b"x"
            await asyncio.sleep(0.1)

    headers = {**auth, "Content-Length": "20"} if announced else auth
    answer = await proxy.post("/predictions/food_rotation", data=trickle(), headers=headers)
    assert answer.status == 408 and (await answer.json())["error"] == "request_timeout"
    assert len(fake.seen) == int(announced) and fake.bodies == []
    assert (await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)).status == 200


async def test_renewed_key_is_picked_up_after_a_refusal(setup):
    fake, client, auth = setup
    proxy = await client()
    assert (await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)).status == 200
    fake.renew("rotated9")  # TorchServe regenerated its keys (restart, or someone used the token API)
    assert (await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)).status == 200
    assert fake.seen[-1]["Authorization"] == "Bearer rotated9"


async def test_a_body_in_many_pieces_is_relayed_whole_under_its_length_and_again_after_a_key_refusal(setup):
    """A chunked upload reaches TorchServe as one length-delimited body (no Expect round trip), and the resend
    after a refused key carries all of it again."""
    fake, client, auth = setup
    proxy = await client()
    fake.renew("rotated9")  # the proxy's cached key is refused first

    async def pieces():
        for index in range(10):
            yield bytes([index]) * 20_000

    answer = await proxy.post("/predictions/food_rotation", data=pieces(),
                              headers={**auth, "Expect": "100-continue"})
    assert answer.status == 200 and (await answer.json())["bytes"] == 200_000
    sent = fake.seen[-1]
    assert sent["Content-Length"] == "200000" and "Transfer-Encoding" not in sent and "Expect" not in sent
    assert sent["Authorization"] == "Bearer rotated9"
    empty = await proxy.post("/predictions/food_rotation", data=b"", headers=auth)
    assert (await empty.json())["bytes"] == 0 and fake.seen[-1]["Content-Length"] == "0"


@pytest.mark.parametrize(("streamed_uploads", "streamed"), [(16, True), (0, False)])
async def test_an_announced_body_is_sent_on_while_it_arrives_and_again_whole_after_a_key_refusal(
        setup, streamed_uploads, streamed):
    """Under its Content-Length, TorchServe gets the request before the client's last piece is sent (unless
    streaming is off); the resend after a refused key replays every piece already relayed."""
    fake, client, auth = setup
    proxy = await client(streamed_uploads=streamed_uploads)
    fake.renew("rotated9")  # the proxy's cached key is refused first
    last_piece_at = []

    async def pieces():
        for index in range(5):
            await asyncio.sleep(0.05)
            if index == 4:
                last_piece_at.append(asyncio.get_running_loop().time())
            yield bytes([index]) * 50_000

    answer = await proxy.post("/predictions/food_rotation", data=pieces(),
                              headers={**auth, "Content-Length": "250000"})
    assert answer.status == 200 and (await answer.json())["bytes"] == 250_000
    sent = fake.seen[-1]
    assert sent["Content-Length"] == "250000" and "Transfer-Encoding" not in sent
    assert sent["Authorization"] == "Bearer rotated9" and fake.bodies == [250_000]
    assert (fake.started_at[-1] < last_piece_at[0]) is streamed


async def test_a_client_gone_mid_upload_costs_no_whole_body_upstream_and_the_next_request_is_served(setup):
    fake, client, auth = setup
    proxy = await client()
    _, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(f"POST /predictions/food_rotation HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}"
                 "\r\nContent-Length: 100000\r\n\r\n".encode() + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(0.2)  # the proxy has begun sending it on
    writer.close()
    await asyncio.sleep(0.2)
    assert len(fake.seen) == 1 and fake.bodies == []
    answer = await proxy.post("/predictions/food_rotation", data=b"x" * 10, headers=auth)
    assert answer.status == 200 and fake.bodies == [10]


@pytest.mark.parametrize("meanwhile", ["old", "truncated"])
async def test_a_key_renewed_while_torchserve_writes_its_file_loses_no_request(setup, meanwhile):
    """TorchServe checks the new key before key_file.json holds it: the proxy waits for the file, not 503."""
    fake, client, auth = setup
    proxy = await client()
    assert (await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)).status == 200
    fake.renew("rotated9", file_lag_s=0.3, meanwhile=meanwhile)
    answer = await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)
    assert answer.status == 200, await answer.text()
    assert fake.seen[-1]["Authorization"] == "Bearer rotated9"


@pytest.mark.parametrize("meanwhile", ["old", "truncated"])
async def test_readiness_holds_while_torchserve_renews_its_management_key(setup, meanwhile):
    fake, client, _ = setup
    proxy = await client(readiness_cache_s=0.0)  # every call asks TorchServe
    assert (await proxy.get("/readyz")).status == 200
    fake.renew("infer001", management="mgmt0002", file_lag_s=0.3, meanwhile=meanwhile)
    answer = await proxy.get("/readyz")
    assert answer.status == 200 and (await answer.json()) == {"status": "ready", "workers": 1}


async def test_a_flood_of_readiness_checks_asks_torchserve_once_a_second(setup):
    fake, client, _ = setup
    proxy = await client(readiness_cache_s=1.0)
    answers = await asyncio.gather(*(proxy.get("/readyz") for _ in range(50)))
    assert [answer.status for answer in answers] == [200] * 50
    assert fake.described == 1
    await asyncio.sleep(1.05)
    assert (await proxy.get("/readyz")).status == 200 and fake.described == 2


async def test_no_key_file_is_503_at_once(setup):
    fake, client, auth = setup
    proxy = await client()
    fake.key_file.unlink()
    started = time.monotonic()
    answer = await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)
    assert answer.status == 503 and (await answer.json())["error"] == "upstream_no_key"
    assert time.monotonic() - started < 0.5


async def test_key_is_renewed_before_it_expires(setup):
    fake, client, auth = setup
    fake.renew("old00001", expires_in_s=60)  # within the 300 s margin of an hour's life
    fake.written_an_hour_ago()
    proxy = await client()
    assert (await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)).status == 200
    assert fake.seen[-1]["Authorization"] == "Bearer infer002"  # renewed through the token API first


async def test_slow_torchserve_is_504(setup):
    fake, client, auth = setup
    fake.delay_s = 1.0
    proxy = await client(read_timeout_s=0.2)
    answer = await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)
    assert answer.status == 504 and (await answer.json())["error"] == "upstream_timeout"


async def test_rate_limit_answers_429_with_retry_after(setup):
    _, client, auth = setup
    proxy = await client(rate_limit_per_s=1, rate_limit_burst=2)
    statuses = [(await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    answer = await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)
    assert answer.status == 429 and int(answer.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("path", ["/models", "/models/food_rotation", "/token?type=inference", "/ping",
                                  "/api-description", "/predictions", "/explanations/food_rotation",
                                  "/predictions/%2e%2e/models", "/predictions/food_rotation/1.0/extra"])
async def test_nothing_but_predictions_is_routed(setup, path):
    fake, client, auth = setup
    proxy = await client()
    answer = await proxy.post(path, data=b"x", headers=auth)
    assert answer.status in (404, 405) and (await answer.json())["status"] == answer.status
    assert fake.seen == []


async def test_health_readiness_and_metrics(setup):
    fake, client, auth = setup
    proxy = await client()
    await proxy.post("/predictions/food_rotation/1.0", data=b"x", headers=auth)  # labelled with the version asked
    fake.confidence = 0.5
    await proxy.post("/predictions/food_rotation/1.0", data=b"x", headers=auth)  # unsure
    await proxy.post("/predictions/food_rotation", data=b"x")
    await proxy.get("/no/such/route")
    assert (await proxy.get("/healthz")).status == 200
    assert (await (await proxy.get("/readyz")).json()) == {"status": "ready", "workers": 1}
    text = await (await proxy.get("/metrics")).text()
    assert 'proxy_requests_total{model_version="1.0",route="/predictions/{model}/{version}",status="200"} 2.0' in text
    assert 'proxy_requests_total{model_version="none",route="/predictions/{model}",status="401"} 1.0' in text
    assert 'proxy_requests_total{model_version="none",route="unmatched",status="404"} 1.0' in text
    assert 'proxy_auth_failures_total{reason="missing"} 1.0' in text
    assert 'proxy_request_duration_seconds_bucket{le="0.005",model_version="1.0",route="/predictions/' in text
    assert 'proxy_prediction_confidence_count{model_version="1.0"} 2.0' in text
    assert 'proxy_predictions_unsure_total{model_version="1.0"} 1.0' in text


def test_every_route_but_the_public_ones_requires_a_scope(tmp_path):
    """A new route cannot be left open by forgetting a check: its scope is part of the route table."""
    app = create_app(ProxySettings(token_db=tmp_path / "t.sqlite3", datasets_dir=tmp_path / "d"))
    public = {"/", "/static/{name}", "/favicon.ico", "/whoami", "/healthz", "/readyz", "/metrics"}
    scopes = {}
    for route in app.router.routes():
        path = route.resource.canonical
        if route.method != "HEAD" and path not in public:
            scopes[(route.method, path)] = getattr(route.handler, "required_scope", None)
    assert scopes[("POST", "/predictions/{model}")] == "predict" and scopes[("POST", "/feedback")] == "predict"
    assert scopes[("POST", "/admin/models/{model}/promote")] == "admin"
    assert None not in scopes.values(), [route for route, scope in scopes.items() if scope is None]



async def test_the_signals_count_a_version_at_its_own_bar_not_the_caller_s(setup):
    """Issue 33: with min_confidence=0 every answer is 'trusted', and a canary looked sure of everything. The
    canary analysis reads the handler's X-Archive-Trusted (the version's own bar) instead."""
    fake, client, auth = setup
    proxy = await client()
    fake.extra_headers = {"X-Archive-Trusted": "false"}
    answer = await proxy.post("/predictions/food_rotation?min_confidence=0", data=b"x", headers=auth)
    assert answer.status == 200 and (await answer.json())["trusted"] is True  # the caller still gets its answer
    summary = proxy.server.app[SIGNALS].summary("none", 60)
    assert summary.requests == 1 and summary.unsure_share == 1.0
