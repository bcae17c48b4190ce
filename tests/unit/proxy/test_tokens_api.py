"""Tokens over HTTP for the admin page (issue 32): listed without the secret, issued once, revoked, every change in
the audit log, refused in a clear 4xx; and a token's last use recorded at most once a minute."""

from __future__ import annotations

import time

import pytest

from auth_plugin.auth import Authenticator
from auth_plugin.token_store import TokenStore


async def test_a_token_is_issued_once_listed_without_its_secret_and_revoked_with_an_audit_trail(setup, admin_auth):
    _, client, _ = setup
    proxy = await client()
    issued = await proxy.post("/admin/tokens", json={"user": "colleague", "scopes": ["predict"], "ttl_days": 7},
                              headers=admin_auth)
    body = await issued.json()
    assert issued.status == 201 and body["token"].startswith("frs_") and body["state"] == "active"
    assert 7 * 86400 - 5 < body["expires_at"] - body["created_at"] <= 7 * 86400
    works = await proxy.get("/whoami", headers={"Authorization": f"Bearer {body['token']}"})
    assert (await works.json())["user"] == "colleague"

    listing = await (await proxy.get("/admin/tokens", headers=admin_auth)).json()
    newest = listing["tokens"][0]
    assert newest["id"] == body["id"] and newest["user"] == "colleague" and newest["last_used_at"] is not None
    text = str(listing)
    assert body["token"] not in text and "token_hash" not in text and "frs_" not in text
    assert {row["user"] for row in listing["tokens"]} == {"colleague", "alice", "root"}

    revoked = await proxy.delete(f"/admin/tokens/{body['id']}", headers=admin_auth)
    assert revoked.status == 200 and (await revoked.json()) == {"revoked": body["id"]}
    time.sleep(0.6)  # past the lookup cache
    refused = await proxy.get("/whoami", headers={"Authorization": f"Bearer {body['token']}"})
    assert refused.status == 401
    listing = await (await proxy.get("/admin/tokens", headers=admin_auth)).json()
    assert next(row for row in listing["tokens"] if row["id"] == body["id"])["state"] == "revoked"

    audit = (await (await proxy.get("/admin/audit", headers=admin_auth)).json())["entries"]
    actions = [(entry["action"], entry["actor"], entry["outcome"]) for entry in audit]
    assert actions[:2] == [("revoke_token", "root", "ok"), ("issue_token", "root", "ok")]
    assert body["token"] not in str(audit) and audit[1]["detail"]["user"] == "colleague"


@pytest.mark.parametrize(("body", "error"), [
    ({"scopes": ["predict"]}, "bad_user"), ({"user": " ", "scopes": ["predict"]}, "bad_user"),
    ({"user": "a", "scopes": []}, "bad_scopes"), ({"user": "a", "scopes": ["root"]}, "bad_scopes"),
    ({"user": "a", "scopes": "predict"}, "bad_scopes"),
    ({"user": "a", "scopes": ["predict"], "ttl_days": 0}, "bad_ttl"),
    ({"user": "a", "scopes": ["predict"], "ttl_days": 99999}, "bad_ttl"),
    ({"user": "a", "scopes": ["predict"], "ttl_days": "30"}, "bad_ttl"),
])
async def test_a_bad_request_is_a_clear_400_and_recorded_as_refused(setup, admin_auth, body, error):
    _, client, _ = setup
    proxy = await client()
    answer = await proxy.post("/admin/tokens", json=body, headers=admin_auth)
    assert (answer.status, (await answer.json())["error"]) == (400, error)
    audit = (await (await proxy.get("/admin/audit", headers=admin_auth)).json())["entries"]
    assert audit[0]["action"] == "issue_token" and audit[0]["outcome"] == f"refused 400 {error}"


async def test_only_the_admin_scope_reaches_tokens_and_unknown_ids_are_404(setup, admin_auth):
    _, client, user_auth = setup
    proxy = await client()
    for method, path in (("GET", "/admin/tokens"), ("POST", "/admin/tokens"), ("DELETE", "/admin/tokens/1")):
        answer = await proxy.request(method, path, headers=user_auth, json={})
        assert (answer.status, (await answer.json())["error"]) == (403, "insufficient_scope")
    assert (await proxy.delete("/admin/tokens/999", headers=admin_auth)).status == 404
    assert (await proxy.delete("/admin/tokens/x1", headers=admin_auth)).status == 400


async def test_a_tokens_last_use_is_written_at_most_once_a_minute(tmp_path):
    store = TokenStore(tmp_path / "tokens.sqlite3")
    token, _ = store.issue("alice", ["predict"], 3600)
    writes = []
    original = store.touch
    store.touch = lambda token_id, at: (writes.append(at), original(token_id, at))  # type: ignore[method-assign]
    authenticator = Authenticator(store, None, cache_s=0.0)
    for _ in range(5):
        await authenticator.identify({"Authorization": f"Bearer {token}"})
    assert len(writes) == 1 and store.lookup(token).last_used_at == writes[0]
    store.close()
