"""Automatic canary analysis on a TorchServe + proxy of their own, under constant load (issue 14 item 5): a good
v2 steps up and promotes itself; a v3 that answers worse (the same weights, but never sure enough to turn a
photo: every answer "unsure") is retired by the analysis with the reason. Not one request fails in either run."""

from __future__ import annotations

import time

import pytest
import requests

from tests.integration.load import Load
from tests.photos import CLEAR_SCENES, encode, scene
from tests.stack import build_archive, config_with_min_confidence, issue_token, model_of_its_own

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow (CI: .ci/run)
MODEL = "canary_rotation"  # this module's model on the session's TorchServe
QUICK = {"steps": [25, 50], "step_s": 6, "min_requests": 10, "check_every_s": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, torchserve, demo_weights):
    """A model of its own on the session's TorchServe, behind a gateway of its own."""
    base, store = tmp_path_factory.mktemp("canary_analysis"), torchserve.model_store
    # 1.0 and 2.0 trust every answer: whichever photos of the load the random split sends to each, both are sure
    # of all of them (at the shipped bar the demo weights are sure of some load photos only, and the split's luck
    # alone could make the good canary look worse)
    always_sure = config_with_min_confidence(base / "sure", 0.0)
    build_archive(demo_weights, "1.0", store, MODEL, always_sure, MODEL)
    build_archive(demo_weights, "2.0", store, f"{MODEL}-v2.0", always_sure, MODEL)
    never_sure = config_with_min_confidence(base / "unsure", 1.0)
    build_archive(demo_weights, "3.0", store, f"{MODEL}-v3.0", never_sure, MODEL)
    # the gate on its samples only: scoring versions on the real photos is test_rollout's and test_feedback_loop's
    with model_of_its_own(torchserve, MODEL, base / "proxy", PROXY_RECONCILE_INTERVAL_S="1",
                          PROXY_GATE_REAL_DIR=str(base / "no-real-photos")) as proxy:
        yield proxy


def _analysed(url: str, headers: dict[str, str], archive: str) -> dict:
    deployed = requests.post(f"{url}/deploy", json={"archive": archive, "auto": QUICK}, headers=headers, timeout=300)
    assert deployed.status_code == 201, deployed.text
    assert deployed.json()["analysis"]["state"] == "running"
    for _ in range(120):
        listed = requests.get(url, headers=headers, timeout=30).json()
        if listed["analysis"]["state"] != "running":
            return listed
        time.sleep(0.5)
    raise AssertionError(f"the analysis of {archive} did not end: {listed['analysis']}")


def test_a_good_canary_promotes_itself_and_a_worse_one_is_retired_under_load(stack):
    proxy = stack
    headers = {"Authorization": f"Bearer {issue_token(proxy, '--user', 'ops', '--scopes', 'admin')[1]}"}
    url = f"{proxy.url}/admin/models/{MODEL}"
    with Load(proxy, issue_token(proxy, "--user", "load", "--scopes", "predict")[1], MODEL) as load:
        time.sleep(2)
        good = _analysed(url, headers, f"{MODEL}-v2.0.mar")
        assert good["analysis"]["state"] == "promoted" and good["analysis"]["step"] == 2, good["analysis"]
        assert [row["version"] for row in good["versions"] if row["default"]] == ["2.0"]
        promoted_at = time.monotonic()

        worse = _analysed(url, headers, f"{MODEL}-v3.0.mar")
        assert worse["analysis"]["state"] == "rolled_back", worse["analysis"]
        assert worse["analysis"]["reason"].startswith("unsure answers 100.0%")
        assert [row["version"] for row in worse["versions"]] == ["2.0"]  # 3.0 drained and unregistered
        time.sleep(2)
    assert load.failures() == []
    assert set(load.versions_since(promoted_at)) <= {"2.0", "3.0"} and len(load.answers) > 100
    audit = requests.get(f"{proxy.url}/admin/audit", headers=headers, timeout=30).json()["entries"]
    assert [entry["action"] for entry in audit if entry["actor"] == "auto-canary"] == ["auto_rolled_back",
                                                                                     "auto_promoted"]
    signals = requests.get(f"{url}/signals?window=60", headers=headers, timeout=30).json()["versions"]
    assert [row["version"] for row in signals] == ["2.0"] and signals[0]["requests"] > 0



def test_a_caller_naming_a_version_steers_nothing(stack):
    """Issue 33: 25 calls naming a canary, with min_confidence=0, promoted a canary no routed traffic had reached.
    Only what the router sends a version is its evidence."""
    proxy = stack
    admin = {"Authorization": f"Bearer {issue_token(proxy, '--user', 'ops', '--scopes', 'admin')[1]}"}
    user = {"Authorization": f"Bearer {issue_token(proxy, '--user', 'caller', '--scopes', 'predict')[1]}",
            "Content-Type": "image/jpeg"}
    url = f"{proxy.url}/admin/models/{MODEL}"
    default = next(row["version"] for row in requests.get(url, headers=admin, timeout=30).json()["versions"]
                   if row["default"])

    def counted() -> int:
        rows = requests.get(f"{url}/signals?window=60", headers=admin, timeout=30).json()["versions"]
        return next(row["requests"] for row in rows if row["version"] == default)

    photo = encode(scene(CLEAR_SCENES[0]))
    before = counted()
    for _ in range(10):
        named = requests.post(f"{proxy.url}/predictions/{MODEL}/{default}?min_confidence=0", data=photo,
                              headers=user, timeout=60)
        assert named.status_code == 200 and named.headers["X-Archive-Trusted"] in ("true", "false")
    assert counted() == before
    assert requests.post(f"{proxy.url}/predictions/{MODEL}", data=photo, headers=user, timeout=60).ok
    assert counted() == before + 1


def test_only_a_correction_quoting_an_answer_the_router_gave_counts_once(stack):
    """Issue 33: 12 invented corrections ("the canary answered 90, the truth was 0") rolled a healthy canary back.
    A correction counts for a version only by quoting the X-Answer-Id of an answer the router had it give."""
    proxy = stack
    admin = {"Authorization": f"Bearer {issue_token(proxy, '--user', 'ops', '--scopes', 'admin')[1]}"}
    user = {"Authorization": f"Bearer {issue_token(proxy, '--user', 'critic', '--scopes', 'predict')[1]}"}
    url = f"{proxy.url}/admin/models/{MODEL}"
    default = next(row["version"] for row in requests.get(url, headers=admin, timeout=30).json()["versions"]
                   if row["default"])

    def corrections_counted() -> int:
        rows = requests.get(f"{url}/signals?window=600", headers=admin, timeout=30).json()["versions"]
        return next((row["feedback"] for row in rows if row["version"] == default), 0)

    def correct(seed: int, **fields: object) -> dict:
        sent = requests.post(f"{proxy.url}/feedback", files={"image": ("p.jpg", encode(scene(seed)), "image/jpeg")},
                             data={"true_degree": "0", **fields}, headers=user, timeout=60)
        assert sent.status_code == 201, sent.text
        return sent.json()

    before = corrections_counted()
    invented = [correct(7000 + i, model_version=default, model_degree="90") for i in range(12)]
    assert [answer["evidence"] for answer in invented] == [False] * 12 and corrections_counted() == before

    photo = encode(scene(CLEAR_SCENES[0]))
    routed = requests.post(f"{proxy.url}/predictions/{MODEL}", data=photo,
                           headers={**user, "Content-Type": "image/jpeg"}, timeout=60)
    named = requests.post(f"{proxy.url}/predictions/{MODEL}/{default}", data=photo,
                          headers={**user, "Content-Type": "image/jpeg"}, timeout=60)
    assert routed.ok and named.ok and "X-Answer-Id" not in named.headers
    answer_id = routed.headers["X-Answer-Id"]
    quoted = correct(7100, answer_id=answer_id, model_version="9.9", model_degree="90")  # the id's word wins
    assert quoted["evidence"] is True and corrections_counted() == before + 1
    assert (quoted["model_version"], quoted["model_degree"]) == (default, routed.json()["model_degree"])
    assert correct(7101, answer_id=answer_id)["evidence"] is False  # used once
    forged = answer_id[:-4] + ("AAAA" if not answer_id.endswith("AAAA") else "BBBB")
    assert correct(7102, answer_id=forged)["evidence"] is False
    assert corrections_counted() == before + 1
