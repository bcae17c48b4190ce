"""What of a prediction's URL and headers reaches TorchServe besides the body: the handler's per-request settings."""

from __future__ import annotations

from multidict import MultiDict

from auth_plugin.forwarding import forwarded_headers, forwarded_query


def test_only_the_query_parameters_the_handler_reads_are_forwarded():
    query = MultiDict([("min_confidence", "0.9"), ("access_token", "frs_secret"), ("format", "png"), ("x", "1")])
    assert forwarded_query(query) == [("min_confidence", "0.9"), ("format", "png")]
    assert forwarded_query(MultiDict()) == []


def test_the_min_confidence_header_is_forwarded():
    assert forwarded_headers({"X-Min-Confidence": "0.8"}, "rid")["X-Min-Confidence"] == "0.8"


async def test_a_prediction_s_bar_reaches_torchserve_by_query_and_header(setup):
    fake, client, auth = setup
    proxy = await client()
    answer = await proxy.post("/predictions/food_rotation?min_confidence=0.75&access_token=frs_x&format=png",
                              data=b"\xff\xd8jpeg", headers={**auth, "X-Min-Confidence": "0.6"})
    assert answer.status == 200
    assert fake.queries[-1] == "min_confidence=0.75&format=png"  # no credential in TorchServe's access log
    assert fake.seen[-1]["X-Min-Confidence"] == "0.6"
    await proxy.post("/predictions/food_rotation/1.0", data=b"\xff\xd8jpeg", headers=auth)
    assert fake.queries[-1] == ""
