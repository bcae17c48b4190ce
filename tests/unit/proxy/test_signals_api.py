"""Per-version signals through the gateway: predictions and corrections counted per served version, in the
window the Models view reads and in Prometheus, with the routing table as gauges (issue 14 item 4)."""

from __future__ import annotations

from auth_plugin.app_keys import REGISTRY
from auth_plugin.control.desired.versions import Route
from tests.photos import encode, scene


async def test_canary_and_default_are_counted_apart(setup, admin_auth, tmp_path):
    fake, client, auth = setup
    store = tmp_path / "store"
    store.mkdir()
    for version in ("1.0", "2.0"):  # archives the reconciler can find, so it keeps both versions in the table
        (store / f"food_rotation-v{version}.mar").write_bytes(b"archive")
    proxy = await client(model_store=store)
    registry = proxy.server.app[REGISTRY]
    registry.add_version("food_rotation", "1.0", "food_rotation-v1.0.mar")
    registry.add_version("food_rotation", "2.0", "food_rotation-v2.0.mar")
    answer_ids = []
    for share, confidence in ((100, 0.5), (100, 0.99), (0, 0.99)):  # what the router sends: 2.0, 2.0, then 1.0
        registry.set_route("food_rotation", Route(default="1.0", canary="2.0", canary_percent=share))
        fake.confidence = confidence
        routed = await proxy.post("/predictions/food_rotation", data=b"x", headers=auth)
        assert routed.status == 200
        answer_ids.append(routed.headers["X-Answer-Id"])
    named = await proxy.post("/predictions/food_rotation/2.0", data=b"x", headers=auth)  # not counted
    assert named.status == 200 and "X-Answer-Id" not in named.headers
    registry.set_route("food_rotation", Route(default="1.0", canary="2.0", canary_percent=50))
    # 2.0's answer (90) quoted, the truth 0: one disagreement; the same claim made without an id counts for nothing
    for seed, fields in ((3, {"answer_id": answer_ids[0]}), (4, {"model_version": "2.0", "model_degree": "90"})):
        answer = await proxy.post("/feedback", data=encode(scene(seed=seed)), headers={
            **auth, "Content-Type": "image/jpeg"}, params={"true_degree": "0", **fields})
        assert answer.status == 201, await answer.text()
        assert (await answer.json())["evidence"] is (seed == 3)

    rows = (await (await proxy.get("/admin/models/food_rotation/signals?window=60", headers=admin_auth)).json())
    by_version = {row["version"]: row for row in rows["versions"]}
    assert (by_version["1.0"]["role"], by_version["1.0"]["requests"], by_version["1.0"]["unsure_share"]) == (
        "default", 1, 0.0)
    canary = by_version["2.0"]
    assert (canary["role"], canary["requests"], canary["unsure_share"], canary["feedback"],
            canary["disagreement_rate"], canary["error_rate"]) == ("canary", 2, 0.5, 1, 1.0, 0.0)
    assert (await proxy.get("/admin/models/food_rotation/signals?window=5", headers=admin_auth)).status == 400

    text = await (await proxy.get("/metrics")).text()
    for line in ('proxy_feedback_total{agreed="no",model_version="2.0"} 1.0',
                 'proxy_feedback_total{agreed="no",model_version="unverified"} 1.0',
                 'proxy_default_version{version="1.0"} 1.0', 'proxy_canary_percent{version="2.0"} 50.0',
                 'proxy_in_flight{version="2.0"} 0.0', 'proxy_predictions_unsure_total{model_version="2.0"} 1.0'):
        assert line in text
