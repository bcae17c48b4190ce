"""Version rollout of a model of its own on the session's TorchServe, under constant load: not one request may fail.

deploy v2 as a 50 % canary -> promote (v1 drained, unregistered) -> an untrained v3 and an unloadable v4 refused
by the gate -> roll back to v1 -> a second rollback refused, one naming v2 rolls forward to it.
Versions whose own leave-one-source-out record is harmful (v5), or holds only above the threshold they serve (v6),
are refused before they are registered.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests
import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training.model_records import tied_to
from operations.gateway_process import Proxy
from tests.integration.load import Load
from tests.photos import CLEAR_SCENES, encode, scene
from tests.stack import (
    build_archive,
    build_untrained_archive,
    issue_token,
    model_of_its_own,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow (CI: .ci/run)
MODEL = "rollout_rotation"  # this module's model on the session's TorchServe


def admin(proxy: Proxy, token: str, action: str, body: dict | None = None) -> requests.Response:
    url = f"{proxy.url}/admin/models/{MODEL}" + (f"/{action}" if action != "list" else "")
    method = "GET" if action == "list" else "POST"
    return requests.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=600)


def listed(proxy: Proxy, token: str) -> dict[str, dict]:
    answer = admin(proxy, token, "list")
    assert answer.status_code == 200, answer.text
    return {row["version"]: row for row in answer.json()["versions"]}


def recorded(folder: Path, weights: Path, worst_harm: float, threshold: float) -> Path:
    """A copy of `weights` whose .json records this leave-one-source-out result (as fit_head.py writes it)."""
    folder.mkdir()
    copy = Path(shutil.copy(weights, folder / "weights.pth"))
    summary = {"threshold": threshold, "temperature": 1.0, "groups": 19, "worst_group": "food-D",
               "worst_harm": worst_harm, "worst_harm_upper": 0.1, "max_harm": 0.01, "how": "leave one source out"}
    info = {**json.loads(weights.with_suffix(".json").read_text()), "evaluation_by_source": tied_to(copy, summary)}
    copy.with_suffix(".json").write_text(json.dumps(info))
    return copy


@pytest.fixture(scope="module")
def stack(tmp_path_factory, torchserve, demo_weights):
    """A model of its own on the session's TorchServe (every version here is this module's), behind a gateway of its
    own that reconciles every second."""
    base, store = tmp_path_factory.mktemp("rollout"), torchserve.model_store
    build_archive(demo_weights, "1.0", store, MODEL, model=MODEL)
    build_archive(demo_weights, "2.0", store, f"{MODEL}-v2.0", model=MODEL)
    build_untrained_archive(base / "untrained", "3.0", store, MODEL)
    wrong = base / "wrong" / "resnet.pth"  # weights of another architecture: the workers cannot even load them
    wrong.parent.mkdir()
    torch.save(RotationNet("resnet18").state_dict(), wrong)
    wrong.with_suffix(".json").write_text((base / "untrained" / "untrained.json").read_text())
    build_archive(wrong, "4.0", store, f"{MODEL}-v4.0", model=MODEL)
    build_archive(recorded(base / "v5", demo_weights, worst_harm=0.03, threshold=0.5), "5.0", store,
                  f"{MODEL}-v5.0", model=MODEL)
    build_archive(recorded(base / "v6", demo_weights, worst_harm=0.0, threshold=0.99), "6.0", store,
                  f"{MODEL}-v6.0", model=MODEL)
    with model_of_its_own(torchserve, MODEL, base / "proxy", PROXY_RECONCILE_INTERVAL_S="1") as proxy:
        yield torchserve, proxy


def test_rollout_canary_promote_refuse_and_roll_back_under_load(stack):
    _, proxy = stack
    admin_token = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    user_token = issue_token(proxy, "--user", "load", "--scopes", "predict")[1]
    assert admin(proxy, user_token, "list").status_code == 403  # the control plane needs the admin scope

    with Load(proxy, user_token, MODEL) as load:
        time.sleep(2)
        assert set(load.versions_since(0)) == {"1.0"}

        deployed = admin(proxy, admin_token, "deploy", {"archive": f"{MODEL}-v2.0.mar", "canary": 50})
        assert deployed.status_code == 201, deployed.text
        assert deployed.json()["gate_accuracy"] >= 0.9
        # make test's make real-data links the held-out real photos where the gate looks by default: 2.0 (the same
        # weights as 1.0) is scored on them beside the default, through both versions
        assert deployed.json()["real_accuracy"] == deployed.json()["real_default_accuracy"], deployed.json()
        canary_start = time.monotonic()
        time.sleep(6)
        shares = load.versions_since(canary_start)
        assert set(shares) == {"1.0", "2.0"}
        assert 0.3 < shares["2.0"] / sum(shares.values()) < 0.7, shares

        promoted = admin(proxy, admin_token, "promote", {"version": "2.0"})
        assert promoted.status_code == 200, promoted.text
        promoted_at = time.monotonic()
        assert set(listed(proxy, admin_token)) == {"2.0"}  # v1 drained and retired
        time.sleep(3)
        assert set(load.versions_since(promoted_at)) == {"2.0"}

        refused = admin(proxy, admin_token, "deploy", {"archive": f"{MODEL}-v3.0.mar"})
        assert refused.status_code == 422 and refused.json()["error"] == "gate_refused"
        assert "accuracy" in refused.json()["message"]
        assert set(listed(proxy, admin_token)) == {"2.0"}
        unloadable = admin(proxy, admin_token, "deploy", {"archive": f"{MODEL}-v4.0.mar"})
        assert unloadable.status_code == 422 and "workers did not start" in unloadable.json()["message"]
        assert set(listed(proxy, admin_token)) == {"2.0"}
        time.sleep(2)

        rolled_back = admin(proxy, admin_token, "rollback")
        assert rolled_back.status_code == 200, rolled_back.text
        rolled_back_at = time.monotonic()
        time.sleep(3)
        assert set(load.versions_since(rolled_back_at)) == {"1.0"}
        assert set(listed(proxy, admin_token)) == {"1.0"}

    assert load.failures() == []
    assert len(load.answers) > 200
    print(f"\nrollout under load: {len(load.answers)} requests, {len(load.failures())} failed")


@pytest.mark.parametrize(("action", "body", "status", "error"), [
    ("deploy", {"archive": f"../model_store/{MODEL}.mar"}, 400, "bad_archive_name"),
    ("deploy", {"archive": "https://example.com/x.mar"}, 400, "bad_archive_name"),
    ("deploy", {"archive": "sub/x.mar"}, 400, "bad_archive_name"),
    ("deploy", {"archive": "nowhere.mar"}, 404, "archive_not_found"),
    ("deploy", {"archive": f"{MODEL}.mar"}, 409, "version_exists"),
    ("retire", {"version": "1.0"}, 409, "is_default"),
    ("retire", {"version": "9.9"}, 404, "unknown_version"),
    ("promote", {"version": "9.9"}, 404, "unknown_version"),
    ("canary", {"version": "1.0", "percent": 150}, 400, "bad_canary"),
])
def test_bad_control_plane_input(stack, action, body, status, error):
    _, proxy = stack
    token = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    answer = admin(proxy, token, action, body)
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text


def test_a_version_harmful_on_sources_it_never_saw_is_refused_before_it_is_registered(stack):
    _, proxy = stack
    token = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    before = listed(proxy, token)
    harmful = admin(proxy, token, "deploy", {"archive": f"{MODEL}-v5.0.mar", "canary": 10})
    assert (harmful.status_code, harmful.json()["error"]) == (422, "gate_refused"), harmful.text
    assert "turns 3.0% of the upright photos of food-D, above 1.0%" in harmful.json()["message"]
    served_lower = admin(proxy, token, "deploy", {"archive": f"{MODEL}-v6.0.mar", "canary": 10})
    assert (served_lower.status_code, served_lower.json()["error"]) == (422, "gate_refused"), served_lower.text
    assert "serves min_confidence 0.8952, below the 0.9900" in served_lower.json()["message"]
    assert set(listed(proxy, token)) == set(before)  # neither was registered


def test_unknown_model_is_404(stack):
    _, proxy = stack
    token = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    answer = requests.post(f"{proxy.url}/admin/models/nope/promote", json={"version": "1.0"},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 404


def test_a_rollback_is_never_a_toggle_back_but_may_name_the_version(stack):
    """After the rollback to 1.0 above, a second bare rollback is refused; naming 2.0 rolls forward to it.
    (Restarting TorchServe and the gateway keeps 2.0 the default: test_faults, whose TorchServe is its own.)"""
    _, proxy = stack
    token = issue_token(proxy, "--user", "ops", "--scopes", "admin")[1]
    assert admin(proxy, token, "rollback").status_code == 409  # 2.0 was left by a rollback: never a toggle back
    assert admin(proxy, token, "rollback", {"version": "2.0"}).status_code == 200
    versions = listed(proxy, token)
    assert set(versions) == {"2.0"} and versions["2.0"]["default"] and versions["2.0"]["workers"] >= 1
    user = issue_token(proxy, "--user", "after-rollback")[1]
    answer = requests.post(f"{proxy.url}/predictions/{MODEL}", data=encode(scene(CLEAR_SCENES[0]), "JPEG"),
                           headers={"Authorization": f"Bearer {user}"}, timeout=60)
    assert answer.status_code == 200 and answer.json()["model_version"] == "2.0"


def test_refused_calls_with_huge_bodies_cost_the_audit_log_a_summary(stack):
    """Three refused deploy calls of 4 MB each: the database grows by kilobytes, the audit page stays small."""
    _, proxy = stack
    admin_token = issue_token(proxy, "--user", "auditor", "--scopes", "admin")[1]

    def stored() -> int:
        return sum(path.stat().st_size for path in proxy.home.rglob("*.sqlite3*") if path.is_file())

    before = stored()
    for _ in range(3):
        refused = admin(proxy, admin_token, "deploy", {"archive": "x" * 4_000_000 + ".mar"})
        assert refused.status_code == 400 and refused.json()["error"] == "bad_archive_name"
    assert stored() - before < 500_000
    audit = requests.get(f"{proxy.url}/admin/audit?limit=3", headers={"Authorization": f"Bearer {admin_token}"},
                         timeout=30)
    assert audit.status_code == 200 and len(audit.content) < 20_000
    assert all(entry["detail"]["archive"].endswith("chars)") for entry in audit.json()["entries"])
