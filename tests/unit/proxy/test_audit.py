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
