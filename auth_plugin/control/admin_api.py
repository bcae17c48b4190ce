"""The control plane over HTTP (admin scope): list versions, deploy, canary, promote, roll back, retire.

    GET  /admin/models/{model}                  versions, default, canary share, workers, archive metadata
    GET  /admin/models/{model}/archives         the model's archives in model_store/, deployed or not
    POST /admin/models/{model}/deploy           {"archive": "food_rotation-v2.0.mar", "canary": 10,  or  "auto":
                                                 true | {"steps": [10, 50], "step_s": 60, ...}: canary analysis
                                                 (auth_plugin/control/canary_analysis.py), then promote or retire
                                                 "gate_dataset": "feedback-1,feedback-2"}  (default: the
                                                 datasets the archive was retrained on; their held-out photos
                                                 are gated too; "all" for every dataset here)
    POST /admin/models/{model}/canary           {"version": "2.0", "percent": 50}
    POST /admin/models/{model}/promote          {"version": "2.0"}   (default: the canary)
    POST /admin/models/{model}/rollback         {"version": "1.0"}   (default: the default before the current
                                                 one, skipping defaults already rolled back: never a toggle)
    POST /admin/models/{model}/retire           {"version": "1.0"}
    DELETE /admin/models/{model}/archives/{archive}   an archive nothing needs (not deployed, never a default)
    GET  /admin/models/{model}/signals?window=300   each version's requests, errors, p95, unsure, corrections
    GET  /admin/models/{model}/pods             on a shared database: each live pod's versions, workers, in flight
    GET  /admin/audit?limit=100                 every admin action: who, what, when, outcome (newest first)

Every POST and DELETE is recorded in the audit log, refused or not; GET /admin/models/{model} also returns the default
history and where a rollback would go.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiohttp import web

from auth_plugin.access import PRINCIPAL, Handler, requires
from auth_plugin.app_keys import ANALYST, HELD_OUT, METRICS, PODS, REGISTRY, ROLLOUTS, SETTINGS, SIGNALS
from auth_plugin.bodies import read_json_object
from auth_plugin.control import version_views
from auth_plugin.control.canary_analysis import CanaryPolicy
from auth_plugin.control.steps.rollout import RolloutError
from auth_plugin.log_safety import printable
from food_rotation.provenance import Provenance
from food_rotation.service_error import ServiceError


def _model(request: web.Request) -> str:
    """The model named in the URL: only the one this gateway serves (anything else never reaches TorchServe), and
    only on the proxy that runs the control plane."""
    model, settings = request.match_info["model"], request.config_dict[SETTINGS]
    if not settings.control_plane:
        raise RolloutError(409, "not_the_control_plane", "this proxy serves predictions only "
                                                         "(PROXY_CONTROL_PLANE=false): manage versions through the "
                                                         "proxy that runs the control plane")
    if model != settings.model_name:
        raise RolloutError(404, "unknown_model", f"this service manages {settings.model_name!r} only; "
                                                 f"there is no model {model[:40]!r}")
    return model


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
    model = _model(request)
    rollouts = request.config_dict[ROLLOUTS]
    rows = await version_views.versions(rollouts, request.config_dict[REGISTRY], model)
    target = rollouts.rollback_target(model)
    analysis = request.config_dict[ANALYST].latest.get(model)
    return web.json_response({"model": model, "versions": rows,
                              "analysis": None if analysis is None else analysis.as_dict(),
                              "rollback_target": None if target is None else target.version,
                              "history": [change.as_dict() for change in reversed(rollouts.history.defaults(model))]})


async def signals(request: web.Request) -> web.Response:
    """Each deployed version over the last `window` seconds (default 300): requests, 5xx share, p95 latency,
    unsure share, corrections and how often the version had it wrong; the Models view sets canary beside default."""
    model = _model(request)
    window = request.query.get("window", "300")
    if not window.isdigit() or not 10 <= int(window) <= 3600:
        raise RolloutError(400, "bad_window", "window must be a whole number of seconds from 10 to 3600")
    route = request.config_dict[REGISTRY].route(model)
    rows = [{**request.config_dict[SIGNALS].summary(version, int(window)).as_dict(),
             "role": "default" if route and version == route.default else
             "canary" if route and version == route.canary else "other"}
            for version in request.config_dict[REGISTRY].versions(model)]
    return web.json_response({"model": model, "window_s": int(window), "versions": rows})


async def pods(request: web.Request) -> web.Response:
    """Every live pod's last report of its own TorchServe (a shared database; [] on one machine): what a rollout
    step waits for."""
    model = _model(request)
    reports = request.config_dict[PODS]
    live = await asyncio.to_thread(reports.live, model)
    now = time.time()
    return web.json_response({"model": model, "shared": reports.shared, "live_after_s": reports.live_after_s,
                              "pods": [report.as_json(now) for report in live]})


async def remove_archive(request: web.Request) -> web.Response:
    return web.json_response(await request.config_dict[ROLLOUTS].remove_archive(_model(request),
                                                                        request.match_info["archive"]))


async def audit_log(request: web.Request) -> web.Response:
    limit = request.query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise RolloutError(400, "bad_limit", "limit must be a whole number from 1 to 1000")
    entries = request.config_dict[ROLLOUTS].history.audit_entries(int(limit))
    return web.json_response({"entries": [entry.as_dict() for entry in entries]})


async def list_archives(request: web.Request) -> web.Response:
    model = _model(request)
    rows = await version_views.archives(request.config_dict[ROLLOUTS], request.config_dict[REGISTRY], model)
    return web.json_response({"model": model, "archives": rows})


async def _held_out(request: web.Request, archive: str, named: str | None) -> list[Path]:
    """The photos a version is gated on besides the samples: by default the corrections its archive names as held
    out of its training (metadata.json, by sha256), or the current held-out photos of the datasets `named` lists."""
    if named is not None:
        return await request.config_dict[HELD_OUT].named(named)
    provenance = Provenance.from_metadata((await request.config_dict[ROLLOUTS].catalogue.read(archive)).metadata)
    return [] if provenance is None else await request.config_dict[HELD_OUT].of(provenance, archive)


async def deploy(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    archive = _string(body, "archive")
    policy = None if body.get("auto") in (None, False) else CanaryPolicy.from_request(body["auto"])
    if policy is not None and body.get("canary"):
        raise RolloutError(400, "auto_and_canary", "give \"auto\" (its steps set the canary share) or \"canary\"")
    held_out = await _held_out(request, archive, _string(body, "gate_dataset", required=False))
    model = _model(request)
    result = await request.config_dict[ROLLOUTS].deploy(model, archive, _percent(body, "canary"), held_out)
    if policy is not None:
        result["analysis"] = request.config_dict[ANALYST].start(model, result["version"], policy).as_dict()
    return web.json_response(result, status=201)


async def canary(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    return web.json_response(await request.config_dict[ROLLOUTS].set_canary(
        _model(request), _string(body, "version"), _percent(body, "percent")))


async def promote(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    return web.json_response(await request.config_dict[ROLLOUTS].promote(
        _model(request), _string(body, "version", required=False), actor=_actor(request)))


async def rollback(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    return web.json_response(await request.config_dict[ROLLOUTS].rollback(
        _model(request), _string(body, "version", required=False), actor=_actor(request)))


def _actor(request: web.Request) -> str:
    return request[PRINCIPAL].user


def audited(action: str, handler: Handler) -> Handler:
    """`handler`, with each call recorded in the audit log: who, the request's fields, and what came of it."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            fields = await read_json_object(request)
        except ServiceError:
            fields = {}  # the handler refuses it, and that refusal is recorded
        fields = {**{key: printable(value)[:200] for key, value in request.match_info.items() if key != "model"},
                  **fields}
        model = printable(request.match_info.get("model", ""))[:100]  # none for an action on tokens
        history = request.config_dict[ROLLOUTS].history
        def record(outcome: str) -> Awaitable[None]:  # off the event loop: a database write may wait
            return asyncio.to_thread(history.audit, _actor(request), action, model, fields, outcome)

        try:
            response = await handler(request)
        except ServiceError as exc:
            await record(f"refused {exc.status} {exc.code}")
            request.config_dict[METRICS].admin_actions.labels(action, "refused").inc()
            raise
        except BaseException:
            await asyncio.shield(record("failed"))
            request.config_dict[METRICS].admin_actions.labels(action, "failed").inc()
            raise
        await record("ok")
        request.config_dict[METRICS].admin_actions.labels(action, "ok").inc()
        return response

    return run  # type: ignore[return-value]


async def retire(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    return web.json_response(await request.config_dict[ROLLOUTS].retire(_model(request),
                                                                _string(body, "version")))


def control_app() -> web.Application:
    """/admin (mounted there): versions, rollouts, signals and the audit log; every route needs the admin scope
    (checked before anything else is read)."""
    app = web.Application()
    guarded = requires("admin")
    app.router.add_get("/models/{model}", guarded(list_versions))
    app.router.add_get("/models/{model}/archives", guarded(list_archives))
    app.router.add_get("/models/{model}/signals", guarded(signals))
    app.router.add_get("/models/{model}/pods", guarded(pods))
    app.router.add_get("/audit", guarded(audit_log))
    for action, handler in (("deploy", deploy), ("canary", canary), ("promote", promote), ("rollback", rollback),
                            ("retire", retire)):
        app.router.add_post(f"/models/{{model}}/{action}", guarded(audited(action, handler)))
    app.router.add_delete("/models/{model}/archives/{archive}", guarded(audited("remove_archive", remove_archive)))
    return app
