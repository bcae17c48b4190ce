"""The token proxy: only authenticated predictions reach TorchServe's inference API, nothing else of it at all.

aiohttp, because one library gives both halves (server and one pooled upstream client), with an app factory,
typed app state and `cleanup_ctx` for the resources; no ASGI server or second HTTP client to pin and tune.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from auth_plugin.access import authorize, requires, vouch_for_connection
from auth_plugin.answer_receipts import AnswerReceipts
from auth_plugin.answer_verdict import trusted_by_the_archive, verdict_of
from auth_plugin.app_keys import (
    ANALYST,
    AUTHENTICATOR,
    DATASETS,
    HELD_OUT,
    KEYS,
    LIMITER,
    METRICS,
    PODS,
    READINESS,
    RECEIPTS,
    REGISTRY,
    ROLLOUTS,
    SERVED_VERSION,
    SESSION,
    SETTINGS,
    SIGNALS,
    STREAMS,
    TORCHSERVE,
    UPLOADS,
)
from auth_plugin.auth import Authenticator, AuthError, JwtVerifier
from auth_plugin.bodies import UploadStreams
from auth_plugin.control import admin_api
from auth_plugin.control.canary_analysis import CanaryAnalyst
from auth_plugin.control.history import History
from auth_plugin.control.plane_lock import ControlPlaneLock
from auth_plugin.control.pods import coordination, heartbeat
from auth_plugin.control.reconciler import Reconciler
from auth_plugin.control.rollout import Rollouts, RolloutSettings
from auth_plugin.control.signals import VersionSignals
from auth_plugin.control.smoke_gate import SmokeGate
from auth_plugin.control.torchserve_admin import TorchServeAdmin
from auth_plugin.control.versions import VersionRegistry
from auth_plugin.database import AdvisoryLock
from auth_plugin.feedback import feedback_api
from auth_plugin.feedback.datasets import DatasetStore, Quota
from auth_plugin.feedback.gate_photos import HeldOutCorrections
from auth_plugin.forwarding import UpstreamError, forward, forwarded_headers, forwarded_query, upstream_session
from auth_plugin.log_safety import TracebackLimiter
from auth_plugin.migrations import open_database
from auth_plugin.probes import healthz, metrics, readiness_check, readyz
from auth_plugin.proxy_metrics import ProxyMetrics
from auth_plugin.rate_limit import RateLimiter
from auth_plugin.readiness import Readiness
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore
from auth_plugin.torchserve_keys import TorchServeKeys
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin")

REQUEST_ID = "request_id"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
STATIC_DIR = Path(__file__).resolve().parent / "static"
_PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
# The admin page runs its own script and style files only; it may load images it made itself (blob:) and talk to
# this origin. Sent with every answer: the JSON ones are never meant to be rendered either.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def json_error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": error, "message": message, "status": status})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


TRACEBACKS = TracebackLimiter()


@web.middleware
async def request_id_and_errors(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every answer carries an X-Request-ID, and every refusal is JSON; one place turns exceptions into answers."""
    incoming = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    metrics = request.app[METRICS]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ServiceError as exc:  # every refusal, whoever raised it, in the one JSON shape
        if isinstance(exc, AuthError):
            metrics.auth_failures.labels(exc.reason).inc()
        elif isinstance(exc, UpstreamError):
            metrics.upstream_errors.labels(exc.kind).inc()
        response = json_error(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        if exc.status == 408:
            response.force_close()  # the rest of a slow body is not worth waiting for
    except Exception as exc:  # noqa: BLE001 (logged below) a bug must still answer in the one error format
        metrics.internal_errors.labels(type(exc).__name__).inc()
        TRACEBACKS.log(exc, "unexpected failure on %s %s", request.method, request.path)
        response = json_error(500, "internal_error", "the proxy failed to answer; its log has the details")
    response.headers["X-Request-ID"] = request[REQUEST_ID]
    response.headers.update(SECURITY_HEADERS)
    if request.app[SETTINGS].tls and request.app[SETTINGS].hsts_max_age_s > 0:
        response.headers["Strict-Transport-Security"] = f"max-age={request.app[SETTINGS].hsts_max_age_s}"
    resource = request.match_info.route.resource
    route, version = resource.canonical if resource else "unmatched", request.get(SERVED_VERSION, "none")
    metrics.requests.labels(route, str(response.status), version).inc()
    metrics.latency.labels(route, version).observe(time.perf_counter() - started)
    return response


@requires("predict")
async def predict(request: web.Request) -> web.Response:
    started = time.perf_counter()
    app = request.app
    settings = app[SETTINGS]
    model, version = request.match_info["model"], request.match_info.get("version")
    registry = app[REGISTRY]
    if model != settings.model_name:  # answered before anything is cached or counted under the name
        raise ServiceError(404, "unknown_model", f"this service serves {settings.model_name!r}; "
                                                 f"there is no model {model[:40]!r}")
    if version is not None and not (_NAME.fullmatch(version) and registry.knows(model, version)):
        raise ServiceError(404, "unknown_version", f"{model} has no version {version[:40]!r} "
                                                   f"(GET /admin/models/{model} lists them)")
    routed = version is None
    async with app[STREAMS].body(request, settings.max_body_bytes, settings.body_timeout_s) as body:
        version = version or registry.choose(model)  # an explicit version, so drains know what is in flight
        request[SERVED_VERSION] = version or "none"
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        try:
            with registry.in_flight(model, version):
                answer = await forward(app[SESSION], app[KEYS], settings.inference_url.rstrip("/") + path, body,
                                       forwarded_headers(request.headers, request[REQUEST_ID]),
                                       forwarded_query(request.query))
        except UpstreamError as exc:
            if routed:
                app[SIGNALS].prediction(request[SERVED_VERSION], exc.status, time.perf_counter() - started, None)
            raise
    content_type = answer.headers.pop("Content-Type", "application/json").split(";")[0]
    verdict = verdict_of(answer.status, content_type, answer.headers, answer.body)
    if routed:  # only what the router sent a version is its evidence: a caller naming a version proves nothing
        app[SIGNALS].prediction(request[SERVED_VERSION], answer.status, time.perf_counter() - started,
                                trusted_by_the_archive(answer.headers, verdict))
    if verdict is not None:
        app[METRICS].confidence.labels(request[SERVED_VERSION]).observe(verdict[0])
        if not verdict[1]:
            app[METRICS].unsure.labels(request[SERVED_VERSION]).inc()
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    response.content_type = content_type
    if routed and verdict is not None and verdict.model_degree is not None:  # what a correction quotes to count
        response.headers["X-Answer-Id"] = app[RECEIPTS].issue(request[SERVED_VERSION], verdict.model_degree)
    return response


async def whoami(request: web.Request) -> web.Response:
    """Who this token is and what it may do: the admin page signs in with it."""
    principal = await request.app[AUTHENTICATOR].identify(request.headers)
    vouch_for_connection(request)
    return web.json_response({"user": principal.user, "scopes": sorted(principal.scopes),
                              "model": request.app[SETTINGS].model_name})


async def page(request: web.Request) -> web.FileResponse:
    """The admin page: static files, no build step; it signs in with a token kept in the tab's session storage."""
    name = request.match_info.get("name", "index.html")
    if name not in _PAGE_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={"Content-Type": f"{_PAGE_FILES[name]}; charset=utf-8",
                                                        "Cache-Control": "no-cache"})


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # browsers ask for one; an empty answer keeps 404s out of the log


def _feedback_store(settings: ProxySettings) -> DatasetStore:
    """On a shared database the datasets' folder is shared too (pods on one claim): one writer at a time."""
    shared = AdvisoryLock(open_database(settings)) if settings.database_url else None
    store = DatasetStore(settings.datasets_dir, settings.max_image_pixels,
                         quota=Quota(settings.dataset_max_photos, settings.dataset_max_photos_per_user),
                         max_full_pixels=settings.max_full_decode_pixels, shared=shared)
    store.repair()  # what a crash left half made is set aside, never in the way of the next dataset
    return store


def _rollout_settings(settings: ProxySettings) -> RolloutSettings:
    return RolloutSettings(settings.model_store, settings.deploy_workers, settings.register_timeout_s,
                           settings.drain_timeout_s, 2 * settings.state_refresh_s if settings.database_url else 0.0)


def _background_tasks(app: web.Application, settings: ProxySettings, history: History,
                      rollout_settings: RolloutSettings) -> list[asyncio.Task]:
    """The routing table's follower (other gateways change a shared one), the control plane's reconciler and, on a
    shared database, its pod's heartbeat."""
    tasks = []
    if settings.database_url:
        tasks.append(asyncio.create_task(app[REGISTRY].follow(settings.state_refresh_s)))
    if settings.database_url and settings.control_plane:
        tasks.append(asyncio.create_task(heartbeat(app[PODS], app[TORCHSERVE], app[REGISTRY], settings.model_name,
                                                   settings.state_refresh_s)))
    if settings.control_plane:
        reconciler = Reconciler(app[TORCHSERVE], app[REGISTRY], history, rollout_settings, app[ROLLOUTS].lock,
                                app[ROLLOUTS].gate)
        tasks.append(asyncio.create_task(reconciler.forever(settings.model_name, settings.reconcile_interval_s)))
        tasks.append(asyncio.create_task(app[ROLLOUTS].recover_forever(settings.model_name,
                                                                       settings.reconcile_interval_s)))
    return tasks


def create_app(settings: ProxySettings) -> web.Application:
    app = web.Application(middlewares=[request_id_and_errors, authorize], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = ProxyMetrics()
    app[SIGNALS] = VersionSignals()
    app[RECEIPTS] = AnswerReceipts(settings.answer_key.encode() if settings.answer_key else None,
                                   settings.answer_id_lifetime_s)
    app[METRICS].watch(lambda: app.get(REGISTRY), settings.model_name)
    app[STREAMS] = UploadStreams(settings.streamed_uploads)
    app[LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app[KEYS] = TorchServeKeys(settings.torchserve_key_file, settings.management_url, settings.key_refresh_margin_s)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        plane = ControlPlaneLock(settings.torchserve_key_file)
        if settings.control_plane:
            plane.acquire()  # ControlPlaneTaken stops the start: a second one would undo this one's deploys
        database = open_database(settings)  # each store has its own connection, as each had its own SQLite one
        log.info("state kept in %s", database.describe())  # never the URL's password
        store = TokenStore(database)
        verifier = JwtVerifier(settings.jwt) if settings.jwt.enabled else None
        app[AUTHENTICATOR] = Authenticator(store, verifier, settings.token_cache_s)
        app[REGISTRY] = VersionRegistry(open_database(settings))
        app[DATASETS] = _feedback_store(settings)
        app[HELD_OUT] = HeldOutCorrections(app[DATASETS])
        app[UPLOADS] = ThreadPoolExecutor(settings.upload_threads, thread_name_prefix="upload")
        app[SESSION] = upstream_session(settings.connect_timeout_s, settings.read_timeout_s)
        gate = SmokeGate(app[SESSION], app[KEYS], settings.inference_url, settings.gate_dir,
                         settings.gate_min_accuracy, settings.gate_real_dir, settings.gate_tolerance,
                         max_unseen_harm=settings.gate_max_unseen_harm)
        app[TORCHSERVE] = TorchServeAdmin(app[SESSION], app[KEYS], settings.management_url)
        rollout_settings = _rollout_settings(settings)
        history = History(open_database(settings))
        app[PODS], driver, intents = coordination(settings)
        app[ROLLOUTS] = Rollouts(app[TORCHSERVE], app[REGISTRY], gate, rollout_settings, history, pods=app[PODS],
                                 driver=driver, intents=intents)
        app[ANALYST] = CanaryAnalyst(app[ROLLOUTS], app[REGISTRY], app[SIGNALS])
        app[READINESS] = Readiness(readiness_check(app), settings.readiness_cache_s)
        tasks = _background_tasks(app, settings, history, rollout_settings)
        yield
        await app[ANALYST].stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app[SESSION].close()
        app[UPLOADS].shutdown(wait=True)
        app[REGISTRY].close()
        history.close()
        app[PODS].close()
        app[DATASETS].close()
        driver.close()
        intents.close()
        store.close()
        plane.release()

    app.cleanup_ctx.append(resources)
    app.router.add_post("/predictions/{model}", predict)
    app.router.add_post("/predictions/{model}/{version}", predict)
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", page)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    admin_api.add_routes(app)
    feedback_api.add_routes(app, settings)
    return app
