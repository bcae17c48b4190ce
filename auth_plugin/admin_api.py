"""The control plane over HTTP (admin scope): list versions, deploy, canary, promote, roll back, retire.

    GET  /admin/models/{model}                  versions, default, canary share, workers, archive metadata
    GET  /admin/models/{model}/archives         the model's archives in model_store/, deployed or not
    POST /admin/models/{model}/deploy           {"archive": "food_rotation-v2.0.mar", "canary": 10,
                                                 "gate_dataset": "feedback-1" (gate on its held-out photos too)}
    POST /admin/models/{model}/canary           {"version": "2.0", "percent": 50}
    POST /admin/models/{model}/promote          {"version": "2.0"}   (default: the canary)
    POST /admin/models/{model}/rollback         {}
    POST /admin/models/{model}/retire           {"version": "1.0"}
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from auth_plugin.feedback_api import DATASETS
from auth_plugin.rollout import RolloutError, Rollouts

ROLLOUTS = web.AppKey("rollouts", Rollouts)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read())
    except ValueError as exc:
        raise RolloutError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RolloutError(400, "json_not_object", "the body must be a JSON object")
    return body


def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RolloutError(400, f"missing_{key}", f"give \"{key}\" as a non-empty string")
    return value


def _percent(body: dict[str, Any], key: str) -> float:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RolloutError(400, "bad_canary", f"\"{key}\" must be a number between 0 and 100")
    return float(value)


async def list_versions(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    return web.json_response({"model": model, "versions": await request.app[ROLLOUTS].describe(model)})


async def list_archives(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    return web.json_response({"model": model, "archives": await request.app[ROLLOUTS].archives(model)})


async def deploy(request: web.Request) -> web.Response:
    body = await _json_body(request)
    held_out: list[Path] = []
    if (dataset := _string(body, "gate_dataset", required=False)) is not None:
        held_out = (await asyncio.to_thread(request.app[DATASETS].split, dataset)).held_out
        if not held_out:
            raise RolloutError(422, "no_held_out_photos", f"dataset {dataset!r} has no held-out photos to gate on")
    result = await request.app[ROLLOUTS].deploy(request.match_info["model"], _string(body, "archive"),
                                                _percent(body, "canary"), held_out)
    return web.json_response(result, status=201)


async def canary(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return web.json_response(await request.app[ROLLOUTS].set_canary(
        request.match_info["model"], _string(body, "version"), _percent(body, "percent")))


async def promote(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return web.json_response(await request.app[ROLLOUTS].promote(request.match_info["model"],
                                                                 _string(body, "version", required=False)))


async def rollback(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ROLLOUTS].rollback(request.match_info["model"]))


async def retire(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return web.json_response(await request.app[ROLLOUTS].retire(request.match_info["model"],
                                                                _string(body, "version")))


def add_routes(app: web.Application, authenticate_admin: Any) -> None:
    """Every admin route checks the admin scope before anything else."""
    def guarded(handler: Any) -> Any:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            authenticate_admin(request)
            return await handler(request)
        return wrapper

    app.router.add_get("/admin/models/{model}", guarded(list_versions))
    app.router.add_get("/admin/models/{model}/archives", guarded(list_archives))
    app.router.add_post("/admin/models/{model}/deploy", guarded(deploy))
    app.router.add_post("/admin/models/{model}/canary", guarded(canary))
    app.router.add_post("/admin/models/{model}/promote", guarded(promote))
    app.router.add_post("/admin/models/{model}/rollback", guarded(rollback))
    app.router.add_post("/admin/models/{model}/retire", guarded(retire))
