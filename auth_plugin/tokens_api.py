"""Access tokens over HTTP (admin scope), for the admin page's Tokens view: what `python -m auth_plugin tokens` does.

    GET    /admin/tokens          every token: id, user, scopes, created, expires, last used, state (never the
                                  token, nor its hash)
    POST   /admin/tokens          {"user": "alice", "scopes": ["predict"], "ttl_days": 30}: 201 with the token,
                                  the only time it is shown
    DELETE /admin/tokens/{id}     revoked (effective within PROXY_TOKEN_CACHE_S)

Issuing and revoking are recorded in the audit log (who, the request's fields, the outcome); the new token is in
the answer only, never in the log.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from aiohttp import web

from auth_plugin.access import requires
from auth_plugin.app_keys import TOKENS
from auth_plugin.bodies import read_json_object
from auth_plugin.control.admin_api import audited
from auth_plugin.token_store import MAX_TTL_S, SCOPES, TokenRecord
from food_rotation.service_error import ServiceError

DEFAULT_TTL_DAYS = 30


def described(record: TokenRecord, now: float) -> dict[str, Any]:
    return {"id": record.id, "user": record.user, "scopes": sorted(record.scopes), "created_at": record.created_at,
            "expires_at": record.expires_at, "last_used_at": record.last_used_at, "state": record.state(now)}


async def list_tokens(request: web.Request) -> web.Response:
    records = await asyncio.to_thread(request.config_dict[TOKENS].all)
    now = time.time()
    return web.json_response({"tokens": [described(record, now) for record in reversed(records)]})


def _issue_fields(body: dict[str, Any]) -> tuple[str, list[str], float]:
    user, scopes, days = body.get("user"), body.get("scopes"), body.get("ttl_days", DEFAULT_TTL_DAYS)
    if not isinstance(user, str) or not user.strip() or len(user) > 100:
        raise ServiceError(400, "bad_user", "\"user\" must be a name of 1 to 100 characters")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes) or \
            not set(scopes) <= SCOPES:
        raise ServiceError(400, "bad_scopes", f"\"scopes\" must be a non-empty list of {', '.join(sorted(SCOPES))}")
    if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or \
            not 0 < days * 86400 <= MAX_TTL_S:
        raise ServiceError(400, "bad_ttl", f"\"ttl_days\" must be a number of days, more than 0 and at most "
                                           f"{MAX_TTL_S // 86400}")
    return user.strip(), scopes, float(days) * 86400


async def issue_token(request: web.Request) -> web.Response:
    user, scopes, ttl_s = _issue_fields(await read_json_object(request))
    token, record = await asyncio.to_thread(request.config_dict[TOKENS].issue, user, scopes, ttl_s)
    return web.json_response({"token": token, **described(record, time.time())}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ServiceError(400, "bad_token_id", "a token id is a number (GET /admin/tokens lists them)")
    if not await asyncio.to_thread(request.config_dict[TOKENS].revoke, int(raw)):
        raise ServiceError(404, "unknown_token", f"there is no token {raw}")
    return web.json_response({"revoked": int(raw)})


def tokens_app() -> web.Application:
    """/admin/tokens (mounted there), with the admin scope; issuing and revoking audited."""
    app = web.Application()
    guarded = requires("admin")
    app.router.add_get("", guarded(list_tokens))
    app.router.add_post("", guarded(audited("issue_token", issue_token)))
    app.router.add_delete("/{id}", guarded(audited("revoke_token", revoke_token)))
    return app
