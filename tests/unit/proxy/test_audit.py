"""Every admin action lands in the audit log with who, what and the outcome, refused ones too (issue 14)."""

from __future__ import annotations


async def test_admin_actions_are_audited_with_actor_fields_and_outcome(setup, admin_auth):
    _, client, auth = setup
    proxy = await client()
    answer = await proxy.post("/admin/models/food_rotation/rollback", json={"version": "1.0"}, headers=admin_auth)
    assert answer.status == 404  # nothing is deployed in front of this fake TorchServe
    await proxy.post("/admin/models/food_rotation/promote", data=b"{not json", headers=admin_auth)
    assert (await proxy.post("/admin/models/food_rotation/retire", json={}, headers=auth)).status == 403
    audit = await proxy.get("/admin/audit?limit=10", headers=admin_auth)
    entries = (await audit.json())["entries"]
    assert [(e["actor"], e["action"], e["model"], e["detail"], e["outcome"]) for e in entries] == [
        ("root", "promote", "food_rotation", {}, "refused 400 invalid_json"),
        ("root", "rollback", "food_rotation", {"version": "1.0"}, "refused 404 unknown_model"),
    ]  # the predict-scope caller never got past authorization: nothing to audit
    assert entries[0]["at"] >= entries[1]["at"] > 0
    assert (await proxy.get("/admin/audit", headers=auth)).status == 403
    assert (await (await proxy.get("/admin/audit?limit=0", headers=admin_auth)).json())["error"] == "bad_limit"


async def test_a_huge_refused_call_is_audited_as_a_bounded_summary(setup, admin_auth):
    """Three refused 4 MB deploy calls grew the database by their bodies, and the audit page answered them whole."""
    _, client, _ = setup
    proxy = await client()
    huge = {"archive": "x" * 4_000_000, **{f"field{i}": i for i in range(50)}}
    for _ in range(3):
        assert (await proxy.post("/admin/models/food_rotation/deploy", json=huge, headers=admin_auth)).status == 400
    answer = await proxy.get("/admin/audit?limit=3", headers=admin_auth)
    assert answer.status == 200 and len(await answer.read()) < 20_000
    detail = (await answer.json())["entries"][0]["detail"]
    assert detail["archive"].endswith("... (4000002 chars)") and len(detail) <= 21
    assert detail["field1"] == 1 and "more fields" in detail["..."]
