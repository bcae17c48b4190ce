"""The token gateway's factory: only authenticated predictions reach TorchServe's inference API, nothing else of it
at all. The gateway reads as its parts, each a sub-application with its own routes and scope:

    /predictions   the data plane (data_plane.py): token check, routing, forwarding              predict
    /admin         the control plane (control/): versions, rollouts, canary analysis, audit        admin
    /admin/tokens  access tokens (tokens_api.py): list, issue, revoke                              admin
    /feedback      corrections (feedback/)                                                         predict
    /datasets      the feedback store's datasets (feedback/)                                       admin
    /, /static     the admin page (admin_page.py), which calls the same API
    /healthz, /readyz, /metrics, /whoami   probes and sign-in, at the top

One middleware chain for all (middleware.py: request id, errors, metrics; access.py: the scope each route
declares), one state shared by all (app_keys.py), and each part's resources opened and closed with the gateway
(`cleanup_ctx`, in the order they depend on each other).

aiohttp, because one library gives both halves (server and one pooled upstream client), with an app factory,
typed app state and `cleanup_ctx` for the resources; no ASGI server or second HTTP client to pin and tune.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from auth_plugin import admin_page
from auth_plugin.access import authorize, vouch_for_connection
from auth_plugin.answer_receipts import AnswerReceipts
from auth_plugin.app_keys import (
    AUTHENTICATOR,
    KEYS,
    LIMITER,
    METRICS,
    READINESS,
    RECEIPTS,
    REGISTRY,
    SESSION,
    SETTINGS,
    SIGNALS,
    STREAMS,
    TOKENS,
    TORCHSERVE,
)
from auth_plugin.auth import Authenticator, JwtVerifier
from auth_plugin.bodies import UploadStreams
from auth_plugin.control import plane
from auth_plugin.control.actual.torchserve_admin import TorchServeAdmin
from auth_plugin.control.desired.versions import VersionRegistry
from auth_plugin.control.signals import VersionSignals
from auth_plugin.data_plane import data_plane_app
from auth_plugin.feedback import feedback_api
from auth_plugin.forwarding import upstream_session
from auth_plugin.middleware import request_id_and_errors
from auth_plugin.migrations import open_database
from auth_plugin.probes import healthz, metrics, readiness_check, readyz
from auth_plugin.proxy_metrics import ProxyMetrics
from auth_plugin.rate_limit import RateLimiter
from auth_plugin.readiness import Readiness
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore
from auth_plugin.tokens_api import tokens_app
from auth_plugin.torchserve_keys import TorchServeKeys

log = logging.getLogger("auth_plugin")


async def whoami(request: web.Request) -> web.Response:
    """Who this token is and what it may do: the admin page signs in with it."""
    principal = await request.app[AUTHENTICATOR].identify(request.headers)
    vouch_for_connection(request)
    return web.json_response({"user": principal.user, "scopes": sorted(principal.scopes),
                              "model": request.app[SETTINGS].model_name})


def shared_state(app: web.Application, settings: ProxySettings) -> None:
    """What every part reads and nothing needs to open: settings, metrics, signals, answer ids, limits, keys."""
    app[SETTINGS] = settings
    app[METRICS] = ProxyMetrics()
    app[SIGNALS] = VersionSignals()
    app[RECEIPTS] = AnswerReceipts(settings.answer_key.encode() if settings.answer_key else None,
                                   settings.answer_id_lifetime_s)
    app[METRICS].watch(lambda: app.get(REGISTRY), settings.model_name)
    app[STREAMS] = UploadStreams(settings.streamed_uploads)
    app[LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app[KEYS] = TorchServeKeys(settings.torchserve_key_file, settings.management_url, settings.key_refresh_margin_s)


async def gateway_resources(app: web.Application) -> AsyncIterator[None]:
    """The tokens, the routing table (followed where other gateways change a shared one), the one pooled client
    to TorchServe, its management API and the readiness answer."""
    settings = app[SETTINGS]
    database = open_database(settings)  # each store has its own connection, as each had its own SQLite one
    log.info("state kept in %s", database.describe())  # never the URL's password
    app[TOKENS] = store = TokenStore(database)
    app[AUTHENTICATOR] = Authenticator(store, JwtVerifier(settings.jwt) if settings.jwt.enabled else None,
                                       settings.token_cache_s)
    app[REGISTRY] = VersionRegistry(open_database(settings))
    app[SESSION] = upstream_session(settings.connect_timeout_s, settings.read_timeout_s)
    app[TORCHSERVE] = TorchServeAdmin(app[SESSION], app[KEYS], settings.management_url)
    app[READINESS] = Readiness(readiness_check(app), settings.readiness_cache_s)
    follower = asyncio.create_task(app[REGISTRY].follow(settings.state_refresh_s)) if settings.database_url else None
    yield
    if follower is not None:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    await app[SESSION].close()
    app[REGISTRY].close()
    store.close()


def create_app(settings: ProxySettings) -> web.Application:
    app = web.Application(middlewares=[request_id_and_errors, authorize], client_max_size=settings.max_body_bytes)
    shared_state(app, settings)
    app.cleanup_ctx.extend([plane.plane_lock, gateway_resources])
    feedback_api.setup(app)
    app.add_subapp("/admin/tokens", tokens_app())  # before /admin, whose sub-application would take the path
    plane.setup(app)
    app.add_subapp("/predictions", data_plane_app())
    admin_page.mount(app)
    for path, probe in (("/whoami", whoami), ("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        app.router.add_get(path, probe)
    return app
